/*
 * test_explain.c: token attributions (src/nn/train/explain.h).
 *
 * Adapters: a DePT adapter trained for a few steps on the SST-2 fixture
 * (use-lite), and fixed-seed adapters with random tensors (every tensor
 * that starts at 0 gets random values, so no path of the gradient is
 * trivially zero) for PT, EPT and the probe on use-lite, DePT on
 * bert-tiny-random and a text-to-text DePT on t5-tiny-random.
 *
 * Accepted:
 *   gradient x input   a_i against central differences of F along E_i,
 *                      (F((1 + eps) E_i) - F((1 - eps) E_i)) / (2 eps),
 *                      eps = 1e-4 (use-lite) or 1e-2 (BERT, T5):
 *                      |fd_i - a_i| <= 3e-2 max_j |a_j| + 2e-5;
 *   integrated grads   |sum_i a_i - (F(E) - F(B))| <= 1% of |F(E) - F(B)|
 *                      with the default options (32 intervals, doubled
 *                      up to 512 until it holds), B = 0 (T5: the padding
 *                      embedding);
 *   tokens             one per tokenizer id, each the tokenizer's piece;
 *   prediction         the class and probability classify_texts gives.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/blas.h"
#include "train/dataset.h"
#include "train/explain.h"
#include "train/train.h"
#include "unit.h"

/*
 * Finite-difference steps: use-lite's ReLUs put kinks along E_i within 1e-2
 * of E (differences at 1e-2 and 1e-3 disagree with the converged 1e-4 by up
 * to 10%); BERT's GELU and T5's gated GELU are smooth, and their tiny random
 * models move F by less than float32 resolves at 1e-4.
 */
#define USE_LITE_EPS 1e-4f
#define SMOOTH_EPS 1e-2f
#define FD_REL_TOL 3e-2
#define FD_ABS_TOL 2e-5
#define COMPLETENESS_TOL 1e-2

static Backbone *lite;
static Backbone *bert;
static Backbone *t5;
static Adapter *trained;

static const char *const texts[] = {
	"a gorgeous , witty , seductive movie .",
	"the plot is nothing but boilerplate clichés from start to finish .",
	"it 's not a bad film , but it never quite works .",
	"an utterly charming and hilarious film that reminded me of why i love movies",
};

#define N_TEXTS ((int) (sizeof(texts) / sizeof(texts[0])))

/* ---- adapters --------------------------------------------------------------- */

static void
randomize(AdapterParam *p, Rng *rng, float scale)
{
	for (size_t i = 0; i < p->n; i++)
		p->w[i] = (float) (rng_uniform(rng) * 2.0 - 1.0) * scale;
}

/* A fixed-seed adapter on bb with every tensor random. */
static Adapter *
random_adapter(const Backbone *bb, AdapterMethod method, AdapterHead head, int prompt_len,
			   float head_scale, uint64_t seed)
{
	AdapterConfig cfg = {
		.method = method, .d = bb->d_embed, .h_dim = bb->d_out, .n_classes = 2,
		.prompt_len = method == ADAPTER_PROBE ? 0 : prompt_len, .max_len = 24,
		.rank = method == ADAPTER_DEPT || method == ADAPTER_EPT ? 4 : 0, .alpha = 8.0f,
		.subspaces = method == ADAPTER_EPT ? 3 : 0, .subspace_rank = method == ADAPTER_EPT ? 2 : 0,
		.head = head, .pool_text = method != ADAPTER_PROBE && head == ADAPTER_HEAD_LINEAR &&
		backbone_pool_skips(bb)
	};
	Adapter    *a = NULL;
	NnError		err = {0};
	Rng			rng;

	if (adapter_new(&a, &cfg, 8, seed, &err) != NN_OK)
	{
		printf("# adapter_new: %s\n", err.msg);
		return NULL;
	}
	rng_seed(&rng, seed);
	randomize(&a->prompt, &rng, 0.1f);
	randomize(&a->lora_b, &rng, 0.05f);
	randomize(&a->ept_v, &rng, 0.1f);
	randomize(&a->gate_w, &rng, 1.0f);
	randomize(&a->gate_b, &rng, 0.5f);
	randomize(&a->head_w, &rng, head_scale);
	randomize(&a->head_b, &rng, 0.1f);
	return a;
}

