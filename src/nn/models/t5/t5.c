/*
 * t5.c: loading and running T5 encoder-decoders (model and interface in
 * t5.h).
 *
 * Load: config.json decides every shape (parse_config); each tensor is
 * bound by name with that exact shape from the mapped weights
 * (model.safetensors or the shards of its index, hf_checkpoint.h), so
 * another or damaged checkpoint fails with NN_ERR_FORMAT naming the tensor.
 * Linear weights stay in PyTorch's (out, in) layout for linear_forward.
 *
 * Forward over packed rows (kernels.h): the encoder computes only the valid
 * rows of the padded input, each at its column as position; the decoder
 * packs one sequence per (row, label) pair, and its cross-attention reads
 * the encoder rows of that pair's input row (T5AttnShape.kv_seq), so the
 * encoder runs once for all candidates.  The cross-attention keys and
 * values of every decoder block are computed once per forward over the
 * encoder rows.  A run keeps what the input-backward reads: each block's
 * input and post-attention residual streams with their RMS factors, q/k/v,
 * the attention probabilities and the FFN pre-activations; normalized rows
 * and activations live in scratch.
 *
 * Backward (frozen weights, one dX = dY W sgemm per Linear): from the
 * cross-entropy through the head, the decoder blocks in reverse -- each
 * cross-attention adding its key/value gradients into d(H), the encoder
 * output -- then the encoder blocks in reverse to the input embeddings.
 *
 * The encoder of an inference forward (t5_forward, t5_label_loglik) keeps
 * one block's activations until the run's first backward, as bert.c's
 * layers do: every block writes block 0's slot, the block inputs after the
 * first alternate between the next two slots' h (block 0's h keeps the
 * packed input), so inference writes about 1/Le of the encoder's
 * activation memory.  A backward after such a forward (t5_backward)
 * recomputes the encoder keeping every block, and the run keeps every one
 * from then on.  t5_loss_forward, which training runs and a backward
 * always follows, keeps every block of both stacks.  t5_label_loglik's
 * decoder, which no backward follows (t5_loss_backward needs a
 * t5_loss_forward), always keeps one block's activations, the same way.
 */
#include "models/t5/t5.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tokenizers/unigram.h"
#include "ops/gemm_bf16.h"
#include "ops/gemm_packed.h"
#include "ops/kernels.h"
#include "formats/hf_checkpoint.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "base/arena.h"
#include "base/sha256.h"
#include "models/t5/t5_kernels.h"

#define T5_SAMPLE_BYTES 4096	/* fingerprinted bytes at each end of a tensor */
#define T5_MAX_CONFIG_BYTES (1 << 20)
#define T5_MAX_DIM 65536
#define T5_MAX_LAYERS 256
#define T5_MAX_VOCAB (1 << 22)
#define T5_MAX_RUN_BYTES ((double) ((size_t) 16 << 30))

typedef struct T5Config
{
	int			d;				/* d_model */
	int			dkv;			/* d_kv, per head */
	int			NH;				/* num_heads */
	int			inner;			/* NH * dkv */
	int			F;				/* d_ff */
	int			Le;				/* num_layers */
	int			Ld;				/* num_decoder_layers */
	int			vocab;			/* vocab_size: rows of shared.weight */
	int			num_buckets;	/* relative_attention_num_buckets */
	int			max_distance;	/* relative_attention_max_distance */
	float		eps;			/* layer_norm_epsilon */
	T5Act		act;
	bool		gated;
	bool		scale_out;		/* multiply the decoder output by d^-0.5 */
	int32_t		pad_id;
	int32_t		eos_id;
	int32_t		start_id;		/* decoder_start_token_id */
} T5Config;

typedef struct T5Attn
{
	const float *q,
			   *k,
			   *v;				/* (inner, d) */
	const float *o;				/* (d, inner) */
} T5Attn;

typedef struct T5Block
{
	const float *ln_self;		/* (d) */
	T5Attn		self;
	const float *ln_cross;		/* decoder only */
	T5Attn		cross;
	const float *ln_ff;
	const float *wi;			/* (F, d): wi, or wi_0 when gated */
	const float *wi1;			/* (F, d): wi_1 (gated), else NULL */
	const float *wo;			/* (d, F) */
} T5Block;

typedef struct T5
{
	T5Config	c;
	Safetensors *st;
	HfUnigram  *tok;
	const float *shared;		/* (vocab, d) */
	const float *head;			/* (vocab, d): lm_head or shared */
	const float *enc_bias;		/* (num_buckets, NH) */
	const float *dec_bias;
	const float *enc_ln;		/* final_layer_norm (d) */
	const float *dec_ln;
	T5Block    *enc;			/* (Le) */
	T5Block    *dec;			/* (Ld) */
} T5;

/* One block's activations, kept for the backward pass. */
typedef struct T5Acts
{
	float	   *h;				/* (N, d) block input */
	float	   *rstd_sa;		/* (N) */
	float	   *qkv;			/* (N, 3 inner) q | k | v */
	float	   *att_sa;			/* self-attention probabilities */
	float	   *h_sa;			/* (N, d) after self-attention */
	float	   *rstd_ca;		/* decoder: (N) */
	float	   *qc;				/* decoder: (N, inner) cross queries */
	float	   *att_ca;			/* decoder: cross-attention probabilities */
	float	   *h_ca;			/* decoder: (N, d) after cross-attention */
	float	   *kvc;			/* decoder: (Ne, 2 inner) cross keys | values */
	float	   *rstd_ff;		/* (N) */
	float	   *gate;			/* (N, F) wi (wi_0) output */
	float	   *lin;			/* (N, F) wi_1 output (gated) */
} T5Acts;

/* Scratch shared by the layers of one stack, dead between calls. */
typedef struct T5Scratch
{
	float	   *normed;			/* (N, d) */
	float	   *ctx;			/* (N, inner) */
	float	   *act;			/* (N, F) */
	float	   *dnormed;		/* (N, d) */
	float	   *dqkv;			/* (N, 3 inner) */
	float	   *dctx;			/* (N, inner) */
	float	   *dgate;			/* (N, F) */
	float	   *dlin;			/* (N, F) */
	float	   *datt;			/* one head's (nq x nk) */
	bool		bf16;			/* the run's weight products in bfloat16 (run_use_bf16) */
} T5Scratch;

typedef enum T5Last
{
	T5_LAST_NONE, T5_LAST_ENCODER, T5_LAST_LOSS, T5_LAST_LOGLIK
} T5Last;

/* The BackboneRun of this family. */
typedef struct T5Run
{
	int			max_batch;
	int			max_seq;
	T5Last		last;
	bool		keep_layers;	/* encoder forwards keep every block's activations */
	int			batch;			/* shape of the last forward */
	int			seq_len;

	/* encoder, sized once */
	int		   *e_off;			/* (max_batch + 1) */
	int		   *e_rows;			/* (R) b * seq_len + t */
	int		   *e_pos;			/* (R) t */
	float	   *e_pbias;		/* (NH, 2 max_seq + 1) position bias by distance */
	T5Acts	   *e;				/* (Le) */
	float	   *e_last;			/* (R, d) last block's output */
	float	   *e_rstd;			/* (R) */
	float	   *e_out;			/* (R, d) H */
	float	   *d_enc;			/* (R, d) d(H) */
	float	   *dkvc;			/* (R, 2 inner) */
	float	   *dh_e;			/* (R, d) */
	T5Scratch	es;
	T5Acts	   *dkv_hold;		/* (Ld) decoder blocks' kvc live in the encoder arena */
	void	   *e_arena;

	/* decoder, grown on demand */
	int			d_seqs_cap;
	int			d_len_cap;
	int			n_dseq;
	int		   *d_off;			/* (seqs + 1) */
	int		   *d_pos;			/* (Rd) */
	int		   *d_kvseq;		/* (seqs) encoder row of each decoder sequence */
	int32_t    *d_tok;			/* (Rd) decoder input ids */
	int32_t    *d_tgt;			/* (Rd) targets, -1 none */
	float	   *d_pbias;		/* (NH, 2 len + 1) */
	int			d_R;			/* d_pbias covers relative positions -d_R .. d_R */
	T5Acts	   *dl;				/* (Ld) */
	float	   *d_last;			/* (Rd, d) */
	float	   *d_rstd;			/* (Rd) */
	float	   *d_out;			/* (Rd, d) scaled final output */
	float	   *logits;			/* (Rd, vocab): probabilities after the loss */
	float	   *logp;			/* (Rd) */
	float	   *dh_d;			/* (Rd, d) */
	T5Scratch	ds;
	int			n_targets;
	void	   *d_arena;
} T5Run;

