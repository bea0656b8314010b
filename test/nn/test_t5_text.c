/*
 * test_t5_text.c: text-to-text classification with T5 (train.h), the
 * DePT paper's setting, on the tiny random v1.0 fixture
 * UNIT_HF_DIR()/t5-tiny-random.
 *
 * Data: 32 rows, two classes whose labels are the strings "positive" and
 * "negative" ("a wonderful and moving film number i" / "a dull and boring
 * film number i").  The model is random, so nothing here is about
 * accuracy; the checks are about what is computed.
 *
 *   head_choice        text-to-text is the default on T5 (not for a probe),
 *                      refused for a probe or a non-T5 backbone when asked
 *                      for explicitly
 *   dept_text_trains   DePT m = 5, s = 16, batch 8, 24 steps, prompt lr 0.3,
 *                      a quarter of the rows for validation: no head tensors,
 *                      parameters = m d + r (s + d), each class's target ids
 *                      = its label tokenized + "</s>", padded with -1; the
 *                      mean loss of the last 4 steps is below the mean of
 *                      the first 4 by at least 0.4 nats (per label token,
 *                      over a 1,000-piece vocabulary; measured 7.62 -> 6.96,
 *                      and 7.75 -> 7.22 at lr 0.1); validation metrics exist
 *                      (accuracy 0.5: the weights are random)
 *   rank_classification classify_texts' probabilities equal the softmax of
 *                      t5_label_loglik scores computed here row by row from
 *                      independently tokenized candidates (within 1e-5);
 *                      evaluate_rows' accuracy equals the argmax of those
 *                      scores against the labels
 *   text_round_trip    the trained adapter serialized (format version 2),
 *                      read back, labels bound again: identical label ids
 *                      and bit-identical probabilities; without binding,
 *                      classify_texts refuses
 *   pt_ept_text        PT and EPT train 6 steps text-to-text: finite tensors,
 *                      prompt moved, no head
 *   text_early_stopping evaluation every step, patience 2: training stops 2
 *                      evaluations after the best validation accuracy
 *   linear_head_option TRAIN_HEAD_LINEAR keeps the mean-pool + linear head
 *                      (format version 1); a probe on T5 trains its head
 *   many_labels        40 labels, batch 8: rows are ranked one at a time
 *                      (the decoder holds max(batch, C) sequences), the
 *                      probabilities unchanged
 *   label_collisions   labels that tokenize to the same ids ("fi" and the
 *                      ligature U+FB01, equal after NFKC) are refused
 */
#include "ops/blas.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/adapter.h"
#include "adapters/adapter_io.h"
#include "models/backbone.h"
#include "train/dataset.h"
#include "models/t5/t5.h"
#include "train/train.h"
#include "t5_text_fixture.h"
#include "unit.h"

static Dataset *
make_dataset(const char *pos, const char *neg)
{
	Dataset    *d = dataset_new();
	NnError		err;
	char		text[128];

	for (int i = 1; i <= N_ROWS; i++)
	{
		const char *label = i % 2 == 0 ? pos : neg;

		snprintf(text, sizeof(text), "%s film number %d",
				 i % 2 == 0 ? "a wonderful and moving" : "a dull and boring", i);
		if (dataset_add(d, text, strlen(text), label, strlen(label), &err) != NN_OK)
			CHECK(false, "dataset_add: %s", err.msg);
	}
	if (dataset_finish(d, &err) != NN_OK)
		CHECK(false, "dataset_finish: %s", err.msg);
	return d;
}

static bool
all_finite(const AdapterParam *p)
{
	for (size_t i = 0; i < p->n; i++)
		if (!isfinite(p->w[i]))
			return false;
	return true;
}

static void
softmax(float *x, int n)
{
	float		max = x[0];
	double		sum = 0;

	for (int i = 1; i < n; i++)
		if (x[i] > max)
			max = x[i];
	for (int i = 0; i < n; i++)
		sum += (x[i] = expf(x[i] - max));
	for (int i = 0; i < n; i++)
		x[i] = (float) (x[i] / sum);
}

/* ---- tests ------------------------------------------------------------------- */

