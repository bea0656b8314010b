/*
 * deberta_attention.h: DeBERTa's disentangled self-attention over packed
 * sequences (kernels.h's conventions: row-major floats, PyTorch-layout
 * projections done by the caller, backwards accumulate into what they
 * produce, no allocation, no failure).
 *
 * For query row i and key row j of one sequence, at positions p_i and p_j
 * (their columns in the padded batch), with r = rel[p_i - p_j] the row of
 * the relative-embedding table their distance falls in (deberta.h: log
 * buckets, clamped to 0 .. 2S-1), per head:
 *
 *   logit(i, j) = scale (q_i . k_j  +  q_i . pk_r  +  k_j . pq_r)
 *                        content      c2p            p2c
 *
 * pk (2S, C) and pq (2S, C) are the relative embeddings through the layer's
 * key and query projections (constants: the model is frozen); a term whose
 * table is NULL is left out.  scale = 1 / sqrt(head_size * (1 + number of
 * terms in pos_att_type)).  The probabilities are a softmax over the keys
 * of the sequence, out = P v.
 *
 * The two position terms are computed as transformers does, one product
 * per head and sequence against the rows of the table the sequence's
 * distances reach (a window lo..hi of W <= min(2S, 2n - 1) rows), then
 * gathered: G = Q pk[lo..hi]^T (n x W), logit(i, j) += scale G[i, r - lo];
 * H = K pq[lo..hi]^T, logit(i, j) += scale H[j, r - lo].  The backward
 * scatters dlogits into the same windows and multiplies back:
 * dQ += scale dG pk[lo..hi], dK += scale dH pq[lo..hi].
 */
#ifndef DEPT_NN_DEBERTA_ATTENTION_H
#define DEPT_NN_DEBERTA_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

typedef struct DisentangledTables
{
	const float *pk;			/* (2S, C) key_proj(rel embeddings), NULL: no c2p */
	const float *pq;			/* (2S, C) query_proj(rel embeddings), NULL: no p2c */
	const int32_t *rel;			/* rel[d + max_dist]: table row of distance d */
	int			max_dist;		/* |d| <= max_dist */
	float		scale;
} DisentangledTables;

/* Methods */

/*
 * out (N, C) from qkv (N, 3C: q | k | v per row, heads side by side) of
 * the packed sequences (offsets, B); pos (N) the rows' positions,
 * ascending within a sequence.  att caches the probabilities as
 * attention_forward does (kernels.h, attention_cache_size floats).
 * scratch: deberta_attention_scratch(max_n, max_window) floats, max_window
 * the most table rows one sequence's distances reach (at most 2S, and
 * 2 (p_last - p_first) + 1).
 */
void		disentangled_attention_forward(float *out, float *att, float *scratch,
										   const float *qkv, const int *pos, const int *offsets,
										   int B, int C, int NH, const DisentangledTables *t);

/* dqkv (N, 3C) += d/d(qkv) from dout (N, C), with the forward's qkv and att. */
void		disentangled_attention_backward(float *dqkv, float *scratch, const float *dout,
											const float *qkv, const float *att, const int *pos,
											const int *offsets, int B, int C, int NH,
											const DisentangledTables *t);

/* Scratch floats either direction needs for sequences of up to max_n rows. */
size_t		deberta_attention_scratch(int max_n, int max_window);

#endif							/* DEPT_NN_DEBERTA_ATTENTION_H */
