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
 * the weight.  For 1 or 2 rows each output is a dot product of two
 * contiguous rows, computed in 16-lane vectors over k for a block of 4
 * rows by 4 columns and summed across lanes at the end.  From 3 rows (and
 * OC a multiple of 8) the input is transposed once per call into panels of
 * 48 rows (the last 16 to 48 rows wide, in steps of 8), and 8 rows of W are
 * read where they lie, one value of each broadcast per k against 16-row
 * vectors (and an 8-row half: where 512-bit operations are split in two, as
 * on AMD's Zen 4, 20 rows then cost 24 lanes, not 32): up to 24
 * accumulators of out^T, 3 + 8 loads per 24 multiply-adds, each output one
 * sum over k in order.  OpenBLAS instead packs the whole weight on every
 * call.  bench/products.sh, 1 thread, weights read from memory as a model's
 * are ("cold"), the nine BERT/T5 shapes, ours / OpenBLAS (load 2.2): 1 row
 * 0.91-3.4x, 4 to 8 rows 1.16-1.78x, 20 rows 1.12-1.46x (93-115 GFLOP/s;
 * the dot products gave 60-73 there), 32 rows 1.47-1.72x, 80 rows
 * 1.20-1.42x, 96 rows 1.05-1.25x, 128 rows even.  On a Zen 4 (AMD EPYC, 1
 * thread, cold weights) the 8-row half took 20 rows from 53-66 to 62-77
 * GFLOP/s (OpenBLAS 39-66).
 */
#define GEMM_ROWS_NT_MAX_N 96

bool		gemm_rows_nt_usable(int N, int C, int OC);
void		gemm_rows_nt(float *out, int ldo, const float *inp, const float *W, const float *bias,
						 int N, int C, int OC);

#endif							/* DEPT_NN_GEMM_ROWS_H */
