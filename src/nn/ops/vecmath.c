/*
 * vecmath.c: the element-wise kernels whose cost is a transcendental per
 * value -- GELU forward and backward, the attention softmax -- written so
 * that the compiler vectorises them (contracts in kernels.h).
 *
 * Why: with libm's erff and expf, one call per value, the GELU of a
 * BERT-base batch (32 texts of 64 tokens: 6.3 million values a layer) took
 * 15% of the forward's CPU time (perf, batch 32, 1 thread), more than the
 * whole attention.  Here exp and erfc are branch-free polynomials in plain
 * C, and each kernel is compiled three times -- AVX-512, AVX2 + FMA and
 * the baseline -- from the same source, picked at run time (AVX-512 only
 * when nn_cpu_avx512_allowed()).  Every step is an explicit fmaf or a
 * plain operation in a fixed order, so the three give the same bits.
 *
 * exp(x): x = n ln2 + r with n = round(x / ln2) and |r| <= ln2 / 2 (ln2 in
 * two parts, Cody and Waite), e^r by its Taylor series to r^7 (truncation
 * below 6e-9 relative), 2^n put into the exponent bits.  x is clamped to
 * [-87, 88] so that 2^n e^r stays a normal float, and below -87 the
 * result is 0 (e^x would be below the smallest normal float, 1.2e-38).
 *
 * Phi(x) = erfc(-x / sqrt 2) / 2 with erfc(z) = t exp(-z^2 + P(t)),
 * t = 1 / (1 + z / 2), for z >= 0 (Numerical Recipes in C, 2nd ed., 6.2,
 * "erfcc": fractional error below 1.2e-7 everywhere), and
 * erfc(-z) = 2 - erfc(z).  So Phi has a small relative error on both
 * sides, unlike 1 + erf(x) for negative x, which loses digits to
 * cancellation.
 */
#include "ops/kernels.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/parallel.h"
#include "ops/blas.h"

#define VEC_INLINE static inline __attribute__((always_inline))

