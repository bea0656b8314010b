/*
 * test_vecmath.c: the vectorised element-wise kernels (ops/vecmath.c) and
 * the short-sequence attention head (ops/attention_head.c) against
 * float64 references computed here.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/blas.h"
#include "ops/kernels.h"
#include "unit.h"

/* GELU and its derivative on a dense grid over [-12, 12] and at the edges. */
static void
test_gelu(void)
{
	enum
	{
		N = 200001
	};
	static float x[N + 4],
				y[N + 4],
				d[N + 4],
				one[N + 4];
	double		err = 0.0,
				derr = 0.0;

	for (int i = 0; i < N; i++)
		x[i] = -12.0f + 24.0f * (float) i / (N - 1);
	x[N] = INFINITY;
	x[N + 1] = -INFINITY;
	x[N + 2] = -100.0f;
	x[N + 3] = 0.0f;
	for (int i = 0; i < N + 4; i++)
		one[i] = 1.0f;
	gelu_forward(y, x, N + 4);
	gelu_backward(d, one, x, N + 4);
	for (int i = 0; i < N; i++)
	{
		double		X = x[i],
					cdf = 0.5 * erfc(-X / sqrt(2.0)),
					pdf = exp(-0.5 * X * X) / sqrt(2.0 * M_PI);

		err = fmax(err, fabs(y[i] - X * cdf));
		derr = fmax(derr, fabs(d[i] - (cdf + X * pdf)));
	}
	printf("# gelu max |error| %.2e, derivative %.2e\n", err, derr);
	/* half an ulp of 12 is 4.8e-7 */
	CHECK(err < 5e-7, "gelu error %.3e", err);
	CHECK(derr < 5e-7, "gelu derivative error %.3e", derr);
	/* x Phi(x) at -inf is -inf * 0, NaN, as 0.5 x (1 + erf(x / sqrt 2)) is */
	CHECK(y[N] == INFINITY && isnan(y[N + 1]) && y[N + 2] == 0.0f && y[N + 3] == 0.0f,
		  "edges: %g %g %g %g", y[N], y[N + 1], y[N + 2], y[N + 3]);
	/* (at +-inf the derivative is inf * 0, NaN, in libm's form too) */
	CHECK(d[N + 2] == 0.0f && d[N + 3] == 0.5f, "edge derivatives: %g %g", d[N + 2], d[N + 3]);
	/* in place, as callers may */
	memcpy(d, x, sizeof(float) * N);
	gelu_forward(d, d, N);
	CHECK(memcmp(d, y, sizeof(float) * N) == 0, "in-place gelu differs");
}

/* Softmax rows of widths around the 16-lane blocks, with large and equal logits. */
static void
test_softmax(void)
{
	Rng			rng;
	double		err = 0.0;

	rng_seed(&rng, 7);
	for (int n = 1; n <= 70; n++)
	{
		float		p[70];
		double		ref[70],
					mx = -INFINITY,
					sum = 0.0;

		for (int j = 0; j < n; j++)
			p[j] = (float) ((rng_uniform(&rng) - 0.5) * (n % 3 == 0 ? 200.0 : 20.0));
		for (int j = 0; j < n; j++)
			mx = fmax(mx, p[j]);
		for (int j = 0; j < n; j++)
			sum += ref[j] = exp(p[j] - mx);
		softmax_rows(p, 1, n);
		for (int j = 0; j < n; j++)
			err = fmax(err, fabs(p[j] - ref[j] / sum));
	}
	printf("# softmax max |error| %.2e\n", err);
	CHECK(err < 1e-6, "softmax error %.3e", err);
}

/* attention_forward on short sequences (the AVX-512 head) against float64 loops. */
static void
test_short_attention(void)
{
	enum
	{
		B = 3, NH = 4, HS = 32, C = NH * HS, MAXN = 22
	};
	static float qkv[B * MAXN * 3 * C],
				out[B * MAXN * C],
				att[B * NH * MAXN * MAXN];
	int			offsets[B + 1] = {0, 1, 1 + 17, 1 + 17 + MAXN};
	float		scale = 1.0f / sqrtf((float) HS);
	double		err = 0.0,
				perr = 0.0;
	Rng			rng;
	const float *a = att;

	rng_seed(&rng, 11);
	for (int i = 0; i < B * MAXN * 3 * C; i++)
		qkv[i] = (float) (rng_uniform(&rng) - 0.5) * 4.0f;
	attention_forward(out, att, qkv, offsets, B, C, NH, scale);
	for (int b = 0; b < B; b++)
	{
		int			o = offsets[b],
					n = offsets[b + 1] - o;

		for (int h = 0; h < NH; h++, a += n * n)
			for (int i = 0; i < n; i++)
			{
				const float *q = qkv + (size_t) (o + i) * 3 * C + h * HS;
				double		s[MAXN],
							mx = -INFINITY,
							sum = 0.0;

				for (int j = 0; j < n; j++)
				{
					const float *k = qkv + (size_t) (o + j) * 3 * C + C + h * HS;

					s[j] = 0.0;
					for (int d = 0; d < HS; d++)
						s[j] += (double) q[d] * k[d];
					s[j] *= scale;
					mx = fmax(mx, s[j]);
				}
				for (int j = 0; j < n; j++)
					sum += s[j] = exp(s[j] - mx);
				for (int j = 0; j < n; j++)
					perr = fmax(perr, fabs(a[i * n + j] - s[j] / sum));
				for (int e = 0; e < HS; e++)
				{
					double		y = 0.0;

					for (int j = 0; j < n; j++)
						y += s[j] / sum * qkv[(size_t) (o + j) * 3 * C + 2 * C + h * HS + e];
					err = fmax(err, fabs(out[(size_t) (o + i) * C + h * HS + e] - y));
				}
			}
	}
	printf("# short attention max |error|: probabilities %.2e, output %.2e\n", perr, err);
	CHECK(perr < 1e-5 && err < 1e-5, "attention errors %.3e %.3e", perr, err);
}

int
main(void)
{
	RUN_TEST(test_gelu);
	RUN_TEST(test_softmax);
	RUN_TEST(test_short_attention);
	return unit_finish();
}
