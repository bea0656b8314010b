/*
 * test_gemm_rows.c: the packing-free few-rows product (gemm_rows.h) equals
 * cblas_sgemm plus the bias, over the shapes use-lite runs at (C in 256,
 * 512, 1536; OC in 512, 768, 1536), every row count up to the cut-over
 * (GEMM_ROWS_MAX_N, so every tail of the 6-row blocks), with and without a
 * bias; and matmul_forward's choice between the two is invisible.  The
 * Hugging Face layout's product (gemm_rows_nt, weight (OC, C)) equals the
 * loops' inp @ W^T + bias the same way, for every row count up to its
 * cut-over, column counts around its 4-column blocks, rows of out wider
 * than OC (the columns between are left alone), and through
 * linear_forward on either side of the cut-over.
 *
 * Tolerance: both sum C products in float, in different orders, so they
 * differ by rounding: |diff| <= 1e-5 * sum_k |x_k w_k| + 1e-6 (measured
 * worst ratio about 1e-7).  On a CPU without AVX-512 the kernel is not
 * usable and the comparisons are skipped, saying so.
 */
#include "ops/blas.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/gemm_rows.h"
#include "ops/kernels.h"
#include "base/parallel.h"
#include "base/rng.h"
#include "unit.h"

static Rng	rng;

/* Worst |diff| / (sum_k |x_k w_k| + 1e-6) of gemm_rows against cblas_sgemm. */
static double
worst_error(int N, int C, int OC, bool with_bias)
{
	float	   *x = unit_random_floats(&rng, (size_t) N * C),
			   *w = unit_random_floats(&rng, (size_t) C * OC),
			   *b = with_bias ? unit_random_floats(&rng, OC) : NULL,
			   *got = malloc(sizeof(float) * N * OC),
			   *want = malloc(sizeof(float) * N * OC);
	double		worst = 0;

	gemm_rows(got, x, w, b, N, C, OC);
	nn_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, OC, C, 1.0f, x, C, w, OC,
				0.0f, want, OC);
	for (int n = 0; n < N; n++)
		for (int j = 0; j < OC; j++)
		{
			double		scale = 1e-6;
			double		diff;

			for (int k = 0; k < C; k++)
				scale += fabs((double) x[(size_t) n * C + k] * w[(size_t) k * OC + j]);
			diff = fabs((double) got[(size_t) n * OC + j] -
						(want[(size_t) n * OC + j] + (b ? b[j] : 0.0f)));
			if (diff / scale > worst)
				worst = diff / scale;
		}
	free(x);
	free(w);
	free(b);
	free(got);
	free(want);
	return worst;
}

static void
test_matches_cblas(void)
{
	static const int shapes[][2] = {{256, 768}, {256, 512}, {512, 1536}, {1536, 512}, {512, 512}};
	double		worst = 0;

	if (!gemm_rows_usable(1, 256, 512))
	{
		printf("# no AVX-512 here: gemm_rows is not used, nothing to compare\n");
		return;
	}
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
		for (int N = 1; N <= GEMM_ROWS_MAX_N; N += (N < 13 ? 1 : 7))
			for (int with_bias = 0; with_bias < 2; with_bias++)
			{
				double		e = worst_error(N, shapes[s][0], shapes[s][1], with_bias);

				CHECK(e <= 1e-5, "N=%d C=%d OC=%d bias=%d: error ratio %.3g", N, shapes[s][0],
					  shapes[s][1], with_bias, e);
				if (e > worst)
					worst = e;
			}
	printf("# worst error ratio against cblas_sgemm: %.3g\n", worst);
}

static void
test_usable_shapes(void)
{
	bool		avx512 = gemm_rows_usable(1, 256, 512);

	CHECK(!gemm_rows_usable(0, 256, 512), "no rows");
	CHECK(!gemm_rows_usable(GEMM_ROWS_MAX_N + 1, 256, 512), "above the cut-over");
	CHECK(!gemm_rows_usable(4, 256, 520), "OC not a multiple of 64");
	CHECK(gemm_rows_usable(GEMM_ROWS_MAX_N, 512, 1536) == avx512, "the largest row count");
}