/* ---- config --------------------------------------------------------------------- */

static NnStatus
cfg_int(const cJSON *root, const char *key, int lo, int hi, int dflt, int *out, NnError *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);

	if (v == NULL || cJSON_IsNull(v))
	{
		if (dflt < lo)
			return nn_fail(err, NN_ERR_FORMAT, "config.json: \"%s\" is missing", key);
		*out = dflt;
		return NN_OK;
	}
	if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
		v->valuedouble < lo || v->valuedouble > hi)
		return nn_fail(err, NN_ERR_FORMAT, "config.json: \"%s\" must be an integer in %d..%d",
					   key, lo, hi);
	*out = (int) v->valuedouble;
	return NN_OK;
}

static NnStatus
cfg_bool(const cJSON *root, const char *key, bool dflt, bool *out, bool *present, NnError *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);

	if (present)
		*present = v != NULL && !cJSON_IsNull(v);
	if (v == NULL || cJSON_IsNull(v))
	{
		*out = dflt;
		return NN_OK;
	}
	if (!cJSON_IsBool(v))
		return nn_fail(err, NN_ERR_FORMAT, "config.json: \"%s\" must be true or false", key);
	*out = cJSON_IsTrue(v);
	return NN_OK;
}

/* An HF activation name (ACT2FN) this file implements. */
static bool
parse_act(const char *name, bool gated, T5Act *act)
{
	if (strcmp(name, "relu") == 0)
		*act = T5_ACT_RELU;
	else if (strcmp(name, "gelu") == 0)
		*act = gated ? T5_ACT_GELU_TANH : T5_ACT_GELU;	/* T5Config: gated-gelu = gelu_new */
	else if (strcmp(name, "gelu_new") == 0 || strcmp(name, "gelu_pytorch_tanh") == 0)
		*act = T5_ACT_GELU_TANH;
	else if (strcmp(name, "silu") == 0 || strcmp(name, "swish") == 0)
		*act = T5_ACT_SILU;
	else
		return false;
	return true;
}

/*
 * T5Config as transformers derives it from config.json (field names and
 * defaults of T5Config).
 */
static NnStatus
parse_config(T5Config *c, const char *json, size_t len, NnError *err)
{
	cJSON	   *root = cJSON_ParseWithLength(json, len);
	const cJSON *mt,
			   *ffp,
			   *daf;
	char		proj[64];
	char	   *dash;
	bool		tie,
				scale,
				has_scale;
	double		eps;
	NnStatus	s;

	memset(c, 0, sizeof(*c));
	if (!cJSON_IsObject(root))
	{
		cJSON_Delete(root);
		return nn_fail(err, NN_ERR_FORMAT, "config.json is not a JSON object");
	}
	mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
	if (!cJSON_IsString(mt) || (strcmp(mt->valuestring, "t5") != 0 &&
								strcmp(mt->valuestring, "mt5") != 0))
	{
		s = nn_fail(err, NN_ERR_FORMAT, "config.json: model_type \"%.40s\" is not t5 or mt5",
					cJSON_IsString(mt) ? mt->valuestring : "?");
		goto done;
	}
	if ((s = cfg_int(root, "d_model", 1, T5_MAX_DIM, 512, &c->d, err)) ||
		(s = cfg_int(root, "d_kv", 1, T5_MAX_DIM, 64, &c->dkv, err)) ||
		(s = cfg_int(root, "num_heads", 1, 4096, 8, &c->NH, err)) ||
		(s = cfg_int(root, "d_ff", 1, 1 << 20, 2048, &c->F, err)) ||
		(s = cfg_int(root, "num_layers", 1, T5_MAX_LAYERS, 6, &c->Le, err)) ||
		(s = cfg_int(root, "num_decoder_layers", 1, T5_MAX_LAYERS, c->Le, &c->Ld, err)) ||
		(s = cfg_int(root, "vocab_size", 1, T5_MAX_VOCAB, 32128, &c->vocab, err)) ||
		(s = cfg_int(root, "relative_attention_num_buckets", 2, 4096, 32, &c->num_buckets, err)) ||
		(s = cfg_int(root, "relative_attention_max_distance", 1, 1 << 20, 128,
					 &c->max_distance, err)) ||
		(s = cfg_int(root, "pad_token_id", 0, T5_MAX_VOCAB, 0, &c->pad_id, err)) ||
		(s = cfg_int(root, "eos_token_id", 0, T5_MAX_VOCAB, 1, &c->eos_id, err)) ||
		(s = cfg_int(root, "decoder_start_token_id", 0, T5_MAX_VOCAB, c->pad_id, &c->start_id,
					 err)) ||
		(s = cfg_bool(root, "tie_word_embeddings", true, &tie, NULL, err)) ||
		(s = cfg_bool(root, "scale_decoder_outputs", false, &scale, &has_scale, err)))
		goto done;
	if ((double) c->NH * c->dkv > T5_MAX_DIM)
	{
		s = nn_fail(err, NN_ERR_FORMAT, "config.json: num_heads * d_kv exceeds %d", T5_MAX_DIM);
		goto done;
	}
	c->inner = c->NH * c->dkv;
	if (c->pad_id >= c->vocab || c->eos_id >= c->vocab || c->start_id >= c->vocab)
	{
		s = nn_fail(err, NN_ERR_FORMAT, "config.json: a special token id exceeds vocab_size %d",
					c->vocab);
		goto done;
	}
	/* 5.17 writes scale_decoder_outputs; earlier configs imply it by tying */
	c->scale_out = has_scale ? scale : tie;

	eps = 1e-6;
	{
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_epsilon");

		if (e != NULL && !cJSON_IsNull(e))
		{
			if (!cJSON_IsNumber(e) || !(e->valuedouble >= 0.0 && e->valuedouble < 1.0))
			{
				s = nn_fail(err, NN_ERR_FORMAT, "config.json: layer_norm_epsilon must be in [0, 1)");
				goto done;
			}
			eps = e->valuedouble;
		}
	}
	c->eps = (float) eps;

	/* "relu", "gated-gelu", ...: T5Config splits on '-' */
	ffp = cJSON_GetObjectItemCaseSensitive(root, "feed_forward_proj");
	snprintf(proj, sizeof(proj), "%s", cJSON_IsString(ffp) ? ffp->valuestring : "relu");
	dash = strchr(proj, '-');
	if (dash != NULL)
	{
		*dash = '\0';
		if (strcmp(proj, "gated") != 0 || strchr(dash + 1, '-') != NULL)
		{
			s = nn_fail(err, NN_ERR_FORMAT,
						"config.json: feed_forward_proj \"%.40s\" is not \"act\" or \"gated-act\"",
						cJSON_IsString(ffp) ? ffp->valuestring : "");
			goto done;
		}
		c->gated = true;
	}
	if (!parse_act(dash ? dash + 1 : proj, c->gated, &c->act))
	{
		s = nn_fail(err, NN_ERR_FORMAT,
					"config.json: activation \"%.40s\" is not supported (relu, gelu, gelu_new, silu)",
					dash ? dash + 1 : proj);
		goto done;
	}
	/* an explicit dense_act_fn (written by transformers) is what the model runs */
	daf = cJSON_GetObjectItemCaseSensitive(root, "dense_act_fn");
	if (cJSON_IsString(daf) && !parse_act(daf->valuestring, false, &c->act))
	{
		s = nn_fail(err, NN_ERR_FORMAT, "config.json: dense_act_fn \"%.40s\" is not supported",
					daf->valuestring);
		goto done;
	}
	s = NN_OK;
done:
	cJSON_Delete(root);
	return s;
}

