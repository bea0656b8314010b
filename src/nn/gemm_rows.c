/*
 * gemm_rows.c: the packing-free AVX-512 product for a few rows (design in
 * gemm_rows.h).  Compiled for every x86-64 machine: the AVX-512 code sits in
 * functions with a target attribute and runs only where the CPU has it.
 */
#include "gemm_rows.h"

#include <stddef.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

#define ROW_BLOCK 6
#define COL_BLOCK 64
#define GEMM_ROWS_PREFETCH 8

/*
 * One block of R (<= 6) output rows by 64 columns.  always_inline with a
 * constant R lets the compiler keep every accumulator in a register.
 */
__attribute__((target("avx512f"), always_inline))
static inline void
block_6x64(float *out, const float *inp, const float *W, const float *bias, int C, int OC,
		   const int R)
{
	__m512		acc[ROW_BLOCK][4];

#pragma GCC unroll 6
	for (int r = 0; r < R; r++)
#pragma GCC unroll 4
		for (int v = 0; v < 4; v++)
			acc[r][v] = bias ? _mm512_loadu_ps(bias + 16 * v) : _mm512_setzero_ps();
	for (int k = 0; k < C; k++)
	{
		const float *w = W + (size_t) k * OC;

		/*
		 * W's rows are OC floats apart, a stride the hardware prefetcher
		 * does not follow across pages: fetch the slab's rows ahead.
		 */
		if (k + GEMM_ROWS_PREFETCH < C)
			for (int line = 0; line < 4; line++)
				_mm_prefetch((const char *) (w + (size_t) GEMM_ROWS_PREFETCH * OC + 16 * line),
							 _MM_HINT_T0);
		__m512		w0 = _mm512_loadu_ps(w),
					w1 = _mm512_loadu_ps(w + 16),
					w2 = _mm512_loadu_ps(w + 32),
					w3 = _mm512_loadu_ps(w + 48);

#pragma GCC unroll 6
		for (int r = 0; r < R; r++)
		{
			__m512		a = _mm512_set1_ps(inp[(size_t) r * C + k]);

			acc[r][0] = _mm512_fmadd_ps(a, w0, acc[r][0]);
			acc[r][1] = _mm512_fmadd_ps(a, w1, acc[r][1]);
			acc[r][2] = _mm512_fmadd_ps(a, w2, acc[r][2]);
			acc[r][3] = _mm512_fmadd_ps(a, w3, acc[r][3]);
		}
	}
#pragma GCC unroll 6
	for (int r = 0; r < R; r++)
#pragma GCC unroll 4
		for (int v = 0; v < 4; v++)
			_mm512_storeu_ps(out + (size_t) r * OC + 16 * v, acc[r][v]);
}

/* Columns [j_begin, j_end) of the product, every row. */
__attribute__((target("avx512f")))
static void
gemm_rows_avx512(float *out, const float *inp, const float *W, const float *bias,
				 int N, int C, int OC, int j_begin, int j_end)
{
	for (int j = j_begin; j < j_end; j += COL_BLOCK)
	{
		const float *b = bias ? bias + j : NULL;

		for (int n = 0; n < N; n += ROW_BLOCK)
		{
			float	   *o = out + (size_t) n * OC + j;
			const float *x = inp + (size_t) n * C;

			switch (N - n < ROW_BLOCK ? N - n : ROW_BLOCK)
			{
				case 6: block_6x64(o, x, W + j, b, C, OC, 6); break;
				case 5: block_6x64(o, x, W + j, b, C, OC, 5); break;
				case 4: block_6x64(o, x, W + j, b, C, OC, 4); break;
				case 3: block_6x64(o, x, W + j, b, C, OC, 3); break;
				case 2: block_6x64(o, x, W + j, b, C, OC, 2); break;
				default: block_6x64(o, x, W + j, b, C, OC, 1); break;
			}
		}
	}
}

bool
gemm_rows_usable(int N, int C, int OC)
{
	static int	has_avx512 = -1;

	if (has_avx512 < 0)
	{
		__builtin_cpu_init();
		has_avx512 = __builtin_cpu_supports("avx512f") ? 1 : 0;
	}
	return has_avx512 && N > 0 && N <= GEMM_ROWS_MAX_N && C > 0 && OC % COL_BLOCK == 0;
}

/*
 * Threads.  With more than one thread (nn_blas_setup's count), the column
 * blocks are split evenly: helper i computes its share while the calling
 * thread computes the first.  Every output element is computed by one
 * thread with the same arithmetic, so results are identical for any
 * thread count.  Helpers are created on first use and live as long as the
 * process; they block every signal (a PostgreSQL backend's handlers must
 * run on its own thread) and touch nothing but the job.  After a job a
 * helper spins for about 0.1 ms before it sleeps, because the
 * products of one forward pass follow each other within microseconds.
 */
