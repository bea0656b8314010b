/*
 * test_blas.c: OpenBLAS loaded at first use (blas.h).
 *
 * - it loads, with the kernel set this CPU's features call for, or with the
 *   user's own OPENBLAS_CORETYPE when one is set (the test runs itself again
 *   with OPENBLAS_CORETYPE=Haswell), and the environment is left as it was;
 * - nn_sgemm equals the plain-loop product for every layout, transpose,
 *   alpha and beta the code uses, beta 0 ignoring NaNs in C;
 * - nn_blas_setup sets OpenBLAS's thread count;
 * - DEPT_NO_AVX512=1 (the benchmark's "no AVX-512" switch) gives a new
 *   process OpenBLAS kernels without AVX-512 and turns off the AVX-512 row
 *   product and AMX; "0" leaves them on.
 */
#include "ops/blas.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/rng.h"
#include "ops/gemm_bf16.h"
#include "ops/gemm_rows.h"
#include "unit.h"

static bool
is_avx512_core(const char *core)
{
	return strcmp(core, "SkylakeX") == 0 || strcmp(core, "Cooperlake") == 0 ||
		strcmp(core, "SapphireRapids") == 0;
}

static void
test_loads_the_kernels_the_cpu_calls_for(void)
{
	const char *user_core = getenv("OPENBLAS_CORETYPE");
	NnError		err = {0};
	const char *core;

	CHECK(nn_blas_load(&err) == NN_OK, "%s", err.msg);
	core = nn_blas_core();
	printf("# OpenBLAS kernels: %s (OPENBLAS_CORETYPE %s)\n", core,
		   user_core ? user_core : "unset");
	if (user_core != NULL)
	{
		CHECK(strcasecmp(core, user_core) == 0, "core %s, user asked for %s", core, user_core);
		CHECK(strcmp(getenv("OPENBLAS_CORETYPE"), user_core) == 0, "user's variable changed");
		return;
	}
	CHECK(getenv("OPENBLAS_CORETYPE") == NULL, "OPENBLAS_CORETYPE left set to %s",
		  getenv("OPENBLAS_CORETYPE"));
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
		__builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
		CHECK(is_avx512_core(core), "AVX-512 CPU runs %s kernels", core);
	else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		CHECK(strcmp(core, "Prescott") != 0 && strcmp(core, "Nehalem") != 0,
			  "AVX2 CPU runs %s kernels", core);
}

/* With OPENBLAS_CORETYPE=Haswell in its environment, a new process runs Haswell's kernels. */
static void
test_the_users_coretype_wins(void)
{
	char		self[4096] = "",
				command[4200],
				core[64] = "";
	FILE	   *child;

	if (getenv("OPENBLAS_CORETYPE") != NULL)
		return;					/* this run is already that case */
	CHECK(readlink("/proc/self/exe", self, sizeof(self) - 1) > 0, "readlink failed");
	snprintf(command, sizeof(command), "OPENBLAS_CORETYPE=Haswell '%s' --print-core", self);
	child = popen(command, "r");
	CHECK(child != NULL, "popen failed");
	if (child == NULL)
		return;
	CHECK(fgets(core, sizeof(core), child) != NULL, "no output from the child");
	CHECK(pclose(child) == 0, "child failed");
	CHECK(strcmp(core, "Haswell\n") == 0, "child ran %s", core);
}

/* Worst |diff| between nn_sgemm and the loops for one layout and transpose pair. */
static double
worst_difference(Rng *rng, enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta,
				 enum CBLAS_TRANSPOSE tb, float alpha, float beta, int M, int N, int K)
{
	/* leading dimensions one wider than needed, so a mixed-up stride shows */
	int			rows_a = ((order == CblasRowMajor) == (ta == CblasNoTrans)) ? M : K,
				rows_b = ((order == CblasRowMajor) == (tb == CblasNoTrans)) ? K : N,
				rows_c = order == CblasRowMajor ? M : N;
	int			lda = (rows_a == M ? K : M) + 1,
				ldb = (rows_b == K ? N : K) + 1,
				ldc = (rows_c == M ? N : M) + 1;
	float	   *A = unit_random_floats(rng, (size_t) rows_a * lda),
			   *B = unit_random_floats(rng, (size_t) rows_b * ldb),
			   *C = unit_random_floats(rng, (size_t) rows_c * ldc),
			   *R = malloc(sizeof(float) * rows_c * ldc);
	double		worst = 0;