static Dataset *
load_fixture(const char *name)
{
	char		path[512];
	Dataset    *ds = NULL;
	NnError		err = {0};

	snprintf(path, sizeof(path), "test/fixtures/%s", name);
	if (dataset_load(&ds, path, '\t', "text", "label", &err) != NN_OK)
		printf("# %s: %s\n", path, err.msg);
	return ds;
}

/* DePT m = 10, s = 32, 12 steps of 16 rows on the SST-2 fixture. */
static Adapter *
train_small_dept(void)
{
	Dataset    *ds = load_fixture("sst2_train_600.tsv");
	TrainOptions opt;
	TrainResult res;
	NnError		err = {0};
	Adapter    *a = NULL;

	if (ds == NULL)
		return NULL;
	train_options_default(&opt);
	opt.method = ADAPTER_DEPT;
	opt.prompt_len = 10;
	opt.max_len = 32;
	opt.batch_size = 16;
	opt.epochs = 0;
	opt.max_steps = 12;
	opt.valid_fraction = 0.05;
	opt.seed = 7;
	if (train_adapter(lite, ds, &opt, &res, &err) != NN_OK)
		printf("# train_adapter: %s\n", err.msg);
	else
	{
		a = res.adapter;
		res.adapter = NULL;
		train_result_free(&res);
	}
	dataset_free(ds);
	return a;
}

/* ---- checks ----------------------------------------------------------------- */

/* Gradient x input of text against central differences of F, token by token. */
static void
check_finite_differences(const Backbone *bb, Adapter *a, const char *text, float eps,
						 const char *what)
{
	ExplainOptions opt;
	Explanation e;
	NnError		err = {0};
	float	   *scale;
	double		lp_plus[8],
				lp_minus[8],
				max_a = 0.0,
				worst = 0.0;

	explain_options_default(&opt);
	opt.method = EXPLAIN_GRADIENT_X_INPUT;
	if (explain_text(bb, NULL, a, text, strlen(text), &opt, &e, &err) != NN_OK)
	{
		CHECK(false, "%s: explain_text: %s", what, err.msg);
		explanation_free(&e);
		return;
	}
	CHECK(e.n_tokens > 2, "%s: %d tokens", what, e.n_tokens);
	scale = malloc(sizeof(float) * (e.n_tokens + 1));
	for (int i = 0; i < e.n_tokens; i++)
		max_a = fmax(max_a, fabs(e.attributions[i]));
	CHECK(max_a > 1e-5, "%s: attributions all ~0 (max %.3g)", what, max_a);
	for (int i = 0; i < e.n_tokens; i++)
	{
		double		fd,
					diff;

		for (int j = 0; j < e.n_tokens; j++)
			scale[j] = 1.0f;
		scale[i] = 1.0f + eps;
		CHECK(explain_log_probs(bb, NULL, a, e.ids, e.n_tokens, -1, scale, lp_plus, &err) == NN_OK,
			  "%s", err.msg);
		scale[i] = 1.0f - eps;
		CHECK(explain_log_probs(bb, NULL, a, e.ids, e.n_tokens, -1, scale, lp_minus, &err) == NN_OK,
			  "%s", err.msg);
		fd = (lp_plus[e.target_class] - lp_minus[e.target_class]) / (2.0 * eps);
		diff = fabs(fd - e.attributions[i]);
		worst = fmax(worst, diff);
		CHECK(diff <= FD_REL_TOL * max_a + FD_ABS_TOL,
			  "%s: token %d \"%s\": gradient x input %.6f, finite difference %.6f", what, i,
			  e.tokens[i], e.attributions[i], fd);
	}
	printf("# %s: %d tokens, max |a| %.4f, worst |fd - a| %.2e\n", what, e.n_tokens, max_a, worst);
	free(scale);
	explanation_free(&e);
}

