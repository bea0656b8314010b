/*
 * test_kernels_grad.c: every kernel's input-backward against finite
 * differences of its own float forward.
 *
 * Each check runs a kernel on small random shapes and takes the scalar
 * L(x) = sum_i G_i out_i (G fixed random, summed in double), so that
 * dL/dout = G is fed to the backward.  The reference is a five-point central
 * difference, (8 (L(x+h) - L(x-h)) - (L(x+2h) - L(x-2h))) / 12h with
 * h = 2^-7: its truncation error is O(h^4) ~ 1e-9, and the float forward's
 * rounding (~1e-7 relative on L) divided by h dominates, so we accept
 *     max_i |fd_i - analytic_i| <= 2e-4 * max_i |analytic_i| + 1e-6.
 * Observed errors are printed: 0 for the linear kernels, up to ~4e-5
 * relative for attention and layernorm, the float noise of L / h.  Inputs
 * are multiples of 2^-12 below 8 in magnitude, so x +- h and x +- 2h are
 * exact in float and the steps exactly symmetric.  ReLU inputs stay 2^-5
 * away from the kink.
 *
 * The contract is checked too: backwards accumulate into dinp (it is
 * pre-filled with a pattern that must survive underneath the gradient), the
 * element-wise relu/tanh backwards overwrite and may run in place, inputs
 * that do not influence the output (padding rows, other sequences) get
 * exactly zero.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/kernels.h"
#include "base/rng.h"
#include "unit.h"

#define FD_H (1.0f / 128.0f)
#define FD_RTOL 2e-4
#define FD_ATOL 1e-6

/* A kernel under test: forward of x into out; backward accumulates into dx. */
typedef struct GradCase
{
	const char *name;
	int			nx;				/* inputs */
	int			nout;			/* outputs */
	bool		overwrites;		/* relu/tanh: backward writes dx instead of adding */
	void		(*forward) (const struct GradCase *gc, const float *x, float *out);
	void		(*backward) (const struct GradCase *gc, const float *x, const float *dout,
							 float *dx);
	void	   *ctx;			/* shapes, weights, caches */
} GradCase;

static Rng	rng;

/* Uniform in [-a, a], rounded to a multiple of 2^-12. */
static float
qrand(float a)
{
	double		v = (rng_uniform(&rng) * 2.0 - 1.0) * a;

	return (float) (nearbyint(v * 4096.0) / 4096.0);
}

static void
fill(float *x, size_t n, float a)
{
	for (size_t i = 0; i < n; i++)
		x[i] = qrand(a);
}

static double
loss_at(const GradCase *gc, const float *x, const float *G, float *out)
{
	double		L = 0.0;

	gc->forward(gc, x, out);
	for (int i = 0; i < gc->nout; i++)
		L += (double) G[i] * out[i];
	return L;
}

/*
 * Compare gc's backward with finite differences at x; zero_mask (may be
 * NULL) marks inputs whose gradient must be exactly 0.  Returns the
 * relative error for the summary line.
 */
