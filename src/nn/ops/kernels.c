/*
 * kernels.c: forward and input-backward kernels (contracts in kernels.h).
 *
 * GEMMs go to OpenBLAS (nn_sgemm); everything else is a simple loop over rows in
 * float, summing in the order TensorFlow's reference kernels do (mean, then
 * variance of the centred values), so that results agree with the TF.js
 * runtime to float rounding.  The backwards' row reductions (layernorm,
 * softmax, l2-normalize) are short dot products kept in float too: they are
 * a few percent of the work next to the GEMMs, and their rounding is far
 * below what test_use_lite_grad accepts against float64 PyTorch.
 */
#include "ops/kernels.h"

#include "ops/blas.h"
#include <math.h>
#include <string.h>

#include "base/parallel.h"
#include "ops/gemm_bf16.h"
#include "ops/gemm_packed.h"
#include "ops/gemm_rows.h"

/*
 * Row-wise kernels split their rows over the helper pool (parallel.h) when
 * dept.threads > 1 and a call has at least this many floats; below, a
 * hand-off costs more than it saves.  Every row is computed by one thread
 * with the same arithmetic, so results do not depend on the thread count.
 */
#define PARALLEL_MIN_FLOATS 65536

static int
parts_for(double floats)
{
	return floats < PARALLEL_MIN_FLOATS ? 1 : nn_parallel_threads();
}

/*
 * Set N rows of out (ld apart) to bias and return 1, the beta under which
 * the sgemm that follows adds the product to them; 0 for a NULL bias.
 * OpenBLAS otherwise zeroes C first (beta 0) and a second pass adds the
 * bias: two passes over an output that is 25 MB for an FFN of a batch.
 */
static float
bias_rows(float *out, const float *bias, int N, int OC, int ld)
{
	if (bias == NULL)
		return 0.0f;
	for (int i = 0; i < N; i++)
		memcpy(out + (size_t) i * ld, bias, sizeof(float) * (size_t) OC);
	return 1.0f;
}

void
matmul_forward(float *out, const float *inp, const float *weight,
			   const float *bias, int N, int C, int OC)
{
	if (N <= 0)
		return;
	if (gemm_rows_usable(N, C, OC))
	{
		/* a few rows: no packing of the weight (gemm_rows.h) */
		gemm_rows(out, inp, weight, bias, N, C, OC);
		return;
	}
	nn_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, OC, C,
				1.0f, inp, C, weight, OC, bias_rows(out, bias, N, OC, OC), out, OC);
}

void
matmul_forward_bf16(float *out, const float *inp, const float *weight,
					const float *bias, int N, int C, int OC)
{
	const Bf16Weight *packed;

	if (N > 0 && gemm_bf16_usable(C, OC) && (packed = gemm_bf16_weight(weight, C, OC)) != NULL &&
		gemm_bf16(out, inp, packed, bias, N, false))
		return;
	matmul_forward(out, inp, weight, bias, N, C, OC);	/* no bfloat16 engine, or out of memory */
}

void
matmul_backward_bf16(float *dinp, const float *dout, const float *weight, int N, int C, int OC)
{
	const Bf16Weight *packed;

	if (N > 0 && gemm_bf16_usable(OC, C) &&
		(packed = gemm_bf16_weight_transposed(weight, C, OC)) != NULL &&
		gemm_bf16(dinp, dout, packed, NULL, N, true))
		return;
	matmul_backward(dinp, dout, weight, N, C, OC);
}

void
matmul_backward(float *dinp, const float *dout, const float *weight, int N, int C, int OC)
{
	if (N <= 0)
		return;
	/* weight is (C, OC) row-major, so weight^T is the transposed operand */
	nn_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, C, OC,
				1.0f, dout, OC, weight, OC, 1.0f, dinp, C);
}

void
residual_forward(float *out, const float *a, const float *b, size_t N)
{
	for (size_t i = 0; i < N; i++)
		out[i] = a[i] + b[i];
}

void
residual_backward(float *da, float *db, const float *dout, size_t N)
{
	for (size_t i = 0; i < N; i++)
	{
		da[i] += dout[i];
		db[i] += dout[i];
	}
}

