/*
 * train_auto.c: dept_train(method => 'auto'), the default: the candidates
 * of src/nn/train/auto.h (the linear probe with its L2 search, then DePT
 * m = 20 whose head starts from the probe's) trained on the same rows and
 * validation split, the best by validation score kept (issue 14;
 * docs/design.md 1, "The probe and auto").
 *
 * The option "budget_rows" (default AUTO_DEFAULT_BUDGET_ROWS) bounds the
 * rows DePT sees (steps x batch_size); its epochs bound it too.  Every
 * candidate's method, options, validation metrics, steps and seconds are
 * stored with the version (hyperparameters -> 'auto') and shown to a
 * waiting caller as NOTICEs; the stored method is the winner's.  The test
 * rows (train_test.c) are scored for the winner only: they choose nothing.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/spin.h"

#include "dept.h"
#include "dept_catalog.h"
#include "dept_train.h"

#include "train/auto.h"

/* One candidate's line of the NOTICEs, as it ends (train_auto's on_trial). */
static void
DeptAutoNote(void *arg, const AutoTrial *t)
{
	DeptTrainRequest *req = arg;
	char		note[256];

	snprintf(note, sizeof(note), "candidate %s (prompt_length %d%s): validation %s %.4f, "
			 "macro-F1 %.4f, %ld steps, %.1f s\n", adapter_method_name(t->method), t->prompt_len,
			 t->head_from_probe ? ", head from the probe" : "",
			 t->regression ? "Pearson r" : "accuracy",
			 t->valid_accuracy, t->valid_macro_f1, t->steps, t->seconds);
	SpinLockAcquire(&req->mutex);
	strlcat(req->auto_notes, note, sizeof(req->auto_notes));
	SpinLockRelease(&req->mutex);
}

/* The candidates as the JSON object stored in hyperparameters -> 'auto'. */
static char *
DeptAutoJson(const AutoReport *r)
{
	StringInfoData json;

	initStringInfo(&json);
	appendStringInfo(&json, "{\"budget_rows\": %ld, \"steps_each\": %ld, \"candidates\": [",
					 r->budget_rows, r->steps_each);
	for (int i = 0; i < r->n_trials; i++)
	{
		const AutoTrial *t = &r->trials[i];

		appendStringInfo(&json, "%s{\"method\": \"%s\", \"options\": {\"prompt_length\": %d, "
						 "\"head_from_probe\": %s%s}, \"valid_accuracy\": %.6f, "
						 "\"valid_macro_f1\": %.6f, \"valid_score\": %.6f, \"valid_rows\": %d, "
						 "\"steps\": %ld, \"rows_seen\": %ld, \"seconds\": %.3f}",
						 i ? ", " : "", adapter_method_name(t->method), t->prompt_len,
						 t->head_from_probe ? "true" : "false",
						 t->method == ADAPTER_PROBE ? DeptProbeJson(t->probe_l2, t->probe_c) : "",
						 t->valid_accuracy, t->valid_macro_f1, t->valid_score, t->valid_rows,
						 t->steps, t->rows_seen, t->seconds);
	}
	appendStringInfo(&json, "], \"winner\": %d}", r->winner + 1);
	return json.data;
}

/*
 * Train every candidate on ds; the best one's result in *best, req->method
 * and req->opt set to its, and the candidates' JSON (an object) returned.
 * *best.cancelled when a candidate was cancelled (nothing more runs).
 */
char *
DeptTrainAuto(DeptTrainRequest *req, const Backbone *bb, const Dataset *ds, TrainResult *best)
{
	AutoReport	report;
	TrainOptions won;
	NnError		err;
	const AutoTrial *w;

	nn_error_clear(&err);
	if (train_auto(bb, ds, &req->opt, req->budget_rows, true, best, &won, &report, DeptAutoNote,
				   req, &err) != NN_OK)
		DeptReportNnError(&err, "training a candidate of method 'auto' failed");
	if (best->cancelled)
		return NULL;
	req->opt = won;
	w = &report.trials[report.winner];
	strlcpy(req->method, adapter_method_name(w->method), sizeof(req->method));
	SpinLockAcquire(&req->mutex);
	strlcat(req->auto_notes, psprintf("kept candidate %d (%s, prompt_length %d) by validation %s\n",
									  report.winner + 1, req->method, w->prompt_len,
									  ds->regression ? "MSE" : "accuracy"),
			sizeof(req->auto_notes));
	SpinLockRelease(&req->mutex);
	return DeptAutoJson(&report);
}
