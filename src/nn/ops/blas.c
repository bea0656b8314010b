/*
 * blas.c: OpenBLAS loaded at first use with the kernel set this CPU's
 * features call for (design in blas.h), and a plain-loop product for when it
 * cannot be loaded.
 */
#include "ops/blas.h"

#include "base/parallel.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*SgemmFn) (enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE,
						 int, int, int, float, const float *, int, const float *, int,
						 float, float *, int);

static struct
{
	pthread_once_t once;
	SgemmFn		sgemm;
	void		(*set_num_threads) (int);
	int			(*get_num_threads) (void);
	char	   *(*get_corename) (void);
	char		error[NN_ERRMSG_LEN];
	atomic_bool loaded;			/* load_openblas has run and succeeded */
	atomic_int	threads;		/* what nn_blas_setup asked for */
}			openblas = {PTHREAD_ONCE_INIT};

/*
 * Products of at most this many multiply-adds run in plain loops without
 * loading OpenBLAS: an attention score matrix of one short sentence
 * (20 x 20 x 64), the low-rank offset of an adapter.  Loading OpenBLAS
 * takes longer than the rest of a first call (docs/design.md 6), and at
 * this size its call costs more than the loops.
 */
#define NN_SGEMM_SMALL 32768

static bool avx512_allowed;
static pthread_once_t avx512_once = PTHREAD_ONCE_INIT;

static void
read_avx512_switch(void)
{
	const char *off = getenv("DEPT_NO_AVX512");

	avx512_allowed = off == NULL || off[0] == '\0' || strcmp(off, "0") == 0;
}

bool
nn_cpu_avx512_allowed(void)
{
	pthread_once(&avx512_once, read_avx512_switch);
	return avx512_allowed;
}

bool
nn_cpu_avx512(void)
{
	static int	has_avx512 = -1;

	if (has_avx512 < 0)
	{
#if defined(__x86_64__) && defined(__GNUC__)
		__builtin_cpu_init();
		has_avx512 = __builtin_cpu_supports("avx512f") && nn_cpu_avx512_allowed() ? 1 : 0;
#else
		has_avx512 = 0;
#endif
	}
	return has_avx512 == 1;
}

/* The best kernel set for this CPU's features, or NULL for none better than SSE. */
static const char *
core_for_features(void)
{
	__builtin_cpu_init();
	if (nn_cpu_avx512_allowed() &&
		__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
		__builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
		return __builtin_cpu_supports("avx512bf16") ? "Cooperlake" : "SkylakeX";
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return "Haswell";
	return NULL;
}

static void *
open_library(void)
{
	static const char *const names[] = {"libopenblas.so.0", "libopenblas.so"};
	void	   *lib = NULL;

	for (size_t i = 0; lib == NULL && i < sizeof(names) / sizeof(names[0]); i++)
		lib = dlopen(names[i], RTLD_LAZY | RTLD_LOCAL);	/* binds symbols as they are used */
	return lib;
}

/*
 * dlopen OpenBLAS with OPENBLAS_CORETYPE set for its constructor unless the
 * user set it, and with one thread unless the user set a count: its
 * constructor otherwise starts a thread per core that spins in sched_yield
 * for a while, taking a core from the backend's first call;
 * openblas_set_num_threads (nn_blas_setup) starts the threads
 * dept.threads asks for.  Those threads poll for work for 2^timeout cycles
 * after each product before they sleep (2^28 by default, tens of
 * milliseconds), on the cores our own helpers (parallel.h) run the layer
 * norms, GELU and attention between two products on; OPENBLAS_THREAD_TIMEOUT
 * 4, its least, unless the user set one, lets them sleep at once
 * (bench/README.md, "OpenBLAS's idle threads": MiniLM-L6's embedding at
 * batch 32 on 2 threads about 8% faster).
 */
static void
load_openblas(void)
{
	const char *core = getenv("OPENBLAS_CORETYPE") ? NULL : core_for_features();
	bool		one_thread = getenv("OPENBLAS_NUM_THREADS") == NULL &&
		getenv("OMP_NUM_THREADS") == NULL;
	bool		short_poll = getenv("OPENBLAS_THREAD_TIMEOUT") == NULL;
	void	   *lib;

	if (core != NULL)
		setenv("OPENBLAS_CORETYPE", core, 1);
	if (one_thread)
		setenv("OPENBLAS_NUM_THREADS", "1", 1);
	if (short_poll)
		setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);
	lib = open_library();
	if (core != NULL)
		unsetenv("OPENBLAS_CORETYPE");
	if (one_thread)
		unsetenv("OPENBLAS_NUM_THREADS");
	if (short_poll)
		unsetenv("OPENBLAS_THREAD_TIMEOUT");
	if (lib == NULL)
	{
		snprintf(openblas.error, sizeof(openblas.error),
				 "cannot load OpenBLAS (libopenblas.so.0): %s", dlerror());
		return;
	}
	openblas.set_num_threads = (void (*) (int)) dlsym(lib, "openblas_set_num_threads");
	openblas.get_num_threads = (int (*) (void)) dlsym(lib, "openblas_get_num_threads");
	openblas.get_corename = (char *(*) (void)) dlsym(lib, "openblas_get_corename");
	openblas.sgemm = (SgemmFn) dlsym(lib, "cblas_sgemm");
	if (!openblas.sgemm || !openblas.set_num_threads || !openblas.get_num_threads ||
		!openblas.get_corename)
	{
		snprintf(openblas.error, sizeof(openblas.error),
				 "the loaded OpenBLAS lacks cblas_sgemm or openblas_get_corename");
		openblas.sgemm = NULL;
		return;
	}
	if (atomic_load(&openblas.threads) > 1)
		openblas.set_num_threads(atomic_load(&openblas.threads));
	atomic_store(&openblas.loaded, true);
}

