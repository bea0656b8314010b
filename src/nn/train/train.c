/*
 * train.c: the training loop (see train.h); the batch machinery it shares
 * with classification is batch.c, inference classify.c.
 */
#include "train/batch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/rng.h"
#include "train/probe_fit.h"

void
train_options_default(TrainOptions *opt)
{
	memset(opt, 0, sizeof(*opt));
	opt->method = ADAPTER_DEPT;
	opt->prompt_len = 60;
	opt->budget = 100;
	opt->max_len = 128;
	opt->alpha = 8.0f;
	opt->subspaces = 4;
	opt->subspace_rank = 4;
	opt->lr_prompt = 3e-2f;
	opt->lr_lowrank = 1e-3f;
	opt->lr_ept = 1e-3f;
	opt->lr_head = 1e-2f;
	opt->weight_decay = 1e-5f;
	opt->epochs = 3;
	opt->batch_size = 32;
	opt->valid_fraction = 0.1;
	opt->seed = 42;
	opt->patience = 0;
	opt->warmup_ratio = 0.06f;
	opt->max_grad_norm = 1.0;
	opt->init_text = "Classify the text:";
	opt->pool_text = true;
	opt->probe_epochs = 100;
	opt->probe_search = true;
	opt->probe_solver = true;
}

/*
 * The probe's L2 strengths (docs/design.md 1, "The probe and auto"): the
 * penalty lambda/2 ||W||^2 on the head's weights, as logistic regression
 * has it, tried in turn when TrainOptions.probe_search.
 */
static const float probe_l2_grid[] = {0.0f, 1e-4f, 1e-3f, 1e-2f};

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}









/*
 * One text-to-text training step on rows: cross-entropy of each row's
 * label string, teacher-forced; its gradient reaches the adapter through
 * dX (train.h).  *loss is the mean over the target tokens, *n_out the
 * padded token length.
 */
static NnStatus
text_step(const Backbone *bb, Adapter *a, Workspace *ws, const TokenCache *tc,
		  const Dataset *ds, const int *rows, int B, double *loss, int *n_out, NnError *err)
{
	int			n = batch_gather_embeddings(bb, tc, rows, B, ws->E, ws->e_mask);
	int			L = a->label_len;
	float		l = 0.0f;
	NnStatus	st;

	for (int b = 0; b < B; b++)
		memcpy(ws->targets + (size_t) b * L, a->label_ids + (size_t) ds->labels[rows[b]] * L,
			   sizeof(int32_t) * L);
	adapter_forward(a, ws->E, ws->e_mask, B, n, ws->X, ws->x_mask);
	st = bb->ops->label_loss_forward(bb, ws->run, ws->X, ws->x_mask, B, adapter_prompt_rows(&a->cfg) + n,
						 ws->targets, L, &l, NULL, err);
	if (st == NN_OK)
		st = bb->ops->label_loss_backward(bb, ws->run, ws->dX, err);
	if (st != NN_OK)
		return st;
	adapter_backward(a, ws->dX, B, n);
	*loss = l;
	*n_out = n;
	return NN_OK;
}

/* The tensors a checkpoint holds, in a fixed order. */
static int
adapter_tensors(Adapter *a, AdapterParam **list)
{
	AdapterParam *all[] = {&a->prompt, &a->lora_a, &a->lora_b, &a->ept_u, &a->ept_v,
	&a->gate_w, &a->gate_b, &a->head_w, &a->head_b};
	int			n = 0;

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		list[n++] = all[i];
	return n;
}

static void
checkpoint_copy(Adapter *a, float *buf, bool save)
{
	AdapterParam *list[16];
	int			n = adapter_tensors(a, list);

	for (int i = 0; i < n; i++)
	{
		if (list[i]->n == 0)
			continue;			/* a tensor the method does not have: w is NULL */
		if (save)
			memcpy(buf, list[i]->w, sizeof(float) * list[i]->n);
		else
			memcpy(list[i]->w, buf, sizeof(float) * list[i]->n);
		buf += list[i]->n;
	}
}




