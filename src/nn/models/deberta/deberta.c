/*
 * deberta.c: loading and running DeBERTa-v2/v3 encoders (model and
 * interface in deberta.h).
 *
 * Load as bert.c does: config.json decides every shape, each tensor is
 * bound by name with that exact shape from the mapped safetensors file
 * (NN_ERR_FORMAT otherwise), PyTorch's (out, in) Linear weights are used as
 * they are.  Open also derives what the frozen model makes constant: the
 * table row of every relative distance, and per layer the relative
 * embeddings through the key and query projections.
 *
 * Forward over packed rows (kernels.h): the valid rows of the padded input
 * are gathered, each keeping its column as position, and every product runs
 * over exactly those rows.  The run keeps what the input-backward reads --
 * the embedding sum and every layer-norm input with its mean/rstd, q/k/v,
 * the attention probabilities and the FFN's pre-activation -- in buffers
 * allocated once by run_new; forward and backward never allocate.
 *
 * Until a run's first backward its forwards keep one layer's activations
 * only (every layer writes layer 0's slot), as bert.c's do: inference then
 * writes 1/L of the per-layer memory, whose first-touch page faults would
 * otherwise be a large part of a batch's time.  The first backward on a
 * run recomputes the layers from x0, keeping each one's, and the run keeps
 * every layer from then on: a training run pays one extra forward, once.
 */
#include "models/deberta/deberta.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/sha256.h"
#include "formats/hf_config.h"
#include "formats/hf_checkpoint.h"
#include "formats/safetensors.h"
#include "models/deberta/deberta_attention.h"
#include "ops/gemm_bf16.h"
#include "ops/gemm_packed.h"
#include "ops/kernels.h"
#include "tokenizers/template.h"
#include "tokenizers/unigram.h"

#define DEBERTA_SAMPLE_BYTES 4096	/* fingerprinted bytes at each end of a tensor */
#define DEBERTA_MAX_TOKENIZER_BYTES ((size_t) 256 << 20)
#define DEBERTA_MAX_TABLE_ROWS 65536	/* 2S: relative embedding rows */

typedef struct DebertaLayer
{
	const float *wq,
			   *bq;				/* attention.self.query_proj (H, H), (H) */
	const float *wk,
			   *bk;				/* attention.self.key_proj */
	const float *wv,
			   *bv;				/* attention.self.value_proj */
	const float *wpk,
			   *bpk;			/* pos_key_proj, or key_proj with share_att_key */
	const float *wpq,
			   *bpq;			/* pos_query_proj, or query_proj */
	const float *wo,
			   *bo;				/* attention.output.dense */
	const float *ln1_w,
			   *ln1_b;			/* attention.output.LayerNorm */
	const float *w1,
			   *b1;				/* intermediate.dense (F, H), (F) */
	const float *w2,
			   *b2;				/* output.dense (H, F), (H) */
	const float *ln2_w,
			   *ln2_b;			/* output.LayerNorm */
} DebertaLayer;

typedef struct Deberta
{
	HfConfig	cfg;
	HfDebertaConfig dc;
	Safetensors *st;
	HfUnigram  *unigram;
	TokTemplate template;
	int32_t		unk_id;
	int			H,
				NH,
				F,
				L;				/* hidden, heads, FFN width, layers */
	float		ln_eps;
	bool		relu;			/* hidden_act "relu" instead of GELU */
	int			span;			/* S: the table has 2S rows */
	const float *word_emb;		/* (vocab, H) */
	const float *pos_emb;		/* (max_positions, H) with position_biased_input, else NULL */
	const float *type_emb;		/* (type_vocab, H), NULL without token types */
	const float *emb_ln_w,
			   *emb_ln_b;		/* embeddings.LayerNorm */
	const float *rel_emb;		/* encoder.rel_embeddings (2S, H) */
	const float *rel_ln_w,
			   *rel_ln_b;		/* encoder.LayerNorm, NULL without norm_rel_ebd */
	DebertaLayer *layer;		/* (L) */
	float	   *rel_k,
			   *rel_q;			/* (L, 2S, H) projected tables, NULL when unused */
	int32_t    *rel_row;		/* (2 max_dist + 1) table row of each distance */
	DisentangledTables *tables; /* (L) */
} Deberta;

/* One layer's activations over N packed rows, kept for the backward pass. */
typedef struct DebertaActs
{
	float	   *qkv;			/* (N, 3H) */
	float	   *att;			/* probabilities (attention_cache_size) */
	float	   *res1;			/* (N, H) LN1 input */
	float	   *ln1_mean,
			   *ln1_rstd;
	float	   *fc;				/* (N, F) FFN pre-activation */
	float	   *res2;			/* (N, H) LN2 input */
	float	   *ln2_mean,
			   *ln2_rstd;
} DebertaActs;