static double
grad_check(const GradCase *gc, float *x, const uint8_t *zero_mask)
{
	float	   *G = malloc(sizeof(float) * gc->nout);
	float	   *out = malloc(sizeof(float) * gc->nout);
	float	   *dx = malloc(sizeof(float) * gc->nx);
	float	   *pre = malloc(sizeof(float) * gc->nx);
	double		max_an = 0.0,
				max_err = 0.0,
				rel;
	int			worst = -1;

	fill(G, gc->nout, 1.0f);
	/* a pattern under the gradient: backward must add to it (or replace it) */
	fill(pre, gc->nx, 4.0f);
	memcpy(dx, pre, sizeof(float) * gc->nx);
	gc->backward(gc, x, G, dx);
	for (int i = 0; i < gc->nx; i++)
	{
		if (!gc->overwrites)
			dx[i] -= pre[i];	/* off by the sum's rounding, <= 2.4e-7 << FD_ATOL */
		max_an = fmax(max_an, fabs(dx[i]));
	}
	for (int i = 0; i < gc->nx; i++)
	{
		float		x0 = x[i];
		double		l[4],
					fd,
					err;
		static const float k[4] = {1, -1, 2, -2};

		for (int s = 0; s < 4; s++)
		{
			x[i] = x0 + k[s] * FD_H;
			l[s] = loss_at(gc, x, G, out);
		}
		x[i] = x0;
		fd = (8.0 * (l[0] - l[1]) - (l[2] - l[3])) / (12.0 * FD_H);
		err = fabs(fd - dx[i]);
		if (!(err <= max_err))
		{
			max_err = err;
			worst = i;
		}
		if (zero_mask && zero_mask[i])
			CHECK(dx[i] == 0.0f && fd == 0.0, "%s: input %d should not matter: grad %g, fd %g",
				  gc->name, i, dx[i], fd);
	}
	rel = max_err / fmax(max_an, 1e-30);
	CHECK(max_err <= FD_RTOL * max_an + FD_ATOL && max_an > 0.0,
		  "%s: max |fd - analytic| %.3g at input %d, max |analytic| %.3g", gc->name, max_err,
		  worst, max_an);
	printf("# %-28s %4d inputs: max |fd - analytic| %.2e, max |analytic| %.2e (rel %.1e)\n",
		   gc->name, gc->nx, max_err, max_an, rel);
	free(G);
	free(out);
	free(dx);
	free(pre);
	return rel;
}

/* ---- matmul ------------------------------------------------------------- */

typedef struct MatmulCtx
{
	int			N,
				C,
				OC;
	float	   *w,
			   *b;
} MatmulCtx;

static void
matmul_f(const GradCase *gc, const float *x, float *out)
{
	const MatmulCtx *c = gc->ctx;

	matmul_forward(out, x, c->w, c->b, c->N, c->C, c->OC);
}

static void
matmul_b(const GradCase *gc, const float *x, const float *dout, float *dx)
{
	const MatmulCtx *c = gc->ctx;

	matmul_backward(dx, dout, c->w, c->N, c->C, c->OC);
}

static void
test_matmul_grad(void)
{
	MatmulCtx	c = {5, 7, 6, NULL, NULL};
	GradCase	gc = {"matmul (5x7 @ 7x6 + b)", 5 * 7, 5 * 6, false, matmul_f, matmul_b, &c};
	float		x[5 * 7],
				w[7 * 6],
				b[6];

	fill(x, 35, 1.0f);
	fill(w, 42, 1.0f);
	fill(b, 6, 1.0f);
	c.w = w;
	c.b = b;
	grad_check(&gc, x, NULL);
}

/* ---- residual ----------------------------------------------------------- */

static void
residual_f(const GradCase *gc, const float *x, float *out)
{
	residual_forward(out, x, x + gc->nout, (size_t) gc->nout);
}

static void
residual_b(const GradCase *gc, const float *x, const float *dout, float *dx)
{
	residual_backward(dx, dx + gc->nout, dout, (size_t) gc->nout);
}

static void
test_residual_grad(void)
{
	GradCase	gc = {"residual (a + b)", 2 * 11, 11, false, residual_f, residual_b, NULL};
	float		x[22];

	fill(x, 22, 2.0f);
	grad_check(&gc, x, NULL);
}

/* ---- layernorm ---------------------------------------------------------- */

typedef struct LnCtx
{
	int			N,
				C;
	float		eps;
	float	   *w,
			   *b,
			   *mean,
			   *rstd;
} LnCtx;

static void
ln_f(const GradCase *gc, const float *x, float *out)
{
	LnCtx	   *c = gc->ctx;

	layernorm_forward(out, c->mean, c->rstd, x, c->w, c->b, c->N, c->C, c->eps);
}

static void
ln_b(const GradCase *gc, const float *x, const float *dout, float *dx)
{
	LnCtx	   *c = gc->ctx;
	float		out[64];

	/* backward uses the mean/rstd cached by the forward on this x */
	layernorm_forward(out, c->mean, c->rstd, x, c->w, c->b, c->N, c->C, c->eps);
	layernorm_backward(dx, dout, x, c->w, c->mean, c->rstd, c->N, c->C);
}

