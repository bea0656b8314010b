/*
 * kernels.h: the numeric building blocks of the backbones, llm.c style.
 *
 * Every kernel is a plain function over row-major float arrays, named
 * <op>_forward; its <op>_backward partner (to come, for the adapters'
 * input gradients) will take the same arguments in the same order plus the
 * gradients, so each forward caches what backward needs (layernorm's mean
 * and rstd, attention's probabilities, the post-ReLU activations,
 * l2-normalize's inverse norm) in caller-provided buffers.  Kernels never
 * allocate and never fail; shapes are the caller's responsibility.
 *
 * Sequences are *packed*: a batch of B sequences of lengths n_0..n_{B-1} is
 * stored as N = sum n_b consecutive rows, and offsets[b] .. offsets[b+1] are
 * the rows of sequence b (offsets has B + 1 entries, offsets[0] = 0).  Every
 * row-wise kernel (matmul, layernorm, relu, ...) runs once over all N rows;
 * only attention and pooling look at the sequence boundaries.  No padding
 * rows are ever computed.
 *
 * Weights follow the TensorFlow layout: a dense layer's kernel is
 * (in, out) row-major, so out = inp @ weight + bias.
 *
 * Threads: nothing here creates any; cblas_sgemm uses as many as the caller
 * configured in OpenBLAS.
 */
#ifndef DEPT_NN_KERNELS_H
#define DEPT_NN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Methods */

/*
 * out (N, OC) = inp (N, C) @ weight (C, OC) + bias (OC); bias may be NULL.
 */
void		matmul_forward(float *out, const float *inp, const float *weight,
						   const float *bias, int N, int C, int OC);

/* out (N) = a (N) + b (N); out may alias a or b. */
void		residual_forward(float *out, const float *a, const float *b, size_t N);

/*
 * out (N, C) = (inp - mean) * rstd * weight + bias per row, caching
 * mean (N) and rstd (N) = 1 / sqrt(var + eps) (biased variance) for backward.
 */
void		layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
							  const float *weight, const float *bias, int N, int C,
							  float eps);

/*
 * Multi-head self-attention over packed sequences.
 *   qkv  (N, 3C): per row the query, key and value, each C = NH * hs wide,
 *        head h in columns h*hs .. (h+1)*hs - 1 of each
 *   out  (N, C):  per head softmax(scale * q k^T) v, heads concatenated
 *   att  the probabilities, cached for backward: sequence b's block of
 *        NH * n_b * n_b floats starts at att + NH * sum_{j<b} n_j^2 and is
 *        (head, query, key) row-major; size attention_cache_size()
 * Every row attends to every row of its own sequence (no causal mask); rows
 * the caller wants ignored are simply not packed.
 */
void		attention_forward(float *out, float *att, const float *qkv,
							  const int *offsets, int B, int C, int NH, float scale);

/* Floats attention_forward needs in att for these sequences. */
size_t		attention_cache_size(const int *offsets, int B, int NH);

/* out (N) = max(inp, 0); out may alias inp. */
void		relu_forward(float *out, const float *inp, size_t N);

/* out (N) = tanh(inp); out may alias inp. */
void		tanh_forward(float *out, const float *inp, size_t N);

/*
 * out (B, C) = mean of each sequence's rows of inp (N, C); an empty
 * sequence gives zeros (the sum is divided by max(n_b, 1)).
 */
void		meanpool_forward(float *out, const float *inp, const int *offsets, int B, int C);

/*
 * out (B, C) = inp * inv_norm per row with inv_norm (B) = 1 / sqrt(max(sum
 * inp^2, eps)) cached for backward; eps bounds a zero vector's norm.
 */
void		l2norm_forward(float *out, float *inv_norm, const float *inp, int B, int C,
						   float eps);

/*
 * The sinusoidal timing signal (Vaswani et al. 2017, tensor2tensor's
 * get_timing_signal_1d): out (P, 2K) row p = [sin(p * inv_timescales[k]) for
 * k < K, cos(p * inv_timescales[k]) for k < K], the product taken in float
 * as TF does.
 */
void		timing_signal_forward(float *out, const float *inv_timescales, int K, int P);

#endif							/* DEPT_NN_KERNELS_H */
