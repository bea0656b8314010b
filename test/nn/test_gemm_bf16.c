/*
 * test_gemm_bf16.c: the bfloat16 AMX product (gemm_bf16.h).
 *
 * - bfloat16 rounding is to nearest, ties to even (known values);
 * - gemm_bf16 equals the product of the bfloat16-rounded operands, computed
 *   here in double, within float summation rounding (|diff| <= 1e-5 *
 *   sum_k |x_k w_k| + 1e-6), over use-lite's shapes, every row count up to
 *   70 (the tails of the 16- and 32-row blocks) on the smallest and the
 *   block edges on the others, with and without bias;
 * - against the float operands the difference stays within bfloat16's
 *   rounding (2^-7 of sum_k |x_k w_k|), and the measured worst is printed;
 * - the input-backward form, dinp += dout W^T from W^T packed out of W,
 *   equals the same rounded product added to dinp;
 * - packed weights are found again by address and shape, and made anew
 *   after gemm_bf16_forget_weights;
 * - packed weights shared through a file (packed_file.h): written by one
 *   "process" for a weight region, mapped by the next, they give
 *   bit-identical products with nothing packed privately; a truncated
 *   file, one with a damaged magic, one made for another region length and
 *   one whose entry points past the region are each refused, and products
 *   then pack privately as before;
 * - the Hugging Face layout (kernels.h linear_product, weight (OC, C)):
 *   forward into rows ldo apart and input-backward from rows ldd apart
 *   equal the rounded products, around the 6-row and 64-column blocks of
 *   the AVX512-BF16 engine (a 96-column weight ends in a 32-column group),
 *   and leave the columns between the strides untouched; with bf16 off
 *   linear_product is linear_forward exactly;
 * - use-lite runs start in float; with run_use_bf16 its sentence vectors of
 *   200 SST-2 test sentences stay within cosine 0.9995 of float's (the
 *   measured worst is printed), and switching back gives float's exactly;
 * - its input-gradient in bfloat16 (forward and backward products on AMX,
 *   as training with "precision": "bfloat16" runs) stays within cosine 0.99
 *   of float's on a batch of 8 sentences (measured 0.9965: the gradient
 *   passes about a dozen products that each round their operands to 8
 *   bits; what matters, accuracy after training, bench/run measures).
 * The checks run on whichever engine the CPU has (the name is printed);
 * on a CPU with neither the kernel is not usable and they are skipped,
 * saying so.
 */
#include "ops/gemm_bf16.h"
#include "ops/kernels.h"

#include "models/backbone.h"
#include "train/dataset.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/rng.h"
#include "unit.h"

static Rng	rng;

static float
round_bf16(float f)
{
	uint32_t	u;

	memcpy(&u, &f, sizeof(u));
	u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
	memcpy(&f, &u, sizeof(f));
	return f;
}

static void
test_rounding_is_to_nearest_even(void)
{
	/* 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even 1 */
	CHECK(round_bf16(1.00390625f) == 1.0f, "%.9g", round_bf16(1.00390625f));
	/* 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties go to 1 + 2^-6 */
	CHECK(round_bf16(1.01171875f) == 1.015625f, "%.9g", round_bf16(1.01171875f));
	CHECK(round_bf16(1.0040f) == 1.0078125f, "above the tie rounds up");
}

