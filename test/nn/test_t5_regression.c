/*
 * test_t5_regression.c: T5's text-to-text regression (train.h), the DePT
 * code's STS-B, on the tiny random fixture UNIT_HF_DIR()/t5-tiny-random.
 * The model is random: nothing here is about accuracy.
 *
 *   bins_built          dataset_bin_targets: targets rounded half to even
 *                       to 0.2 steps ("0.4" for 0.5, "1.6" for 1.5), every
 *                       step from the lowest to the highest named with one
 *                       decimal, "0.0" never "-0.0", negative bins; one
 *                       bin, too many, a classifier or binning twice refused
 *   bin_value_by_hand   adapter_bin_value: the softmax-weighted mean of the
 *                       bin values (and the argmax bin's value) of given
 *                       scores, against the formula
 *   heads_and_bins      train_prepare_regression bins for the text head
 *                       only; train_adapter refuses unbinned targets on the
 *                       text head and binned ones on a linear head
 *   text_regression_trains  DePT m = 5, s = 16, batch 8, 24 steps, prompt
 *                       lr 0.3, on 32 rows whose targets are 1.0, 2.6 or
 *                       4.2: no head tensors, 17 bins "1.0".."4.2", each
 *                       row's target ids its bin's string + "</s>"; the
 *                       mean loss of the last 4 steps is below that of the
 *                       first 4 by at least 0.4 nats; validation has
 *                       Pearson, Spearman and MSE
 *   weighted_mean       classify_texts' values equal sum softmax(s) v with
 *                       s computed here by t5_label_loglik row by row (within
 *                       1e-4), the argmax value with bin_argmax; evaluate_rows'
 *                       MSE equals the mean squared error of those values
 *   round_trip          format version 5 (head 1, no "target" tensor), read
 *                       back and bound: the same bin values and bit-identical
 *                       values, byte-identical on writing again; names that
 *                       are not numbers are refused by the writer and, forged
 *                       into the bytes, by the reader
 */
#include "ops/blas.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/adapter.h"
#include "adapters/adapter_io.h"
#include "models/backbone.h"
#include "models/t5/t5.h"
#include "train/dataset.h"
#include "train/train.h"
#include "t5_text_fixture.h"
#include "unit.h"

/* A regression dataset of the given (text, label) pairs, not yet binned. */
static Dataset *
numbers(const char *const *labels, int n)
{
	Dataset    *d = dataset_new();
	NnError		err;

	for (int i = 0; i < n; i++)
		if (dataset_add(d, "t", 1, labels[i], strlen(labels[i]), &err) != NN_OK)
			CHECK(false, "dataset_add: %s", err.msg);
	if (dataset_finish_regression(d, "score", &err) != NN_OK)
		CHECK(false, "dataset_finish_regression: %s", err.msg);
	return d;
}

/* 32 rows: a wonderful film scores 4.2, a dull one 1.0, a plain one 2.6. */
static Dataset *
review_scores(void)
{
	Dataset    *d = dataset_new();
	const char *kinds[3] = {"a wonderful and moving", "a dull and boring", "a plain"};
	const char *scores[3] = {"4.2", "1.0", "2.6"};
	NnError		err;
	char		text[128];

	for (int i = 1; i <= N_ROWS; i++)
	{
		snprintf(text, sizeof(text), "%s film number %d", kinds[i % 3], i);
		if (dataset_add(d, text, strlen(text), scores[i % 3], 3, &err) != NN_OK)
			CHECK(false, "dataset_add: %s", err.msg);
	}
	if (dataset_finish_regression(d, "score", &err) != NN_OK)
		CHECK(false, "dataset_finish_regression: %s", err.msg);
	return d;
}

