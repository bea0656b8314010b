/*
 * use_lite.c: loading and running the use-lite backbone (model summary in
 * use_lite.h).
 *
 * Load: tfjs_weights maps the shards; every tensor the forward pass uses is
 * looked up by its graph name with its exact shape, so a different or
 * damaged model fails here with NN_ERR_FORMAT rather than computing
 * garbage.  Constants the graph keeps as weights (epsilons, query scales,
 * head counts, the 128-token clip, the padding value) are read, not assumed.
 * The fingerprint is the SHA-256 of model.json, which names and sizes every
 * weight; the 28 MB of shards are not read at load time.
 *
 * Forward: the padded (batch, seq_len) input is packed into its valid rows
 * (mask = 1) first, so the GEMMs run over exactly sum(n_b) rows and no
 * padding is computed; rows keep their column index as position.  This is
 * exact: in the graph padded positions are excluded from attention keys (a
 * -1e9 bias, whose exp underflows to 0), from pooling and from the FFN.
 * The graph pools the first count rows, count = number of valid ones; the
 * valid rows always form a prefix there, and pooling the masked rows is the
 * same thing for that case and the natural meaning for any other mask.
 * run_pool_skip leaves each sequence's first valid rows (an adapter's
 * prompt) out of the pool, for adapters trained that way (adapter.h).
 *
 * Backward (input gradients only; the weights are frozen): the forward keeps
 * in the run exactly what the backward reads -- x0 and each layer's h_mid and
 * h_out (the layer-norm inputs), the layer norms' mean/rstd, qkv and the
 * attention probabilities, the post-ReLU FFN activations, the post-tanh
 * vector and the l2 inverse norms -- and nothing it does not (the layer-norm
 * outputs and the concatenated heads are only GEMM inputs and live in a
 * scratch buffer).  The backward walks the same packed rows in reverse with
 * dX = dY W^T sgemm calls: about the forward's FLOPs again, none for weight
 * gradients.  Padding positions of dx are zero: they never influence a
 * valid row (keys are masked, pooling skips them).  The backward only reads
 * the forward's caches, so it may be repeated.
 */
#include "models/use_lite/use_lite.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/gemm_bf16.h"
#include "ops/gemm_packed.h"
#include "ops/kernels.h"
#include "base/arena.h"
#include "base/sha256.h"
#include "formats/compiled.h"
#include "tokenizers/sentencepiece.h"
#include "formats/tfjs_weights.h"

#define UL_VOCAB 8002			/* rows of module/Embeddings_en */
#define UL_D_EMBED 256
#define UL_D_MODEL 512
#define UL_D_FF 1536
#define UL_N_TIMESCALES 128
#define UL_N_LAYERS 2

/* Graph name prefixes. */
#define UL_APPLY "module_apply_default/Encoder_en/KonaTransformer/"
#define UL_ENC UL_APPLY "Encode/"
#define UL_STACK UL_ENC "TransformerStack/"
#define UL_MOD "module/Encoder_en/KonaTransformer/Encode/"

typedef struct UseLiteLayer
{
	int			d_in;			/* attention width: 256 (layer 0), 512 */
	int			n_heads;
	float		q_scale;		/* MultiheadAttention/mul/y = 1/sqrt(head size) */
	const float *ln1_w,
			   *ln1_b;			/* (d_in) */
	const float *w_qkv,
			   *b_qkv;			/* (d_in, 3 d_in), (3 d_in) */
	const float *w_o,
			   *b_o;			/* (d_in, 512), (512) */
	const float *w_res,
			   *b_res;			/* AdjustResidualInput (256, 512), (512); NULL in layer 1 */
	const float *ln2_w,
			   *ln2_b;			/* (512) */
	const float *w_fc1,
			   *b_fc1;			/* (512, 1536), (1536) */
	const float *w_fc2,
			   *b_fc2;			/* (1536, 512), (512) */
} UseLiteLayer;

typedef struct UseLite
{
	TfjsWeights *weights;
	SpTokenizer *tok;
	CompiledFile compiled;		/* the mapped tokenizer image, when one was usable */
	const float *emb;			/* (8002, 256) */
	const float *inv_timescales;	/* (128) */
	float	   *timing;			/* (max_positions, 256) precomputed signal */
	UseLiteLayer layer[UL_N_LAYERS];
	const float *w_tanh,
			   *b_tanh;			/* (512, 512), (512) */
	float		ln_eps;			/* layer_norm/Cast/x, shared by all layer norms */
	float		l2_eps;			/* l2_normalize/Maximum/y */
	int32_t		pad_id;			/* SparseToDense/default_value: ids <= it are padding */
} UseLite;

/* One layer's activations over N packed rows, kept for the backward pass. */
typedef struct UseLiteActs
{
	float	   *ln1_mean,
			   *ln1_rstd;		/* (N) of LN1 over the layer input */
	float	   *qkv;			/* (N, 3 d_in) */
	float	   *att;			/* attention probabilities, see attention_forward */
	float	   *h_mid;			/* (N, 512) after the attention residual */
	float	   *ln2_mean,
			   *ln2_rstd;		/* (N) of LN2 over h_mid */
	float	   *fch;			/* (N, 1536) after ReLU */
	float	   *h_out;			/* (N, 512) layer output */
} UseLiteActs;