/* One layer norm call, shared by its parts (parallel.h). */
typedef struct LayernormJob
{
	float	   *out,
			   *dinp,
			   *mean,
			   *rstd;
	const float *inp,
			   *dout,
			   *weight,
			   *bias,
			   *mean_in,
			   *rstd_in;
	int			C;
	float		eps;
} LayernormJob;

static void
layernorm_forward_rows(void *ctx, int begin, int end)
{
	const LayernormJob *j = ctx;
	int			C = j->C;

	for (int i = begin; i < end; i++)
	{
		const float *x = j->inp + (size_t) i * C;
		float	   *o = j->out + (size_t) i * C;
		float		m = 0.0f,
					v = 0.0f,
					s;

		for (int k = 0; k < C; k++)
			m += x[k];
		m /= (float) C;
		for (int k = 0; k < C; k++)
		{
			float		d = x[k] - m;

			v += d * d;
		}
		v /= (float) C;
		s = 1.0f / sqrtf(v + j->eps);
		/* TF: (weight * rstd) * (x - mean) + bias */
		for (int k = 0; k < C; k++)
			o[k] = (j->weight[k] * s) * (x[k] - m) + j->bias[k];
		j->mean[i] = m;
		j->rstd[i] = s;
	}
}

void
layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
				  const float *weight, const float *bias, int N, int C, float eps)
{
	LayernormJob job = {.out = out, .mean = mean, .rstd = rstd, .inp = inp, .weight = weight,
	.bias = bias, .C = C, .eps = eps};

	nn_parallel_for(layernorm_forward_rows, &job, N, parts_for((double) N * C));
}

static void
layernorm_backward_rows(void *ctx, int begin, int end)
{
	const LayernormJob *j = ctx;
	int			C = j->C;

	for (int i = begin; i < end; i++)
	{
		const float *x = j->inp + (size_t) i * C;
		const float *dy = j->dout + (size_t) i * C;
		float	   *dx = j->dinp + (size_t) i * C;
		float		m = j->mean_in[i],
					s = j->rstd_in[i],
					g_mean = 0.0f,
					gx_mean = 0.0f;

		/* the two row means of the standard formula (llm.c layernorm_backward) */
		for (int k = 0; k < C; k++)
		{
			float		g = j->weight[k] * dy[k];

			g_mean += g;
			gx_mean += g * ((x[k] - m) * s);
		}
		g_mean /= (float) C;
		gx_mean /= (float) C;
		for (int k = 0; k < C; k++)
		{
			float		xhat = (x[k] - m) * s;

			dx[k] += s * (j->weight[k] * dy[k] - g_mean - xhat * gx_mean);
		}
	}
}

void
layernorm_backward(float *dinp, const float *dout, const float *inp,
				   const float *weight, const float *mean, const float *rstd, int N, int C)
{
	LayernormJob job = {.dinp = dinp, .inp = inp, .dout = dout, .weight = weight,
	.mean_in = mean, .rstd_in = rstd, .C = C};

	nn_parallel_for(layernorm_backward_rows, &job, N, parts_for((double) N * C));
}

size_t
attention_cache_size(const int *offsets, int B, int NH)
{
	size_t		n = 0;

	for (int b = 0; b < B; b++)
	{
		size_t		len = (size_t) (offsets[b + 1] - offsets[b]);

		n += (size_t) NH * len * len;
	}
	return n;
}

void
attention_forward(float *out, float *att, const float *qkv,
				  const int *offsets, int B, int C, int NH, float scale)
{
	attention_tail_forward(out, att, qkv, offsets, B, C, NH, scale, 0);
}

/* One attention call, shared by its parts: unit b * NH + h is head h of sequence b. */
typedef struct AttentionJob
{
	float	   *out,
			   *att;
	const float *qkv;
	const int  *offsets;
	int			C,
				NH,
				skip;
	float		scale;
} AttentionJob;