/* Prompt init: TEXT init from init_text, else rows of frequent vocabulary pieces. */
static void
init_prompt(const Backbone *bb, Adapter *a, const TrainOptions *opt, Rng *rng)
{
	int			P = adapter_prompt_rows(&a->cfg);
	int32_t    *ids;
	float	   *rows;
	uint8_t    *mask;
	int			n = 0;

	if (P == 0)
		return;
	ids = malloc(sizeof(int32_t) * P);
	rows = malloc(sizeof(float) * (size_t) P * bb->d_embed);
	mask = malloc(P);
	if (ids && rows && mask)
	{
		if (opt->init_text && opt->init_text[0])
			n = bb->ops->tokenize(bb, opt->init_text, strlen(opt->init_text), ids, P);
		if (n <= 0)
		{
			/* sampled vocabulary: the 5,000 most frequent pieces follow the reserved ids */
			int			lo = 6,
						hi = bb->vocab_size < 5006 ? bb->vocab_size : 5006;

			for (n = 0; n < P; n++)
				ids[n] = lo + (int32_t) rng_below(rng, (uint64_t) (hi - lo));
		}
		bb->ops->embed_tokens(bb, ids, n, rows, mask);
		adapter_init_prompt(a, rows, n);
	}
	free(ids);
	free(rows);
	free(mask);
}

static void
shuffle(int *x, int n, Rng *rng)
{
	for (int i = n - 1; i > 0; i--)
	{
		int			j = (int) rng_below(rng, (uint64_t) i + 1);
		int			t = x[i];

		x[i] = x[j];
		x[j] = t;
	}
}

static NnStatus
make_adapter(const Backbone *bb, const Dataset *ds, const TrainOptions *opt, Adapter **a,
			 NnError *err)
{
	AdapterConfig cfg = {0};
	NnStatus	st;

	if ((st = train_choose_head(bb, opt, &cfg.head, err)) != NN_OK)
		return st;
	cfg.method = opt->method;
	cfg.d = bb->d_embed;
	cfg.pair = opt->pair;
	cfg.h_dim = bb->d_out * (opt->pair == ADAPTER_PAIR_SIAMESE ? 4 : 1);
	cfg.n_classes = ds->n_classes;
	cfg.regression = ds->regression;
	/* a regression's bins are classes to a text-to-text head only (train_prepare_regression) */
	if (ds->regression && (cfg.head == ADAPTER_HEAD_TEXT) != (ds->n_classes > 1))
		return nn_fail(err, NN_ERR_ARG, cfg.head == ADAPTER_HEAD_TEXT ?
					   "a regression on a text-to-text head needs its targets binned "
					   "(train_prepare_regression)" :
					   "a regression's binned targets need a text-to-text head");
	cfg.prompt_len = opt->method == ADAPTER_PROBE ? 0 : opt->prompt_len;
	cfg.max_len = opt->max_len;
	cfg.alpha = opt->alpha;
	cfg.rank = opt->rank;
	/* adapter_new keeps it only for a linear head past prompt rows */
	cfg.pool_text = opt->pool_text && backbone_pool_skips(bb);
	if (opt->method == ADAPTER_EPT)
	{
		cfg.subspaces = opt->subspaces;
		cfg.subspace_rank = opt->subspace_rank;
	}
	if ((opt->method == ADAPTER_DEPT || opt->method == ADAPTER_EPT) && cfg.rank == 0)
		cfg.rank = adapter_rank_for_budget(opt->budget, cfg.d, cfg.max_len, cfg.prompt_len,
										   cfg.subspaces, cfg.subspace_rank);
	if (opt->method == ADAPTER_DEPT && opt->rank == 0 && cfg.prompt_len > opt->budget)
		return nn_fail(err, NN_ERR_ARG, "a DePT prompt of %d rows exceeds the budget of %d prompt vectors",
					   cfg.prompt_len, opt->budget);
	if (opt->method == ADAPTER_EPT && cfg.rank == 0)
		return nn_fail(err, NN_ERR_ARG, "the budget of %d prompt vectors leaves no room for EPT's low-rank pair",
					   opt->budget);
	if ((st = adapter_new(a, &cfg, opt->batch_size * batch_sequences_per_row(opt->pair), opt->seed,
						  err)) != NN_OK)
		return st;
	if ((st = text_head_bind_labels(bb, *a, (const char *const *) ds->class_names, err)) != NN_OK)
	{
		adapter_free(*a);
		*a = NULL;
	}
	return st;
}

