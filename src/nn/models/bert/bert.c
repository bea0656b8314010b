/*
 * bert.c: loading and running BERT encoders (model and interface in
 * bert.h).
 *
 * Load: config.json decides every shape; each tensor is bound by name with
 * that exact shape from the mapped safetensors file, so a different or
 * damaged checkpoint fails here with NN_ERR_FORMAT instead of computing
 * garbage.  The Linear weights stay in PyTorch's (out, in) layout and go to
 * linear_forward as they are: nothing is copied for F32 checkpoints.  The
 * fingerprint is the SHA-256 of config.json, the tokenizer file(s), the
 * safetensors header and the first and last 4 KiB of every tensor, so two
 * fine-tunes of one architecture differ without reading every weight.
 *
 * Forward over packed rows (as use_lite.c): the valid rows (mask = 1) of
 * the padded (batch, seq_len) input are gathered, each keeping its column
 * as position, and every GEMM runs over exactly those rows.  The run keeps
 * what the input-backward reads -- the embedding sum and every layer-norm
 * input with its mean/rstd, q/k/v, the attention probabilities and the
 * FFN's pre-activation -- and nothing else: layer-norm outputs and the GELU
 * output live in scratch.  The backward walks the layers in reverse with
 * one dX = dY W sgemm per Linear, no weight gradients.  The buffers are
 * allocated once in run_new; forward and backward never allocate.
 *
 * Until a run's first backward its forwards keep one layer's activations
 * only (every layer writes layer 0's slot): inference then writes 1/L of
 * the memory, which at batch 32 is what a forward's time went to (BERT-base,
 * 32 texts of 64 tokens: 680 MB of fresh pages a batch, their first-touch
 * faults a third of the batch's CPU time).  The first backward on a run
 * recomputes the layers from x0, keeping each one's, and the run keeps
 * every layer from then on: a training run pays one extra forward, once.
 */
#include "models/bert/bert.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "formats/hf_config.h"
#include "ops/gemm_bf16.h"
#include "ops/gemm_packed.h"
#include "ops/kernels.h"
#include "formats/hf_checkpoint.h"
#include "formats/safetensors.h"
#include "base/arena.h"
#include "base/sha256.h"
#include "tokenizers/bpe.h"
#include "tokenizers/template.h"
#include "tokenizers/unigram.h"
#include "tokenizers/wordpiece.h"

#define BERT_SAMPLE_BYTES 4096	/* fingerprinted bytes at each end of a tensor */
#define BERT_MAX_TOKENIZER_BYTES ((size_t) 256 << 20)

typedef enum BertTokenizerKind
{
	BERT_TOK_WORDPIECE,			/* tokenizer.json or vocab.txt (wordpiece.h) */
	BERT_TOK_BPE,				/* byte-level BPE tokenizer.json (bpe.h) */
	BERT_TOK_UNIGRAM			/* Unigram tokenizer.json (unigram.h) */
} BertTokenizerKind;

/*
 * What tells the encoder families of this file apart (bert.h): the
 * checkpoint's tensor names, where positions start and the tokenizer.  The
 * layer's tensors, in BertLayer's order: query, key, value, attention
 * output, its LayerNorm, FFN in, FFN out, output LayerNorm.
 */
typedef struct BertFamily
{
	const char *model_type;		/* config.json's, and the ops' family name */
	const char *head_prefix;	/* of *For* checkpoints: "bert." */
	const char *layer_format;	/* printf format of layer l's tensors' prefix */
	const char *layer_names[8];
	bool		positions_after_padding;	/* RoBERTa: position = pad_token_id + 1 + t */
	BertTokenizerKind tokenizer;
} BertFamily;

static const char *const bert_layer_names[8] = {"attention.self.query",
	"attention.self.key", "attention.self.value", "attention.output.dense",
	"attention.output.LayerNorm", "intermediate.dense", "output.dense",
"output.LayerNorm"};

static const BertFamily bert_families[] = {
	{"bert", "bert.", "encoder.layer.%d.", {NULL}, false, BERT_TOK_WORDPIECE},
	{"roberta", "roberta.", "encoder.layer.%d.", {NULL}, true, BERT_TOK_BPE},
	{"xlm-roberta", "roberta.", "encoder.layer.%d.", {NULL}, true, BERT_TOK_UNIGRAM},
	{"distilbert", "distilbert.", "transformer.layer.%d.",
		{"attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin",
		"sa_layer_norm", "ffn.lin1", "ffn.lin2", "output_layer_norm"},
	false, BERT_TOK_WORDPIECE},
};

typedef struct BertLayer
{
	const float *wq,
			   *bq;				/* attention.self.query (H, H), (H) */
	const float *wk,
			   *bk;				/* attention.self.key */
	const float *wv,
			   *bv;				/* attention.self.value */
	const float *wo,
			   *bo;				/* attention.output.dense (H, H), (H) */
	const float *ln1_w,
			   *ln1_b;			/* attention.output.LayerNorm (H) */
	const float *w1,
			   *b1;				/* intermediate.dense (F, H), (F) */
	const float *w2,
			   *b2;				/* output.dense (H, F), (H) */
	const float *ln2_w,
			   *ln2_b;			/* output.LayerNorm (H) */
} BertLayer;

typedef struct Bert
{
	const BertFamily *fam;
	HfConfig	cfg;
	Safetensors *st;
	WordPiece  *tok;			/* one of tok, bpe, unigram */
	Bpe		   *bpe;
	HfUnigram  *unigram;
	TokEncodeFn encode_text;	/* that tokenizer without specials */
	const void *tokenizer;
	TokTemplate template;		/* specials around one text or a pair */
	int32_t		unk_id;
	int			pos_offset;		/* position embedding row of column 0 */
	int			H,
				NH,
				F,
				L;				/* hidden, heads, FFN width, layers */
	float		ln_eps;
	bool		relu;			/* hidden_act "relu" instead of GELU */
	const float *word_emb;		/* (vocab, H) */
	const float *pos_emb;		/* (max_positions, H) */
	const float *type_emb;		/* (type_vocab, H), row 0 used; NULL if none */
	const float *emb_ln_w,
			   *emb_ln_b;		/* embeddings.LayerNorm (H) */
	BertLayer  *layer;			/* (L) */
	const float *pool_w,
			   *pool_b;			/* pooler.dense (H, H), (H); NULL if absent */
	BertPooling pooling;
} Bert;