/* Integrated gradients with the default steps: sum_i a_i = F(E) - F(B) within 1%. */
static void
check_completeness(const Backbone *bb, Adapter *a, const char *text, int32_t baseline_id,
				   const char *what)
{
	ExplainOptions opt;
	Explanation e;
	NnError		err = {0};
	double		delta,
				gap;

	explain_options_default(&opt);
	opt.baseline_id = baseline_id;
	if (explain_text(bb, NULL, a, text, strlen(text), &opt, &e, &err) != NN_OK)
	{
		CHECK(false, "%s: explain_text: %s", what, err.msg);
		explanation_free(&e);
		return;
	}
	delta = e.target_log_prob - e.baseline_log_prob;
	gap = fabs(e.attribution_sum - delta);
	CHECK(fabs(delta) > 1e-4, "%s: F(E) - F(0) = %.3g is too small to test", what, delta);
	CHECK(e.steps >= opt.steps && e.steps <= opt.max_steps, "%s: %d steps", what, e.steps);
	CHECK(gap <= COMPLETENESS_TOL * fabs(delta),
		  "%s: sum of attributions %.6f, F(E) - F(0) = %.6f (gap %.2f%%)", what,
		  e.attribution_sum, delta, 100.0 * gap / fabs(delta));
	printf("# %s: IG %d steps, sum %.5f vs F(E) - F(0) %.5f (%.3f%%)\n", what, e.steps,
		   e.attribution_sum, delta, 100.0 * gap / fmax(fabs(delta), 1e-12));
	explanation_free(&e);
}

/* Tokens are the tokenizer's; the prediction is classify_texts'. */
static void
check_tokens_and_prediction(const Backbone *bb, Adapter *a, const char *what)
{
	size_t		lens[N_TEXTS];
	float		probs[N_TEXTS * 8];
	int32_t		ids[512];
	char		buf[32];
	NnError		err = {0};
	int			max_len = a->cfg.max_len;
	BackboneRun *run = bb->ops->run_new(bb, N_TEXTS, adapter_prompt_rows(&a->cfg) + max_len);

	for (int t = 0; t < N_TEXTS; t++)
		lens[t] = strlen(texts[t]);
	CHECK(run && classify_texts(bb, run, a, texts, lens, N_TEXTS, N_TEXTS, probs, &err) == NN_OK,
		  "%s: classify_texts: %s", what, err.msg);
	for (int t = 0; t < N_TEXTS; t++)
	{
		ExplainOptions opt;
		Explanation e;
		int			n = bb->ops->tokenize(bb, texts[t], lens[t], ids, max_len);
		int			want = probs[t * 2 + 1] > probs[t * 2] ? 1 : 0;

		explain_options_default(&opt);
		opt.method = EXPLAIN_GRADIENT_X_INPUT;
		/* a run of the caller's, sized for more rows, serves as well as explain's own */
		if (explain_text(bb, run, a, texts[t], lens[t], &opt, &e, &err) != NN_OK)
		{
			CHECK(false, "%s: explain_text: %s", what, err.msg);
			explanation_free(&e);
			continue;
		}
		CHECK(e.n_tokens == n, "%s: %d tokens, the tokenizer gives %d", what, e.n_tokens, n);
		for (int i = 0; i < n && i < e.n_tokens; i++)
		{
			char		fallback[32];

			/* every id the tokenizer emits has a piece: no "#<id>" fallback */
			snprintf(fallback, sizeof(fallback), "#%d", (int) ids[i]);
			CHECK(e.ids[i] == ids[i] &&
				  strcmp(e.tokens[i], backbone_token_piece(bb, ids[i], buf, sizeof(buf))) == 0 &&
				  strcmp(e.tokens[i], fallback) != 0, "%s: token %d is \"%s\" (id %d)", what, i,
				  e.tokens[i], ids[i]);
		}
		CHECK(e.predicted_class == want, "%s: text %d predicted %d, classify_texts %d", what, t,
			  e.predicted_class, want);
		CHECK(fabsf(e.predicted_prob - probs[t * 2 + want]) < 1e-4f,
			  "%s: text %d probability %.6f, classify_texts %.6f", what, t, e.predicted_prob,
			  probs[t * 2 + want]);
		CHECK(e.target_class == e.predicted_class, "%s: explains class %d", what, e.target_class);
		explanation_free(&e);
	}
	if (run)
		bb->ops->run_free(run);
}

