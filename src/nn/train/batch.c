/*
 * batch.c: batches through adapter, backbone and head, for training and
 * classification alike (see batch.h).
 */
#include "train/batch.h"

#include <stdlib.h>
#include <string.h>

NnStatus
batch_tokenize_all(const Backbone *bb, const Dataset *ds, int max_len, TokenCache *tc, NnError *err)
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

void
batch_token_cache_free(TokenCache *tc)
{
	free(tc->ids);
	free(tc->count);
}

void
batch_workspace_free(const Backbone *bb, Workspace *ws)
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

NnStatus
batch_workspace_init(const Backbone *bb, Workspace *ws, int max_batch, int prompt_rows, int max_len,
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
		batch_workspace_free(bb, ws);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory allocating training buffers");
	}
	return NN_OK;
}

/* E, e_mask for rows[0..B) padded to their longest; returns that length n. */
int
batch_gather_embeddings(const Backbone *bb, const TokenCache *tc, const int *rows, int B,
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
NnStatus
batch_forward_rows(const Backbone *bb, Adapter *a, Workspace *ws, const TokenCache *tc,
			 const int *rows, int B, int *n_out, NnError *err)
{
	int			n = batch_gather_embeddings(bb, tc, rows, B, ws->E, ws->e_mask);
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
NnStatus
batch_rank_scores(const Backbone *bb, BackboneRun *run, const Adapter *a, const float *X,
			const uint8_t *mask, int B, int T, float *scores, NnError *err)
{
	int			C = a->cfg.n_classes,
				R = B / C > 1 ? B / C : 1;
	size_t		d = bb->d_embed;

	for (int r0 = 0; r0 < B; r0 += R)
	{
		int			n = B - r0 < R ? B - r0 : R;
		NnStatus	st = bb->ops->label_loglik(bb, run, X + (size_t) r0 * T * d, mask + (size_t) r0 * T,
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
NnStatus
batch_score_rows(const Backbone *bb, Adapter *a, Workspace *ws, const TokenCache *tc,
		   const int *rows, int B, NnError *err)
{
	int			n;

	if (a->cfg.head != ADAPTER_HEAD_TEXT)
		return batch_forward_rows(bb, a, ws, tc, rows, B, &n, err);
	n = batch_gather_embeddings(bb, tc, rows, B, ws->E, ws->e_mask);
	adapter_forward(a, ws->E, ws->e_mask, B, n, ws->X, ws->x_mask);
	return batch_rank_scores(bb, ws->run, a, ws->X, ws->x_mask, B, adapter_prompt_rows(&a->cfg) + n,
					   ws->logits, err);
}

int
batch_argmax(const float *x, int n)
{
	int			best = 0;

	for (int i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return best;
}

/* Pooled vectors for a probe: computed once, the backbone never trains. */
NnStatus
batch_pooled_features(const Backbone *bb, Adapter *a, Workspace *ws, const TokenCache *tc,
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
		st = batch_forward_rows(bb, a, ws, tc, rows, B, &n, err);
		if (st != NN_OK)
			return st;
		memcpy(features + (size_t) start * bb->d_out, ws->h, sizeof(float) * B * bb->d_out);
	}
	return NN_OK;
}

/* Validation metrics of the current adapter. */
NnStatus
batch_evaluate(const Backbone *bb, Adapter *a, Workspace *ws, const TokenCache *tc,
				const Dataset *ds, const float *features, const int *rows, int n_rows,
				ClassMetrics **out, NnError *err)
{
	ClassMetrics *m = a->cfg.regression ? metrics_new_regression(n_rows)
		: metrics_new(ds->n_classes);
	bool		bins = a->cfg.regression && a->cfg.head == ADAPTER_HEAD_TEXT;
	int			C = bins ? a->cfg.n_classes : a->cfg.regression ? 1 : ds->n_classes;

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
		else if (batch_score_rows(bb, a, ws, tc, rows + start, B, err) != NN_OK)
		{
			metrics_free(m);
			return err ? err->status : NN_ERR_FORMAT;
		}
		for (int b = 0; b < B; b++)
			if (a->cfg.regression)
				metrics_add_value(m, ds->targets ? ds->targets[rows[start + b]] : 0.0,
								  bins ? adapter_bin_value(a, ws->logits + (size_t) b * C)
								  : adapter_value(a, ws->logits[b]));
			else
				metrics_add(m, ds->labels[rows[start + b]], batch_argmax(ws->logits + (size_t) b * C, C));
	}
	metrics_finish(m);
	*out = m;
	return NN_OK;
}
