/*
 * kernels.h: the numeric building blocks of the backbones, llm.c style.
 *
 * Every kernel is a plain function over row-major float arrays, named
 * <op>_forward, with an <op>_backward partner for the adapters' input
 * gradients.  A backward takes the gradient it produces first (dinp), then
 * the incoming gradient (dout), then the forward's arguments it needs in the
 * forward's order, then the sizes; each forward caches what backward needs
 * (layernorm's mean and rstd, attention's probabilities, the post-ReLU and
 * post-tanh activations, l2-normalize's inverse norm) in caller-provided
 * buffers.  The backbones are frozen, so only input gradients exist here: no
 * weight or bias gradient is ever computed (that is half the FLOPs of a
 * full backward).  As in llm.c, backwards ACCUMULATE into dinp (the caller
 * zeroes it once), except the element-wise relu/tanh backwards, which may
 * run in place like their forwards and therefore overwrite dinp.  Kernels
 * never allocate and never fail; shapes are the caller's responsibility.
 *
 * Sequences are *packed*: a batch of B sequences of lengths n_0..n_{B-1} is
 * stored as N = sum n_b consecutive rows, and offsets[b] .. offsets[b+1] are
 * the rows of sequence b (offsets has B + 1 entries, offsets[0] = 0).  Every
 * row-wise kernel (matmul, layernorm, relu, ...) runs once over all N rows;
 * only attention and pooling look at the sequence boundaries.  No padding
 * rows are ever computed.
 *
 * Weights follow the TensorFlow layout: a dense layer's kernel is
 * (in, out) row-major, so out = inp @ weight + bias.  The linear_* pair
 * (for Hugging Face checkpoints) takes PyTorch's (out, in) instead.
 *
 * Threads: nothing here creates any; OpenBLAS uses as many as the caller
 * configured in OpenBLAS.
 */
#ifndef DEPT_NN_KERNELS_H
#define DEPT_NN_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Methods */

/*
 * out (N, OC) = inp (N, C) @ weight (C, OC) + bias (OC); bias may be NULL.
 */
void		matmul_forward(float *out, const float *inp, const float *weight,
						   const float *bias, int N, int C, int OC);

/*
 * The same product in bfloat16 (gemm_bf16.h: AMX or AVX512-BF16) when the CPU runs it and
 * the shape suits it, else matmul_forward.  For inference only.
 */
void		matmul_forward_bf16(float *out, const float *inp, const float *weight,
								const float *bias, int N, int C, int OC);

/* dinp (N, C) += dout (N, OC) @ weight^T: one sgemm, no weight/bias grads. */
void		matmul_backward(float *dinp, const float *dout, const float *weight,
							int N, int C, int OC);

/* The same in bfloat16 (gemm_bf16.h) when an engine runs here, else matmul_backward. */
void		matmul_backward_bf16(float *dinp, const float *dout, const float *weight, int N,
								 int C, int OC);

/* out (N) = a (N) + b (N); out may alias a or b. */
void		residual_forward(float *out, const float *a, const float *b, size_t N);

/*
 * da (N) += dout, db (N) += dout.  (use_lite needs no call: its residual
 * stream's gradient buffer is shared by both branches.)
 */
void		residual_backward(float *da, float *db, const float *dout, size_t N);

/*
 * out (N, C) = (inp - mean) * rstd * weight + bias per row, caching
 * mean (N) and rstd (N) = 1 / sqrt(var + eps) (biased variance) for backward.
 */
void		layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
							  const float *weight, const float *bias, int N, int C,
							  float eps);

/*
 * dinp (N, C) += d/d(inp) from dout (N, C), with the forward's inp and its
 * cached mean and rstd: with xhat = (inp - mean) rstd and g = weight dout,
 * dinp = rstd (g - mean(g) - xhat mean(g xhat)) per row.
 */
void		layernorm_backward(float *dinp, const float *dout, const float *inp,
							   const float *weight, const float *mean, const float *rstd,
							   int N, int C);

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

/*
 * attention_forward for the queries of each sequence's last n_b - skip rows
 * only (none when n_b <= skip); keys and values are still all n_b rows.
 * out holds those query rows packed: Nt = sum_b max(n_b - skip, 0) rows of
 * C.  att holds NH * (n_b - skip) * n_b floats per sequence, (head, query,
 * key).  A last layer whose output is pooled over the rows past a prompt
 * needs nothing more (docs/design.md 6).  skip = 0 is attention_forward.
 */
void		attention_tail_forward(float *out, float *att, const float *qkv,
								   const int *offsets, int B, int C, int NH, float scale,
								   int skip);

/* Floats attention_forward needs in att for these sequences. */
size_t		attention_cache_size(const int *offsets, int B, int NH);

/*
 * The longest sequence and widest head attention_head_forward takes, and
 * the most multiply-adds (n * n * hs) of its products: nn_sgemm's limit for
 * its plain loops (blas.c); past it OpenBLAS was faster (20-40% at n = 32
 * to 80, hs = 64, batch 32).
 */
