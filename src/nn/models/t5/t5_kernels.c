/*
 * t5_kernels.c: RMS norm, relative position buckets, T5 attention, FFN
 * activations and cross-entropy (contracts in t5_kernels.h).
 *
 * GEMMs go to OpenBLAS (nn_sgemm); the rest are float loops.  Row reductions that
 * decide accuracy (the RMS norm's mean square, softmax sums, the
 * log-sum-exp) are accumulated in float like PyTorch's float32 kernels,
 * whose results these match to float rounding.
 */
#include "models/t5/t5_kernels.h"

#include "ops/blas.h"
#include <math.h>
#include <string.h>

/* ---- RMS norm ---------------------------------------------------------------- */

void
rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight,
				int N, int C, float eps)
{
	for (int i = 0; i < N; i++)
	{
		const float *x = inp + (size_t) i * C;
		float	   *o = out + (size_t) i * C;
		float		ss = 0.0f,
					r;

		for (int j = 0; j < C; j++)
			ss += x[j] * x[j];
		/* HF: hidden * rsqrt(mean(hidden^2) + eps), then weight * hidden */
		r = 1.0f / sqrtf(ss / (float) C + eps);
		for (int j = 0; j < C; j++)
			o[j] = weight[j] * (x[j] * r);
		rstd[i] = r;
	}
}

void
rmsnorm_backward(float *dinp, const float *dout, const float *inp, const float *weight,
				 const float *rstd, int N, int C)
{
	for (int i = 0; i < N; i++)
	{
		const float *x = inp + (size_t) i * C;
		const float *dy = dout + (size_t) i * C;
		float	   *dx = dinp + (size_t) i * C;
		float		r = rstd[i],
					dot = 0.0f,
					c;

		for (int j = 0; j < C; j++)
			dot += weight[j] * dy[j] * x[j];
		/* y = w x r, r = (mean(x^2) + eps)^-1/2: dr/dx_j = -r^3 x_j / C */
		c = r * r * r * dot / (float) C;
		for (int j = 0; j < C; j++)
			dx[j] += r * weight[j] * dy[j] - c * x[j];
	}
}

/* ---- relative position buckets -------------------------------------------------- */

int
t5_relative_bucket(int rel, bool bidirectional, int num_buckets, int max_distance)
{
	int			bucket = 0;
	int			max_exact;
	int			n;

	if (bidirectional)
	{
		num_buckets /= 2;
		if (rel > 0)
			bucket += num_buckets;
		n = rel < 0 ? -rel : rel;
	}
	else
		n = rel < 0 ? -rel : 0;	/* -min(rel, 0): keys after the query -> 0 */
	max_exact = num_buckets / 2;
	if (n < max_exact)
		return bucket + n;

	/*
	 * max_exact + log(n / max_exact) / log(max_distance / max_exact) *
	 * (num_buckets - max_exact), truncated: float32 tensor arithmetic with
	 * the Python double log(...) taken as a float operand, as in PyTorch.
	 */
	{
		float		ratio = (float) n / (float) max_exact;
		float		denom = (float) log((double) max_distance / (double) max_exact);
		float		v = logf(ratio) / denom * (float) (num_buckets - max_exact);
		long		large = (long) max_exact + (long) v;

		if (large > num_buckets - 1)
			large = num_buckets - 1;
		return bucket + (int) large;
	}
}

void
t5_position_bias(float *pos_bias, const float *rel_bias, int NH, int R, bool bidirectional,
				 int num_buckets, int max_distance)
{
	size_t		W = 2 * (size_t) R + 1;

	for (int r = -R; r <= R; r++)
	{
		int			b = t5_relative_bucket(r, bidirectional, num_buckets, max_distance);

		for (int h = 0; h < NH; h++)
			pos_bias[(size_t) h * W + (size_t) (r + R)] = rel_bias[(size_t) b * NH + h];
	}
}

/* ---- attention ---------------------------------------------------------------------- */

/* The kv sequence read by query sequence b. */
static inline int
kv_of(const T5AttnShape *sh, int b)
{
	return sh->kv_seq ? sh->kv_seq[b] : b;
}

size_t
t5_attention_cache_size(const T5AttnShape *sh)
{
	size_t		n = 0;

	for (int b = 0; b < sh->B; b++)
	{
		int			s = kv_of(sh, b);

		n += (size_t) sh->NH * (size_t) (sh->q_off[b + 1] - sh->q_off[b]) *
			(size_t) (sh->kv_off[s + 1] - sh->kv_off[s]);
	}
	return n;
}

/* In-place softmax of r[0..n) (n >= 1), entries of -INFINITY giving 0. */
static inline void
softmax_row(float *r, int n)
{
	float		mx = r[0],
				sum = 0.0f,
				inv;

	for (int j = 1; j < n; j++)
		mx = r[j] > mx ? r[j] : mx;
	for (int j = 0; j < n; j++)
	{
		r[j] = expf(r[j] - mx);
		sum += r[j];
	}
	inv = 1.0f / sum;
	for (int j = 0; j < n; j++)
		r[j] *= inv;
}

