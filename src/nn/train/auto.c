/*
 * auto.c: method 'auto' (see auto.h).
 */
#include "train/auto.h"

#include <string.h>

typedef struct AutoCandidate
{
	AdapterMethod method;
	int			prompt_len;
	bool		head_from_probe;
} AutoCandidate;

static const AutoCandidate auto_candidates[] = {
	{ADAPTER_PROBE, 0, false},
	{ADAPTER_DEPT, 20, true},
};

#define N_CANDIDATES ((int) (sizeof(auto_candidates) / sizeof(auto_candidates[0])))

static void
record_trial(AutoTrial *t, const AutoCandidate *c, const TrainOptions *o, const TrainResult *r)
{
	const ClassMetrics *m = r->n_valid > 0 ? r->valid_metrics : NULL;

	memset(t, 0, sizeof(*t));
	t->method = c->method;
	t->prompt_len = c->prompt_len;
	t->head_from_probe = o->head_from != NULL;
	t->steps = r->steps;
	t->rows_seen = r->steps * (long) o->batch_size;
	t->seconds = r->seconds;
	t->valid_rows = r->n_valid;
	t->probe_l2 = c->method == ADAPTER_PROBE ? r->probe_l2 : 0.0f;
	t->probe_c = c->method == ADAPTER_PROBE ? r->probe_c : 0.0;
	if (m == NULL)
	{
		t->valid_score = -1e300;	/* no validation rows: the first candidate stays */
		return;
	}
	t->regression = m->regression;
	t->valid_accuracy = m->regression ? m->pearson : m->accuracy;
	t->valid_macro_f1 = m->regression ? 0.0 : m->macro_f1;
	t->valid_score = m->regression ? -m->mse : m->accuracy;
}

/* The options candidate c trains with: opt's, its method and prompt, the budget's steps. */
static TrainOptions
candidate_options(const TrainOptions *opt, const AutoCandidate *c, long steps_each)
{
	TrainOptions o = *opt;

	o.method = c->method;
	o.prompt_len = c->prompt_len;
	o.head_from = NULL;
	if (c->method != ADAPTER_PROBE && steps_each > 0)
		o.max_steps = opt->max_steps > 0 && opt->max_steps < steps_each ? opt->max_steps : steps_each;
	return o;
}

/* The probe's head can start c's when both are linear heads of the same classes. */
static bool
can_warm_head(const Backbone *bb, const TrainOptions *o)
{
	AdapterHead head;
	NnError		ignored;

	return train_choose_head(bb, o, &head, &ignored) == NN_OK && head == ADAPTER_HEAD_LINEAR;
}

/* Free what a failed or cancelled run holds: the winner so far and the probe. */
static void
drop_results(TrainResult *best, TrainResult *probe, bool have_best)
{
	if (have_best && best->adapter != probe->adapter)
		train_result_free(best);
	train_result_free(probe);
	memset(best, 0, sizeof(*best));
}

NnStatus
train_auto(const Backbone *bb, const Dataset *ds, const TrainOptions *opt, long budget_rows,
		   bool warm_head, TrainResult *best, TrainOptions *best_opt, AutoReport *report,
		   void (*on_trial) (void *arg, const AutoTrial *t), void *arg, NnError *err)
{
	TrainResult probe = {0};
	int			n_prompt = N_CANDIDATES - 1;

	memset(best, 0, sizeof(*best));
	memset(report, 0, sizeof(*report));
	report->budget_rows = budget_rows;
	/* the budget shared evenly by the prompt candidates, at least one step each */
	if (budget_rows > 0)
		report->steps_each = budget_rows / ((long) n_prompt * opt->batch_size);
	if (budget_rows > 0 && report->steps_each < 1)
		report->steps_each = 1;
	report->winner = -1;
	for (int i = 0; i < N_CANDIDATES; i++)
	{
		const AutoCandidate *c = &auto_candidates[i];
		TrainOptions o = candidate_options(opt, c, report->steps_each);
		TrainResult r;
		AutoTrial  *t = &report->trials[i];
		NnStatus	st;

		if (c->head_from_probe && warm_head && probe.adapter != NULL && can_warm_head(bb, &o))
			o.head_from = probe.adapter;
		if ((st = train_adapter(bb, ds, &o, &r, err)) != NN_OK)
		{
			drop_results(best, &probe, report->winner >= 0);
			return st;
		}
		if (r.cancelled)
		{
			train_result_free(&r);
			drop_results(best, &probe, report->winner >= 0);
			best->cancelled = true;
			return NN_OK;
		}
		record_trial(t, c, &o, &r);
		report->n_trials = i + 1;
		if (on_trial)
			on_trial(arg, t);
		if (report->winner < 0 || t->valid_score > report->trials[report->winner].valid_score)
		{
			if (report->winner >= 0 && best->adapter != probe.adapter)
				train_result_free(best);
			*best = r;
			*best_opt = o;
			best_opt->head_from = NULL;
			report->winner = i;
		}
		else if (c->method != ADAPTER_PROBE)
			train_result_free(&r);
		if (c->method == ADAPTER_PROBE)
			probe = r;
	}
	if (best->adapter != probe.adapter)
		train_result_free(&probe);
	/* the run's time is every candidate's, not the winner's alone */
	best->seconds = 0;
	for (int i = 0; i < report->n_trials; i++)
		best->seconds += report->trials[i].seconds;
	return NN_OK;
}