/* The BackboneRun of this family (callers only see the opaque pointer). */
typedef struct UseLiteRun
{
	int			max_batch;
	int			max_seq;
	bool		bf16;			/* products in bfloat16 (inference only, run_use_bf16) */
	int			batch;			/* shape of the last forward */
	int			seq_len;
	int			pool_skip;		/* rows left out of each sequence's pool (run_pool_skip) */
	int			fwd_pool_skip;	/* pool_skip of the last forward, for its backward */
	int		   *offsets;		/* (max_batch + 1) packed row ranges */
	int		   *rows;			/* (max_batch * max_seq) b * seq_len + t of each packed row */
	int		   *tail_offsets;	/* (max_batch + 1) ranges of the rows past pool_skip, packed */
	int		   *tail_rows;		/* (max_batch * max_seq) packed row of each of those */
	float	   *x0;				/* (N, 256) X + (X + signal) */
	UseLiteActs layer[UL_N_LAYERS];
	float	   *pooled;			/* (max_batch, 512) */
	float	   *hidden;			/* (max_batch, 512) after tanh */
	float	   *inv_norm;		/* (max_batch) */
	/* scratch, dead between calls */
	float	   *tmp;			/* (N, 512) forward: LN outputs, heads; backward: d(those) */
	float	   *proj;			/* (N, 512) forward: projections; backward: residual grad */
	float	   *dbig;			/* (N, 1536) backward: d(fch), d(qkv), dx0 */
	float	   *datt;			/* (max_seq, max_seq) backward: one head's dP */
	float	   *dhidden;		/* (max_batch, 512) backward: d(tanh output), d(pre-tanh) */
	float	   *dpooled;		/* (max_batch, 512) backward */
	void	   *arena;			/* every float buffer above */
} UseLiteRun;

/* ---- loading ------------------------------------------------------------- */

/* Bind a float32 tensor of the given shape (ndim <= 4), or fail naming it. */
static NnStatus
bind(const TfjsWeights *w, const float **dst, const char *name, int ndim,
	 const int64_t *shape, NnError *err)
{
	const void *p;
	NnStatus	status = tfjs_weights_get(w, name, TFJS_FLOAT32, ndim, shape, &p, err);

	*dst = p;
	return status;
}

/* Width codes in layer_weights[], resolved per layer. */
#define W_IN (-1)				/* the layer's attention width d_in */
#define W_IN3 (-3)				/* 3 * d_in */

typedef struct LayerWeight
{
	size_t		field;			/* offsetof(UseLiteLayer, ...) */
	const char *fmt;			/* graph name, %d = layer */
	int			ndim;
	int			dims[4];		/* sizes or W_IN / W_IN3 */
} LayerWeight;

#define LW(f, prefix, path, ...) \
	{offsetof(UseLiteLayer, f), prefix "Layer_%d/TransformerLayer/" path, __VA_ARGS__}
#define LPP "layer_prepostprocess/layer_norm/"
#define MHA "MultiheadAttention/"

/*
 * Every per-layer weight.  Dense kernels are (in, out) as TF stores them; the
 * attention projections are 1x1 convolutions, (1, 1, in, out).
 */
static const LayerWeight layer_weights[] = {
	LW(ln1_w, UL_ENC, LPP "layer_norm_scale/ConcatPartitions/concat", 1, {W_IN}),
	LW(ln1_b, UL_ENC, LPP "layer_norm_bias/ConcatPartitions/concat", 1, {W_IN}),
	LW(w_qkv, UL_MOD, MHA "qkv_transform_single/kernel/part_0", 4, {1, 1, W_IN, W_IN3}),
	LW(b_qkv, UL_ENC, MHA "qkv_transform_single/bias/ConcatPartitions/concat", 1, {W_IN3}),
	LW(w_o, UL_MOD, MHA "output_transform_single/kernel/part_0", 4, {1, 1, W_IN, UL_D_MODEL}),
	LW(b_o, UL_ENC, MHA "output_transform_single/bias/ConcatPartitions/concat", 1, {UL_D_MODEL}),
	LW(ln2_w, UL_ENC, "FFN/" LPP "layer_norm_scale/ConcatPartitions/concat", 1, {UL_D_MODEL}),
	LW(ln2_b, UL_ENC, "FFN/" LPP "layer_norm_bias/ConcatPartitions/concat", 1, {UL_D_MODEL}),
	LW(w_fc1, UL_STACK, "FFN/conv1/Tensordot/Reshape_1", 2, {UL_D_MODEL, UL_D_FF}),
	LW(b_fc1, UL_ENC, "FFN/conv1/bias/ConcatPartitions/concat", 1, {UL_D_FF}),
	LW(w_fc2, UL_STACK, "FFN/conv2/Tensordot/Reshape_1", 2, {UL_D_FF, UL_D_MODEL}),
	LW(b_fc2, UL_ENC, "FFN/conv2/bias/ConcatPartitions/concat", 1, {UL_D_MODEL}),
};
#define N_LAYER_WEIGHTS ((int) (sizeof(layer_weights) / sizeof(layer_weights[0])))

/* Layer 0 only: AdjustResidualInput, a dense 256 -> 512 on the residual path. */
static const LayerWeight residual_weights[] = {
	LW(w_res, UL_ENC, "dense/kernel/ConcatPartitions/concat", 2, {W_IN, UL_D_MODEL}),
	LW(b_res, UL_ENC, "dense/bias/ConcatPartitions/concat", 1, {UL_D_MODEL}),
};

/* Bind the n table entries of layer l into L. */
static NnStatus
bind_table(const TfjsWeights *w, UseLiteLayer *L, int l, const LayerWeight *table, int n,
		   NnError *err)
{
	for (int i = 0; i < n; i++)
	{
		char		name[512];
		int64_t		shape[4];
		NnStatus	s;

		for (int k = 0; k < table[i].ndim; k++)
		{
			int			d = table[i].dims[k];

			shape[k] = d == W_IN ? L->d_in : d == W_IN3 ? 3 * L->d_in : d;
		}
		snprintf(name, sizeof(name), table[i].fmt, l);
		s = bind(w, (const float **) ((char *) L + table[i].field), name, table[i].ndim, shape, err);
		if (s != NN_OK)
			return s;
	}
	return NN_OK;
}

