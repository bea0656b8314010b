/*
 * train_auto.c: dept_train(method => 'auto'): a small fixed list of
 * candidates trained one after the other on the same rows and the same
 * validation split, the best by validation accuracy kept (issue 14).
 *
 * Candidates, cheapest first (a tie keeps the earlier one): the linear
 * probe, DePT as dept_train trains it by default (m = 60 in the budget of
 * PT l = 100), DePT with m = 20 (the rank from the same budget).  The
 * option "budget_rows" bounds the rows the candidates see together
 * (steps x batch_size): each gets max_steps = budget_rows / (3 x
 * batch_size), at least 1; without it each trains its epochs (or
 * max_steps).  Every candidate's method, options, validation metrics,
 * steps and seconds are stored with the version (hyperparameters ->
 * 'auto') and shown to a waiting caller as NOTICEs; the stored method is
 * the winner's.  The test rows (train_test.c) are scored for the winner
 * only: they choose nothing.  'auto' is not the default: that needs the
 * accuracy benchmark (bench/accuracy).
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/spin.h"

#include "dept.h"
#include "dept_catalog.h"
#include "dept_train.h"

typedef struct AutoCandidate
{
	const char *method;
	AdapterMethod kind;
	int			prompt_len;
} AutoCandidate;

static const AutoCandidate auto_candidates[] = {
	{"probe", ADAPTER_PROBE, 0},
	{"dept", ADAPTER_DEPT, 60},
	{"dept", ADAPTER_DEPT, 20},
};

#define N_AUTO lengthof(auto_candidates)

/* One candidate's line of the NOTICEs and its JSON in hyperparameters -> 'auto'. */
static void
DeptAutoRecord(DeptTrainRequest *req, StringInfo json, int i, const TrainResult *r)
{
	const AutoCandidate *c = &auto_candidates[i];
	const ClassMetrics *m = r->n_valid > 0 ? r->valid_metrics : NULL;
	char	   *note;

	appendStringInfo(json, "%s{\"method\": \"%s\", \"options\": {\"prompt_length\": %d}, "
					 "\"valid_accuracy\": %.6f, \"valid_macro_f1\": %.6f, \"valid_rows\": %d, "
					 "\"steps\": %ld, \"rows_seen\": %ld, \"seconds\": %.3f}",
					 i ? ", " : "", c->method, c->prompt_len, m ? m->accuracy : 0.0,
					 m ? m->macro_f1 : 0.0, r->n_valid, r->steps,
					 r->steps * (long) req->opt.batch_size, r->seconds);
	note = psprintf("candidate %d: %s (prompt_length %d): validation accuracy %.4f, macro-F1 %.4f, "
					"%ld steps, %.1f s\n", i + 1, c->method, c->prompt_len, m ? m->accuracy : 0.0,
					m ? m->macro_f1 : 0.0, r->steps, r->seconds);
	SpinLockAcquire(&req->mutex);
	strlcat(req->auto_notes, note, sizeof(req->auto_notes));
	SpinLockRelease(&req->mutex);
}

/*
 * Train every candidate on ds; the best one's result in *best, req->method
 * and req->opt set to its, and the candidates' JSON (an object) returned.
 * *best.cancelled when a candidate was cancelled (nothing more runs).
 */
char *
DeptTrainAuto(DeptTrainRequest *req, const Backbone *bb, const Dataset *ds, TrainResult *best)
{
	StringInfoData json;
	int			winner = -1;
	double		best_acc = -1;
	long		steps_each = req->budget_rows > 0 ?
		Max(req->budget_rows / ((long) N_AUTO * req->opt.batch_size), 1) : 0;
	TrainOptions base = req->opt;

	memset(best, 0, sizeof(*best));
	initStringInfo(&json);
	appendStringInfo(&json, "{\"budget_rows\": " INT64_FORMAT ", \"steps_each\": %ld, \"candidates\": [",
					 req->budget_rows, steps_each);
	for (int i = 0; i < (int) N_AUTO; i++)
	{
		TrainOptions o = base;
		TrainResult r;
		NnError		err;
		double		acc;

		o.method = auto_candidates[i].kind;
		o.prompt_len = auto_candidates[i].prompt_len;
		if (steps_each > 0)
			o.max_steps = base.max_steps > 0 ? Min(base.max_steps, steps_each) : steps_each;
		nn_error_clear(&err);
		if (train_adapter(bb, ds, &o, &r, &err) != NN_OK)
			DeptReportNnError(&err, psprintf("training candidate %d (%s) failed", i + 1,
											 auto_candidates[i].method));
		if (r.cancelled)
		{
			train_result_free(&r);
			if (winner >= 0)
				train_result_free(best);
			best->cancelled = true;
			return NULL;
		}
		DeptAutoRecord(req, &json, i, &r);
		acc = r.n_valid > 0 && r.valid_metrics ? r.valid_metrics->accuracy : -1;
		if (winner < 0 || acc > best_acc)
		{
			if (winner >= 0)
				train_result_free(best);
			*best = r;
			best_acc = acc;
			winner = i;
			req->opt = o;
		}
		else
			train_result_free(&r);
		CHECK_FOR_INTERRUPTS();
	}
	strlcpy(req->method, auto_candidates[winner].method, sizeof(req->method));
	appendStringInfo(&json, "], \"winner\": %d}", winner + 1);
	SpinLockAcquire(&req->mutex);
	strlcat(req->auto_notes, psprintf("kept candidate %d (%s, prompt_length %d) by validation accuracy\n",
									  winner + 1, auto_candidates[winner].method,
									  auto_candidates[winner].prompt_len),
			sizeof(req->auto_notes));
	SpinLockRelease(&req->mutex);
	return json.data;
}
