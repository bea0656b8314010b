/*
 * adapter.c: PT / DePT / EPT / probe adapters and the classification head
 * (equations in adapter.h and docs/design.md section 1).
 */
#include "adapters/adapter.h"

#include "ops/blas.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"

int
adapter_prompt_rows(const AdapterConfig *cfg)
{
	return cfg->method == ADAPTER_PROBE ? 0 : cfg->prompt_len;
}

static const char *const adapter_method_names[] = {"probe", "pt", "dept", "ept"};

const char *
adapter_method_name(AdapterMethod m)
{
	if ((unsigned) m >= sizeof(adapter_method_names) / sizeof(adapter_method_names[0]))
		return "unknown";
	return adapter_method_names[m];
}

int
adapter_method_parse(const char *s, AdapterMethod *m)
{
	for (int i = 0; i < (int) (sizeof(adapter_method_names) / sizeof(adapter_method_names[0])); i++)
		if (strcmp(s, adapter_method_names[i]) == 0)
		{
			*m = (AdapterMethod) i;
			return 0;
		}
	return -1;
}

void
siamese_features(const float *hu, const float *hv, int B, int k, float *feat)
{
	for (int b = 0; b < B; b++)
	{
		const float *u = hu + (size_t) b * k,
				   *v = hv + (size_t) b * k;
		float	   *f = feat + (size_t) b * 4 * k;

		for (int i = 0; i < k; i++)
		{
			f[i] = u[i];
			f[k + i] = v[i];
			f[2 * k + i] = fabsf(u[i] - v[i]);
			f[3 * k + i] = u[i] * v[i];
		}
	}
}

void
siamese_backward(const float *hu, const float *hv, const float *dfeat, int B, int k, float *du,
				 float *dv)
{
	for (int b = 0; b < B; b++)
	{
		const float *u = hu + (size_t) b * k,
				   *v = hv + (size_t) b * k,
				   *g = dfeat + (size_t) b * 4 * k;

		for (int i = 0; i < k; i++)
		{
			float		diff = u[i] - v[i],
						sign = diff > 0 ? 1.0f : diff < 0 ? -1.0f : 0.0f;

			du[(size_t) b * k + i] = g[i] + sign * g[2 * k + i] + v[i] * g[3 * k + i];
			dv[(size_t) b * k + i] = g[k + i] - sign * g[2 * k + i] + u[i] * g[3 * k + i];
		}
	}
}

static bool
has_low_rank(const AdapterConfig *cfg)
{
	return (cfg->method == ADAPTER_DEPT || cfg->method == ADAPTER_EPT) && cfg->rank > 0;
}

static bool
is_ept(const AdapterConfig *cfg)
{
	return cfg->method == ADAPTER_EPT && cfg->subspaces > 0;
}

static bool
has_linear_head(const AdapterConfig *cfg)
{
	return cfg->head != ADAPTER_HEAD_TEXT;
}

size_t
adapter_param_count(const AdapterConfig *cfg)
{
	size_t		d = cfg->d;
	size_t		n = has_linear_head(cfg) ? (size_t) cfg->n_classes * cfg->h_dim + cfg->n_classes : 0;

	n += (size_t) adapter_prompt_rows(cfg) * d;
	if (has_low_rank(cfg))
		n += (size_t) cfg->rank * (cfg->max_len + d);
	if (is_ept(cfg))
		n += (size_t) cfg->subspaces * (2 * d * cfg->subspace_rank + d + 1);
	return n;
}

int
adapter_rank_for_budget(int l, int d, int s, int m, int subspaces, int subspace_rank)
{
	long		budget = (long) (l - m) * d;

	budget -= (long) subspaces * (2L * d * subspace_rank + d + 1);
	long		r;

	if (budget <= 0 || s + d <= 0)
		return 0;
	r = budget / (s + d);
	/* a rank beyond min(s, d) adds parameters but no expressiveness */
	if (r > d)
		r = d;
	if (r > s)
		r = s;
	return (int) r;
}