static void
test_layernorm_grad(void)
{
	float		x[4 * 12],
				w[12],
				b[12],
				mean[4],
				rstd[4];
	LnCtx		c = {4, 12, 1e-6f, w, b, mean, rstd};
	GradCase	gc = {"layernorm (4x12)", 48, 48, false, ln_f, ln_b, &c};

	fill(x, 48, 2.0f);
	fill(w, 12, 1.5f);
	fill(b, 12, 1.0f);
	/* one row far from zero mean, with a smaller spread (std 0.2, still >> h) */
	for (int j = 0; j < 12; j++)
		x[36 + j] = 3.0f + (float) (j % 3) / 4.0f;
	grad_check(&gc, x, NULL);
}

/* ---- attention -------------------------------------------------------- */

typedef struct AttCtx
{
	const int  *offsets;
	int			B,
				C,
				NH,
				N;
	float		scale;
	float	   *att,
			   *scratch;
	/* padded variant: T positions per sequence, mask (B, T) */
	int			T;
	const uint8_t *mask;
	int		   *rows;
	float	   *packed,
			   *packed_out,
			   *packed_g;
} AttCtx;

static void
att_f(const GradCase *gc, const float *x, float *out)
{
	AttCtx	   *c = gc->ctx;

	attention_forward(out, c->att, x, c->offsets, c->B, c->C, c->NH, c->scale);
}

static void
att_b(const GradCase *gc, const float *x, const float *dout, float *dx)
{
	AttCtx	   *c = gc->ctx;
	float	   *out = malloc(sizeof(float) * gc->nout);

	attention_forward(out, c->att, x, c->offsets, c->B, c->C, c->NH, c->scale);
	attention_backward(dx, c->scratch, dout, x, c->att, c->offsets, c->B, c->C, c->NH,
					   c->scale);
	free(out);
}

/* Packed sequences of lengths 3, 0, 5, 1: 2 heads of 4. */
static void
test_attention_grad(void)
{
	static const int offsets[5] = {0, 3, 3, 8, 9};
	float		qkv[9 * 24],
				att[2 * (9 + 25 + 1)],
				scratch[25];
	AttCtx		c = {.offsets = offsets, .B = 4, .C = 8, .NH = 2, .N = 9, .scale = 0.7f,
	.att = att, .scratch = scratch};
	GradCase	gc = {"attention (packed 3,0,5,1)", 9 * 24, 9 * 8, false, att_f, att_b, &c};

	CHECK(attention_cache_size(offsets, 4, 2) == 2 * (9 + 25 + 1), "cache size");
	fill(qkv, 9 * 24, 1.5f);
	grad_check(&gc, qkv, NULL);
}

static void
att_tail_f(const GradCase *gc, const float *x, float *out)
{
	AttCtx	   *c = gc->ctx;

	attention_tail_forward(out, c->att, x, c->offsets, c->B, c->C, c->NH, c->scale, 2);
}

static void
att_tail_b(const GradCase *gc, const float *x, const float *dout, float *dx)
{
	AttCtx	   *c = gc->ctx;
	float	   *out = malloc(sizeof(float) * gc->nout);

	attention_tail_forward(out, c->att, x, c->offsets, c->B, c->C, c->NH, c->scale, 2);
	attention_tail_backward(dx, c->scratch, dout, x, c->att, c->offsets, c->B, c->C, c->NH,
							c->scale, 2);
	free(out);
}

/*
 * The queries of each sequence's rows past its first 2 only (lengths 3, 0,
 * 5, 1: 1 + 3 query rows): against finite differences, and against
 * attention_forward/backward on every row with the other rows' output
 * dropped and their gradient zero.
 */