/* ---- weights -------------------------------------------------------------------- */

/* Bind "<prefix>.{q,k,v,o}.weight". */
static NnStatus
bind_attn(const T5 *m, T5Attn *a, const char *prefix, NnError *err)
{
	char		n[4][256];
	const T5Config *c = &m->c;
	NnStatus	s;

	snprintf(n[0], sizeof(n[0]), "%s.q.weight", prefix);
	snprintf(n[1], sizeof(n[1]), "%s.k.weight", prefix);
	snprintf(n[2], sizeof(n[2]), "%s.v.weight", prefix);
	snprintf(n[3], sizeof(n[3]), "%s.o.weight", prefix);
	if ((s = hf_bind(m->st, &a->q, "", n[0], 2, c->inner, c->d, err)) ||
		(s = hf_bind(m->st, &a->k, "", n[1], 2, c->inner, c->d, err)) ||
		(s = hf_bind(m->st, &a->v, "", n[2], 2, c->inner, c->d, err)) ||
		(s = hf_bind(m->st, &a->o, "", n[3], 2, c->d, c->inner, err)))
		return s;
	return NN_OK;
}

/* Bind block i of "encoder" or "decoder". */
static NnStatus
bind_block(const T5 *m, T5Block *b, const char *stack, int i, bool decoder, NnError *err)
{
	const T5Config *c = &m->c;
	char		name[256],
				pre[192];
	int			ff = decoder ? 2 : 1;
	NnStatus	s;

	snprintf(name, sizeof(name), "%s.block.%d.layer.0.layer_norm.weight", stack, i);
	if ((s = hf_bind(m->st, &b->ln_self, "", name, 1, c->d, 0, err)))
		return s;
	snprintf(pre, sizeof(pre), "%s.block.%d.layer.0.SelfAttention", stack, i);
	if ((s = bind_attn(m, &b->self, pre, err)))
		return s;
	if (decoder)
	{
		snprintf(name, sizeof(name), "%s.block.%d.layer.1.layer_norm.weight", stack, i);
		if ((s = hf_bind(m->st, &b->ln_cross, "", name, 1, c->d, 0, err)))
			return s;
		snprintf(pre, sizeof(pre), "%s.block.%d.layer.1.EncDecAttention", stack, i);
		if ((s = bind_attn(m, &b->cross, pre, err)))
			return s;
	}
	snprintf(name, sizeof(name), "%s.block.%d.layer.%d.layer_norm.weight", stack, i, ff);
	if ((s = hf_bind(m->st, &b->ln_ff, "", name, 1, c->d, 0, err)))
		return s;
	snprintf(pre, sizeof(pre), "%s.block.%d.layer.%d.DenseReluDense", stack, i, ff);
	if (c->gated)
	{
		snprintf(name, sizeof(name), "%s.wi_0.weight", pre);
		if ((s = hf_bind(m->st, &b->wi, "", name, 2, c->F, c->d, err)))
			return s;
		snprintf(name, sizeof(name), "%s.wi_1.weight", pre);
		if ((s = hf_bind(m->st, &b->wi1, "", name, 2, c->F, c->d, err)))
			return s;
	}
	else
	{
		snprintf(name, sizeof(name), "%s.wi.weight", pre);
		if ((s = hf_bind(m->st, &b->wi, "", name, 2, c->F, c->d, err)))
			return s;
	}
	snprintf(name, sizeof(name), "%s.wo.weight", pre);
	return hf_bind(m->st, &b->wo, "", name, 2, c->d, c->F, err);
}

static NnStatus
bind_weights(T5 *m, NnError *err)
{
	const T5Config *c = &m->c;
	NnStatus	s;

	if ((s = hf_bind(m->st, &m->shared, "", "shared.weight", 2, c->vocab, c->d, err)) ||
		(s = hf_bind(m->st, &m->enc_bias, "",
				  "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", 2,
				  c->num_buckets, c->NH, err)) ||
		(s = hf_bind(m->st, &m->dec_bias, "",
				  "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", 2,
				  c->num_buckets, c->NH, err)) ||
		(s = hf_bind(m->st, &m->enc_ln, "", "encoder.final_layer_norm.weight", 1, c->d, 0, err)) ||
		(s = hf_bind(m->st, &m->dec_ln, "", "decoder.final_layer_norm.weight", 1, c->d, 0, err)))
		return s;
	/* an untied head (v1.1, Flan) is its own tensor; a tied one is shared */
	if (safetensors_find(m->st, "lm_head.weight") != NULL)
	{
		if ((s = hf_bind(m->st, &m->head, "", "lm_head.weight", 2, c->vocab, c->d, err)))
			return s;
	}
	else
		m->head = m->shared;
	for (int i = 0; i < c->Le; i++)
		if ((s = bind_block(m, &m->enc[i], "encoder", i, false, err)))
			return s;
	for (int i = 0; i < c->Ld; i++)
		if ((s = bind_block(m, &m->dec[i], "decoder", i, true, err)))
			return s;
	return NN_OK;
}

/* ---- run buffers ------------------------------------------------------------------ */

static void
layout_scratch(T5Scratch *s, char *base, size_t *off, const T5Config *c, size_t R,
			   size_t att)
{
	s->normed = arena_carve(base, off, R * c->d);
	s->ctx = arena_carve(base, off, R * c->inner);
	s->act = arena_carve(base, off, R * c->F);
	s->dnormed = arena_carve(base, off, R * c->d);
	s->dqkv = arena_carve(base, off, R * 3 * c->inner);
	s->dctx = arena_carve(base, off, R * c->inner);
	s->dgate = arena_carve(base, off, R * c->F);
	s->dlin = arena_carve(base, off, R * c->F);
	s->datt = arena_carve(base, off, att);
}

/* Lay out (base NULL: measure) the encoder arena. */
static size_t
layout_encoder(T5Run *run, char *base, const T5 *m)
{
	const T5Config *c = &m->c;
	size_t		off = 0;
	size_t		B = (size_t) run->max_batch,
				S = (size_t) run->max_seq,
				R = B * S;

	run->e_off = arena_carve(base, &off, B + 1);
	run->e_rows = arena_carve(base, &off, R);
	run->e_pos = arena_carve(base, &off, R);
	run->e_pbias = arena_carve(base, &off, (size_t) c->NH * (2 * S + 1));
	for (int l = 0; l < c->Le; l++)
	{
		T5Acts	   *a = &run->e[l];

		a->h = arena_carve(base, &off, R * c->d);
		a->rstd_sa = arena_carve(base, &off, R);
		a->qkv = arena_carve(base, &off, R * 3 * c->inner);
		a->att_sa = arena_carve(base, &off, B * c->NH * S * S);
		a->h_sa = arena_carve(base, &off, R * c->d);
		a->rstd_ff = arena_carve(base, &off, R);
		a->gate = arena_carve(base, &off, R * c->F);
		a->lin = c->gated ? arena_carve(base, &off, R * c->F) : NULL;
	}
	/* the decoder blocks' cross keys/values are over encoder rows */
	for (int l = 0; l < c->Ld; l++)
		run->dkv_hold[l].kvc = arena_carve(base, &off, R * 2 * c->inner);
	run->e_last = arena_carve(base, &off, R * c->d);
	run->e_rstd = arena_carve(base, &off, R);
	run->e_out = arena_carve(base, &off, R * c->d);
	run->d_enc = arena_carve(base, &off, R * c->d);
	run->dkvc = arena_carve(base, &off, R * 2 * c->inner);
	run->dh_e = arena_carve(base, &off, R * c->d);
	layout_scratch(&run->es, base, &off, c, R, S * S);
	return off;
}