/* One layer's activations over N packed rows, kept for the backward pass. */
typedef struct BertActs
{
	float	   *qkv;			/* (N, 3H) q | k | v per row */
	float	   *att;			/* attention probabilities, see attention_forward */
	float	   *res1;			/* (N, H) h_in + attention output: LN1 input */
	float	   *ln1_mean,
			   *ln1_rstd;		/* (N) */
	float	   *fc;				/* (N, F) FFN pre-activation */
	float	   *res2;			/* (N, H) h_mid + FFN output: LN2 input */
	float	   *ln2_mean,
			   *ln2_rstd;		/* (N) */
} BertActs;

/* The BackboneRun of this family. */
typedef struct BertRun
{
	int			max_batch;
	int			max_seq;
	int			batch;			/* shape of the last forward */
	int			seq_len;
	BertPooling pooling;		/* of the last forward */
	const uint8_t *types;		/* token type ids for the next forward (run_token_types) */
	bool		keep_layers;	/* forwards keep every layer's activations (after a backward) */
	bool		uses_types;		/* the model has token type embeddings */
	bool		bf16;			/* weight products in bfloat16 (run_use_bf16) */
	int		   *offsets;		/* (max_batch + 1) packed row ranges */
	int		   *rows;			/* (max_batch * max_seq) b * seq_len + t of each packed row */
	float	   *emb_sum;		/* (N, H) embedding sum: LN input */
	float	   *emb_mean,
			   *emb_rstd;		/* (N) */
	float	   *x0;				/* (N, H) layer 0 input */
	BertActs   *layer;			/* (L) */
	float	   *h[2];			/* (N, H) layer outputs, alternating; the last is kept */
	float	   *pool_in;		/* (max_batch, H) first rows or means */
	float	   *pooled;			/* (max_batch, H) the pooled output */
	/* scratch, dead between calls */
	float	   *ctx;			/* (N, H) forward: heads; backward: d(heads) */
	float	   *hmid;			/* (N, H) forward: LN1 output */
	float	   *act;			/* (N, max(F, 3H)) forward: FFN act.; backward: d(fc), d(qkv) */
	float	   *dtmp;			/* (N, H) backward */
	float	   *datt;			/* (max_seq, max_seq) backward: one head's dP */
	float	   *dpool;			/* (max_batch, H) backward */
	float	   *dpool_in;		/* (max_batch, H) backward */
	void	   *arena;
} BertRun;

/* ---- loading ----------------------------------------------------------------- */

/*
 * A LayerNorm's weight and bias under "<base>.weight/.bias", or the
 * "gamma"/"beta" names of checkpoints converted from TensorFlow.
 */
static NnStatus
bind_ln(const Safetensors *st, const float **w, const float **b, const char *prefix,
		const char *base, int H, NnError *err)
{
	char		name[512];
	bool		old;

	snprintf(name, sizeof(name), "%s%s.gamma", prefix, base);
	old = safetensors_find(st, name) != NULL;
	snprintf(name, sizeof(name), "%s.%s", base, old ? "gamma" : "weight");
	if (hf_bind(st, w, prefix, name, 1, H, 0, err) != NN_OK)
		return NN_ERR_FORMAT;
	snprintf(name, sizeof(name), "%s.%s", base, old ? "beta" : "bias");
	return hf_bind(st, b, prefix, name, 1, H, 0, err);
}

static NnStatus
bind_layer(const Bert *m, BertLayer *Ly, const char *prefix, int l, NnError *err)
{
	const Safetensors *st = m->st;
	const char *const *names = m->fam->layer_names[0] ? m->fam->layer_names : bert_layer_names;
	char		b[8][128],
				layer[64];
	int			H = m->H,
				F = m->F;
	NnStatus	s;

	snprintf(layer, sizeof(layer), m->fam->layer_format, l);
	for (int i = 0; i < 8; i++)
		snprintf(b[i], sizeof(b[i]), "%s%s", layer, names[i]);
	if ((s = hf_bind_weight_bias(st, &Ly->wq, &Ly->bq, prefix, b[0], H, H, true, err)) ||
		(s = hf_bind_weight_bias(st, &Ly->wk, &Ly->bk, prefix, b[1], H, H, true, err)) ||
		(s = hf_bind_weight_bias(st, &Ly->wv, &Ly->bv, prefix, b[2], H, H, true, err)) ||
		(s = hf_bind_weight_bias(st, &Ly->wo, &Ly->bo, prefix, b[3], H, H, true, err)) ||
		(s = bind_ln(st, &Ly->ln1_w, &Ly->ln1_b, prefix, b[4], H, err)) ||
		(s = hf_bind_weight_bias(st, &Ly->w1, &Ly->b1, prefix, b[5], F, H, true, err)) ||
		(s = hf_bind_weight_bias(st, &Ly->w2, &Ly->b2, prefix, b[6], H, F, true, err)) ||
		(s = bind_ln(st, &Ly->ln2_w, &Ly->ln2_b, prefix, b[7], H, err)))
		return s;
	return NN_OK;
}

