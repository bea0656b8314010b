/*
 * modernbert_attention.c: RoPE and (sliding-window) attention over packed
 * rows, forward and input-backward (modernbert_attention.h).
 */
#include "models/modernbert/modernbert_attention.h"

#include <math.h>
#include <string.h>

void
rope_table(float *cos_out, float *sin_out, int P, int hd, double theta)
{
	int			half = hd / 2;

	for (int k = 0; k < half; k++)
	{
		/* inv_freq = 1 / theta ** (arange(0, hd, 2).float() / hd), in float32 */
		float		e = (float) (2 * k) / (float) hd;
		float		inv = 1.0f / powf((float) theta, e);

		for (int t = 0; t < P; t++)
		{
			float		f = inv * (float) t;

			cos_out[(size_t) t * half + k] = cosf(f);
			sin_out[(size_t) t * half + k] = sinf(f);
		}
	}
}

/* Rotate hd values x at position t by the table (conj: the inverse rotation). */
static void
rotate(float *x, int hd, const RopeAttention *ra, int t, int conj)
{
	int			half = hd / 2;
	const float *c = ra->cos + (size_t) t * half,
			   *s = ra->sin + (size_t) t * half;

	for (int k = 0; k < half; k++)
	{
		float		x1 = x[k],
					x2 = x[k + half],
					sk = conj ? -s[k] : s[k];

		x[k] = x1 * c[k] + (-x2) * sk;
		x[k + half] = x2 * c[k] + x1 * sk;
	}
}

static int
in_window(const RopeAttention *ra, int ti, int tj)
{
	int			d = ti > tj ? ti - tj : tj - ti;

	return ra->window < 0 || d <= ra->window;
}

/* One head of one sequence: rows r0..r0+n-1, P (n, n) into att. */
static void
head_forward(float *ctx, float *P, const float *qkv, const int *pos, int r0, int n, int H,
			 int hd, int h, const RopeAttention *ra)
{
	float		scale = 1.0f / sqrtf((float) hd);
	size_t		ld = 3 * (size_t) H;

	for (int i = 0; i < n; i++)
	{
		const float *q = qkv + (size_t) (r0 + i) * ld + (size_t) h * hd;
		float	   *p = P + (size_t) i * n;
		float	   *o = ctx + (size_t) (r0 + i) * H + (size_t) h * hd;
		float		mx = -INFINITY,
					sum = 0.0f;

		for (int j = 0; j < n; j++)
		{
			const float *k = qkv + (size_t) (r0 + j) * ld + H + (size_t) h * hd;
			float		d = 0.0f;

			if (!in_window(ra, pos[r0 + i], pos[r0 + j]))
			{
				p[j] = -INFINITY;
				continue;
			}
			for (int c = 0; c < hd; c++)
				d += q[c] * k[c];
			p[j] = d * scale;
			mx = p[j] > mx ? p[j] : mx;
		}
		for (int j = 0; j < n; j++)
		{
			p[j] = p[j] == -INFINITY ? 0.0f : expf(p[j] - mx);
			sum += p[j];
		}
		memset(o, 0, sizeof(float) * hd);
		for (int j = 0; j < n; j++)
		{
			const float *v = qkv + (size_t) (r0 + j) * ld + 2 * (size_t) H + (size_t) h * hd;

			p[j] /= sum;
			if (p[j] != 0.0f)
				for (int c = 0; c < hd; c++)
					o[c] += p[j] * v[c];
		}
	}
}

void
rope_attention_forward(float *ctx, float *att, float *qkv, const int *pos, const int *offsets,
					   int B, int H, int NH, const RopeAttention *ra)
{
	int			hd = H / NH;
	size_t		ld = 3 * (size_t) H;
	float	   *P = att;

	for (int i = 0; i < offsets[B]; i++)
		for (int h = 0; h < NH; h++)
		{
			rotate(qkv + (size_t) i * ld + (size_t) h * hd, hd, ra, pos[i], 0);
			rotate(qkv + (size_t) i * ld + H + (size_t) h * hd, hd, ra, pos[i], 0);
		}
	for (int b = 0; b < B; b++)
	{
		int			r0 = offsets[b],
					n = offsets[b + 1] - offsets[b];

		for (int h = 0; h < NH; h++)
		{
			head_forward(ctx, P, qkv, pos, r0, n, H, hd, h, ra);
			P += (size_t) n * n;
		}
	}
}

/*
 * One head of one sequence: dV += P^T dO, dP = dO V^T, dS = P (dP -
 * rowsum(P dP)), dQ += scale dS K, dK += scale dS^T Q (rotated q, k).
 */
static void
head_backward(float *dqkv, float *dp, const float *dctx, const float *qkv, const float *P,
			  int r0, int n, int H, int hd, int h)
{
	float		scale = 1.0f / sqrtf((float) hd);
	size_t		ld = 3 * (size_t) H;
	size_t		qo = (size_t) h * hd,
				ko = H + qo,
				vo = 2 * (size_t) H + qo;

	for (int i = 0; i < n; i++)
	{
		const float *p = P + (size_t) i * n;
		const float *go = dctx + (size_t) (r0 + i) * H + qo;
		float		dot = 0.0f;

		for (int j = 0; j < n; j++)
		{
			const float *v = qkv + (size_t) (r0 + j) * ld + vo;
			float	   *dv = dqkv + (size_t) (r0 + j) * ld + vo;
			float		d = 0.0f;

			if (p[j] == 0.0f)
			{
				dp[j] = 0.0f;
				continue;
			}
			for (int c = 0; c < hd; c++)
			{
				d += go[c] * v[c];
				dv[c] += p[j] * go[c];
			}
			dp[j] = d;
			dot += p[j] * d;
		}
		for (int j = 0; j < n; j++)
		{
			float		ds = p[j] * (dp[j] - dot) * scale;
			const float *q = qkv + (size_t) (r0 + i) * ld + qo;
			const float *k = qkv + (size_t) (r0 + j) * ld + ko;
			float	   *dq = dqkv + (size_t) (r0 + i) * ld + qo;
			float	   *dk = dqkv + (size_t) (r0 + j) * ld + ko;

			if (ds == 0.0f)
				continue;
			for (int c = 0; c < hd; c++)
			{
				dq[c] += ds * k[c];
				dk[c] += ds * q[c];
			}
		}
	}
}

void
rope_attention_backward(float *dqkv, float *scratch, const float *dctx, const float *qkv,
						const float *att, const int *pos, const int *offsets, int B, int H,
						int NH, const RopeAttention *ra)
{
	int			hd = H / NH;
	size_t		ld = 3 * (size_t) H;
	const float *P = att;

	memset(dqkv, 0, sizeof(float) * (size_t) offsets[B] * ld);
	for (int b = 0; b < B; b++)
	{
		int			r0 = offsets[b],
					n = offsets[b + 1] - offsets[b];

		for (int h = 0; h < NH; h++)
		{
			head_backward(dqkv, scratch, dctx, qkv, P, r0, n, H, hd, h);
			P += (size_t) n * n;
		}
	}
	/* the rotation is orthogonal: its input-gradient is the inverse rotation */
	for (int i = 0; i < offsets[B]; i++)
		for (int h = 0; h < NH; h++)
		{
			rotate(dqkv + (size_t) i * ld + (size_t) h * hd, hd, ra, pos[i], 1);
			rotate(dqkv + (size_t) i * ld + H + (size_t) h * hd, hd, ra, pos[i], 1);
		}
}