/* Lay out the decoder arena for seqs sequences of up to len positions. */
static size_t
layout_decoder(T5Run *run, char *base, const T5 *m, size_t seqs, size_t len)
{
	const T5Config *c = &m->c;
	size_t		off = 0;
	size_t		S = (size_t) run->max_seq,
				R = seqs * len;

	run->d_off = arena_carve(base, &off, seqs + 1);
	run->d_pos = arena_carve(base, &off, R);
	run->d_kvseq = arena_carve(base, &off, seqs);
	run->d_tok = arena_carve(base, &off, R);
	run->d_tgt = arena_carve(base, &off, R);
	run->d_pbias = arena_carve(base, &off, (size_t) c->NH * (2 * len + 1));
	for (int l = 0; l < c->Ld; l++)
	{
		T5Acts	   *a = &run->dl[l];

		a->h = arena_carve(base, &off, R * c->d);
		a->rstd_sa = arena_carve(base, &off, R);
		a->qkv = arena_carve(base, &off, R * 3 * c->inner);
		a->att_sa = arena_carve(base, &off, seqs * c->NH * len * len);
		a->h_sa = arena_carve(base, &off, R * c->d);
		a->rstd_ca = arena_carve(base, &off, R);
		a->qc = arena_carve(base, &off, R * c->inner);
		a->att_ca = arena_carve(base, &off, seqs * c->NH * len * S);
		a->h_ca = arena_carve(base, &off, R * c->d);
		a->kvc = run->dkv_hold[l].kvc;
		a->rstd_ff = arena_carve(base, &off, R);
		a->gate = arena_carve(base, &off, R * c->F);
		a->lin = c->gated ? arena_carve(base, &off, R * c->F) : NULL;
	}
	run->d_last = arena_carve(base, &off, R * c->d);
	run->d_rstd = arena_carve(base, &off, R);
	run->d_out = arena_carve(base, &off, R * c->d);
	run->logits = arena_carve(base, &off, R * c->vocab);
	run->logp = arena_carve(base, &off, R);
	run->dh_d = arena_carve(base, &off, R * c->d);
	layout_scratch(&run->ds, base, &off, c, R, len * (len > S ? len : S));
	return off;
}