static void
test_head_choice(void)
{
	TrainOptions opt;
	AdapterHead head = (AdapterHead) -1;
	Backbone   *lite = NULL;
	NnError		err;

	train_options_default(&opt);
	CHECK(opt.head == TRAIN_HEAD_AUTO, "the default asks for nothing in particular");
	CHECK(train_choose_head(model, &opt, &head, &err) == NN_OK && head == ADAPTER_HEAD_TEXT,
		  "T5 DePT defaults to text-to-text");
	opt.method = ADAPTER_PROBE;
	CHECK(train_choose_head(model, &opt, &head, &err) == NN_OK && head == ADAPTER_HEAD_LINEAR,
		  "a T5 probe keeps its linear head");
	opt.head = TRAIN_HEAD_TEXT;
	CHECK(train_choose_head(model, &opt, &head, &err) == NN_ERR_ARG &&
		  strstr(err.msg, "probe") != NULL, "a text-to-text probe is refused: %s", err.msg);
	opt.method = ADAPTER_EPT;
	opt.head = TRAIN_HEAD_LINEAR;
	CHECK(train_choose_head(model, &opt, &head, &err) == NN_OK && head == ADAPTER_HEAD_LINEAR,
		  "linear on request");
	if (backbone_open(&lite, UNIT_MODEL_DIR(), &err) != NN_OK)
	{
		CHECK(false, "use-lite: %s", err.msg);
		return;
	}
	opt.head = TRAIN_HEAD_AUTO;
	CHECK(train_choose_head(lite, &opt, &head, &err) == NN_OK && head == ADAPTER_HEAD_LINEAR,
		  "use-lite defaults to linear");
	opt.head = TRAIN_HEAD_TEXT;
	CHECK(train_choose_head(lite, &opt, &head, &err) == NN_ERR_ARG &&
		  strstr(err.msg, "T5") != NULL, "text-to-text needs T5: %s", err.msg);
	{
		TrainResult res;

		opt.max_steps = 1;
		CHECK(train_adapter(lite, ds, &opt, &res, &err) == NN_ERR_ARG && res.adapter == NULL,
			  "train_adapter refuses it too");
	}
	backbone_close(lite);
}

static void
test_dept_text_trains(void)
{
	TrainOptions opt;
	LossLog		log = {0};
	NnError		err;
	const Adapter *a;
	int			r;
	double		first,
				last;

	t5_text_options(&opt, ADAPTER_DEPT, 24);
	opt.progress = record_loss;
	opt.progress_arg = &log;
	if (train_adapter(model, ds, &opt, &dept_run, &err) != NN_OK)
	{
		CHECK(false, "train_adapter: %s", err.msg);
		return;
	}
	a = dept_run.adapter;
	r = a->cfg.rank;
	CHECK(a->cfg.head == ADAPTER_HEAD_TEXT && a->head_w.n == 0 && a->head_b.n == 0,
		  "text-to-text: no head tensors");
	CHECK(r > 0 && dept_run.param_count == (size_t) (5 * 32 + r * (16 + 32)) &&
		  dept_run.param_count == adapter_param_count(&a->cfg),
		  "parameters m d + r (s + d) = %zu (r = %d)", dept_run.param_count, r);
	CHECK(dept_run.steps == 24 && log.n == 24, "24 steps (%ld, %d recorded)", dept_run.steps, log.n);
	CHECK(dept_run.n_valid == 8 && dept_run.n_train == 24, "split %d / %d", dept_run.n_train,
		  dept_run.n_valid);
	CHECK(dept_run.train_tokens > 0, "tokens counted");
	for (int c = 0; c < ds->n_classes; c++)
	{
		int32_t		ids[64];
		int			k = model->ops->tokenize(model, ds->class_names[c],
											 strlen(ds->class_names[c]), ids, 64);

		CHECK(k >= 2 && ids[k - 1] == t5_eos_id(model) && k <= a->label_len, "label %d: %d ids", c, k);
		for (int t = 0; t < a->label_len && k <= a->label_len; t++)
			CHECK(a->label_ids[c * a->label_len + t] == (t < k ? ids[t] : -1),
				  "label %d target id %d", c, t);
	}
	loss_ends(&log, 24, &first, &last);
	printf("# text-to-text DePT: loss %.3f (first 4 steps) -> %.3f (last 4), valid accuracy %.3f\n",
		   first, last, dept_run.valid_metrics ? dept_run.valid_metrics->accuracy : -1.0);
	CHECK(isfinite(first) && first > 1.0 && last < first - 0.4, "loss decreases: %.4f -> %.4f",
		  first, last);
	CHECK(dept_run.valid_metrics != NULL && dept_run.valid_metrics->total == 8 &&
		  dept_run.best_step > 0, "validation metrics of the best checkpoint");
	CHECK(all_finite(&a->prompt) && all_finite(&a->lora_a) && all_finite(&a->lora_b),
		  "finite tensors");
}

