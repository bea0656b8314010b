/*
 * test_auto.c: the probe's L2 search, a DePT head started from the probe's,
 * and method auto (src/nn/train/auto.h; docs/design.md 1, "The probe and
 * auto"), on the SST-2 fixture (600 rows, 10% validation) and the default
 * model, kept small: max length 32, batch 16, a few steps.
 *
 *   probe_solver      the solved probe's C is one of the grid and its
 *                     lambda 1 / (C n), 31 fits, validation above 0.6 and
 *                     the same head for the same seed; without the solver,
 *                     4 strengths x probe_epochs of passes.
 *   head_from_probe   DePT whose head starts from a trained probe starts
 *                     below ln 2, the loss of a zero head (two classes).
 *   auto_picks_best   two trials (probe, DePT m = 20 with the probe's
 *                     head), DePT within budget_rows, the winner the best
 *                     validation score (the earlier on a tie), the adapter
 *                     kept of the winner's method, seconds the sum.
 *   auto_cancel       a progress callback that cancels: cancelled, nothing
 *                     returned (ASan checks nothing leaks).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ops/blas.h"
#include "train/auto.h"
#include "train/probe_fit.h"
#include "unit.h"

/* CHECK, and leave the test when it fails (what follows needs it). */
#define REQUIRE(cond, ...) \
	do { \
		if (!(cond)) { \
			CHECK(cond, __VA_ARGS__); \
			return; \
		} \
	} while (0)

static Backbone *model;
static Dataset *train_set;

typedef struct StepLog
{
	int			n;
	int			cancel_after;	/* > 0: return false at this call */
	double		first_loss;
} StepLog;

static bool
log_step(void *arg, const TrainProgress *p)
{
	StepLog    *s = arg;

	if (s->n++ == 0)
		s->first_loss = p->loss;
	return s->cancel_after == 0 || s->n < s->cancel_after;
}

static void
small_options(TrainOptions *o, AdapterMethod method, StepLog *log)
{
	train_options_default(o);
	o->method = method;
	o->prompt_len = 20;
	o->max_len = 32;
	o->batch_size = 16;
	o->epochs = 2;
	o->probe_epochs = 8;
	o->seed = 7;
	o->progress = log_step;
	o->progress_arg = log;
}

static void
test_probe_solver(void)
{
	TrainOptions o;
	TrainResult passes,
				solved,
				again;
	StepLog		slog = {0};
	NnError		err = {0};
	bool		in_grid = false;

	small_options(&o, ADAPTER_PROBE, &slog);
	o.probe_solver = false;
	REQUIRE(train_adapter(model, train_set, &o, &passes, &err) == NN_OK, "probe passes: %s", err.msg);
	o.probe_solver = true;
	REQUIRE(train_adapter(model, train_set, &o, &solved, &err) == NN_OK, "probe solver: %s", err.msg);
	for (int c = 0; c < PROBE_C_GRID_SIZE; c++)
		in_grid |= solved.probe_c == probe_c_grid[c];
	CHECK(in_grid && fabs(solved.probe_l2 - 1.0 / (solved.probe_c * solved.n_train)) < 1e-6 * solved.probe_l2,
		  "C %g, lambda %g for %d rows", solved.probe_c, solved.probe_l2, solved.n_train);
	CHECK(passes.probe_c == 0.0 && passes.steps == 4 * 8 * ((passes.n_train + 15) / 16),
		  "passes: 4 strengths x 8 epochs of steps, not %ld", passes.steps);
	CHECK(solved.steps == PROBE_FOLDS * PROBE_C_GRID_SIZE + 1, "%ld fits", solved.steps);
	CHECK(solved.valid_metrics->accuracy > 0.6, "solver's validation accuracy %.4f",
		  solved.valid_metrics->accuracy);
	REQUIRE(train_adapter(model, train_set, &o, &again, &err) == NN_OK, "probe solver again: %s", err.msg);
	CHECK(memcmp(solved.adapter->head_w.w, again.adapter->head_w.w,
				 sizeof(float) * solved.adapter->head_w.n) == 0, "the same seed gives the same head");
	printf("# probe: passes %.4f (lambda %g), solver %.4f (C %g)\n", passes.valid_metrics->accuracy,
		   passes.probe_l2, solved.valid_metrics->accuracy, solved.probe_c);
	train_result_free(&passes);
	train_result_free(&solved);
	train_result_free(&again);
}