/* matmul_forward gives the same product on both sides of the cut-over. */
static void
test_matmul_forward_either_side(void)
{
	int			C = 256,
				OC = 768,
				N = GEMM_ROWS_MAX_N + 6;
	float	   *x = unit_random_floats(&rng, (size_t) N * C),
			   *w = unit_random_floats(&rng, (size_t) C * OC),
			   *b = unit_random_floats(&rng, OC),
			   *all = malloc(sizeof(float) * N * OC),
			   *part = malloc(sizeof(float) * N * OC);
	double		worst = 0;

	matmul_forward(all, x, w, b, N, C, OC);		/* OpenBLAS */
	matmul_forward(part, x, w, b, 6, C, OC);	/* gemm_rows where usable */
	for (int i = 0; i < 6 * OC; i++)
		if (fabs(all[i] - part[i]) > worst)
			worst = fabs(all[i] - part[i]);
	CHECK(worst < 1e-4, "first 6 rows differ by %.3g", worst);
	free(x);
	free(w);
	free(b);
	free(all);
	free(part);
}

/* Split over 2 and 3 threads, every element is bit-identical to one thread's. */
static void
test_threads_identical(void)
{
	int			C = 512,
				OC = 1536,
				N = 21;
	float	   *x = unit_random_floats(&rng, (size_t) N * C),
			   *w = unit_random_floats(&rng, (size_t) C * OC),
			   *b = unit_random_floats(&rng, OC),
			   *one = malloc(sizeof(float) * N * OC),
			   *many = malloc(sizeof(float) * N * OC);

	if (!gemm_rows_usable(N, C, OC))
	{
		printf("# no AVX-512 here: gemm_rows is not used\n");
		return;
	}
	nn_parallel_set_threads(1);
	gemm_rows(one, x, w, b, N, C, OC);
	for (int t = 2; t <= 3; t++)
	{
		nn_parallel_set_threads(t);
		for (int rep = 0; rep < 50; rep++)
		{
			memset(many, 0, sizeof(float) * N * OC);
			gemm_rows(many, x, w, b, N, C, OC);
			CHECK(memcmp(one, many, sizeof(float) * N * OC) == 0,
				  "%d threads, call %d: results differ from one thread's", t, rep);
		}
	}
	nn_parallel_set_threads(1);
	free(x);
	free(w);
	free(b);
	free(one);
	free(many);
}

/* Worst error ratio of gemm_rows_nt (rows of out ldo apart) against the loops' inp @ W^T + b. */
static double
nt_worst_error(int N, int C, int OC, int ldo, bool with_bias)
{
	float	   *x = unit_random_floats(&rng, (size_t) N * C),
			   *w = unit_random_floats(&rng, (size_t) OC * C),
			   *bias = with_bias ? unit_random_floats(&rng, OC) : NULL,
			   *out = unit_random_floats(&rng, (size_t) N * ldo),
			   *before = malloc(sizeof(float) * N * ldo);
	double		worst = 0;

	memcpy(before, out, sizeof(float) * N * ldo);
	gemm_rows_nt(out, ldo, x, w, bias, N, C, OC);
	for (int i = 0; i < N; i++)
		for (int j = 0; j < ldo; j++)
		{
			double		want = bias && j < OC ? bias[j] : 0,
						scale = 1e-6;

			if (j >= OC)
			{
				CHECK(out[(size_t) i * ldo + j] == before[(size_t) i * ldo + j], "column %d written", j);
				continue;
			}
			for (int k = 0; k < C; k++)
			{
				want += (double) x[(size_t) i * C + k] * w[(size_t) j * C + k];
				scale += fabs((double) x[(size_t) i * C + k] * w[(size_t) j * C + k]);
			}
			worst = fmax(worst, fabs(out[(size_t) i * ldo + j] - want) / scale);
		}
	free(x);
	free(w);
	free(bias);
	free(out);
	free(before);
	return worst;
}

static void
test_nt_matches_the_loops(void)
{
	static const int shapes[][3] = {{32, 4, 4}, {48, 36, 40}, {768, 768, 768}, {384, 1536, 1536}};
	double		worst = 0;

	if (!gemm_rows_nt_usable(1, 32, 4))
	{
		printf("# skip: this CPU or setting has no AVX-512\n");
		return;
	}
	for (int N = 1; N <= GEMM_ROWS_NT_MAX_N; N++)
		worst = fmax(worst, nt_worst_error(N, shapes[N % 2][0], shapes[N % 2][1],
										   shapes[N % 2][2] + 8 * (N % 3), N % 4 != 0));
	for (int s = 2; s < 4; s++)
		worst = fmax(worst, nt_worst_error(s == 2 ? 20 : 7, shapes[s][0], shapes[s][1],
										   3 * shapes[s][2], true));
	printf("# worst error ratio of gemm_rows_nt: %.3g\n", worst);
	CHECK(worst <= 1e-5, "gemm_rows_nt against the loops: %g", worst);
	CHECK(!gemm_rows_nt_usable(1, 40, 4) && !gemm_rows_nt_usable(1, 32, 6),
		  "C not a multiple of 16 or OC of 4 refused");
}

