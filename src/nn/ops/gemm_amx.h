/*
 * gemm_amx.h: out = inp W + bias, and the input-backward dinp += dout W^T,
 * in bfloat16 on Intel AMX: inference when dept.matmul_precision is
 * 'bfloat16', training when its "precision" option is.
 *
 * Why: on one core the FP32 products of a 20-token sentence run at 75
 * GFLOP/s (gemm_rows.h), about half the AVX-512 peak, and a single-row
 * dept_embed takes 4 ms.  AMX's tile multiply (TDPBF16PS) does 16 x 16 x 32
 * multiply-adds of bfloat16 pairs into float32 per instruction; on this
 * Emerald Rapids it ran the same 20 x 512 x 1536 product at 244 GFLOP/s
 * and 80 rows at 388.
 *
 * Arithmetic: each input row and the weight are rounded to bfloat16 (round
 * to nearest even, 8 significant bits), every product of two bfloat16 is
 * exact in float32, and the sums are float32.  So the result equals the
 * float32 product of the rounded operands up to float rounding
 * (test_gemm_amx.c checks exactly that), and differs from the float32
 * product of the originals by about 2^-8 relative per operand.
 *
 * Layout: tile B of TDPBF16PS holds 16 rows of 16 column pairs: row kp,
 * column c is (W[2kp][c], W[2kp+1][c]).  The weight is packed once into
 * that order, block by block of 16 columns and 32 k, and kept (2 bytes per
 * weight, private to the process) until gemm_amx_forget_weights; the
 * packed copy is looked up by the weight's address, shape included.
 *
 * The kernel runs on the calling thread only (split over two threads it
 * was no faster on this machine's 2 vCPUs), and one thread at a time may
 * call into this module: the packed weights and the bfloat16 copy of the
 * input rows are process-wide (a backend, a training worker and the CLI
 * tools run their kernels on one thread).  Using AMX needs the
 * kernel's permission (arch_prctl ARCH_REQ_XCOMP_PERM), asked once per
 * process; without it, or on a CPU without AMX, nothing here is usable and
 * callers take the float path.
 */
#ifndef DEPT_NN_GEMM_AMX_H
#define DEPT_NN_GEMM_AMX_H

#include <stdbool.h>

typedef struct AmxWeight AmxWeight;

/* Methods */

/* True when this CPU and kernel run AMX BF16 and the shape suits it (C, OC % 32 == 0). */
bool		gemm_amx_usable(int C, int OC);

/* W (C, OC) packed for gemm_amx, made on first use; NULL when out of memory. */
const AmxWeight *gemm_amx_weight(const float *W, int C, int OC);

/* W^T (OC, C) of the same W (C, OC), packed for gemm_amx: the input-backward's operand. */
const AmxWeight *gemm_amx_weight_transposed(const float *W, int C, int OC);

/*
 * out (N, cols) = bf16(inp (N, k)) @ bf16(W) + bias (cols, or NULL), or
 * out += that when accumulate; k, cols are W's packed shape.  False (out
 * untouched) when out of memory.
 */
bool		gemm_amx(float *out, const float *inp, const AmxWeight *W, const float *bias, int N,
					 bool accumulate);

/* Free every packed weight (a backbone is closing: its addresses may be reused). */
void		gemm_amx_forget_weights(void);

#endif							/* DEPT_NN_GEMM_AMX_H */