static void
test_rank_classification(void)
{
	Adapter    *a = dept_run.adapter;
	const char *texts[6] = {"a fine film", "a dull and boring film number 3",
		"a wonderful and moving film number 4", "", "what a film", "terrible"};
	float		probs[12],
				scores[12],
				all_probs[N_ROWS * 2],
				all_scores[N_ROWS * 2];
	size_t		lens[N_ROWS];
	int			rows[N_ROWS],
				correct = 0;
	double		worst = 0;
	BackboneRun *run;
	ClassMetrics *m = NULL;
	NnError		err;

	if (a == NULL)
	{
		CHECK(false, "no trained adapter");
		return;
	}
	run = model->ops->run_new(model, 4, adapter_prompt_rows(&a->cfg) + a->cfg.max_len);
	for (int i = 0; i < 6; i++)
		lens[i] = strlen(texts[i]);
	CHECK(classify_texts(model, run, a, texts, lens, 6, 4, probs, &err) == NN_OK, "%s", err.msg);
	direct_scores(a, texts, 6, scores);
	for (int i = 0; i < 6; i++)
	{
		CHECK(scores[2 * i] < 0 && scores[2 * i + 1] < 0, "row %d: log-likelihoods %g %g", i,
			  scores[2 * i], scores[2 * i + 1]);
		softmax(scores + 2 * i, 2);
		for (int c = 0; c < 2; c++)
			if (fabs(probs[2 * i + c] - scores[2 * i + c]) > worst)
				worst = fabs(probs[2 * i + c] - scores[2 * i + c]);
		CHECK(fabsf(probs[2 * i] + probs[2 * i + 1] - 1.0f) < 1e-6f, "row %d sums to 1", i);
	}
	printf("# classify_texts vs softmax(t5_label_loglik): max |diff| %.3g\n", worst);
	CHECK(worst < 1e-5, "probabilities are the softmax of the label log-likelihoods (%.3g)", worst);

	/* evaluate_rows predicts the argmax of the same scores */
	for (int i = 0; i < N_ROWS; i++)
	{
		rows[i] = i;
		lens[i] = ds->text_lens[i];
	}
	direct_scores(a, (const char *const *) ds->texts, N_ROWS, all_scores);
	CHECK(classify_texts(model, run, a, (const char *const *) ds->texts, lens, N_ROWS, 4, all_probs,
						 &err) == NN_OK, "%s", err.msg);
	for (int i = 0; i < N_ROWS; i++)
	{
		int			pred = all_scores[2 * i + 1] > all_scores[2 * i];

		correct += pred == ds->labels[i];
		CHECK((all_probs[2 * i + 1] > all_probs[2 * i]) == pred, "row %d: argmax", i);
	}
	CHECK(evaluate_rows(model, a, ds, rows, N_ROWS, 8, &m, &err) == NN_OK, "%s", err.msg);
	CHECK(m && m->total == N_ROWS && fabs(m->accuracy - (double) correct / N_ROWS) < 1e-12,
		  "evaluate_rows accuracy %.4f, argmax of the scores %.4f", m ? m->accuracy : -1,
		  (double) correct / N_ROWS);
	metrics_free(m);
	model->ops->run_free(run);
}

static void
test_text_round_trip(void)
{
	Adapter    *a = dept_run.adapter,
			   *b = NULL;
	uint8_t    *buf = NULL;
	size_t		len = 0,
				lens[3];
	char		fp[65],
			  **names = NULL;
	const char *texts[3] = {"a fine film", "a dull film", "moving"};
	float		pa[6],
				pb[6];
	BackboneRun *run;
	NnError		err;

	if (a == NULL)
		return;
	for (int i = 0; i < 3; i++)
		lens[i] = strlen(texts[i]);
	CHECK(adapter_serialize(a, model->fingerprint, (const char *const *) ds->class_names, &buf, &len,
							&err) == NN_OK, "%s", err.msg);
	CHECK(len > 8 && buf[4] == 2, "format version 2");
	CHECK(adapter_deserialize(buf, len, 4, &b, fp, &names, &err) == NN_OK, "%s", err.msg);
	if (b == NULL)
	{
		free(buf);
		return;
	}
	run = model->ops->run_new(model, 4, adapter_prompt_rows(&b->cfg) + b->cfg.max_len);
	CHECK(b->cfg.head == ADAPTER_HEAD_TEXT && b->label_ids == NULL, "text head, labels not yet bound");
	CHECK(classify_texts(model, run, b, texts, lens, 3, 4, pb, &err) == NN_ERR_ARG,
		  "unbound labels refused");
	CHECK(text_head_bind_labels(model, b, (const char *const *) names, &err) == NN_OK, "%s", err.msg);
	CHECK(b->label_len == a->label_len &&
		  memcmp(a->label_ids, b->label_ids, sizeof(int32_t) * 2 * a->label_len) == 0,
		  "the same label ids");
	CHECK(classify_texts(model, run, a, texts, lens, 3, 4, pa, &err) == NN_OK &&
		  classify_texts(model, run, b, texts, lens, 3, 4, pb, &err) == NN_OK &&
		  memcmp(pa, pb, sizeof(pa)) == 0, "bit-identical probabilities after the round trip");
	model->ops->run_free(run);
	adapter_free_class_names(names, b->cfg.n_classes);
	adapter_free(b);
	free(buf);
}