int
train_default_pair(const Backbone *bb, const TrainOptions *opt)
{
	AdapterHead head = ADAPTER_HEAD_LINEAR;

	if (train_choose_head(bb, opt, &head, NULL) == NN_OK && head == ADAPTER_HEAD_TEXT)
		return ADAPTER_PAIR_JOINED;
	if (backbone_has_pair_template(bb))
		return ADAPTER_PAIR_NATIVE;
	return backbone_has_text_head(bb) ? ADAPTER_PAIR_JOINED : ADAPTER_PAIR_SIAMESE;
}

NnStatus
train_prepare_regression(const Backbone *bb, const TrainOptions *opt, Dataset *ds, NnError *err)
{
	AdapterHead head;
	NnStatus	st;

	if (!ds->regression || ds->n_classes > 1)
		return NN_OK;
	if ((st = train_choose_head(bb, opt, &head, err)) != NN_OK || head != ADAPTER_HEAD_TEXT)
		return st;
	return dataset_bin_targets(ds, TRAIN_MAX_BINS, err);
}

NnStatus
train_choose_head(const Backbone *bb, const TrainOptions *opt, AdapterHead *head, NnError *err)
{
	bool		text_head = backbone_has_text_head(bb);

	switch (opt->head)
	{
		case TRAIN_HEAD_AUTO:
			*head = text_head && opt->method != ADAPTER_PROBE ? ADAPTER_HEAD_TEXT : ADAPTER_HEAD_LINEAR;
			return NN_OK;
		case TRAIN_HEAD_LINEAR:
			*head = ADAPTER_HEAD_LINEAR;
			return NN_OK;
		case TRAIN_HEAD_TEXT:
			if (!text_head)
				return nn_fail(err, NN_ERR_ARG, "a text-to-text head needs a T5 backbone, not %s",
							   bb->ops->family);
			if (opt->method == ADAPTER_PROBE)
				return nn_fail(err, NN_ERR_ARG, "a linear probe trains only a linear head: "
							   "it cannot be text-to-text");
			*head = ADAPTER_HEAD_TEXT;
			return NN_OK;
	}
	return nn_fail(err, NN_ERR_ARG, "unknown head %d", (int) opt->head);
}


static NnStatus
check_options(const Backbone *bb, const TrainOptions *opt, NnError *err)
{
	if (opt->batch_size <= 0 || opt->batch_size > 1024)
		return nn_fail(err, NN_ERR_ARG, "batch size %d is outside 1..1024", opt->batch_size);
	if (opt->max_len <= 0 || opt->max_len > bb->max_tokens)
		return nn_fail(err, NN_ERR_ARG, "max length %d is outside 1..%d", opt->max_len, bb->max_tokens);
	if (opt->epochs <= 0 && opt->max_steps <= 0)
		return nn_fail(err, NN_ERR_ARG, "epochs or max_steps must be positive");
	if (opt->valid_fraction < 0 || opt->valid_fraction >= 1)
		return nn_fail(err, NN_ERR_ARG, "valid_fraction must be in [0, 1)");
	if (opt->valid_tail < 0)
		return nn_fail(err, NN_ERR_ARG, "valid_tail must not be negative");
	if (!(opt->lr_prompt >= 0 && opt->lr_lowrank >= 0 && opt->lr_ept >= 0 && opt->lr_head >= 0))
		return nn_fail(err, NN_ERR_ARG, "learning rates must not be negative");
	if (opt->method != ADAPTER_PROBE && bb->ops->backward == NULL)
		return nn_fail(err, NN_ERR_ARG, "backbone family %s cannot train prompts", bb->ops->family);
	return NN_OK;
}