/* sum_c softmax(s)_c v_c in double, v the bin names read with strtod. */
static double
weighted_mean(const float *s, char *const *names, int C)
{
	double		max = s[0],
				z = 0.0,
				mean = 0.0;

	for (int c = 1; c < C; c++)
		max = s[c] > max ? s[c] : max;
	for (int c = 0; c < C; c++)
	{
		double		p = exp(s[c] - max);

		z += p;
		mean += p * strtod(names[c], NULL);
	}
	return mean / z;
}

/* ---- tests ------------------------------------------------------------------- */

static void
test_bins_built(void)
{
	const char *labels[] = {"0.5", "1.5", "3.45", "0", "5", "4.9"};
	const char *near_zero[] = {"-0.05", "0.6"};
	const char *negative[] = {"-0.4", "0.4"};
	const char *one_bin[] = {"2.0", "2.05"};
	const char *wide[] = {"0", "20.2"};
	Dataset    *d = numbers(labels, 6);
	NnError		err;

	CHECK(dataset_bin_targets(d, 101, &err) == NN_OK, "%s", err.msg);
	CHECK(d->n_classes == 26 && d->regression && d->targets[2] == 3.45f,
		  "26 bins 0.0..5.0, still a regression with its targets (%d)", d->n_classes);
	for (int c = 0; c < d->n_classes && d->n_classes == 26; c++)
	{
		char		want[16];

		snprintf(want, sizeof(want), "%d.%d", c / 5, c % 5 * 2);
		CHECK(strcmp(d->class_names[c], want) == 0, "bin %d is \"%s\", not \"%s\"", c,
			  d->class_names[c], want);
	}
	/* 0.5 -> 0.4 and 1.5 -> 1.6 (half to even), 3.45 -> 3.4, 0, 5, 4.9 -> 5.0 */
	CHECK(d->labels[0] == 2 && d->labels[1] == 8 && d->labels[2] == 17 && d->labels[3] == 0 &&
		  d->labels[4] == 25 && d->labels[5] == 25, "labels %d %d %d %d %d %d", d->labels[0],
		  d->labels[1], d->labels[2], d->labels[3], d->labels[4], d->labels[5]);
	CHECK(dataset_bin_targets(d, 101, &err) == NN_ERR_ARG, "binning twice refused");
	dataset_free(d);

	d = numbers(near_zero, 2);
	CHECK(dataset_bin_targets(d, 101, &err) == NN_OK && d->n_classes == 4 &&
		  strcmp(d->class_names[0], "0.0") == 0 && strcmp(d->class_names[3], "0.6") == 0,
		  "-0.05 rounds to \"0.0\", not \"-0.0\" (%s)", d->class_names[0]);
	dataset_free(d);
	d = numbers(negative, 2);
	CHECK(dataset_bin_targets(d, 101, &err) == NN_OK && d->n_classes == 5 &&
		  strcmp(d->class_names[0], "-0.4") == 0 && strcmp(d->class_names[1], "-0.2") == 0 &&
		  strcmp(d->class_names[2], "0.0") == 0 && d->labels[0] == 0 && d->labels[1] == 4,
		  "negative bins: %s %s %s", d->class_names[0], d->class_names[1], d->class_names[2]);
	dataset_free(d);
	d = numbers(one_bin, 2);
	CHECK(dataset_bin_targets(d, 101, &err) == NN_ERR_ARG && strstr(err.msg, "span 1 steps"),
		  "one bin refused: %s", err.msg);
	dataset_free(d);
	d = numbers(wide, 2);
	CHECK(dataset_bin_targets(d, 101, &err) == NN_ERR_ARG && strstr(err.msg, "102 steps"),
		  "102 bins refused: %s", err.msg);
	dataset_free(d);
}