/* An int32 graph constant of layer l (name format fmt) that must equal want. */
static NnStatus
expect_i32(const TfjsWeights *w, const char *fmt, int l, int32_t want, NnError *err)
{
	char		name[512];
	int32_t		v;
	NnStatus	s;

	snprintf(name, sizeof(name), fmt, l);
	s = tfjs_weights_scalar_i32(w, name, &v, err);
	if (s == NN_OK && v != want)
		s = nn_fail(err, NN_ERR_FORMAT, "graph constant \"%s\" is %d, expected %d",
					name, (int) v, (int) want);
	return s;
}

/*
 * Bind one transformer layer and read its attention constants: the q/k/v
 * split sizes, the head count (one constant, shared by both layers), the head
 * size and the query scale.
 */
static NnStatus
bind_layer(const TfjsWeights *w, UseLiteLayer *L, int l, NnError *err)
{
	char		name[512];
	const void *p;
	const int32_t *split;
	int32_t		heads;
	static const int64_t three[1] = {3};
	NnStatus	s;

	L->d_in = l == 0 ? UL_D_EMBED : UL_D_MODEL;
	s = bind_table(w, L, l, layer_weights, N_LAYER_WEIGHTS, err);
	if (s == NN_OK && L->d_in != UL_D_MODEL)
		s = bind_table(w, L, l, residual_weights, 2, err);
	if (s != NN_OK)
		return s;

	snprintf(name, sizeof(name), UL_STACK "Layer_%d/TransformerLayer/" MHA "Const", l);
	if ((s = tfjs_weights_get(w, name, TFJS_INT32, 1, three, &p, err)) != NN_OK)
		return s;
	split = p;
	if (split[0] != L->d_in || split[1] != L->d_in || split[2] != L->d_in)
		return nn_fail(err, NN_ERR_FORMAT, "graph constant \"%s\" does not split q, k, v at %d",
					   name, L->d_in);
	s = tfjs_weights_scalar_i32(w, UL_STACK "Layer_1/TransformerLayer/" MHA
								"split_heads/split_last_dimension/Reshape/shape/2", &heads, err);
	if (s != NN_OK)
		return s;
	if (heads <= 0 || L->d_in % heads != 0)
		return nn_fail(err, NN_ERR_FORMAT, "%d attention heads do not divide width %d",
					   (int) heads, L->d_in);
	L->n_heads = heads;
	s = expect_i32(w, UL_STACK "Layer_%d/TransformerLayer/" MHA
				   "split_heads/split_last_dimension/Reshape/shape/3", l, L->d_in / heads, err);
	if (s != NN_OK)
		return s;
	snprintf(name, sizeof(name), UL_STACK "Layer_%d/TransformerLayer/" MHA "mul/y", l);
	return tfjs_weights_scalar_f32(w, name, &L->q_scale, err);
}

/* Bind everything the forward pass reads; *max_tokens = the graph's clip. */
static NnStatus
bind_weights(UseLite *m, int *max_tokens, NnError *err)
{
	static const int64_t emb_shape[2] = {UL_VOCAB, UL_D_EMBED};
	static const int64_t inv_shape[2] = {1, UL_N_TIMESCALES};
	static const int64_t tanh_w_shape[2] = {UL_D_MODEL, UL_D_MODEL};
	static const int64_t tanh_b_shape[1] = {UL_D_MODEL};
	const TfjsWeights *w = m->weights;
	int32_t		clip;
	NnStatus	s;

	if ((s = bind(w, &m->emb, "module/Embeddings_en", 2, emb_shape, err)) ||
		(s = bind(w, &m->inv_timescales,
				  UL_STACK "Layer_0/AddTimingSignal/TimingSignal/ExpandDims_1", 2, inv_shape, err)) ||
		(s = bind(w, &m->w_tanh, "module/Encoder_en/hidden_layers/tanh_layer_0/weights", 2,
				  tanh_w_shape, err)) ||
		(s = bind(w, &m->b_tanh, "module/Encoder_en/hidden_layers/tanh_layer_0/bias", 1,
				  tanh_b_shape, err)) ||
		(s = tfjs_weights_scalar_f32(w, UL_STACK "Layer_1/TransformerLayer/FFN/" LPP "Cast/x",
									 &m->ln_eps, err)) ||
		(s = tfjs_weights_scalar_f32(w, "module_apply_default/Encoder_en/hidden_layers/"
									 "l2_normalize/Maximum/y", &m->l2_eps, err)) ||
		(s = tfjs_weights_scalar_i32(w, UL_ENC "SparseToDense/default_value", &m->pad_id, err)) ||
		(s = tfjs_weights_scalar_i32(w, UL_APPLY "ClipToMaxLength/Less/y", &clip, err)))
		return s;
	if (!(m->ln_eps > 0.0f) || !(m->l2_eps > 0.0f))
		return nn_fail(err, NN_ERR_FORMAT, "layer-norm or l2 epsilon is not positive");
	if (clip <= 0 || clip > USE_LITE_MAX_POSITIONS)
		return nn_fail(err, NN_ERR_FORMAT, "token limit %d is outside 1..%d", (int) clip,
					   USE_LITE_MAX_POSITIONS);
	if (m->pad_id >= 0)
		return nn_fail(err, NN_ERR_FORMAT, "padding id %d would mask real tokens",
					   (int) m->pad_id);
	*max_tokens = clip;
	for (int l = 0; l < UL_N_LAYERS; l++)
		if ((s = bind_layer(w, &m->layer[l], l, err)) != NN_OK)
			return s;
	return NN_OK;
}

