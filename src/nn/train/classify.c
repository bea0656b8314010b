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
	st = batch_tokenize_all(bb, ds, max_len, &tc, err);
	if (st == NN_OK)
		st = batch_workspace_init(bb, &ws, batch_size, adapter_prompt_rows(&a->cfg), max_len,
							ds->n_classes > a->cfg.n_classes ? ds->n_classes : a->cfg.n_classes,
							false, false, err);
	if (st == NN_OK)
		st = batch_evaluate(bb, a, &ws, &tc, ds, NULL, rows, n_rows, out, err);
	batch_token_cache_free(&tc);
	batch_workspace_free(bb, &ws);
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
	bool		bins = a->cfg.regression && a->cfg.head == ADAPTER_HEAD_TEXT;
	/* a text-to-text regression's bin scores, before they become values */
	float	   *scores = bins ? malloc(sizeof(float) * (size_t) batch_size * C) : NULL;
	NnStatus	st = NN_OK;

	if (!ids || !count || !E || !e_mask || !X || !x_mask || !h || (bins && !scores) ||
		batch_size > a->max_batch)
	{
		st = nn_fail(err, NN_ERR_NOMEM, "out of memory classifying texts");
		goto done;
	}
	if (a->cfg.head == ADAPTER_HEAD_TEXT && (a->label_ids == NULL || (bins && a->bin_values == NULL)))
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
			if ((st = batch_rank_scores(bb, run, a, X, x_mask, B, P + len,
										bins ? scores : probs + (size_t) start * C, err)) != NN_OK)
				goto done;
			for (int b = 0; bins && b < B; b++)
				probs[start + b] = (float) adapter_bin_value(a, scores + (size_t) b * C);
		}
		else
		{
			backbone_run_pool_skip(bb, run, a->cfg.pool_text ? P : 0);
			if ((st = bb->ops->forward(bb, run, X, x_mask, B, P + len, h, err)) != NN_OK)
				goto done;
			head_forward(a, h, B, probs + (size_t) start * C);
			for (int b = 0; a->cfg.regression && b < B; b++)
				probs[start + b] = (float) adapter_value(a, probs[start + b]);
		}
		for (int b = 0; b < (a->cfg.regression ? 0 : B); b++)
		{
			float	   *row = probs + (size_t) (start + b) * C;
			float		max = row[batch_argmax(row, C)];
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
	free(scores);
	return st;
}
