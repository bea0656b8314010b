/*
 * test_gemm_packed.c: the float32 product over packed weights
 * (gemm_packed.h) equals the loops' inp @ W^T + bias for every block size
 * (row counts 3 to 96 give blocks of 3 to 24 rows, and 640 rows 27 blocks),
 * with and without a bias, with rows of out wider than OC (the columns
 * between are left alone); it gives the same floats as the broadcast form
 * of gemm_rows_nt (both sum over k in order, then add the bias), for any
 * thread count; linear_product takes it only when packing is on, and a
 * weight is packed once; panels written to a shared file come back from
 * it, a region limit leaves other weights alone, and forgetting one region
 * keeps another's copies.
 *
 * Tolerance against the loops in double: |diff| <= 1e-5 * sum_k |x_k w_k|
 * + 1e-6.  On a CPU without AVX-512 the product is not usable and the
 * comparisons are skipped, saying so.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ops/gemm_packed.h"
#include "ops/gemm_rows.h"
#include "ops/kernels.h"
#include "base/parallel.h"
#include "base/rng.h"
#include "unit.h"

static Rng	rng;

/* Worst |diff| / (sum_k |x_k w_k| + 1e-6) of gemm_packed against the loops. */
static double
worst_error(int N, int C, int OC, int ldo, bool with_bias)
{
	float	   *x = unit_random_floats(&rng, (size_t) N * C),
			   *w = unit_random_floats(&rng, (size_t) OC * C),
			   *bias = with_bias ? unit_random_floats(&rng, OC) : NULL,
			   *out = unit_random_floats(&rng, (size_t) N * ldo),
			   *before = malloc(sizeof(float) * N * ldo);
	const PackedWeight *p = gemm_packed_weight(w, OC, C);
	double		worst = 0;

	memcpy(before, out, sizeof(float) * N * ldo);
	CHECK(p != NULL && gemm_packed(out, ldo, x, p, bias, N), "packed product of %d rows", N);
	for (int i = 0; i < N; i++)
		for (int j = 0; j < ldo; j++)
		{
			double		want = bias && j < OC ? bias[j] : 0,
						scale = 1e-6;

			if (j >= OC)
			{
				CHECK(out[(size_t) i * ldo + j] == before[(size_t) i * ldo + j],
					  "column %d written", j);
				continue;
			}
			for (int k = 0; k < C; k++)
			{
				want += (double) x[(size_t) i * C + k] * w[(size_t) j * C + k];
				scale += fabs((double) x[(size_t) i * C + k] * w[(size_t) j * C + k]);
			}
			worst = fmax(worst, fabs(out[(size_t) i * ldo + j] - want) / scale);
		}
	gemm_packed_forget_weights();
	free(x);
	free(w);
	free(bias);
	free(out);
	free(before);
	return worst;
}

static void
test_matches_the_loops(void)
{
	double		worst = 0;

	for (int N = 3; N <= 96; N++)
		worst = fmax(worst, worst_error(N, N % 2 ? 48 : 96, 32 + 16 * (N % 3),
										32 + 16 * (N % 3) + 5 * (N % 2), N % 4 != 0));
	worst = fmax(worst, worst_error(20, 768, 2304, 2304, true));
	worst = fmax(worst, worst_error(640, 384, 64, 70, true));
	printf("# worst error ratio of the packed product: %.3g\n", worst);
	CHECK(worst <= 1e-5, "packed product against the loops: %g", worst);
	CHECK(gemm_packed_bytes() == 0, "forget frees every packed copy");
}

/*
 * The same floats as the broadcast form (gemm_rows_nt, 3..96 rows), for 1,
 * 2 and 3 threads: packing changes where the weight is read, not the sums.
 */
static void
test_same_floats_as_the_broadcast_form(void)
{
	const int	C = 384,
				OC = 1536;
	float	   *x = unit_random_floats(&rng, (size_t) 96 * C),
			   *w = unit_random_floats(&rng, (size_t) OC * C),
			   *b = unit_random_floats(&rng, OC),
			   *packed = malloc(sizeof(float) * 96 * OC),
			   *broadcast = malloc(sizeof(float) * 96 * OC);
	const PackedWeight *p = gemm_packed_weight(w, OC, C);
	int			differ = 0;

	for (int t = 1; t <= 3; t++)
	{
		nn_parallel_set_threads(t);
		for (int N = 3; N <= 96; N += 7)
		{
			gemm_rows_nt(broadcast, OC, x, w, b, N, C, OC);
			gemm_packed(packed, OC, x, p, b, N);
			differ += memcmp(packed, broadcast, sizeof(float) * N * OC) != 0;
		}
	}
	nn_parallel_set_threads(1);
	CHECK(differ == 0, "%d products differ from the broadcast form's", differ);
	gemm_packed_forget_weights();
	free(x);
	free(w);
	free(b);
	free(packed);
	free(broadcast);
}