static NnStatus
param_alloc(AdapterParam *p, size_t n)
{
	p->n = n;
	if (n == 0)
		return NN_OK;
	p->w = calloc(n, sizeof(float));
	p->g = calloc(n, sizeof(float));
	p->m = calloc(n, sizeof(float));
	p->v = calloc(n, sizeof(float));
	return (p->w && p->g && p->m && p->v) ? NN_OK : NN_ERR_NOMEM;
}

static void
param_free(AdapterParam *p)
{
	free(p->w);
	free(p->g);
	free(p->m);
	free(p->v);
	memset(p, 0, sizeof(*p));
}

static void
fill_uniform(float *w, size_t n, float bound, Rng *rng)
{
	for (size_t i = 0; i < n; i++)
		w[i] = (float) ((2.0 * rng_uniform(rng) - 1.0) * bound);
}

static NnStatus
check_config(const AdapterConfig *cfg, int max_batch, NnError *err)
{
	bool		one_output = cfg->regression && cfg->head == ADAPTER_HEAD_LINEAR;

	if (cfg->d <= 0 || cfg->h_dim <= 0 || max_batch <= 0 ||
		(one_output ? cfg->n_classes != 1 : cfg->n_classes < 2))
		return nn_fail(err, NN_ERR_ARG, "adapter needs d, h_dim, max_batch > 0 and at least 2 classes "
					   "(exactly 1 output for a regression on a linear head)");
	if (cfg->method < ADAPTER_PROBE || cfg->method > ADAPTER_EPT)
		return nn_fail(err, NN_ERR_ARG, "unknown adapter method %d", (int) cfg->method);
	if (cfg->head != ADAPTER_HEAD_LINEAR && cfg->head != ADAPTER_HEAD_TEXT)
		return nn_fail(err, NN_ERR_ARG, "unknown adapter head %d", (int) cfg->head);
	if (cfg->method == ADAPTER_PROBE && cfg->head == ADAPTER_HEAD_TEXT)
		return nn_fail(err, NN_ERR_ARG, "a linear probe trains only a linear head: it cannot be text-to-text");
	if (cfg->pair < ADAPTER_PAIR_JOINED || cfg->pair > ADAPTER_PAIR_SIAMESE)
		return nn_fail(err, NN_ERR_ARG, "unknown pair encoding %d", cfg->pair);
	if (cfg->pair != ADAPTER_PAIR_JOINED && cfg->head != ADAPTER_HEAD_LINEAR)
		return nn_fail(err, NN_ERR_ARG, "a text-to-text head reads a pair joined into one text");
	if (cfg->pair == ADAPTER_PAIR_SIAMESE && cfg->h_dim % 4 != 0)
		return nn_fail(err, NN_ERR_ARG, "a siamese head reads 4 vectors: h_dim %d is not a multiple of 4",
					   cfg->h_dim);
	if (cfg->method != ADAPTER_PROBE && cfg->prompt_len < 0)
		return nn_fail(err, NN_ERR_ARG, "prompt length must not be negative");
	if (cfg->method == ADAPTER_PT && cfg->prompt_len <= 0)
		return nn_fail(err, NN_ERR_ARG, "prompt tuning needs a prompt length > 0");
	if (has_low_rank(cfg) && (cfg->max_len <= 0 || cfg->rank > cfg->d))
		return nn_fail(err, NN_ERR_ARG, "rank %d must be in 1..%d with a max length > 0",
					   cfg->rank, cfg->d);
	if (cfg->method == ADAPTER_EPT &&
		(cfg->subspaces <= 0 || cfg->subspace_rank <= 0 || cfg->prompt_len <= 0 || cfg->rank <= 0))
		return nn_fail(err, NN_ERR_ARG, "EPT needs a prompt, a rank, subspaces and a subspace rank > 0");
	if (cfg->method == ADAPTER_EPT && (cfg->subspaces > ADAPTER_MAX_SUBSPACES || cfg->subspace_rank > cfg->d))
		return nn_fail(err, NN_ERR_ARG, "EPT allows at most %d subspaces of rank at most %d",
					   ADAPTER_MAX_SUBSPACES, cfg->d);
	return NN_OK;
}