/* Bind every tensor the forward pass reads. */
static NnStatus
bind_weights(Bert *m, NnError *err)
{
	const Safetensors *st = m->st;
	const char *prefix;
	char		name[512];
	int			H = m->H;
	NnStatus	s;

	/* BertModel names, or BertFor* names under "bert." (the family's head prefix) */
	snprintf(name, sizeof(name), "%sembeddings.word_embeddings.weight", m->fam->head_prefix);
	prefix = safetensors_find(st, name) != NULL &&
		safetensors_find(st, "embeddings.word_embeddings.weight") == NULL ? m->fam->head_prefix : "";
	if ((s = hf_bind(st, &m->word_emb, prefix, "embeddings.word_embeddings.weight", 2,
				  m->cfg.vocab_size, H, err)) ||
		(s = hf_bind(st, &m->pos_emb, prefix, "embeddings.position_embeddings.weight", 2,
				  m->cfg.max_position_embeddings, H, err)) ||
		(s = bind_ln(st, &m->emb_ln_w, &m->emb_ln_b, prefix, "embeddings.LayerNorm", H, err)))
		return s;
	if (m->cfg.type_vocab_size > 0 &&
		(s = hf_bind(st, &m->type_emb, prefix, "embeddings.token_type_embeddings.weight", 2,
				  m->cfg.type_vocab_size, H, err)))
		return s;
	for (int l = 0; l < m->L; l++)
		if ((s = bind_layer(m, &m->layer[l], prefix, l, err)) != NN_OK)
			return s;
	/* the pooler is optional (BertModel(add_pooling_layer=False), MLM heads) */
	snprintf(name, sizeof(name), "%spooler.dense.weight", prefix);
	if (safetensors_find(st, name) != NULL &&
		(s = hf_bind_weight_bias(st, &m->pool_w, &m->pool_b, prefix, "pooler.dense", H, H, true, err)))
		return s;
	return NN_OK;
}

/* Check the config fields this family depends on. */
static NnStatus
check_config(const HfConfig *c, const BertFamily *fam, NnError *err)
{
	if (strcmp(c->model_type, fam->model_type) != 0)
		return nn_fail(err, NN_ERR_FORMAT, "config.json: model_type \"%s\" is not %s",
					   c->model_type, fam->model_type);
	if (strcmp(c->hidden_act, "gelu") != 0 && strcmp(c->hidden_act, "gelu_python") != 0 &&
		strcmp(c->hidden_act, "relu") != 0)
		return nn_fail(err, NN_ERR_FORMAT,
					   "config.json: hidden_act \"%s\" is not supported (gelu, relu)", c->hidden_act);
	if (strcmp(c->position_embedding_type, "absolute") != 0)
		return nn_fail(err, NN_ERR_FORMAT,
					   "config.json: position_embedding_type \"%s\" is not supported (absolute)",
					   c->position_embedding_type);
	if (fam->positions_after_padding &&
		(c->pad_token_id < 0 || c->pad_token_id + 1 >= c->max_position_embeddings))
		return nn_fail(err, NN_ERR_FORMAT,
					   "config.json: pad_token_id %d leaves no positions of %d",
					   c->pad_token_id, c->max_position_embeddings);
	return NN_OK;
}

/*
 * sentence-transformers' 1_Pooling/config.json, when present, picks mean or
 * CLS pooling; otherwise the pooler when the checkpoint has one, else mean.
 */
static BertPooling
default_pooling(const Bert *m, const char *dir)
{
	char		path[4096];
	size_t		len;
	char	   *json;
	cJSON	   *root;
	BertPooling p = m->pool_w != NULL ? BERT_POOL_POOLER : BERT_POOL_MEAN;

	snprintf(path, sizeof(path), "%s/1_Pooling/config.json", dir);
	if ((json = hf_read_file(path, 1 << 20, &len)) == NULL)
		return p;
	root = cJSON_ParseWithLength(json, len);
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "pooling_mode_mean_tokens")))
		p = BERT_POOL_MEAN;
	else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "pooling_mode_cls_token")))
		p = BERT_POOL_CLS;
	cJSON_Delete(root);
	free(json);
	return p;
}

/* tokenizer_json: the bytes of dir/tokenizer.json as open_tokenizer read them, or NULL */
static void
fingerprint(const Bert *m, const char *dir, const char *tokenizer_json, size_t tokenizer_len,
			char hex[65])
{
	Sha256		ctx;

	sha256_init(&ctx);
	/* "bert" as before the other families, so BERT fingerprints stay the same */
	sha256_update(&ctx, m->fam->model_type, strlen(m->fam->model_type) + 1);
	hf_hash_file(&ctx, dir, "config.json");
	if (tokenizer_json != NULL)
		hf_hash_bytes(&ctx, "tokenizer.json", tokenizer_json, tokenizer_len);
	else
	{
		hf_hash_file(&ctx, dir, "vocab.txt");
		hf_hash_file(&ctx, dir, "tokenizer_config.json");
	}
	safetensors_hash_sample(m->st, &ctx, BERT_SAMPLE_BYTES);
	sha256_final_hex(&ctx, hex);
}

static void
bert_free(Bert *m)
{
	if (m == NULL)
		return;
	safetensors_close(m->st);
	wordpiece_free(m->tok);
	bpe_free(m->bpe);
	hf_unigram_free(m->unigram);
	free(m->layer);
	free(m);
}

static void
bert_close(Backbone *bb)
{
	gemm_bf16_forget_weights();	/* packed copies of weights about to be unmapped */
	gemm_packed_forget_weights();
	bert_free(bb->impl);
	free(bb);
}

/* ---- tokens --------------------------------------------------------------------- */

static int
bert_tokenize(const Backbone *bb, const char *text, size_t len, int32_t *ids, int max_ids)
{
	const Bert *m = bb->impl;

	if (m->tok != NULL)
		return wordpiece_encode(m->tok, text, len, ids, max_ids);
	return tok_template_encode(&m->template, m->encode_text, m->tokenizer, text, len, NULL, 0,
							   ids, NULL, max_ids);
}

