/*
 * train.c: the training loop, evaluation and batch classification
 * (see train.h).
 */
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rng.h"
#include "t5.h"

/* Every row's token ids, computed once. */
typedef struct TokenCache
{
	int32_t    *ids;			/* (n_rows, max_len) */
	int		   *count;			/* (n_rows) */
	int			max_len;
} TokenCache;

/* Buffers for one batch shape, allocated once per training run. */
typedef struct Workspace
{
	int			max_batch;
	int			max_seq;		/* prompt rows + max_len */
	float	   *E;				/* (B, max_len, d_embed) */
	uint8_t    *e_mask;			/* (B, max_len) */
	float	   *X;				/* (B, max_seq, d_embed) */
	uint8_t    *x_mask;			/* (B, max_seq) */
	float	   *dX;				/* (B, max_seq, d_embed) */
	float	   *h;				/* (B, d_out) */
	float	   *dh;				/* (B, d_out) */
	float	   *logits;			/* (B, C) */
	int		   *labels;			/* (B) */
	int32_t    *targets;		/* (B, label_len) text-to-text target ids, or NULL */
	BackboneRun *run;
} Workspace;

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
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static NnStatus
tokenize_all(const Backbone *bb, const Dataset *ds, int max_len, TokenCache *tc, NnError *err)
{
	tc->max_len = max_len;
	tc->ids = malloc(sizeof(int32_t) * (size_t) ds->n_rows * max_len);
	tc->count = malloc(sizeof(int) * (size_t) ds->n_rows);
	if (tc->ids == NULL || tc->count == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory tokenizing %d rows", ds->n_rows);
	for (int i = 0; i < ds->n_rows; i++)
	{
		tc->count[i] = bb->ops->tokenize(bb, ds->texts[i], ds->text_lens[i],
										 tc->ids + (size_t) i * max_len, max_len);
		if (tc->count[i] < 0)
			return nn_fail(err, NN_ERR_NOMEM, "out of memory tokenizing row %d", i);
	}
	return NN_OK;
}

static void
token_cache_free(TokenCache *tc)
{
	free(tc->ids);
	free(tc->count);
}

static void
workspace_free(const Backbone *bb, Workspace *ws)
{
	free(ws->E);
	free(ws->e_mask);
	free(ws->X);
	free(ws->x_mask);
	free(ws->dX);
	free(ws->h);
	free(ws->dh);
	free(ws->logits);
	free(ws->labels);
	free(ws->targets);
	if (ws->run)
		bb->ops->run_free(ws->run);
	memset(ws, 0, sizeof(*ws));
}

static NnStatus
workspace_init(const Backbone *bb, Workspace *ws, int max_batch, int prompt_rows, int max_len,
			   int n_classes, bool training, bool bf16, NnError *err)
{
	size_t		B = max_batch,
				d = bb->d_embed;

	memset(ws, 0, sizeof(*ws));
	ws->max_batch = max_batch;
	ws->max_seq = prompt_rows + max_len;
	if (ws->max_seq > bb->max_positions)
		return nn_fail(err, NN_ERR_ARG,
					   "%d prompt rows + %d tokens exceed the %d positions of the backbone",
					   prompt_rows, max_len, bb->max_positions);
	ws->E = malloc(sizeof(float) * B * max_len * d);
	ws->e_mask = malloc(B * max_len);
	ws->X = malloc(sizeof(float) * B * ws->max_seq * d);
	ws->x_mask = malloc(B * ws->max_seq);
	ws->dX = training ? malloc(sizeof(float) * B * ws->max_seq * d) : NULL;
	ws->h = malloc(sizeof(float) * B * bb->d_out);
	ws->dh = malloc(sizeof(float) * B * bb->d_out);
	ws->logits = malloc(sizeof(float) * B * n_classes);
	ws->labels = malloc(sizeof(int) * B);
	ws->run = bb->ops->run_new(bb, max_batch, ws->max_seq);
	if (ws->run && bf16)
		backbone_run_use_bf16(bb, ws->run, true);
	if (!ws->E || !ws->e_mask || !ws->X || !ws->x_mask || (training && !ws->dX) || !ws->h ||
		!ws->dh || !ws->logits || !ws->labels || !ws->run)
	{
		workspace_free(bb, ws);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory allocating training buffers");
	}
	return NN_OK;
}

/* E, e_mask for rows[0..B) padded to their longest; returns that length n. */
static int
gather_embeddings(const Backbone *bb, const TokenCache *tc, const int *rows, int B,
				  float *E, uint8_t *e_mask)
{
	int			n = 1;
	size_t		d = bb->d_embed;

	for (int b = 0; b < B; b++)
		if (tc->count[rows[b]] > n)
			n = tc->count[rows[b]];
	memset(E, 0, sizeof(float) * (unsigned) B * (unsigned) n * d);
	memset(e_mask, 0, (size_t) (unsigned) B * (unsigned) n);
	for (int b = 0; b < B; b++)
		bb->ops->embed_tokens(bb, tc->ids + (size_t) rows[b] * tc->max_len, tc->count[rows[b]],
							  E + (size_t) b * n * d, e_mask + (size_t) b * n);
	return n;
}

/* Forward of B rows through adapter, backbone and head; returns the padded token length. */
static NnStatus
forward_rows(const Backbone *bb, Adapter *a, Workspace *ws, const TokenCache *tc,
			 const int *rows, int B, int *n_out, NnError *err)
{
	int			n = gather_embeddings(bb, tc, rows, B, ws->E, ws->e_mask);
	int			P = adapter_prompt_rows(&a->cfg),
				T = P + n;
	NnStatus	st;

	adapter_forward(a, ws->E, ws->e_mask, B, n, ws->X, ws->x_mask);
	backbone_run_pool_skip(bb, ws->run, a->cfg.pool_text ? P : 0);
	st = bb->ops->forward(bb, ws->run, ws->X, ws->x_mask, B, T, ws->h, err);
	if (st != NN_OK)
		return st;
	head_forward(a, ws->h, B, ws->logits);
	*n_out = n;
	return NN_OK;
}

/*
 * Rank-classification scores (B, C) of B encoder inputs X (B, T, d): the
 * log-likelihood of every label string.  The decoder runs one sequence per
 * row and label, so rows go in groups of B / C (at least one): its buffers
 * then hold at most max(B, C) sequences, as many as a training step's
 * B when C <= B, instead of B * C.
 */
static NnStatus
rank_scores(const Backbone *bb, BackboneRun *run, const Adapter *a, const float *X,
			const uint8_t *mask, int B, int T, float *scores, NnError *err)
{
	int			C = a->cfg.n_classes,
				R = B / C > 1 ? B / C : 1;
	size_t		d = bb->d_embed;

	for (int r0 = 0; r0 < B; r0 += R)
	{
		int			n = B - r0 < R ? B - r0 : R;
		NnStatus	st = t5_label_loglik(bb, run, X + (size_t) r0 * T * d, mask + (size_t) r0 * T,
										 n, T, a->label_ids, C, a->label_len,
										 scores + (size_t) r0 * C, err);

		if (st != NN_OK)
			return st;
	}
	return NN_OK;
}

/*
 * Class scores (B, C) of rows into ws->logits: the linear head's logits,
 * or for a text-to-text head the log-likelihood of every label string.
 */
static NnStatus
score_rows(const Backbone *bb, Adapter *a, Workspace *ws, const TokenCache *tc,
		   const int *rows, int B, NnError *err)
{
	int			n;

	if (a->cfg.head != ADAPTER_HEAD_TEXT)
		return forward_rows(bb, a, ws, tc, rows, B, &n, err);
	n = gather_embeddings(bb, tc, rows, B, ws->E, ws->e_mask);
	adapter_forward(a, ws->E, ws->e_mask, B, n, ws->X, ws->x_mask);
	return rank_scores(bb, ws->run, a, ws->X, ws->x_mask, B, adapter_prompt_rows(&a->cfg) + n,
					   ws->logits, err);
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
	int			n = gather_embeddings(bb, tc, rows, B, ws->E, ws->e_mask);
	int			L = a->label_len;
	float		l = 0.0f;
	NnStatus	st;

	for (int b = 0; b < B; b++)
		memcpy(ws->targets + (size_t) b * L, a->label_ids + (size_t) ds->labels[rows[b]] * L,
			   sizeof(int32_t) * L);
	adapter_forward(a, ws->E, ws->e_mask, B, n, ws->X, ws->x_mask);
	st = t5_loss_forward(bb, ws->run, ws->X, ws->x_mask, B, adapter_prompt_rows(&a->cfg) + n,
						 ws->targets, L, &l, NULL, err);
	if (st == NN_OK)
		st = t5_loss_backward(bb, ws->run, ws->dX, err);
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

static int
argmax(const float *x, int n)
{
	int			best = 0;

	for (int i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return best;
}

/* Pooled vectors for a probe: computed once, the backbone never trains. */
static NnStatus
pooled_features(const Backbone *bb, Adapter *a, Workspace *ws, const TokenCache *tc,
				int n_rows, float *features, NnError *err)
{
	int			rows[1024];

	for (int start = 0; start < n_rows; start += ws->max_batch)
	{
		int			B = n_rows - start < ws->max_batch ? n_rows - start : ws->max_batch;
		int			n;
		NnStatus	st;

		for (int b = 0; b < B; b++)
			rows[b] = start + b;
		st = forward_rows(bb, a, ws, tc, rows, B, &n, err);
		if (st != NN_OK)
			return st;
		memcpy(features + (size_t) start * bb->d_out, ws->h, sizeof(float) * B * bb->d_out);
	}
	return NN_OK;
}

/* Validation metrics of the current adapter. */
static NnStatus
evaluate_cached(const Backbone *bb, Adapter *a, Workspace *ws, const TokenCache *tc,
				const Dataset *ds, const float *features, const int *rows, int n_rows,
				ClassMetrics **out, NnError *err)
{
	ClassMetrics *m = metrics_new(ds->n_classes);
	int			C = ds->n_classes;

	if (m == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory for metrics");
	for (int start = 0; start < n_rows; start += ws->max_batch)
	{
		int			B = n_rows - start < ws->max_batch ? n_rows - start : ws->max_batch;

		if (features != NULL)
		{
			for (int b = 0; b < B; b++)
				memcpy(ws->h + (size_t) b * bb->d_out,
					   features + (size_t) rows[start + b] * bb->d_out, sizeof(float) * bb->d_out);
			head_forward(a, ws->h, B, ws->logits);
		}
		else if (score_rows(bb, a, ws, tc, rows + start, B, err) != NN_OK)
		{
			metrics_free(m);
			return err ? err->status : NN_ERR_FORMAT;
		}
		for (int b = 0; b < B; b++)
			metrics_add(m, ds->labels[rows[start + b]], argmax(ws->logits + (size_t) b * C, C));
	}
	metrics_finish(m);
	*out = m;
	return NN_OK;
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
	cfg.h_dim = bb->d_out;
	cfg.n_classes = ds->n_classes;
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
	if ((st = adapter_new(a, &cfg, opt->batch_size, opt->seed, err)) != NN_OK)
		return st;
	if ((st = text_head_bind_labels(bb, *a, (const char *const *) ds->class_names, err)) != NN_OK)
	{
		adapter_free(*a);
		*a = NULL;
	}
	return st;
}

NnStatus
train_choose_head(const Backbone *bb, const TrainOptions *opt, AdapterHead *head, NnError *err)
{
	bool		t5 = t5_is(bb);

	switch (opt->head)
	{
		case TRAIN_HEAD_AUTO:
			*head = t5 && opt->method != ADAPTER_PROBE ? ADAPTER_HEAD_TEXT : ADAPTER_HEAD_LINEAR;
			return NN_OK;
		case TRAIN_HEAD_LINEAR:
			*head = ADAPTER_HEAD_LINEAR;
			return NN_OK;
		case TRAIN_HEAD_TEXT:
			if (!t5)
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

NnStatus
text_head_bind_labels(const Backbone *bb, Adapter *a, const char *const *names, NnError *err)
{
	int			C = a->cfg.n_classes,
				max = bb->max_tokens,
				len = 1;
	int32_t    *ids,
			   *packed = NULL;
	int		   *count;
	NnStatus	st = NN_OK;

	if (a->cfg.head != ADAPTER_HEAD_TEXT)
		return NN_OK;
	if (!t5_is(bb))
		return nn_fail(err, NN_ERR_ARG, "a text-to-text adapter needs a T5 backbone, not %s",
					   bb->ops->family);
	ids = malloc(sizeof(int32_t) * (size_t) C * max);
	count = malloc(sizeof(int) * (size_t) C);
	if (ids == NULL || count == NULL)
	{
		st = nn_fail(err, NN_ERR_NOMEM, "out of memory tokenizing %d labels", C);
		goto done;
	}
	for (int c = 0; c < C; c++)
	{
		count[c] = bb->ops->tokenize(bb, names[c], strlen(names[c]), ids + (size_t) c * max, max);
		if (count[c] <= 0)
		{
			st = nn_fail(err, NN_ERR_NOMEM, "could not tokenize label %d", c);
			goto done;
		}
		if (count[c] > len)
			len = count[c];
	}
	/* equal ids would get equal scores: rank classification could never pick one of them */
	for (int c = 0; c < C; c++)
		for (int k = c + 1; k < C; k++)
			if (count[c] == count[k] &&
				memcmp(ids + (size_t) c * max, ids + (size_t) k * max, sizeof(int32_t) * count[c]) == 0)
			{
				st = nn_fail(err, NN_ERR_ARG, "labels \"%.64s\" and \"%.64s\" tokenize to the same ids, "
							 "so text-to-text classification cannot tell them apart", names[c], names[k]);
				goto done;
			}
	if ((packed = malloc(sizeof(int32_t) * (size_t) C * len)) == NULL)
	{
		st = nn_fail(err, NN_ERR_NOMEM, "out of memory for label token ids");
		goto done;
	}
	for (int c = 0; c < C; c++)
		for (int t = 0; t < len; t++)
			packed[(size_t) c * len + t] = t < count[c] ? ids[(size_t) c * max + t] : -1;
	st = adapter_set_label_ids(a, packed, len, err);
done:
	free(ids);
	free(count);
	free(packed);
	return st;
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

NnStatus
train_adapter(const Backbone *bb, const Dataset *ds, const TrainOptions *opt,
			  TrainResult *res, NnError *err)
{
	TokenCache	tc = {0};
	Workspace	ws = {0};
	Adapter    *a = NULL;
	AdamW		adamw;
	Rng			rng;
	int		   *train_rows = NULL,
			   *valid_rows = NULL,
			   *order = NULL;
	float	   *features = NULL,
			   *best = NULL;
	bool		probe = opt->method == ADAPTER_PROBE,
				text;
	double		best_acc = -1.0,
				last_acc = -1.0,
				start_time = now_seconds();
	long		total_steps,
				steps_per_epoch,
				warmup,
				step = 0;
	int			evals_without_gain = 0;
	NnStatus	st;

	memset(res, 0, sizeof(*res));
	if ((st = check_options(bb, opt, err)) != NN_OK)
		return st;
	if ((st = make_adapter(bb, ds, opt, &a, err)) != NN_OK)
		return st;
	res->param_count = adapter_param_count(&a->cfg);
	text = a->cfg.head == ADAPTER_HEAD_TEXT;
	rng_seed(&rng, opt->seed ^ 0x5eedULL);
	init_prompt(bb, a, opt, &rng);

	train_rows = malloc(sizeof(int) * ds->n_rows);
	valid_rows = malloc(sizeof(int) * ds->n_rows);
	order = malloc(sizeof(int) * ds->n_rows);
	best = malloc(sizeof(float) * res->param_count);
	if (!train_rows || !valid_rows || !order || !best)
	{
		st = nn_fail(err, NN_ERR_NOMEM, "out of memory");
		goto done;
	}
	if (opt->valid_tail > 0)
	{
		/* a fixed validation set: the last valid_tail rows, in file order */
		if (opt->valid_tail >= ds->n_rows)
		{
			st = nn_fail(err, NN_ERR_ARG, "%d validation rows leave none of %d to train on",
						 opt->valid_tail, ds->n_rows);
			goto done;
		}
		res->n_train = ds->n_rows - opt->valid_tail;
		res->n_valid = opt->valid_tail;
		for (int i = 0; i < ds->n_rows; i++)
			*(i < res->n_train ? &train_rows[i] : &valid_rows[i - res->n_train]) = i;
	}
	else
		dataset_split(ds, opt->valid_fraction, opt->seed, train_rows, &res->n_train, valid_rows,
					  &res->n_valid);
	if (res->n_train == 0)
	{
		st = nn_fail(err, NN_ERR_ARG, "no rows left to train on");
		goto done;
	}
	if ((st = tokenize_all(bb, ds, opt->max_len, &tc, err)) != NN_OK)
		goto done;
	if ((st = workspace_init(bb, &ws, opt->batch_size, adapter_prompt_rows(&a->cfg), opt->max_len,
							 ds->n_classes, !probe, opt->bf16, err)) != NN_OK)
		goto done;
	if (text && (ws.targets = malloc(sizeof(int32_t) * (size_t) opt->batch_size * a->label_len)) == NULL)
	{
		st = nn_fail(err, NN_ERR_NOMEM, "out of memory for label targets");
		goto done;
	}
	if (probe)
	{
		features = malloc(sizeof(float) * (size_t) ds->n_rows * bb->d_out);
		if (features == NULL)
		{
			st = nn_fail(err, NN_ERR_NOMEM, "out of memory for probe features");
			goto done;
		}
		if ((st = pooled_features(bb, a, &ws, &tc, ds->n_rows, features, err)) != NN_OK)
			goto done;
	}

	adamw_init(&adamw);
	adamw.lr[GROUP_PROMPT] = opt->lr_prompt;
	adamw.lr[GROUP_LOWRANK] = opt->lr_lowrank;
	adamw.lr[GROUP_EPT] = opt->lr_ept;
	adamw.lr[GROUP_HEAD] = opt->lr_head;
	for (int g = 0; g < 4; g++)
		adamw.weight_decay[g] = opt->weight_decay;
	adapter_register(a, &adamw);

	steps_per_epoch = (res->n_train + opt->batch_size - 1) / opt->batch_size;
	total_steps = opt->epochs > 0 ? steps_per_epoch * opt->epochs : opt->max_steps;
	if (opt->max_steps > 0 && opt->max_steps < total_steps)
		total_steps = opt->max_steps;
	warmup = (long) (opt->warmup_ratio * total_steps);
	memcpy(order, train_rows, sizeof(int) * res->n_train);

	while (step < total_steps && !res->cancelled)
	{
		shuffle(order, res->n_train, &rng);
		res->epochs_run++;
		for (int start = 0; start < res->n_train && step < total_steps; start += opt->batch_size)
		{
			int			B = res->n_train - start < opt->batch_size ? res->n_train - start : opt->batch_size;
			int			n = 0;
			double		loss;
			bool		eval_now;

			adamw_zero_grad(&adamw);
			for (int b = 0; b < B; b++)
				ws.labels[b] = ds->labels[order[start + b]];
			if (text)
			{
				if ((st = text_step(bb, a, &ws, &tc, ds, order + start, B, &loss, &n, err)) != NN_OK)
					goto done;
			}
			else
			{
				if (probe)
				{
					for (int b = 0; b < B; b++)
						memcpy(ws.h + (size_t) b * bb->d_out,
							   features + (size_t) order[start + b] * bb->d_out,
							   sizeof(float) * bb->d_out);
					head_forward(a, ws.h, B, ws.logits);
				}
				else if ((st = forward_rows(bb, a, &ws, &tc, order + start, B, &n, err)) != NN_OK)
					goto done;
				loss = head_loss_backward(a, ws.h, ws.logits, ws.labels, B, ws.dh);
				if (!probe && (st = bb->ops->backward(bb, ws.run, ws.dh, ws.dX, err)) != NN_OK)
					goto done;
				if (!probe)
					adapter_backward(a, ws.dX, B, n);
			}
			if (!probe)
				res->train_tokens += (long) B * (adapter_prompt_rows(&a->cfg) + n);
			if (opt->max_grad_norm > 0)
				clip_grad_norm(&adamw, opt->max_grad_norm);
			adamw_step(&adamw, schedule_warmup_linear(step, warmup, total_steps));
			step++;

			eval_now = opt->eval_every > 0 ? step % opt->eval_every == 0
				: (start + B >= res->n_train);
			if (step == total_steps)
				eval_now = true;
			if (eval_now)
			{
				ClassMetrics *m = NULL;
				const int  *eval_rows = res->n_valid > 0 ? valid_rows : train_rows;
				int			n_eval = res->n_valid > 0 ? res->n_valid : res->n_train;

				if ((st = evaluate_cached(bb, a, &ws, &tc, ds, features, eval_rows, n_eval, &m,
										  err)) != NN_OK)
					goto done;
				last_acc = m->accuracy;
				if (m->accuracy > best_acc)
				{
					best_acc = m->accuracy;
					res->best_step = step;
					checkpoint_copy(a, best, true);
					metrics_free(res->valid_metrics);
					res->valid_metrics = m;
					evals_without_gain = 0;
				}
				else
				{
					metrics_free(m);
					evals_without_gain++;
				}
			}
			if (opt->progress)
			{
				double		elapsed = now_seconds() - start_time;
				TrainProgress p = {step, total_steps, res->epochs_run, loss, last_acc,
					(double) step * opt->batch_size / (elapsed > 0 ? elapsed : 1e-9),
				elapsed / step * (total_steps - step)};

				if (!opt->progress(opt->progress_arg, &p))
					res->cancelled = true;
			}
			if (res->cancelled || (opt->patience > 0 && evals_without_gain >= opt->patience))
			{
				total_steps = step;
				break;
			}
		}
	}
	res->steps = step;
	res->seconds = now_seconds() - start_time;
	res->seconds_per_epoch = res->seconds * steps_per_epoch / (step > 0 ? step : 1);
	res->tokens_per_second = res->train_tokens / (res->seconds > 0 ? res->seconds : 1e-9);
	if (best_acc >= 0)
		checkpoint_copy(a, best, false);
	st = NN_OK;

done:
	token_cache_free(&tc);
	workspace_free(bb, &ws);
	free(train_rows);
	free(valid_rows);
	free(order);
	free(features);
	free(best);
	if (st == NN_OK)
		res->adapter = a;
	else
	{
		adapter_free(a);
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

NnStatus
evaluate_rows(const Backbone *bb, Adapter *a, const Dataset *ds, const int *rows, int n_rows,
			  int batch_size, ClassMetrics **out, NnError *err)
{
	TokenCache	tc = {0};
	Workspace	ws = {0};
	NnStatus	st;
	int			max_len = a->cfg.max_len > 0 ? a->cfg.max_len : bb->max_tokens;

	if (batch_size > a->max_batch)
		batch_size = a->max_batch;
	st = tokenize_all(bb, ds, max_len, &tc, err);
	if (st == NN_OK)
		st = workspace_init(bb, &ws, batch_size, adapter_prompt_rows(&a->cfg), max_len,
							ds->n_classes > a->cfg.n_classes ? ds->n_classes : a->cfg.n_classes,
							false, false, err);
	if (st == NN_OK)
		st = evaluate_cached(bb, a, &ws, &tc, ds, NULL, rows, n_rows, out, err);
	token_cache_free(&tc);
	workspace_free(bb, &ws);
	return st;
}

NnStatus
classify_texts(const Backbone *bb, BackboneRun *run, Adapter *a, const char *const *texts,
			   const size_t *lens, int n, int batch_size, float *probs, NnError *err)
{
	int			C = a->cfg.n_classes,
				P = adapter_prompt_rows(&a->cfg),
				max_len = a->cfg.max_len > 0 ? a->cfg.max_len : bb->max_tokens;
	size_t		d = bb->d_embed;
	int32_t    *ids = malloc(sizeof(int32_t) * (size_t) batch_size * max_len);
	int		   *count = malloc(sizeof(int) * batch_size);
	float	   *E = malloc(sizeof(float) * batch_size * max_len * d);
	uint8_t    *e_mask = malloc((size_t) batch_size * max_len);
	float	   *X = malloc(sizeof(float) * batch_size * (P + max_len) * d);
	uint8_t    *x_mask = malloc((size_t) batch_size * (P + max_len));
	float	   *h = malloc(sizeof(float) * batch_size * bb->d_out);
	NnStatus	st = NN_OK;

	if (!ids || !count || !E || !e_mask || !X || !x_mask || !h || batch_size > a->max_batch)
	{
		st = nn_fail(err, NN_ERR_NOMEM, "out of memory classifying texts");
		goto done;
	}
	if (a->cfg.head == ADAPTER_HEAD_TEXT && a->label_ids == NULL)
	{
		st = nn_fail(err, NN_ERR_ARG, "text-to-text adapter without label ids (text_head_bind_labels)");
		goto done;
	}
	for (int start = 0; start < n; start += batch_size)
	{
		int			B = n - start < batch_size ? n - start : batch_size;
		int			len = 1;

		for (int b = 0; b < B; b++)
		{
			count[b] = bb->ops->tokenize(bb, texts[start + b], lens[start + b],
										 ids + (size_t) b * max_len, max_len);
			if (count[b] < 0)
			{
				st = nn_fail(err, NN_ERR_NOMEM, "out of memory tokenizing");
				goto done;
			}
			if (count[b] > len)
				len = count[b];
		}
		memset(E, 0, sizeof(float) * (unsigned) B * (unsigned) len * d);
		memset(e_mask, 0, (size_t) (unsigned) B * (unsigned) len);
		for (int b = 0; b < B; b++)
			bb->ops->embed_tokens(bb, ids + (size_t) b * max_len, count[b],
								  E + (size_t) b * len * d, e_mask + (size_t) b * len);
		adapter_forward(a, E, e_mask, B, len, X, x_mask);
		if (a->cfg.head == ADAPTER_HEAD_TEXT)
		{
			/* rank classification: the scores become probabilities by the softmax below */
			if ((st = rank_scores(bb, run, a, X, x_mask, B, P + len, probs + (size_t) start * C,
								  err)) != NN_OK)
				goto done;
		}
		else
		{
			backbone_run_pool_skip(bb, run, a->cfg.pool_text ? P : 0);
			if ((st = bb->ops->forward(bb, run, X, x_mask, B, P + len, h, err)) != NN_OK)
				goto done;
			head_forward(a, h, B, probs + (size_t) start * C);
		}
		for (int b = 0; b < B; b++)
		{
			float	   *row = probs + (size_t) (start + b) * C;
			float		max = row[argmax(row, C)];
			double		sum = 0.0;

			for (int c = 0; c < C; c++)
				sum += (row[c] = expf(row[c] - max));
			for (int c = 0; c < C; c++)
				row[c] = (float) (row[c] / sum);
		}
	}
done:
	/* the run may be shared (a server's cache): leave it pooling every row */
	if (run != NULL)
		backbone_run_pool_skip(bb, run, 0);
	free(ids);
	free(count);
	free(E);
	free(e_mask);
	free(X);
	free(x_mask);
	free(h);
	return st;
}