/*
 * Add head h's position bias to the scores p (nq x nk), mask, softmax.
 * When the key positions are consecutive (always, but for an encoder mask
 * with holes) a row's bias is one contiguous slice of the table and the
 * causal mask a prefix length, so the loops vectorize.
 */
static void
bias_mask_softmax(float *p, int nq, int nk, const int *qpos, const int *kpos, int h,
				  const T5AttnShape *sh)
{
	const float *pb = sh->pos_bias ? sh->pos_bias + (size_t) h * (2 * (size_t) sh->R + 1) : NULL;
	bool		contiguous = true;

	for (int j = 1; j < nk && contiguous; j++)
		contiguous = kpos[j] == kpos[0] + j;
	for (int i = 0; i < nq; i++)
	{
		float	   *r = p + (size_t) i * nk;
		int			qp = qpos[i];
		int			n = nk;

		if (contiguous)
		{
			if (sh->causal)
			{
				n = qp - kpos[0] + 1;
				n = n < 0 ? 0 : (n > nk ? nk : n);
			}
			if (pb != NULL && n > 0)
			{
				const float *b = pb + (kpos[0] - qp + sh->R);

				for (int j = 0; j < n; j++)
					r[j] += b[j];
			}
		}
		else
		{
			bool		any = false;

			for (int j = 0; j < nk; j++)
			{
				if (sh->causal && kpos[j] > qp)
					r[j] = -INFINITY;
				else
				{
					if (pb != NULL)
						r[j] += pb[kpos[j] - qp + sh->R];
					any = true;
				}
			}
			n = any ? nk : 0;
		}
		if (n == 0)
		{
			/* nothing to attend to: an all-zero row (never happens causally) */
			memset(r, 0, sizeof(float) * (size_t) nk);
			continue;
		}
		softmax_row(r, n);
		if (n < nk)
			memset(r + n, 0, sizeof(float) * (size_t) (nk - n));
	}
}

void
t5_attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
					 const T5AttnShape *sh)
{
	int			hs = sh->hs,
				C = sh->NH * sh->hs;
	float	   *a = att;

	for (int b = 0; b < sh->B; b++)
	{
		int			qo = sh->q_off[b],
					nq = sh->q_off[b + 1] - qo;
		int			s = kv_of(sh, b);
		int			ko = sh->kv_off[s],
					nk = sh->kv_off[s + 1] - ko;

		if (nq <= 0)
			continue;
		for (int h = 0; h < sh->NH; h++)
		{
			float	   *p = a + (size_t) h * nq * nk;
			float	   *o = out + (size_t) qo * C + (size_t) h * hs;

			if (nk <= 0)
			{
				for (int i = 0; i < nq; i++)
					memset(o + (size_t) i * C, 0, sizeof(float) * (size_t) hs);
				continue;
			}
			/* p (nq x nk) = q k^T, unscaled (T5 folds the scale into its init) */
			nn_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hs,
						1.0f, q + (size_t) qo * sh->ldq + (size_t) h * hs, sh->ldq,
						k + (size_t) ko * sh->ldk + (size_t) h * hs, sh->ldk, 0.0f, p, nk);
			bias_mask_softmax(p, nq, nk, sh->q_pos + qo, sh->kv_pos + ko, h, sh);
			nn_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hs, nk,
						1.0f, p, nk, v + (size_t) ko * sh->ldv + (size_t) h * hs, sh->ldv,
						0.0f, o, C);
		}
		a += (size_t) sh->NH * nq * nk;
	}
}

void
t5_attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout,
					  const float *q, const float *k, const float *v, const float *att,
					  const T5AttnShape *sh)
{
	int			hs = sh->hs,
				C = sh->NH * sh->hs;
	const float *a = att;

	for (int b = 0; b < sh->B; b++)
	{
		int			qo = sh->q_off[b],
					nq = sh->q_off[b + 1] - qo;
		int			s = kv_of(sh, b);
		int			ko = sh->kv_off[s],
					nk = sh->kv_off[s + 1] - ko;

		if (nq <= 0)
			continue;
		if (nk <= 0)
			continue;			/* the output was a constant 0 */
		for (int h = 0; h < sh->NH; h++)
		{
			size_t		qc = (size_t) qo * sh->ldq + (size_t) h * hs;
			size_t		kc = (size_t) ko * sh->ldk + (size_t) h * hs;
			size_t		vc = (size_t) ko * sh->ldv + (size_t) h * hs;
			const float *p = a + (size_t) h * nq * nk;
			const float *dy = dout + (size_t) qo * C + (size_t) h * hs;
			float	   *dp = scratch;

			/* out = p v:  dv += p^T dy,  dp = dy v^T */
			nn_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hs, nq,
						1.0f, p, nk, dy, C, 1.0f, dv + vc, sh->ldv);
			nn_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hs,
						1.0f, dy, C, v + vc, sh->ldv, 0.0f, dp, nk);
			/* softmax: ds = p (dp - <p, dp>); masked entries have p = 0 */
			for (int i = 0; i < nq; i++)
			{
				float	   *d = dp + (size_t) i * nk;
				const float *r = p + (size_t) i * nk;
				float		dot = 0.0f;

				for (int j = 0; j < nk; j++)
					dot += r[j] * d[j];
				for (int j = 0; j < nk; j++)
					d[j] = r[j] * (d[j] - dot);
			}
			/* s = q k^T: dq += ds k, dk += ds^T q */
			nn_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hs, nk,
						1.0f, dp, nk, k + kc, sh->ldk, 1.0f, dq + qc, sh->ldq);
			nn_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hs, nq,
						1.0f, dp, nk, q + qc, sh->ldq, 1.0f, dk + kc, sh->ldk);
		}
		a += (size_t) sh->NH * nq * nk;
	}
}

