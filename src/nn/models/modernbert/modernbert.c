/*
 * modernbert.c: loading and running ModernBERT encoders (model and
 * interface in modernbert.h).
 *
 * Load as deberta.c does: config.json decides every shape, each tensor is
 * bound by name with that exact shape from the mapped safetensors file
 * (NN_ERR_FORMAT otherwise), PyTorch's (out, in) Linear weights are used as
 * they are.  Open also derives the RoPE tables of both attention kinds.
 *
 * Forward over packed rows (kernels.h): the valid rows of the padded input
 * are gathered, each keeping its column as position, and every product runs
 * over exactly those rows.  The run keeps what the input-backward reads --
 * each layer's input and both layer-norm statistics, the rotated q/k and v,
 * the attention probabilities and the GeGLU's pre-activations -- in buffers
 * allocated once by run_new; forward and backward never allocate.
 *
 * Until a run's first backward its forwards keep one layer's activations
 * only (every layer writes layer 0's slot, the layer inputs alternate
 * between the first two slots' inp), as bert.c's do: inference then writes
 * about 1/L of the per-layer memory, whose first-touch page faults would
 * otherwise be a large part of a batch's time.  The first backward on a
 * run recomputes the layers from the packed embeddings, keeping each one's,
 * and the run keeps every layer from then on: a training run pays one
 * extra forward, once.
 */
#include "models/modernbert/modernbert.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/sha256.h"
#include "formats/hf_config.h"
#include "formats/hf_checkpoint.h"
#include "formats/safetensors.h"
#include "models/modernbert/modernbert_attention.h"
#include "ops/gemm_bf16.h"
#include "ops/gemm_packed.h"
#include "ops/kernels.h"
#include "tokenizers/bpe.h"
#include "tokenizers/template.h"

#define MB_SAMPLE_BYTES 4096	/* fingerprinted bytes at each end of a tensor */
#define MB_MAX_TOKENIZER_BYTES ((size_t) 256 << 20)
#define MB_MAX_TOKENS 512		/* tokenize's limit (modernbert.h) */
#define MB_MAX_POSITIONS 8192	/* forward's limit: the RoPE tables' rows */

typedef struct MbLayer
{
	const float *attn_norm_w,
			   *attn_norm_b;	/* NULL weight on layer 0 (Identity) */
	const float *wqkv,
			   *bqkv;			/* attn.Wqkv (3H, H), (3H) or NULL */
	const float *wo,
			   *bo;				/* attn.Wo (H, H) */
	const float *mlp_norm_w,
			   *mlp_norm_b;
	const float *wi,
			   *bi;				/* mlp.Wi (2F, H) */
	const float *wo2,
			   *bo2;			/* mlp.Wo (H, F) */
	bool		sliding;
} MbLayer;

typedef struct ModernBert
{
	HfConfig	cfg;
	HfModernBertConfig mc;
	Safetensors *st;
	Bpe		   *bpe;
	TokTemplate template;
	int32_t		unk_id;
	int			H,
				NH,
				F,
				L;
	float		eps;
	const float *word_emb;		/* (vocab, H) */
	const float *emb_norm_w,
			   *emb_norm_b;
	const float *final_norm_w,
			   *final_norm_b;
	MbLayer    *layer;			/* (L) */
	float	   *zeros;			/* (H) the bias of a LayerNorm without one */
	float	   *rope;			/* cos, sin of global then local (4 x P x hd/2) */
	RopeAttention global,
				local;
} ModernBert;

typedef struct MbActs
{
	float	   *inp;			/* (N, H) layer input */
	float	   *an_mean,
			   *an_rstd;		/* attn_norm statistics */
	float	   *qkv;			/* (N, 3H) rotated q, k and v */
	float	   *att;			/* probabilities */
	float	   *h1;				/* (N, H) after the attention residual */
	float	   *mn_mean,
			   *mn_rstd;		/* mlp_norm statistics */
	float	   *wi;				/* (N, 2F) GeGLU pre-activations */
} MbActs;