/* Everything one training run holds, from setup to the stored result. */
typedef struct TrainRun
{
	const Backbone *bb;
	const Dataset *ds;
	const TrainOptions *opt;
	TrainResult *res;
	TokenCache	tc;
	Workspace	ws;
	Adapter    *a;
	AdamW		adamw;
	Rng			rng;
	int		   *train_rows;
	int		   *valid_rows;
	int		   *order;
	float	   *features;		/* probe: every row's pooled vector, or NULL */
	float	   *best;			/* the best checkpoint's tensors */
	float	   *batch_targets;	/* regression: (batch_size) the batch's values */
	float		l2;				/* probe: the L2 strength of this pass of the grid */
	long		steps_done;		/* probe: steps of earlier passes of the grid */
	int			passes;			/* passes of training over total_steps: 1, or the grid's */
	bool		probe;
	bool		text;
	bool		regression;
	double		best_acc;		/* the best validation score (metric_score) */
	double		last_acc;		/* accuracy, or a regression's Pearson r */
	bool		have_best;
	double		start_time;
	long		total_steps;
	long		steps_per_epoch;
	long		warmup;
	long		step;
	int			evals_without_gain;
} TrainRun;

/* The training and validation rows: a fixed tail (valid_tail), or a stratified split. */
static NnStatus
split_rows(TrainRun *r, NnError *err)
{
	const TrainOptions *opt = r->opt;
	const Dataset *ds = r->ds;
	TrainResult *res = r->res;

	if (opt->valid_tail > 0)
	{
		/* a fixed validation set: the last valid_tail rows, in file order */
		if (opt->valid_tail >= ds->n_rows)
			return nn_fail(err, NN_ERR_ARG, "%d validation rows leave none of %d to train on",
						   opt->valid_tail, ds->n_rows);
		res->n_train = ds->n_rows - opt->valid_tail;
		res->n_valid = opt->valid_tail;
		for (int i = 0; i < ds->n_rows; i++)
			*(i < res->n_train ? &r->train_rows[i] : &r->valid_rows[i - res->n_train]) = i;
	}
	else
		dataset_split(ds, opt->valid_fraction, opt->seed, r->train_rows, &res->n_train,
					  r->valid_rows, &res->n_valid);
	if (res->n_train == 0)
		return nn_fail(err, NN_ERR_ARG, "no rows left to train on");
	return NN_OK;
}