static void
use_lite_free(UseLite *m)
{
	if (m == NULL)
		return;
	sp_tokenizer_free(m->tok);
	compiled_close(&m->compiled);
	tfjs_weights_close(m->weights);
	free(m->timing);
	free(m);
}

static void
use_lite_close(Backbone *bb)
{
	gemm_bf16_forget_weights();	/* packed copies of weights about to be unmapped */
	gemm_packed_forget_weights();
	use_lite_free(bb->impl);
	free(bb);
}

/* ---- tokens --------------------------------------------------------------- */

static int
use_lite_tokenize(const Backbone *bb, const char *text, size_t len, int32_t *ids, int max_ids)
{
	const UseLite *m = bb->impl;

	return sp_tokenizer_encode(m->tok, text, len, ids, max_ids);
}

static const char *
use_lite_token_piece(const Backbone *bb, int32_t id)
{
	const UseLite *m = bb->impl;

	return sp_tokenizer_piece(m->tok, id);
}

/*
 * Embedding rows of ids.  The graph masks only padding (SparseToDense fills
 * absent positions with -1 and keeps ids > -1): the unknown piece 0 is a real
 * token.  Ids at or below the padding value become padding (zero row, mask
 * 0); ids past the table are read as the unknown piece 0.
 */
static void
use_lite_embed_tokens(const Backbone *bb, const int32_t *ids, int n, float *x, uint8_t *mask)
{
	const UseLite *m = bb->impl;

	for (int i = 0; i < n; i++)
	{
		float	   *row = x + (size_t) i * UL_D_EMBED;
		int32_t		id = ids[i];

		if (id <= m->pad_id)
		{
			memset(row, 0, sizeof(float) * UL_D_EMBED);
			mask[i] = 0;
			continue;
		}
		if (id < 0 || id >= UL_VOCAB)
			id = 0;
		memcpy(row, m->emb + (size_t) id * UL_D_EMBED, sizeof(float) * UL_D_EMBED);
		mask[i] = 1;
	}
}

/* ---- activation buffers ----------------------------------------------------- */

/* Lay out (base NULL: measure) every float buffer of run. */
static size_t
layout_run(UseLiteRun *run, char *base, const UseLite *m)
{
	size_t		off = 0;
	size_t		R = (size_t) run->max_batch * run->max_seq;
	size_t		B = (size_t) run->max_batch;
	size_t		S = (size_t) run->max_seq;

	run->x0 = arena_carve(base, &off, R * UL_D_EMBED);
	for (int l = 0; l < UL_N_LAYERS; l++)
	{
		UseLiteActs *a = &run->layer[l];
		size_t		d = (size_t) m->layer[l].d_in;

		a->ln1_mean = arena_carve(base, &off, R);
		a->ln1_rstd = arena_carve(base, &off, R);
		a->qkv = arena_carve(base, &off, R * 3 * d);
		/* worst case: every sequence max_seq long */
		a->att = arena_carve(base, &off, B * m->layer[l].n_heads * S * S);
		a->h_mid = arena_carve(base, &off, R * UL_D_MODEL);
		a->ln2_mean = arena_carve(base, &off, R);
		a->ln2_rstd = arena_carve(base, &off, R);
		a->fch = arena_carve(base, &off, R * UL_D_FF);
		a->h_out = arena_carve(base, &off, R * UL_D_MODEL);
	}
	run->pooled = arena_carve(base, &off, B * UL_D_MODEL);
	run->hidden = arena_carve(base, &off, B * UL_D_MODEL);
	run->inv_norm = arena_carve(base, &off, B);
	run->tmp = arena_carve(base, &off, R * UL_D_MODEL);
	run->proj = arena_carve(base, &off, R * UL_D_MODEL);
	/* d(fch) is the widest gradient; d(qkv) of layer 1 is as wide (3 x 512) */
	run->dbig = arena_carve(base, &off, R * UL_D_FF);
	run->datt = arena_carve(base, &off, S * S);
	run->dhidden = arena_carve(base, &off, B * UL_D_MODEL);
	run->dpooled = arena_carve(base, &off, B * UL_D_MODEL);
	return off;
}

static void
use_lite_run_free(BackboneRun *brun)
{
	UseLiteRun *run = (UseLiteRun *) brun;

	if (run == NULL)
		return;
	free(run->arena);
	free(run->offsets);
	free(run->rows);
	free(run->tail_offsets);
	free(run->tail_rows);
	free(run);
}

/* Buffers for max_batch sequences of up to max_seq positions; NULL if impossible. */
static BackboneRun *
use_lite_run_new(const Backbone *bb, int max_batch, int max_seq)
{
	const UseLite *m = bb->impl;
	UseLiteRun *run;
	size_t		bytes;

	if (max_batch <= 0 || max_seq <= 0 || max_seq > bb->max_positions ||
		max_batch > (1 << 20))
		return NULL;
	run = calloc(1, sizeof(UseLiteRun));
	if (run == NULL)
		return NULL;
	run->max_batch = max_batch;
	run->max_seq = max_seq;
	bytes = layout_run(run, NULL, m);
	run->offsets = malloc(sizeof(int) * ((size_t) max_batch + 1));
	run->rows = malloc(sizeof(int) * (size_t) max_batch * max_seq);
	run->tail_offsets = malloc(sizeof(int) * ((size_t) max_batch + 1));
	run->tail_rows = malloc(sizeof(int) * (size_t) max_batch * max_seq);
	run->arena = arena_alloc(bytes);
	if (run->arena == NULL || run->offsets == NULL || run->rows == NULL ||
		run->tail_offsets == NULL || run->tail_rows == NULL)
	{
		use_lite_run_free((BackboneRun *) run);
		return NULL;
	}
	layout_run(run, run->arena, m);
	return (BackboneRun *) run;
}