/* Make the decoder arena hold seqs sequences of len positions. */
static NnStatus
ensure_decoder(const T5 *m, T5Run *run, int seqs, int len, NnError *err)
{
	size_t		bytes;
	int			ns,
				nl;
	void	   *arena;

	if (seqs <= run->d_seqs_cap && len <= run->d_len_cap)
		return NN_OK;
	ns = seqs > run->d_seqs_cap ? seqs : run->d_seqs_cap;
	nl = len > run->d_len_cap ? len : run->d_len_cap;
	if ((double) ns * nl * ((double) m->c.vocab + 8.0 * m->c.d + 6.0 * m->c.inner + 3.0 * m->c.F) *
		(m->c.Ld + 2) + (double) ns * m->c.NH * nl * (nl + run->max_seq) * m->c.Ld > T5_MAX_RUN_BYTES / 4)
		return nn_fail(err, NN_ERR_ARG, "decoder buffers for %d sequences of %d tokens are too large",
					   seqs, len);
	bytes = layout_decoder(run, NULL, m, (size_t) ns, (size_t) nl);
	if ((arena = arena_alloc(bytes)) == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory for T5 decoder buffers (%zu bytes)", bytes);
	free(run->d_arena);
	run->d_arena = arena;
	run->d_seqs_cap = ns;
	run->d_len_cap = nl;
	layout_decoder(run, arena, m, (size_t) ns, (size_t) nl);
	return NN_OK;
}

static void
t5_run_free(BackboneRun *brun)
{
	T5Run	   *run = (T5Run *) brun;

	if (run == NULL)
		return;
	free(run->e_arena);
	free(run->d_arena);
	free(run->e);
	free(run->dl);
	free(run->dkv_hold);
	free(run);
}

static BackboneRun *
t5_run_new(const Backbone *bb, int max_batch, int max_seq)
{
	const T5   *m = bb->impl;
	const T5Config *c = &m->c;
	T5Run	   *run;
	size_t		bytes;
	double		R = (double) max_batch * max_seq;

	if (max_batch <= 0 || max_seq <= 0 || max_seq > bb->max_positions || max_batch > (1 << 20) ||
		R * (c->F > 3 * c->inner ? c->F : 3 * c->inner) > 2147483647.0 ||
		(R * (8.0 * c->d + 4.0 * c->inner + 2.0 * c->F) + (double) max_batch * c->NH * max_seq *
		 max_seq) * (c->Le + 1) + R * 2.0 * c->inner * c->Ld > T5_MAX_RUN_BYTES / 4)
		return NULL;
	if ((run = calloc(1, sizeof(T5Run))) == NULL)
		return NULL;
	run->max_batch = max_batch;
	run->max_seq = max_seq;
	run->e = calloc((size_t) c->Le, sizeof(T5Acts));
	run->dl = calloc((size_t) c->Ld, sizeof(T5Acts));
	run->dkv_hold = calloc((size_t) c->Ld, sizeof(T5Acts));
	if (run->e == NULL || run->dl == NULL || run->dkv_hold == NULL)
	{
		t5_run_free((BackboneRun *) run);
		return NULL;
	}
	bytes = layout_encoder(run, NULL, m);
	if ((run->e_arena = arena_alloc(bytes)) == NULL)
	{
		t5_run_free((BackboneRun *) run);
		return NULL;
	}
	layout_encoder(run, run->e_arena, m);
	return (BackboneRun *) run;
}

/*
 * Heap bytes of a run for this shape: the encoder arena run_new allocates,
 * and, when dec_seqs and dec_len are > 0, the decoder arena ensure_decoder
 * grows to for dec_seqs sequences of dec_len tokens (t5_loss_forward: one
 * per row; t5_label_loglik: one per row and candidate).
 */
static size_t
t5_run_bytes(const Backbone *bb, int max_batch, int max_seq, int dec_seqs, int dec_len)
{
	const T5   *m = bb->impl;
	const T5Config *c = &m->c;
	T5Run		run = {0};
	double		R = (double) max_batch * max_seq;
	size_t		bytes;

	if (max_batch <= 0 || max_seq <= 0 || max_seq > bb->max_positions || max_batch > (1 << 20) ||
		dec_seqs < 0 || dec_seqs > (1 << 24) || dec_len < 0 || dec_len > T5_MAX_POSITIONS ||
		R * (c->F > 3 * c->inner ? c->F : 3 * c->inner) > 2147483647.0 ||
		(R * (8.0 * c->d + 4.0 * c->inner + 2.0 * c->F) + (double) max_batch * c->NH * max_seq *
		 max_seq) * (c->Le + 1) + R * 2.0 * c->inner * c->Ld > T5_MAX_RUN_BYTES / 4)
		return SIZE_MAX;
	/* the layouts write (NULL) pointers into the per-block structs */
	run.e = calloc((size_t) c->Le, sizeof(T5Acts));
	run.dl = calloc((size_t) c->Ld, sizeof(T5Acts));
	run.dkv_hold = calloc((size_t) c->Ld, sizeof(T5Acts));
	run.max_batch = max_batch;
	run.max_seq = max_seq;
	bytes = SIZE_MAX;
	if (run.e != NULL && run.dl != NULL && run.dkv_hold != NULL)
	{
		bytes = backbone_alloc_bytes(sizeof(T5Run)) +
			backbone_alloc_bytes(sizeof(T5Acts) * (size_t) c->Le) +
			2 * backbone_alloc_bytes(sizeof(T5Acts) * (size_t) c->Ld) +
			backbone_alloc_bytes(layout_encoder(&run, NULL, m));
		if (dec_seqs > 0 && dec_len > 0)
			bytes += backbone_alloc_bytes(layout_decoder(&run, NULL, m, (size_t) dec_seqs,
														 (size_t) dec_len));
	}
	free(run.e);
	free(run.dl);
	free(run.dkv_hold);
	return bytes;
}

/* ---- forward ------------------------------------------------------------------------ */

/* FFN sub-layer: out = inp + FF(RMS inp), caching the RMS factor and pre-activations. */
static void
ff_forward(const T5 *m, const T5Block *b, T5Acts *a, T5Scratch *s, const float *inp,
		   float *out, int N)
{
	const T5Config *c = &m->c;
	size_t		NF = (size_t) N * c->F;

	rmsnorm_forward(s->normed, a->rstd_ff, inp, b->ln_ff, N, c->d, c->eps);
	linear_product(s->bf16, a->gate, s->normed, b->wi, NULL, N, c->d, c->F, c->F);
	if (c->gated)
	{
		linear_product(s->bf16, a->lin, s->normed, b->wi1, NULL, N, c->d, c->F, c->F);
		gated_act_forward(s->act, a->gate, a->lin, NF, c->act);
	}
	else if (c->act == T5_ACT_RELU)
		relu_forward(s->act, a->gate, NF);
	else if (c->act == T5_ACT_GELU)
		gelu_forward(s->act, a->gate, NF);
	else
		t5_act_forward(s->act, a->gate, NF, c->act);
	linear_product(s->bf16, out, s->act, b->wo, NULL, N, c->F, c->d, c->d);
	residual_forward(out, out, inp, (size_t) N * c->d);
}

/* Self-attention sub-layer: a->h_sa = h + Attn(RMS h), h the block input (a->h unread). */
static void
self_attn_forward(const T5 *m, const T5Block *b, T5Acts *a, T5Scratch *s, const T5AttnShape *sh,
				  const float *h, int N)
{
	const T5Config *c = &m->c;
	int			I = c->inner;

	rmsnorm_forward(s->normed, a->rstd_sa, h, b->ln_self, N, c->d, c->eps);
	linear_product(s->bf16, a->qkv, s->normed, b->self.q, NULL, N, c->d, I, 3 * I);
	linear_product(s->bf16, a->qkv + I, s->normed, b->self.k, NULL, N, c->d, I, 3 * I);
	linear_product(s->bf16, a->qkv + 2 * I, s->normed, b->self.v, NULL, N, c->d, I, 3 * I);
	t5_attention_forward(s->ctx, a->att_sa, a->qkv, a->qkv + I, a->qkv + 2 * I, sh);
	linear_product(s->bf16, a->h_sa, s->ctx, b->self.o, NULL, N, I, c->d, c->d);
	residual_forward(a->h_sa, a->h_sa, h, (size_t) N * c->d);
}

/* The encoder's self-attention shape over the packed rows of the last forward. */
static T5AttnShape
encoder_shape(const T5 *m, const T5Run *run)
{
	const T5Config *c = &m->c;

	return (T5AttnShape) {
		.B = run->batch,.NH = c->NH,.hs = c->dkv,.q_off = run->e_off,.q_pos = run->e_pos,
		.kv_off = run->e_off,.kv_pos = run->e_pos,.kv_seq = NULL,
		.ldq = 3 * c->inner,.ldk = 3 * c->inner,.ldv = 3 * c->inner,
		.pos_bias = run->e_pbias,.R = run->seq_len,.causal = false
	};
}

/*
 * Encoder block l's input (l = Le: the last block's output): its own
 * slot's h when the run keeps every block, else block 0's h (the packed
 * input) for block 0 and the h of slots 1 and 2 in turn after it.
 */
static float *
encoder_input(const T5 *m, const T5Run *run, int l)
{
	if (l == m->c.Le)
		return run->e_last;
	if (run->keep_layers || l <= 1)
		return run->e[l].h;
	return run->e[1 + ((l - 1) & 1)].h;
}

/*
 * The encoder blocks over the N packed rows in run->e[0].h, each into its
 * own activation slot when the run keeps them all, else into slot 0; then
 * the final RMS norm into run->e_out.
 */
static void
encoder_blocks(const T5 *m, T5Run *run, int N)
{
	const T5Config *c = &m->c;
	T5AttnShape sh = encoder_shape(m, run);

	for (int l = 0; l < c->Le; l++)
	{
		T5Acts	   *a = &run->e[run->keep_layers ? l : 0];

		self_attn_forward(m, &m->enc[l], a, &run->es, &sh, encoder_input(m, run, l), N);
		ff_forward(m, &m->enc[l], a, &run->es, a->h_sa, encoder_input(m, run, l + 1), N);
	}
	rmsnorm_forward(run->e_out, run->e_rstd, run->e_last, m->enc_ln, N, c->d, c->eps);
}

/* The encoder over the valid rows of x (batch, seq_len, d): fills run->e_out. */
static void
encoder_forward(const T5 *m, T5Run *run, const float *x, const uint8_t *mask, int batch,
				int seq_len)
{
	const T5Config *c = &m->c;
	int			N = 0;

	for (int b = 0; b < batch; b++)
	{
		run->e_off[b] = N;
		for (int t = 0; t < seq_len; t++)
			if (mask[(size_t) b * seq_len + t])
			{
				run->e_rows[N] = b * seq_len + t;
				run->e_pos[N] = t;
				memcpy(run->e[0].h + (size_t) N * c->d, x + ((size_t) b * seq_len + t) * c->d,
					   sizeof(float) * c->d);
				N++;
			}
	}
	run->e_off[batch] = N;
	run->batch = batch;
	run->seq_len = seq_len;
	t5_position_bias(run->e_pbias, m->enc_bias, c->NH, seq_len, true, c->num_buckets,
					 c->max_distance);
	encoder_blocks(m, run, N);
}

/*
 * Decoder block l's input (l = Ld: the last block's output): as
 * encoder_input, its own slot's h when keep, else slot 0's h (the
 * embedded tokens) for block 0 and the h of slots 1 and 2 in turn after it.
 */
static float *
decoder_input(const T5 *m, const T5Run *run, int l, bool keep)
{
	if (l == m->c.Ld)
		return run->d_last;
	if (keep || l <= 1)
		return run->dl[l].h;
	return run->dl[1 + ((l - 1) & 1)].h;
}

/*
 * The decoder over the sequences already described in run (d_off, d_pos,
 * d_kvseq, d_tok), cross-attending to run->e_out; fills run->logits.  Each
 * block's activations into its own slot when keep (a backward follows),
 * else into slot 0.
 */
static void
decoder_forward(const T5 *m, T5Run *run, int max_len, bool keep)
{
	const T5Config *c = &m->c;
	int			I = c->inner;
	int			Nd = run->d_off[run->n_dseq];
	int			Ne = run->e_off[run->batch];
	T5AttnShape self,
				cross;

	for (int i = 0; i < Nd; i++)
		memcpy(run->dl[0].h + (size_t) i * c->d, m->shared + (size_t) run->d_tok[i] * c->d,
			   sizeof(float) * c->d);
	run->d_R = max_len;
	t5_position_bias(run->d_pbias, m->dec_bias, c->NH, max_len, false, c->num_buckets,
					 c->max_distance);
	self = (T5AttnShape) {
		.B = run->n_dseq,.NH = c->NH,.hs = c->dkv,.q_off = run->d_off,.q_pos = run->d_pos,
		.kv_off = run->d_off,.kv_pos = run->d_pos,.kv_seq = NULL,
		.ldq = 3 * I,.ldk = 3 * I,.ldv = 3 * I,
		.pos_bias = run->d_pbias,.R = max_len,.causal = true
	};
	cross = (T5AttnShape) {
		.B = run->n_dseq,.NH = c->NH,.hs = c->dkv,.q_off = run->d_off,.q_pos = run->d_pos,
		.kv_off = run->e_off,.kv_pos = run->e_pos,.kv_seq = run->d_kvseq,
		.ldq = I,.ldk = 2 * I,.ldv = 2 * I,
		.pos_bias = NULL,.R = 0,.causal = false
	};
	for (int l = 0; l < c->Ld; l++)
	{
		const T5Block *b = &m->dec[l];
		T5Acts	   *a = &run->dl[keep ? l : 0];
		T5Scratch  *s = &run->ds;

		self_attn_forward(m, b, a, s, &self, decoder_input(m, run, l, keep), Nd);

		/* cross-attention: h_ca = h_sa + Attn(RMS h_sa, H) */
		linear_product(run->ds.bf16, a->kvc, run->e_out, b->cross.k, NULL, Ne, c->d, I, 2 * I);
		linear_product(run->ds.bf16, a->kvc + I, run->e_out, b->cross.v, NULL, Ne, c->d, I, 2 * I);
		rmsnorm_forward(s->normed, a->rstd_ca, a->h_sa, b->ln_cross, Nd, c->d, c->eps);
		linear_product(s->bf16, a->qc, s->normed, b->cross.q, NULL, Nd, c->d, I, I);
		t5_attention_forward(s->ctx, a->att_ca, a->qc, a->kvc, a->kvc + I, &cross);
		linear_product(s->bf16, a->h_ca, s->ctx, b->cross.o, NULL, Nd, I, c->d, c->d);
		residual_forward(a->h_ca, a->h_ca, a->h_sa, (size_t) Nd * c->d);

		ff_forward(m, b, a, s, a->h_ca, decoder_input(m, run, l + 1, keep), Nd);
	}
	rmsnorm_forward(run->d_out, run->d_rstd, run->d_last, m->dec_ln, Nd, c->d, c->eps);
	if (c->scale_out)
	{
		float		sc = (float) pow((double) c->d, -0.5);

		for (size_t i = 0; i < (size_t) Nd * c->d; i++)
			run->d_out[i] *= sc;
	}
	linear_product(run->ds.bf16, run->logits, run->d_out, m->head, NULL, Nd, c->d, c->vocab, c->vocab);
}

/* Check a forward's shape against the run. */
static NnStatus
check_shape(const T5Run *run, int batch, int seq_len, NnError *err)
{
	if (run == NULL)
		return nn_fail(err, NN_ERR_ARG, "no activation buffers (run is NULL)");
	if (batch < 0 || batch > run->max_batch || seq_len < 0 || seq_len > run->max_seq)
		return nn_fail(err, NN_ERR_ARG, "batch of %d x %d positions exceeds the run's %d x %d",
					   batch, seq_len, run->max_batch, run->max_seq);
	return NN_OK;
}

static NnStatus
t5_forward(const Backbone *bb, BackboneRun *brun, const float *x, const uint8_t *mask,
		   int batch, int seq_len, float *out, NnError *err)
{
	const T5   *m = bb->impl;
	T5Run	   *run = (T5Run *) brun;
	NnStatus	s;

	if ((s = check_shape(run, batch, seq_len, err)) != NN_OK)
		return s;
	encoder_forward(m, run, x, mask, batch, seq_len);
	meanpool_forward(out, run->e_out, run->e_off, batch, m->c.d);
	run->last = T5_LAST_ENCODER;
	return NN_OK;
}

void
t5_encoder_hidden(const Backbone *bb, const BackboneRun *brun, float *hidden)
{
	const T5   *m = bb->impl;
	const T5Run *run = (const T5Run *) brun;
	int			d = m->c.d;
	int			N = run->batch > 0 ? run->e_off[run->batch] : 0;

	memset(hidden, 0, sizeof(float) * (size_t) run->batch * run->seq_len * d);
	for (int i = 0; i < N; i++)
		memcpy(hidden + (size_t) run->e_rows[i] * d, run->e_out + (size_t) i * d,
			   sizeof(float) * d);
}

/* Check that every id of n is padding (< 0) or a row of the vocabulary. */
static NnStatus
check_ids(const T5 *m, const int32_t *ids, size_t n, const char *what, NnError *err)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] >= m->c.vocab)
			return nn_fail(err, NN_ERR_ARG, "%s id %d at %zu is outside the vocabulary of %d",
						   what, (int) ids[i], i, m->c.vocab);
	return NN_OK;
}