/* Worst error ratios of gemm_bf16 against the rounded and the float operands. */
static void
compare(int N, int C, int OC, bool with_bias, double *worst_rounded, double *worst_float)
{
	float	   *x = unit_random_floats(&rng, (size_t) N * C),
			   *w = unit_random_floats(&rng, (size_t) C * OC),
			   *bias = with_bias ? unit_random_floats(&rng, OC) : NULL,
			   *out = malloc(sizeof(float) * N * OC);
	const Bf16Weight *packed = gemm_bf16_weight(w, C, OC);

	CHECK(packed != NULL, "pack %d x %d", C, OC);
	CHECK(packed != NULL && gemm_bf16(out, x, packed, bias, N, false), "gemm_bf16 %d x %d x %d", N, C, OC);
	for (int i = 0; i < N && packed; i++)
		for (int j = 0; j < OC; j++)
		{
			double		rounded = with_bias ? bias[j] : 0,
						exact = rounded,
						scale = 1e-6;

			for (int k = 0; k < C; k++)
			{
				float		xv = x[(size_t) i * C + k],
							wv = w[(size_t) k * OC + j];

				rounded += (double) round_bf16(xv) * round_bf16(wv);
				exact += (double) xv * wv;
				scale += fabs((double) xv * wv);
			}
			*worst_rounded = fmax(*worst_rounded, fabs(out[(size_t) i * OC + j] - rounded) / scale);
			*worst_float = fmax(*worst_float, fabs(out[(size_t) i * OC + j] - exact) / scale);
		}
	gemm_bf16_forget_weights();	/* w is freed below; its address may come back */
	free(x);
	free(w);
	free(bias);
	free(out);
}

static void
test_matches_the_rounded_product(void)
{
	static const int shapes[][2] = {{256, 512}, {512, 1536}, {1536, 512}, {512, 512}};
	double		worst_rounded = 0,
				worst_float = 0;

	if (!gemm_bf16_usable(512, 1536))
	{
		printf("# skip: this CPU runs neither AMX nor AVX512-BF16\n");
		return;
	}
	static const int some_rows[] = {1, 2, 15, 16, 17, 31, 32, 33, 47, 64, 70};

	/* every row count on the smallest shape, the block edges on the others */
	for (int N = 1; N <= 70; N++)
		compare(N, shapes[0][0], shapes[0][1], N % 2 == 0, &worst_rounded, &worst_float);
	for (int s = 1; s < 4; s++)
		for (size_t i = 0; i < sizeof(some_rows) / sizeof(some_rows[0]); i++)
			compare(some_rows[i], shapes[s][0], shapes[s][1], i % 2 == 0, &worst_rounded,
					&worst_float);
	printf("# worst error ratio: %.3g against the rounded operands, %.3g against float\n",
		   worst_rounded, worst_float);
	CHECK(worst_rounded <= 1e-5, "against the rounded operands: %g", worst_rounded);
	CHECK(worst_float <= 1.0 / 128, "against the float operands: %g", worst_float);
}

/* Worst error ratio of dinp += dout W^T (W^T packed from W) against the rounded operands. */
static double
backward_error(int N, int C, int OC)
{
	float	   *dout = unit_random_floats(&rng, (size_t) N * OC),
			   *w = unit_random_floats(&rng, (size_t) C * OC),
			   *dinp = unit_random_floats(&rng, (size_t) N * C),
			   *before = malloc(sizeof(float) * N * C);
	const Bf16Weight *packed = gemm_bf16_weight_transposed(w, C, OC);
	double		worst = 0;

	memcpy(before, dinp, sizeof(float) * N * C);
	CHECK(packed != NULL && gemm_bf16(dinp, dout, packed, NULL, N, true), "backward %d x %d x %d",
		  N, C, OC);
	for (int i = 0; i < N && packed; i++)
		for (int j = 0; j < C; j++)
		{
			double		want = before[(size_t) i * C + j],
						scale = 1e-6 + fabs(want);

			for (int k = 0; k < OC; k++)
			{
				want += (double) round_bf16(dout[(size_t) i * OC + k]) *
					round_bf16(w[(size_t) j * OC + k]);
				scale += fabs((double) dout[(size_t) i * OC + k] * w[(size_t) j * OC + k]);
			}
			worst = fmax(worst, fabs(dinp[(size_t) i * C + j] - want) / scale);
		}
	gemm_bf16_forget_weights();
	free(dout);
	free(w);
	free(dinp);
	free(before);
	return worst;
}