typedef struct DebertaRun
{
	int			max_batch;
	int			max_seq;
	int			batch;			/* shape of the last forward */
	int			seq_len;
	const uint8_t *types;		/* token type ids for the next forward */
	bool		uses_types;
	bool		keep_layers;	/* forwards keep every layer's activations (after a backward) */
	bool		bf16;			/* weight products in bfloat16 (run_use_bf16) */
	int		   *offsets;		/* (max_batch + 1) */
	int		   *rows;			/* (max_batch * max_seq) b * seq_len + t of each packed row */
	int		   *pos;			/* (max_batch * max_seq) t of each packed row */
	float	   *emb_sum;		/* (N, H) embedding LN input */
	float	   *emb_mean,
			   *emb_rstd;
	float	   *x0;				/* (N, H) layer 0 input */
	DebertaActs *layer;			/* (L) */
	float	   *h[2];			/* (N, H) layer outputs, alternating */
	float	   *pooled;			/* (max_batch, H) */
	/* scratch, dead between calls */
	float	   *ctx;			/* (N, H) heads / d(heads) */
	float	   *hmid;			/* (N, H) LN1 output */
	float	   *act;			/* (N, max(F, 3H)) FFN activation, d(fc), d(qkv) */
	float	   *dtmp;			/* (N, H) */
	float	   *att_scratch;	/* deberta_attention_scratch */
	void	   *arena;
} DebertaRun;

/* ---- relative positions --------------------------------------------------------- */

int
deberta_log_bucket(int d, int buckets, int max_position)
{
	int			mid = buckets / 2;
	int			a = d < 0 ? -d : d;
	float		ratio;

	if (a <= mid)
		return d;
	/* in float32, as make_log_bucket_position computes it in PyTorch */
	ratio = logf((float) a / (float) mid) /
		logf((float) ((double) (max_position - 1) / mid)) * (float) (mid - 1);
	return (d < 0 ? -1 : 1) * ((int) ceilf(ratio) + mid);
}