NnStatus
adapter_new(Adapter **out, const AdapterConfig *cfg, int max_batch, uint64_t seed, NnError *err)
{
	Adapter    *a;
	int			P = adapter_prompt_rows(cfg);
	size_t		d = cfg->d,
				s = has_low_rank(cfg) ? cfg->max_len : 0,
				r = has_low_rank(cfg) ? cfg->rank : 0,
				K = is_ept(cfg) ? cfg->subspaces : 0,
				q = is_ept(cfg) ? cfg->subspace_rank : 0;
	size_t		wide = d > s ? d : s;
	Rng			rng;
	NnStatus	st = NN_OK;

	*out = NULL;
	if (check_config(cfg, max_batch, err) != NN_OK)
		return err ? err->status : NN_ERR_ARG;
	a = calloc(1, sizeof(Adapter));
	if (a == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory allocating adapter");
	a->cfg = *cfg;
	/* text-row pooling means something only for a linear head past prompt rows */
	a->cfg.pool_text = cfg->pool_text && P > 0 && cfg->head == ADAPTER_HEAD_LINEAR;
	a->max_batch = max_batch;
	a->scale = r ? cfg->alpha / sqrtf((float) r) : 0.0f;

	st |= param_alloc(&a->prompt, (size_t) P * d);
	st |= param_alloc(&a->lora_a, s * r);
	st |= param_alloc(&a->lora_b, r * d);
	st |= param_alloc(&a->ept_u, K * d * q);
	st |= param_alloc(&a->ept_v, K * q * d);
	st |= param_alloc(&a->gate_w, K * d);
	st |= param_alloc(&a->gate_b, K);
	if (has_linear_head(cfg))
	{
		st |= param_alloc(&a->head_w, (size_t) cfg->n_classes * cfg->h_dim);
		st |= param_alloc(&a->head_b, cfg->n_classes);
	}
	if (cfg->regression && has_linear_head(cfg))
		st |= param_alloc(&a->target, 2);
	if (s)
	{
		a->low_rank = calloc(s * d, sizeof(float));
		a->grad_low_rank = calloc(s * d, sizeof(float));
		st |= (a->low_rank && a->grad_low_rank) ? NN_OK : NN_ERR_NOMEM;
	}
	if (K)
	{
		a->fusion_attn = calloc((size_t) P * s, sizeof(float));
		a->fused = calloc((size_t) P * d, sizeof(float));
		a->grad_fused = calloc((size_t) P * d, sizeof(float));
		a->fused_u = calloc(K * P * q, sizeof(float));
		a->token_mean = calloc((size_t) max_batch * d, sizeof(float));
		a->gates = calloc((size_t) max_batch * K, sizeof(float));
		a->scratch = calloc((size_t) P * wide, sizeof(float));
		a->scratch_q = calloc((size_t) P * q, sizeof(float));
		st |= (a->fusion_attn && a->fused && a->grad_fused && a->fused_u && a->token_mean &&
			   a->gates && a->scratch && a->scratch_q) ? NN_OK : NN_ERR_NOMEM;
	}
	if (st != NN_OK)
	{
		adapter_free(a);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory allocating adapter tensors");
	}

	rng_seed(&rng, seed);
	if (r)
		fill_uniform(a->lora_a.w, s * r, 1.0f / sqrtf((float) r), &rng);
	if (K)
		fill_uniform(a->ept_u.w, K * d * q, 1.0f / sqrtf((float) d), &rng);
	if (cfg->regression && has_linear_head(cfg))
		adapter_set_target(a, 0.0, 1.0);
	*out = a;
	return NN_OK;
}

NnStatus
adapter_copy_head(Adapter *a, const Adapter *src, NnError *err)
{
	if (a->head_w.n == 0 || src->head_w.n != a->head_w.n || src->head_b.n != a->head_b.n ||
		src->cfg.regression != a->cfg.regression)
		return nn_fail(err, NN_ERR_ARG, "the head to start from holds %zu weights, not %zu: "
					   "it needs the same classes and width", src->head_w.n, a->head_w.n);
	memcpy(a->head_w.w, src->head_w.w, sizeof(float) * a->head_w.n);
	memcpy(a->head_b.w, src->head_b.w, sizeof(float) * a->head_b.n);
	return NN_OK;
}

NnStatus
adapter_init_from(Adapter *a, const Adapter *src, bool copy_head, NnError *err)
{
	const AdapterConfig *x = &a->cfg,
			   *y = &src->cfg;
	AdapterParam *to[] = {&a->prompt, &a->lora_a, &a->lora_b, &a->ept_u, &a->ept_v,
	&a->gate_w, &a->gate_b, &a->head_w, &a->head_b};
	const AdapterParam *from[] = {&src->prompt, &src->lora_a, &src->lora_b, &src->ept_u,
	&src->ept_v, &src->gate_w, &src->gate_b, &src->head_w, &src->head_b};
	int			n_body = 7;		/* every tensor but the head's two */

	if (x->method != y->method || x->head != y->head)
		return nn_fail(err, NN_ERR_ARG, "the adapter to start from was trained with another "
					   "method or head (%d/%d, not %d/%d)", y->method, y->head, x->method, x->head);
	if (x->pair != y->pair)
		return nn_fail(err, NN_ERR_ARG, "the adapter to start from reads its input with pair "
					   "encoding %d, not %d", y->pair, x->pair);
	if (x->regression != y->regression)
		return nn_fail(err, NN_ERR_ARG, "the adapter to start from is a %s, not a %s",
					   y->regression ? "regression" : "classifier",
					   x->regression ? "regression" : "classifier");
	if (x->d != y->d || x->h_dim != y->h_dim)
		return nn_fail(err, NN_ERR_ARG, "the adapter to start from has widths %d/%d, not %d/%d",
					   y->d, y->h_dim, x->d, x->h_dim);
	for (int i = 0; i < n_body + 2; i++)
		if ((i < n_body || copy_head) && to[i]->n != from[i]->n)
			return nn_fail(err, NN_ERR_ARG, "the adapter to start from has another shape "
						   "(tensor %d holds %zu values, not %zu): prompt length, rank, "
						   "max_length, subspaces and the classes must match", i, from[i]->n,
						   to[i]->n);
	for (int i = 0; i < n_body + (copy_head ? 2 : 0); i++)
		if (to[i]->n > 0)
			memcpy(to[i]->w, from[i]->w, sizeof(float) * to[i]->n);
	return NN_OK;
}

void
adapter_free(Adapter *a)
{
	if (a == NULL)
		return;
	param_free(&a->prompt);
	param_free(&a->lora_a);
	param_free(&a->lora_b);
	param_free(&a->ept_u);
	param_free(&a->ept_v);
	param_free(&a->gate_w);
	param_free(&a->gate_b);
	param_free(&a->head_w);
	param_free(&a->head_b);
	param_free(&a->target);
	free(a->low_rank);
	free(a->grad_low_rank);
	free(a->fusion_attn);
	free(a->fused);
	free(a->grad_fused);
	free(a->fused_u);
	free(a->token_mean);
	free(a->gates);
	free(a->scratch);
	free(a->scratch_q);
	free(a->label_ids);
	free(a->bin_values);
	free(a);
}

NnStatus
adapter_set_label_ids(Adapter *a, const int32_t *ids, int label_len, NnError *err)
{
	int32_t    *copy;
	size_t		n;

	if (a->cfg.head != ADAPTER_HEAD_TEXT)
		return nn_fail(err, NN_ERR_ARG, "only a text-to-text adapter ranks label strings");
	if (label_len <= 0 || ids == NULL)
		return nn_fail(err, NN_ERR_ARG, "label token ids need a length > 0");
	n = (size_t) a->cfg.n_classes * label_len;
	if ((copy = malloc(sizeof(int32_t) * n)) == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory for label token ids");
	for (size_t i = 0; i < n; i++)
		copy[i] = ids[i] >= 0 ? ids[i] : -1;
	free(a->label_ids);
	a->label_ids = copy;
	a->label_len = label_len;
	return NN_OK;
}

void
adapter_init_prompt(Adapter *a, const float *rows, int n_rows)
{
	int			P = adapter_prompt_rows(&a->cfg);
	int			d = a->cfg.d;

	if (n_rows <= 0)
		return;
	for (int i = 0; i < P; i++)
		memcpy(a->prompt.w + (size_t) i * d, rows + (size_t) (i % n_rows) * d, sizeof(float) * d);
}

static void
register_param(AdamW *opt, AdapterParam *p, AdapterGroup group)
{
	if (p->n > 0)
		adamw_add(opt, p->w, p->g, p->m, p->v, p->n, group);
}

void
adapter_register(Adapter *a, AdamW *opt)
{
	register_param(opt, &a->prompt, GROUP_PROMPT);
	register_param(opt, &a->lora_a, GROUP_LOWRANK);
	register_param(opt, &a->lora_b, GROUP_LOWRANK);
	register_param(opt, &a->ept_u, GROUP_EPT);
	register_param(opt, &a->ept_v, GROUP_EPT);
	register_param(opt, &a->gate_w, GROUP_EPT);
	register_param(opt, &a->gate_b, GROUP_EPT);
	register_param(opt, &a->head_w, GROUP_HEAD);
	register_param(opt, &a->head_b, GROUP_HEAD);
}

/* Row-wise softmax of x (rows, cols) in place. */
static void
softmax_rows(float *x, int rows, int cols)
{
	for (int i = 0; i < rows; i++)
	{
		float	   *row = x + (size_t) i * cols;
		float		max = row[0];
		double		sum = 0.0;

		for (int j = 1; j < cols; j++)
			if (row[j] > max)
				max = row[j];
		for (int j = 0; j < cols; j++)
		{
			row[j] = expf(row[j] - max);
			sum += row[j];
		}
		for (int j = 0; j < cols; j++)
			row[j] = (float) (row[j] / sum);
	}
}

/* C (M x N) = alpha op(A) op(B) + beta C, row-major. */
static void
gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
	 const float *B, int ldb, float beta, float *C, int ldc)
{
	nn_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
				M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* EPT prompt fusion: F = P + softmax(P L^T / sqrt(d)) L, and F U_k. */
static void
ept_fuse_prompt(Adapter *a)
{
	int			P = a->cfg.prompt_len,
				d = a->cfg.d,
				s = a->cfg.max_len,
				K = a->cfg.subspaces,
				q = a->cfg.subspace_rank;

	gemm(false, true, P, s, d, 1.0f / sqrtf((float) d), a->prompt.w, d, a->low_rank, d,
		 0.0f, a->fusion_attn, s);
	softmax_rows(a->fusion_attn, P, s);
	memcpy(a->fused, a->prompt.w, sizeof(float) * P * d);
	gemm(false, false, P, d, s, 1.0f, a->fusion_attn, s, a->low_rank, d, 1.0f, a->fused, d);
	for (int k = 0; k < K; k++)
		gemm(false, false, P, q, d, 1.0f, a->fused, d, a->ept_u.w + (size_t) k * d * q, q,
			 0.0f, a->fused_u + (size_t) k * P * q, q);
}

/* EPT gating g = softmax(Wg mean(E) + bg) for row b; mean over real tokens. */
static void
ept_gate(Adapter *a, const float *E, const uint8_t *e_mask, int b, int n)
{
	int			d = a->cfg.d,
				K = a->cfg.subspaces,
				count = 0;
	float	   *mean = a->token_mean + (size_t) b * d;
	float	   *g = a->gates + (size_t) b * K;

	memset(mean, 0, sizeof(float) * d);
	for (int t = 0; t < n; t++)
	{
		if (!e_mask[(size_t) b * n + t])
			continue;
		count++;
		for (int j = 0; j < d; j++)
			mean[j] += E[((size_t) b * n + t) * d + j];
	}
	for (int j = 0; count > 0 && j < d; j++)
		mean[j] /= count;
	for (int k = 0; k < K; k++)
	{
		double		z = a->gate_b.w[k];

		for (int j = 0; j < d; j++)
			z += (double) a->gate_w.w[(size_t) k * d + j] * mean[j];
		g[k] = (float) z;
	}
	softmax_rows(g, 1, K);
}

/* Row b's prompt rows P* = F + sum_k g_k (F U_k) V_k into out (P x d). */
static void
ept_prompt_rows(const Adapter *a, int b, float *out)
{
	int			P = a->cfg.prompt_len,
				d = a->cfg.d,
				K = a->cfg.subspaces,
				q = a->cfg.subspace_rank;

	memcpy(out, a->fused, sizeof(float) * P * d);
	for (int k = 0; k < K; k++)
		gemm(false, false, P, d, q, a->gates[(size_t) b * K + k],
			 a->fused_u + (size_t) k * P * q, q, a->ept_v.w + (size_t) k * q * d, d,
			 1.0f, out, d);
}

void
adapter_forward(Adapter *a, const float *E, const uint8_t *e_mask, int B, int n,
				float *X, uint8_t *x_mask)
{
	int			P = adapter_prompt_rows(&a->cfg),
				d = a->cfg.d,
				T = P + n;
	bool		low_rank = has_low_rank(&a->cfg);
	/* EPT fuses the prompt with all s rows of L; DePT only needs n of them */
	int			lr_rows = is_ept(&a->cfg) ? a->cfg.max_len : n;

	a->cached_batch = B;
	a->cached_n = n;
	if (low_rank)
		gemm(false, false, lr_rows, d, a->cfg.rank, 1.0f, a->lora_a.w, a->cfg.rank,
			 a->lora_b.w, d, 0.0f, a->low_rank, d);
	if (is_ept(&a->cfg))
		ept_fuse_prompt(a);

	for (int b = 0; b < B; b++)
	{
		float	   *xb = X + (size_t) b * T * d;

		if (is_ept(&a->cfg))
		{
			ept_gate(a, E, e_mask, b, n);
			ept_prompt_rows(a, b, xb);
		}
		else if (P > 0)
			memcpy(xb, a->prompt.w, sizeof(float) * P * d);
		memcpy(xb + (size_t) P * d, E + (size_t) b * n * d, sizeof(float) * n * d);
		/* DePT: E + c (A B)[0:n], position-wise */
		if (low_rank)
			nn_axpy(n * d, a->scale, a->low_rank, xb + (size_t) P * d);
		memset(x_mask + (size_t) b * T, 1, P);
		memcpy(x_mask + (size_t) b * T + P, e_mask + (size_t) b * n, n);
	}
}

/*
 * EPT backward for row b's prompt gradient D = dX[b, 0:P]: accumulates dF,
 * dU_k, dV_k and the gate parameters.  With T_k = D V_k^T:
 * dF += D + sum_k g_k T_k U_k^T, dU_k += g_k F^T T_k,
 * dV_k += g_k (F U_k)^T D, dg_k = <T_k, F U_k>, dz = g (dg - <g, dg>).
 */
static void
ept_backward_row(Adapter *a, const float *D, int b)
{
	int			P = a->cfg.prompt_len,
				d = a->cfg.d,
				K = a->cfg.subspaces,
				q = a->cfg.subspace_rank;
	const float *g = a->gates + (size_t) b * K;
	const float *mean = a->token_mean + (size_t) b * d;
	float		dg[ADAPTER_MAX_SUBSPACES];
	double		g_dot_dg = 0.0;

	nn_axpy(P * d, 1.0f, D, a->grad_fused);
	for (int k = 0; k < K; k++)
	{
		const float *U = a->ept_u.w + (size_t) k * d * q;
		const float *V = a->ept_v.w + (size_t) k * q * d;
		const float *FU = a->fused_u + (size_t) k * P * q;
		float	   *Tk = a->scratch_q;
		double		dot = 0.0;

		gemm(false, true, P, q, d, 1.0f, D, d, V, d, 0.0f, Tk, q);
		gemm(false, true, P, d, q, g[k], Tk, q, U, q, 1.0f, a->grad_fused, d);
		gemm(true, false, d, q, P, g[k], a->fused, d, Tk, q, 1.0f,
			 a->ept_u.g + (size_t) k * d * q, q);
		gemm(true, false, q, d, P, g[k], FU, q, D, d, 1.0f,
			 a->ept_v.g + (size_t) k * q * d, d);
		for (int i = 0; i < P * q; i++)
			dot += (double) Tk[i] * FU[i];
		dg[k] = (float) dot;
		g_dot_dg += (double) g[k] * dot;
	}
	for (int k = 0; k < K; k++)
	{
		float		dz = (float) (g[k] * (dg[k] - g_dot_dg));

		nn_axpy(d, dz, mean, a->gate_w.g + (size_t) k * d);
		a->gate_b.g[k] += dz;
	}
}

/*
 * Fusion backward, F = P + S L with S = softmax(P L^T / sqrt(d)):
 * dP += dF + dZ L / sqrt(d), dL += S^T dF + dZ^T P / sqrt(d),
 * dZ = S (dS - rowsum(dS S)), dS = dF L^T.
 */
static void
ept_fusion_backward(Adapter *a)
{
	int			P = a->cfg.prompt_len,
				d = a->cfg.d,
				s = a->cfg.max_len;
	float	   *dS = a->scratch;
	float		inv_sqrt_d = 1.0f / sqrtf((float) d);

	nn_axpy(P * d, 1.0f, a->grad_fused, a->prompt.g);
	gemm(false, true, P, s, d, 1.0f, a->grad_fused, d, a->low_rank, d, 0.0f, dS, s);
	gemm(true, false, s, d, P, 1.0f, a->fusion_attn, s, a->grad_fused, d, 1.0f,
		 a->grad_low_rank, d);
	for (int i = 0; i < P; i++)
	{
		const float *S = a->fusion_attn + (size_t) i * s;
		float	   *row = dS + (size_t) i * s;
		double		dot = 0.0;

		for (int j = 0; j < s; j++)
			dot += (double) row[j] * S[j];
		for (int j = 0; j < s; j++)
			row[j] = S[j] * (row[j] - (float) dot);
	}
	gemm(false, false, P, d, s, inv_sqrt_d, dS, s, a->low_rank, d, 1.0f, a->prompt.g, d);
	gemm(true, false, s, d, P, inv_sqrt_d, dS, s, a->prompt.w, d, 1.0f, a->grad_low_rank, d);
}

void
adapter_backward(Adapter *a, const float *dX, int B, int n)
{
	int			P = adapter_prompt_rows(&a->cfg),
				d = a->cfg.d,
				T = P + n,
				r = a->cfg.rank;
	bool		low_rank = has_low_rank(&a->cfg);
	int			lr_rows = is_ept(&a->cfg) ? a->cfg.max_len : n;

	if (low_rank)
		memset(a->grad_low_rank, 0, sizeof(float) * lr_rows * d);
	if (is_ept(&a->cfg))
		memset(a->grad_fused, 0, sizeof(float) * P * d);

	for (int b = 0; b < B; b++)
	{
		const float *db = dX + (size_t) b * T * d;

		if (is_ept(&a->cfg))
			ept_backward_row(a, db, b);
		else if (P > 0)
			nn_axpy(P * d, 1.0f, db, a->prompt.g);
		if (low_rank)
			nn_axpy(n * d, a->scale, db + (size_t) P * d, a->grad_low_rank);
	}
	if (is_ept(&a->cfg))
		ept_fusion_backward(a);
	if (low_rank)
	{
		/* L = A B: dA = dL B^T, dB = A^T dL (over the rows forward used) */
		gemm(false, true, lr_rows, r, d, 1.0f, a->grad_low_rank, d, a->lora_b.w, d, 1.0f,
			 a->lora_a.g, r);
		gemm(true, false, r, d, lr_rows, 1.0f, a->lora_a.w, r, a->grad_low_rank, d, 1.0f,
			 a->lora_b.g, d);
	}
}

void
head_forward(const Adapter *a, const float *h, int B, float *logits)
{
	int			C = a->cfg.n_classes,
				H = a->cfg.h_dim;

	for (int b = 0; b < B; b++)
		memcpy(logits + (size_t) b * C, a->head_b.w, sizeof(float) * C);
	gemm(false, true, B, C, H, 1.0f, h, H, a->head_w.w, H, 1.0f, logits, C);
}

NnStatus
head_loss_backward(Adapter *a, const float *h, float *logits, const int *labels, int B,
				   float *dh, double *loss, NnError *err)
{
	int			C = a->cfg.n_classes,
				H = a->cfg.h_dim;
	float	   *dlogits = logits;
	double		sum = 0.0;

	for (int b = 0; b < B; b++)
		if (labels[b] < 0 || labels[b] >= C)
			return nn_fail(err, NN_ERR_ARG, "label %d of row %d is not one of the %d classes",
						   labels[b], b, C);
	softmax_rows(dlogits, B, C);
	for (int b = 0; b < B; b++)
	{
		float	   *row = dlogits + (size_t) b * C;

		sum -= log(fmax(row[labels[b]], 1e-30));
		row[labels[b]] -= 1.0f;
		for (int c = 0; c < C; c++)
		{
			row[c] /= B;
			a->head_b.g[c] += row[c];
		}
	}
	gemm(true, false, C, H, B, 1.0f, dlogits, C, h, H, 1.0f, a->head_w.g, H);
	gemm(false, false, B, H, C, 1.0f, dlogits, C, a->head_w.w, H, 0.0f, dh, H);
	*loss = sum / B;
	return NN_OK;
}

void
head_mse_backward(Adapter *a, const float *h, float *out, const float *targets, int B,
				  float *dh, double *loss)
{
	int			H = a->cfg.h_dim;
	double		mean = a->target.w[0],
				sd = a->target.w[1],
				sum = 0.0;

	for (int b = 0; b < B; b++)
	{
		double		diff = out[b] - (targets[b] - mean) / sd;

		sum += diff * diff;
		out[b] = (float) (2.0 * diff / B);
		a->head_b.g[0] += out[b];
	}
	gemm(true, false, 1, H, B, 1.0f, out, 1, h, H, 1.0f, a->head_w.g, H);
	gemm(false, false, B, H, 1, 1.0f, out, 1, a->head_w.w, H, 0.0f, dh, H);
	*loss = sum / B;
}

double
adapter_value(const Adapter *a, float z)
{
	return a->target.w[0] + a->target.w[1] * (double) z;
}

bool
adapter_bin_name_value(const char *name, double *value)
{
	char	   *end;

	*value = strtod(name, &end);
	while (*end == ' ')
		end++;
	return end != name && *end == '\0' && isfinite(*value) && fabs(*value) <= 3e38;
}

NnStatus
adapter_set_bin_values(Adapter *a, const double *values, NnError *err)
{
	int			C = a->cfg.n_classes;
	float	   *copy;

	if (!a->cfg.regression || a->cfg.head != ADAPTER_HEAD_TEXT)
		return nn_fail(err, NN_ERR_ARG, "only a text-to-text regression has bin values");
	for (int c = 0; c < C; c++)
		if (!isfinite(values[c]) || fabs(values[c]) > 3e38)
			return nn_fail(err, NN_ERR_ARG, "bin %d's value is not a finite number", c);
	if ((copy = malloc(sizeof(float) * C)) == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory for bin values");
	for (int c = 0; c < C; c++)
		copy[c] = (float) values[c];
	free(a->bin_values);
	a->bin_values = copy;
	return NN_OK;
}

double
adapter_bin_value(const Adapter *a, const float *scores)
{
	int			C = a->cfg.n_classes,
				best = 0;
	double		sum = 0.0,
				mean = 0.0;

	for (int c = 1; c < C; c++)
		if (scores[c] > scores[best])
			best = c;
	if (a->bin_argmax)
		return a->bin_values[best];
	/* softmax shifted by the largest score, as classify_texts' probabilities */
	for (int c = 0; c < C; c++)
	{
		double		p = exp((double) scores[c] - scores[best]);

		sum += p;
		mean += p * a->bin_values[c];
	}
	return mean / sum;
}

void
adapter_set_target(Adapter *a, double mean, double sd)
{
	if (!(sd > 0.0) || !isfinite(sd))
		sd = 1.0;
	a->target.w[0] = (float) (isfinite(mean) ? mean : 0.0);
	a->target.w[1] = (float) sd;
}