static void
test_backward_matches_the_rounded_product(void)
{
	static const int shapes[][2] = {{256, 768}, {512, 1536}, {1536, 512}, {256, 512}};
	static const int rows[] = {1, 17, 32, 45};
	double		worst = 0;

	if (!gemm_bf16_usable(512, 1536))
	{
		printf("# skip: this CPU runs neither AMX nor AVX512-BF16\n");
		return;
	}
	for (int s = 0; s < 4; s++)
		for (int r = 0; r < 4; r++)
			worst = fmax(worst, backward_error(rows[r], shapes[s][0], shapes[s][1]));
	printf("# worst error ratio of the input-backward: %.3g\n", worst);
	CHECK(worst <= 1e-5, "input-backward against the rounded operands: %g", worst);
}

/* linear_product and its backward for N rows of weight (OC, C), rows of out/dout ld apart. */
static void
check_linear_product(int N, int C, int OC, int ld, double *worst)
{
	float	   *x = unit_random_floats(&rng, (size_t) N * C),
			   *w = unit_random_floats(&rng, (size_t) OC * C),
			   *bias = unit_random_floats(&rng, OC),
			   *out = unit_random_floats(&rng, (size_t) N * ld),
			   *before = malloc(sizeof(float) * N * ld),
			   *dinp = unit_random_floats(&rng, (size_t) N * C),
			   *dinp0 = malloc(sizeof(float) * N * C),
			   *plain = malloc(sizeof(float) * N * ld);

	memcpy(before, out, sizeof(float) * N * ld);
	memcpy(plain, out, sizeof(float) * N * ld);
	memcpy(dinp0, dinp, sizeof(float) * N * C);
	linear_product(true, out, x, w, bias, N, C, OC, ld);
	/* dinp += out (as dout, rows ld apart) @ w */
	linear_product_backward(true, dinp, out, w, N, C, OC, ld);
	for (int i = 0; i < N; i++)
	{
		for (int j = 0; j < ld; j++)
		{
			double		want = bias[j % OC],
						scale = 1e-6 + fabs(want);

			if (j >= OC)
			{
				CHECK(out[(size_t) i * ld + j] == before[(size_t) i * ld + j],
					  "column %d past OC written", j);
				continue;
			}
			for (int k = 0; k < C; k++)
			{
				want += (double) round_bf16(x[(size_t) i * C + k]) * round_bf16(w[(size_t) j * C + k]);
				scale += fabs((double) x[(size_t) i * C + k] * w[(size_t) j * C + k]);
			}
			*worst = fmax(*worst, fabs(out[(size_t) i * ld + j] - want) / scale);
		}
		for (int k = 0; k < C; k++)
		{
			double		want = dinp0[(size_t) i * C + k],
						scale = 1e-6 + fabs(want);

			for (int j = 0; j < OC; j++)
			{
				want += (double) round_bf16(out[(size_t) i * ld + j]) *
					round_bf16(w[(size_t) j * C + k]);
				scale += fabs((double) out[(size_t) i * ld + j] * w[(size_t) j * C + k]);
			}
			*worst = fmax(*worst, fabs(dinp[(size_t) i * C + k] - want) / scale);
		}
	}
	/* bfloat16 off: exactly linear_forward */
	memcpy(before, plain, sizeof(float) * N * ld);
	linear_product(false, plain, x, w, bias, N, C, OC, ld);
	linear_forward(before, x, w, bias, N, C, OC, ld);
	CHECK(memcmp(plain, before, sizeof(float) * N * ld) == 0, "float32 linear_product");
	gemm_bf16_forget_weights();
	free(x);
	free(w);
	free(bias);
	free(out);
	free(before);
	free(dinp);
	free(dinp0);
	free(plain);
}

static void
test_linear_product_matches_the_rounded_product(void)
{
	static const int rows[] = {1, 5, 6, 7, 12, 13, 40};
	double		worst = 0;

	if (!gemm_bf16_usable(64, 96))
	{
		printf("# skip: this CPU runs neither AMX nor AVX512-BF16\n");
		return;
	}
	printf("# engine: %s\n", gemm_bf16_engine());
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++)
	{
		check_linear_product(rows[r], 64, 96, 96, &worst);
		check_linear_product(rows[r], 96, 64, 3 * 64, &worst);
		check_linear_product(rows[r], 128, 256, 256 + 32, &worst);
	}
	printf("# worst error ratio of linear_product and its backward: %.3g\n", worst);
	CHECK(worst <= 1e-5, "against the rounded operands: %g", worst);
}

