/*
 * classify.c: inference with a trained adapter, shared by SQL (dept_predict,
 * dept_evaluate), the command line and the benchmarks: binding a
 * text-to-text adapter's label strings, evaluating rows of a dataset, and
 * classifying texts in batches (see train.h).
 */
#include "train/batch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A text-to-text regression's bins: each label string read as its value. */
static NnStatus
bind_bin_values(Adapter *a, const char *const *names, NnError *err)
{
	int			C = a->cfg.n_classes;
	double	   *values = malloc(sizeof(double) * C);
	NnStatus	st = NN_OK;

	if (values == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory for bin values");
	for (int c = 0; c < C && st == NN_OK; c++)
		if (!adapter_bin_name_value(names[c], &values[c]))
			st = nn_fail(err, NN_ERR_ARG, "label \"%.64s\" of a text-to-text regression is not a number",
						 names[c]);
	if (st == NN_OK)
		st = adapter_set_bin_values(a, values, err);
	free(values);
	return st;
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
	if (!backbone_has_text_head(bb))
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
	if (st == NN_OK && a->cfg.regression)
		st = bind_bin_values(a, names, err);
done:
	free(ids);
	free(count);
	free(packed);
	return st;
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
	batch_size /= batch_sequences_per_row(a->cfg.pair);
	st = batch_tokenize_all(bb, ds, max_len, a->cfg.pair, &tc, err);
	if (st == NN_OK)
		st = batch_workspace_init(bb, &ws, &a->cfg, batch_size > 0 ? batch_size : 1, max_len,
								  ds->n_classes > a->cfg.n_classes ? ds->n_classes : a->cfg.n_classes,
								  false, false, NULL, err);
	if (st == NN_OK)
		st = batch_evaluate(bb, a, &ws, &tc, ds, NULL, rows, n_rows, out, err);
	batch_token_cache_free(&tc);
	batch_workspace_free(bb, &ws);
	return st;
}

/* Scores of one batch (ws->logits, B x C) as probabilities, or a regression's values, into out. */
static void
scores_to_probs(const Adapter *a, const float *scores, int B, float *out)
{
	int			C = a->cfg.n_classes;

	for (int b = 0; b < B; b++)
	{
		const float *row = scores + (size_t) b * C;
		float	   *p = out + (size_t) b * C;
		float		max = row[batch_argmax(row, C)];
		double		sum = 0.0;

		if (a->cfg.regression)
		{
			/* a linear head's one output, or a text-to-text one's bin scores */
			out[b] = (float) (a->cfg.head == ADAPTER_HEAD_TEXT ? adapter_bin_value(a, row)
							  : adapter_value(a, row[0]));
			continue;
		}
		for (int c = 0; c < C; c++)
			sum += (p[c] = expf(row[c] - max));
		for (int c = 0; c < C; c++)
			p[c] = (float) (p[c] / sum);
	}
}

/*
 * classify_texts and classify_pairs: every batch_size rows (batch_size /
 * 2 siamese pairs) tokenized with the adapter's pair encoding and scored
 * on the training path (batch_score_rows).
 */
static NnStatus
classify_rows(const Backbone *bb, BackboneRun *run, Adapter *a, const char *const *texts,
			  const size_t *lens, const char *const *texts_b, const size_t *lens_b, int n,
			  int batch_size, float *probs, NnError *err)
{
	int			C = a->cfg.n_classes,
				per_batch = batch_size / batch_sequences_per_row(a->cfg.pair),
				max_len = a->cfg.max_len > 0 ? a->cfg.max_len : bb->max_tokens;
	int			rows[1024];
	Workspace	ws = {0};
	NnStatus	st;

	if (batch_size <= 0 || batch_size > a->max_batch || per_batch < 1 || per_batch > 1024)
		return nn_fail(err, NN_ERR_ARG, "batch of %d rows outside 1..%d (the adapter's)", batch_size,
					   a->max_batch);
	if (a->cfg.head == ADAPTER_HEAD_TEXT &&
		(a->label_ids == NULL || (a->cfg.regression && a->bin_values == NULL)))
		return nn_fail(err, NN_ERR_ARG, "text-to-text adapter without label ids (text_head_bind_labels)");
	if ((st = batch_workspace_init(bb, &ws, &a->cfg, per_batch, max_len, C, false, false, run,
								   err)) != NN_OK)
		return st;
	for (int b = 0; b < per_batch; b++)
		rows[b] = b;
	for (int start = 0; start < n && st == NN_OK; start += per_batch)
	{
		int			B = n - start < per_batch ? n - start : per_batch;
		TokenCache	tc;

		st = batch_tokenize_texts(bb, texts + start, lens + start, texts_b ? texts_b + start : NULL,
								  lens_b ? lens_b + start : NULL, B, max_len, a->cfg.pair, &tc, err);
		if (st == NN_OK)
			st = batch_score_rows(bb, a, &ws, &tc, rows, B, err);
		if (st == NN_OK)
			scores_to_probs(a, ws.logits, B, probs + (size_t) start * (a->cfg.regression ? 1 : C));
		batch_token_cache_free(&tc);
	}
	/* the run may be shared (a server's cache): leave it pooling every row */
	backbone_run_pool_skip(bb, ws.run, 0);
	batch_workspace_free(bb, &ws);
	return st;
}

NnStatus
classify_texts(const Backbone *bb, BackboneRun *run, Adapter *a, const char *const *texts,
			   const size_t *lens, int n, int batch_size, float *probs, NnError *err)
{
	if (a->cfg.pair != ADAPTER_PAIR_JOINED)
		return nn_fail(err, NN_ERR_ARG, "the adapter reads sentence pairs: classify them with classify_pairs");
	return classify_rows(bb, run, a, texts, lens, NULL, NULL, n, batch_size, probs, err);
}

NnStatus
classify_pairs(const Backbone *bb, BackboneRun *run, Adapter *a, const char *const *texts,
			   const size_t *lens, const char *const *texts_b, const size_t *lens_b, int n,
			   int batch_size, float *probs, NnError *err)
{
	if (a->cfg.pair == ADAPTER_PAIR_JOINED)
		return nn_fail(err, NN_ERR_ARG, "the adapter reads one text (a pair joined into one): "
					   "classify it with classify_texts");
	return classify_rows(bb, run, a, texts, lens, texts_b, lens_b, n, batch_size, probs, err);
}