static void
test_attention_tail_grad(void)
{
	static const int offsets[5] = {0, 3, 3, 8, 9};
	static const int tail_rows[4] = {2, 5, 6, 7};
	float		qkv[9 * 24],
				att[2 * (9 + 25 + 1)],
				scratch[25],
				out[9 * 8],
				tail[4 * 8],
				g[9 * 8],
				dfull[9 * 24],
				dtail[9 * 24];
	AttCtx		c = {.offsets = offsets, .B = 4, .C = 8, .NH = 2, .N = 9, .scale = 0.7f,
	.att = att, .scratch = scratch};
	GradCase	gc = {"attention past 2 rows (packed 3,0,5,1)", 9 * 24, 4 * 8, false, att_tail_f,
	att_tail_b, &c};
	double		worst_out = 0,
				worst_d = 0;

	fill(qkv, 9 * 24, 1.5f);
	grad_check(&gc, qkv, NULL);

	attention_forward(out, att, qkv, offsets, 4, 8, 2, 0.7f);
	memset(g, 0, sizeof(g));
	fill(tail, 4 * 8, 1.0f);	/* d(out) of the query rows */
	for (int i = 0; i < 4; i++)
		memcpy(g + tail_rows[i] * 8, tail + i * 8, sizeof(float) * 8);
	memset(dfull, 0, sizeof(dfull));
	attention_backward(dfull, scratch, g, qkv, att, offsets, 4, 8, 2, 0.7f);
	memcpy(g, tail, sizeof(tail));
	attention_tail_forward(tail, att, qkv, offsets, 4, 8, 2, 0.7f, 2);
	memset(dtail, 0, sizeof(dtail));
	attention_tail_backward(dtail, scratch, g, qkv, att, offsets, 4, 8, 2, 0.7f, 2);
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 8; j++)
			worst_out = fmax(worst_out, fabs(tail[i * 8 + j] - out[tail_rows[i] * 8 + j]));
	for (int i = 0; i < 9 * 24; i++)
		worst_d = fmax(worst_d, fabs(dtail[i] - dfull[i]));
	printf("# tail vs every row: max |out diff| %.3g, max |d(qkv) diff| %.3g\n", worst_out, worst_d);
	CHECK(worst_out <= 1e-6, "tail rows' output differs from attention_forward by %g", worst_out);
	CHECK(worst_d <= 1e-6, "d(qkv) differs from attention_backward by %g", worst_d);
	CHECK(dtail[8 * 24] == 0.0f && dtail[8 * 24 + 23] == 0.0f,
		  "a sequence with no query row gives no gradient");
}

/*
 * Attention over a padded (B, T) batch with a mask, the way a backbone runs
 * it: the valid rows are packed, padding rows get output 0 and, in backward,
 * gradient 0.  The mask has holes (not only a padded tail).
 */
static void
pad_pack(AttCtx *c)
{
	int			n = 0;
	int			offs[8];

	for (int b = 0; b < c->B; b++)
	{
		offs[b] = n;
		for (int t = 0; t < c->T; t++)
			if (c->mask[b * c->T + t])
				c->rows[n++] = b * c->T + t;
	}
	offs[c->B] = n;
	c->N = n;
	memcpy((int *) c->offsets, offs, sizeof(int) * (c->B + 1));
}

static void
att_pad_f(const GradCase *gc, const float *x, float *out)
{
	AttCtx	   *c = gc->ctx;
	int			C3 = 3 * c->C;

	for (int i = 0; i < c->N; i++)
		memcpy(c->packed + (size_t) i * C3, x + (size_t) c->rows[i] * C3, sizeof(float) * C3);
	attention_forward(c->packed_out, c->att, c->packed, c->offsets, c->B, c->C, c->NH, c->scale);
	memset(out, 0, sizeof(float) * gc->nout);
	for (int i = 0; i < c->N; i++)
		memcpy(out + (size_t) c->rows[i] * c->C, c->packed_out + (size_t) i * c->C,
			   sizeof(float) * c->C);
}

static void
att_pad_b(const GradCase *gc, const float *x, const float *dout, float *dx)
{
	AttCtx	   *c = gc->ctx;
	int			C3 = 3 * c->C;
	float	   *out = malloc(sizeof(float) * gc->nout);
	float	   *dpack = calloc((size_t) c->N * C3, sizeof(float));

	att_pad_f(gc, x, out);
	for (int i = 0; i < c->N; i++)
		memcpy(c->packed_g + (size_t) i * c->C, dout + (size_t) c->rows[i] * c->C,
			   sizeof(float) * c->C);
	attention_backward(dpack, c->scratch, c->packed_g, c->packed, c->att, c->offsets, c->B,
					   c->C, c->NH, c->scale);
	for (int i = 0; i < c->N; i++)
		for (int j = 0; j < C3; j++)
			dx[(size_t) c->rows[i] * C3 + j] += dpack[(size_t) i * C3 + j];
	free(out);
	free(dpack);
}