/* rel_row[d + max_dist] = clamp(bucket(d) + S, 0, 2S - 1) for |d| <= max_dist. */
static NnStatus
build_rel_rows(Deberta *m, int max_dist, NnError *err)
{
	int			M = m->dc.max_relative_positions >= 1 ? m->dc.max_relative_positions :
		m->cfg.max_position_embeddings;
	int			S = m->span;

	m->rel_row = malloc(sizeof(int32_t) * (2 * (size_t) max_dist + 1));
	if (m->rel_row == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory opening a DeBERTa model");
	for (int d = -max_dist; d <= max_dist; d++)
	{
		int			r = (m->dc.position_buckets > 0 ? deberta_log_bucket(d, S, M) : d) + S;

		m->rel_row[d + max_dist] = r < 0 ? 0 : r > 2 * S - 1 ? 2 * S - 1 : r;
	}
	return NN_OK;
}

/*
 * R = LN_rel(rel_embeddings) through each layer's key and query
 * projections (the terms pos_att_type names), and the attention tables.
 */
static NnStatus
build_rel_tables(Deberta *m, NnError *err)
{
	size_t		rows = 2 * (size_t) m->span,
				per = rows * m->H;
	float	   *R = malloc(sizeof(float) * per),
			   *mean = malloc(sizeof(float) * rows),
			   *rstd = malloc(sizeof(float) * rows);
	int			factor = 1 + (m->dc.c2p ? 1 : 0) + (m->dc.p2c ? 1 : 0);
	bool		rel = m->dc.relative_attention;

	m->tables = calloc((size_t) m->L, sizeof(DisentangledTables));
	if (rel && m->dc.c2p)
		m->rel_k = malloc(sizeof(float) * per * m->L);
	if (rel && m->dc.p2c)
		m->rel_q = malloc(sizeof(float) * per * m->L);
	if (R == NULL || mean == NULL || rstd == NULL || m->tables == NULL ||
		(rel && m->dc.c2p && m->rel_k == NULL) || (rel && m->dc.p2c && m->rel_q == NULL))
	{
		free(R);
		free(mean);
		free(rstd);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory opening a DeBERTa model");
	}
	if (m->rel_ln_w != NULL)
		layernorm_forward(R, mean, rstd, m->rel_emb, m->rel_ln_w, m->rel_ln_b, (int) rows, m->H,
						  m->ln_eps);
	else
		memcpy(R, m->rel_emb, sizeof(float) * per);
	for (int l = 0; l < m->L; l++)
	{
		DisentangledTables *t = &m->tables[l];
		const DebertaLayer *Ly = &m->layer[l];

		if (m->rel_k != NULL)
		{
			t->pk = m->rel_k + per * l;
			linear_forward(m->rel_k + per * l, R, Ly->wpk, Ly->bpk, (int) rows, m->H, m->H, m->H);
		}
		if (m->rel_q != NULL)
		{
			t->pq = m->rel_q + per * l;
			linear_forward(m->rel_q + per * l, R, Ly->wpq, Ly->bpq, (int) rows, m->H, m->H, m->H);
		}
		t->rel = m->rel_row;
		t->max_dist = m->cfg.max_position_embeddings - 1;
		t->scale = 1.0f / sqrtf((float) (m->H / m->NH) * (float) factor);
	}
	free(R);
	free(mean);
	free(rstd);
	return NN_OK;
}

/* ---- loading ------------------------------------------------------------------ */

static NnStatus
bind_layer(const Deberta *m, DebertaLayer *Ly, const char *prefix, int l, NnError *err)
{
	const Safetensors *st = m->st;
	static const char *const names[] = {"attention.self.query_proj",
		"attention.self.key_proj", "attention.self.value_proj", "attention.output.dense",
		"attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm",
	"attention.self.pos_key_proj", "attention.self.pos_query_proj"};
	char		b[10][128];
	int			H = m->H,
				F = m->F;
	NnStatus	s;

	for (int i = 0; i < 10; i++)
		snprintf(b[i], sizeof(b[i]), "encoder.layer.%d.%s", l, names[i]);
	if ((s = hf_bind_weight_bias(st, &Ly->wq, &Ly->bq, prefix, b[0], H, H, true, err)) ||
		(s = hf_bind_weight_bias(st, &Ly->wk, &Ly->bk, prefix, b[1], H, H, true, err)) ||
		(s = hf_bind_weight_bias(st, &Ly->wv, &Ly->bv, prefix, b[2], H, H, true, err)) ||
		(s = hf_bind_weight_bias(st, &Ly->wo, &Ly->bo, prefix, b[3], H, H, true, err)) ||
		(s = hf_bind_weight_bias(st, &Ly->ln1_w, &Ly->ln1_b, prefix, b[4], H, 0, true, err)) ||
		(s = hf_bind_weight_bias(st, &Ly->w1, &Ly->b1, prefix, b[5], F, H, true, err)) ||
		(s = hf_bind_weight_bias(st, &Ly->w2, &Ly->b2, prefix, b[6], H, F, true, err)) ||
		(s = hf_bind_weight_bias(st, &Ly->ln2_w, &Ly->ln2_b, prefix, b[7], H, 0, true, err)))
		return s;
	/* the position projections: the layer's own with share_att_key */
	Ly->wpk = Ly->wk, Ly->bpk = Ly->bk, Ly->wpq = Ly->wq, Ly->bpq = Ly->bq;
	if (!m->dc.relative_attention || m->dc.share_att_key)
		return NN_OK;
	if ((m->dc.c2p && (s = hf_bind_weight_bias(st, &Ly->wpk, &Ly->bpk, prefix, b[8], H, H, true, err))) ||
		(m->dc.p2c && (s = hf_bind_weight_bias(st, &Ly->wpq, &Ly->bpq, prefix, b[9], H, H, true, err))))
		return s;
	return NN_OK;
}

/* Bind every tensor the forward pass reads. */
static NnStatus
bind_weights(Deberta *m, NnError *err)
{
	const Safetensors *st = m->st;
	const char *prefix;
	int			H = m->H;
	NnStatus	s;

	/* DebertaV2Model names, or DebertaV2For* names under "deberta." */
	prefix = safetensors_find(st, "deberta.embeddings.word_embeddings.weight") != NULL &&
		safetensors_find(st, "embeddings.word_embeddings.weight") == NULL ? "deberta." : "";
	if ((s = hf_bind(st, &m->word_emb, prefix, "embeddings.word_embeddings.weight", 2,
				  m->cfg.vocab_size, H, err)) ||
		(s = hf_bind_weight_bias(st, &m->emb_ln_w, &m->emb_ln_b, prefix, "embeddings.LayerNorm", H, 0, true, err)))
		return s;
	if (m->dc.position_biased_input &&
		(s = hf_bind(st, &m->pos_emb, prefix, "embeddings.position_embeddings.weight", 2,
				  m->cfg.max_position_embeddings, H, err)))
		return s;
	if (m->cfg.type_vocab_size > 0 &&
		(s = hf_bind(st, &m->type_emb, prefix, "embeddings.token_type_embeddings.weight", 2,
				  m->cfg.type_vocab_size, H, err)))
		return s;
	if (m->dc.relative_attention &&
		((s = hf_bind(st, &m->rel_emb, prefix, "encoder.rel_embeddings.weight", 2, 2 * m->span, H,
				   err)) ||
		 (m->dc.norm_rel_layer_norm &&
		  (s = hf_bind_weight_bias(st, &m->rel_ln_w, &m->rel_ln_b, prefix, "encoder.LayerNorm", H, 0, true, err)))))
		return s;
	for (int l = 0; l < m->L; l++)
		if ((s = bind_layer(m, &m->layer[l], prefix, l, err)) != NN_OK)
			return s;
	return NN_OK;
}

/* The config fields this file depends on, and the relative table's span S. */
static NnStatus
check_config(Deberta *m, NnError *err)
{
	const HfConfig *c = &m->cfg;
	const HfDebertaConfig *d = &m->dc;
	int			M = d->max_relative_positions >= 1 ? d->max_relative_positions :
		c->max_position_embeddings;

	if (strcmp(c->hidden_act, "gelu") != 0 && strcmp(c->hidden_act, "gelu_python") != 0 &&
		strcmp(c->hidden_act, "relu") != 0)
		return nn_fail(err, NN_ERR_FORMAT,
					   "config.json: hidden_act \"%s\" is not supported (gelu, relu)", c->hidden_act);
	if (d->conv_kernel_size > 0)
		return nn_fail(err, NN_ERR_FORMAT, "config.json: conv_kernel_size %d is not supported "
					   "(the convolution layer of deberta-v2-xlarge)", d->conv_kernel_size);
	if (d->embedding_size != c->hidden_size)
		return nn_fail(err, NN_ERR_FORMAT, "config.json: embedding_size %d differs from "
					   "hidden_size %d (not supported)", d->embedding_size, c->hidden_size);
	if (d->attention_head_size * c->num_attention_heads != c->hidden_size)
		return nn_fail(err, NN_ERR_FORMAT, "config.json: attention_head_size %d is not "
					   "hidden_size / num_attention_heads (not supported)", d->attention_head_size);
	m->span = d->position_buckets > 0 ? d->position_buckets : M;
	if (d->relative_attention && 2 * (long) m->span > DEBERTA_MAX_TABLE_ROWS)
		return nn_fail(err, NN_ERR_FORMAT, "config.json: %d relative positions are too many",
					   m->span);
	if (d->relative_attention && d->position_buckets > 0 && M <= d->position_buckets / 2 + 1)
		return nn_fail(err, NN_ERR_FORMAT, "config.json: max_relative_positions %d leaves no "
					   "room for %d position buckets", M, d->position_buckets);
	return NN_OK;
}

/* SHA-256 of the family, config.json, tokenizer.json and samples of every tensor. */
static void
fingerprint(const Deberta *m, const char *dir, char hex[65])
{
	Sha256		ctx;

	sha256_init(&ctx);
	sha256_update(&ctx, "deberta-v2", sizeof("deberta-v2"));
	hf_hash_file(&ctx, dir, "config.json");
	hf_hash_file(&ctx, dir, "tokenizer.json");
	safetensors_hash_sample(m->st, &ctx, DEBERTA_SAMPLE_BYTES);
	sha256_final_hex(&ctx, hex);
}

static void
deberta_free(Deberta *m)
{
	if (m == NULL)
		return;
	safetensors_close(m->st);
	hf_unigram_free(m->unigram);
	free(m->layer);
	free(m->rel_k);
	free(m->rel_q);
	free(m->rel_row);
	free(m->tables);
	free(m);
}

static void
deberta_close(Backbone *bb)
{
	gemm_bf16_forget_weights();	/* packed copies of weights about to be unmapped */
	gemm_packed_forget_weights();
	deberta_free(bb->impl);
	free(bb);
}

/* The Unigram tokenizer without specials (TokEncodeFn). */
static int
encode_unigram(const void *tok, const char *text, size_t len, int32_t *ids, int max_ids)
{
	return hf_unigram_encode(tok, text, len, 0, ids, NULL, max_ids);
}

/* tokenizer.json: the Unigram model and its post-processor template. */
static NnStatus
open_tokenizer(Deberta *m, const char *dir, NnError *err)
{
	char		path[4096];
	size_t		len;
	char	   *json;
	NnStatus	s;

	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	json = hf_read_file(path, DEBERTA_MAX_TOKENIZER_BYTES, &len);
	if (json == NULL)
		return nn_fail(err, NN_ERR_IO, "cannot read \"%s\" (a DeBERTa model needs its "
					   "tokenizer.json; transformers writes it from spm.model)", path);
	s = hf_unigram_from_json(&m->unigram, json, len, err);
	if (s == NN_OK)
		s = tok_template_from_json(&m->template, json, len, err);
	free(json);
	if (s != NN_OK)
		return s;
	m->unk_id = hf_unigram_unk_id(m->unigram);
	m->unk_id = m->unk_id >= 0 && m->unk_id < m->cfg.vocab_size ? m->unk_id : 0;
	if (hf_unigram_vocab_size(m->unigram) > m->cfg.vocab_size ||
		tok_template_max_id(&m->template) >= m->cfg.vocab_size)
		return nn_fail(err, NN_ERR_FORMAT, "the tokenizer has %d ids, the embedding table %d rows",
					   hf_unigram_vocab_size(m->unigram), m->cfg.vocab_size);
	return NN_OK;
}

/* Config, shapes, weights, derived tables and tokenizer into m. */
static NnStatus
load_model(Deberta *m, const char *dir, const char *config_path, NnError *err)
{
	NnStatus	s;

	if ((s = hf_deberta_config_load(&m->cfg, &m->dc, config_path, err)) != NN_OK)
		return s;
	if (strcmp(m->cfg.model_type, "deberta-v2") != 0)
		return nn_fail(err, NN_ERR_FORMAT, "config.json: model_type \"%s\" is not deberta-v2",
					   m->cfg.model_type);
	if ((s = check_config(m, err)) != NN_OK)
		return s;
	m->H = m->cfg.hidden_size;
	m->NH = m->cfg.num_attention_heads;
	m->F = m->cfg.intermediate_size;
	m->L = m->cfg.num_hidden_layers;
	m->ln_eps = (float) m->cfg.layer_norm_eps;
	m->relu = strcmp(m->cfg.hidden_act, "relu") == 0;
	m->layer = calloc((size_t) m->L, sizeof(DebertaLayer));
	if (m->layer == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory opening a DeBERTa model");
	if ((s = hf_open_weights(&m->st, dir, err)) || (s = bind_weights(m, err)) ||
		(s = build_rel_rows(m, m->cfg.max_position_embeddings - 1, err)) ||
		(s = open_tokenizer(m, dir, err)))
		return s;
	if (!m->dc.relative_attention)
	{
		/* no position terms: the tables only carry the scale */
		m->tables = calloc((size_t) m->L, sizeof(DisentangledTables));
		if (m->tables == NULL)
			return nn_fail(err, NN_ERR_NOMEM, "out of memory opening a DeBERTa model");
		for (int l = 0; l < m->L; l++)
		{
			m->tables[l].rel = m->rel_row;
			m->tables[l].max_dist = m->cfg.max_position_embeddings - 1;
			m->tables[l].scale = 1.0f / sqrtf((float) (m->H / m->NH) *
											  (float) (1 + m->dc.c2p + m->dc.p2c));
		}
		return NN_OK;
	}
	return build_rel_tables(m, err);
}

/* ---- tokens --------------------------------------------------------------------- */

static int
deberta_tokenize(const Backbone *bb, const char *text, size_t len, int32_t *ids, int max_ids)
{
	const Deberta *m = bb->impl;

	return tok_template_encode(&m->template, encode_unigram, m->unigram, text, len, NULL, 0,
							   ids, NULL, max_ids);
}

static int
deberta_tokenize_pair(const Backbone *bb, const char *a, size_t alen, const char *b,
					  size_t blen, int32_t *ids, uint8_t *type_ids, int max_ids)
{
	const Deberta *m = bb->impl;

	return tok_template_encode(&m->template, encode_unigram, m->unigram, a, alen,
							   b != NULL ? b : "", blen, ids, type_ids, max_ids);
}

static const char *
deberta_token_piece(const Backbone *bb, int32_t id)
{
	return hf_unigram_piece(((const Deberta *) bb->impl)->unigram, id);
}

/*
 * Word-embedding rows of ids (forward adds the rest): negative ids are
 * padding (zero row, mask 0), ids past the table read as [UNK].
 */
static void
deberta_embed_tokens(const Backbone *bb, const int32_t *ids, int n, float *x, uint8_t *mask)
{
	const Deberta *m = bb->impl;

	embedding_rows(x, mask, m->word_emb, m->cfg.vocab_size, m->unk_id, m->H, ids, n);
}

/* ---- activation buffers ------------------------------------------------------- */

/* Table rows one sequence of max_seq positions reaches at most. */
static int
max_window(const Deberta *m, int max_seq)
{
	int			w = 2 * max_seq - 1;

	return w < 2 * m->span ? w : 2 * m->span;
}

/* Lay out (base NULL: measure) every buffer of run. */
static size_t
layout_run(DebertaRun *run, char *base, const Deberta *m)
{
	size_t		off = 0;
	size_t		R = (size_t) run->max_batch * run->max_seq;
	size_t		B = (size_t) run->max_batch,
				S = (size_t) run->max_seq;
	size_t		H = (size_t) m->H,
				F = (size_t) m->F;
	size_t		wide = F > 3 * H ? F : 3 * H;

	run->pos = arena_carve(base, &off, R);
	run->emb_sum = arena_carve(base, &off, R * H);
	run->emb_mean = arena_carve(base, &off, R);
	run->emb_rstd = arena_carve(base, &off, R);
	run->x0 = arena_carve(base, &off, R * H);
	for (int l = 0; l < m->L; l++)
	{
		DebertaActs *a = &run->layer[l];

		a->qkv = arena_carve(base, &off, R * 3 * H);
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
	run->pooled = arena_carve(base, &off, B * H);
	run->ctx = arena_carve(base, &off, R * H);
	run->hmid = arena_carve(base, &off, R * H);
	run->act = arena_carve(base, &off, R * wide);
	run->dtmp = arena_carve(base, &off, R * H);
	run->att_scratch = arena_carve(base, &off,
								   deberta_attention_scratch(run->max_seq,
															 max_window(m, run->max_seq)));
	return off;
}

static void
deberta_run_free(BackboneRun *brun)
{
	DebertaRun *run = (DebertaRun *) brun;

	if (run == NULL)
		return;
	free(run->arena);
	free(run->layer);
	free(run->offsets);
	free(run->rows);
	free(run);
}

/* Whether run_new accepts the shape: int-indexable rows, attention caches below a terabyte. */
static bool
shape_ok(const Backbone *bb, const Deberta *m, int max_batch, int max_seq)
{
	return max_batch > 0 && max_seq > 0 && max_seq <= bb->max_positions &&
		max_batch <= (1 << 20) && (double) max_batch * max_seq * m->F <= 2147483647.0 &&
		(double) max_batch * m->NH * max_seq * max_seq * m->L <= (double) ((size_t) 1 << 38);
}

/* Heap bytes deberta_run_new allocates for this shape (no decoder: dec_* unused). */
static size_t
deberta_run_bytes(const Backbone *bb, int max_batch, int max_seq, int dec_seqs, int dec_len)
{
	const Deberta *m = bb->impl;
	DebertaRun	run = {0};
	size_t		bytes;

	(void) dec_seqs;
	(void) dec_len;
	if (!shape_ok(bb, m, max_batch, max_seq))
		return SIZE_MAX;
	if ((run.layer = calloc((size_t) m->L, sizeof(DebertaActs))) == NULL)
		return SIZE_MAX;
	run.max_batch = max_batch;
	run.max_seq = max_seq;
	bytes = layout_run(&run, NULL, m);
	free(run.layer);
	return backbone_alloc_bytes(sizeof(DebertaRun)) + backbone_alloc_bytes(bytes) +
		backbone_alloc_bytes(sizeof(DebertaActs) * (size_t) m->L) +
		backbone_alloc_bytes(sizeof(int) * ((size_t) max_batch + 1)) +
		backbone_alloc_bytes(sizeof(int) * (size_t) max_batch * max_seq);
}

static BackboneRun *
deberta_run_new(const Backbone *bb, int max_batch, int max_seq)
{
	const Deberta *m = bb->impl;
	DebertaRun *run;
	size_t		bytes;

	if (!shape_ok(bb, m, max_batch, max_seq) || (run = calloc(1, sizeof(DebertaRun))) == NULL)
		return NULL;
	run->max_batch = max_batch;
	run->max_seq = max_seq;
	run->uses_types = m->type_emb != NULL;
	run->layer = calloc((size_t) m->L, sizeof(DebertaActs));
	run->offsets = malloc(sizeof(int) * ((size_t) max_batch + 1));
	run->rows = malloc(sizeof(int) * (size_t) max_batch * max_seq);
	if (run->layer == NULL || run->offsets == NULL || run->rows == NULL)
	{
		deberta_run_free((BackboneRun *) run);
		return NULL;
	}
	bytes = layout_run(run, NULL, m);
	if ((run->arena = arena_alloc(bytes)) == NULL)
	{
		deberta_run_free((BackboneRun *) run);
		return NULL;
	}
	layout_run(run, run->arena, m);
	return (BackboneRun *) run;
}

/* ---- forward -------------------------------------------------------------------- */

/* One post-LN encoder layer over the N packed rows of inp into out, its activations into a. */
static void
layer_forward(const Deberta *m, int l, DebertaActs *a, DebertaRun *run, const float *inp,
			  float *out, int N, int B)
{
	const DebertaLayer *Ly = &m->layer[l];
	int			H = m->H,
				F = m->F;

	/* attention block: res1 = inp + DisentangledAttn(inp) Wo^T + bo, a = LN1(res1) */
	linear_product(run->bf16, a->qkv, inp, Ly->wq, Ly->bq, N, H, H, 3 * H);
	linear_product(run->bf16, a->qkv + H, inp, Ly->wk, Ly->bk, N, H, H, 3 * H);
	linear_product(run->bf16, a->qkv + 2 * H, inp, Ly->wv, Ly->bv, N, H, H, 3 * H);
	disentangled_attention_forward(run->ctx, a->att, run->att_scratch, a->qkv, run->pos,
								   run->offsets, B, H, m->NH, &m->tables[l]);
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
 * emb_sum = X [+ pos[t]] [+ type[type id]] over the packed rows, in
 * DebertaV2Embeddings' order of additions; type ids from run_token_types
 * for this forward only, else 0.
 */
static NnStatus
embed_forward(const Deberta *m, DebertaRun *run, const float *x, int N, NnError *err)
{
	const uint8_t *types = run->types;
	int			H = m->H;

	run->types = NULL;
	for (int i = 0; types != NULL && m->type_emb != NULL && i < N; i++)
		if (types[run->rows[i]] >= m->cfg.type_vocab_size)
			return nn_fail(err, NN_ERR_ARG, "token type id %d is past the model's %d types",
						   (int) types[run->rows[i]], m->cfg.type_vocab_size);
	for (int i = 0; i < N; i++)
	{
		const float *xi = x + (size_t) run->rows[i] * H;
		float	   *o = run->emb_sum + (size_t) i * H;

		memcpy(o, xi, sizeof(float) * H);
		if (m->pos_emb != NULL)
			for (int j = 0; j < H; j++)
				o[j] += m->pos_emb[(size_t) run->pos[i] * H + j];
		if (m->type_emb != NULL)
		{
			const float *ty = m->type_emb + (size_t) (types ? types[run->rows[i]] : 0) * H;

			for (int j = 0; j < H; j++)
				o[j] += ty[j];
		}
	}
	return NN_OK;
}

static bool
deberta_run_token_types(BackboneRun *brun, const uint8_t *type_ids)
{
	DebertaRun *run = (DebertaRun *) brun;

	run->types = run->uses_types ? type_ids : NULL;
	return run->uses_types;
}

static float *
final_hidden(const Deberta *m, const DebertaRun *run)
{
	return run->h[(m->L - 1) & 1];
}

/*
 * The layers over the N packed rows of x0, each into its own activation
 * slot when the run keeps them all, else into slot 0; returns the output.
 */
static const float *
run_layers(const Deberta *m, DebertaRun *run, int N, int B)
{
	const float *inp = run->x0;

	for (int l = 0; l < m->L; l++)
	{
		layer_forward(m, l, &run->layer[run->keep_layers ? l : 0], run, inp, run->h[l & 1], N, B);
		inp = run->h[l & 1];
	}
	return inp;
}

static NnStatus
deberta_forward(const Backbone *bb, BackboneRun *brun, const float *x, const uint8_t *mask,
				int batch, int seq_len, float *out, NnError *err)
{
	const Deberta *m = bb->impl;
	DebertaRun *run = (DebertaRun *) brun;
	int			N = 0;
	const float *inp;

	if (run == NULL)
		return nn_fail(err, NN_ERR_ARG, "no activation buffers (run is NULL)");
	if (batch < 0 || batch > run->max_batch || seq_len < 0 || seq_len > run->max_seq)
		return nn_fail(err, NN_ERR_ARG, "batch of %d x %d positions exceeds the run's %d x %d",
					   batch, seq_len, run->max_batch, run->max_seq);
	run->batch = batch;
	run->seq_len = seq_len;
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
			{
				run->pos[N] = t;
				run->rows[N++] = b * seq_len + t;
			}
	}
	run->offsets[batch] = N;

	if (embed_forward(m, run, x, N, err) != NN_OK)
		return NN_ERR_ARG;
	layernorm_forward(run->x0, run->emb_mean, run->emb_rstd, run->emb_sum, m->emb_ln_w,
					  m->emb_ln_b, N, m->H, m->ln_eps);
	inp = run_layers(m, run, N, batch);
	/* an empty sequence pools zeros */
	meanpool_forward(run->pooled, inp, run->offsets, batch, m->H);
	memcpy(out, run->pooled, sizeof(float) * (size_t) batch * m->H);
	return NN_OK;
}

void
deberta_last_hidden(const Backbone *bb, const BackboneRun *brun, float *hidden)
{
	const Deberta *m = bb->impl;
	const DebertaRun *run = (const DebertaRun *) brun;
	int			H = m->H;
	int			N = run->batch > 0 ? run->offsets[run->batch] : 0;
	const float *h = final_hidden(m, run);

	memset(hidden, 0, sizeof(float) * (size_t) run->batch * run->seq_len * H);
	for (int i = 0; i < N; i++)
		memcpy(hidden + (size_t) run->rows[i] * H, h + (size_t) i * H, sizeof(float) * H);
}

/* ---- backward ------------------------------------------------------------------- */

/*
 * Input-backward of layer_forward: dh (N, H) = d(out) on entry, d(inp) on
 * exit.  Scratch: dtmp, ctx (d(heads)), act (d(fc), then d(qkv)).
 */
static void
layer_backward(const Deberta *m, int l, DebertaRun *run, float *dh, int N, int B)
{
	const DebertaLayer *Ly = &m->layer[l];
	const DebertaActs *a = &run->layer[l];
	int			H = m->H,
				F = m->F;
	size_t		NH_ = (size_t) N * H;
	float	   *dtmp = run->dtmp,
			   *dctx = run->ctx,
			   *dbig = run->act;

	/* out = LN2(res2), res2 = a + act(fc) W2^T + b2, fc = a W1^T + b1 */
	memset(dtmp, 0, sizeof(float) * NH_);
	layernorm_backward(dtmp, dh, a->res2, Ly->ln2_w, a->ln2_mean, a->ln2_rstd, N, H);
	memcpy(dh, dtmp, sizeof(float) * NH_);
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
	disentangled_attention_backward(dbig, run->att_scratch, dctx, a->qkv, a->att, run->pos,
									run->offsets, B, H, m->NH, &m->tables[l]);
	linear_product_backward(run->bf16, dh, dbig, Ly->wq, N, H, H, 3 * H);
	linear_product_backward(run->bf16, dh, dbig + H, Ly->wk, N, H, H, 3 * H);
	linear_product_backward(run->bf16, dh, dbig + 2 * H, Ly->wv, N, H, H, 3 * H);
}

NnStatus
deberta_backward_full(const Backbone *bb, BackboneRun *brun, const float *dpooled,
					  const float *dhidden, float *dx, NnError *err)
{
	const Deberta *m = bb->impl;
	DebertaRun *run = (DebertaRun *) brun;
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
		return NN_OK;
	if (!run->keep_layers)
	{
		/* the forward kept one layer: again, keeping all (the same numbers) */
		run->keep_layers = true;
		run_layers(m, run, N, B);
	}

	/* d(last hidden state) of the packed rows: the direct part, then the mean's */
	dh = final_hidden(m, run) == run->h[0] ? run->h[1] : run->h[0];
	memset(dh, 0, sizeof(float) * (size_t) N * H);
	if (dhidden != NULL)
		for (int i = 0; i < N; i++)
			for (int j = 0; j < H; j++)
				dh[(size_t) i * H + j] += dhidden[(size_t) run->rows[i] * H + j];
	if (dpooled != NULL)
		meanpool_backward(dh, dpooled, run->offsets, B, H);
	for (int l = m->L - 1; l >= 0; l--)
		layer_backward(m, l, run, dh, N, B);

	/* x0 = LN(emb_sum), emb_sum = X + constants: dX = d(emb_sum) on the packed rows */
	memset(run->dtmp, 0, sizeof(float) * (size_t) N * H);
	layernorm_backward(run->dtmp, dh, run->emb_sum, m->emb_ln_w, run->emb_mean, run->emb_rstd,
					   N, H);
	embed_sum_backward(dx, run->dtmp, run->rows, N, H);
	return NN_OK;
}

static NnStatus
deberta_backward(const Backbone *bb, BackboneRun *run, const float *dout, float *dx,
				 NnError *err)
{
	return deberta_backward_full(bb, run, dout, NULL, dx, err);
}

/* ---- open ------------------------------------------------------------------------ */

static bool
deberta_run_use_bf16(BackboneRun *brun, bool on)
{
	DebertaRun *run = (DebertaRun *) brun;

	run->bf16 = on && gemm_bf16_usable(32, 32);	/* shapes that do not suit stay float */
	return run->bf16;
}

static const BackboneOps deberta_ops = {
	.family = "deberta-v2",
	.tokenize = deberta_tokenize,
	.tokenize_pair = deberta_tokenize_pair,
	.token_piece = deberta_token_piece,
	.embed_tokens = deberta_embed_tokens,
	.run_new = deberta_run_new,
	.run_bytes = deberta_run_bytes,
	.run_free = deberta_run_free,
	.forward = deberta_forward,
	.backward = deberta_backward,
	.run_use_bf16 = deberta_run_use_bf16,
	.run_token_types = deberta_run_token_types,
	.close = deberta_close,
};

NnStatus
deberta_open(Backbone **out, const char *dir, NnError *err)
{
	Deberta    *m;
	Backbone   *bb;
	char		path[4096];
	NnStatus	s;

	*out = NULL;
	if (dir == NULL || snprintf(path, sizeof(path), "%s/config.json", dir) >= (int) sizeof(path))
		return nn_fail(err, NN_ERR_ARG, "model directory path is missing or too long");
	m = calloc(1, sizeof(Deberta));
	bb = calloc(1, sizeof(Backbone));
	if (m == NULL || bb == NULL)
	{
		free(m);
		free(bb);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory opening a DeBERTa model");
	}
	if ((s = load_model(m, dir, path, err)) != NN_OK)
	{
		deberta_free(m);
		free(bb);
		return s;
	}
	bb->ops = &deberta_ops;
	if (!safetensors_region(m->st, &bb->weights, &bb->weights_len))
		bb->weights = NULL;
	bb->vocab_size = m->cfg.vocab_size;
	bb->d_embed = m->H;
	bb->d_out = m->H;
	bb->max_tokens = m->cfg.max_position_embeddings;
	bb->max_positions = m->cfg.max_position_embeddings;
	fingerprint(m, dir, bb->fingerprint);
	bb->impl = m;
	*out = bb;
	return NN_OK;
}
