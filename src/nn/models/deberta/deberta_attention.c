/*
 * deberta_attention.c: disentangled self-attention, forward and
 * input-backward (the math in deberta_attention.h).
 */
#include "models/deberta/deberta_attention.h"

#include <math.h>
#include <string.h>

#include "ops/blas.h"
#include "ops/kernels.h"

/* The table rows sequence o..o+n-1's distances reach: lo .. lo + *w - 1. */
static int
rel_window(const DisentangledTables *t, const int *pos, int o, int n, int *w)
{
	int			span = pos[o + n - 1] - pos[o];
	int			lo = t->rel[t->max_dist - span];

	*w = t->rel[t->max_dist + span] - lo + 1;
	return lo;
}

/*
 * The logits of one head of one sequence into p (n x n): scale q k^T, then
 * the c2p and p2c terms gathered from g = q pk^T and hh = k pq^T over the
 * window (scratch: 2 n w floats).
 */
static void
head_logits(float *p, float *scratch, const float *q, const float *k, const int *pos,
			int n, int C, int hs, int h, const DisentangledTables *t, int lo, int w)
{
	int			C3 = 3 * C;
	float	   *g = scratch,
			   *hh = scratch + (size_t) n * w;
	const int32_t *rel = t->rel + t->max_dist;

	nn_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, hs,
			 t->scale, q, C3, k, C3, 0.0f, p, n);
	if (t->pk != NULL)
		nn_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, w, hs,
				 t->scale, q, C3, t->pk + (size_t) lo * C + (size_t) h * hs, C, 0.0f, g, w);
	if (t->pq != NULL)
		nn_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, w, hs,
				 t->scale, k, C3, t->pq + (size_t) lo * C + (size_t) h * hs, C, 0.0f, hh, w);
	for (int i = 0; (t->pk != NULL || t->pq != NULL) && i < n; i++)
	{
		float	   *row = p + (size_t) i * n;

		for (int j = 0; j < n; j++)
		{
			int			r = rel[pos[i] - pos[j]] - lo;
			float		bias = 0.0f;

			if (t->pk != NULL)
				bias += g[(size_t) i * w + r];
			if (t->pq != NULL)
				bias += hh[(size_t) j * w + r];
			row[j] += bias;
		}
	}
}

void
disentangled_attention_forward(float *out, float *att, float *scratch, const float *qkv,
							   const int *pos, const int *offsets, int B, int C, int NH,
							   const DisentangledTables *t)
{
	int			hs = C / NH;
	int			C3 = 3 * C;
	float	   *a = att;

	for (int b = 0; b < B; b++)
	{
		int			o = offsets[b];
		int			n = offsets[b + 1] - o;
		int			w,
					lo;

		if (n <= 0)
			continue;
		lo = rel_window(t, pos, o, n, &w);
		for (int h = 0; h < NH; h++)
		{
			const float *q = qkv + (size_t) o * C3 + (size_t) h * hs;
			const float *v = q + 2 * C;
			float	   *p = a + (size_t) h * n * n;

			head_logits(p, scratch, q, q + C, pos + o, n, C, hs, h, t, lo, w);
			softmax_rows(p, n, n);
			nn_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hs, n,
					 1.0f, p, n, v, C3, 0.0f, out + (size_t) o * C + (size_t) h * hs, C);
		}
		a += (size_t) NH * n * n;
	}
}

/*
 * The position terms' share of the backward for one head: dq += scale dG
 * pk[window], dk += scale dH pq[window], where dG[i, r(i,j)] and dH[j, r(i,j)]
 * collect dl(i, j), the gradient of logit(i, j) (n x n).  scratch: n w floats.
 */
static void
head_position_backward(float *dq, float *dk, float *scratch, const float *dl, const int *pos,
					   int n, int C, int hs, int h, const DisentangledTables *t, int lo, int w)
{
	int			C3 = 3 * C;
	const int32_t *rel = t->rel + t->max_dist;

	for (int term = 0; term < 2; term++)
	{
		const float *table = term == 0 ? t->pk : t->pq;

		if (table == NULL)
			continue;
		memset(scratch, 0, sizeof(float) * (size_t) n * w);
		for (int i = 0; i < n; i++)
			for (int j = 0; j < n; j++)
			{
				int			r = rel[pos[i] - pos[j]] - lo;

				/* c2p reads row i of g, p2c row j of hh */
				scratch[(size_t) (term == 0 ? i : j) * w + r] += dl[(size_t) i * n + j];
			}
		nn_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hs, w,
				 t->scale, scratch, w, table + (size_t) lo * C + (size_t) h * hs, C, 1.0f,
				 term == 0 ? dq : dk, C3);
	}
}

void
disentangled_attention_backward(float *dqkv, float *scratch, const float *dout,
								const float *qkv, const float *att, const int *pos,
								const int *offsets, int B, int C, int NH,
								const DisentangledTables *t)
{
	int			hs = C / NH;
	int			C3 = 3 * C;
	const float *a = att;

	for (int b = 0; b < B; b++)
	{
		int			o = offsets[b];
		int			n = offsets[b + 1] - o;
		int			w,
					lo;

		if (n <= 0)
			continue;
		lo = rel_window(t, pos, o, n, &w);
		for (int h = 0; h < NH; h++)
		{
			size_t		col = (size_t) o * C3 + (size_t) h * hs;
			float	   *dq = dqkv + col;

			/* logits = scale (q k^T + c2p + p2c): the q k^T part, then the positions' */
			attention_head_backward(dq, dq + C, dq + 2 * C, scratch, qkv + col, qkv + col + C,
									qkv + col + 2 * C, a + (size_t) h * n * n,
									dout + (size_t) o * C + (size_t) h * hs, C3, C, n, n, hs,
									t->scale);
			head_position_backward(dq, dq + C, scratch + (size_t) n * n, scratch, pos + o, n, C,
								   hs, h, t, lo, w);
		}
		a += (size_t) NH * n * n;
	}
}

size_t
deberta_attention_scratch(int max_n, int max_window)
{
	size_t		n = (size_t) max_n,
				w = (size_t) max_window;
	size_t		fwd = 2 * n * w,
				bwd = n * n + n * w;

	return fwd > bwd ? fwd : bwd;
}