static void
test_masked_attention_grad(void)
{
	enum
	{
		PB = 3, PT = 6, PC = 12, PNH = 3
	};
	static const uint8_t mask[PB * PT] = {
		1, 1, 1, 1, 0, 0,		/* padded tail */
		1, 0, 1, 1, 0, 1,		/* holes */
		1, 1, 1, 1, 1, 1,		/* full */
	};
	int			offsets[PB + 1],
				rows[PB * PT];
	float		qkv[PB * PT * 3 * PC],
				att[PB * PNH * PT * PT],
				scratch[PT * PT],
				packed[PB * PT * 3 * PC],
				packed_out[PB * PT * PC],
				packed_g[PB * PT * PC];
	uint8_t		zero[PB * PT * 3 * PC];
	AttCtx		c = {.offsets = offsets, .B = PB, .C = PC, .NH = PNH, .scale = 0.5f, .att = att,
		.scratch = scratch, .T = PT, .mask = mask, .rows = rows, .packed = packed,
	.packed_out = packed_out, .packed_g = packed_g};
	GradCase	gc = {"attention (padded, masked)", PB * PT * 3 * PC, PB * PT * PC, false,
	att_pad_f, att_pad_b, &c};

	pad_pack(&c);
	fill(qkv, sizeof(qkv) / sizeof(qkv[0]), 1.5f);
	for (int r = 0; r < PB * PT; r++)
		for (int j = 0; j < 3 * PC; j++)
			zero[r * 3 * PC + j] = !mask[r];
	grad_check(&gc, qkv, zero);
}

/* ---- relu, tanh ----------------------------------------------------------- */

static void
relu_f(const GradCase *gc, const float *x, float *out)
{
	relu_forward(out, x, (size_t) gc->nx);
}

static void
relu_b(const GradCase *gc, const float *x, const float *dout, float *dx)
{
	float	   *out = malloc(sizeof(float) * gc->nx);

	relu_forward(out, x, (size_t) gc->nx);
	relu_backward(dx, dout, out, (size_t) gc->nx);
	free(out);
}

static void
tanh_f(const GradCase *gc, const float *x, float *out)
{
	tanh_forward(out, x, (size_t) gc->nx);
}

static void
tanh_b(const GradCase *gc, const float *x, const float *dout, float *dx)
{
	float	   *out = malloc(sizeof(float) * gc->nx);

	tanh_forward(out, x, (size_t) gc->nx);
	tanh_backward(dx, dout, out, (size_t) gc->nx);
	free(out);
}

static void
test_relu_tanh_grad(void)
{
	float		x[40],
				y[40],
				g[40],
				d[40];
	GradCase	r = {"relu", 40, 40, true, relu_f, relu_b, NULL};
	GradCase	t = {"tanh", 40, 40, true, tanh_f, tanh_b, NULL};

	fill(x, 40, 2.0f);
	for (int i = 0; i < 40; i++)
		if (fabsf(x[i]) < 1.0f / 32)
			x[i] = (i % 2 ? 1.0f : -1.0f) / 16;
	grad_check(&r, x, NULL);
	grad_check(&t, x, NULL);

	/* in place: dinp == dout, as use_lite runs them */
	fill(g, 40, 1.0f);
	relu_forward(y, x, 40);
	memcpy(d, g, sizeof(d));
	relu_backward(d, d, y, 40);
	for (int i = 0; i < 40; i++)
		CHECK(d[i] == (x[i] > 0 ? g[i] : 0.0f), "relu in place at %d", i);
	tanh_forward(y, x, 40);
	memcpy(d, g, sizeof(d));
	tanh_backward(d, d, y, 40);
	for (int i = 0; i < 40; i++)
		CHECK(d[i] == g[i] * (1.0f - y[i] * y[i]), "tanh in place at %d", i);
}

/* ---- mean pooling --------------------------------------------------------- */

typedef struct PoolCtx
{
	const int  *offsets;
	int			B,
				C;
} PoolCtx;

static void
pool_f(const GradCase *gc, const float *x, float *out)
{
	const PoolCtx *c = gc->ctx;

	meanpool_forward(out, x, c->offsets, c->B, c->C);
}