NnStatus
t5_loss_forward(const Backbone *bb, BackboneRun *brun, const float *x, const uint8_t *mask,
				int batch, int seq_len, const int32_t *labels, int label_len, float *loss,
				float *logits, NnError *err)
{
	const T5   *m = bb->impl;
	const T5Config *c = &m->c;
	T5Run	   *run = (T5Run *) brun;
	int			Nd = 0,
				max_len = 0;
	double		sum = 0.0;
	NnStatus	s;

	if ((s = check_shape(run, batch, seq_len, err)) != NN_OK)
		return s;
	if (label_len <= 0 || label_len > T5_MAX_POSITIONS)
		return nn_fail(err, NN_ERR_ARG, "label length %d is not in 1..%d", label_len,
					   T5_MAX_POSITIONS);
	if ((s = check_ids(m, labels, (size_t) batch * label_len, "label", err)) ||
		(s = ensure_decoder(m, run, batch > 0 ? batch : 1, label_len, err)))
		return s;
	run->last = T5_LAST_NONE;
	run->keep_layers = true;	/* its backward follows */
	encoder_forward(m, run, x, mask, batch, seq_len);

	/* one decoder sequence per row: [start, y_1 .. y_{k-1}] predicting y_1 .. y_k */
	run->n_dseq = batch;
	run->n_targets = 0;
	for (int b = 0; b < batch; b++)
	{
		const int32_t *y = labels + (size_t) b * label_len;
		int			len = 0;

		if (logits != NULL)
			len = label_len;
		else
			for (int t = 0; t < label_len; t++)
				if (y[t] >= 0)
					len = t + 1;
		run->d_off[b] = Nd;
		run->d_kvseq[b] = b;
		for (int t = 0; t < len; t++, Nd++)
		{
			run->d_pos[Nd] = t;
			run->d_tok[Nd] = t == 0 ? c->start_id : (y[t - 1] >= 0 ? y[t - 1] : c->pad_id);
			run->d_tgt[Nd] = y[t] >= 0 ? y[t] : -1;
			run->n_targets += y[t] >= 0;
		}
		if (len > max_len)
			max_len = len;
	}
	run->d_off[batch] = Nd;
	decoder_forward(m, run, max_len, true);
	if (logits != NULL)
		memcpy(logits, run->logits, sizeof(float) * (size_t) Nd * c->vocab);
	crossentropy_forward(run->logits, run->logp, run->logits, run->d_tgt, Nd, c->vocab);
	for (int i = 0; i < Nd; i++)
		sum += run->logp[i];
	if (loss != NULL)
		*loss = run->n_targets > 0 ? (float) (-sum / run->n_targets) : 0.0f;
	run->last = T5_LAST_LOSS;
	return NN_OK;
}

NnStatus
t5_label_loglik(const Backbone *bb, BackboneRun *brun, const float *x, const uint8_t *mask,
				int batch, int seq_len, const int32_t *cands, int n_cand, int cand_len,
				float *scores, NnError *err)
{
	const T5   *m = bb->impl;
	const T5Config *c = &m->c;
	T5Run	   *run = (T5Run *) brun;
	int			Nd = 0,
				max_len = 0;
	NnStatus	s;

	if ((s = check_shape(run, batch, seq_len, err)) != NN_OK)
		return s;
	if (n_cand <= 0 || n_cand > (1 << 16) || cand_len <= 0 || cand_len > T5_MAX_POSITIONS ||
		(double) batch * n_cand > (double) (1 << 24))
		return nn_fail(err, NN_ERR_ARG, "%d rows x %d candidates of %d tokens: out of range",
					   batch, n_cand, cand_len);
	if ((s = check_ids(m, cands, (size_t) n_cand * cand_len, "candidate", err)) ||
		(s = ensure_decoder(m, run, batch * n_cand > 0 ? batch * n_cand : 1, cand_len, err)))
		return s;
	run->last = T5_LAST_NONE;
	encoder_forward(m, run, x, mask, batch, seq_len);

	run->n_dseq = batch * n_cand;
	for (int b = 0; b < batch; b++)
		for (int k = 0; k < n_cand; k++)
		{
			const int32_t *y = cands + (size_t) k * cand_len;
			int			q = b * n_cand + k;
			int			len = 0;

			while (len < cand_len && y[len] >= 0)
				len++;
			run->d_off[q] = Nd;
			run->d_kvseq[q] = b;
			for (int t = 0; t < len; t++, Nd++)
			{
				run->d_pos[Nd] = t;
				run->d_tok[Nd] = t == 0 ? c->start_id : y[t - 1];
				run->d_tgt[Nd] = y[t];
			}
			if (len > max_len)
				max_len = len;
		}
	run->d_off[run->n_dseq] = Nd;
	decoder_forward(m, run, max_len, false);
	crossentropy_forward(run->logits, run->logp, run->logits, run->d_tgt, Nd, c->vocab);
	for (int q = 0; q < run->n_dseq; q++)
	{
		double		sum = 0.0;

		for (int i = run->d_off[q]; i < run->d_off[q + 1]; i++)
			sum += run->logp[i];
		scores[q] = (float) sum;
	}
	run->last = T5_LAST_LOGLIK;
	return NN_OK;
}