typedef struct MbRun
{
	int			max_batch;
	int			max_seq;
	int			batch;
	int			seq_len;
	int			pool_skip;
	bool		keep_layers;	/* forwards keep every layer's activations (after a backward) */
	bool		bf16;			/* weight products in bfloat16 (run_use_bf16) */
	int		   *offsets;		/* (max_batch + 1) */
	int		   *rows;			/* (max_batch * max_seq) */
	int		   *pos;			/* (max_batch * max_seq) */
	float	   *emb_mean,
			   *emb_rstd;
	float	   *emb_in;			/* (N, H) packed X */
	MbActs	   *layer;			/* (L) */
	float	   *last;			/* (N, H) last layer output */
	float	   *fn_mean,
			   *fn_rstd;
	float	   *out;			/* (N, H) final_norm output */
	float	   *pooled;			/* (max_batch, H) */
	/* scratch */
	float	   *a;				/* (N, H) normed input / d(normed) */
	float	   *ctx;			/* (N, H) */
	float	   *g;				/* (N, F) GeGLU output / its gradient */
	float	   *dbig;			/* (N, max(2F, 3H)) */
	float	   *dh,
			   *dtmp;			/* (N, H) */
	float	   *dp;				/* (max_seq) */
	void	   *arena;
} MbRun;

/* ---- loading ------------------------------------------------------------------ */

static NnStatus
bind_layer(ModernBert *m, MbLayer *Ly, const char *prefix, int l, NnError *err)
{
	const Safetensors *st = m->st;
	const HfModernBertConfig *c = &m->mc;
	char		b[5][128];
	int			H = m->H,
				F = m->F;
	NnStatus	s;

	snprintf(b[0], sizeof(b[0]), "layers.%d.attn_norm", l);
	snprintf(b[1], sizeof(b[1]), "layers.%d.attn.Wqkv", l);
	snprintf(b[2], sizeof(b[2]), "layers.%d.attn.Wo", l);
	snprintf(b[3], sizeof(b[3]), "layers.%d.mlp_norm", l);
	snprintf(b[4], sizeof(b[4]), "layers.%d.mlp.Wi", l);
	Ly->attn_norm_w = Ly->attn_norm_b = NULL;
	if ((l > 0 && (s = hf_bind_weight_bias(st, &Ly->attn_norm_w, &Ly->attn_norm_b, prefix, b[0], H, 0,
							   c->norm_bias, err))) ||
		(s = hf_bind_weight_bias(st, &Ly->wqkv, &Ly->bqkv, prefix, b[1], 3 * H, H, c->attention_bias, err)) ||
		(s = hf_bind_weight_bias(st, &Ly->wo, &Ly->bo, prefix, b[2], H, H, c->attention_bias, err)) ||
		(s = hf_bind_weight_bias(st, &Ly->mlp_norm_w, &Ly->mlp_norm_b, prefix, b[3], H, 0, c->norm_bias,
					 err)) ||
		(s = hf_bind_weight_bias(st, &Ly->wi, &Ly->bi, prefix, b[4], 2 * F, H, c->mlp_bias, err)))
		return s;
	snprintf(b[4], sizeof(b[4]), "layers.%d.mlp.Wo", l);
	if ((s = hf_bind_weight_bias(st, &Ly->wo2, &Ly->bo2, prefix, b[4], H, F, c->mlp_bias, err)))
		return s;
	if (l > 0 && Ly->attn_norm_b == NULL)
		Ly->attn_norm_b = m->zeros;
	if (Ly->mlp_norm_b == NULL)
		Ly->mlp_norm_b = m->zeros;
	Ly->sliding = c->sliding[l];
	return NN_OK;
}

static NnStatus
bind_weights(ModernBert *m, NnError *err)
{
	const Safetensors *st = m->st;
	const char *prefix;
	int			H = m->H;
	NnStatus	s;

	/* ModernBertModel names, or ModernBertFor* names under "model." */
	prefix = safetensors_find(st, "model.embeddings.tok_embeddings.weight") != NULL &&
		safetensors_find(st, "embeddings.tok_embeddings.weight") == NULL ? "model." : "";
	if ((s = hf_bind(st, &m->word_emb, prefix, "embeddings.tok_embeddings.weight", 2,
				  m->cfg.vocab_size, H, err)) ||
		(s = hf_bind_weight_bias(st, &m->emb_norm_w, &m->emb_norm_b, prefix, "embeddings.norm", H, 0,
					 m->mc.norm_bias, err)) ||
		(s = hf_bind_weight_bias(st, &m->final_norm_w, &m->final_norm_b, prefix, "final_norm", H, 0,
					 m->mc.norm_bias, err)))
		return s;
	if (m->emb_norm_b == NULL)
		m->emb_norm_b = m->zeros;
	if (m->final_norm_b == NULL)
		m->final_norm_b = m->zeros;
	for (int l = 0; l < m->L; l++)
		if ((s = bind_layer(m, &m->layer[l], prefix, l, err)) != NN_OK)
			return s;
	return NN_OK;
}