static int
bert_tokenize_pair(const Backbone *bb, const char *a, size_t alen, const char *b, size_t blen,
				   int32_t *ids, uint8_t *type_ids, int max_ids)
{
	const Bert *m = bb->impl;

	return tok_template_encode(&m->template, m->encode_text, m->tokenizer, a, alen,
							   b != NULL ? b : "", blen, ids, type_ids, max_ids);
}

static const char *
bert_token_piece(const Backbone *bb, int32_t id)
{
	const Bert *m = bb->impl;

	if (m->tok != NULL)
		return wordpiece_token(m->tok, id);
	if (m->bpe != NULL)
		return bpe_token(m->bpe, id);
	return m->unigram != NULL ? hf_unigram_piece(m->unigram, id) : NULL;
}

/*
 * Word-embedding rows of ids (no position or type: forward adds those).
 * Every id the tokenizer emits is real (mask 1), [PAD] included when the
 * text spells it, as in HF; negative ids are padding (zero row, mask 0);
 * ids past the table read as [UNK].
 */
static void
bert_embed_tokens(const Backbone *bb, const int32_t *ids, int n, float *x, uint8_t *mask)
{
	const Bert *m = bb->impl;

	embedding_rows(x, mask, m->word_emb, m->cfg.vocab_size, m->unk_id, m->H, ids, n);
}

/* ---- activation buffers ------------------------------------------------------- */

/* Lay out (base NULL: measure) every float buffer of run. */
static size_t
layout_run(BertRun *run, char *base, const Bert *m)
{
	size_t		off = 0;
	size_t		R = (size_t) run->max_batch * run->max_seq;
	size_t		B = (size_t) run->max_batch;
	size_t		S = (size_t) run->max_seq;
	size_t		H = (size_t) m->H,
				F = (size_t) m->F;
	size_t		wide = F > 3 * H ? F : 3 * H;

	run->emb_sum = arena_carve(base, &off, R * H);
	run->emb_mean = arena_carve(base, &off, R);
	run->emb_rstd = arena_carve(base, &off, R);
	run->x0 = arena_carve(base, &off, R * H);
	for (int l = 0; l < m->L; l++)
	{
		BertActs   *a = &run->layer[l];

		a->qkv = arena_carve(base, &off, R * 3 * H);
		/* worst case: every sequence max_seq long */
		a->att = arena_carve(base, &off, B * m->NH * S * S);
		a->res1 = arena_carve(base, &off, R * H);
		a->ln1_mean = arena_carve(base, &off, R);
		a->ln1_rstd = arena_carve(base, &off, R);
		a->fc = arena_carve(base, &off, R * F);
		a->res2 = arena_carve(base, &off, R * H);
		a->ln2_mean = arena_carve(base, &off, R);
		a->ln2_rstd = arena_carve(base, &off, R);
	}
	run->h[0] = arena_carve(base, &off, R * H);
	run->h[1] = arena_carve(base, &off, R * H);
	run->pool_in = arena_carve(base, &off, B * H);
	run->pooled = arena_carve(base, &off, B * H);
	run->ctx = arena_carve(base, &off, R * H);
	run->hmid = arena_carve(base, &off, R * H);
	run->act = arena_carve(base, &off, R * wide);
	run->dtmp = arena_carve(base, &off, R * H);
	run->datt = arena_carve(base, &off, S * S);
	run->dpool = arena_carve(base, &off, B * H);
	run->dpool_in = arena_carve(base, &off, B * H);
	return off;
}

static void
bert_run_free(BackboneRun *brun)
{
	BertRun    *run = (BertRun *) brun;

	if (run == NULL)
		return;
	free(run->arena);
	free(run->layer);
	free(run->offsets);
	free(run->rows);
	free(run);
}

/* Heap bytes bert_run_new allocates for this shape (no decoder: dec_* are unused). */
static size_t
bert_run_bytes(const Backbone *bb, int max_batch, int max_seq, int dec_seqs, int dec_len)
{
	const Bert *m = bb->impl;
	BertRun		run = {0};
	size_t		bytes;

	(void) dec_seqs;
	(void) dec_len;
	if (max_batch <= 0 || max_seq <= 0 || max_seq > bb->max_positions ||
		max_batch > (1 << 20) || (double) max_batch * max_seq * m->F > 2147483647.0 ||
		(double) max_batch * m->NH * max_seq * max_seq * m->L > (double) ((size_t) 1 << 38))
		return SIZE_MAX;
	/* layout_run writes (NULL) pointers into the per-layer structs */
	if ((run.layer = calloc((size_t) m->L, sizeof(BertActs))) == NULL)
		return SIZE_MAX;
	run.max_batch = max_batch;
	run.max_seq = max_seq;
	bytes = layout_run(&run, NULL, m);
	free(run.layer);
	return backbone_alloc_bytes(sizeof(BertRun)) + backbone_alloc_bytes(bytes) +
		backbone_alloc_bytes(sizeof(BertActs) * (size_t) m->L) +
		backbone_alloc_bytes(sizeof(int) * ((size_t) max_batch + 1)) +
		backbone_alloc_bytes(sizeof(int) * (size_t) max_batch * max_seq);
}