/* Token ids, batch buffers, label targets and (probe) the pooled features. */
static NnStatus
prepare_batches(TrainRun *r, NnError *err)
{
	const Backbone *bb = r->bb;
	const TrainOptions *opt = r->opt;
	NnStatus	st;

	if ((st = batch_tokenize_all(bb, r->ds, opt->max_len, r->a->cfg.pair, &r->tc, err)) != NN_OK)
		return st;
	if ((st = batch_workspace_init(bb, &r->ws, &r->a->cfg, opt->batch_size, opt->max_len,
								   r->ds->n_classes, !r->probe, opt->bf16, NULL, err)) != NN_OK)
		return st;
	if (r->text &&
		(r->ws.targets = malloc(sizeof(int32_t) * (size_t) opt->batch_size * r->a->label_len)) == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory for label targets");
	if (!r->probe)
		return NN_OK;
	r->features = malloc(sizeof(float) * (size_t) r->ds->n_rows * r->a->cfg.h_dim);
	if (r->features == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory for probe features");
	return batch_pooled_features(bb, r->a, &r->ws, &r->tc, r->ds->n_rows, r->features, err);
}

/* AdamW with the four parameter groups and the step schedule. */
static void
prepare_optimizer(TrainRun *r)
{
	const TrainOptions *opt = r->opt;
	int			epochs = r->probe ? opt->probe_epochs : opt->epochs;

	adamw_init(&r->adamw);
	r->adamw.lr[GROUP_PROMPT] = opt->lr_prompt;
	r->adamw.lr[GROUP_LOWRANK] = opt->lr_lowrank;
	r->adamw.lr[GROUP_EPT] = opt->lr_ept;
	r->adamw.lr[GROUP_HEAD] = opt->lr_head;
	for (int g = 0; g < 4; g++)
		r->adamw.weight_decay[g] = opt->weight_decay;
	adapter_register(r->a, &r->adamw);

	r->steps_per_epoch = (r->res->n_train + opt->batch_size - 1) / opt->batch_size;
	r->total_steps = epochs > 0 ? r->steps_per_epoch * epochs : opt->max_steps;
	if (opt->max_steps > 0 && opt->max_steps < r->total_steps)
		r->total_steps = opt->max_steps;
	r->warmup = (long) (opt->warmup_ratio * r->total_steps);
	memcpy(r->order, r->train_rows, sizeof(int) * r->res->n_train);
}

/* Regression: standardise with the mean and sd of the training rows' targets. */
static void
set_target_stats(TrainRun *r)
{
	double		sum = 0.0,
				sq = 0.0;
	int			n = r->res->n_train;

	for (int i = 0; i < n; i++)
		sum += r->ds->targets[r->train_rows[i]];
	sum /= n;
	for (int i = 0; i < n; i++)
	{
		double		dv = r->ds->targets[r->train_rows[i]] - sum;

		sq += dv * dv;
	}
	adapter_set_target(r->a, sum, sqrt(sq / n));
}

static NnStatus
setup_run(TrainRun *r, NnError *err)
{
	NnStatus	st;
	int			n = r->ds->n_rows;

	if ((st = check_options(r->bb, r->opt, err)) != NN_OK ||
		(st = batch_check_pair(r->bb, r->ds, r->opt->pair, err)) != NN_OK)
		return st;
	if ((st = make_adapter(r->bb, r->ds, r->opt, &r->a, err)) != NN_OK)
		return st;
	r->res->param_count = adapter_param_count(&r->a->cfg);
	r->text = r->a->cfg.head == ADAPTER_HEAD_TEXT;
	rng_seed(&r->rng, r->opt->seed ^ 0x5eedULL);
	/* a transfer starts from the other adapter's tensors instead of a fresh prompt */
	if (r->opt->init_from == NULL)
		init_prompt(r->bb, r->a, r->opt, &r->rng);
	else if ((st = adapter_init_from(r->a, r->opt->init_from, r->opt->init_head, err)) != NN_OK)
		return st;
	if (r->opt->head_from != NULL && (st = adapter_copy_head(r->a, r->opt->head_from, err)) != NN_OK)
		return st;
	r->train_rows = malloc(sizeof(int) * n);
	r->valid_rows = malloc(sizeof(int) * n);
	r->order = malloc(sizeof(int) * n);
	r->best = malloc(sizeof(float) * r->res->param_count);
	if (!r->train_rows || !r->valid_rows || !r->order || !r->best)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory");
	if ((st = split_rows(r, err)) != NN_OK || (st = prepare_batches(r, err)) != NN_OK)
		return st;
	/* the linear head's MSE; a text-to-text regression trains on its bins' strings */
	if (r->regression && !r->text)
	{
		if ((r->batch_targets = malloc(sizeof(float) * r->opt->batch_size)) == NULL)
			return nn_fail(err, NN_ERR_NOMEM, "out of memory");
		set_target_stats(r);
	}
	prepare_optimizer(r);
	return NN_OK;
}

/*
 * Loss and gradients of one batch (rows of order from start) on the linear
 * head: from the cached features (probe), or through adapter and backbone.
 */
static NnStatus
linear_step(TrainRun *r, const int *rows, int B, double *loss, int *n, NnError *err)
{
	const Backbone *bb = r->bb;
	Workspace  *ws = &r->ws;
	NnStatus	st;

	if (r->probe)
	{
		size_t		h_dim = r->a->cfg.h_dim;

		for (int b = 0; b < B; b++)
			memcpy(ws->h + (size_t) b * h_dim, r->features + (size_t) rows[b] * h_dim,
				   sizeof(float) * h_dim);
		head_forward(r->a, ws->h, B, ws->logits);
	}
	else if ((st = batch_forward_rows(bb, r->a, ws, &r->tc, rows, B, n, err)) != NN_OK)
		return st;
	if (r->regression)
	{
		for (int b = 0; b < B; b++)
			r->batch_targets[b] = r->ds->targets[rows[b]];
		head_mse_backward(r->a, ws->h, ws->logits, r->batch_targets, B, ws->dh, loss);
	}
	else if ((st = head_loss_backward(r->a, ws->h, ws->logits, ws->labels, B, ws->dh, loss,
									  err)) != NN_OK)
		return st;
	if (r->l2 > 0.0f)
		for (size_t i = 0; i < r->a->head_w.n; i++)
			r->a->head_w.g[i] += r->l2 * r->a->head_w.w[i];
	if (r->probe)
		return NN_OK;
	return batch_backward_rows(bb, r->a, ws, B, *n, err);
}

/* What validation maximises: accuracy, or for a regression minus the MSE. */
static double
metric_score(const ClassMetrics *m)
{
	return m->regression ? -m->mse : m->accuracy;
}

/* Validation now: keep the adapter as the best checkpoint when it is better. */
static NnStatus
evaluate_step(TrainRun *r, NnError *err)
{
	TrainResult *res = r->res;
	ClassMetrics *m = NULL;
	const int  *eval_rows = res->n_valid > 0 ? r->valid_rows : r->train_rows;
	int			n_eval = res->n_valid > 0 ? res->n_valid : res->n_train;
	NnStatus	st;

	if ((st = batch_evaluate(r->bb, r->a, &r->ws, &r->tc, r->ds, r->features, eval_rows, n_eval,
							 &m, err)) != NN_OK)
		return st;
	r->last_acc = m->regression ? m->pearson : m->accuracy;
	if (!r->have_best || metric_score(m) > r->best_acc)
	{
		r->have_best = true;
		r->best_acc = metric_score(m);
		res->best_step = r->steps_done + r->step;
		res->probe_l2 = r->l2;
		checkpoint_copy(r->a, r->best, true);
		metrics_free(res->valid_metrics);
		res->valid_metrics = m;
		r->evals_without_gain = 0;
	}
	else
	{
		metrics_free(m);
		r->evals_without_gain++;
	}
	return NN_OK;
}

/* The caller's progress callback; false when it asks to stop. */
static bool
report_progress(TrainRun *r, double loss)
{
	const TrainOptions *opt = r->opt;
	double		elapsed = now_seconds() - r->start_time;
	long		done = r->steps_done + r->step,
				all = r->steps_done + (long) r->passes * r->total_steps;
	TrainProgress p = {done, all, r->res->epochs_run, loss, r->last_acc,
		(double) done * opt->batch_size / (elapsed > 0 ? elapsed : 1e-9),
	elapsed / done * (all - done)};

	return opt->progress == NULL || opt->progress(opt->progress_arg, &p);
}

/*
 * One optimiser step on the batch of order from start: the loss of the
 * adapter's head (text-to-text or linear), clipping, AdamW, then
 * validation when due and progress.  Sets *stop when the run must end
 * (cancelled, or no gain for patience evaluations).
 */
static NnStatus
train_step(TrainRun *r, int start, bool *stop, NnError *err)
{
	const TrainOptions *opt = r->opt;
	TrainResult *res = r->res;
	int			B = res->n_train - start < opt->batch_size ? res->n_train - start : opt->batch_size;
	int			n = 0;
	double		loss;
	bool		eval_now;
	NnStatus	st;

	adamw_zero_grad(&r->adamw);
	for (int b = 0; b < B; b++)
		r->ws.labels[b] = r->ds->labels[r->order[start + b]];
	st = r->text ? text_step(r->bb, r->a, &r->ws, &r->tc, r->ds, r->order + start, B, &loss, &n, err)
		: linear_step(r, r->order + start, B, &loss, &n, err);
	if (st != NN_OK)
		return st;
	if (!r->probe)
		res->train_tokens += (long) B * batch_sequences_per_row(r->a->cfg.pair) *
			(adapter_prompt_rows(&r->a->cfg) + n);
	if (opt->max_grad_norm > 0)
		clip_grad_norm(&r->adamw, opt->max_grad_norm);
	adamw_step(&r->adamw, schedule_warmup_linear(r->step, r->warmup, r->total_steps));
	r->step++;

	eval_now = opt->eval_every > 0 ? r->step % opt->eval_every == 0 : (start + B >= res->n_train);
	if (r->step == r->total_steps)
		eval_now = true;
	if (eval_now && (st = evaluate_step(r, err)) != NN_OK)
		return st;
	if (!report_progress(r, loss))
		res->cancelled = true;
	*stop = res->cancelled || (opt->patience > 0 && r->evals_without_gain >= opt->patience);
	return NN_OK;
}

static void
free_run(TrainRun *r)
{
	batch_token_cache_free(&r->tc);
	batch_workspace_free(r->bb, &r->ws);
	free(r->train_rows);
	free(r->valid_rows);
	free(r->order);
	free(r->features);
	free(r->best);
	free(r->batch_targets);
}

/* Epochs over the training rows until total_steps, cancel or patience. */
static NnStatus
run_epochs(TrainRun *r, NnError *err)
{
	const TrainOptions *opt = r->opt;
	TrainResult *res = r->res;
	NnStatus	st;

	while (r->step < r->total_steps && !res->cancelled)
	{
		bool		stop = false;

		shuffle(r->order, res->n_train, &r->rng);
		res->epochs_run++;
		for (int start = 0; start < res->n_train && r->step < r->total_steps && !stop;
			 start += opt->batch_size)
			if ((st = train_step(r, start, &stop, err)) != NN_OK)
				return st;
		if (stop)
			r->total_steps = r->step;
	}
	return NN_OK;
}

/*
 * The probe over its L2 grid: a zero head and a fresh optimiser for each
 * strength, the best checkpoint kept across them (evaluate_step).
 */
static NnStatus
run_probe_search(TrainRun *r, NnError *err)
{
	long		total = r->total_steps;
	NnStatus	st;

	for (size_t i = 0; i < sizeof(probe_l2_grid) / sizeof(probe_l2_grid[0]); i++)
	{
		AdapterParam *head[] = {&r->a->head_w, &r->a->head_b};

		if (r->res->cancelled)
			break;
		for (int t = 0; t < 2; t++)
		{
			memset(head[t]->w, 0, sizeof(float) * head[t]->n);
			memset(head[t]->m, 0, sizeof(float) * head[t]->n);
			memset(head[t]->v, 0, sizeof(float) * head[t]->n);
		}
		r->adamw.step = 0;
		r->l2 = probe_l2_grid[i];
		r->steps_done += r->step;
		r->step = 0;
		r->passes = (int) (sizeof(probe_l2_grid) / sizeof(probe_l2_grid[0]) - i);
		r->total_steps = total;
		r->evals_without_gain = 0;
		r->res->epochs_run = 0;
		if ((st = run_epochs(r, err)) != NN_OK)
			return st;
	}
	return NN_OK;
}

/* The exact solver serves a classifier whose head is small enough to fold (probe_fit.h). */
#define PROBE_SOLVER_MAX_CLASSES 256

static bool
uses_probe_solver(const TrainRun *r)
{
	return r->probe && r->opt->probe_search && r->opt->probe_solver && !r->regression &&
		r->ds->n_classes <= PROBE_SOLVER_MAX_CLASSES;
}

/* Progress between the solver's fits; false when the caller cancels. */
static bool
probe_between(void *arg, int done, int due)
{
	TrainRun   *r = arg;

	r->step = done;
	r->total_steps = due;
	return report_progress(r, 0.0);
}

/*
 * The probe by probe_search_fit: C chosen by cross-validation on the
 * training rows, the solution copied into the head and scored once on the
 * validation rows (docs/design.md 1, "The probe and auto").
 */
static NnStatus
run_probe_solver(TrainRun *r, NnError *err)
{
	Adapter    *a = r->a;
	ProbeProblem p = {.features = r->features, .labels = r->ds->labels, .rows = r->train_rows,
	.n = r->res->n_train, .d = a->cfg.h_dim, .classes = a->cfg.n_classes};
	size_t		nw = (size_t) p.classes * p.d;
	double	   *theta = malloc(sizeof(double) * (nw + p.classes));
	ProbeSearch found;
	bool		cancelled;
	NnStatus	st;

	if (theta == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory for the probe's solution");
	st = probe_search_fit(&p, r->opt->seed, theta, &found, probe_between, r, &cancelled, err);
	if (st == NN_OK && !cancelled)
	{
		for (size_t i = 0; i < nw; i++)
			a->head_w.w[i] = (float) theta[i];
		for (int c = 0; c < p.classes; c++)
			a->head_b.w[c] = (float) theta[nw + c];
		r->l2 = (float) found.lambda;
		r->res->probe_c = found.c_reg;
		r->res->epochs_run = 0;
		st = evaluate_step(r, err);
	}
	r->res->cancelled = r->res->cancelled || cancelled;
	free(theta);
	return st;
}

NnStatus
train_adapter(const Backbone *bb, const Dataset *ds, const TrainOptions *opt,
			  TrainResult *res, NnError *err)
{
	TrainRun	r = {.bb = bb, .ds = ds, .opt = opt, .res = res, .best_acc = -1.0,
	.last_acc = -1.0, .probe = opt->method == ADAPTER_PROBE, .regression = ds->regression,
	.passes = 1};
	NnStatus	st;

	memset(res, 0, sizeof(*res));
	r.start_time = now_seconds();
	if ((st = setup_run(&r, err)) != NN_OK)
		goto done;
	if (uses_probe_solver(&r))
		st = run_probe_solver(&r, err);
	else
		st = r.probe && opt->probe_search ? run_probe_search(&r, err) : run_epochs(&r, err);
	if (st != NN_OK)
		goto done;
	res->steps = r.steps_done + r.step;
	res->seconds = now_seconds() - r.start_time;
	res->seconds_per_epoch = res->seconds * r.steps_per_epoch / (res->steps > 0 ? res->steps : 1);
	res->tokens_per_second = res->train_tokens / (res->seconds > 0 ? res->seconds : 1e-9);
	if (r.have_best)
		checkpoint_copy(r.a, r.best, false);

done:
	free_run(&r);
	if (st == NN_OK)
		res->adapter = r.a;
	else
	{
		adapter_free(r.a);
		metrics_free(res->valid_metrics);
		res->valid_metrics = NULL;
	}
	return st;
}

void
train_result_free(TrainResult *res)
{
	adapter_free(res->adapter);
	metrics_free(res->valid_metrics);
	res->adapter = NULL;
	res->valid_metrics = NULL;
}