/* Heap bytes use_lite_run_new allocates for this shape (no decoder: dec_* are unused). */
static size_t
use_lite_run_bytes(const Backbone *bb, int max_batch, int max_seq, int dec_seqs, int dec_len)
{
	UseLiteRun	run = {0};

	(void) dec_seqs;
	(void) dec_len;
	if (max_batch <= 0 || max_seq <= 0 || max_seq > bb->max_positions || max_batch > (1 << 20))
		return SIZE_MAX;
	run.max_batch = max_batch;
	run.max_seq = max_seq;
	return backbone_alloc_bytes(sizeof(UseLiteRun)) +
		backbone_alloc_bytes(layout_run(&run, NULL, bb->impl)) +
		2 * backbone_alloc_bytes(sizeof(int) * ((size_t) max_batch + 1)) +
		2 * backbone_alloc_bytes(sizeof(int) * (size_t) max_batch * max_seq);
}

/* ---- forward ---------------------------------------------------------------- */

static bool
use_lite_run_use_bf16(BackboneRun *brun, bool on)
{
	UseLiteRun *run = (UseLiteRun *) brun;

	/* every use-lite product is C, OC in {256, 512, 1536}: one shape stands for all */
	run->bf16 = on && gemm_bf16_usable(UL_D_MODEL, UL_D_FF);
	return run->bf16;
}

/* out = inp W + b in the run's precision; dense_backward: dinp += dout W^T */
static void
dense(const UseLiteRun *run, float *out, const float *inp, const float *W, const float *b,
	  int N, int C, int OC)
{
	if (run->bf16)
		matmul_forward_bf16(out, inp, W, b, N, C, OC);
	else
		matmul_forward(out, inp, W, b, N, C, OC);
}

static void
dense_backward(const UseLiteRun *run, float *dinp, const float *dout, const float *W, int N,
			   int C, int OC)
{
	if (run->bf16)
		matmul_backward_bf16(dinp, dout, W, N, C, OC);
	else
		matmul_backward(dinp, dout, W, N, C, OC);
}

/* FFN block over N rows: h_out = relu(LN(h_mid) W1 + b1) W2 + b2 + h_mid */
static void
ffn_forward(const UseLite *m, const UseLiteRun *run, const UseLiteLayer *L, UseLiteActs *a,
			float *tmp, float *proj, int N)
{
	layernorm_forward(tmp, a->ln2_mean, a->ln2_rstd, a->h_mid, L->ln2_w, L->ln2_b,
					  N, UL_D_MODEL, m->ln_eps);
	dense(run, a->fch, tmp, L->w_fc1, L->b_fc1, N, UL_D_MODEL, UL_D_FF);
	relu_forward(a->fch, a->fch, (size_t) N * UL_D_FF);
	dense(run, proj, a->fch, L->w_fc2, L->b_fc2, N, UL_D_FF, UL_D_MODEL);
	residual_forward(a->h_out, proj, a->h_mid, (size_t) N * UL_D_MODEL);
}

/*
 * One pre-norm transformer layer over the N packed rows of inp.  tmp and
 * proj are (N, 512) scratch: tmp holds LN1's output, then the concatenated
 * heads, then LN2's output, each dead once projected.
 */
static void
layer_forward(const UseLite *m, const UseLiteRun *run, const UseLiteLayer *L, UseLiteActs *a,
			  float *tmp, float *proj, const float *inp, int N, const int *offsets, int B)
{
	int			d = L->d_in;

	/* attention block: h_mid = MHA(LN(inp)) + residual */
	layernorm_forward(tmp, a->ln1_mean, a->ln1_rstd, inp, L->ln1_w, L->ln1_b, N, d, m->ln_eps);
	dense(run, a->qkv, tmp, L->w_qkv, L->b_qkv, N, d, 3 * d);
	attention_forward(tmp, a->att, a->qkv, offsets, B, d, L->n_heads, L->q_scale);
	dense(run, proj, tmp, L->w_o, L->b_o, N, d, UL_D_MODEL);
	if (L->w_res != NULL)
	{
		/* AdjustResidualInput: a dense layer brings inp to the model width */
		dense(run, a->h_mid, inp, L->w_res, L->b_res, N, d, UL_D_MODEL);
		residual_forward(a->h_mid, proj, a->h_mid, (size_t) N * UL_D_MODEL);
	}
	else
		residual_forward(a->h_mid, proj, inp, (size_t) N * UL_D_MODEL);
	ffn_forward(m, run, L, a, tmp, proj, N);
}

/*
 * The last layer when the pool reads only the rows past each sequence's
 * first skip (the prompt's): every row still gives the keys and values, but
 * only the pooled rows are queries, and only they go through the output
 * projection and the FFN (docs/design.md 6, "The last layer reads only what
 * is pooled").  a's h_mid and h_out, the FFN caches and the attention
 * probabilities hold those rows, packed as run->tail_offsets says.
 */