NnStatus
nn_blas_load(NnError *err)
{
	pthread_once(&openblas.once, load_openblas);
	if (openblas.sgemm == NULL)
		return nn_fail(err, NN_ERR_IO, "%s", openblas.error);
	return NN_OK;
}

void
nn_blas_setup(int threads)
{
	if (threads < 1)
		threads = 1;
	atomic_store(&openblas.threads, threads);
	if (atomic_load(&openblas.loaded))
		openblas.set_num_threads(threads);
	nn_parallel_set_threads(threads);
}

void
nn_blas_single_threaded(bool single)
{
	int			want = single ? 1 : atomic_load(&openblas.threads);

	if (atomic_load(&openblas.loaded) && want > 0 && openblas.get_num_threads() != want)
		openblas.set_num_threads(want);
}

const char *
nn_blas_core(void)
{
	NnError		ignored;

	return nn_blas_load(&ignored) == NN_OK ? openblas.get_corename() : "none";
}

int
nn_blas_threads(void)
{
	NnError		ignored;

	if (nn_blas_load(&ignored) != NN_OK)
		return 1;
	return openblas.get_num_threads();
}

/* Row-major C = alpha op(A) op(B) + beta C with plain loops; beta 0 ignores C's contents. */
static void
row_major_loops(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K,
			float alpha, const float *A, int lda, const float *B, int ldb, float beta,
			float *C, int ldc)
{
	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++)
		{
			float		sum = 0.0f;

			for (int k = 0; k < K; k++)
				sum += (ta == CblasNoTrans ? A[(size_t) i * lda + k] : A[(size_t) k * lda + i]) *
					(tb == CblasNoTrans ? B[(size_t) k * ldb + j] : B[(size_t) j * ldb + k]);
			C[(size_t) i * ldc + j] = alpha * sum +
				(beta == 0.0f ? 0.0f : beta * C[(size_t) i * ldc + j]);
		}
}

/* Output columns one pass of row_major_vector_loops computes: 8 sums in flight. */
#define LOOP_COLS 8

/*
 * C[i][j .. j + cols) of row-major C = alpha op(A) op(B) + beta C, with
 * op(A)'s row i at a (a_step apart) and op(B)(k, j + l) at
 * b[k * b_k + l * b_l].  Each sum runs over k in order, as the plain loops'
 * does, so the result is bit-identical to theirs; what changes is that 8
 * sums advance together (one vector when B's rows are contiguous) instead
 * of one chain of dependent additions.
 */
static inline void
columns_in_flight(float *c, const float *a, size_t a_step, const float *b, size_t b_k,
				  size_t b_l, int K, float alpha, float beta, const int cols)
{
	float		acc[LOOP_COLS] = {0};

	for (int k = 0; k < K; k++)
	{
		float		ak = a[k * a_step];
		const float *bk = b + k * b_k;

		for (int l = 0; l < cols; l++)
			acc[l] += ak * bk[l * b_l];
	}
	for (int l = 0; l < cols; l++)
		c[l] = alpha * acc[l] + (beta == 0.0f ? 0.0f : beta * c[l]);
}

/*
 * Row-major C = alpha op(A) op(B) + beta C for nn_sgemm's small products
 * (attention of a short sequence, a decoder's few rows against the
 * encoder's) and its fallback.  The plain loops, one dependent chain of
 * additions per output, were 5% of a T5-small training step.
 */
static void
row_major_vector_loops(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N, int K,
					   float alpha, const float *A, int lda, const float *B, int ldb, float beta,
					   float *C, int ldc)
{
	size_t		a_step = ta == CblasNoTrans ? 1 : (size_t) lda;
	size_t		b_k = tb == CblasNoTrans ? (size_t) ldb : 1,
				b_l = tb == CblasNoTrans ? 1 : (size_t) ldb;

	for (int i = 0; i < M; i++)
	{
		const float *a = ta == CblasNoTrans ? A + (size_t) i * lda : A + i;
		float	   *c = C + (size_t) i * ldc;
		int			j = 0;

		for (; j + LOOP_COLS <= N; j += LOOP_COLS)
			columns_in_flight(c + j, a, a_step, B + j * b_l, b_k, b_l, K, alpha, beta,
							  LOOP_COLS);
		if (j < N)
			columns_in_flight(c + j, a, a_step, B + j * b_l, b_k, b_l, K, alpha, beta, N - j);
	}
}

/* nn_sgemm without OpenBLAS: row_major_vector_loops in either order. */
static void
sgemm_vector_loops(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb,
				   int M, int N, int K, float alpha, const float *A, int lda, const float *B,
				   int ldb, float beta, float *C, int ldc)
{
	if (order == CblasRowMajor)
		row_major_vector_loops(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
	else
		row_major_vector_loops(tb, ta, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc);
}

void
nn_sgemm_loops(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb,
			   int M, int N, int K, float alpha, const float *A, int lda, const float *B,
			   int ldb, float beta, float *C, int ldc)
{
	if (order == CblasRowMajor)
		row_major_loops(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
	else						/* column-major C is row-major C^T = op(B)^T op(A)^T */
		row_major_loops(tb, ta, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc);
}

void
nn_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb,
		 int M, int N, int K, float alpha, const float *A, int lda, const float *B,
		 int ldb, float beta, float *C, int ldc)
{
	NnError		ignored;

	if ((double) M * N * K > NN_SGEMM_SMALL && nn_blas_load(&ignored) == NN_OK)
		openblas.sgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
	else
		sgemm_vector_loops(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void
nn_axpy(int n, float a, const float *x, float *y)
{
	for (int i = 0; i < n; i++)
		y[i] += a * x[i];
}