static void
test_bin_value_by_hand(void)
{
	AdapterConfig cfg = {0};
	Adapter    *a = NULL;
	NnError		err;
	const double values[3] = {0.0, 0.2, 3.4};
	const float scores[3] = {-1.5f, -0.5f, -2.0f};
	double		e0 = exp(-1.5),
				e1 = exp(-0.5),
				e2 = exp(-2.0),
				want = (e0 * 0.0 + e1 * 0.2 + e2 * 3.4) / (e0 + e1 + e2),
				v;

	cfg.method = ADAPTER_DEPT;
	cfg.d = 4;
	cfg.h_dim = 4;
	cfg.n_classes = 3;
	cfg.head = ADAPTER_HEAD_TEXT;
	cfg.regression = 1;
	CHECK(adapter_new(&a, &cfg, 2, 1, &err) == NN_OK, "adapter_new: %s", err.msg);
	if (a == NULL)
		return;
	CHECK(a->target.n == 0 && a->head_w.n == 0, "no target, no head tensors");
	CHECK(adapter_set_bin_values(a, values, &err) == NN_OK, "%s", err.msg);
	v = adapter_bin_value(a, scores);
	CHECK(fabs(v - want) < 1e-6, "weighted mean %.9f, by hand %.9f", v, want);
	a->bin_argmax = true;
	CHECK(adapter_bin_value(a, scores) == 0.2f, "argmax: the second bin's value");
	CHECK(adapter_bin_name_value(" 3.4", &v) && v == 3.4 && !adapter_bin_name_value("3.4x", &v) &&
		  !adapter_bin_name_value("nan", &v) && !adapter_bin_name_value("", &v), "bin names");
	adapter_free(a);
}

static void
test_heads_and_bins(void)
{
	TrainOptions opt;
	TrainResult res;
	Dataset    *raw = review_scores(),
			   *binned = review_scores();
	NnError		err;

	t5_text_options(&opt, ADAPTER_DEPT, 1);
	opt.head = TRAIN_HEAD_LINEAR;
	CHECK(train_prepare_regression(model, &opt, raw, &err) == NN_OK && raw->n_classes == 1,
		  "a linear head keeps the numbers");
	opt.head = TRAIN_HEAD_AUTO;
	CHECK(train_adapter(model, raw, &opt, &res, &err) == NN_ERR_ARG && strstr(err.msg, "binned"),
		  "unbinned targets on the text head refused: %s", err.msg);
	CHECK(train_prepare_regression(model, &opt, binned, &err) == NN_OK && binned->n_classes == 17,
		  "the text head bins them (%d bins)", binned->n_classes);
	CHECK(train_prepare_regression(model, &opt, binned, &err) == NN_OK && binned->n_classes == 17,
		  "a binned dataset is left alone");
	opt.head = TRAIN_HEAD_LINEAR;
	CHECK(train_adapter(model, binned, &opt, &res, &err) == NN_ERR_ARG &&
		  strstr(err.msg, "text-to-text"), "binned targets on a linear head refused: %s", err.msg);
	dataset_free(raw);
	dataset_free(binned);
}

static void
test_text_regression_trains(void)
{
	TrainOptions opt;
	LossLog		log = {0};
	NnError		err;
	const Adapter *a;
	const ClassMetrics *m;
	double		first,
				last;

	t5_text_options(&opt, ADAPTER_DEPT, 24);
	opt.progress = record_loss;
	opt.progress_arg = &log;
	if (train_prepare_regression(model, &opt, ds, &err) != NN_OK ||
		train_adapter(model, ds, &opt, &dept_run, &err) != NN_OK)
	{
		CHECK(false, "training: %s", err.msg);
		return;
	}
	a = dept_run.adapter;
	CHECK(a->cfg.head == ADAPTER_HEAD_TEXT && a->cfg.regression && a->cfg.n_classes == 17 &&
		  a->head_w.n == 0 && a->target.n == 0, "a text-to-text regression over 17 bins, no tensors "
		  "but the prompt and low-rank pair");
	CHECK(strcmp(ds->class_names[0], "1.0") == 0 && strcmp(ds->class_names[16], "4.2") == 0 &&
		  a->bin_values != NULL && a->bin_values[8] == 2.6f, "bins 1.0..4.2, bound values");
	for (int i = 0; i < 3; i++)
	{
		int32_t		ids[64];
		const char *name = ds->class_names[ds->labels[i]];
		int			k = model->ops->tokenize(model, name, strlen(name), ids, 64);

		CHECK(ds->targets[i] == (float) strtod(name, NULL), "row %d: bin \"%s\" of %g", i, name,
			  ds->targets[i]);
		for (int t = 0; t < k && k <= a->label_len; t++)
			CHECK(a->label_ids[ds->labels[i] * a->label_len + t] == ids[t], "row %d target id %d", i, t);
	}
	loss_ends(&log, 24, &first, &last);
	printf("# text-to-text regression: loss %.3f (first 4 steps) -> %.3f (last 4)\n", first, last);
	CHECK(isfinite(first) && last < first - 0.4, "loss decreases: %.4f -> %.4f", first, last);
	m = dept_run.valid_metrics;
	CHECK(m != NULL && m->regression && m->total == dept_run.n_valid && isfinite(m->pearson) &&
		  isfinite(m->spearman) && m->mse >= 0, "validation Pearson, Spearman and MSE");
}