/* ---- backward ----------------------------------------------------------------------- */

/* Input-backward of ff_forward: dh (N, d) += d/d(inp) of FF(RMS inp), given dh = d(out). */
static void
ff_backward(const T5 *m, const T5Block *b, const T5Acts *a, T5Scratch *s, const float *inp,
			float *dh, int N)
{
	const T5Config *c = &m->c;
	size_t		NF = (size_t) N * c->F;

	memset(s->dgate, 0, sizeof(float) * NF);
	linear_product_backward(s->bf16, s->dgate, dh, b->wo, N, c->F, c->d, c->d);
	memset(s->dnormed, 0, sizeof(float) * (size_t) N * c->d);
	if (c->gated)
	{
		gated_act_backward(s->dgate, s->dlin, s->dgate, a->gate, a->lin, NF, c->act);
		linear_product_backward(s->bf16, s->dnormed, s->dlin, b->wi1, N, c->d, c->F, c->F);
	}
	else if (c->act == T5_ACT_RELU)
		relu_backward(s->dgate, s->dgate, a->gate, NF);	/* gate > 0 iff relu(gate) > 0 */
	else if (c->act == T5_ACT_GELU)
		gelu_backward(s->dgate, s->dgate, a->gate, NF);
	else
		t5_act_backward(s->dgate, s->dgate, a->gate, NF, c->act);
	linear_product_backward(s->bf16, s->dnormed, s->dgate, b->wi, N, c->d, c->F, c->F);
	rmsnorm_backward(dh, s->dnormed, inp, b->ln_ff, a->rstd_ff, N, c->d);
}

/* Input-backward of self_attn_forward: dh += d/d(a->h) of the attention branch. */
static void
self_attn_backward(const T5 *m, const T5Block *b, const T5Acts *a, T5Scratch *s,
				   const T5AttnShape *sh, float *dh, int N)
{
	const T5Config *c = &m->c;
	int			I = c->inner;

	memset(s->dctx, 0, sizeof(float) * (size_t) N * I);
	linear_product_backward(s->bf16, s->dctx, dh, b->self.o, N, I, c->d, c->d);
	memset(s->dqkv, 0, sizeof(float) * (size_t) N * 3 * I);
	t5_attention_backward(s->dqkv, s->dqkv + I, s->dqkv + 2 * I, s->datt, s->dctx,
						  a->qkv, a->qkv + I, a->qkv + 2 * I, a->att_sa, sh);
	memset(s->dnormed, 0, sizeof(float) * (size_t) N * c->d);
	linear_product_backward(s->bf16, s->dnormed, s->dqkv, b->self.q, N, c->d, I, 3 * I);
	linear_product_backward(s->bf16, s->dnormed, s->dqkv + I, b->self.k, N, c->d, I, 3 * I);
	linear_product_backward(s->bf16, s->dnormed, s->dqkv + 2 * I, b->self.v, N, c->d, I, 3 * I);
	rmsnorm_backward(dh, s->dnormed, a->h, b->ln_self, a->rstd_sa, N, c->d);
}

/* dx (batch, seq_len, d) from run->d_enc = d(H) of the last encoder forward. */
static void
encoder_backward(const T5 *m, T5Run *run, float *dx)
{
	const T5Config *c = &m->c;
	int			N = run->e_off[run->batch];
	float	   *dh = run->dh_e;
	T5AttnShape sh = encoder_shape(m, run);

	memset(dx, 0, sizeof(float) * (size_t) run->batch * run->seq_len * c->d);
	if (N == 0)
		return;
	if (!run->keep_layers)
	{
		/* the forward kept one block: again, keeping all (the same numbers) */
		run->keep_layers = true;
		encoder_blocks(m, run, N);
	}
	memset(dh, 0, sizeof(float) * (size_t) N * c->d);
	rmsnorm_backward(dh, run->d_enc, run->e_last, m->enc_ln, run->e_rstd, N, c->d);
	for (int l = c->Le - 1; l >= 0; l--)
	{
		const T5Acts *a = &run->e[l];

		ff_backward(m, &m->enc[l], a, &run->es, a->h_sa, dh, N);
		self_attn_backward(m, &m->enc[l], a, &run->es, &sh, dh, N);
	}
	embed_sum_backward(dx, dh, run->e_rows, N, c->d);	/* scatter the packed rows */
}

static NnStatus
t5_backward(const Backbone *bb, BackboneRun *brun, const float *dout, float *dx, NnError *err)
{
	const T5   *m = bb->impl;
	T5Run	   *run = (T5Run *) brun;
	int			N;

	if (run == NULL || run->last == T5_LAST_NONE)
		return nn_fail(err, NN_ERR_ARG, "backward without a forward on this run");
	N = run->e_off[run->batch];
	memset(run->d_enc, 0, sizeof(float) * (size_t) N * m->c.d);
	meanpool_backward(run->d_enc, dout, run->e_off, run->batch, m->c.d);
	encoder_backward(m, run, dx);
	return NN_OK;
}

NnStatus
t5_loss_backward(const Backbone *bb, BackboneRun *brun, float *dx, NnError *err)
{
	const T5   *m = bb->impl;
	const T5Config *c = &m->c;
	T5Run	   *run = (T5Run *) brun;
	int			I = c->inner;
	int			Nd,
				Ne;
	float	   *dh;
	T5Scratch  *s;
	T5AttnShape self,
				cross;

	if (run == NULL || run->last != T5_LAST_LOSS)
		return nn_fail(err, NN_ERR_ARG, "t5_loss_backward without a t5_loss_forward on this run");
	Nd = run->d_off[run->n_dseq];
	Ne = run->e_off[run->batch];
	dh = run->dh_d;
	s = &run->ds;
	memset(run->d_enc, 0, sizeof(float) * (size_t) Ne * c->d);
	if (run->n_targets == 0 || Nd == 0)
	{
		encoder_backward(m, run, dx);
		return NN_OK;
	}

	/* mean cross-entropy -> logits -> the (scaled) final output -> final RMS */
	crossentropy_backward(run->logits, run->logits, run->d_tgt, 1.0f / (float) run->n_targets,
						  Nd, c->vocab);
	memset(s->dnormed, 0, sizeof(float) * (size_t) Nd * c->d);
	linear_product_backward(s->bf16, s->dnormed, run->logits, m->head, Nd, c->d, c->vocab, c->vocab);
	if (c->scale_out)
	{
		float		sc = (float) pow((double) c->d, -0.5);

		for (size_t i = 0; i < (size_t) Nd * c->d; i++)
			s->dnormed[i] *= sc;
	}
	memset(dh, 0, sizeof(float) * (size_t) Nd * c->d);
	rmsnorm_backward(dh, s->dnormed, run->d_last, m->dec_ln, run->d_rstd, Nd, c->d);

	self = (T5AttnShape) {
		.B = run->n_dseq,.NH = c->NH,.hs = c->dkv,.q_off = run->d_off,.q_pos = run->d_pos,
		.kv_off = run->d_off,.kv_pos = run->d_pos,.kv_seq = NULL,
		.ldq = 3 * I,.ldk = 3 * I,.ldv = 3 * I,
		.pos_bias = run->d_pbias,.R = run->d_R,.causal = true
	};
	cross = (T5AttnShape) {
		.B = run->n_dseq,.NH = c->NH,.hs = c->dkv,.q_off = run->d_off,.q_pos = run->d_pos,
		.kv_off = run->e_off,.kv_pos = run->e_pos,.kv_seq = run->d_kvseq,
		.ldq = I,.ldk = 2 * I,.ldv = 2 * I,.pos_bias = NULL,.R = 0,.causal = false
	};
	for (int l = c->Ld - 1; l >= 0; l--)
	{
		const T5Block *b = &m->dec[l];
		const T5Acts *a = &run->dl[l];

		ff_backward(m, b, a, s, a->h_ca, dh, Nd);

		/* cross-attention: queries from RMS h_sa, keys and values from H */
		memset(s->dctx, 0, sizeof(float) * (size_t) Nd * I);
		linear_product_backward(s->bf16, s->dctx, dh, b->cross.o, Nd, I, c->d, c->d);
		memset(s->dqkv, 0, sizeof(float) * (size_t) Nd * I);
		memset(run->dkvc, 0, sizeof(float) * (size_t) Ne * 2 * I);
		t5_attention_backward(s->dqkv, run->dkvc, run->dkvc + I, s->datt, s->dctx,
							  a->qc, a->kvc, a->kvc + I, a->att_ca, &cross);
		memset(s->dnormed, 0, sizeof(float) * (size_t) Nd * c->d);
		linear_product_backward(s->bf16, s->dnormed, s->dqkv, b->cross.q, Nd, c->d, I, I);
		rmsnorm_backward(dh, s->dnormed, a->h_sa, b->ln_cross, a->rstd_ca, Nd, c->d);
		linear_product_backward(s->bf16, run->d_enc, run->dkvc, b->cross.k, Ne, c->d, I, 2 * I);
		linear_product_backward(s->bf16, run->d_enc, run->dkvc + I, b->cross.v, Ne, c->d, I, 2 * I);

		self_attn_backward(m, b, a, s, &self, dh, Nd);
	}
	/* dh now holds d(decoder input embeddings): frozen, dropped */
	encoder_backward(m, run, dx);
	run->last = T5_LAST_NONE;	/* the probabilities were overwritten */
	return NN_OK;
}