#define ATTENTION_HEAD_MAX_N 128
#define ATTENTION_HEAD_MAX_HS 64
#define ATTENTION_HEAD_MAX_WORK 32768

/*
 * One head of one sequence of n rows: p (n, n) = softmax(scale q k^T),
 * out (n rows ldo apart, hs values) = p v, q/k/v rows ld apart; kt is
 * scratch of hs * n floats.  In AVX-512 registers (attention_head.c), for
 * the short sequences where nn_sgemm ran scalar loops; false (nothing
 * done) without AVX-512 (nn_cpu_avx512_allowed) or past the limits above.
 */
bool		attention_head_forward(float *out, int ldo, float *p, const float *q,
								   const float *k, const float *v, int ld, int n, int hs,
								   float scale, float *kt);

/* In-place softmax of each of the rows of p (rows x n). */
void		softmax_rows(float *p, int rows, int n);

/*
 * In-place softmax backward of each row of dp (rows x n) given the
 * probabilities p: dp = p * (dp - <p, dp>), the gradient of the logits.
 */
void		softmax_rows_backward(float *dp, const float *p, int rows, int n);

/*
 * dqkv (N, 3C) += d/d(qkv) from dout (N, C), with the forward's qkv and
 * cached att.  Per sequence and head, with P = att, O = P V, S = scale Q K^T:
 * dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(P * dP)) (softmax),
 * dQ = scale dS K, dK = scale dS^T Q: four sgemm per head.  scratch holds
 * max_b(n_b)^2 floats (one head's dP).
 */
void		attention_backward(float *dqkv, float *scratch, const float *dout,
							   const float *qkv, const float *att, const int *offsets,
							   int B, int C, int NH, float scale);

/*
 * One head's part of attention_tail_backward: nq query rows (q, dq) against
 * n key rows (k, v, dk, dv), all ld apart, p (nq, n) the probabilities and
 * dy the head's output gradient (ldy apart).  Adds to dq, dk, dv; leaves in
 * dp (nq, n) the gradient of the logits before the scale, for a caller that
 * adds logit terms of its own (DeBERTa's relative positions).
 */
void		attention_head_backward(float *dq, float *dk, float *dv, float *dp, const float *q,
									const float *k, const float *v, const float *p,
									const float *dy, int ld, int ldy, int nq, int n, int hs,
									float scale);

/*
 * attention_backward of attention_tail_forward: dout holds the Nt query rows
 * packed; d(query) is added to the last n_b - skip rows of each sequence and
 * d(key), d(value) to all n_b.  skip = 0 is attention_backward.
 */
void		attention_tail_backward(float *dqkv, float *scratch, const float *dout,
									const float *qkv, const float *att, const int *offsets,
									int B, int C, int NH, float scale, int skip);

/* out (N) = max(inp, 0); out may alias inp. */
void		relu_forward(float *out, const float *inp, size_t N);

/*
 * dinp (N) = dout where the forward's out > 0, else 0 (out > 0 exactly when
 * inp > 0, so the cached output suffices).  OVERWRITES dinp; it may alias
 * dout.
 */
void		relu_backward(float *dinp, const float *dout, const float *out, size_t N);

/* out (N) = tanh(inp); out may alias inp. */
void		tanh_forward(float *out, const float *inp, size_t N);

/* dinp (N) = dout (1 - out^2) from the forward's out.  OVERWRITES dinp; may alias dout. */
void		tanh_backward(float *dinp, const float *dout, const float *out, size_t N);

/*
 * out (B, C) = mean of each sequence's rows of inp (N, C); an empty
 * sequence gives zeros (the sum is divided by max(n_b, 1)).
 */
void		meanpool_forward(float *out, const float *inp, const int *offsets, int B, int C);

/* dinp (N, C) += dout[b] / max(n_b, 1) on every row of sequence b. */
void		meanpool_backward(float *dinp, const float *dout, const int *offsets, int B, int C);

/*
 * Mean pooling that leaves out the first skip rows of every sequence (the
 * prompt rows of PT/DePT/EPT: the head then sees the text rows only):
 * out[b] = mean of rows offsets[b] + skip .. offsets[b + 1] - 1; a sequence
 * with no row left gives zeros.  skip = 0 is meanpool_forward, bit for bit.
 */
void		meanpool_tail_forward(float *out, const float *inp, const int *offsets, int B, int C,
								  int skip);

/* dinp (N, C) += dout[b] / max(n_b - skip, 1) on the rows meanpool_tail_forward averaged. */
void		meanpool_tail_backward(float *dinp, const float *dout, const int *offsets, int B, int C,
								   int skip);

/*
 * out (B, C) = inp * inv_norm per row with inv_norm (B) = 1 / sqrt(max(sum
 * inp^2, eps)) cached for backward; eps bounds a zero vector's norm.
 */
void		l2norm_forward(float *out, float *inv_norm, const float *inp, int B, int C,
						   float eps);