static void
test_pt_ept_text(void)
{
	AdapterMethod methods[2] = {ADAPTER_PT, ADAPTER_EPT};

	for (int k = 0; k < 2; k++)
	{
		TrainOptions opt;
		TrainResult res;
		LossLog		log = {0};
		NnError		err;
		float	   *init = NULL;
		int32_t		ids[8];
		uint8_t		mask[8];
		int			n;

		t5_text_options(&opt, methods[k], 6);
		opt.prompt_len = k == 0 ? 6 : 4;
		opt.rank = 2;
		opt.subspaces = 2;
		opt.subspace_rank = 2;
		opt.progress = record_loss;
		opt.progress_arg = &log;
		if (train_adapter(model, ds, &opt, &res, &err) != NN_OK)
		{
			CHECK(false, "method %d: %s", methods[k], err.msg);
			continue;
		}
		CHECK(res.adapter->cfg.head == ADAPTER_HEAD_TEXT && res.adapter->head_w.n == 0,
			  "method %d: text head", methods[k]);
		CHECK(all_finite(&res.adapter->prompt) && all_finite(&res.adapter->lora_a) &&
			  all_finite(&res.adapter->ept_u) && all_finite(&res.adapter->ept_v) &&
			  all_finite(&res.adapter->gate_w), "method %d: finite", methods[k]);
		CHECK(log.n == 6 && isfinite(log.loss[5]), "method %d: 6 finite losses", methods[k]);
		/* TEXT init: the first prompt row started as the embedding of the init text's first piece */
		n = model->ops->tokenize(model, opt.init_text, strlen(opt.init_text), ids, 8);
		init = malloc(sizeof(float) * n * model->d_embed);
		model->ops->embed_tokens(model, ids, n, init, mask);
		if (methods[k] == ADAPTER_PT)
			CHECK(memcmp(init, res.adapter->prompt.w, sizeof(float) * model->d_embed) != 0,
				  "PT: the prompt moved");
		free(init);
		train_result_free(&res);
	}
}

/* Early stopping works on the rank-classification validation accuracy. */
static void
test_text_early_stopping(void)
{
	TrainOptions opt;
	TrainResult res;
	NnError		err;

	t5_text_options(&opt, ADAPTER_DEPT, 40);
	opt.eval_every = 1;
	opt.patience = 2;
	if (train_adapter(model, ds, &opt, &res, &err) != NN_OK)
	{
		CHECK(false, "%s", err.msg);
		return;
	}
	printf("# early stopping: %ld steps, best step %ld, valid accuracy %.3f\n", res.steps,
		   res.best_step, res.valid_metrics ? res.valid_metrics->accuracy : -1.0);
	CHECK(res.steps < 40 && res.steps == res.best_step + 2 && res.valid_metrics != NULL,
		  "stopped 2 evaluations after the best one (%ld steps, best %ld)", res.steps, res.best_step);
	train_result_free(&res);
}

static void
test_linear_head_option(void)
{
	TrainOptions opt;
	TrainResult res;
	NnError		err;
	uint8_t    *buf = NULL;
	size_t		len;

	t5_text_options(&opt, ADAPTER_DEPT, 3);
	opt.head = TRAIN_HEAD_LINEAR;
	if (train_adapter(model, ds, &opt, &res, &err) != NN_OK)
		CHECK(false, "linear DePT: %s", err.msg);
	else
	{
		CHECK(res.adapter->cfg.head == ADAPTER_HEAD_LINEAR && res.adapter->head_w.n == 2 * 32,
			  "mean-pool + linear head kept on request");
		CHECK(adapter_serialize(res.adapter, model->fingerprint,
								(const char *const *) ds->class_names, &buf, &len, &err) == NN_OK &&
			  buf[4] == 1, "stored as format version 1");
		free(buf);
		train_result_free(&res);
	}
	t5_text_options(&opt, ADAPTER_PROBE, 3);
	if (train_adapter(model, ds, &opt, &res, &err) != NN_OK)
		CHECK(false, "probe: %s", err.msg);
	else
	{
		CHECK(res.adapter->cfg.head == ADAPTER_HEAD_LINEAR && res.adapter->head_w.n == 2 * 32,
			  "a T5 probe trains a linear head");
		train_result_free(&res);
	}
}