	if (beta == 0.0f)
		for (int i = 0; i < rows_c * ldc; i++)
			C[i] = NAN;
	memcpy(R, C, sizeof(float) * rows_c * ldc);
	nn_sgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
	nn_sgemm_loops(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
	for (int r = 0; r < rows_c; r++)
		for (int c = 0; c < (rows_c == M ? N : M); c++)
		{
			double		d = fabs((double) C[r * ldc + c] - R[r * ldc + c]);

			if (isnan(d))
				d = INFINITY;
			if (d > worst)
				worst = d;
		}
	free(A);
	free(B);
	free(C);
	free(R);
	return worst;
}

static void
test_sgemm_matches_the_loops(void)
{
	const enum CBLAS_ORDER orders[] = {CblasRowMajor, CblasColMajor};
	const enum CBLAS_TRANSPOSE trans[] = {CblasNoTrans, CblasTrans};
	const float scales[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {0.5f, -2.0f}};
	Rng			rng;

	rng_seed(&rng, 7);
	for (int o = 0; o < 2; o++)
		for (int a = 0; a < 2; a++)
			for (int b = 0; b < 2; b++)
				for (int s = 0; s < 3; s++)
				{
					double		d = worst_difference(&rng, orders[o], trans[a], trans[b],
													 scales[s][0], scales[s][1], 37, 70, 129);

					/* sums of 129 products of values in [-1, 1], in different orders */
					CHECK(d < 1e-4, "order %d trans %d/%d alpha %g beta %g: worst diff %g",
						  o, a, b, scales[s][0], scales[s][1], d);
				}
}

/*
 * Products of at most NN_SGEMM_SMALL (32768) multiply-adds run in nn_sgemm's
 * own loops, 8 sums in flight, not OpenBLAS: every layout, shapes with and
 * without a tail of the 8 columns, bit-identical to the plain loops (each
 * sum over k in the same order).
 */
static void
test_small_products_match_the_loops(void)
{
	const enum CBLAS_ORDER orders[] = {CblasRowMajor, CblasColMajor};
	const enum CBLAS_TRANSPOSE trans[] = {CblasNoTrans, CblasTrans};
	const float scales[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {0.5f, -2.0f}};
	const int	shapes[][3] = {{2, 80, 64}, {20, 20, 64}, {1, 17, 9}, {7, 3, 5}, {16, 64, 32}};
	Rng			rng;
	double		worst = 0;

	rng_seed(&rng, 11);
	for (int sh = 0; sh < 5; sh++)
		for (int o = 0; o < 2; o++)
			for (int a = 0; a < 2; a++)
				for (int b = 0; b < 2; b++)
					for (int s = 0; s < 3; s++)
					{
						double		d = worst_difference(&rng, orders[o], trans[a], trans[b],
														 scales[s][0], scales[s][1],
														 shapes[sh][0], shapes[sh][1],
														 shapes[sh][2]);

						if (d > worst)
							worst = d;
						CHECK(d == 0, "%dx%dx%d order %d trans %d/%d alpha %g beta %g: "
							  "worst diff %g", shapes[sh][0], shapes[sh][1], shapes[sh][2],
							  o, a, b, scales[s][0], scales[s][1], d);
					}
	printf("# small products: worst |diff| to the plain loops %.3g\n", worst);
}

static void
test_setup_sets_the_thread_count(void)
{
	nn_blas_setup(2);
	CHECK(nn_blas_threads() == 2, "threads %d after setup(2)", nn_blas_threads());
	nn_blas_setup(0);
	CHECK(nn_blas_threads() == 1, "threads %d after setup(0)", nn_blas_threads());
}

/* What a child started with env_prefix prints for --print-switch: "core rows amx allowed". */
static bool
child_switch(const char *env_prefix, char *core, int *rows, int *amx, int *allowed)
{
	char		self[4096] = "",
				command[4400],
				line[256] = "";
	FILE	   *child;

	if (readlink("/proc/self/exe", self, sizeof(self) - 1) <= 0)
		return false;
	snprintf(command, sizeof(command), "env -u OPENBLAS_CORETYPE %s '%s' --print-switch",
			 env_prefix, self);
	if ((child = popen(command, "r")) == NULL)
		return false;
	if (fgets(line, sizeof(line), child) == NULL)
		line[0] = '\0';
	return pclose(child) == 0 && sscanf(line, "%63s %d %d %d", core, rows, amx, allowed) == 4;
}

static void
test_no_avx512_switch(void)
{
	char		core[64] = "";
	int			rows = -1,
				amx = -1,
				allowed = -1;

	CHECK(child_switch("DEPT_NO_AVX512=1", core, &rows, &amx, &allowed), "child failed");
	printf("# DEPT_NO_AVX512=1: OpenBLAS %s, row product %d, AMX %d\n", core, rows, amx);
	CHECK(!is_avx512_core(core), "DEPT_NO_AVX512=1 runs %s kernels", core);
	CHECK(rows == 0 && amx == 0 && allowed == 0, "row product %d, AMX %d, allowed %d", rows, amx,
		  allowed);
	CHECK(child_switch("DEPT_NO_AVX512=0", core, &rows, &amx, &allowed), "child failed");
	CHECK(allowed == 1, "DEPT_NO_AVX512=0 turned AVX-512 off");
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f"))
		CHECK(rows == 1, "DEPT_NO_AVX512=0: the AVX-512 row product is off");
}

int
main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--print-core") == 0)
	{
		printf("%s\n", nn_blas_core());
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "--print-switch") == 0)
	{
		printf("%s %d %d %d\n", nn_blas_core(), gemm_rows_usable(4, 64, 64),
			   gemm_bf16_usable(64, 64), nn_cpu_avx512_allowed());
		return 0;
	}
	RUN_TEST(test_loads_the_kernels_the_cpu_calls_for);
	RUN_TEST(test_the_users_coretype_wins);
	RUN_TEST(test_sgemm_matches_the_loops);
	RUN_TEST(test_small_products_match_the_loops);
	RUN_TEST(test_setup_sets_the_thread_count);
	RUN_TEST(test_no_avx512_switch);
	return unit_finish();
}
