/*
 * test_adapter.c: parameter gradients of every adapter and of the head
 * against central finite differences.
 *
 * The adapter's output X feeds a fixed linear loss L = <X, W> (so
 * dX = W), which isolates the adapter's own backward; the head is checked
 * with its softmax cross-entropy.  Float32 central differences with
 * step 1e-2 on a smooth function: we accept |fd - analytic| <= 2e-3 +
 * 2e-2 |analytic|.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/adapter.h"
#include "base/rng.h"
#include "unit.h"

enum
{
	B = 3, N = 5, D = 8, S = 7, H = 6, C = 3
};

static float E[B * N * D];
static uint8_t EMASK[B * N];
static float W[B * 16 * D];		/* loss weights, room for up to 16 prompt+token rows */

static void
fill_inputs(void)
{
	Rng			rng;

	rng_seed(&rng, 7);
	for (size_t i = 0; i < sizeof(E) / sizeof(E[0]); i++)
		E[i] = (float) (rng_uniform(&rng) * 2 - 1);
	for (size_t i = 0; i < sizeof(W) / sizeof(W[0]); i++)
		W[i] = (float) (rng_uniform(&rng) * 2 - 1);
	for (int b = 0; b < B; b++)
		for (int t = 0; t < N; t++)
			EMASK[b * N + t] = t < N - b;	/* rows of length 5, 4, 3 */
}

/* L = <adapter_forward(E), W> */
static double
linear_loss(Adapter *a)
{
	int			T = adapter_prompt_rows(&a->cfg) + N;
	float	   *X = calloc((size_t) B * T * D, sizeof(float));
	uint8_t    *xm = calloc((size_t) B * T, 1);
	double		loss = 0.0;

	adapter_forward(a, E, EMASK, B, N, X, xm);
	for (int i = 0; i < B * T * D; i++)
		loss += (double) X[i] * W[i];
	free(X);
	free(xm);
	return loss;
}

static void
randomize(AdapterParam *p, Rng *rng, float scale)
{
	for (size_t i = 0; i < p->n; i++)
		p->w[i] = (float) ((rng_uniform(rng) * 2 - 1) * scale);
}

static int
check_param(Adapter *a, AdapterParam *p, const char *name)
{
	int			bad = 0;
	const float step = 1e-2f;

	for (size_t i = 0; i < p->n; i++)
	{
		float		saved = p->w[i];
		double		up,
					down,
					fd;

		p->w[i] = saved + step;
		up = linear_loss(a);
		p->w[i] = saved - step;
		down = linear_loss(a);
		p->w[i] = saved;
		fd = (up - down) / (2.0 * step);
		if (fabs(fd - p->g[i]) > 2e-3 + 2e-2 * fabs(p->g[i]))
		{
			if (bad < 3)
				printf("#   %s[%zu]: analytic %.6f, finite difference %.6f\n", name, i,
					   p->g[i], fd);
			bad++;
		}
	}
	return bad;
}

static void
gradcheck_method(AdapterMethod method)
{
	AdapterConfig cfg = {.method = method, .d = D, .h_dim = H, .n_classes = C,
		.prompt_len = 4, .max_len = S, .rank = 2, .alpha = 8.0f,
	.subspaces = 3, .subspace_rank = 2};
	Adapter    *a;
	NnError		err;
	Rng			rng;
	int			T = adapter_prompt_rows(&cfg) + N;

	CHECK(adapter_new(&a, &cfg, B, 1, &err) == NN_OK, "adapter_new: %s", err.msg);
	/* move away from B = 0, V = 0, gate = 0 so every path carries gradient */
	rng_seed(&rng, 3);
	randomize(&a->prompt, &rng, 1.0f);
	randomize(&a->lora_b, &rng, 0.3f);
	randomize(&a->ept_v, &rng, 0.5f);
	randomize(&a->gate_w, &rng, 0.5f);
	randomize(&a->gate_b, &rng, 0.5f);

	linear_loss(a);
	adapter_backward(a, W, B, N);
	CHECK(check_param(a, &a->prompt, "prompt") == 0, "prompt gradient");
	CHECK(check_param(a, &a->lora_a, "A") == 0, "A gradient");
	CHECK(check_param(a, &a->lora_b, "B") == 0, "B gradient");
	CHECK(check_param(a, &a->ept_u, "U") == 0, "U gradient");
	CHECK(check_param(a, &a->ept_v, "V") == 0, "V gradient");
	CHECK(check_param(a, &a->gate_w, "gate_w") == 0, "gate W gradient");
	CHECK(check_param(a, &a->gate_b, "gate_b") == 0, "gate b gradient");
	(void) T;
	adapter_free(a);
}