/* out (N, OC) from both packings of the two weights in region (C, OC at 0, then (OC, C)). */
static void
region_products(float *out, const float *region, const float *x, int N, int C, int OC)
{
	const float *w = region,
			   *v = region + (size_t) C * OC;

	CHECK(gemm_bf16(out, x, gemm_bf16_weight(w, C, OC), NULL, N, false), "plain");
	linear_product(true, out + (size_t) N * OC, x, v, NULL, N, C, OC, OC);
}

/* A copy of file src with len bytes (0: all), one byte at at flipped when at >= 0. */
static void
copy_damaged(const char *src, const char *dst, long len, long at)
{
	FILE	   *in = fopen(src, "rb"),
			   *out = fopen(dst, "wb");
	long		i = 0;
	int			c;

	while (in && out && (c = fgetc(in)) != EOF && (len == 0 || i < len))
	{
		fputc(i == at ? c ^ 0x5a : c, out);
		i++;
	}
	if (in)
		fclose(in);
	if (out)
		fclose(out);
}

/* Shape of the shared-file test: 7 rows, two 64 x 96 weights. */
enum
{
	SH_N = 7, SH_C = 64, SH_OC = 96
};

/* The round trip of test_packed_weights_shared_through_a_file in directory dir. */
static void
check_shared_file(const char *dir, float *region, size_t len, const float *x, float *first,
				  float *again)
{
	char		path[64],
				bad[64];
	/* truncated; a damaged magic; the first entry's source offset (bytes 32..39) far past the region */
	static const long damage[][2] = {{100, -1}, {0, 3}, {0, 36}};

	snprintf(path, sizeof(path), "%s/packed", dir);
	snprintf(bad, sizeof(bad), "%s/bad", dir);
	region_products(first, region, x, SH_N, SH_C, SH_OC);
	CHECK(gemm_bf16_private_count(region, len) == 2, "two packed privately: %d",
		  gemm_bf16_private_count(region, len));
	CHECK(gemm_bf16_write_shared(path, region, len), "write");
	gemm_bf16_forget_weights();

	CHECK(gemm_bf16_map_shared(path, region, len), "map");
	region_products(again, region, x, SH_N, SH_C, SH_OC);
	CHECK(memcmp(first, again, sizeof(float) * 2 * SH_N * SH_OC) == 0, "mapped products differ");
	CHECK(gemm_bf16_private_count(region, len) == 0, "packed privately after mapping: %d",
		  gemm_bf16_private_count(region, len));
	gemm_bf16_forget_weights();

	CHECK(!gemm_bf16_map_shared(path, region, len - 4), "a file for another region length");
	for (size_t d = 0; d < sizeof(damage) / sizeof(damage[0]); d++)
	{
		copy_damaged(path, bad, damage[d][0], damage[d][1]);
		CHECK(!gemm_bf16_map_shared(bad, region, len), "damaged file %zu mapped", d);
	}
	region_products(again, region, x, SH_N, SH_C, SH_OC);
	CHECK(memcmp(first, again, sizeof(float) * 2 * SH_N * SH_OC) == 0, "private products differ");
	CHECK(gemm_bf16_private_count(region, len) == 2, "packed privately again");
	gemm_bf16_forget_weights();
	unlink(path);
	unlink(bad);
	rmdir(dir);
}

static void
test_packed_weights_shared_through_a_file(void)
{
	size_t		len = sizeof(float) * 2 * SH_C * SH_OC;
	float	   *region = unit_random_floats(&rng, 2 * SH_C * SH_OC),
			   *x = unit_random_floats(&rng, SH_N * SH_C),
			   *first = malloc(sizeof(float) * 2 * SH_N * SH_OC),
			   *again = malloc(sizeof(float) * 2 * SH_N * SH_OC);
	char		dir[] = "/tmp/test_gemm_bf16.XXXXXX";

	if (!gemm_bf16_usable(SH_C, SH_OC))
		printf("# skip: this CPU runs neither AMX nor AVX512-BF16\n");
	else if (mkdtemp(dir) == NULL)
		CHECK(0, "mkdtemp: %s", strerror(errno));
	else
		check_shared_file(dir, region, len, x, first, again);
	free(region);
	free(x);
	free(first);
	free(again);
}