/* ---- tokens ------------------------------------------------------------------------- */

static int
t5_tokenize(const Backbone *bb, const char *text, size_t len, int32_t *ids, int max_ids)
{
	const T5   *m = bb->impl;

	return hf_unigram_encode(m->tok, text, len, HFU_SPECIALS | HFU_EOS, ids, NULL, max_ids);
}

static const char *
t5_token_piece(const Backbone *bb, int32_t id)
{
	const T5   *m = bb->impl;

	return hf_unigram_piece(m->tok, id);
}

/*
 * Rows of shared.weight; negative ids are padding (zero row, mask 0), ids
 * past the table read as the unknown piece.
 */
static void
t5_embed_tokens(const Backbone *bb, const int32_t *ids, int n, float *x, uint8_t *mask)
{
	const T5 *m = bb->impl;

	embedding_rows(x, mask, m->shared, m->c.vocab, hf_unigram_unk_id(m->tok), m->c.d, ids, n);
}

/* ---- open --------------------------------------------------------------------------- */

static void
t5_free(T5 *m)
{
	if (m == NULL)
		return;
	safetensors_close(m->st);
	hf_unigram_free(m->tok);
	free(m->enc);
	free(m->dec);
	free(m);
}

static bool
t5_run_use_bf16(BackboneRun *brun, bool on)
{
	T5Run	   *run = (T5Run *) brun;

	/* the encoder's and the decoder's products; shapes that do not suit stay float */
	run->es.bf16 = run->ds.bf16 = on && gemm_bf16_usable(32, 32);
	return run->es.bf16;
}

static void
t5_close(Backbone *bb)
{
	gemm_bf16_forget_weights();	/* packed copies of weights about to be unmapped */
	gemm_packed_forget_weights();
	t5_free(bb->impl);
	free(bb);
}

static const BackboneOps t5_ops = {
	.family = "t5",
	.tokenize = t5_tokenize,
	.token_piece = t5_token_piece,
	.embed_tokens = t5_embed_tokens,
	.run_new = t5_run_new,
	.run_bytes = t5_run_bytes,
	.run_free = t5_run_free,
	.forward = t5_forward,
	.backward = t5_backward,
	.run_use_bf16 = t5_run_use_bf16,
	.label_loglik = t5_label_loglik,
	.label_loss_forward = t5_loss_forward,
	.label_loss_backward = t5_loss_backward,
	.close = t5_close,
};

bool
t5_is(const Backbone *bb)
{
	return bb != NULL && bb->ops == &t5_ops;
}

int32_t
t5_eos_id(const Backbone *bb)
{
	return ((const T5 *) bb->impl)->c.eos_id;
}

int32_t
t5_pad_id(const Backbone *bb)
{
	return ((const T5 *) bb->impl)->c.pad_id;
}

static void
fingerprint(const T5 *m, const char *cfg, size_t cfg_len, const char *dir, char hex[65])
{
	Sha256		ctx;
	size_t		tlen;
	char		path[4096];
	char	   *tok;

	sha256_init(&ctx);
	sha256_update(&ctx, "t5", 3);
	sha256_update(&ctx, cfg, cfg_len);
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	if ((tok = hf_read_file(path, HFU_MAX_JSON_BYTES, &tlen)) != NULL)
	{
		sha256_update(&ctx, tok, tlen);
		free(tok);
	}
	safetensors_hash_sample(m->st, &ctx, T5_SAMPLE_BYTES);
	sha256_final_hex(&ctx, hex);
}

NnStatus
t5_open(Backbone **out, const char *dir, NnError *err)
{
	T5		   *m;
	Backbone   *bb;
	char		path[4096];
	char	   *cfg = NULL;
	size_t		cfg_len = 0;
	NnStatus	s;

	*out = NULL;
	if (dir == NULL || strlen(dir) > 3000)
		return nn_fail(err, NN_ERR_ARG, "model directory path is missing or too long");
	m = calloc(1, sizeof(T5));
	bb = calloc(1, sizeof(Backbone));
	if (m == NULL || bb == NULL)
	{
		free(m);
		free(bb);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory opening a T5 model");
	}
	snprintf(path, sizeof(path), "%s/config.json", dir);
	if ((cfg = hf_read_file(path, T5_MAX_CONFIG_BYTES, &cfg_len)) == NULL)
	{
		s = nn_fail(err, NN_ERR_IO, "cannot read \"%s\"", path);
		goto fail;
	}
	if ((s = parse_config(&m->c, cfg, cfg_len, err)) != NN_OK)
		goto fail;
	m->enc = calloc((size_t) m->c.Le, sizeof(T5Block));
	m->dec = calloc((size_t) m->c.Ld, sizeof(T5Block));
	if (m->enc == NULL || m->dec == NULL)
	{
		s = nn_fail(err, NN_ERR_NOMEM, "out of memory opening a T5 model");
		goto fail;
	}
	if ((s = hf_open_weights(&m->st, dir, err)) || (s = bind_weights(m, err)))
		goto fail;
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	if ((s = hf_unigram_load(&m->tok, path, err)) != NN_OK)
		goto fail;
	if (hf_unigram_vocab_size(m->tok) > m->c.vocab)
	{
		s = nn_fail(err, NN_ERR_FORMAT, "the tokenizer has %d ids, the embedding table %d rows",
					hf_unigram_vocab_size(m->tok), m->c.vocab);
		goto fail;
	}
	if (hf_unigram_eos_id(m->tok) != m->c.eos_id)
	{
		s = nn_fail(err, NN_ERR_FORMAT,
					"tokenizer.json's \"</s>\" is id %d, config.json's eos_token_id %d",
					(int) hf_unigram_eos_id(m->tok), (int) m->c.eos_id);
		goto fail;
	}

	bb->ops = &t5_ops;
	if (!safetensors_region(m->st, &bb->weights, &bb->weights_len))
		bb->weights = NULL;
	bb->vocab_size = m->c.vocab;
	bb->d_embed = m->c.d;
	bb->d_out = m->c.d;
	bb->max_tokens = T5_MAX_TOKENS;
	bb->max_positions = T5_MAX_POSITIONS;
	fingerprint(m, cfg, cfg_len, dir, bb->fingerprint);
	bb->impl = m;
	free(cfg);
	*out = bb;
	return NN_OK;

fail:
	free(cfg);
	t5_free(m);
	free(bb);
	return s;
}