/* ---- tests ------------------------------------------------------------------ */

static void
test_trained_dept_gradient_x_input(void)
{
	CHECK(trained != NULL, "no trained adapter");
	for (int t = 0; trained && t < 2; t++)
		check_finite_differences(lite, trained, texts[t], USE_LITE_EPS, "use-lite DePT (trained)");
}

static void
test_trained_dept_integrated_gradients(void)
{
	CHECK(trained != NULL, "no trained adapter");
	for (int t = 0; trained && t < N_TEXTS; t++)
		check_completeness(lite, trained, texts[t], -1, "use-lite DePT (trained)");
}

static void
test_trained_dept_tokens_and_prediction(void)
{
	CHECK(trained != NULL, "no trained adapter");
	if (trained)
		check_tokens_and_prediction(lite, trained, "use-lite DePT (trained)");
}

/* Every method on use-lite: PT, EPT (its gate depends on E) and the probe. */
static void
test_methods_use_lite(void)
{
	const AdapterMethod methods[] = {ADAPTER_PT, ADAPTER_EPT, ADAPTER_PROBE};
	const char *names[] = {"use-lite PT", "use-lite EPT", "use-lite probe"};

	for (int m = 0; m < 3; m++)
	{
		Adapter    *a = random_adapter(lite, methods[m], ADAPTER_HEAD_LINEAR, 6, 2.0f, 11 + m);

		CHECK(a != NULL, "%s: no adapter", names[m]);
		if (a == NULL)
			continue;
		check_finite_differences(lite, a, texts[2], USE_LITE_EPS, names[m]);
		check_completeness(lite, a, texts[2], -1, names[m]);
		check_tokens_and_prediction(lite, a, names[m]);
		adapter_free(a);
	}
}

static void
test_bert_tiny(void)
{
	Adapter    *a;

	CHECK(bert != NULL, "bert-tiny-random did not open");
	if (bert == NULL)
		return;
	a = random_adapter(bert, ADAPTER_DEPT, ADAPTER_HEAD_LINEAR, 4, 8.0f, 21);
	CHECK(a != NULL, "no adapter");
	if (a == NULL)
		return;
	check_finite_differences(bert, a, texts[1], SMOOTH_EPS, "bert-tiny DePT");
	check_completeness(bert, a, texts[1], -1, "bert-tiny DePT");
	check_tokens_and_prediction(bert, a, "bert-tiny DePT");
	adapter_free(a);
}

static void
test_t5_text_head(void)
{
	const char *const labels[] = {"negative", "positive"};
	NnError		err = {0};
	Adapter    *a;

	CHECK(t5 != NULL, "t5-tiny-random did not open");
	if (t5 == NULL)
		return;
	a = random_adapter(t5, ADAPTER_DEPT, ADAPTER_HEAD_TEXT, 4, 0.0f, 31);
	CHECK(a != NULL && text_head_bind_labels(t5, a, labels, &err) == NN_OK, "%s", err.msg);
	if (a == NULL)
		return;
	check_finite_differences(t5, a, texts[0], SMOOTH_EPS, "t5-tiny text-to-text DePT");
	/* the padding id 0: a zero baseline is a singular point of the encoder's first RMSNorm */
	check_completeness(t5, a, texts[0], 0, "t5-tiny text-to-text DePT");
	check_tokens_and_prediction(t5, a, "t5-tiny text-to-text DePT");
	adapter_free(a);
}

