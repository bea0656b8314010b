/*
 * blas_setup.h: OpenBLAS settings for one process (a backend, a training
 * worker, dept-train, dept-bench, a unit test).
 *
 * OpenBLAS (DYNAMIC_ARCH, as Debian ships it) picks its kernel set from the
 * CPU model number when the library loads.  A CPU newer than the library
 * is not in its table: Debian's 0.3.21 takes an Emerald Rapids Xeon (family
 * 6, model 0xCF, AVX-512 + AVX512-BF16) for a "Prescott" and runs SSE3
 * kernels at a quarter of the speed of its AVX-512 ones (sgemm 2048^3 on
 * one core: 30 vs 122 GFLOP/s, bench/run prints both).  nn_blas_setup then
 * selects the kernels the CPU's features call for, Cooperlake (AVX-512
 * with BF16), SkylakeX (AVX-512) or Haswell (AVX2 + FMA), through the
 * library's own re-initialisation (gotoblas_dynamic_quit/_init, exported
 * by DYNAMIC_ARCH builds; weak references, so a BLAS without them is left
 * alone).  It never overrides an explicit OPENBLAS_CORETYPE: whoever sets
 * it gets what they asked for.  It must run before the process's first
 * BLAS call (nothing is in flight then; PostgreSQL backends call it on
 * their first model use, never in _PG_init).
 */
#ifndef DEPT_NN_BLAS_SETUP_H
#define DEPT_NN_BLAS_SETUP_H

/* Methods */

/*
 * Correct the kernel set once per process (see above), then set the
 * number of BLAS threads (OpenBLAS and gemm_rows).  Returns the core name in use.
 */
const char *nn_blas_setup(int threads);

/* The kernel set OpenBLAS uses now, e.g. "Cooperlake". */
const char *nn_blas_core(void);

#endif							/* DEPT_NN_BLAS_SETUP_H */