/* Query rows of sequence b (its last n_b - skip), 0 when none. */
static int
query_rows(const AttentionJob *j, int b)
{
	int			n = j->offsets[b + 1] - j->offsets[b];

	return n > 0 && n - j->skip > 0 ? n - j->skip : 0;
}

/* One head of one sequence: p (nq x n) = softmax(scale q k^T), its rows of out = p v. */
static void
attention_unit(const AttentionJob *j, int b, int h, size_t att_start, size_t out_row, float *kt)
{
	int			C = j->C,
				C3 = 3 * C,
				hs = C / j->NH;
	int			o = j->offsets[b],
				n = j->offsets[b + 1] - o,
				nq = query_rows(j, b);
	const float *k = j->qkv + (size_t) o * C3 + C + (size_t) h * hs;
	const float *v = k + C;
	const float *q = k - C + (size_t) (n - nq) * C3;
	float	   *p = j->att + att_start + (size_t) h * nq * n;
	float	   *dst = j->out + out_row * C + (size_t) h * hs;

	if (nq == n && attention_head_forward(dst, C, p, q, k, v, C3, n, hs, j->scale, kt))
		return;
	nn_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, n, hs,
			 j->scale, q, C3, k, C3, 0.0f, p, n);
	softmax_rows(p, nq, n);
	nn_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hs, n,
			 1.0f, p, n, v, C3, 0.0f, dst, C);
}

/* The units [begin, end), finding where each sequence's probabilities and rows start. */
static void
attention_units(void *ctx, int begin, int end)
{
	const AttentionJob *j = ctx;
	float		kt[ATTENTION_HEAD_MAX_HS * ATTENTION_HEAD_MAX_N];	/* 32 kB */
	size_t		att_start = 0,
				out_row = 0;
	int			b = 0;

	for (int u = begin; u < end; u++)
	{
		for (; b < u / j->NH; b++)
		{
			int			nq = query_rows(j, b);

			att_start += (size_t) j->NH * nq * (j->offsets[b + 1] - j->offsets[b]);
			out_row += (size_t) nq;
		}
		if (query_rows(j, b) > 0)
			attention_unit(j, b, u % j->NH, att_start, out_row, kt);
	}
}

/*
 * The (sequence, head) units split over the helper pool when dept.threads >
 * 1 and the call has at least a million multiply-adds (gemm_rows' hand-off
 * threshold), OpenBLAS then running each small product on its caller's
 * thread.  Each unit is computed by one thread with the same kernels
 * (test_threads.c checks 2 and 3 threads against 1).
 */
void
attention_tail_forward(float *out, float *att, const float *qkv,
					   const int *offsets, int B, int C, int NH, float scale, int skip)
{
	AttentionJob job = {out, att, qkv, offsets, C, NH, skip, scale};
	double		multiply_adds = (double) attention_cache_size(offsets, B, NH) * (C / NH);
	int			parts = B * NH > 1 && multiply_adds >= 1048576.0 ? nn_parallel_threads() : 1;

	if (parts > 1)
	{
		NnError		ignored;

		/* loaded here, not by a unit on a helper thread while another runs a product */
		(void) nn_blas_load(&ignored);
		nn_blas_single_threaded(true);
	}
	nn_parallel_for(attention_units, &job, B * NH, parts);
	if (parts > 1)
		nn_blas_single_threaded(false);
}

void
softmax_rows_backward(float *dp, const float *p, int rows, int n)
{
	for (int i = 0; i < rows; i++)
	{
		float	   *d = dp + (size_t) i * n;
		const float *r = p + (size_t) i * n;
		float		dot = 0.0f;

		for (int j = 0; j < n; j++)
			dot += r[j] * d[j];
		for (int j = 0; j < n; j++)
			d[j] = r[j] * (d[j] - dot);
	}
}

void
attention_backward(float *dqkv, float *scratch, const float *dout,
				   const float *qkv, const float *att, const int *offsets,
				   int B, int C, int NH, float scale)
{
	attention_tail_backward(dqkv, scratch, dout, qkv, att, offsets, B, C, NH, scale, 0);
}