static void
layer_tail_forward(const UseLite *m, const UseLiteRun *run, const UseLiteLayer *L,
				   UseLiteActs *a, const float *inp, int N, int B, int skip)
{
	int			d = L->d_in;
	int			Nt = run->tail_offsets[B];

	layernorm_forward(run->tmp, a->ln1_mean, a->ln1_rstd, inp, L->ln1_w, L->ln1_b, N, d,
					  m->ln_eps);
	dense(run, a->qkv, run->tmp, L->w_qkv, L->b_qkv, N, d, 3 * d);
	attention_tail_forward(run->tmp, a->att, a->qkv, run->offsets, B, d, L->n_heads,
						   L->q_scale, skip);
	dense(run, run->proj, run->tmp, L->w_o, L->b_o, Nt, d, UL_D_MODEL);
	for (int i = 0; i < Nt; i++)
		residual_forward(a->h_mid + (size_t) i * UL_D_MODEL, run->proj + (size_t) i * UL_D_MODEL,
						 inp + (size_t) run->tail_rows[i] * UL_D_MODEL, UL_D_MODEL);
	ffn_forward(m, run, L, a, run->tmp, run->proj, Nt);
}

/*
 * Input-backward of ffn_forward over N rows: dres, d(h_out) on entry,
 * becomes d(h_mid) (the residual's identity plus the LN2 branch); dsmall
 * (N, 512) and dbig (N, 1536) are scratch.
 */
static void
ffn_backward(const UseLiteRun *run, const UseLiteLayer *L, const UseLiteActs *a, float *dres,
			 float *dsmall, float *dbig, int N)
{
	memset(dbig, 0, sizeof(float) * N * UL_D_FF);
	dense_backward(run, dbig, dres, L->w_fc2, N, UL_D_FF, UL_D_MODEL);
	relu_backward(dbig, dbig, a->fch, (size_t) N * UL_D_FF);
	memset(dsmall, 0, sizeof(float) * N * UL_D_MODEL);
	dense_backward(run, dsmall, dbig, L->w_fc1, N, UL_D_MODEL, UL_D_FF);
	layernorm_backward(dres, dsmall, a->h_mid, L->ln2_w, a->ln2_mean, a->ln2_rstd,
					   N, UL_D_MODEL);
}

/*
 * Input-backward of layer_forward.  On entry dres (N, 512) = d(h_out); on
 * exit it is d(inp) for layer 1 (whose input is 512 wide: the residual path
 * is the identity, so the same buffer carries both branches), while layer 0,
 * whose residual goes through AdjustResidualInput, leaves d(inp) (N, 256)
 * in dinp instead.  dsmall (N, 512), dbig (N, 1536) and datt are scratch;
 * dinp may be dbig (d(qkv) is dead by the time dinp is written).
 */
static void
layer_backward(const UseLiteRun *run, const UseLiteLayer *L, const UseLiteActs *a, float *dres,
			   float *dinp, float *dsmall, float *dbig, float *datt, const float *inp, int N,
			   const int *offsets, int B)
{
	int			d = L->d_in;

	ffn_backward(run, L, a, dres, dsmall, dbig, N);

	/* attention block, h_mid = MHA(LN1(inp)) Wo + bo + residual(inp) */
	memset(dsmall, 0, sizeof(float) * N * d);
	dense_backward(run, dsmall, dres, L->w_o, N, d, UL_D_MODEL);
	memset(dbig, 0, sizeof(float) * N * 3 * d);
	attention_backward(dbig, datt, dsmall, a->qkv, a->att, offsets, B, d, L->n_heads,
					   L->q_scale);
	memset(dsmall, 0, sizeof(float) * N * d);
	dense_backward(run, dsmall, dbig, L->w_qkv, N, d, 3 * d);
	if (L->w_res != NULL)
	{
		/* d(inp) = dres Wd^T + LN1 branch */
		memset(dinp, 0, sizeof(float) * N * d);
		dense_backward(run, dinp, dres, L->w_res, N, d, UL_D_MODEL);
		layernorm_backward(dinp, dsmall, inp, L->ln1_w, a->ln1_mean, a->ln1_rstd, N, d);
	}
	else
		layernorm_backward(dres, dsmall, inp, L->ln1_w, a->ln1_mean, a->ln1_rstd, N, d);
}

/*
 * Spread the Nt packed rows at the start of buf (C wide) to the packed rows
 * rows[i] of N, zeros elsewhere; rows is increasing, so i <= rows[i] and a
 * walk from the end reads each row before anything overwrites it.
 */
static void
spread_rows(float *buf, const int *rows, int Nt, int N, int C)
{
	int			next = N;		/* rows from next on are final */

	for (int i = Nt - 1; i >= 0; i--)
	{
		int			r = rows[i];

		memset(buf + (size_t) (r + 1) * C, 0, sizeof(float) * (size_t) (next - r - 1) * C);
		if (r != i)
			memcpy(buf + (size_t) r * C, buf + (size_t) i * C, sizeof(float) * C);
		next = r;
	}
	memset(buf, 0, sizeof(float) * (size_t) next * C);
}

/*
 * Input-backward of layer_tail_forward: run->proj holds d(h_out) of the Nt
 * pooled rows on entry and d(inp) of all N rows on exit.
 */
static void
layer_tail_backward(const UseLiteRun *run, const UseLiteLayer *L, const UseLiteActs *a,
					const float *inp, int N, int B, int skip)
{
	int			d = L->d_in;
	int			Nt = run->tail_offsets[B];
	float	   *dres = run->proj;

	ffn_backward(run, L, a, dres, run->tmp, run->dbig, Nt);
	memset(run->tmp, 0, sizeof(float) * Nt * d);
	dense_backward(run, run->tmp, dres, L->w_o, Nt, d, UL_D_MODEL);
	memset(run->dbig, 0, sizeof(float) * N * 3 * d);
	attention_tail_backward(run->dbig, run->datt, run->tmp, a->qkv, a->att, run->offsets, B, d,
							L->n_heads, L->q_scale, skip);
	memset(run->tmp, 0, sizeof(float) * N * d);
	dense_backward(run, run->tmp, run->dbig, L->w_qkv, N, d, 3 * d);
	/* d(inp): the residual's identity on the pooled rows plus the LN1 branch on all */
	spread_rows(dres, run->tail_rows, Nt, N, UL_D_MODEL);
	layernorm_backward(dres, run->tmp, inp, L->ln1_w, a->ln1_mean, a->ln1_rstd, N, d);
}