/* Buffers for max_batch sequences of up to max_seq positions; NULL if impossible. */
static BackboneRun *
bert_run_new(const Backbone *bb, int max_batch, int max_seq)
{
	const Bert *m = bb->impl;
	BertRun    *run;
	size_t		bytes;

	/* row counts stay int-indexable and the attention caches below a terabyte */
	if (max_batch <= 0 || max_seq <= 0 || max_seq > bb->max_positions ||
		max_batch > (1 << 20) || (double) max_batch * max_seq * m->F > 2147483647.0 ||
		(double) max_batch * m->NH * max_seq * max_seq * m->L > (double) ((size_t) 1 << 38))
		return NULL;
	run = calloc(1, sizeof(BertRun));
	if (run == NULL)
		return NULL;
	run->max_batch = max_batch;
	run->max_seq = max_seq;
	run->uses_types = m->type_emb != NULL;
	run->layer = calloc((size_t) m->L, sizeof(BertActs));
	run->offsets = malloc(sizeof(int) * ((size_t) max_batch + 1));
	run->rows = malloc(sizeof(int) * (size_t) max_batch * max_seq);
	if (run->layer == NULL || run->offsets == NULL || run->rows == NULL)
	{
		bert_run_free((BackboneRun *) run);
		return NULL;
	}
	bytes = layout_run(run, NULL, m);
	if ((run->arena = arena_alloc(bytes)) == NULL)
	{
		bert_run_free((BackboneRun *) run);
		return NULL;
	}
	layout_run(run, run->arena, m);
	return (BackboneRun *) run;
}

/* ---- forward -------------------------------------------------------------------- */

/* One post-LN encoder layer over the N packed rows of inp into out. */
static void
layer_forward(const Bert *m, const BertLayer *Ly, BertActs *a, BertRun *run,
			  const float *inp, float *out, int N, int B)
{
	int			H = m->H,
				F = m->F;
	float		scale = 1.0f / sqrtf((float) (H / m->NH));

	/* attention block: res1 = inp + MHA(inp) Wo^T + bo, a = LN1(res1) */
	linear_product(run->bf16, a->qkv, inp, Ly->wq, Ly->bq, N, H, H, 3 * H);
	linear_product(run->bf16, a->qkv + H, inp, Ly->wk, Ly->bk, N, H, H, 3 * H);
	linear_product(run->bf16, a->qkv + 2 * H, inp, Ly->wv, Ly->bv, N, H, H, 3 * H);
	attention_forward(run->ctx, a->att, a->qkv, run->offsets, B, H, m->NH, scale);
	linear_product(run->bf16, a->res1, run->ctx, Ly->wo, Ly->bo, N, H, H, H);
	residual_forward(a->res1, a->res1, inp, (size_t) N * H);
	layernorm_forward(run->hmid, a->ln1_mean, a->ln1_rstd, a->res1, Ly->ln1_w, Ly->ln1_b,
					  N, H, m->ln_eps);

	/* FFN block: res2 = a + act(a W1^T + b1) W2^T + b2, out = LN2(res2) */
	linear_product(run->bf16, a->fc, run->hmid, Ly->w1, Ly->b1, N, H, F, F);
	if (m->relu)
		relu_forward(run->act, a->fc, (size_t) N * F);
	else
		gelu_forward(run->act, a->fc, (size_t) N * F);
	linear_product(run->bf16, a->res2, run->act, Ly->w2, Ly->b2, N, F, H, H);
	residual_forward(a->res2, a->res2, run->hmid, (size_t) N * H);
	layernorm_forward(out, a->ln2_mean, a->ln2_rstd, a->res2, Ly->ln2_w, Ly->ln2_b,
					  N, H, m->ln_eps);
}

/*
 * emb_sum = (X + type[type id]) + pos[pos_offset + column] over the packed
 * rows, in transformers' order of additions.  Type ids come from
 * run_token_types for this forward only, else 0.
 */
static NnStatus
embed_forward(const Bert *m, BertRun *run, const float *x, int N, NnError *err)
{
	const float *pos = m->pos_emb + (size_t) m->pos_offset * m->H;
	const uint8_t *types = run->types;

	run->types = NULL;
	if (types == NULL || m->type_emb == NULL)
	{
		embed_sum_forward(run->emb_sum, x, pos, m->type_emb, run->rows, N, run->seq_len, m->H);
		return NN_OK;
	}
	for (int i = 0; i < N; i++)
		if (types[run->rows[i]] >= m->cfg.type_vocab_size)
			return nn_fail(err, NN_ERR_ARG, "token type id %d is past the model's %d types",
						   (int) types[run->rows[i]], m->cfg.type_vocab_size);
	for (int i = 0; i < N; i++)
	{
		const float *xi = x + (size_t) run->rows[i] * m->H;
		const float *ty = m->type_emb + (size_t) types[run->rows[i]] * m->H;
		const float *p = pos + (size_t) (run->rows[i] % run->seq_len) * m->H;
		float	   *o = run->emb_sum + (size_t) i * m->H;

		for (int j = 0; j < m->H; j++)
			o[j] = (xi[j] + ty[j]) + p[j];
	}
	return NN_OK;
}

static bool
bert_run_token_types(BackboneRun *brun, const uint8_t *type_ids)
{
	BertRun    *run = (BertRun *) brun;

	run->types = run->uses_types ? type_ids : NULL;
	return run->uses_types;
}

static bool
bert_run_use_bf16(BackboneRun *brun, bool on)
{
	BertRun    *run = (BertRun *) brun;

	run->bf16 = on && gemm_bf16_usable(32, 32);	/* shapes that do not suit stay float */
	return run->bf16;
}

/* The last layer's output rows. */
static float *
final_hidden(const Bert *m, const BertRun *run)
{
	return run->h[(m->L - 1) & 1];
}

/*
 * The layers over the N packed rows of x0, each into its own activation
 * slot when the run keeps them all, else into slot 0; returns the output.
 */
static const float *
run_layers(const Bert *m, BertRun *run, int N, int B)
{
	const float *inp = run->x0;

	for (int l = 0; l < m->L; l++)
	{
		layer_forward(m, &m->layer[l], &run->layer[run->keep_layers ? l : 0], run, inp,
					  run->h[l & 1], N, B);
		inp = run->h[l & 1];
	}
	return inp;
}