void
attention_head_backward(float *dq, float *dk, float *dv, float *dp, const float *q,
						const float *k, const float *v, const float *p, const float *dy,
						int ld, int ldy, int nq, int n, int hs, float scale)
{
	/* out = p v:  dv += p^T dy,  dp = dy v^T */
	nn_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hs, nq,
			 1.0f, p, n, dy, ldy, 1.0f, dv, ld);
	nn_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, n, hs,
			 1.0f, dy, ldy, v, ld, 0.0f, dp, n);
	/* through the softmax: dp becomes d(logits), logits = scale q k^T */
	softmax_rows_backward(dp, p, nq, n);
	nn_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hs, n,
			 scale, dp, n, k, ld, 1.0f, dq, ld);
	nn_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hs, nq,
			 scale, dp, n, q, ld, 1.0f, dk, ld);
}

void
attention_tail_backward(float *dqkv, float *scratch, const float *dout,
						const float *qkv, const float *att, const int *offsets,
						int B, int C, int NH, float scale, int skip)
{
	int			hs = C / NH;
	int			C3 = 3 * C;
	const float *a = att;
	size_t		first_out = 0;

	for (int b = 0; b < B; b++)
	{
		int			o = offsets[b];
		int			n = offsets[b + 1] - o;
		int			nq = n - skip;

		if (n <= 0 || nq <= 0)
			continue;
		for (int h = 0; h < NH; h++)
		{
			size_t		col = (size_t) o * C3 + (size_t) h * hs;
			size_t		qcol = col + (size_t) (n - nq) * C3;

			attention_head_backward(dqkv + qcol, dqkv + col + C, dqkv + col + 2 * C, scratch,
									qkv + qcol, qkv + col + C, qkv + col + 2 * C,
									a + (size_t) h * nq * n,
									dout + first_out * C + (size_t) h * hs, C3, C, nq, n, hs,
									scale);
		}
		a += (size_t) NH * nq * n;
		first_out += (size_t) nq;
	}
}

void
relu_forward(float *out, const float *inp, size_t N)
{
	/*
	 * No branch: the sign of a ReLU's input is a coin toss, so a branch
	 * mispredicts half the time (relu_backward was 7.7% of a T5-small
	 * training step).  ivdep: element i reads and writes index i only, so
	 * out == inp is safe in vectors, which the compiler cannot prove.
	 */
#pragma GCC ivdep
	for (size_t i = 0; i < N; i++)
	{
		float		x = inp[i];

		out[i] = x > 0.0f ? x : 0.0f;
	}
}

void
relu_backward(float *dinp, const float *dout, const float *out, size_t N)
{
	/* branch-free in vectors, as relu_forward; dout is read unconditionally for that */
#pragma GCC ivdep
	for (size_t i = 0; i < N; i++)
	{
		float		g = dout[i];

		dinp[i] = out[i] > 0.0f ? g : 0.0f;
	}
}

void
tanh_forward(float *out, const float *inp, size_t N)
{
	for (size_t i = 0; i < N; i++)
		out[i] = tanhf(inp[i]);
}

void
tanh_backward(float *dinp, const float *dout, const float *out, size_t N)
{
	for (size_t i = 0; i < N; i++)
		dinp[i] = dout[i] * (1.0f - out[i] * out[i]);
}

void
meanpool_tail_forward(float *out, const float *inp, const int *offsets, int B, int C, int skip)
{
	for (int b = 0; b < B; b++)
	{
		float	   *o = out + (size_t) b * C;
		int			first = offsets[b] + skip,
					n = offsets[b + 1] - first;
		float		div = (float) (n > 1 ? n : 1);

		memset(o, 0, sizeof(float) * (size_t) C);
		for (int t = first; t < offsets[b + 1]; t++)
		{
			const float *x = inp + (size_t) t * C;

			for (int j = 0; j < C; j++)
				o[j] += x[j];
		}
		for (int j = 0; j < C; j++)
			o[j] /= div;
	}
}