static void
pool_b(const GradCase *gc, const float *x, const float *dout, float *dx)
{
	const PoolCtx *c = gc->ctx;

	meanpool_backward(dx, dout, c->offsets, c->B, c->C);
}

static void
test_meanpool_grad(void)
{
	static const int offsets[5] = {0, 4, 4, 5, 8};	/* lengths 4, 0, 1, 3 */
	PoolCtx		c = {offsets, 4, 6};
	GradCase	gc = {"meanpool (4,0,1,3)", 8 * 6, 4 * 6, false, pool_f, pool_b, &c};
	float		x[48];

	fill(x, 48, 2.0f);
	grad_check(&gc, x, NULL);
}

/* ---- l2 normalize ------------------------------------------------------- */

typedef struct L2Ctx
{
	int			B,
				C;
	float		eps;
	float	   *inv;
} L2Ctx;

static void
l2_f(const GradCase *gc, const float *x, float *out)
{
	L2Ctx	   *c = gc->ctx;

	l2norm_forward(out, c->inv, x, c->B, c->C, c->eps);
}

static void
l2_b(const GradCase *gc, const float *x, const float *dout, float *dx)
{
	L2Ctx	   *c = gc->ctx;
	float		out[64];

	l2norm_forward(out, c->inv, x, c->B, c->C, c->eps);
	l2norm_backward(dx, dout, x, c->inv, c->B, c->C, c->eps);
}

static void
test_l2norm_grad(void)
{
	float		x[3 * 10],
				inv[3];
	/* eps = 0.25: row 2 (sum of squares < 0.06 even after the steps) is clamped */
	L2Ctx		c = {3, 10, 0.25f, inv};
	GradCase	gc = {"l2norm (one row clamped)", 30, 30, false, l2_f, l2_b, &c};

	fill(x, 20, 2.0f);
	fill(x + 20, 10, 1.0f / 32);
	grad_check(&gc, x, NULL);
	c.eps = 1e-12f;
	gc.name = "l2norm (eps 1e-12)";
	fill(x + 20, 10, 1.0f);		/* a norm >> h, else the FD step is not small */
	grad_check(&gc, x, NULL);
}

/* ---- timing signal + embedding sum -------------------------------------- */

typedef struct TsCtx
{
	const float *signal;
	const int  *rows;
	int			N,
				T,
				C;
} TsCtx;

static void
ts_f(const GradCase *gc, const float *x, float *out)
{
	const TsCtx *c = gc->ctx;

	timing_sum_forward(out, x, c->signal, c->rows, c->N, c->T, c->C);
}

static void
ts_b(const GradCase *gc, const float *x, const float *dout, float *dx)
{
	const TsCtx *c = gc->ctx;

	timing_sum_backward(dx, dout, c->rows, c->N, c->T, c->C);
}

static void
test_timing_sum_grad(void)
{
	enum
	{
		TB = 2, TT = 5, TC = 8, TK = 4
	};
	/* sequence 0: positions 0-2 valid; sequence 1: 0, 1, 3 (row 1*5+2 is a hole) */
	static const int rows[6] = {0, 1, 2, 5, 6, 8};
	float		inv[TK] = {1.0f, 0.1f, 0.01f, 0.001f},
				signal[TT * TC],
				x[TB * TT * TC];
	uint8_t		zero[TB * TT * TC];
	TsCtx		c = {signal, rows, 6, TT, TC};
	GradCase	gc = {"timing sum (x + (x + S))", TB * TT * TC, 6 * TC, false, ts_f, ts_b, &c};

	timing_signal_forward(signal, inv, TK, TT);
	fill(x, TB * TT * TC, 2.0f);
	for (int r = 0; r < TB * TT; r++)
	{
		bool		packed = false;

		for (int i = 0; i < 6; i++)
			packed |= rows[i] == r;
		for (int j = 0; j < TC; j++)
			zero[r * TC + j] = !packed;
	}
	grad_check(&gc, x, zero);
	/* the forward keeps the graph's rounding: x + (x + s), not 2x + s */
	{
		float		out[6 * TC];

		timing_sum_forward(out, x, signal, rows, 6, TT, TC);
		CHECK(out[3 * TC + 1] == x[5 * TC + 1] + (x[5 * TC + 1] + signal[1]), "row 3 sum");
	}
}

