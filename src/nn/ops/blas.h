/*
 * blas.h: the one BLAS routine src/nn needs (sgemm), from OpenBLAS loaded at
 * first use, with the kernel set chosen before it loads.
 *
 * Why not link OpenBLAS: OpenBLAS (DYNAMIC_ARCH, as Debian ships it) picks
 * its kernels from the CPU model number in its constructor, and a CPU newer
 * than the library is not in its table.  Debian's 0.3.21 takes an Emerald
 * Rapids Xeon (family 6, model 0xCF, AVX-512 + AVX512-BF16) for a "Prescott"
 * and runs SSE3 kernels at a quarter of the speed of its AVX-512 ones (sgemm
 * 2048^3 on one core: 30 vs 122 GFLOP/s).  The only way to choose is the
 * environment variable OPENBLAS_CORETYPE, read once, when the library loads.
 * A library linked into dept.so loads before any of our code runs, and in a
 * PostgreSQL backend the environment is the postmaster's.  Switching kernels
 * later through OpenBLAS's gotoblas_dynamic_quit/_init was tried and dropped:
 * it races with OpenBLAS's threads starting up (SIGSEGV in 2 of 40 runs).
 *
 * So nothing links OpenBLAS.  nn_blas_load dlopens it once per process, and
 * when OPENBLAS_CORETYPE is not set it sets, for the duration of the load,
 * the kernel set the CPU's features call for: Cooperlake (AVX-512 with
 * BF16), SkylakeX (AVX-512) or Haswell (AVX2 + FMA).  A user's own
 * OPENBLAS_CORETYPE wins.  If OpenBLAS cannot be loaded, nn_sgemm computes
 * the product with plain loops (correct, slow) and nn_blas_load's error says
 * why (dept_model_info shows the kernel set "none").  Nothing loads it
 * before a product needs it: small products run in loops (blas.c), so a
 * new backend's first short prediction never pays for the load
 * (docs/design.md 6).
 */
#ifndef DEPT_NN_BLAS_H
#define DEPT_NN_BLAS_H

#include <cblas.h>				/* CBLAS_ORDER, CBLAS_TRANSPOSE only */
#include <stdbool.h>

#include "base/nn_common.h"

/* Methods */

/*
 * False when the environment variable DEPT_NO_AVX512 is set to anything but
 * "" or "0" (read once per process): then OpenBLAS gets the Haswell (AVX2)
 * kernels, and the AVX-512 row product (gemm_rows.h) and AMX (gemm_bf16.h)
 * are not used, so a CPU with AVX-512 runs what one without it gets (the
 * benchmark's "no AVX-512" row).  A user's own OPENBLAS_CORETYPE still wins.
 */
bool		nn_cpu_avx512_allowed(void);

/* This CPU has AVX-512F and nn_cpu_avx512_allowed() (read once): the few-row products run. */
bool		nn_cpu_avx512(void);

/* Load OpenBLAS if it is not loaded yet (thread-safe, once per process). */
NnStatus	nn_blas_load(NnError *err);

/*
 * Use this many threads in OpenBLAS (now if it is loaded, else when it
 * loads) and in the helper pool (parallel.h).
 */
void		nn_blas_setup(int threads);

/* OpenBLAS's kernel set ("Cooperlake", ...), or "none" when it did not load. */
const char *nn_blas_core(void);

/* OpenBLAS's thread count (1 when it did not load). */
int			nn_blas_threads(void);

/*
 * While true, OpenBLAS runs each call on its calling thread only: for
 * kernels that split their own work over the helper pool (parallel.h) and
 * call nn_sgemm from several threads at once.  False restores the count
 * nn_blas_setup asked for.
 */
void		nn_blas_single_threaded(bool single);

/*
 * cblas_sgemm: through OpenBLAS, loaded now if need be; products of at most
 * 32768 multiply-adds, and every product when OpenBLAS cannot be loaded, in
 * loops the compiler vectorises (blas.c).
 */
void		nn_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta,
					 enum CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
					 const float *A, int lda, const float *B, int ldb, float beta,
					 float *C, int ldc);

/* The same product with plain loops, k innermost: the tests' reference. */
void		nn_sgemm_loops(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta,
						   enum CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
						   const float *A, int lda, const float *B, int ldb, float beta,
						   float *C, int ldc);

/* y += a x over n floats. */
void		nn_axpy(int n, float a, const float *x, float *y);

#endif							/* DEPT_NN_BLAS_H */