static void
test_packed_weights_are_kept_by_address(void)
{
	float	   *w = unit_random_floats(&rng, 256 * 512),
			   *v = unit_random_floats(&rng, 256 * 512);
	const Bf16Weight *first;

	if (!gemm_bf16_usable(256, 512))
	{
		printf("# skip: this CPU runs neither AMX nor AVX512-BF16\n");
		free(w);
		free(v);
		return;
	}
	first = gemm_bf16_weight(w, 256, 512);
	CHECK(first != NULL, "pack");
	CHECK(gemm_bf16_weight(w, 256, 512) == first, "the same weight is packed once");
	CHECK(gemm_bf16_weight(v, 256, 512) != first, "another weight has its own copy");
	CHECK(gemm_bf16_weight(w, 512, 256) != first, "another shape has its own copy");
	CHECK(gemm_bf16_weight_transposed(w, 256, 512) != first, "the transposed form has its own copy");
	gemm_bf16_forget_weights();
	CHECK(gemm_bf16_weight(w, 256, 512) != NULL, "packed again after forgetting");
	gemm_bf16_forget_weights();
	CHECK(!gemm_bf16_usable(100, 512) && !gemm_bf16_usable(256, 48),
		  "shapes that are not multiples of 32 are refused");
	free(w);
	free(v);
}

/* The default model and the 200 SST-2 test sentences; false (both closed) when either fails. */
static bool
open_model_and_texts(Backbone **bb, Dataset **ds)
{
	NnError		err;

	*bb = NULL;
	*ds = NULL;
	CHECK(backbone_open(bb, UNIT_MODEL_DIR(), &err) == NN_OK, "open: %s", err.msg);
	if (*bb != NULL)
		CHECK(dataset_load(ds, "test/fixtures/sst2_test_200.tsv", '\t', "text", "label",
						   &err) == NN_OK, "data: %s", err.msg);
	if (*ds != NULL)
		return true;
	backbone_close(*bb);
	*bb = NULL;
	return false;
}

/* Sentence vectors of the first n texts, one run, in the precision asked for. */
static void
embed_all(const Backbone *bb, BackboneRun *run, const Dataset *ds, int n, float *out)
{
	NnError		err;

	for (int i = 0; i < n; i++)
		CHECK(backbone_embed_texts(bb, run, (const char *const *) ds->texts + i,
								   ds->text_lens + i, 1, out + (size_t) i * bb->d_out,
								   &err) == NN_OK, "embed: %s", err.msg);
}

static void
test_use_lite_in_bf16_stays_close_to_float(void)
{
	Backbone   *bb = NULL;
	BackboneRun *run;
	Dataset    *ds = NULL;
	float	   *f32,
			   *b16,
			   *again;
	double		worst = 1;
	int			n;

	if (!open_model_and_texts(&bb, &ds))
		return;
	n = ds->n_rows;
	run = bb->ops->run_new(bb, 1, bb->max_tokens);
	f32 = malloc(sizeof(float) * n * bb->d_out);
	b16 = malloc(sizeof(float) * n * bb->d_out);
	again = malloc(sizeof(float) * n * bb->d_out);
	embed_all(bb, run, ds, n, f32);
	if (!bb->ops->run_use_bf16(run, true))
		printf("# skip: this CPU runs neither AMX nor AVX512-BF16\n");
	else
	{
		embed_all(bb, run, ds, n, b16);
		for (int i = 0; i < n; i++)
		{
			double		dot = 0;

			for (int j = 0; j < bb->d_out; j++)
				dot += (double) f32[(size_t) i * bb->d_out + j] * b16[(size_t) i * bb->d_out + j];
			worst = fmin(worst, dot);	/* both are unit vectors */
		}
		printf("# worst cosine of bfloat16 to float over %d texts: %.6f\n", n, worst);
		CHECK(worst >= 0.9995, "worst cosine %.6f", worst);
	}
	CHECK(!bb->ops->run_use_bf16(run, false), "switching back to float");
	embed_all(bb, run, ds, n, again);
	CHECK(memcmp(again, f32, sizeof(float) * n * bb->d_out) == 0, "float again is float");
	free(f32);
	free(b16);
	free(again);
	bb->ops->run_free(run);
	backbone_close(bb);
	dataset_free(ds);
}