/* The rows past each sequence's first skip, as ranges (tail_offsets) and packed rows. */
static void
pack_tail_rows(UseLiteRun *run, int B, int skip)
{
	int			Nt = 0;

	for (int b = 0; b < B; b++)
	{
		run->tail_offsets[b] = Nt;
		for (int r = run->offsets[b] + skip; r < run->offsets[b + 1]; r++)
			run->tail_rows[Nt++] = r;
	}
	run->tail_offsets[B] = Nt;
}

static bool
use_lite_run_pool_skip(BackboneRun *brun, int skip)
{
	UseLiteRun *run = (UseLiteRun *) brun;

	if (run == NULL)
		return false;
	run->pool_skip = skip > 0 ? skip : 0;
	return true;
}

static NnStatus
use_lite_forward(const Backbone *bb, BackboneRun *brun, const float *x,
				 const uint8_t *mask, int batch, int seq_len, float *out, NnError *err)
{
	const UseLite *m = bb->impl;
	UseLiteRun *run = (UseLiteRun *) brun;
	int			N = 0;

	if (run == NULL)
		return nn_fail(err, NN_ERR_ARG, "no activation buffers (run is NULL)");
	if (batch < 0 || batch > run->max_batch || seq_len < 0 || seq_len > run->max_seq)
		return nn_fail(err, NN_ERR_ARG,
					   "batch of %d x %d positions exceeds the run's %d x %d",
					   batch, seq_len, run->max_batch, run->max_seq);
	run->batch = batch;
	run->seq_len = seq_len;
	if (batch == 0)
		return NN_OK;

	/* Pack the valid rows; each keeps its column index as position. */
	for (int b = 0; b < batch; b++)
	{
		run->offsets[b] = N;
		for (int t = 0; t < seq_len; t++)
			if (mask[(size_t) b * seq_len + t])
				run->rows[N++] = b * seq_len + t;
	}
	run->offsets[batch] = N;
	/* x0 = X + (X + signal[t]), as Layer_0/add computes it */
	timing_sum_forward(run->x0, x, m->timing, run->rows, N, seq_len, UL_D_EMBED);

	layer_forward(m, run, &m->layer[0], &run->layer[0], run->tmp, run->proj, run->x0, N,
				  run->offsets, batch);
	/* pool (past the first pool_skip rows: the prompt's), tanh dense, l2 normalize */
	run->fwd_pool_skip = run->pool_skip;
	if (run->fwd_pool_skip > 0)
	{
		pack_tail_rows(run, batch, run->fwd_pool_skip);
		layer_tail_forward(m, run, &m->layer[1], &run->layer[1], run->layer[0].h_out, N, batch,
						   run->fwd_pool_skip);
		meanpool_forward(run->pooled, run->layer[1].h_out, run->tail_offsets, batch, UL_D_MODEL);
	}
	else
	{
		layer_forward(m, run, &m->layer[1], &run->layer[1], run->tmp, run->proj,
					  run->layer[0].h_out, N, run->offsets, batch);
		meanpool_forward(run->pooled, run->layer[1].h_out, run->offsets, batch, UL_D_MODEL);
	}
	dense(run, run->hidden, run->pooled, m->w_tanh, m->b_tanh, batch, UL_D_MODEL, UL_D_MODEL);
	tanh_forward(run->hidden, run->hidden, (size_t) batch * UL_D_MODEL);
	l2norm_forward(out, run->inv_norm, run->hidden, batch, UL_D_MODEL, m->l2_eps);
	return NN_OK;
}

/*
 * dx (batch, seq_len, 256) = d(loss)/dX of the last forward on run, from
 * dout (batch, 512) = d(loss)/d(out).  Every dx element is written: padding
 * positions get 0.
 */
static NnStatus
use_lite_backward(const Backbone *bb, BackboneRun *brun, const float *dout, float *dx,
				  NnError *err)
{
	const UseLite *m = bb->impl;
	UseLiteRun *run = (UseLiteRun *) brun;
	int			B,
				N;

	if (run == NULL)
		return nn_fail(err, NN_ERR_ARG, "no activation buffers (run is NULL)");
	B = run->batch;
	if (B == 0)
		return NN_OK;
	N = run->offsets[B];
	memset(dx, 0, sizeof(float) * (size_t) B * run->seq_len * UL_D_EMBED);
	if (N == 0)
		return NN_OK;			/* only empty sequences: out = l2(tanh(bt)) is constant */

	/* head: out = l2norm(tanh(pooled Wt + bt)), pooled = mean of the rows */
	memset(run->dhidden, 0, sizeof(float) * B * UL_D_MODEL);
	l2norm_backward(run->dhidden, dout, run->hidden, run->inv_norm, B, UL_D_MODEL, m->l2_eps);
	tanh_backward(run->dhidden, run->dhidden, run->hidden, (size_t) B * UL_D_MODEL);
	memset(run->dpooled, 0, sizeof(float) * B * UL_D_MODEL);
	dense_backward(run, run->dpooled, run->dhidden, m->w_tanh, B, UL_D_MODEL, UL_D_MODEL);
	memset(run->proj, 0, sizeof(float) * N * UL_D_MODEL);
	/* the stack in reverse; run->proj carries the residual stream's gradient */
	if (run->fwd_pool_skip > 0)
	{
		meanpool_backward(run->proj, run->dpooled, run->tail_offsets, B, UL_D_MODEL);
		layer_tail_backward(run, &m->layer[1], &run->layer[1], run->layer[0].h_out, N, B,
							run->fwd_pool_skip);
	}
	else
	{
		meanpool_backward(run->proj, run->dpooled, run->offsets, B, UL_D_MODEL);
		layer_backward(run, &m->layer[1], &run->layer[1], run->proj, NULL, run->tmp, run->dbig,
					   run->datt, run->layer[0].h_out, N, run->offsets, B);
	}
	layer_backward(run, &m->layer[0], &run->layer[0], run->proj, run->dbig, run->tmp, run->dbig,
				   run->datt, run->x0, N, run->offsets, B);
	/* x0 = X + (X + signal): dX = 2 dx0 on the packed rows */
	timing_sum_backward(dx, run->dbig, run->rows, N, run->seq_len, UL_D_EMBED);
	return NN_OK;
}