/*
 * The broadcast form (3..96 rows, gemm_rows.h): each panel width (8 to 48
 * rows in steps of 8: 16-row vectors and a half), rows of out wider than OC, with and without bias, against the
 * loops in double; split over 2 and 3 threads, bit-identical to one.
 */
static void
test_nt_broadcast_form(void)
{
	static const int rows[] = {3, 12, 17, 20, 33, 48, 49, 80, 95, 96};
	double		worst = 0;
	int			C = 768,
				OC = 2304,
				N = 80;
	float	   *x,
			   *w,
			   *b,
			   *one,
			   *many;

	if (!gemm_rows_nt_usable(GEMM_ROWS_NT_MAX_N, 32, 8))
	{
		printf("# skip: this CPU or setting has no AVX-512\n");
		return;
	}
	for (int i = 0; i < (int) (sizeof(rows) / sizeof(rows[0])); i++)
		worst = fmax(worst, nt_worst_error(rows[i], i % 2 ? 384 : 96, 8 * (i + 1),
										   8 * (i + 1) + 3 * (i % 3), i % 2 == 0));
	printf("# worst error ratio of the broadcast form: %.3g\n", worst);
	CHECK(worst <= 1e-5, "broadcast form against the loops: %g", worst);
	x = unit_random_floats(&rng, (size_t) N * C);
	w = unit_random_floats(&rng, (size_t) OC * C);
	b = unit_random_floats(&rng, OC);
	one = malloc(sizeof(float) * N * OC);
	many = malloc(sizeof(float) * N * OC);
	nn_parallel_set_threads(1);
	gemm_rows_nt(one, OC, x, w, b, N, C, OC);
	for (int t = 2; t <= 3; t++)
	{
		nn_parallel_set_threads(t);
		memset(many, 0, sizeof(float) * N * OC);
		gemm_rows_nt(many, OC, x, w, b, N, C, OC);
		CHECK(memcmp(one, many, sizeof(float) * N * OC) == 0,
			  "%d threads: results differ from one thread's", t);
	}
	nn_parallel_set_threads(1);
	free(x);
	free(w);
	free(b);
	free(one);
	free(many);
}

/* linear_forward below and above the cut-over gives the same function (within rounding). */
static void
test_linear_forward_either_side(void)
{
	const int	C = 96,
				OC = 64,
				N = GEMM_ROWS_NT_MAX_N + 8;
	float	   *x = unit_random_floats(&rng, (size_t) N * C),
			   *w = unit_random_floats(&rng, (size_t) OC * C),
			   *b = unit_random_floats(&rng, OC),
			   *all = malloc(sizeof(float) * N * OC),
			   *part = malloc(sizeof(float) * N * OC);
	double		worst = 0;

	linear_forward(all, x, w, b, N, C, OC, OC);
	linear_forward(part, x, w, b, GEMM_ROWS_NT_MAX_N, C, OC, OC);
	linear_forward(part + (size_t) GEMM_ROWS_NT_MAX_N * OC, x + (size_t) GEMM_ROWS_NT_MAX_N * C, w,
				   b, N - GEMM_ROWS_NT_MAX_N, C, OC, OC);
	for (int i = 0; i < N * OC; i++)
		worst = fmax(worst, fabs(all[i] - part[i]));
	printf("# linear_forward, %d rows at once against %d + %d: max |diff| %.2e\n", N,
		   GEMM_ROWS_NT_MAX_N, N - GEMM_ROWS_NT_MAX_N, worst);
	CHECK(worst <= 1e-4, "max |diff| %g", worst);
	free(x);
	free(w);
	free(b);
	free(all);
	free(part);
}

int
main(void)
{
	rng_seed(&rng, 20261201);
	RUN_TEST(test_matches_cblas);
	RUN_TEST(test_usable_shapes);
	RUN_TEST(test_matmul_forward_either_side);
	RUN_TEST(test_threads_identical);
	RUN_TEST(test_nt_matches_the_loops);
	RUN_TEST(test_nt_broadcast_form);
	RUN_TEST(test_linear_forward_either_side);
	return unit_finish();
}