static void test_gradcheck_pt(void) { gradcheck_method(ADAPTER_PT); }
static void test_gradcheck_dept(void) { gradcheck_method(ADAPTER_DEPT); }
static void test_gradcheck_ept(void) { gradcheck_method(ADAPTER_EPT); }

/* DePT at init (B = 0) equals PT with the same prompt: X = [P; E]. */
static void
test_dept_init_is_short_pt(void)
{
	AdapterConfig cfg = {.method = ADAPTER_DEPT, .d = D, .h_dim = H, .n_classes = C,
	.prompt_len = 2, .max_len = S, .rank = 2, .alpha = 8.0f};
	Adapter    *a;
	float		X[B * (2 + N) * D];
	uint8_t		xm[B * (2 + N)];
	float		rows[D * 1];

	for (int j = 0; j < D; j++)
		rows[j] = (float) j;
	CHECK(adapter_new(&a, &cfg, B, 1, NULL) == NN_OK, "adapter_new");
	adapter_init_prompt(a, rows, 1);
	adapter_forward(a, E, EMASK, B, N, X, xm);
	for (int b = 0; b < B; b++)
	{
		CHECK(memcmp(X + (size_t) b * (2 + N) * D + D, rows, sizeof(rows)) == 0,
			  "prompt row repeated from init text");
		CHECK(memcmp(X + ((size_t) b * (2 + N) + 2) * D, E + (size_t) b * N * D,
					 sizeof(float) * N * D) == 0, "tokens untouched at init");
		CHECK(xm[b * (2 + N)] == 1 && xm[b * (2 + N) + 1] == 1, "prompt rows unmasked");
		CHECK(xm[b * (2 + N) + 2 + N - 1] == (b == 0), "padding stays masked");
	}
	CHECK(fabsf(a->scale - 8.0f / sqrtf(2.0f)) < 1e-6f, "scale alpha/sqrt(r)");
	adapter_free(a);
}