/*
 * dinp (B, C) += d/d(inp) from dout (B, C), with the forward's inp and
 * cached inv_norm r: r dout - r^3 inp <inp, dout> per row, or r dout where
 * the row's sum of squares was clamped to eps (r is then a constant).
 */
void		l2norm_backward(float *dinp, const float *dout, const float *inp,
							const float *inv_norm, int B, int C, float eps);

/*
 * The sinusoidal timing signal (Vaswani et al. 2017, tensor2tensor's
 * get_timing_signal_1d): out (P, 2K) row p = [sin(p * inv_timescales[k]) for
 * k < K, cos(p * inv_timescales[k]) for k < K], the product taken in float
 * as TF does.
 */
void		timing_signal_forward(float *out, const float *inv_timescales, int K, int P);

/*
 * The packed input of a transformer stack whose graph adds the embedding
 * twice (use-lite's Layer_0/add of AddTimingSignal's x + signal to x):
 * out (N, C) row i = x[r] + (x[r] + signal[r % T]) with r = rows[i], where x
 * is (batch, T, C) padded and signal (T, C) the timing signal, so rows[i] =
 * b * T + t packs sequence b's position t.
 */
void		timing_sum_forward(float *out, const float *x, const float *signal,
							   const int *rows, int N, int T, int C);

/*
 * dx (batch, T, C) row rows[i] += 2 dout[i]; rows not packed (padding) are
 * left alone, so the caller's zeroed dx stays 0 there.
 */
void		timing_sum_backward(float *dx, const float *dout, const int *rows, int N, int T,
								int C);

/* ---- Hugging Face (PyTorch-layout) kernels: BERT and later families ---- */

/*
 * out (N, OC) = inp (N, C) @ weight^T + bias with weight (OC, C) row-major,
 * PyTorch nn.Linear's layout as stored in safetensors (so the file's bytes
 * are used as they are); bias may be NULL.  Rows of out are ldo >= OC
 * floats apart, so q, k and v can be written side by side into one
 * (N, 3C) buffer for attention_forward.
 */
void		linear_forward(float *out, const float *inp, const float *weight,
						   const float *bias, int N, int C, int OC, int ldo);

/* dinp (N, C) += dout (N, OC; rows ldd apart) @ weight: one sgemm. */
void		linear_backward(float *dinp, const float *dout, const float *weight,
							int N, int C, int OC, int ldd);

/*
 * linear_forward, in bfloat16 (gemm_bf16.h: AMX or AVX512-BF16) when bf16
 * is set, an engine runs here and the shape suits it; else in float32.
 * The run's precision chooses: inference under dept.matmul_precision =
 * 'bfloat16', training with "precision": "bfloat16".
 */
void		linear_product(bool bf16, float *out, const float *inp, const float *weight,
						   const float *bias, int N, int C, int OC, int ldo);

/* linear_backward in the same precision as linear_product. */
void		linear_product_backward(bool bf16, float *dinp, const float *dout,
									const float *weight, int N, int C, int OC, int ldd);

/*
 * out (N) = GELU(inp) = inp * Phi(inp) = 0.5 inp (1 + erf(inp / sqrt 2)),
 * the exact form (PyTorch's default, HF "gelu"); out may alias inp, but
 * the backward needs inp, so a caller that trains keeps it.
 */
void		gelu_forward(float *out, const float *inp, size_t N);

/*
 * dinp (N) = dout (Phi(inp) + inp phi(inp)) from the forward's inp.
 * OVERWRITES dinp; it may alias dout.
 */
void		gelu_backward(float *dinp, const float *dout, const float *inp, size_t N);

/*
 * x (n, H) = the rows of table (vocab, H) of ids, mask (n) = 1; a negative
 * id is padding (a zero row, mask 0), an id past the table reads as
 * unk_id: every Hugging Face family's embed_tokens.
 */
void		embedding_rows(float *x, uint8_t *mask, const float *table, int vocab, int unk_id,
						   int H, const int32_t *ids, int n);

/*
 * The packed input of a BERT stack: out (N, C) row i = (x[r] + type) +
 * pos[r % T] with r = rows[i], x (batch, T, C) padded word embeddings,
 * pos (>= T, C) the position table and type (C) one token-type row (may be
 * NULL); the sum is taken in HF's order (inputs + token type, then
 * position).  Position t is the column, so prompt rows prepended to x take
 * positions 0..m-1 as in HF PEFT.
 */
void		embed_sum_forward(float *out, const float *x, const float *pos, const float *type,
							  const int *rows, int N, int T, int C);

/* dx (batch, T, C) row rows[i] += dout[i]; rows not packed are left alone. */
void		embed_sum_backward(float *dx, const float *dout, const int *rows, int N, int C);

/*
 * out (B, C) = the first row of each sequence (BERT's [CLS] pooling);
 * an empty sequence gives zeros.
 */
void		firstrow_forward(float *out, const float *inp, const int *offsets, int B, int C);

/* dinp (N, C) first row of sequence b += dout[b]. */
void		firstrow_backward(float *dinp, const float *dout, const int *offsets, int B, int C);

#endif							/* DEPT_NN_KERNELS_H */
