/*
 * gemm_bf16.h: out = inp W + bias, and the input-backward dinp += dout W^T,
 * in bfloat16: inference when dept.matmul_precision is 'bfloat16',
 * training when its "precision" option is.  Two engines share one packed
 * weight layout: Intel AMX tiles where the CPU and kernel have them, else
 * AVX512-BF16 dot products (VDPBF16PS: AMD Zen 4, Cooper Lake and later
 * Xeons).
 *
 * Why: on one core the FP32 products of a 20-token sentence run at 75
 * GFLOP/s (gemm_rows.h), about half the AVX-512 peak, and a single-row
 * dept_embed takes 4 ms.  AMX's tile multiply (TDPBF16PS) does 16 x 16 x 32
 * multiply-adds of bfloat16 pairs into float32 per instruction; on an
 * Emerald Rapids it ran the same 20 x 512 x 1536 product at 244 GFLOP/s
 * and 80 rows at 388.  Without AMX, VDPBF16PS does 16 lanes x 2
 * multiply-adds per instruction, twice an FP32 FMA's work for the same
 * issue slot, and reads the weight at half the bytes.
 *
 * Arithmetic: each input row and the weight are rounded to bfloat16 (round
 * to nearest even, 8 significant bits), every product of two bfloat16 is
 * exact in float32, and the sums are float32.  So the result equals the
 * float32 product of the rounded operands up to float rounding
 * (test_gemm_bf16.c checks exactly that, on whichever engine runs), and
 * differs from the float32 product of the originals by about 2^-8
 * relative per operand.
 *
 * Layout: tile B of TDPBF16PS holds 16 rows of 16 column pairs: row kp,
 * column c is (W[2kp][c], W[2kp+1][c]).  That row is also exactly the
 * 512-bit operand VDPBF16PS multiplies a broadcast input pair
 * (x[2kp], x[2kp+1]) by, so one packing serves both engines.  The weight
 * is packed once into that order, block by block of 16 columns and 32 k,
 * and kept (2 bytes per weight, private to the process) until
 * gemm_bf16_forget_weights; the packed copy is looked up by the weight's
 * address, shape included.
 *
 * AMX runs on the calling thread only (split over two threads it was no
 * faster on a 2-vCPU Emerald Rapids); the AVX512-BF16 engine splits its
 * column blocks over nn_parallel_threads().  One thread at a time may call
 * into this module: the packed weights and the bfloat16 copy of the input
 * rows are process-wide (a backend, a training worker and the CLI tools
 * run their kernels on one thread).  Using AMX needs the kernel's
 * permission (arch_prctl ARCH_REQ_XCOMP_PERM), asked once per process.
 * DEPT_NO_AMX (set, not "0") keeps AMX off, so the other engine can be
 * tested and measured on an AMX machine; DEPT_NO_AVX512 turns both off.
 * With neither engine nothing here is usable and callers take the float
 * path.
 */
#ifndef DEPT_NN_GEMM_BF16_H
#define DEPT_NN_GEMM_BF16_H

#include <stdbool.h>
#include <stddef.h>

typedef struct PackedCopy Bf16Weight;	/* ops/packed_registry.h */

/* Methods */

/* True when an engine runs here and the shape suits it (C, OC % 32 == 0). */
bool		gemm_bf16_usable(int C, int OC);

/* W (C, OC) packed for gemm_bf16, made on first use; NULL when out of memory. */
const Bf16Weight *gemm_bf16_weight(const float *W, int C, int OC);

/* W^T (OC, C) of the same W (C, OC), packed for gemm_bf16: the input-backward's operand. */
const Bf16Weight *gemm_bf16_weight_transposed(const float *W, int C, int OC);

/*
 * out (N, cols) = bf16(inp (N, k)) @ bf16(W) + bias (cols, or NULL), or
 * out += that when accumulate; k, cols are W's packed shape.  False (out
 * untouched) when out of memory.
 */
bool		gemm_bf16(float *out, const float *inp, const Bf16Weight *W, const float *bias, int N,
					 bool accumulate);

/*
 * The same with the rows of out ldo >= cols floats apart and those of inp
 * ldi >= k apart (q, k and v side by side in one buffer).
 */
bool		gemm_bf16_strided(float *out, int ldo, const float *inp, int ldi, const Bf16Weight *W,
							  const float *bias, int N, bool accumulate);

/* "amx", "avx512-bf16" or "none": the engine gemm_bf16 runs on here. */
const char *gemm_bf16_engine(void);

/*
 * Packed weights shared between processes (packed_file.h): the weights of
 * a model lie in one mapped region [base, base + len) (its
 * model.safetensors); a file written for that region by one process is
 * mapped by the next, whose lookups of weights in the region then take
 * the packed copies from the file instead of packing them privately.
 */

/* Map the packed file path made for the region; false when absent, damaged or foreign. */
bool		gemm_bf16_map_shared(const char *path, const void *base, size_t len);

/* Weights of the region packed privately (not taken from a mapped file). */
int			gemm_bf16_private_count(const void *base, size_t len);

/* Write every packed weight of the region to path (atomically); false (errno) on failure. */
bool		gemm_bf16_write_shared(const char *path, const void *base, size_t len);

/* Free every packed weight and unmap the packed files (a backbone is closing: its addresses may be reused). */
void		gemm_bf16_forget_weights(void);

/* Free the packed copies of one weight region and unmap its files; other regions' stay. */
void		gemm_bf16_forget_region(const void *base, size_t len);

#endif							/* DEPT_NN_GEMM_BF16_H */
