/*
 * explain_faithfulness.c: the deletion test of token attributions
 * (src/nn/train/explain.h), run by bench/explain_faithfulness.sh.
 *
 *   explain_faithfulness MODEL_DIR ADAPTER TEST.tsv [N_TEXTS] [SEED] [IG_MAX_STEPS]
 *
 * For each of the first N_TEXTS rows of TEST.tsv (held out from the
 * adapter's training) the predicted class c and its probability p are
 * computed; then, for k = 1..3, the k tokens with the largest attribution
 * to log p_c are deleted -- their embeddings replaced by the baseline
 * (zero), the text and positions unchanged -- and the drop p - p_k(c) is
 * recorded.  Orders compared: gradient x input, integrated gradients
 * (default options but at most IG_MAX_STEPS intervals, default 64: the
 * ranking needs no 1% completeness, and 512 costs ~3 s a text) and a
 * random order (a control; seeded).  A faithful
 * method deletes the evidence the prediction rests on, so its drops are
 * the largest.  Prints a JSON report on stdout.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adapters/adapter_io.h"
#include "base/rng.h"
#include "ops/blas.h"
#include "train/dataset.h"
#include "train/explain.h"

#define MAX_K 3
#define N_ORDERS 3

static const char *const order_names[N_ORDERS] = {"gradient_x_input", "integrated_gradients", "random"};

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static Adapter *
load_adapter(const Backbone *bb, const char *path)
{
	FILE	   *f = fopen(path, "rb");
	uint8_t    *buf = NULL;
	long		len;
	Adapter    *ad = NULL;
	char		fp[65];
	char	  **names = NULL;
	NnError		err = {0};

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
		fseek(f, 0, SEEK_SET) != 0 || (buf = malloc(len + 1)) == NULL ||
		fread(buf, 1, len, f) != (size_t) len)
		fprintf(stderr, "explain_faithfulness: could not read %s\n", path);
	else if (adapter_deserialize(buf, (size_t) len, 1, &ad, fp, &names, &err) != NN_OK)
		fprintf(stderr, "explain_faithfulness: %s: %s\n", path, err.msg);
	else
		adapter_free_class_names(names, ad->cfg.n_classes);
	if (f)
		fclose(f);
	free(buf);
	return ad;
}

/* order[0..n): token indexes by decreasing attribution (insertion sort: n is small). */
static void
rank_tokens(const float *attr, int n, int *order)
{
	for (int i = 0; i < n; i++)
	{
		int			j = i;

		while (j > 0 && attr[order[j - 1]] < attr[i])
		{
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
}

/* A random order of n tokens (Fisher-Yates). */
static void
shuffle_tokens(Rng *rng, int n, int *order)
{
	for (int i = 0; i < n; i++)
		order[i] = i;
	for (int i = n - 1; i > 0; i--)
	{
		int			j = (int) rng_below(rng, (uint64_t) i + 1);
		int			t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
}

/* drops[k-1] += p - p(class | the first k tokens of order deleted), k = 1..3. */
static int
add_deletion_drops(const Backbone *bb, BackboneRun *run, Adapter *ad, const Explanation *e,
				   const int *order, double *drops)
{
	float		scale[512];
	double		log_probs[64];
	NnError		err = {0};

	if (e->n_tokens > (int) (sizeof(scale) / sizeof(scale[0])) || e->n_classes > 64)
		return -1;
	for (int i = 0; i < e->n_tokens; i++)
		scale[i] = 1.0f;
	for (int k = 1; k <= MAX_K; k++)
	{
		if (k <= e->n_tokens)
			scale[order[k - 1]] = 0.0f;
		if (explain_log_probs(bb, run, ad, e->ids, e->n_tokens, -1, scale, log_probs, &err) != NN_OK)
		{
			fprintf(stderr, "explain_faithfulness: %s\n", err.msg);
			return -1;
		}
		drops[k - 1] += e->predicted_prob - exp(log_probs[e->predicted_class]);
	}
	return 0;
}

/* Explain text with method; the deletion drops of its order into drops. */
static int
run_method(const Backbone *bb, BackboneRun *run, Adapter *ad, const char *text, ExplainMethod method,
		   int max_steps, int *order, double *drops, double *seconds, int *steps)
{
	ExplainOptions opt;
	Explanation e;
	NnError		err = {0};
	double		t0 = now_seconds();
	int			rc = -1;

	explain_options_default(&opt);
	opt.method = method;
	opt.max_steps = max_steps;
	if (explain_text(bb, run, ad, text, strlen(text), &opt, &e, &err) != NN_OK)
		fprintf(stderr, "explain_faithfulness: %s\n", err.msg);
	else
	{
		*seconds += now_seconds() - t0;
		*steps += e.steps;
		rank_tokens(e.attributions, e.n_tokens, order);
		rc = add_deletion_drops(bb, run, ad, &e, order, drops);
	}
	explanation_free(&e);
	return rc;
}

/* The drops of the random order, with the prediction of a gradient x input explanation. */
static int
run_random(const Backbone *bb, BackboneRun *run, Adapter *ad, const char *text, Rng *rng,
		   int *order, double *drops)
{
	ExplainOptions opt;
	Explanation e;
	NnError		err = {0};
	int			rc = -1;

	explain_options_default(&opt);
	opt.method = EXPLAIN_GRADIENT_X_INPUT;
	if (explain_text(bb, run, ad, text, strlen(text), &opt, &e, &err) != NN_OK)
		fprintf(stderr, "explain_faithfulness: %s\n", err.msg);
	else
	{
		shuffle_tokens(rng, e.n_tokens, order);
		rc = add_deletion_drops(bb, run, ad, &e, order, drops);
	}
	explanation_free(&e);
	return rc;
}

int
main(int argc, char **argv)
{
	Backbone   *bb = NULL;
	Dataset    *test = NULL;
	Adapter    *ad;
	BackboneRun *run;
	NnError		err = {0};
	double		drops[N_ORDERS][MAX_K] = {{0}},
				seconds[2] = {0};
	int			steps[2] = {0},
				order[512],
				n,
				max_steps;
	Rng			rng;

	if (argc < 4)
	{
		fprintf(stderr, "usage: explain_faithfulness MODEL_DIR ADAPTER TEST.tsv [N_TEXTS] [SEED] "
				"[IG_MAX_STEPS]\n");
		return 2;
	}
	nn_blas_setup(1);
	if (backbone_open(&bb, argv[1], &err) != NN_OK ||
		dataset_load(&test, argv[3], '\t', "text", "label", &err) != NN_OK)
	{
		fprintf(stderr, "explain_faithfulness: %s\n", err.msg);
		return 1;
	}
	if ((ad = load_adapter(bb, argv[2])) == NULL)
		return 1;
	n = argc > 4 ? atoi(argv[4]) : 100;
	if (n > test->n_rows)
		n = test->n_rows;
	rng_seed(&rng, argc > 5 ? strtoull(argv[5], NULL, 10) : 1);
	max_steps = argc > 6 ? atoi(argv[6]) : 64;
	run = bb->ops->run_new(bb, 1, adapter_prompt_rows(&ad->cfg) + ad->cfg.max_len);
	for (int t = 0; t < n; t++)
	{
		const char *text = test->texts[t];

		if (run_method(bb, run, ad, text, EXPLAIN_GRADIENT_X_INPUT, max_steps, order, drops[0], &seconds[0],
					   &steps[0]) != 0 ||
			run_method(bb, run, ad, text, EXPLAIN_INTEGRATED_GRADIENTS, max_steps,
					   order, drops[1],
					   &seconds[1], &steps[1]) != 0 ||
			run_random(bb, run, ad, text, &rng, order, drops[2]) != 0)
			return 1;
	}
	printf("{\"texts\": %d, \"mean_probability_drop\": {", n);
	for (int o = 0; o < N_ORDERS; o++)
	{
		printf("%s\"%s\": [", o ? ", " : "", order_names[o]);
		for (int k = 0; k < MAX_K; k++)
			printf("%s%.4f", k ? ", " : "", drops[o][k] / n);
		printf("]");
	}
	printf("}, \"ms_per_text\": {\"gradient_x_input\": %.1f, \"integrated_gradients\": %.1f}, "
		   "\"ig_max_steps\": %d, \"mean_ig_steps\": %.1f}\n", 1000 * seconds[0] / n,
		   1000 * seconds[1] / n, max_steps, (double) steps[1] / n);
	bb->ops->run_free(run);
	adapter_free(ad);
	dataset_free(test);
	backbone_close(bb);
	return 0;
}