/* Head: softmax cross-entropy gradients for W, b and dh. */
static void
test_head_gradcheck(void)
{
	AdapterConfig cfg = {.method = ADAPTER_PROBE, .d = D, .h_dim = H, .n_classes = C};
	Adapter    *a;
	float		h[B * H],
				logits[B * C],
				dh[B * H],
				grad_w[C * H];
	int			labels[B] = {0, 2, 1};
	Rng			rng;
	const float step = 1e-2f;
	int			bad = 0;
	double		loss;

	CHECK(adapter_new(&a, &cfg, B, 1, NULL) == NN_OK, "adapter_new");
	rng_seed(&rng, 11);
	randomize(&a->head_w, &rng, 1.0f);
	for (int i = 0; i < B * H; i++)
		h[i] = (float) (rng_uniform(&rng) * 2 - 1);
	head_forward(a, h, B, logits);
	CHECK(head_loss_backward(a, h, logits, labels, B, dh, &loss, NULL) == NN_OK, "head loss");
	/* the finite differences below accumulate into g again: keep a copy */
	memcpy(grad_w, a->head_w.g, sizeof(grad_w));
	for (size_t i = 0; i < a->head_w.n; i++)
	{
		float		saved = a->head_w.w[i];
		float		tmp_dh[B * H];
		double		up,
					down;
		float		g_saved = grad_w[i];

		a->head_w.w[i] = saved + step;
		head_forward(a, h, B, logits);
		head_loss_backward(a, h, logits, labels, B, tmp_dh, &up, NULL);
		a->head_w.w[i] = saved - step;
		head_forward(a, h, B, logits);
		head_loss_backward(a, h, logits, labels, B, tmp_dh, &down, NULL);
		a->head_w.w[i] = saved;
		if (fabs((up - down) / (2 * step) - g_saved) > 1e-3 + 1e-2 * fabs(g_saved))
			bad++;
	}
	CHECK(bad == 0, "%d head weight gradients differ", bad);
	for (int i = 0; i < B * H; i++)
	{
		float		saved = h[i];
		float		tmp_dh[B * H];
		double		up,
					down;

		h[i] = saved + step;
		head_forward(a, h, B, logits);
		head_loss_backward(a, h, logits, labels, B, tmp_dh, &up, NULL);
		h[i] = saved - step;
		head_forward(a, h, B, logits);
		head_loss_backward(a, h, logits, labels, B, tmp_dh, &down, NULL);
		h[i] = saved;
		CHECK(fabs((up - down) / (2 * step) - dh[i]) < 1e-3 + 1e-2 * fabs(dh[i]),
			  "dh[%d]", i);
	}
	{
		int			bad_labels[B] = {0, C, 1};
		NnError		err;

		CHECK(head_loss_backward(a, h, logits, bad_labels, B, dh, &loss, &err) == NN_ERR_ARG,
			  "a label outside the classes is refused");
	}
	adapter_free(a);
}

static void
test_budget(void)
{
	AdapterConfig pt = {.method = ADAPTER_PT, .d = 256, .h_dim = 512, .n_classes = 2,
	.prompt_len = 100};
	AdapterConfig dept = {.method = ADAPTER_DEPT, .d = 256, .h_dim = 512, .n_classes = 2,
	.prompt_len = 60, .max_len = 128, .alpha = 8.0f};
	int			r = adapter_rank_for_budget(100, 256, 128, 60, 0, 0);
	size_t		head = 2 * 512 + 2;

	/* (100 - 60) * 256 / (128 + 256) = 26.67 -> 26 */
	CHECK(r == 26, "rank %d", r);
	dept.rank = r;
	CHECK(adapter_param_count(&pt) == 100 * 256 + head, "PT count");
	CHECK(adapter_param_count(&dept) == 60 * 256 + 26 * (128 + 256) + head, "DePT count");
	CHECK(adapter_param_count(&dept) <= adapter_param_count(&pt), "DePT within PT budget");
	CHECK(adapter_rank_for_budget(100, 256, 128, 100, 0, 0) == 0, "no room left");
}

static void
test_bad_configs(void)
{
	Adapter    *a;
	NnError		err;
	AdapterConfig cfg = {.method = ADAPTER_DEPT, .d = 8, .h_dim = 4, .n_classes = 2,
	.prompt_len = 2, .max_len = 4, .rank = 9};

	CHECK(adapter_new(&a, &cfg, 1, 1, &err) == NN_ERR_ARG && a == NULL, "rank > d refused");
	cfg.rank = 2;
	cfg.n_classes = 1;
	CHECK(adapter_new(&a, &cfg, 1, 1, &err) == NN_ERR_ARG, "one class refused");
	cfg.n_classes = 2;
	cfg.method = (AdapterMethod) 9;
	CHECK(adapter_new(&a, &cfg, 1, 1, &err) == NN_ERR_ARG, "unknown method refused");
}

