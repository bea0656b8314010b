/*
 * t5_text_fixture.h: what the tests of T5's text-to-text head
 * (test_t5_text.c: classification, test_t5_regression.c: regression over
 * bins) share, on the tiny random fixture UNIT_HF_DIR()/t5-tiny-random:
 * the open model and the test's data set of N_ROWS rows (t5_text_open,
 * t5_text_close), the training options of their DePT runs
 * (t5_text_options), the losses of each step (record_loss, loss_ends), and
 * the rank-classification scores computed row by row with t5_label_loglik
 * (direct_scores) to check classify_texts against.
 */
#ifndef DEPT_TEST_T5_TEXT_FIXTURE_H
#define DEPT_TEST_T5_TEXT_FIXTURE_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/adapter.h"
#include "models/backbone.h"
#include "models/t5/t5.h"
#include "ops/blas.h"
#include "train/dataset.h"
#include "train/train.h"
#include "unit.h"

#define N_ROWS 32
#define MAX_STEPS_RECORDED 64

static Backbone *model;
static Dataset *ds;
static TrainResult dept_run;	/* the DePT run the later tests read */

/* One thread; model = the fixture.  False (with a TAP line) when it does not open. */
static inline bool
t5_text_open(void)
{
	char		dir[4096];
	NnError		err;

	nn_blas_setup(1);
	snprintf(dir, sizeof(dir), "%s/t5-tiny-random", UNIT_HF_DIR());
	if (t5_open(&model, dir, &err) != NN_OK)
	{
		printf("not ok 1 - open %s: %s\n1..1\n", dir, err.msg);
		return false;
	}
	return true;
}

static inline void
t5_text_close(void)
{
	train_result_free(&dept_run);
	dataset_free(ds);
	backbone_close(model);
}

/* DePT-sized options: m = 5, s = 16, batch 8, steps steps, prompt lr 0.3, a quarter for validation. */
static inline void
t5_text_options(TrainOptions *opt, AdapterMethod method, long steps)
{
	train_options_default(opt);
	opt->method = method;
	opt->prompt_len = 5;
	opt->max_len = 16;
	opt->batch_size = 8;
	opt->epochs = 0;
	opt->max_steps = steps;
	opt->lr_prompt = 0.3f;		/* the paper's prompt learning rate for T5 */
	opt->warmup_ratio = 0.0f;
	opt->valid_fraction = 0.25;
	opt->seed = 7;
}

typedef struct LossLog
{
	int			n;
	double		loss[MAX_STEPS_RECORDED];
} LossLog;

static inline bool
record_loss(void *arg, const TrainProgress *p)
{
	LossLog    *log = arg;

	if (log->n < MAX_STEPS_RECORDED)
		log->loss[log->n++] = p->loss;
	return true;
}

/* The mean loss of the first 4 and of the last 4 steps of a run of steps steps (0 and 0 otherwise). */
static inline void
loss_ends(const LossLog *log, int steps, double *first, double *last)
{
	*first = 0;
	*last = 0;
	for (int i = 0; i < 4 && log->n == steps; i++)
	{
		*first += log->loss[i] / 4;
		*last += log->loss[steps - 4 + i] / 4;
	}
}

/*
 * Candidates as t5.h wants them: each label tokenized ("</s>" appended),
 * padded with -100, into a malloc'ed (C, *len) array.
 */
static inline int32_t *
tokenize_candidates(const char *const *names, int C, int *len)
{
	int32_t		ids[64];
	int32_t    *cands;
	int		   *count = malloc(sizeof(int) * C);

	*len = 1;
	for (int c = 0; c < C; c++)
		if ((count[c] = model->ops->tokenize(model, names[c], strlen(names[c]), ids, 64)) > *len)
			*len = count[c];
	cands = malloc(sizeof(int32_t) * C * *len);
	for (int c = 0; c < C; c++)
	{
		model->ops->tokenize(model, names[c], strlen(names[c]), ids, 64);
		for (int t = 0; t < *len; t++)
			cands[c * *len + t] = t < count[c] ? ids[t] : -100;
	}
	free(count);
	return cands;
}

/* Each text's scores of data's classes (n, C), by t5_label_loglik one row at a time. */
static inline void
direct_scores_of(Adapter *a, const Dataset *data, const char *const *texts, int n, float *scores)
{
	const char *const *names = (const char *const *) data->class_names;
	int			C = data->n_classes,
				s = a->cfg.max_len,
				P = adapter_prompt_rows(&a->cfg),
				d = model->d_embed,
				L;
	int32_t    *cands = tokenize_candidates(names, C, &L),
				ids[64];
	float	   *E = malloc(sizeof(float) * s * d),
			   *X = malloc(sizeof(float) * (P + s) * d);
	uint8_t		e_mask[64],
				x_mask[128];
	BackboneRun *run = model->ops->run_new(model, 1, P + s);
	NnError		err;

	for (int i = 0; i < n; i++)
	{
		int			k = model->ops->tokenize(model, texts[i], strlen(texts[i]), ids, s);

		model->ops->embed_tokens(model, ids, k, E, e_mask);
		adapter_forward(a, E, e_mask, 1, k, X, x_mask);
		if (t5_label_loglik(model, run, X, x_mask, 1, P + k, cands, C, L, scores + (size_t) i * C,
							&err) != NN_OK)
			CHECK(false, "t5_label_loglik: %s", err.msg);
	}
	model->ops->run_free(run);
	free(E);
	free(X);
	free(cands);
}

/* direct_scores_of the test's data set ds. */
static inline void
direct_scores(Adapter *a, const char *const *texts, int n, float *scores)
{
	direct_scores_of(a, ds, texts, n, scores);
}

#endif