void
meanpool_tail_backward(float *dinp, const float *dout, const int *offsets, int B, int C, int skip)
{
	for (int b = 0; b < B; b++)
	{
		const float *g = dout + (size_t) b * C;
		int			first = offsets[b] + skip,
					n = offsets[b + 1] - first;
		float		div = (float) (n > 1 ? n : 1);

		for (int t = first; t < offsets[b + 1]; t++)
		{
			float	   *dx = dinp + (size_t) t * C;

			for (int j = 0; j < C; j++)
				dx[j] += g[j] / div;
		}
	}
}

void
meanpool_forward(float *out, const float *inp, const int *offsets, int B, int C)
{
	meanpool_tail_forward(out, inp, offsets, B, C, 0);
}

void
meanpool_backward(float *dinp, const float *dout, const int *offsets, int B, int C)
{
	meanpool_tail_backward(dinp, dout, offsets, B, C, 0);
}

void
l2norm_forward(float *out, float *inv_norm, const float *inp, int B, int C, float eps)
{
	for (int b = 0; b < B; b++)
	{
		const float *x = inp + (size_t) b * C;
		float	   *o = out + (size_t) b * C;
		float		ss = 0.0f,
					r;

		for (int j = 0; j < C; j++)
			ss += x[j] * x[j];
		r = 1.0f / sqrtf(ss > eps ? ss : eps);
		for (int j = 0; j < C; j++)
			o[j] = x[j] * r;
		inv_norm[b] = r;
	}
}

void
l2norm_backward(float *dinp, const float *dout, const float *inp,
				const float *inv_norm, int B, int C, float eps)
{
	for (int b = 0; b < B; b++)
	{
		const float *x = inp + (size_t) b * C;
		const float *dy = dout + (size_t) b * C;
		float	   *dx = dinp + (size_t) b * C;
		float		r = inv_norm[b],
					ss = 0.0f,
					dot = 0.0f,
					c;

		/* ss exactly as the forward summed it, to take the same branch */
		for (int j = 0; j < C; j++)
		{
			ss += x[j] * x[j];
			dot += x[j] * dy[j];
		}
		c = ss > eps ? r * r * r * dot : 0.0f;
		for (int j = 0; j < C; j++)
			dx[j] += r * dy[j] - c * x[j];
	}
}

void
timing_signal_forward(float *out, const float *inv_timescales, int K, int P)
{
	for (int p = 0; p < P; p++)
	{
		float	   *o = out + (size_t) p * 2 * K;

		for (int k = 0; k < K; k++)
		{
			float		st = (float) p * inv_timescales[k];

			o[k] = sinf(st);
			o[K + k] = cosf(st);
		}
	}
}

void
timing_sum_forward(float *out, const float *x, const float *signal, const int *rows,
				   int N, int T, int C)
{
	for (int i = 0; i < N; i++)
	{
		const float *xi = x + (size_t) rows[i] * C;
		const float *sig = signal + (size_t) (rows[i] % T) * C;
		float	   *o = out + (size_t) i * C;

		/* the graph's order: Layer_0/add(x, AddTimingSignal(x) = x + signal) */
		for (int j = 0; j < C; j++)
			o[j] = xi[j] + (xi[j] + sig[j]);
	}
}

void
timing_sum_backward(float *dx, const float *dout, const int *rows, int N, int T, int C)
{
	for (int i = 0; i < N; i++)
	{
		const float *g = dout + (size_t) i * C;
		float	   *d = dx + (size_t) rows[i] * C;

		for (int j = 0; j < C; j++)
			d[j] += 2.0f * g[j];
	}
}

/* ---- Hugging Face (PyTorch-layout) kernels ---- */

void
linear_forward(float *out, const float *inp, const float *weight, const float *bias,
			   int N, int C, int OC, int ldo)
{
	if (N <= 0)
		return;
	if (N <= GEMM_ROWS_NT_MAX_N && gemm_rows_nt_usable(N, C, OC))
	{
		gemm_rows_nt(out, ldo, inp, weight, bias, N, C, OC);
		return;
	}
	/* weight is (OC, C) row-major: the transposed operand gives inp @ weight^T */
	nn_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C,
				1.0f, inp, C, weight, C, bias_rows(out, bias, N, OC, ldo), out, ldo);
}