static void
test_weighted_mean(void)
{
	Adapter    *a = dept_run.adapter;
	int			C = ds->n_classes,
				rows[N_ROWS];
	size_t		lens[N_ROWS];
	float	   *scores = malloc(sizeof(float) * N_ROWS * C),
				values[N_ROWS],
				argmax_values[N_ROWS];
	double		worst = 0.0,
				sq = 0.0;
	BackboneRun *run;
	ClassMetrics *m = NULL;
	NnError		err;

	if (a == NULL)
	{
		CHECK(false, "no trained adapter");
		free(scores);
		return;
	}
	run = model->ops->run_new(model, 4, adapter_prompt_rows(&a->cfg) + a->cfg.max_len);
	for (int i = 0; i < N_ROWS; i++)
	{
		rows[i] = i;
		lens[i] = ds->text_lens[i];
	}
	direct_scores(a, (const char *const *) ds->texts, N_ROWS, scores);
	CHECK(classify_texts(model, run, a, (const char *const *) ds->texts, lens, N_ROWS, 4, values,
						 &err) == NN_OK, "%s", err.msg);
	for (int i = 0; i < N_ROWS; i++)
	{
		double		want = weighted_mean(scores + (size_t) i * C, ds->class_names, C);

		worst = fabs(values[i] - want) > worst ? fabs(values[i] - want) : worst;
		sq += (values[i] - ds->targets[i]) * (values[i] - ds->targets[i]);
		CHECK(values[i] >= 1.0f && values[i] <= 4.2f, "row %d: %g inside the bins", i, values[i]);
	}
	printf("# classify_texts vs sum softmax(t5_label_loglik) v: max |diff| %.3g\n", worst);
	CHECK(worst < 1e-4, "values are the weighted means of the bins (%.3g)", worst);
	CHECK(evaluate_rows(model, a, ds, rows, N_ROWS, 8, &m, &err) == NN_OK, "%s", err.msg);
	CHECK(m && m->regression && fabs(m->mse - sq / N_ROWS) < 1e-4, "evaluate_rows MSE %.6f, by hand %.6f",
		  m ? m->mse : -1, sq / N_ROWS);
	metrics_free(m);
	a->bin_argmax = true;
	CHECK(classify_texts(model, run, a, (const char *const *) ds->texts, lens, N_ROWS, 4,
						 argmax_values, &err) == NN_OK, "%s", err.msg);
	for (int i = 0; i < N_ROWS; i++)
	{
		const float *s = scores + (size_t) i * C;
		int			best = 0;

		for (int c = 1; c < C; c++)
			best = s[c] > s[best] ? c : best;
		CHECK(argmax_values[i] == (float) strtod(ds->class_names[best], NULL),
			  "row %d: argmax %g, bin %s", i, argmax_values[i], ds->class_names[best]);
	}
	a->bin_argmax = false;
	model->ops->run_free(run);
	free(scores);
}

