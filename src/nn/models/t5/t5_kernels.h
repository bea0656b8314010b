/*
 * t5_kernels.h: the kernels T5 needs beyond kernels.h, in the same style.
 *
 * Paired <op>_forward / <op>_backward over row-major float arrays; a
 * backward takes what it produces first, then the incoming gradient, then
 * the forward's arguments it needs, then sizes; backwards ACCUMULATE into
 * their outputs (the caller zeroes once) unless marked OVERWRITES.  Only
 * input gradients: the backbone is frozen.  No kernel allocates or fails.
 *
 * Sequences are packed as in kernels.h (offsets[b] .. offsets[b+1] are
 * sequence b's rows).  T5's attention differs from kernels.h's in four
 * ways, hence its own kernel: no 1/sqrt(d_head) scaling of the scores; a
 * learned bias per head added to every score, looked up by the bucket of
 * the relative position key - query (bidirectional buckets in the encoder,
 * causal ones in the decoder); a causal mask in the decoder; and
 * cross-attention, where queries (decoder rows) and keys/values (encoder
 * rows) come from different sequences -- several decoder sequences may
 * read the same encoder sequence (one per candidate label).
 */
#ifndef DEPT_NN_T5_KERNELS_H
#define DEPT_NN_T5_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* FFN activations (HF ACT2FN names: relu, gelu, gelu_new, silu). */
typedef enum T5Act
{
	T5_ACT_RELU = 0,
	T5_ACT_GELU = 1,			/* exact erf form */
	T5_ACT_GELU_TANH = 2,		/* "gelu_new": tanh approximation (T5 v1.1, Flan) */
	T5_ACT_SILU = 3
} T5Act;

/*
 * Where one attention call reads its rows.  Query sequence b has rows
 * q_off[b] .. q_off[b+1] at positions q_pos[row]; its keys and values are
 * the rows kv_off[s] .. kv_off[s+1] of kv sequence s = kv_seq ? kv_seq[b]
 * : b, at positions kv_pos[row].  Rows of q, k, v (and of their gradients)
 * are ldq, ldk, ldv floats apart, head h in columns h*hs .. (h+1)*hs - 1;
 * the output's rows are NH*hs apart.  pos_bias (NH, 2R + 1) holds each
 * head's bias by relative position r = key - query at r + R, |r| <= R
 * (t5_position_bias; NULL: no bias, as in cross-attention).  causal masks
 * keys whose position exceeds the query's.
 */
typedef struct T5AttnShape
{
	int			B;				/* query sequences */
	int			NH;
	int			hs;				/* d_kv */
	const int  *q_off;
	const int  *q_pos;
	const int  *kv_off;
	const int  *kv_pos;
	const int  *kv_seq;			/* NULL: identity */
	int			ldq,
				ldk,
				ldv;
	const float *pos_bias;
	int			R;
	bool		causal;
} T5AttnShape;

/* Methods */

/*
 * out (N, C) = inp * rstd * weight per row with rstd (N) = 1 / sqrt(mean(inp^2)
 * + eps) cached for backward: T5LayerNorm (no mean, no bias).
 */
void		rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight,
							int N, int C, float eps);

/*
 * dinp (N, C) += d/d(inp) from dout, the forward's inp and rstd r: with
 * g = weight dout, dinp = r g - r^3 inp mean(g inp) per row.
 */
void		rmsnorm_backward(float *dinp, const float *dout, const float *inp,
							 const float *weight, const float *rstd, int N, int C);

/*
 * HF T5Attention._relative_position_bucket for one relative position
 * (key - query), in float as PyTorch computes it: bidirectional halves
 * the buckets between the two signs; positions below num_buckets / 4 (or
 * / 2 causal) get a bucket each, farther ones share logarithmic buckets up
 * to max_distance; causal maps every key after the query to bucket 0.
 */
int			t5_relative_bucket(int rel, bool bidirectional, int num_buckets, int max_distance);

/*
 * pos_bias (NH, 2R + 1): pos_bias[h][r + R] = rel_bias[bucket(r)][h] for
 * r = -R .. R, from a relative_attention_bias table rel_bias (num_buckets,
 * NH): what T5Attention.compute_bias gives for every query-key pair at
 * distance r.
 */
void		t5_position_bias(float *pos_bias, const float *rel_bias, int NH, int R,
							 bool bidirectional, int num_buckets, int max_distance);

/* Floats t5_attention_forward needs in att: sum over b of NH * nq_b * nk_b. */
size_t		t5_attention_cache_size(const T5AttnShape *sh);

/*
 * out (Nq, NH*hs) = per head softmax(q k^T + bias, masked) v, with the
 * probabilities cached in att (sequence b's NH x nq_b x nk_b block after
 * the previous sequences', (head, query, key) row-major).  A query with no
 * key to attend to (an empty kv sequence) gets zeros.
 */
void		t5_attention_forward(float *out, float *att, const float *q, const float *k,
								 const float *v, const T5AttnShape *sh);

/*
 * dq, dk, dv += gradients from dout (Nq, NH*hs) with the forward's q, k, v
 * and att: dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(P dP)), dQ = dS K,
 * dK = dS^T Q (the bias is a constant: it has no input gradient).  scratch
 * holds max_b(nq_b * nk_b) floats.
 */
void		t5_attention_backward(float *dq, float *dk, float *dv, float *scratch,
								  const float *dout, const float *q, const float *k,
								  const float *v, const float *att, const T5AttnShape *sh);

/* out (N) = act(inp); out may alias inp. */
void		t5_act_forward(float *out, const float *inp, size_t N, T5Act act);

/* dinp (N) = dout act'(inp).  OVERWRITES dinp; it may alias dout. */
void		t5_act_backward(float *dinp, const float *dout, const float *inp, size_t N,
							T5Act act);

/* out (N) = act(gate) * lin: the gated FFN (T5 v1.1 "gated-gelu"). */
void		gated_act_forward(float *out, const float *gate, const float *lin, size_t N,
							  T5Act act);

/*
 * dgate (N) = dout lin act'(gate), dlin (N) = dout act(gate).  OVERWRITES
 * both; dgate may alias dout.
 */
void		gated_act_backward(float *dgate, float *dlin, const float *dout, const float *gate,
							   const float *lin, size_t N, T5Act act);

/*
 * Row-wise softmax cross-entropy: probs (N, V) = softmax(logits) (may alias
 * logits) and logp (N) = log p[target] of each row, 0 where target < 0.
 * Computed as PyTorch's log_softmax: z - max - log(sum exp(z - max)).
 */
void		crossentropy_forward(float *probs, float *logp, const float *logits,
								 const int32_t *targets, int N, int V);

/*
 * dlogits (N, V) = scale (probs - onehot(target)) on rows with target >= 0,
 * 0 elsewhere: the gradient of scale * sum of -log p[target].  OVERWRITES
 * dlogits; it may alias probs.
 */
void		crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets,
								  float scale, int N, int V);

#endif							/* DEPT_NN_T5_KERNELS_H */