void
linear_backward(float *dinp, const float *dout, const float *weight, int N, int C, int OC,
				int ldd)
{
	if (N <= 0)
		return;
	nn_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC,
				1.0f, dout, ldd, weight, C, 1.0f, dinp, C);
}

void
linear_product(bool bf16, float *out, const float *inp, const float *weight, const float *bias,
			   int N, int C, int OC, int ldo)
{
	const Bf16Weight *packed;
	const PackedWeight *panels;

	/* weight (OC, C) is the W^T of a (C, OC) operand: packed transposed */
	if (bf16 && N > 0 && gemm_bf16_usable(C, OC) &&
		(packed = gemm_bf16_weight_transposed(weight, OC, C)) != NULL &&
		gemm_bf16_strided(out, ldo, inp, C, packed, bias, N, false))
		return;
	/* a frozen weight, packed into panels once when the process asked for it */
	if (gemm_packed_usable(N, C, OC) && (panels = gemm_packed_weight(weight, OC, C)) != NULL &&
		gemm_packed(out, ldo, inp, panels, bias, N))
		return;
	linear_forward(out, inp, weight, bias, N, C, OC, ldo);
}

void
linear_product_backward(bool bf16, float *dinp, const float *dout, const float *weight, int N,
						int C, int OC, int ldd)
{
	const Bf16Weight *packed;

	/* dinp += dout (N, OC) @ weight (OC, C): weight is the operand as it lies */
	if (bf16 && N > 0 && gemm_bf16_usable(OC, C) &&
		(packed = gemm_bf16_weight(weight, OC, C)) != NULL &&
		gemm_bf16_strided(dinp, C, dout, ldd, packed, NULL, N, true))
		return;
	linear_backward(dinp, dout, weight, N, C, OC, ldd);
}

void
embedding_rows(float *x, uint8_t *mask, const float *table, int vocab, int unk_id, int H,
			   const int32_t *ids, int n)
{
	for (int i = 0; i < n; i++)
	{
		float	   *row = x + (size_t) i * H;
		int32_t		id = ids[i];

		if (id < 0)
		{
			memset(row, 0, sizeof(float) * H);
			mask[i] = 0;
			continue;
		}
		if (id >= vocab)
			id = unk_id;
		memcpy(row, table + (size_t) id * H, sizeof(float) * H);
		mask[i] = 1;
	}
}

void
embed_sum_forward(float *out, const float *x, const float *pos, const float *type,
				  const int *rows, int N, int T, int C)
{
	for (int i = 0; i < N; i++)
	{
		const float *xi = x + (size_t) rows[i] * C;
		const float *p = pos + (size_t) (rows[i] % T) * C;
		float	   *o = out + (size_t) i * C;

		for (int j = 0; j < C; j++)
			o[j] = (xi[j] + (type ? type[j] : 0.0f)) + p[j];
	}
}

void
embed_sum_backward(float *dx, const float *dout, const int *rows, int N, int C)
{
	for (int i = 0; i < N; i++)
	{
		const float *g = dout + (size_t) i * C;
		float	   *d = dx + (size_t) rows[i] * C;

		for (int j = 0; j < C; j++)
			d[j] += g[j];
	}
}

void
firstrow_forward(float *out, const float *inp, const int *offsets, int B, int C)
{
	for (int b = 0; b < B; b++)
	{
		float	   *o = out + (size_t) b * C;

		if (offsets[b + 1] > offsets[b])
			memcpy(o, inp + (size_t) offsets[b] * C, sizeof(float) * (size_t) C);
		else
			memset(o, 0, sizeof(float) * (size_t) C);
	}
}

void
firstrow_backward(float *dinp, const float *dout, const int *offsets, int B, int C)
{
	for (int b = 0; b < B; b++)
	{
		float	   *d = dinp + (size_t) offsets[b] * C;
		const float *g = dout + (size_t) b * C;

		if (offsets[b + 1] <= offsets[b])
			continue;
		for (int j = 0; j < C; j++)
			d[j] += g[j];
	}
}