static NnStatus
bert_forward(const Backbone *bb, BackboneRun *brun, const float *x, const uint8_t *mask,
			 int batch, int seq_len, float *out, NnError *err)
{
	const Bert *m = bb->impl;
	BertRun    *run = (BertRun *) brun;
	int			H = m->H,
				N = 0;
	const float *inp;

	if (run == NULL)
		return nn_fail(err, NN_ERR_ARG, "no activation buffers (run is NULL)");
	if (batch < 0 || batch > run->max_batch || seq_len < 0 || seq_len > run->max_seq)
		return nn_fail(err, NN_ERR_ARG,
					   "batch of %d x %d positions exceeds the run's %d x %d",
					   batch, seq_len, run->max_batch, run->max_seq);
	run->batch = batch;
	run->seq_len = seq_len;
	run->pooling = m->pooling;
	if (batch == 0)
	{
		run->types = NULL;
		return NN_OK;
	}

	/* pack the valid rows; each keeps its column as position */
	for (int b = 0; b < batch; b++)
	{
		run->offsets[b] = N;
		for (int t = 0; t < seq_len; t++)
			if (mask[(size_t) b * seq_len + t])
				run->rows[N++] = b * seq_len + t;
	}
	run->offsets[batch] = N;

	if (embed_forward(m, run, x, N, err) != NN_OK)
		return NN_ERR_ARG;
	layernorm_forward(run->x0, run->emb_mean, run->emb_rstd, run->emb_sum, m->emb_ln_w,
					  m->emb_ln_b, N, H, m->ln_eps);
	inp = run_layers(m, run, N, batch);

	/* pooling: an empty sequence pools zeros (the pooler then gives tanh(bp)) */
	if (run->pooling == BERT_POOL_MEAN)
		meanpool_forward(run->pooled, inp, run->offsets, batch, H);
	else
	{
		firstrow_forward(run->pool_in, inp, run->offsets, batch, H);
		if (run->pooling == BERT_POOL_POOLER)
		{
			linear_product(run->bf16, run->pooled, run->pool_in, m->pool_w, m->pool_b, batch, H, H, H);
			tanh_forward(run->pooled, run->pooled, (size_t) batch * H);
		}
		else
			memcpy(run->pooled, run->pool_in, sizeof(float) * (size_t) batch * H);
	}
	memcpy(out, run->pooled, sizeof(float) * (size_t) batch * H);
	return NN_OK;
}

void
bert_last_hidden(const Backbone *bb, const BackboneRun *brun, float *hidden)
{
	const Bert *m = bb->impl;
	const BertRun *run = (const BertRun *) brun;
	int			H = m->H;
	int			N = run->batch > 0 ? run->offsets[run->batch] : 0;
	const float *h = final_hidden(m, run);

	memset(hidden, 0, sizeof(float) * (size_t) run->batch * run->seq_len * H);
	for (int i = 0; i < N; i++)
		memcpy(hidden + (size_t) run->rows[i] * H, h + (size_t) i * H, sizeof(float) * H);
}

/* ---- backward ------------------------------------------------------------------- */

/*
 * Input-backward of layer_forward.  On entry dh (N, H) = d(out); on exit
 * d(inp).  Scratch: dtmp, ctx (d(heads)), act (d(fc) then d(qkv)), datt.
 * (The backward keeps the residual stream's gradient in whichever h buffer
 * does not hold the final hidden state, so that stays readable.)
 */
static void
layer_backward(const Bert *m, const BertLayer *Ly, const BertActs *a, BertRun *run,
			   float *dh, int N, int B)
{
	int			H = m->H,
				F = m->F;
	size_t		NH_ = (size_t) N * H;
	float		scale = 1.0f / sqrtf((float) (H / m->NH));
	float	   *dtmp = run->dtmp,
			   *dctx = run->ctx,
			   *dbig = run->act;

	/* out = LN2(res2): dres2; the residual carries it to d(a) unchanged */
	memset(dtmp, 0, sizeof(float) * NH_);
	layernorm_backward(dtmp, dh, a->res2, Ly->ln2_w, a->ln2_mean, a->ln2_rstd, N, H);
	memcpy(dh, dtmp, sizeof(float) * NH_);
	/* res2 = a + act(fc) W2^T + b2, fc = a W1^T + b1 */
	memset(dbig, 0, sizeof(float) * (size_t) N * F);
	linear_product_backward(run->bf16, dbig, dtmp, Ly->w2, N, F, H, H);
	if (m->relu)
		relu_backward(dbig, dbig, a->fc, (size_t) N * F);
	else
		gelu_backward(dbig, dbig, a->fc, (size_t) N * F);
	linear_product_backward(run->bf16, dh, dbig, Ly->w1, N, H, F, F);

	/* a = LN1(res1), res1 = inp + heads Wo^T + bo */
	memset(dtmp, 0, sizeof(float) * NH_);
	layernorm_backward(dtmp, dh, a->res1, Ly->ln1_w, a->ln1_mean, a->ln1_rstd, N, H);
	memcpy(dh, dtmp, sizeof(float) * NH_);
	memset(dctx, 0, sizeof(float) * NH_);
	linear_product_backward(run->bf16, dctx, dtmp, Ly->wo, N, H, H, H);
	memset(dbig, 0, sizeof(float) * 3 * NH_);
	attention_backward(dbig, run->datt, dctx, a->qkv, a->att, run->offsets, B, H, m->NH, scale);
	/* q, k, v = inp W^T + b: three sgemm from the interleaved d(qkv) */
	linear_product_backward(run->bf16, dh, dbig, Ly->wq, N, H, H, 3 * H);
	linear_product_backward(run->bf16, dh, dbig + H, Ly->wk, N, H, H, 3 * H);
	linear_product_backward(run->bf16, dh, dbig + 2 * H, Ly->wv, N, H, H, 3 * H);
}

