/*
 * test_threads.c: the row-wise kernels that split their work over the
 * helper pool when dept.threads > 1 (layer norm forward and backward, GELU
 * forward and backward, attention over (sequence, head) units) give every
 * output bit-identical to one thread's, at 2 and 3 threads, for shapes
 * above and below their hand-off thresholds.  The attention shapes take
 * both paths of a head: the AVX-512 one of short sequences (attention_head.c)
 * and nn_sgemm's (OpenBLAS, then run on the calling thread of each unit).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/parallel.h"
#include "base/rng.h"
#include "ops/blas.h"
#include "ops/kernels.h"
#include "unit.h"

static Rng	rng;

/* Run fill with 1 thread into one, then with 2 and 3 into many; every byte must agree. */
typedef void (*Fill) (float *out, const void *ctx);

static void
check_identical(const char *what, Fill fill, const void *ctx, size_t n)
{
	float	   *one = malloc(sizeof(float) * n),
			   *many = malloc(sizeof(float) * n);

	nn_blas_setup(1);
	memset(one, 0, sizeof(float) * n);
	fill(one, ctx);
	for (int t = 2; t <= 3; t++)
	{
		nn_blas_setup(t);
		memset(many, 0, sizeof(float) * n);
		fill(many, ctx);
		CHECK(memcmp(one, many, sizeof(float) * n) == 0, "%s: %d threads differ from one",
			  what, t);
	}
	nn_blas_setup(1);
	free(one);
	free(many);
}

typedef struct Rows
{
	int			N,
				C;
	const float *x,
			   *dy,
			   *w,
			   *b;
} Rows;

/* out: the normalised rows, then mean and rstd, then the input gradient. */
static void
fill_layernorm(float *out, const void *ctx)
{
	const Rows *r = ctx;
	size_t		NC = (size_t) r->N * r->C;

	layernorm_forward(out, out + NC, out + NC + r->N, r->x, r->w, r->b, r->N, r->C, 1e-12f);
	layernorm_backward(out + NC + 2 * r->N, r->dy, r->x, r->w, out + NC, out + NC + r->N,
					   r->N, r->C);
}

static void
fill_gelu(float *out, const void *ctx)
{
	const Rows *r = ctx;
	size_t		NC = (size_t) r->N * r->C;

	gelu_forward(out, r->x, NC);
	gelu_backward(out + NC, r->dy, r->x, NC);
}

static void
test_layernorm_and_gelu(void)
{
	static const int rows[] = {3, 200, 700};

	for (int i = 0; i < 3; i++)
	{
		int			N = rows[i],
					C = 384;
		size_t		NC = (size_t) N * C;
		float	   *x = unit_random_floats(&rng, NC),
				   *dy = unit_random_floats(&rng, NC),
				   *w = unit_random_floats(&rng, C),
				   *b = unit_random_floats(&rng, C);
		Rows		r = {N, C, x, dy, w, b};
		char		what[64];

		snprintf(what, sizeof(what), "layernorm, %d rows", N);
		check_identical(what, fill_layernorm, &r, NC * 2 + 2 * (size_t) N);
		snprintf(what, sizeof(what), "gelu, %d rows", N);
		check_identical(what, fill_gelu, &r, NC * 2);
		free(x);
		free(dy);
		free(w);
		free(b);
	}
}

typedef struct Attention
{
	const float *qkv;
	const int  *offsets;
	int			B,
				C,
				NH,
				skip;
} Attention;

/* out: the attention output rows, then the probabilities. */
static void
fill_attention(float *out, const void *ctx)
{
	const Attention *a = ctx;
	int			rows = a->offsets[a->B];

	attention_tail_forward(out, out + (size_t) rows * a->C, a->qkv, a->offsets, a->B, a->C,
						   a->NH, 0.125f, a->skip);
}

static void
test_attention(void)
{
	/* sequences of 20 rows (the AVX-512 head), 80 (nn_sgemm), an empty one, skip 0 and 60 */
	static const int lengths[][4] = {{20, 20, 20, 20}, {80, 0, 80, 75}, {80, 70, 90, 64}};
	static const int skips[] = {0, 0, 60};

	for (int s = 0; s < 3; s++)
	{
		int			B = 4,
					C = 768,
					NH = 12,
					offsets[5] = {0};
		float	   *qkv;
		Attention	a;
		char		what[64];

		for (int b = 0; b < B; b++)
			offsets[b + 1] = offsets[b] + lengths[s][b];
		qkv = unit_random_floats(&rng, (size_t) offsets[B] * 3 * C);
		a = (Attention) {qkv, offsets, B, C, NH, skips[s]};
		snprintf(what, sizeof(what), "attention, case %d", s);
		check_identical(what, fill_attention, &a,
						(size_t) offsets[B] * C + attention_cache_size(offsets, B, NH));
		free(qkv);
	}
}

int
main(void)
{
	NnError		err;

	rng_seed(&rng, 20261207);
	if (nn_blas_load(&err) != NN_OK)
		printf("# OpenBLAS did not load (%s): the products run in loops\n", err.msg);
	RUN_TEST(test_layernorm_and_gelu);
	RUN_TEST(test_attention);
	return unit_finish();
}