/* ---- a small layer chained: LN -> qkv -> attention -> proj -> residual ---- */

typedef struct ChainCtx
{
	const int  *offsets;
	int			B,
				N,
				C,
				NH;
	float	   *ln_w,
			   *ln_b,
			   *w_qkv,
			   *w_o,
			   *mean,
			   *rstd,
			   *ln,
			   *qkv,
			   *att,
			   *atty,
			   *scratch;
} ChainCtx;

static void
chain_f(const GradCase *gc, const float *x, float *out)
{
	ChainCtx   *c = gc->ctx;

	layernorm_forward(c->ln, c->mean, c->rstd, x, c->ln_w, c->ln_b, c->N, c->C, 1e-6f);
	matmul_forward(c->qkv, c->ln, c->w_qkv, NULL, c->N, c->C, 3 * c->C);
	attention_forward(c->atty, c->att, c->qkv, c->offsets, c->B, c->C, c->NH, 0.5f);
	matmul_forward(out, c->atty, c->w_o, NULL, c->N, c->C, c->C);
	residual_forward(out, out, x, (size_t) c->N * c->C);
}

static void
chain_b(const GradCase *gc, const float *x, const float *dout, float *dx)
{
	ChainCtx   *c = gc->ctx;
	size_t		NC = (size_t) c->N * c->C;
	float	   *out = malloc(sizeof(float) * NC);
	float	   *d_atty = calloc(NC, sizeof(float));
	float	   *d_qkv = calloc(3 * NC, sizeof(float));
	float	   *d_ln = calloc(NC, sizeof(float));
	float	   *d_proj = calloc(NC, sizeof(float));

	chain_f(gc, x, out);
	residual_backward(d_proj, dx, dout, NC);
	matmul_backward(d_atty, d_proj, c->w_o, c->N, c->C, c->C);
	attention_backward(d_qkv, c->scratch, d_atty, c->qkv, c->att, c->offsets, c->B, c->C,
					   c->NH, 0.5f);
	matmul_backward(d_ln, d_qkv, c->w_qkv, c->N, c->C, 3 * c->C);
	layernorm_backward(dx, d_ln, x, c->ln_w, c->mean, c->rstd, c->N, c->C);
	free(out);
	free(d_atty);
	free(d_qkv);
	free(d_ln);
	free(d_proj);
}

static void
test_chain_grad(void)
{
	enum
	{
		KN = 7, KC = 8
	};
	static const int offsets[3] = {0, 4, 7};
	float		x[KN * KC],
				ln_w[KC],
				ln_b[KC],
				w_qkv[KC * 3 * KC],
				w_o[KC * KC],
				mean[KN],
				rstd[KN],
				ln[KN * KC],
				qkv[KN * 3 * KC],
				att[2 * 25],
				atty[KN * KC],
				scratch[16];
	ChainCtx	c = {offsets, 2, KN, KC, 2, ln_w, ln_b, w_qkv, w_o, mean, rstd, ln, qkv, att,
	atty, scratch};
	GradCase	gc = {"pre-norm attention block", KN * KC, KN * KC, false, chain_f, chain_b, &c};

	fill(x, KN * KC, 2.0f);
	fill(ln_w, KC, 1.5f);
	fill(ln_b, KC, 0.5f);
	fill(w_qkv, KC * 3 * KC, 0.5f);
	fill(w_o, KC * KC, 0.5f);
	grad_check(&gc, x, NULL);
}

int
main(void)
{
	rng_seed(&rng, 20240611);
	RUN_TEST(test_matmul_grad);
	RUN_TEST(test_residual_grad);
	RUN_TEST(test_layernorm_grad);
	RUN_TEST(test_attention_grad);
	RUN_TEST(test_attention_tail_grad);
	RUN_TEST(test_masked_attention_grad);
	RUN_TEST(test_relu_tanh_grad);
	RUN_TEST(test_meanpool_grad);
	RUN_TEST(test_l2norm_grad);
	RUN_TEST(test_timing_sum_grad);
	RUN_TEST(test_chain_grad);
	return unit_finish();
}