/*
 * 40 labels: rank_scores splits a batch of 8 rows into one row per
 * t5_label_loglik call (40 decoder sequences each); the probabilities
 * are still the softmax of each row's 40 scores.
 */
static void
test_many_labels(void)
{
	Dataset    *many = dataset_new();
	TrainOptions opt;
	TrainResult res;
	NnError		err;
	enum
	{
		NC = 40, NR = 2 * NC
	};
	char		text[64],
				label[32];
	size_t		lens[NR];
	float	   *probs = malloc(sizeof(float) * NR * NC),
			   *scores = malloc(sizeof(float) * NR * NC);
	double		worst = 0;
	BackboneRun *run;

	for (int i = 0; i < NR; i++)
	{
		snprintf(text, sizeof(text), "film number %d is %s", i, i % 3 ? "good" : "bad");
		snprintf(label, sizeof(label), "label %d", i % NC);
		dataset_add(many, text, strlen(text), label, strlen(label), &err);
	}
	CHECK(dataset_finish(many, &err) == NN_OK && many->n_classes == NC, "%d classes", many->n_classes);
	t5_text_options(&opt, ADAPTER_DEPT, 3);
	opt.valid_fraction = 0;
	if (train_adapter(model, many, &opt, &res, &err) != NN_OK)
	{
		CHECK(false, "train_adapter: %s", err.msg);
		dataset_free(many);
		free(probs);
		free(scores);
		return;
	}
	for (int i = 0; i < NR; i++)
		lens[i] = many->text_lens[i];
	run = model->ops->run_new(model, 8, adapter_prompt_rows(&res.adapter->cfg) + res.adapter->cfg.max_len);
	CHECK(classify_texts(model, run, res.adapter, (const char *const *) many->texts, lens, NR, 8,
						 probs, &err) == NN_OK, "%s", err.msg);
	direct_scores_of(res.adapter, many, (const char *const *) many->texts, NR, scores);
	for (int i = 0; i < NR; i++)
	{
		softmax(scores + i * NC, NC);
		for (int c = 0; c < NC; c++)
			if (fabs(probs[i * NC + c] - scores[i * NC + c]) > worst)
				worst = fabs(probs[i * NC + c] - scores[i * NC + c]);
	}
	CHECK(worst < 1e-5, "40 labels: probabilities = softmax of the scores (%.3g)", worst);
	model->ops->run_free(run);
	train_result_free(&res);
	dataset_free(many);
	free(probs);
	free(scores);
}

static void
test_label_collisions(void)
{
	Dataset    *twins = make_dataset("fi", "\xef\xac\x81");	/* U+FB01 LATIN SMALL LIGATURE FI */
	TrainOptions opt;
	TrainResult res;
	NnError		err;

	t5_text_options(&opt, ADAPTER_DEPT, 2);
	CHECK(twins->n_classes == 2, "two distinct label strings");
	CHECK(train_adapter(model, twins, &opt, &res, &err) == NN_ERR_ARG && res.adapter == NULL &&
		  strstr(err.msg, "tokenize to the same ids") != NULL, "refused: %s", err.msg);
	opt.head = TRAIN_HEAD_LINEAR;	/* a linear head tells them apart by index */
	CHECK(train_adapter(model, twins, &opt, &res, &err) == NN_OK, "linear head: %s", err.msg);
	train_result_free(&res);
	dataset_free(twins);
}

int
main(void)
{
	if (!t5_text_open())
		return 1;
	ds = make_dataset("positive", "negative");
	RUN_TEST(test_head_choice);
	RUN_TEST(test_dept_text_trains);
	RUN_TEST(test_rank_classification);
	RUN_TEST(test_text_round_trip);
	RUN_TEST(test_pt_ept_text);
	RUN_TEST(test_text_early_stopping);
	RUN_TEST(test_linear_head_option);
	RUN_TEST(test_many_labels);
	RUN_TEST(test_label_collisions);
	t5_text_close();
	return unit_finish();
}