/* dx of one forward and backward of the batch, in the run's precision. */
static void
input_gradient(const Backbone *bb, BackboneRun *run, const float *x, const uint8_t *mask,
			   int B, int T, const float *dout, float *dx)
{
	float	   *h = malloc(sizeof(float) * B * bb->d_out);
	NnError		err;

	CHECK(bb->ops->forward(bb, run, x, mask, B, T, h, &err) == NN_OK, "forward: %s", err.msg);
	CHECK(bb->ops->backward(bb, run, dout, dx, &err) == NN_OK, "backward: %s", err.msg);
	free(h);
}

static void
test_use_lite_backward_in_bf16_stays_close_to_float(void)
{
	enum
	{
		B = 8, T = 24
	};
	Backbone   *bb = NULL;
	BackboneRun *run;
	Dataset    *ds = NULL;
	int32_t		ids[T];
	float	   *x,
			   *dout,
			   *dx32,
			   *dx16;
	uint8_t		mask[B * T];
	double		dot = 0,
				n32 = 0,
				n16 = 0;
	size_t		n;

	if (!open_model_and_texts(&bb, &ds))
		return;
	n = (size_t) B * T * bb->d_embed;
	x = calloc(n, sizeof(float));
	dx32 = malloc(sizeof(float) * n);
	dx16 = malloc(sizeof(float) * n);
	dout = unit_random_floats(&rng, (size_t) B * bb->d_out);
	memset(mask, 0, sizeof(mask));
	for (int b = 0; b < B; b++)
	{
		int			k = bb->ops->tokenize(bb, ds->texts[b], ds->text_lens[b], ids, T);

		bb->ops->embed_tokens(bb, ids, k, x + (size_t) b * T * bb->d_embed, mask + b * T);
	}
	run = bb->ops->run_new(bb, B, T);
	input_gradient(bb, run, x, mask, B, T, dout, dx32);
	if (!bb->ops->run_use_bf16(run, true))
		printf("# skip: this CPU runs neither AMX nor AVX512-BF16\n");
	else
	{
		input_gradient(bb, run, x, mask, B, T, dout, dx16);
		for (size_t i = 0; i < n; i++)
		{
			dot += (double) dx32[i] * dx16[i];
			n32 += (double) dx32[i] * dx32[i];
			n16 += (double) dx16[i] * dx16[i];
		}
		printf("# cosine of the bfloat16 input-gradient to float's: %.6f\n",
			   dot / sqrt(n32 * n16));
		CHECK(n32 > 0 && dot / sqrt(n32 * n16) >= 0.99, "cosine %.6f", dot / sqrt(n32 * n16));
	}
	free(x);
	free(dout);
	free(dx32);
	free(dx16);
	bb->ops->run_free(run);
	backbone_close(bb);
	dataset_free(ds);
}

int
main(void)
{
	rng_seed(&rng, 11);
	RUN_TEST(test_rounding_is_to_nearest_even);
	RUN_TEST(test_matches_the_rounded_product);
	RUN_TEST(test_backward_matches_the_rounded_product);
	RUN_TEST(test_linear_product_matches_the_rounded_product);
	RUN_TEST(test_packed_weights_are_kept_by_address);
	RUN_TEST(test_packed_weights_shared_through_a_file);
	RUN_TEST(test_use_lite_in_bf16_stays_close_to_float);
	RUN_TEST(test_use_lite_backward_in_bf16_stays_close_to_float);
	return unit_finish();
}