/* linear_product packs only when packing is on, and a weight once. */
static void
test_linear_product_packs_when_asked(void)
{
	const int	C = 64,
				OC = 48,
				N = 20;
	float	   *x = unit_random_floats(&rng, (size_t) N * C),
			   *w = unit_random_floats(&rng, (size_t) OC * C),
			   *off = malloc(sizeof(float) * N * OC),
			   *on = malloc(sizeof(float) * N * OC);

	gemm_packed_enable(false, NULL, 0);
	linear_product(false, off, x, w, NULL, N, C, OC, OC);
	CHECK(gemm_packed_bytes() == 0, "nothing packed while packing is off");
	gemm_packed_enable(true, NULL, 0);
	linear_product(false, on, x, w, NULL, N, C, OC, OC);
	linear_product(false, on, x, w, NULL, N, C, OC, OC);
	CHECK(gemm_packed_bytes() == sizeof(float) * C * OC, "one packed copy: %zu bytes",
		  gemm_packed_bytes());
	CHECK(memcmp(on, off, sizeof(float) * N * OC) == 0, "packing changes no float");
	CHECK(!gemm_packed_usable(2, C, OC) && !gemm_packed_usable(GEMM_PACKED_MAX_N + 1, C, OC) &&
		  !gemm_packed_usable(N, C, 40), "shapes outside the product are refused");
	gemm_packed_enable(false, NULL, 0);
	gemm_packed_forget_weights();
	free(x);
	free(w);
	free(off);
	free(on);
}

/*
 * Panels written for a weight region are taken from the file by the next
 * lookup (none packed privately), give the same floats, and a region limit
 * leaves weights outside it unpacked.
 */
static void
test_shared_file_round_trip(void)
{
	const int	C = 64,
				OC = 32,
				N = 20;
	float	   *region = unit_random_floats(&rng, (size_t) 3 * OC * C),
			   *x = unit_random_floats(&rng, (size_t) N * C),
			   *w = region + (size_t) OC * C,	/* the second of three weights */
			   *outside = unit_random_floats(&rng, (size_t) OC * C),
			   *before = malloc(sizeof(float) * N * OC),
			   *after = malloc(sizeof(float) * N * OC);
	size_t		len = sizeof(float) * 3 * OC * C;
	char		path[] = "/tmp/test_gemm_packed.XXXXXX";
	int			fd = mkstemp(path);

	CHECK(fd >= 0, "a temporary file");
	close(fd);
	gemm_packed_enable(true, region, len);
	CHECK(gemm_packed_weight(outside, OC, C) == NULL, "a weight outside the region is not packed");
	gemm_packed(before, OC, x, gemm_packed_weight(w, OC, C), NULL, N);
	CHECK(gemm_packed_private_count(region, len) == 1, "one weight packed privately");
	CHECK(gemm_packed_write_shared(path, region, len), "the file written");
	gemm_packed_forget_weights();
	CHECK(gemm_packed_map_shared(path, region, len), "the file mapped");
	gemm_packed(after, OC, x, gemm_packed_weight(w, OC, C), NULL, N);
	CHECK(gemm_packed_private_count(region, len) == 0 && gemm_packed_bytes() == 0,
		  "the panels came from the file");
	CHECK(memcmp(before, after, sizeof(float) * N * OC) == 0, "the file's panels give the same floats");
	/* forgetting one region leaves another's copies */
	gemm_packed_enable(true, NULL, 0);
	CHECK(gemm_packed_weight(outside, OC, C) != NULL, "a weight of another region packed");
	gemm_packed_forget_region(region, len);
	CHECK(gemm_packed_bytes() == sizeof(float) * OC * C, "its copy stays when the first region goes");
	CHECK(gemm_packed_weight(w, OC, C) != NULL && gemm_packed_private_count(region, len) == 1,
		  "the first region's weight packs again once its file is gone");
	gemm_packed_forget_weights();
	CHECK(!gemm_packed_map_shared(path, region, len + 64), "a file made for another region is refused");
	gemm_packed_forget_weights();
	gemm_packed_enable(true, NULL, 0);
	unlink(path);
	free(region);
	free(x);
	free(outside);
	free(before);
	free(after);
}

int
main(void)
{
	rng_seed(&rng, 31);
	gemm_packed_enable(true, NULL, 0);
	if (!gemm_packed_usable(20, 64, 64))
	{
		printf("# skip: this CPU or setting has no AVX-512\n");
		printf("1..0\n");
		return 0;
	}
	RUN_TEST(test_matches_the_loops);
	RUN_TEST(test_same_floats_as_the_broadcast_form);
	RUN_TEST(test_linear_product_packs_when_asked);
	RUN_TEST(test_shared_file_round_trip);
	return unit_finish();
}