VEC_INLINE float
bits_to_float(uint32_t u)
{
	float		f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

VEC_INLINE uint32_t
float_to_bits(float f)
{
	uint32_t	u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

/* e^x, branch-free (see the top of this file). */
VEC_INLINE float
exp_poly(float x)
{
	const float round_magic = 12582912.0f;	/* 1.5 * 2^23: adding it rounds to an integer */
	uint32_t	tiny = 0u - (uint32_t) (x < -87.0f);	/* all ones when e^x is below 1.6e-38 */
	float		t,
				n,
				r,
				p;

	x = x < -87.0f ? -87.0f : x;
	x = x > 88.0f ? 88.0f : x;
	t = fmaf(x, 1.44269504088896341f, round_magic);
	n = t - round_magic;
	r = fmaf(n, -0.693145751953125f, x);	/* ln2's first 16 bits: exact */
	r = fmaf(n, -1.428606765330187e-06f, r);	/* the rest of ln2 */
	p = fmaf(r, 1.0f / 5040.0f, 1.0f / 720.0f);
	p = fmaf(p, r, 1.0f / 120.0f);
	p = fmaf(p, r, 1.0f / 24.0f);
	p = fmaf(p, r, 1.0f / 6.0f);
	p = fmaf(p, r, 0.5f);
	p = fmaf(p, r, 1.0f);
	p = fmaf(p, r, 1.0f);
	/* n is in [-126, 127]: add it to p's exponent; 0 where x was below -87 */
	return bits_to_float((float_to_bits(p) + ((float_to_bits(t) - float_to_bits(round_magic)) << 23)) &
						 ~tiny);
}

/* erfc(z) for z >= 0 (Numerical Recipes' erfcc). */
VEC_INLINE float
erfc_nonneg(float z)
{
	float		t = 1.0f / fmaf(0.5f, z, 1.0f);
	float		p;

	p = fmaf(t, 0.17087277f, -0.82215223f);
	p = fmaf(p, t, 1.48851587f);
	p = fmaf(p, t, -1.13520398f);
	p = fmaf(p, t, 0.27886807f);
	p = fmaf(p, t, -0.18628806f);
	p = fmaf(p, t, 0.09678418f);
	p = fmaf(p, t, 0.37409196f);
	p = fmaf(p, t, 1.00002368f);
	p = fmaf(p, t, -1.26551223f);
	return t * exp_poly(fmaf(-z, z, p));
}

/* Phi(x), the standard normal CDF. */
VEC_INLINE float
normal_cdf(float x)
{
	float		half_tail = 0.5f * erfc_nonneg(fabsf(x) * (float) M_SQRT1_2);
	uint32_t	negative = 0u - (float_to_bits(x) >> 31);	/* all ones when x < 0 */

	/* x < 0 ? half_tail : 1 - half_tail, as a bit select the compiler vectorises */
	return bits_to_float((float_to_bits(half_tail) & negative) |
						 (float_to_bits(1.0f - half_tail) & ~negative));
}

VEC_INLINE void
gelu_forward_body(float *out, const float *inp, size_t N)
{
	for (size_t i = 0; i < N; i++)
	{
		float		x = inp[i];

		out[i] = x * normal_cdf(x);
	}
}

VEC_INLINE void
gelu_backward_body(float *dinp, const float *dout, const float *inp, size_t N)
{
	/* d/dx x Phi(x) = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi) */
	const float inv_sqrt_2pi = 0.3989422804014327f;

	for (size_t i = 0; i < N; i++)
	{
		float		x = inp[i];
		float		pdf = inv_sqrt_2pi * exp_poly(-0.5f * x * x);

		dinp[i] = dout[i] * fmaf(x, pdf, normal_cdf(x));
	}
}

/* Lanes of the partial sums and maxima of a row: one AVX-512 register. */
#define VEC_LANES 16

/* Largest of r[0..n), n >= 1. */
VEC_INLINE float
row_max(const float *r, int n)
{
	float		lane[VEC_LANES],
				mx;
	int			j = 0;

	for (int l = 0; l < VEC_LANES; l++)
		lane[l] = r[0];
	for (; j + VEC_LANES <= n; j += VEC_LANES)
		for (int l = 0; l < VEC_LANES; l++)
			lane[l] = r[j + l] > lane[l] ? r[j + l] : lane[l];
	mx = lane[0];
	for (int l = 1; l < VEC_LANES; l++)
		mx = lane[l] > mx ? lane[l] : mx;
	for (; j < n; j++)
		mx = r[j] > mx ? r[j] : mx;
	return mx;
}

/* r[j] = exp(r[j] - mx); returns their sum, in 16 interleaved partial sums. */
VEC_INLINE float
row_exp_sum(float *r, int n, float mx)
{
	float		lane[VEC_LANES] = {0},
				sum = 0.0f;
	int			j = 0;

	for (; j + VEC_LANES <= n; j += VEC_LANES)
		for (int l = 0; l < VEC_LANES; l++)
		{
			r[j + l] = exp_poly(r[j + l] - mx);
			lane[l] += r[j + l];
		}
	for (int l = 0; l < VEC_LANES; l++)
		sum += lane[l];
	for (; j < n; j++)
	{
		r[j] = exp_poly(r[j] - mx);
		sum += r[j];
	}
	return sum;
}

VEC_INLINE void
softmax_rows_body(float *p, int rows, int n)
{
	for (int i = 0; i < rows; i++)
	{
		float	   *r = p + (size_t) i * n;
		float		mx = row_max(r, n);
		float		inv = 1.0f / row_exp_sum(r, n, mx);

		for (int j = 0; j < n; j++)
			r[j] *= inv;
	}
}

/*
 * Each kernel three times from its body: for AVX-512, for AVX2 + FMA, and
 * for the baseline (where fmaf is a library call: slow, same result).
 */
#define VEC_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))
#define VEC_TARGET_AVX2 __attribute__((target("avx2,fma")))

VEC_TARGET_AVX512 static void
gelu_forward_avx512(float *out, const float *inp, size_t N)
{
	gelu_forward_body(out, inp, N);
}

VEC_TARGET_AVX2 static void
gelu_forward_avx2(float *out, const float *inp, size_t N)
{
	gelu_forward_body(out, inp, N);
}

static void
gelu_forward_base(float *out, const float *inp, size_t N)
{
	gelu_forward_body(out, inp, N);
}

VEC_TARGET_AVX512 static void
gelu_backward_avx512(float *dinp, const float *dout, const float *inp, size_t N)
{
	gelu_backward_body(dinp, dout, inp, N);
}

VEC_TARGET_AVX2 static void
gelu_backward_avx2(float *dinp, const float *dout, const float *inp, size_t N)
{
	gelu_backward_body(dinp, dout, inp, N);
}

static void
gelu_backward_base(float *dinp, const float *dout, const float *inp, size_t N)
{
	gelu_backward_body(dinp, dout, inp, N);
}

VEC_TARGET_AVX512 static void
softmax_rows_avx512(float *p, int rows, int n)
{
	softmax_rows_body(p, rows, n);
}

VEC_TARGET_AVX2 static void
softmax_rows_avx2(float *p, int rows, int n)
{
	softmax_rows_body(p, rows, n);
}

static void
softmax_rows_base(float *p, int rows, int n)
{
	softmax_rows_body(p, rows, n);
}

typedef enum VecIsa
{
	VEC_BASE,
	VEC_AVX2,
	VEC_AVX512
} VecIsa;

/* The widest variant this CPU runs (AVX-512 only when nn_cpu_avx512_allowed()). */
static VecIsa
vec_isa(void)
{
	static int	isa = -1;

	if (isa < 0)
	{
		__builtin_cpu_init();
		if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
			__builtin_cpu_supports("avx512vl") && nn_cpu_avx512_allowed())
			isa = VEC_AVX512;
		else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
			isa = VEC_AVX2;
		else
			isa = VEC_BASE;
	}
	return (VecIsa) isa;
}

static void
gelu_forward_isa(float *out, const float *inp, size_t N)
{
	switch (vec_isa())
	{
		case VEC_AVX512:
			gelu_forward_avx512(out, inp, N);
			break;
		case VEC_AVX2:
			gelu_forward_avx2(out, inp, N);
			break;
		default:
			gelu_forward_base(out, inp, N);
	}
}

static void
gelu_backward_isa(float *dinp, const float *dout, const float *inp, size_t N)
{
	switch (vec_isa())
	{
		case VEC_AVX512:
			gelu_backward_avx512(dinp, dout, inp, N);
			break;
		case VEC_AVX2:
			gelu_backward_avx2(dinp, dout, inp, N);
			break;
		default:
			gelu_backward_base(dinp, dout, inp, N);
	}
}

/*
 * GELU over chunks of this many values split over the helper pool when
 * dept.threads > 1 and there are at least 4 chunks; each value is computed
 * alone, so the thread count changes nothing in the results.
 */
#define GELU_CHUNK 16384

typedef struct GeluJob
{
	float	   *out;
	const float *dout,
			   *inp;
	size_t		N;
} GeluJob;

static void
gelu_chunks(void *ctx, int begin, int end)
{
	const GeluJob *j = ctx;
	size_t		first = (size_t) begin * GELU_CHUNK,
				last = (size_t) end * GELU_CHUNK < j->N ? (size_t) end * GELU_CHUNK : j->N;

	if (j->dout)
		gelu_backward_isa(j->out + first, j->dout + first, j->inp + first, last - first);
	else
		gelu_forward_isa(j->out + first, j->inp + first, last - first);
}

static void
gelu_split(float *out, const float *dout, const float *inp, size_t N)
{
	GeluJob		job = {out, dout, inp, N};
	size_t		chunks = (N + GELU_CHUNK - 1) / GELU_CHUNK;

	if (chunks < 4 || chunks > INT_MAX)
	{
		if (dout)
			gelu_backward_isa(out, dout, inp, N);
		else
			gelu_forward_isa(out, inp, N);
		return;
	}
	nn_parallel_for(gelu_chunks, &job, (int) chunks, nn_parallel_threads());
}

void
gelu_forward(float *out, const float *inp, size_t N)
{
	gelu_split(out, NULL, inp, N);
}

void
gelu_backward(float *dinp, const float *dout, const float *inp, size_t N)
{
	gelu_split(dinp, dout, inp, N);
}

void
softmax_rows(float *p, int rows, int n)
{
	switch (vec_isa())
	{
		case VEC_AVX512:
			softmax_rows_avx512(p, rows, n);
			break;
		case VEC_AVX2:
			softmax_rows_avx2(p, rows, n);
			break;
		default:
			softmax_rows_base(p, rows, n);
	}
}
