/*
 * blas_setup.h: OpenBLAS settings for one process (a backend, a training
 * worker, dept-train, dept-bench, a unit test).
 *
 * OpenBLAS (DYNAMIC_ARCH, as Debian ships it) picks its kernel set from the
 * CPU model number when the library loads.  A CPU newer than the library
 * is not in its table: Debian's 0.3.21 takes an Emerald Rapids Xeon (family
 * 6, model 0xCF, AVX-512 + AVX512-BF16) for a "Prescott" and runs SSE3
 * kernels at a quarter of the speed of its AVX-512 ones (sgemm 2048^3 on
 * one core: 30 vs 122 GFLOP/s).  nn_blas_preferred_core names the kernels
 * the CPU's features call for -- Cooperlake (AVX-512 with BF16), SkylakeX
 * (AVX-512) or Haswell (AVX2 + FMA) -- when OpenBLAS chose weaker ones and
 * OPENBLAS_CORETYPE is not set.  OpenBLAS reads that variable only when it
 * loads, so a command-line tool re-executes itself with it set
 * (nn_blas_reexec_with_core, first thing in main), and a PostgreSQL server
 * must be started with it (README; dept_model_info reports the kernels in
 * use).  Switching kernels inside a running process through OpenBLAS's
 * gotoblas_dynamic_quit/_init was tried and dropped: it races with
 * OpenBLAS's own threads starting up (gotoblas read as NULL, SIGSEGV in 2 of
 * 40 runs of dept-train).
 */
#ifndef DEPT_NN_BLAS_SETUP_H
#define DEPT_NN_BLAS_SETUP_H

/* Methods */

/* Set the number of BLAS threads (OpenBLAS and gemm_rows); returns the core in use. */
const char *nn_blas_setup(int threads);

/* The better kernel set for this CPU (see above), or NULL when there is none. */
const char *nn_blas_preferred_core(void);

/* Re-execute the program with OPENBLAS_CORETYPE set when a better kernel set exists. */
void		nn_blas_reexec_with_core(char **argv);

#endif							/* DEPT_NN_BLAS_SETUP_H */