/* ---- activations ----------------------------------------------------------------------- */

#define GELU_TANH_C 0.7978845608028654f	/* sqrt(2 / pi) */
#define GELU_TANH_A 0.044715f

static inline float
act_value(float x, T5Act act)
{
	switch (act)
	{
		case T5_ACT_RELU:
			return x > 0.0f ? x : 0.0f;
		case T5_ACT_GELU:
			return 0.5f * x * (1.0f + erff(x * (float) M_SQRT1_2));
		case T5_ACT_GELU_TANH:
			/* HF NewGELUActivation */
			return 0.5f * x * (1.0f + tanhf(GELU_TANH_C * (x + GELU_TANH_A * x * x * x)));
		case T5_ACT_SILU:
			return x / (1.0f + expf(-x));
	}
	return x;
}

static inline float
act_grad(float x, T5Act act)
{
	switch (act)
	{
		case T5_ACT_RELU:
			return x > 0.0f ? 1.0f : 0.0f;
		case T5_ACT_GELU:
			return 0.5f * (1.0f + erff(x * (float) M_SQRT1_2)) +
				x * 0.3989422804014327f * expf(-0.5f * x * x);
		case T5_ACT_GELU_TANH:
			{
				float		t = tanhf(GELU_TANH_C * (x + GELU_TANH_A * x * x * x));

				return 0.5f * (1.0f + t) +
					0.5f * x * (1.0f - t * t) * GELU_TANH_C * (1.0f + 3.0f * GELU_TANH_A * x * x);
			}
		case T5_ACT_SILU:
			{
				float		sg = 1.0f / (1.0f + expf(-x));

				return sg * (1.0f + x * (1.0f - sg));
			}
	}
	return 1.0f;
}

void
t5_act_forward(float *out, const float *inp, size_t N, T5Act act)
{
	for (size_t i = 0; i < N; i++)
		out[i] = act_value(inp[i], act);
}

void
t5_act_backward(float *dinp, const float *dout, const float *inp, size_t N, T5Act act)
{
	for (size_t i = 0; i < N; i++)
		dinp[i] = dout[i] * act_grad(inp[i], act);
}

void
gated_act_forward(float *out, const float *gate, const float *lin, size_t N, T5Act act)
{
	for (size_t i = 0; i < N; i++)
		out[i] = act_value(gate[i], act) * lin[i];
}

void
gated_act_backward(float *dgate, float *dlin, const float *dout, const float *gate,
				   const float *lin, size_t N, T5Act act)
{
	for (size_t i = 0; i < N; i++)
	{
		float		g = dout[i];

		dlin[i] = g * act_value(gate[i], act);
		dgate[i] = g * lin[i] * act_grad(gate[i], act);
	}
}

/* ---- cross-entropy ---------------------------------------------------------------------- */

void
crossentropy_forward(float *probs, float *logp, const float *logits, const int32_t *targets,
					 int N, int V)
{
	for (int i = 0; i < N; i++)
	{
		const float *z = logits + (size_t) i * V;
		float	   *p = probs + (size_t) i * V;
		float		mx = z[0],
					sum = 0.0f,
					lse;
		int32_t		t = targets[i];

		for (int j = 1; j < V; j++)
			if (z[j] > mx)
				mx = z[j];
		for (int j = 0; j < V; j++)
			sum += expf(z[j] - mx);
		lse = logf(sum);
		logp[i] = t >= 0 && t < V ? z[t] - mx - lse : 0.0f;
		for (int j = 0; j < V; j++)
			p[j] = expf(z[j] - mx - lse);
	}
}

void
crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, float scale,
					  int N, int V)
{
	for (int i = 0; i < N; i++)
	{
		const float *p = probs + (size_t) i * V;
		float	   *d = dlogits + (size_t) i * V;
		int32_t		t = targets[i];

		if (t < 0 || t >= V)
		{
			memset(d, 0, sizeof(float) * (size_t) V);
			continue;
		}
		for (int j = 0; j < V; j++)
			d[j] = scale * p[j];
		d[t] -= scale;
	}
}
