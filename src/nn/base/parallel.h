/*
 * parallel.h: a small pool of helper threads that split one kernel call's
 * independent column blocks (gemm_rows, gemm_bf16) with the calling thread.
 *
 * With more than one thread (nn_blas_setup passes dept.threads), [0, units)
 * is cut into equal contiguous parts: helper i runs part i while the
 * calling thread runs part 0, and the call returns when all are done.
 * Every output element is computed by one thread with the same
 * arithmetic, so results are identical for any thread count.  Helpers are
 * created on first use and live as long as the process; they block every
 * signal (a PostgreSQL backend's handlers must run on its own thread) and
 * touch nothing but their part.  After a part a helper spins for about
 * 0.1 ms before it sleeps, because the products of one forward pass follow
 * each other within microseconds.  One thread at a time may call
 * nn_parallel_for (a backend, a training worker and the CLI tools each run
 * their kernels on one thread).
 */
#ifndef DEPT_NN_PARALLEL_H
#define DEPT_NN_PARALLEL_H

/* Threads a call may be split over. */
#define NN_PARALLEL_MAX_THREADS 8

/* One part of a split call: the units [begin, end). */
typedef void (*NnParallelTask) (void *ctx, int begin, int end);

/* Methods */

/* Split calls over this many threads, the caller's included; 1, the default, starts none. */
void		nn_parallel_set_threads(int threads);

/* Threads calls are split over now. */
int			nn_parallel_threads(void);

/* task(ctx, ...) over [0, units) in at most nn_parallel_threads() parts; parts 1 runs it whole. */
void		nn_parallel_for(NnParallelTask task, void *ctx, int units, int parts);

#endif							/* DEPT_NN_PARALLEL_H */