static NnStatus use_lite_write_compiled(const Backbone *bb, const char *dir, NnError *err);

static const BackboneOps use_lite_ops = {
	.family = "use-lite",
	.tokenize = use_lite_tokenize,
	.token_piece = use_lite_token_piece,
	.embed_tokens = use_lite_embed_tokens,
	.run_new = use_lite_run_new,
	.run_free = use_lite_run_free,
	.run_bytes = use_lite_run_bytes,
	.forward = use_lite_forward,
	.backward = use_lite_backward,
	.run_use_bf16 = use_lite_run_use_bf16,
	.run_pool_skip = use_lite_run_pool_skip,
	.write_compiled = use_lite_write_compiled,
	.close = use_lite_close,
};

/* The files a compiled file of use-lite is made from, and its format. */
static const char *const use_lite_sources[] = {"model.json", "vocab.json"};
#define USE_LITE_COMPILED_FORMAT "use-lite/1"

/*
 * The tokenizer and fingerprint from dir's compiled file when it is
 * usable (compiled.h), else from vocab.json and the manifest.
 */
static NnStatus
load_tokenizer(UseLite *m, Backbone *bb, const char *dir, NnError *err)
{
	char		path[4096];
	const char *json;
	size_t		json_len;
	NnError		ignored;

	if (compiled_open(&m->compiled, dir, USE_LITE_COMPILED_FORMAT, use_lite_sources, 2,
					  &ignored) == NN_OK)
	{
		if (sp_tokenizer_from_image(&m->tok, m->compiled.blob, m->compiled.blob_len,
									&ignored) == NN_OK)
		{
			memcpy(bb->fingerprint, m->compiled.fingerprint, sizeof(bb->fingerprint));
			return NN_OK;
		}
		compiled_close(&m->compiled);
	}
	snprintf(path, sizeof(path), "%s/vocab.json", dir);
	json = tfjs_weights_json(m->weights, &json_len);
	sha256_hex(json, json_len, bb->fingerprint);
	return sp_tokenizer_load(&m->tok, path, err);
}

/* Write dir's compiled file from bb unless bb was opened from one. */
static NnStatus
use_lite_write_compiled(const Backbone *bb, const char *dir, NnError *err)
{
	const UseLite *m = bb->impl;
	size_t		len;
	void	   *image;
	NnStatus	s;

	if (m->compiled.map != NULL)
		return NN_OK;
	len = sp_tokenizer_image_size(m->tok);
	if ((image = malloc(len)) == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory compiling the tokenizer");
	sp_tokenizer_write_image(m->tok, image);
	s = compiled_write(dir, USE_LITE_COMPILED_FORMAT, use_lite_sources, 2, bb->fingerprint,
					   image, len, err);
	free(image);
	return s;
}

NnStatus
use_lite_open(Backbone **out, const char *dir, NnError *err)
{
	UseLite    *m;
	Backbone   *bb;
	int			max_tokens = 0;
	NnStatus	s;

	*out = NULL;
	if (dir == NULL || strlen(dir) > 3000)
		return nn_fail(err, NN_ERR_ARG, "model directory path is missing or too long");
	m = calloc(1, sizeof(UseLite));
	bb = calloc(1, sizeof(Backbone));
	if (m == NULL || bb == NULL)
	{
		free(m);
		free(bb);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory opening use-lite");
	}
	if ((s = tfjs_weights_open(&m->weights, dir, err)) ||
		(s = bind_weights(m, &max_tokens, err)) ||
		(s = load_tokenizer(m, bb, dir, err)))
		goto fail;
	if (sp_tokenizer_vocab_size(m->tok) > UL_VOCAB)
	{
		s = nn_fail(err, NN_ERR_FORMAT, "vocab.json has %d pieces, the embedding table %d rows",
					sp_tokenizer_vocab_size(m->tok), UL_VOCAB);
		goto fail;
	}
	m->timing = malloc(sizeof(float) * USE_LITE_MAX_POSITIONS * UL_D_EMBED);
	if (m->timing == NULL)
	{
		s = nn_fail(err, NN_ERR_NOMEM, "out of memory opening use-lite");
		goto fail;
	}
	timing_signal_forward(m->timing, m->inv_timescales, UL_N_TIMESCALES, USE_LITE_MAX_POSITIONS);

	bb->ops = &use_lite_ops;
	bb->vocab_size = UL_VOCAB;
	bb->d_embed = UL_D_EMBED;
	bb->d_out = UL_D_MODEL;
	bb->max_tokens = max_tokens;
	bb->max_positions = USE_LITE_MAX_POSITIONS;
	bb->impl = m;
	*out = bb;
	return NN_OK;

fail:
	use_lite_free(m);
	free(bb);
	return s;
}