static NnStatus
check_config(const ModernBert *m, NnError *err)
{
	const HfConfig *c = &m->cfg;

	if (strcmp(c->hidden_act, "gelu") != 0 && strcmp(c->hidden_act, "gelu_python") != 0)
		return nn_fail(err, NN_ERR_FORMAT, "config.json: hidden_activation \"%s\" is not "
					   "supported (gelu)", c->hidden_act);
	if ((c->hidden_size / c->num_attention_heads) % 2 != 0)
		return nn_fail(err, NN_ERR_FORMAT, "config.json: the head size %d is odd (RoPE needs "
					   "it even)", c->hidden_size / c->num_attention_heads);
	return NN_OK;
}

/* The RoPE tables of both attention kinds over every position. */
static NnStatus
build_rope(ModernBert *m, NnError *err)
{
	int			P = m->cfg.max_position_embeddings < MB_MAX_POSITIONS ?
		m->cfg.max_position_embeddings : MB_MAX_POSITIONS,
				half = m->H / m->NH / 2;
	size_t		per = (size_t) P * half;

	if ((m->rope = malloc(sizeof(float) * 4 * per)) == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory opening a ModernBERT model");
	rope_table(m->rope, m->rope + per, P, 2 * half, m->mc.global_rope_theta);
	rope_table(m->rope + 2 * per, m->rope + 3 * per, P, 2 * half, m->mc.local_rope_theta);
	m->global = (RopeAttention) {m->rope, m->rope + per, -1};
	m->local = (RopeAttention) {m->rope + 2 * per, m->rope + 3 * per, m->mc.local_attention / 2};
	return NN_OK;
}

static void
fingerprint(const ModernBert *m, const char *dir, char hex[65])
{
	Sha256		ctx;

	sha256_init(&ctx);
	sha256_update(&ctx, "modernbert", sizeof("modernbert"));
	hf_hash_file(&ctx, dir, "config.json");
	hf_hash_file(&ctx, dir, "tokenizer.json");
	safetensors_hash_sample(m->st, &ctx, MB_SAMPLE_BYTES);
	sha256_final_hex(&ctx, hex);
}

static void
modernbert_free(ModernBert *m)
{
	if (m == NULL)
		return;
	safetensors_close(m->st);
	bpe_free(m->bpe);
	free(m->layer);
	free(m->zeros);
	free(m->rope);
	free(m);
}

static void
modernbert_close(Backbone *bb)
{
	gemm_bf16_forget_weights();	/* packed copies of weights about to be unmapped */
	gemm_packed_forget_weights();
	modernbert_free(bb->impl);
	free(bb);
}

static int
encode_bpe(const void *tok, const char *text, size_t len, int32_t *ids, int max_ids)
{
	return bpe_encode(tok, text, len, ids, max_ids);
}

/* tokenizer.json: the byte-level BPE model and its post-processor template. */
static NnStatus
open_tokenizer(ModernBert *m, const char *dir, NnError *err)
{
	char		path[4096];
	size_t		len;
	char	   *json;
	NnStatus	s;

	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	json = hf_read_file(path, MB_MAX_TOKENIZER_BYTES, &len);
	if (json == NULL)
		return nn_fail(err, NN_ERR_IO, "cannot read \"%s\" (a ModernBERT model needs its "
					   "tokenizer.json)", path);
	s = bpe_from_json(&m->bpe, json, len, err);
	if (s == NN_OK)
		s = tok_template_from_json(&m->template, json, len, err);
	free(json);
	if (s != NN_OK)
		return s;
	m->unk_id = bpe_token_id(m->bpe, "[UNK]");
	m->unk_id = m->unk_id >= 0 && m->unk_id < m->cfg.vocab_size ? m->unk_id : 0;
	if (bpe_vocab_size(m->bpe) > m->cfg.vocab_size ||
		tok_template_max_id(&m->template) >= m->cfg.vocab_size)
		return nn_fail(err, NN_ERR_FORMAT, "the tokenizer has %d ids, the embedding table %d rows",
					   bpe_vocab_size(m->bpe), m->cfg.vocab_size);
	return NN_OK;
}

static NnStatus
load_model(ModernBert *m, const char *dir, const char *config_path, NnError *err)
{
	NnStatus	s;

	if ((s = hf_modernbert_config_load(&m->cfg, &m->mc, config_path, err)) != NN_OK)
		return s;
	if (strcmp(m->cfg.model_type, "modernbert") != 0)
		return nn_fail(err, NN_ERR_FORMAT, "config.json: model_type \"%s\" is not modernbert",
					   m->cfg.model_type);
	if ((s = check_config(m, err)) != NN_OK)
		return s;
	m->H = m->cfg.hidden_size;
	m->NH = m->cfg.num_attention_heads;
	m->F = m->cfg.intermediate_size;
	m->L = m->cfg.num_hidden_layers;
	m->eps = (float) m->mc.norm_eps;
	m->layer = calloc((size_t) m->L, sizeof(MbLayer));
	m->zeros = calloc((size_t) m->H, sizeof(float));
	if (m->layer == NULL || m->zeros == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory opening a ModernBERT model");
	if ((s = hf_open_weights(&m->st, dir, err)) || (s = bind_weights(m, err)) ||
		(s = build_rope(m, err)) || (s = open_tokenizer(m, dir, err)))
		return s;
	return NN_OK;
}

/* ---- tokens --------------------------------------------------------------------- */

static int
modernbert_tokenize(const Backbone *bb, const char *text, size_t len, int32_t *ids, int max_ids)
{
	const ModernBert *m = bb->impl;

	return tok_template_encode(&m->template, encode_bpe, m->bpe, text, len, NULL, 0,
							   ids, NULL, max_ids);
}

static int
modernbert_tokenize_pair(const Backbone *bb, const char *a, size_t alen, const char *b,
						 size_t blen, int32_t *ids, uint8_t *type_ids, int max_ids)
{
	const ModernBert *m = bb->impl;

	return tok_template_encode(&m->template, encode_bpe, m->bpe, a, alen,
							   b != NULL ? b : "", blen, ids, type_ids, max_ids);
}

static const char *
modernbert_token_piece(const Backbone *bb, int32_t id)
{
	return bpe_token(((const ModernBert *) bb->impl)->bpe, id);
}

/* Word-embedding rows of ids: negative ids are padding (zero row, mask 0), ids past the table [UNK]. */
static void
modernbert_embed_tokens(const Backbone *bb, const int32_t *ids, int n, float *x, uint8_t *mask)
{
	const ModernBert *m = bb->impl;

	embedding_rows(x, mask, m->word_emb, m->cfg.vocab_size, m->unk_id, m->H, ids, n);
}

/* ---- activation buffers ------------------------------------------------------- */

static size_t
layout_run(MbRun *run, char *base, const ModernBert *m)
{
	size_t		off = 0;
	size_t		R = (size_t) run->max_batch * run->max_seq;
	size_t		B = (size_t) run->max_batch,
				S = (size_t) run->max_seq;
	size_t		H = (size_t) m->H,
				F = (size_t) m->F;
	size_t		wide = 2 * F > 3 * H ? 2 * F : 3 * H;

	run->pos = arena_carve(base, &off, R);
	run->emb_in = arena_carve(base, &off, R * H);
	run->emb_mean = arena_carve(base, &off, R);
	run->emb_rstd = arena_carve(base, &off, R);
	for (int l = 0; l < m->L; l++)
	{
		MbActs	   *a = &run->layer[l];

		a->inp = arena_carve(base, &off, R * H);
		a->an_mean = arena_carve(base, &off, R);
		a->an_rstd = arena_carve(base, &off, R);
		a->qkv = arena_carve(base, &off, R * 3 * H);
		a->att = arena_carve(base, &off, B * m->NH * S * S);
		a->h1 = arena_carve(base, &off, R * H);
		a->mn_mean = arena_carve(base, &off, R);
		a->mn_rstd = arena_carve(base, &off, R);
		a->wi = arena_carve(base, &off, R * 2 * F);
	}
	run->last = arena_carve(base, &off, R * H);
	run->fn_mean = arena_carve(base, &off, R);
	run->fn_rstd = arena_carve(base, &off, R);
	run->out = arena_carve(base, &off, R * H);
	run->pooled = arena_carve(base, &off, B * H);
	run->a = arena_carve(base, &off, R * H);
	run->ctx = arena_carve(base, &off, R * H);
	run->g = arena_carve(base, &off, R * F);
	run->dbig = arena_carve(base, &off, R * wide);
	run->dh = arena_carve(base, &off, R * H);
	run->dtmp = arena_carve(base, &off, R * H);
	run->dp = arena_carve(base, &off, S);
	return off;
}

static void
modernbert_run_free(BackboneRun *brun)
{
	MbRun	   *run = (MbRun *) brun;

	if (run == NULL)
		return;
	free(run->arena);
	free(run->layer);
	free(run->offsets);
	free(run->rows);
	free(run);
}

static bool
shape_ok(const Backbone *bb, const ModernBert *m, int max_batch, int max_seq)
{
	return max_batch > 0 && max_seq > 0 && max_seq <= bb->max_positions &&
		max_batch <= (1 << 20) && (double) max_batch * max_seq * 2 * m->F <= 2147483647.0 &&
		(double) max_batch * m->NH * max_seq * max_seq * m->L <= (double) ((size_t) 1 << 38);
}

static size_t
modernbert_run_bytes(const Backbone *bb, int max_batch, int max_seq, int dec_seqs, int dec_len)
{
	const ModernBert *m = bb->impl;
	MbRun		run = {0};
	size_t		bytes;

	(void) dec_seqs;
	(void) dec_len;
	if (!shape_ok(bb, m, max_batch, max_seq))
		return SIZE_MAX;
	if ((run.layer = calloc((size_t) m->L, sizeof(MbActs))) == NULL)
		return SIZE_MAX;
	run.max_batch = max_batch;
	run.max_seq = max_seq;
	bytes = layout_run(&run, NULL, m);
	free(run.layer);
	return backbone_alloc_bytes(sizeof(MbRun)) + backbone_alloc_bytes(bytes) +
		backbone_alloc_bytes(sizeof(MbActs) * (size_t) m->L) +
		backbone_alloc_bytes(sizeof(int) * ((size_t) max_batch + 1)) +
		backbone_alloc_bytes(sizeof(int) * (size_t) max_batch * max_seq);
}

static BackboneRun *
modernbert_run_new(const Backbone *bb, int max_batch, int max_seq)
{
	const ModernBert *m = bb->impl;
	MbRun	   *run;
	size_t		bytes;

	if (!shape_ok(bb, m, max_batch, max_seq) || (run = calloc(1, sizeof(MbRun))) == NULL)
		return NULL;
	run->max_batch = max_batch;
	run->max_seq = max_seq;
	run->layer = calloc((size_t) m->L, sizeof(MbActs));
	run->offsets = malloc(sizeof(int) * ((size_t) max_batch + 1));
	run->rows = malloc(sizeof(int) * (size_t) max_batch * max_seq);
	if (run->layer == NULL || run->offsets == NULL || run->rows == NULL)
	{
		modernbert_run_free((BackboneRun *) run);
		return NULL;
	}
	bytes = layout_run(run, NULL, m);
	if ((run->arena = arena_alloc(bytes)) == NULL)
	{
		modernbert_run_free((BackboneRun *) run);
		return NULL;
	}
	layout_run(run, run->arena, m);
	return (BackboneRun *) run;
}

static bool
modernbert_run_pool_skip(BackboneRun *brun, int skip)
{
	((MbRun *) brun)->pool_skip = skip > 0 ? skip : 0;
	return true;
}

/* ---- forward -------------------------------------------------------------------- */

/*
 * One pre-norm layer over the N packed rows of inp into out, its other
 * activations into a (whose inp this does not read).
 */
static void
layer_forward(const ModernBert *m, int l, MbActs *a, MbRun *run, const float *inp, float *out,
			  int N, int B)
{
	const MbLayer *Ly = &m->layer[l];
	int			H = m->H,
				F = m->F;
	const float *ain = inp;

	/* attention block: h1 = inp + Attn(attn_norm(inp) Wqkv^T) Wo^T */
	if (Ly->attn_norm_w != NULL)
	{
		layernorm_forward(run->a, a->an_mean, a->an_rstd, inp, Ly->attn_norm_w,
						  Ly->attn_norm_b, N, H, m->eps);
		ain = run->a;
	}
	linear_product(run->bf16, a->qkv, ain, Ly->wqkv, Ly->bqkv, N, H, 3 * H, 3 * H);
	rope_attention_forward(run->ctx, a->att, a->qkv, run->pos, run->offsets, B, H, m->NH,
						   Ly->sliding ? &m->local : &m->global);
	linear_product(run->bf16, a->h1, run->ctx, Ly->wo, Ly->bo, N, H, H, H);
	residual_forward(a->h1, a->h1, inp, (size_t) N * H);

	/* GeGLU block: out = h1 + (GELU(u) * g) Wo2^T, [u, g] = mlp_norm(h1) Wi^T */
	layernorm_forward(run->a, a->mn_mean, a->mn_rstd, a->h1, Ly->mlp_norm_w, Ly->mlp_norm_b,
					  N, H, m->eps);
	linear_product(run->bf16, a->wi, run->a, Ly->wi, Ly->bi, N, H, 2 * F, 2 * F);
	for (int i = 0; i < N; i++)
	{
		const float *u = a->wi + (size_t) i * 2 * F;
		float	   *g = run->g + (size_t) i * F;

		gelu_forward(g, u, (size_t) F);
		for (int j = 0; j < F; j++)
			g[j] *= u[F + j];
	}
	linear_product(run->bf16, out, run->g, Ly->wo2, Ly->bo2, N, F, H, H);
	residual_forward(out, out, a->h1, (size_t) N * H);
}

/*
 * Layer l's input (l = L: the last layer's output): its own slot's inp when
 * the run keeps every layer, else the first two slots' in turn.
 */
static float *
layer_input(const ModernBert *m, const MbRun *run, int l)
{
	if (l == m->L)
		return run->last;
	return run->layer[run->keep_layers ? l : l & 1].inp;
}

/*
 * LN_emb of the N packed rows of emb_in, then the layers, each into its
 * own activation slot when the run keeps them all, else into slot 0.
 */
static void
run_layers(const ModernBert *m, MbRun *run, int N, int B)
{
	layernorm_forward(layer_input(m, run, 0), run->emb_mean, run->emb_rstd, run->emb_in,
					  m->emb_norm_w, m->emb_norm_b, N, m->H, m->eps);
	for (int l = 0; l < m->L; l++)
		layer_forward(m, l, &run->layer[run->keep_layers ? l : 0], run, layer_input(m, run, l),
					  layer_input(m, run, l + 1), N, B);
}

/* The rows of each sequence (each keeping its column as position) into run. */
static int
pack_rows(MbRun *run, const uint8_t *mask, int batch, int seq_len)
{
	int			N = 0;

	for (int b = 0; b < batch; b++)
	{
		run->offsets[b] = N;
		for (int t = 0; t < seq_len; t++)
			if (mask[(size_t) b * seq_len + t])
			{
				run->pos[N] = t;
				run->rows[N++] = b * seq_len + t;
			}
	}
	run->offsets[batch] = N;
	return N;
}

static NnStatus
modernbert_forward(const Backbone *bb, BackboneRun *brun, const float *x, const uint8_t *mask,
				   int batch, int seq_len, float *out, NnError *err)
{
	const ModernBert *m = bb->impl;
	MbRun	   *run = (MbRun *) brun;
	int			H = m->H,
				N;

	if (run == NULL)
		return nn_fail(err, NN_ERR_ARG, "no activation buffers (run is NULL)");
	if (batch < 0 || batch > run->max_batch || seq_len < 0 || seq_len > run->max_seq)
		return nn_fail(err, NN_ERR_ARG, "batch of %d x %d positions exceeds the run's %d x %d",
					   batch, seq_len, run->max_batch, run->max_seq);
	run->batch = batch;
	run->seq_len = seq_len;
	if (batch == 0)
		return NN_OK;
	N = pack_rows(run, mask, batch, seq_len);
	for (int i = 0; i < N; i++)
		memcpy(run->emb_in + (size_t) i * H, x + (size_t) run->rows[i] * H, sizeof(float) * H);
	run_layers(m, run, N, batch);
	layernorm_forward(run->out, run->fn_mean, run->fn_rstd, run->last, m->final_norm_w,
					  m->final_norm_b, N, H, m->eps);
	/* an empty sequence pools zeros */
	meanpool_tail_forward(run->pooled, run->out, run->offsets, batch, H, run->pool_skip);
	memcpy(out, run->pooled, sizeof(float) * (size_t) batch * H);
	return NN_OK;
}

void
modernbert_last_hidden(const Backbone *bb, const BackboneRun *brun, float *hidden)
{
	const ModernBert *m = bb->impl;
	const MbRun *run = (const MbRun *) brun;
	int			H = m->H;
	int			N = run->batch > 0 ? run->offsets[run->batch] : 0;

	memset(hidden, 0, sizeof(float) * (size_t) run->batch * run->seq_len * H);
	for (int i = 0; i < N; i++)
		memcpy(hidden + (size_t) run->rows[i] * H, run->out + (size_t) i * H, sizeof(float) * H);
}

/* ---- backward ------------------------------------------------------------------- */

/* Input-backward of layer_forward: dh (N, H) = d(out) on entry, d(inp) on exit. */
static void
layer_backward(const ModernBert *m, int l, MbRun *run, float *dh, int N, int B)
{
	const MbLayer *Ly = &m->layer[l];
	const MbActs *a = &run->layer[l];
	int			H = m->H,
				F = m->F;
	size_t		NH_ = (size_t) N * H;
	float	   *dg = run->g,
			   *dbig = run->dbig,
			   *dtmp = run->dtmp;

	/* out = h1 + GeGLU(mlp_norm(h1)): dh1 = dh + mlp_norm'(Wi'(GeGLU'(dh Wo2))) */
	memset(dg, 0, sizeof(float) * (size_t) N * F);
	linear_product_backward(run->bf16, dg, dh, Ly->wo2, N, F, H, H);
	for (int i = 0; i < N; i++)
	{
		const float *u = a->wi + (size_t) i * 2 * F;
		float	   *du = dbig + (size_t) i * 2 * F;
		const float *dgi = dg + (size_t) i * F;

		/* d(gate) = dg GELU(u), d(u) = dg gate GELU'(u) */
		gelu_forward(du + F, u, (size_t) F);
		for (int j = 0; j < F; j++)
		{
			du[F + j] *= dgi[j];
			du[j] = dgi[j] * u[F + j];
		}
		gelu_backward(du, du, u, (size_t) F);
	}
	memset(run->a, 0, sizeof(float) * NH_);
	linear_product_backward(run->bf16, run->a, dbig, Ly->wi, N, H, 2 * F, 2 * F);
	layernorm_backward(dh, run->a, a->h1, Ly->mlp_norm_w, a->mn_mean, a->mn_rstd, N, H);

	/* h1 = inp + Attn(attn_norm(inp)) Wo^T: d(inp) = dh1 + attn_norm'(Wqkv'(Attn'(dh1 Wo))) */
	memset(run->ctx, 0, sizeof(float) * NH_);
	linear_product_backward(run->bf16, run->ctx, dh, Ly->wo, N, H, H, H);
	rope_attention_backward(dbig, run->dp, run->ctx, a->qkv, a->att, run->pos, run->offsets, B,
							H, m->NH, Ly->sliding ? &m->local : &m->global);
	memset(dtmp, 0, sizeof(float) * NH_);
	linear_product_backward(run->bf16, dtmp, dbig, Ly->wqkv, N, H, 3 * H, 3 * H);
	if (Ly->attn_norm_w != NULL)
		layernorm_backward(dh, dtmp, a->inp, Ly->attn_norm_w, a->an_mean, a->an_rstd, N, H);
	else
		residual_forward(dh, dh, dtmp, NH_);
}

NnStatus
modernbert_backward_full(const Backbone *bb, BackboneRun *brun, const float *dpooled,
						 const float *dhidden, float *dx, NnError *err)
{
	const ModernBert *m = bb->impl;
	MbRun	   *run = (MbRun *) brun;
	int			H = m->H,
				B,
				N;

	if (run == NULL)
		return nn_fail(err, NN_ERR_ARG, "no activation buffers (run is NULL)");
	B = run->batch;
	if (B == 0)
		return NN_OK;
	N = run->offsets[B];
	memset(dx, 0, sizeof(float) * (size_t) B * run->seq_len * H);
	if (N == 0)
		return NN_OK;
	if (!run->keep_layers)
	{
		/* the forward kept one layer: again, keeping all (the same numbers) */
		run->keep_layers = true;
		run_layers(m, run, N, B);
	}

	/* d(final_norm output) of the packed rows: the direct part, then the mean's */
	memset(run->dtmp, 0, sizeof(float) * (size_t) N * H);
	if (dhidden != NULL)
		for (int i = 0; i < N; i++)
			for (int j = 0; j < H; j++)
				run->dtmp[(size_t) i * H + j] += dhidden[(size_t) run->rows[i] * H + j];
	if (dpooled != NULL)
		meanpool_tail_backward(run->dtmp, dpooled, run->offsets, B, H, run->pool_skip);
	memset(run->dh, 0, sizeof(float) * (size_t) N * H);
	layernorm_backward(run->dh, run->dtmp, run->last, m->final_norm_w, run->fn_mean,
					   run->fn_rstd, N, H);
	for (int l = m->L - 1; l >= 0; l--)
		layer_backward(m, l, run, run->dh, N, B);

	/* layer 0 input = LN_emb(X): dX on the packed rows */
	memset(run->dtmp, 0, sizeof(float) * (size_t) N * H);
	layernorm_backward(run->dtmp, run->dh, run->emb_in, m->emb_norm_w, run->emb_mean,
					   run->emb_rstd, N, H);
	embed_sum_backward(dx, run->dtmp, run->rows, N, H);
	return NN_OK;
}

static NnStatus
modernbert_backward(const Backbone *bb, BackboneRun *run, const float *dout, float *dx,
					NnError *err)
{
	return modernbert_backward_full(bb, run, dout, NULL, dx, err);
}

/* ---- open ------------------------------------------------------------------------ */

static bool
modernbert_run_use_bf16(BackboneRun *brun, bool on)
{
	MbRun *run = (MbRun *) brun;

	run->bf16 = on && gemm_bf16_usable(32, 32);	/* shapes that do not suit stay float */
	return run->bf16;
}

static const BackboneOps modernbert_ops = {
	.family = "modernbert",
	.tokenize = modernbert_tokenize,
	.tokenize_pair = modernbert_tokenize_pair,
	.token_piece = modernbert_token_piece,
	.embed_tokens = modernbert_embed_tokens,
	.run_new = modernbert_run_new,
	.run_bytes = modernbert_run_bytes,
	.run_free = modernbert_run_free,
	.forward = modernbert_forward,
	.backward = modernbert_backward,
	.run_use_bf16 = modernbert_run_use_bf16,
	.run_pool_skip = modernbert_run_pool_skip,
	.close = modernbert_close,
};

NnStatus
modernbert_open(Backbone **out, const char *dir, NnError *err)
{
	ModernBert *m;
	Backbone   *bb;
	char		path[4096];
	NnStatus	s;

	*out = NULL;
	if (dir == NULL || snprintf(path, sizeof(path), "%s/config.json", dir) >= (int) sizeof(path))
		return nn_fail(err, NN_ERR_ARG, "model directory path is missing or too long");
	m = calloc(1, sizeof(ModernBert));
	bb = calloc(1, sizeof(Backbone));
	if (m == NULL || bb == NULL)
	{
		free(m);
		free(bb);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory opening a ModernBERT model");
	}
	if ((s = load_model(m, dir, path, err)) != NN_OK)
	{
		modernbert_free(m);
		free(bb);
		return s;
	}
	bb->ops = &modernbert_ops;
	if (!safetensors_region(m->st, &bb->weights, &bb->weights_len))
		bb->weights = NULL;
	bb->vocab_size = m->cfg.vocab_size;
	bb->d_embed = m->H;
	bb->d_out = m->H;
	bb->max_tokens = m->cfg.max_position_embeddings < MB_MAX_TOKENS ?
		m->cfg.max_position_embeddings : MB_MAX_TOKENS;
	bb->max_positions = m->cfg.max_position_embeddings < MB_MAX_POSITIONS ?
		m->cfg.max_position_embeddings : MB_MAX_POSITIONS;
	fingerprint(m, dir, bb->fingerprint);
	bb->impl = m;
	*out = bb;
	return NN_OK;
}