static void
test_round_trip(void)
{
	Adapter    *a = dept_run.adapter,
			   *b = NULL;
	uint8_t    *buf = NULL,
			   *again = NULL;
	size_t		len = 0,
				len2 = 0,
				lens[2];
	char		fp[65],
			  **names = NULL;
	const char *texts[2] = {"a fine film", "a dull film"};
	const char *words[17] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n",
	"o", "p", "q"};
	float		va[2],
				vb[2];
	BackboneRun *run;
	NnError		err;

	if (a == NULL)
		return;
	lens[0] = strlen(texts[0]);
	lens[1] = strlen(texts[1]);
	CHECK(adapter_serialize(a, model->fingerprint, words, &buf, &len, &err) == NN_ERR_ARG &&
		  strstr(err.msg, "not a number"), "names that are not numbers: %s", err.msg);
	CHECK(adapter_serialize(a, model->fingerprint, (const char *const *) ds->class_names, &buf, &len,
							&err) == NN_OK, "%s", err.msg);
	if (buf == NULL)
		return;
	CHECK(buf[4] == ADAPTER_IO_VERSION_TEXT_REGRESSION && buf[96] == ADAPTER_HEAD_TEXT,
		  "format version %d, head %d", buf[4], buf[96]);
	CHECK(adapter_deserialize(buf, len, 4, &b, fp, &names, &err) == NN_OK, "%s", err.msg);
	if (b != NULL)
	{
		run = model->ops->run_new(model, 4, adapter_prompt_rows(&b->cfg) + b->cfg.max_len);
		CHECK(b->cfg.regression && b->cfg.head == ADAPTER_HEAD_TEXT && b->cfg.n_classes == 17 &&
			  b->target.n == 0 && b->bin_values == NULL, "read back: a text regression, unbound");
		CHECK(text_head_bind_labels(model, b, (const char *const *) names, &err) == NN_OK &&
			  memcmp(a->bin_values, b->bin_values, sizeof(float) * 17) == 0, "the same bin values");
		CHECK(classify_texts(model, run, a, texts, lens, 2, 4, va, &err) == NN_OK &&
			  classify_texts(model, run, b, texts, lens, 2, 4, vb, &err) == NN_OK &&
			  memcmp(va, vb, sizeof(va)) == 0, "bit-identical values");
		CHECK(adapter_serialize(b, model->fingerprint, (const char *const *) names, &again, &len2,
								&err) == NN_OK && len2 == len && memcmp(buf, again, len) == 0,
			  "one encoding");
		model->ops->run_free(run);
		adapter_free_class_names(names, b->cfg.n_classes);
		adapter_free(b);
	}
	/* the first bin's name "1.0" forged into "x.0", the CRC resealed */
	buf[ADAPTER_IO_HEADER_SIZE + 8] = 'x';
	{
		uint32_t	crc = adapter_io_crc32(buf, len - 4);

		for (int i = 0; i < 4; i++)
			buf[len - 4 + i] = (uint8_t) (crc >> (8 * i));
	}
	b = NULL;
	CHECK(adapter_deserialize(buf, len, 4, &b, fp, &names, &err) == NN_ERR_FORMAT && b == NULL &&
		  strstr(err.msg, "\"x.0\""), "the reader refuses it: %s", err.msg);
	free(buf);
	free(again);
}

int
main(void)
{
	if (!t5_text_open())
		return 1;
	ds = review_scores();
	RUN_TEST(test_bins_built);
	RUN_TEST(test_bin_value_by_hand);
	RUN_TEST(test_heads_and_bins);
	RUN_TEST(test_text_regression_trains);
	RUN_TEST(test_weighted_mean);
	RUN_TEST(test_round_trip);
	t5_text_close();
	return unit_finish();
}