static void
test_errors(void)
{
	ExplainOptions opt;
	Explanation e;
	NnError		err = {0};
	Adapter    *a = random_adapter(lite, ADAPTER_DEPT, ADAPTER_HEAD_LINEAR, 4, 2.0f, 41);
	const char *text = texts[0];

	if (a == NULL)
	{
		CHECK(false, "no adapter");
		return;
	}
	explain_options_default(&opt);
	opt.steps = 0;
	CHECK(explain_text(lite, NULL, a, text, strlen(text), &opt, &e, &err) == NN_ERR_ARG,
		  "0 steps accepted");
	explanation_free(&e);
	explain_options_default(&opt);
	opt.target_class = 2;
	CHECK(explain_text(lite, NULL, a, text, strlen(text), &opt, &e, &err) == NN_ERR_ARG,
		  "class 2 of 2 accepted");
	explanation_free(&e);
	opt.method = (ExplainMethod) 7;
	opt.target_class = -1;
	CHECK(explain_text(lite, NULL, a, text, strlen(text), &opt, &e, &err) == NN_ERR_ARG,
		  "method 7 accepted");
	explanation_free(&e);

	/* the other class explained: its log-probability, F(E) = log(1 - p_predicted) */
	explain_options_default(&opt);
	opt.method = EXPLAIN_GRADIENT_X_INPUT;
	opt.target_class = 1;
	CHECK(explain_text(lite, NULL, a, text, strlen(text), &opt, &e, &err) == NN_OK, "%s", err.msg);
	CHECK(e.target_class == 1 && fabs(exp(e.target_log_prob) - e.probs[1]) < 1e-5,
		  "class 1: log p %.6f, p %.6f", e.target_log_prob, e.probs[1]);
	explanation_free(&e);

	/* tolerance 0: exactly the intervals asked for */
	explain_options_default(&opt);
	opt.steps = 3;
	opt.completeness_tolerance = 0.0;
	CHECK(explain_text(lite, NULL, a, text, strlen(text), &opt, &e, &err) == NN_OK, "%s", err.msg);
	CHECK(e.steps == 3, "%d intervals, asked for 3 without refinement", e.steps);
	explanation_free(&e);

	/* an empty text: no tokens, still a prediction */
	explain_options_default(&opt);
	CHECK(explain_text(lite, NULL, a, "", 0, &opt, &e, &err) == NN_OK, "empty text: %s", err.msg);
	CHECK(e.n_tokens == 0 && e.attribution_sum == 0.0 && e.predicted_prob >= 0.5f,
		  "empty text: %d tokens, sum %.3g, p %.3f", e.n_tokens, e.attribution_sum, e.predicted_prob);
	explanation_free(&e);

	/* gradient buffers are scratch, left zeroed */
	for (size_t i = 0; i < a->lora_a.n; i++)
		CHECK(a->lora_a.g[i] == 0.0f && a->lora_b.g[i % a->lora_b.n] == 0.0f,
			  "gradient left at %zu", i);
	adapter_free(a);
}

int
main(void)
{
	NnError		err = {0};
	char		dir[512];

	nn_blas_setup(1);
	if (backbone_open(&lite, UNIT_MODEL_DIR(), &err) != NN_OK)
	{
		printf("not ok 1 - backbone_open %s: %s\n1..1\n", UNIT_MODEL_DIR(), err.msg);
		return 1;
	}
	snprintf(dir, sizeof(dir), "%s/bert-tiny-random", UNIT_HF_DIR());
	if (backbone_open(&bert, dir, &err) != NN_OK)
		printf("# %s: %s\n", dir, err.msg);
	snprintf(dir, sizeof(dir), "%s/t5-tiny-random", UNIT_HF_DIR());
	if (backbone_open(&t5, dir, &err) != NN_OK)
		printf("# %s: %s\n", dir, err.msg);
	trained = train_small_dept();

	RUN_TEST(test_trained_dept_gradient_x_input);
	RUN_TEST(test_trained_dept_integrated_gradients);
	RUN_TEST(test_trained_dept_tokens_and_prediction);
	RUN_TEST(test_methods_use_lite);
	RUN_TEST(test_bert_tiny);
	RUN_TEST(test_t5_text_head);
	RUN_TEST(test_errors);

	adapter_free(trained);
	if (bert)
		backbone_close(bert);
	if (t5)
		backbone_close(t5);
	backbone_close(lite);
	return unit_finish();
}