NnStatus
bert_backward_full(const Backbone *bb, BackboneRun *brun, const float *dpooled,
				   const float *dhidden, float *dx, NnError *err)
{
	const Bert *m = bb->impl;
	BertRun    *run = (BertRun *) brun;
	int			H = m->H,
				B,
				N;
	float	   *dh;

	if (run == NULL)
		return nn_fail(err, NN_ERR_ARG, "no activation buffers (run is NULL)");
	B = run->batch;
	if (B == 0)
		return NN_OK;
	N = run->offsets[B];
	memset(dx, 0, sizeof(float) * (size_t) B * run->seq_len * H);
	if (N == 0)
		return NN_OK;			/* only empty sequences: the outputs are constants */
	if (!run->keep_layers)
	{
		/* the forward kept one layer: again, keeping all (the same numbers) */
		run->keep_layers = true;
		run_layers(m, run, N, B);
	}

	/* d(last hidden state) of the packed rows: the direct part, then pooling's */
	dh = final_hidden(m, run) == run->h[0] ? run->h[1] : run->h[0];
	memset(dh, 0, sizeof(float) * (size_t) N * H);
	if (dhidden != NULL)
		for (int i = 0; i < N; i++)
		{
			const float *g = dhidden + (size_t) run->rows[i] * H;
			float	   *d = dh + (size_t) i * H;

			for (int j = 0; j < H; j++)
				d[j] += g[j];
		}
	if (dpooled != NULL)
	{
		if (run->pooling == BERT_POOL_MEAN)
			meanpool_backward(dh, dpooled, run->offsets, B, H);
		else if (run->pooling == BERT_POOL_CLS)
			firstrow_backward(dh, dpooled, run->offsets, B, H);
		else
		{
			/* pooled = tanh(first Wp^T + bp) */
			tanh_backward(run->dpool, dpooled, run->pooled, (size_t) B * H);
			memset(run->dpool_in, 0, sizeof(float) * (size_t) B * H);
			linear_product_backward(run->bf16, run->dpool_in, run->dpool, m->pool_w, B, H, H, H);
			firstrow_backward(dh, run->dpool_in, run->offsets, B, H);
		}
	}

	for (int l = m->L - 1; l >= 0; l--)
		layer_backward(m, &m->layer[l], &run->layer[l], run, dh, N, B);

	/* x0 = LN(emb_sum), emb_sum = (X + type) + pos: dX = d(emb_sum) on the packed rows */
	memset(run->dtmp, 0, sizeof(float) * (size_t) N * H);
	layernorm_backward(run->dtmp, dh, run->emb_sum, m->emb_ln_w, run->emb_mean, run->emb_rstd,
					   N, H);
	embed_sum_backward(dx, run->dtmp, run->rows, N, H);
	return NN_OK;
}

static NnStatus
bert_backward(const Backbone *bb, BackboneRun *run, const float *dout, float *dx, NnError *err)
{
	return bert_backward_full(bb, run, dout, NULL, dx, err);
}

/* ---- open ------------------------------------------------------------------------ */

/* One ops table per family (BackboneOps.family names it), the same functions. */
#define BERT_OPS(name) { \
	.family = name, \
	.tokenize = bert_tokenize, \
	.tokenize_pair = bert_tokenize_pair, \
	.token_piece = bert_token_piece, \
	.embed_tokens = bert_embed_tokens, \
	.run_new = bert_run_new, \
	.run_bytes = bert_run_bytes, \
	.run_free = bert_run_free, \
	.forward = bert_forward, \
	.backward = bert_backward, \
	.run_token_types = bert_run_token_types, \
	.run_use_bf16 = bert_run_use_bf16, \
	.close = bert_close, \
}

/* in the order of bert_families */
static const BackboneOps bert_ops[] = {
	BERT_OPS("bert"), BERT_OPS("roberta"), BERT_OPS("xlm-roberta"), BERT_OPS("distilbert"),
};

NnStatus
bert_set_pooling(Backbone *bb, BertPooling pooling, NnError *err)
{
	Bert	   *m = bb->impl;

	if (pooling != BERT_POOL_POOLER && pooling != BERT_POOL_MEAN && pooling != BERT_POOL_CLS)
		return nn_fail(err, NN_ERR_ARG, "unknown pooling %d", (int) pooling);
	if (pooling == BERT_POOL_POOLER && m->pool_w == NULL)
		return nn_fail(err, NN_ERR_ARG, "this checkpoint has no pooler weights");
	m->pooling = pooling;
	return NN_OK;
}

BertPooling
bert_get_pooling(const Backbone *bb)
{
	return ((const Bert *) bb->impl)->pooling;
}

/* Adapters of each tokenizer to TokEncodeFn: ids without special tokens. */
static int
encode_wordpiece(const void *tok, const char *text, size_t len, int32_t *ids, int max_ids)
{
	return wordpiece_encode_text(tok, text, len, ids, max_ids);
}

static int
encode_bpe(const void *tok, const char *text, size_t len, int32_t *ids, int max_ids)
{
	return bpe_encode(tok, text, len, ids, max_ids);
}

static int
encode_unigram(const void *tok, const char *text, size_t len, int32_t *ids, int max_ids)
{
	return hf_unigram_encode(tok, text, len, 0, ids, NULL, max_ids);
}

/*
 * The family's tokenizer and its template from json, the text of
 * dir/tokenizer.json (NULL when it could not be read): tokenizer.json's
 * post-processor, or for a WordPiece vocab.txt alone BERT's [CLS] A [SEP] B
 * [SEP].
 */