typedef struct GemmJob
{
	float	   *out;
	const float *inp,
			   *W,
			   *bias;
	int			N,
				C,
				OC,
				j_begin,
				j_end;
} GemmJob;

static struct
{
	int			wanted;			/* threads asked for, calling thread included */
	int			helpers;		/* helper threads running */
	GemmJob		job[GEMM_ROWS_MAX_THREADS];
	unsigned	born[GEMM_ROWS_MAX_THREADS];	/* generation when helper i started */
	atomic_uint generation;		/* bumped once per split product */
	atomic_int	pending;		/* helpers still working on it */
	pthread_mutex_t lock;
	pthread_cond_t wake;
}			pool = {1, 0, {{0}}, {0}, 0, 0, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

#define SPIN_ROUNDS 2000		/* _mm_pause rounds, roughly 0.1 ms */

static void *
helper_main(void *arg)
{
	int			id = (int) (intptr_t) arg;
	/* the generation at creation: only products issued later are this helper's */
	unsigned	seen = pool.born[id];

	for (;;)
	{
		unsigned	g = atomic_load(&pool.generation);

		for (int spin = 0; g == seen && spin < SPIN_ROUNDS; spin++)
		{
			_mm_pause();
			g = atomic_load(&pool.generation);
		}
		if (g == seen)
		{
			pthread_mutex_lock(&pool.lock);
			while ((g = atomic_load(&pool.generation)) == seen)
				pthread_cond_wait(&pool.wake, &pool.lock);
			pthread_mutex_unlock(&pool.lock);
		}
		seen = g;
		{
			const GemmJob *j = &pool.job[id];

			gemm_rows_avx512(j->out, j->inp, j->W, j->bias, j->N, j->C, j->OC, j->j_begin,
							 j->j_end);
		}
		atomic_fetch_sub(&pool.pending, 1);
	}
	return NULL;
}

/* Start helpers up to wanted - 1; returns how many run. */
static int
start_helpers(void)
{
	sigset_t	all,
				old;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	while (pool.helpers < pool.wanted - 1)
	{
		pthread_t	t;

		pool.born[pool.helpers + 1] = atomic_load(&pool.generation);
		if (pthread_create(&t, NULL, helper_main, (void *) (intptr_t) (pool.helpers + 1)) != 0)
			break;
		pthread_detach(t);
		pool.helpers++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return pool.helpers;
}

void
gemm_rows_set_threads(int threads)
{
	pool.wanted = threads < 1 ? 1 : threads > GEMM_ROWS_MAX_THREADS ? GEMM_ROWS_MAX_THREADS : threads;
}

void
gemm_rows(float *out, const float *inp, const float *W, const float *bias, int N, int C, int OC)
{
	int			blocks = OC / COL_BLOCK,
				parts = pool.wanted;

	/* below a million multiply-adds a hand-off costs more than it saves */
	if ((double) N * C * OC < 1048576.0)
		parts = 1;
	if (parts > blocks)
		parts = blocks;
	if (parts > 1 && pool.helpers < parts - 1)
		parts = start_helpers() + 1 < parts ? pool.helpers + 1 : parts;
	if (parts <= 1)
	{
		gemm_rows_avx512(out, inp, W, bias, N, C, OC, 0, OC);
		return;
	}
	for (int p = 0; p < parts; p++)
	{
		GemmJob    *j = &pool.job[p];

		*j = (GemmJob) {out, inp, W, bias, N, C, OC, blocks * p / parts * COL_BLOCK,
		blocks * (p + 1) / parts * COL_BLOCK};
	}
	/* helpers beyond parts - 1 get empty ranges */
	for (int p = parts; p <= pool.helpers; p++)
		pool.job[p] = (GemmJob) {out, inp, W, bias, N, C, OC, OC, OC};
	atomic_store(&pool.pending, pool.helpers);
	atomic_fetch_add(&pool.generation, 1);
	pthread_mutex_lock(&pool.lock);
	pthread_cond_broadcast(&pool.wake);
	pthread_mutex_unlock(&pool.lock);
	gemm_rows_avx512(out, inp, W, bias, N, C, OC, pool.job[0].j_begin, pool.job[0].j_end);
	while (atomic_load(&pool.pending) > 0)
		_mm_pause();
}

#else

void
gemm_rows_set_threads(int threads)
{
}

bool
gemm_rows_usable(int N, int C, int OC)
{
	return false;
}

void
gemm_rows(float *out, const float *inp, const float *W, const float *bias, int N, int C, int OC)
{
}

#endif
