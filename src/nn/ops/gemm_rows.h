/*
 * gemm_rows.h: out = inp W + bias for a few rows, reading the frozen
 * weight W where it lies (row-major, mmap'ed), for the short sequences of
 * single-row inference.
 *
 * Why: an sgemm of N rows against a C x OC weight makes OpenBLAS pack the
 * whole weight into its panel layout on every call, a copy as large as the
 * weight.  For N in the tens -- one sentence, one dept_predict call -- the
 * packing costs about as much as the arithmetic (perf on a 21-token
 * sentence: 48% of the forward in sgemm_itcopy, 39% in the kernel).  This
 * kernel needs no packing: W's row k, contiguous, is exactly the vector
 * that row k of the product multiplies, so each step loads 64 columns of
 * one row of W and broadcasts one input value per output row:
 *
 *   for each block of 64 output columns j (the slab W[:, j..j+64), which
 *   stays in L2 across row blocks), for each block of 6 output rows n:
 *     acc[n][j..j+64) = bias; for k < C: acc[n] += inp[n][k] * W[k][j..j+64)
 *
 * 6 x 4 AVX-512 accumulators + 4 weight vectors + 1 broadcast fit the 32
 * registers.  The sums run over k in order, one FMA each (OpenBLAS sums in
 * blocks), so results differ from cblas_sgemm's by float rounding only.
 */
#ifndef DEPT_NN_GEMM_ROWS_H
#define DEPT_NN_GEMM_ROWS_H

#include <stdbool.h>

/*
 * Rows up to which gemm_rows is faster than OpenBLAS.  Measured on one
 * thread, use-lite's shapes (C x OC 512 x 1536, 512 x 512, 512 x 2048,
 * 2048 x 512, 256 x 768, 1536 x 512; load 3.3-3.8): 1.07-1.33x OpenBLAS at
 * 80 rows, 0.86-1.20x at 96.  A DePT prediction of one sentence is the 60
 * prompt rows and its tokens: 70 to 90 rows.
 */
#define GEMM_ROWS_MAX_N 88

/* Methods */

/* True when this CPU runs the kernel and the shape suits it (OC % 64 == 0). */
bool		gemm_rows_usable(int N, int C, int OC);

/* out (N, OC) = inp (N, C) @ W (C, OC) + bias (OC, or NULL); split over nn_parallel_threads(). */
void		gemm_rows(float *out, const float *inp, const float *W, const float *bias,
					  int N, int C, int OC);

/*
 * The same for a weight in the Hugging Face (out, in) layout, W (OC, C):
 * out (N, OC; rows ldo apart) = inp (N, C) @ W^T + bias, with no copy of
 * the weight.  Up to 24 rows each output is a dot product of two
 * contiguous rows, computed in 16-lane vectors over k for a block of 4
 * rows by 4 columns and summed across lanes at the end.  From 25 rows (and
 * OC a multiple of 8) the input is transposed once per call into panels of
 * 48 rows, and 8 rows of W are read where they lie, one value of each
 * broadcast per k against 16-row vectors: 24 accumulators of out^T, 3 + 8
 * loads per 24 multiply-adds, each output one sum over k in order.
 * OpenBLAS instead packs the whole weight on every call.  Measured on one
 * thread (bench: load 3.4-3.8), GFLOP/s, ours against OpenBLAS's:
 * 32 x 768 x 3072 173 vs 104, 80 x 768 x 768 186 vs 152, 80 x 3072 x 768
 * 121 vs 103, 128 rows about even (0.94-1.18x); dots at 20 rows 126 vs
 * 104 for the broadcast form.
 */
#define GEMM_ROWS_NT_MAX_N 96

bool		gemm_rows_nt_usable(int N, int C, int OC);
void		gemm_rows_nt(float *out, int ldo, const float *inp, const float *W, const float *bias,
						 int N, int C, int OC);

#endif							/* DEPT_NN_GEMM_ROWS_H */