static NnStatus
open_tokenizer(Bert *m, const char *dir, const char *json, size_t len, NnError *err)
{
	int			n_ids;
	BertTokenizerKind kind;
	NnStatus	s;

	if (json == NULL && m->fam->tokenizer != BERT_TOK_WORDPIECE)
		return nn_fail(err, NN_ERR_IO,
					   "cannot read \"%s/tokenizer.json\" (a %s model needs its tokenizer.json)",
					   dir, m->fam->model_type);
	/* a BERT checkpoint with XLM-R's tokenizer (multilingual-e5-small) reads it as XLM-R does */
	kind = m->fam->tokenizer == BERT_TOK_WORDPIECE && hf_unigram_json_is_unigram(json, len)
		? BERT_TOK_UNIGRAM : m->fam->tokenizer;
	if (kind == BERT_TOK_WORDPIECE)
	{
		s = json != NULL ? wordpiece_from_json(&m->tok, json, len, err) :
			wordpiece_load(&m->tok, dir, err);
		if (s == NN_OK && json == NULL)
			tok_template_bert(&m->template, wordpiece_token_id(m->tok, "[CLS]"),
							  wordpiece_token_id(m->tok, "[SEP]"));
		m->encode_text = encode_wordpiece;
		m->tokenizer = m->tok;
	}
	else if (kind == BERT_TOK_BPE)
	{
		s = bpe_from_json(&m->bpe, json, len, err);
		m->encode_text = encode_bpe;
		m->tokenizer = m->bpe;
	}
	else
	{
		s = hf_unigram_from_json(&m->unigram, json, len, err);
		m->encode_text = encode_unigram;
		m->tokenizer = m->unigram;
	}
	if (s == NN_OK && json != NULL)
		s = tok_template_from_json(&m->template, json, len, err);
	if (s != NN_OK)
		return s;
	n_ids = m->tok ? wordpiece_vocab_size(m->tok) : m->bpe ? bpe_vocab_size(m->bpe) :
		hf_unigram_vocab_size(m->unigram);
	m->unk_id = m->tok ? wordpiece_unk_id(m->tok) : m->unigram ? hf_unigram_unk_id(m->unigram) :
		bpe_token_id(m->bpe, "<unk>");
	m->unk_id = m->unk_id >= 0 && m->unk_id < m->cfg.vocab_size ? m->unk_id : 0;
	if (n_ids > m->cfg.vocab_size || tok_template_max_id(&m->template) >= m->cfg.vocab_size)
		return nn_fail(err, NN_ERR_FORMAT, "the tokenizer has %d ids, the embedding table %d rows",
					   n_ids, m->cfg.vocab_size);
	return NN_OK;
}

bool
bert_is_family(const char *model_type)
{
	for (size_t i = 0; i < sizeof(bert_families) / sizeof(bert_families[0]); i++)
		if (strcmp(model_type, bert_families[i].model_type) == 0)
			return true;
	return false;
}

/*
 * Config, family, shapes, weights and tokenizer into m, its fingerprint into
 * hex.  tokenizer.json (9.3 MB for multilingual-e5-small) is read once, for
 * the tokenizer and the fingerprint.
 */
static NnStatus
load_model(Bert *m, const char *dir, const char *config_path, char hex[65], NnError *err)
{
	char		path[4096];
	char	   *json;
	size_t		len = 0;
	NnStatus	s;

	if ((s = hf_config_load(&m->cfg, config_path, err)) != NN_OK)
		return s;
	for (size_t i = 0; i < sizeof(bert_families) / sizeof(bert_families[0]); i++)
		if (strcmp(m->cfg.model_type, bert_families[i].model_type) == 0)
			m->fam = &bert_families[i];
	if (m->fam == NULL)
		return nn_fail(err, NN_ERR_FORMAT, "config.json: model_type \"%s\" is not bert, roberta, "
					   "xlm-roberta or distilbert", m->cfg.model_type);
	if ((s = check_config(&m->cfg, m->fam, err)) != NN_OK)
		return s;
	m->H = m->cfg.hidden_size;
	m->NH = m->cfg.num_attention_heads;
	m->F = m->cfg.intermediate_size;
	m->L = m->cfg.num_hidden_layers;
	m->ln_eps = (float) m->cfg.layer_norm_eps;
	m->relu = strcmp(m->cfg.hidden_act, "relu") == 0;
	m->pos_offset = m->fam->positions_after_padding ? m->cfg.pad_token_id + 1 : 0;
	m->layer = calloc((size_t) m->L, sizeof(BertLayer));
	if (m->layer == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory opening a BERT model");
	if ((s = hf_open_weights(&m->st, dir, err)) || (s = bind_weights(m, err)))
		return s;
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	json = hf_read_file(path, BERT_MAX_TOKENIZER_BYTES, &len);
	if ((s = open_tokenizer(m, dir, json, len, err)) == NN_OK)
		fingerprint(m, dir, json, len, hex);
	free(json);
	if (s != NN_OK)
		return s;
	m->pooling = default_pooling(m, dir);
	return NN_OK;
}

NnStatus
bert_open(Backbone **out, const char *dir, NnError *err)
{
	Bert	   *m;
	Backbone   *bb;
	char		path[4096];
	NnStatus	s;

	*out = NULL;
	if (dir == NULL || snprintf(path, sizeof(path), "%s/config.json", dir) >= (int) sizeof(path))
		return nn_fail(err, NN_ERR_ARG, "model directory path is missing or too long");
	m = calloc(1, sizeof(Bert));
	bb = calloc(1, sizeof(Backbone));
	if (m == NULL || bb == NULL)
	{
		free(m);
		free(bb);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory opening a BERT model");
	}
	if ((s = load_model(m, dir, path, bb->fingerprint, err)) != NN_OK)
	{
		bert_free(m);
		free(bb);
		return s;
	}
	bb->ops = &bert_ops[m->fam - bert_families];
	if (!safetensors_region(m->st, &bb->weights, &bb->weights_len))
		bb->weights = NULL;
	bb->vocab_size = m->cfg.vocab_size;
	bb->d_embed = m->H;
	bb->d_out = m->H;
	bb->max_tokens = m->cfg.max_position_embeddings - m->pos_offset;
	bb->max_positions = m->cfg.max_position_embeddings - m->pos_offset;
	bb->impl = m;
	*out = bb;
	return NN_OK;
}