static void
test_head_from_probe(void)
{
	TrainOptions o;
	TrainResult probe,
				warm;
	StepLog		slog = {0};
	NnError		err = {0};

	small_options(&o, ADAPTER_PROBE, &slog);
	REQUIRE(train_adapter(model, train_set, &o, &probe, &err) == NN_OK, "probe: %s", err.msg);
	small_options(&o, ADAPTER_DEPT, &slog);
	o.max_steps = 2;
	o.head_from = probe.adapter;
	slog.n = 0;
	REQUIRE(train_adapter(model, train_set, &o, &warm, &err) == NN_OK, "warm DePT: %s", err.msg);
	CHECK(slog.first_loss < log(2.0) - 0.05, "first loss %.4f is not below ln 2 - 0.05",
		  slog.first_loss);
	printf("# DePT from the probe's head: first loss %.4f (a zero head: %.4f)\n", slog.first_loss,
		   log(2.0));
	train_result_free(&probe);
	train_result_free(&warm);
}

static void
test_auto_picks_best(void)
{
	TrainOptions o,
				won;
	TrainResult best;
	AutoReport	rep;
	StepLog		slog = {0};
	NnError		err = {0};
	double		sum = 0;
	int			expect = 0;

	small_options(&o, ADAPTER_DEPT, &slog);
	REQUIRE(train_auto(model, train_set, &o, 16 * 6, true, &best, &won, &rep, NULL, NULL, &err) == NN_OK,
		  "train_auto: %s", err.msg);
	CHECK(rep.n_trials == 2 && rep.trials[0].method == ADAPTER_PROBE &&
		  rep.trials[1].method == ADAPTER_DEPT && rep.trials[1].prompt_len == 20,
		  "trials: %d", rep.n_trials);
	CHECK(rep.trials[1].head_from_probe && !rep.trials[0].head_from_probe, "head_from_probe flags");
	CHECK(rep.steps_each == 6 && rep.trials[1].steps <= 6, "DePT ran %ld steps, budget %ld",
		  rep.trials[1].steps, rep.steps_each);
	for (int i = 0; i < rep.n_trials; i++)
	{
		sum += rep.trials[i].seconds;
		if (rep.trials[i].valid_score > rep.trials[expect].valid_score)
			expect = i;
	}
	CHECK(rep.winner == expect, "winner %d, best validation %d", rep.winner, expect);
	CHECK(best.adapter != NULL && best.adapter->cfg.method == rep.trials[rep.winner].method &&
		  won.method == rep.trials[rep.winner].method, "the kept adapter is the winner's method");
	CHECK(fabs(best.seconds - sum) < 1e-9, "seconds %.3f, not the sum %.3f", best.seconds, sum);
	CHECK(fabs(best.valid_metrics->accuracy - rep.trials[rep.winner].valid_accuracy) < 1e-9,
		  "the kept validation accuracy is the winner's");
	train_result_free(&best);
}

static void
test_auto_cancel(void)
{
	TrainOptions o,
				won;
	TrainResult best;
	AutoReport	rep;
	StepLog		slog = {.cancel_after = 3};
	NnError		err = {0};

	small_options(&o, ADAPTER_DEPT, &slog);
	o.probe_epochs = 1;
	REQUIRE(train_auto(model, train_set, &o, 0, true, &best, &won, &rep, NULL, NULL, &err) == NN_OK,
		  "train_auto: %s", err.msg);
	CHECK(best.cancelled && best.adapter == NULL && best.valid_metrics == NULL,
		  "a cancelled auto returns nothing");
}

int
main(void)
{
	NnError		err = {0};
	char		path[4096];

	nn_blas_setup(1);
	snprintf(path, sizeof(path), "%s/sst2_train_600.tsv", unit_env("DEPT_FIXTURE_DIR", "test/fixtures"));
	if (backbone_open(&model, UNIT_MODEL_DIR(), &err) != NN_OK ||
		dataset_load(&train_set, path, '\t', "text", "label", &err) != NN_OK)
	{
		printf("not ok 1 - setup: %s\n1..1\n", err.msg);
		return 1;
	}
	RUN_TEST(test_probe_solver);
	RUN_TEST(test_head_from_probe);
	RUN_TEST(test_auto_picks_best);
	RUN_TEST(test_auto_cancel);
	dataset_free(train_set);
	backbone_close(model);
	return unit_finish();
}