/* Transfer: adapter_init_from copies every tensor (the head when asked) and refuses other shapes. */
static void
test_init_from(void)
{
	AdapterConfig cfg = {.method = ADAPTER_DEPT, .d = D, .h_dim = H, .n_classes = C,
	.prompt_len = 2, .rank = 2, .max_len = 4, .alpha = 8.0f};
	AdapterConfig other = cfg;
	Adapter    *src,
			   *dst,
			   *wide;
	Rng			rng;
	NnError		err;

	CHECK(adapter_new(&src, &cfg, B, 1, NULL) == NN_OK && adapter_new(&dst, &cfg, B, 1, NULL) == NN_OK,
		  "adapter_new");
	rng_seed(&rng, 5);
	randomize(&src->prompt, &rng, 1.0f);
	randomize(&src->lora_a, &rng, 1.0f);
	randomize(&src->lora_b, &rng, 1.0f);
	randomize(&src->head_w, &rng, 1.0f);
	CHECK(adapter_init_from(dst, src, false, &err) == NN_OK, "init_from: %s", err.msg);
	CHECK(memcmp(dst->prompt.w, src->prompt.w, sizeof(float) * src->prompt.n) == 0 &&
		  memcmp(dst->lora_a.w, src->lora_a.w, sizeof(float) * src->lora_a.n) == 0 &&
		  memcmp(dst->lora_b.w, src->lora_b.w, sizeof(float) * src->lora_b.n) == 0,
		  "the prompt and the low-rank pair are copied");
	CHECK(memcmp(dst->head_w.w, src->head_w.w, sizeof(float) * src->head_w.n) != 0,
		  "the head is not, unless asked");
	CHECK(adapter_init_from(dst, src, true, &err) == NN_OK &&
		  memcmp(dst->head_w.w, src->head_w.w, sizeof(float) * src->head_w.n) == 0,
		  "and is when asked");
	other.prompt_len = 3;
	CHECK(adapter_new(&wide, &other, B, 1, NULL) == NN_OK, "adapter_new");
	CHECK(adapter_init_from(wide, src, false, &err) == NN_ERR_ARG, "another prompt length is refused");
	adapter_free(wide);
	other = cfg;
	other.method = ADAPTER_PT;
	CHECK(adapter_new(&wide, &other, B, 1, NULL) == NN_OK, "adapter_new");
	CHECK(adapter_init_from(wide, src, false, &err) == NN_ERR_ARG, "another method is refused");
	adapter_free(wide);
	adapter_free(src);
	adapter_free(dst);
}

/* The method names SQL and the CLI accept, both ways; "auto" is not an AdapterMethod. */
static void
test_method_names(void)
{
	const char *const names[] = {"probe", "pt", "dept", "ept"};
	AdapterMethod m;

	for (int i = 0; i < 4; i++)
	{
		m = (AdapterMethod) 9;
		CHECK(strcmp(adapter_method_name((AdapterMethod) i), names[i]) == 0, "name of %d", i);
		CHECK(adapter_method_parse(names[i], &m) == 0 && m == (AdapterMethod) i, "parse %s", names[i]);
	}
	m = ADAPTER_EPT;
	CHECK(adapter_method_parse("auto", &m) == -1 && m == ADAPTER_EPT, "auto is refused, m untouched");
	CHECK(adapter_method_parse("DePT", &m) == -1 && adapter_method_parse("", &m) == -1,
		  "names are exact");
	CHECK(strcmp(adapter_method_name((AdapterMethod) 9), "unknown") == 0, "out of range");
}

int
main(void)
{
	fill_inputs();
	RUN_TEST(test_gradcheck_pt);
	RUN_TEST(test_gradcheck_dept);
	RUN_TEST(test_gradcheck_ept);
	RUN_TEST(test_dept_init_is_short_pt);
	RUN_TEST(test_head_gradcheck);
	RUN_TEST(test_budget);
	RUN_TEST(test_bad_configs);
	RUN_TEST(test_init_from);
	RUN_TEST(test_method_names);
	return unit_finish();
}
