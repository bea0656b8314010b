/*
 * modernbert_attention.h: ModernBERT's self-attention over packed
 * sequences -- rotary position embeddings (RoPE, GPT-NeoX's half-split
 * layout) on the queries and keys, then softmax attention that is global or
 * limited to a sliding window, as transformers' eager ModernBertAttention.
 *
 * Rows: qkv (N, 3H) holds per packed row the query, key and value (head h in
 * columns h*hd .. (h+1)*hd - 1 of each, hd = H / NH), sequence b's rows are
 * offsets[b] .. offsets[b+1] - 1 and row i sits at position pos[i] (its
 * column in the padded input).  For each row and head, with c = cos(t f_k),
 * s = sin(t f_k), f_k = theta^(-2k / hd), k < hd / 2:
 *
 *   rot(x)[k]        = x[k] c - x[k + hd/2] s
 *   rot(x)[k + hd/2] = x[k + hd/2] c + x[k] s
 *
 * and the row attends to the rows j of its sequence with |t_i - t_j| <=
 * window (window < 0: every row), P = softmax(rot(q) rot(k)^T / sqrt(hd)).
 * transformers builds the same window from the column indices of the
 * padded batch (|i - j| <= local_attention / 2) and masks padding keys.
 */
#ifndef DEPT_NN_MODERNBERT_ATTENTION_H
#define DEPT_NN_MODERNBERT_ATTENTION_H

#include <stddef.h>

/* One attention kind's constants: the RoPE table and the window. */
typedef struct RopeAttention
{
	const float *cos,
			   *sin;			/* (max_positions, hd / 2) */
	int			window;			/* max |t_i - t_j|, < 0 for global attention */
} RopeAttention;

/* Methods */

/* cos/sin (P, hd / 2) of positions 0..P-1 for theta, in float as PyTorch computes them. */
void		rope_table(float *cos_out, float *sin_out, int P, int hd, double theta);

/*
 * Rotate the queries and keys of qkv in place (the rotated ones are what the
 * backward needs), then ctx (N, H) = P V per head; att keeps P: sequence b's
 * block of NH n_b^2 floats starts at att + NH sum_{j<b} n_j^2, (head, query,
 * key) row-major, 0 outside the window.
 */
void		rope_attention_forward(float *ctx, float *att, float *qkv, const int *pos,
								   const int *offsets, int B, int H, int NH,
								   const RopeAttention *ra);

/*
 * dqkv (N, 3H) = d/d(qkv before rotation) from dctx (N, H), with the
 * forward's rotated qkv and att (OVERWRITTEN: dqkv need not be zeroed).
 * scratch holds max_b n_b floats.
 */
void		rope_attention_backward(float *dqkv, float *scratch, const float *dctx,
									const float *qkv, const float *att, const int *pos,
									const int *offsets, int B, int H, int NH,
									const RopeAttention *ra);

#endif							/* DEPT_NN_MODERNBERT_ATTENTION_H */
