/*
 * batch.c: batches through adapter, backbone and head, for training and
 * classification alike (see batch.h).
 */
#include "train/batch.h"

#include <stdlib.h>
#include <string.h>

int
batch_sequences_per_row(int pair)
{
	return pair == ADAPTER_PAIR_SIAMESE ? 2 : 1;
}

NnStatus
batch_check_pair(const Backbone *bb, const Dataset *ds, int pair, NnError *err)
{
	if (ds->texts_b != NULL && pair == ADAPTER_PAIR_JOINED)
		return nn_fail(err, NN_ERR_ARG, "the rows are sentence pairs: join each pair into one text "
					   "or read them with a pair encoding (native or siamese)");
	if (ds->texts_b == NULL && pair != ADAPTER_PAIR_JOINED && ds->n_rows > 0)
		return nn_fail(err, NN_ERR_ARG, "a %s pair encoding reads two texts per row, the rows have one",
					   pair == ADAPTER_PAIR_NATIVE ? "native" : "siamese");
	if (pair == ADAPTER_PAIR_NATIVE && bb->ops->tokenize_pair == NULL)
		return nn_fail(err, NN_ERR_ARG, "backbone family %s has no pair template: read its pairs "
					   "joined or siamese", bb->ops->family);
	if (pair < ADAPTER_PAIR_JOINED || pair > ADAPTER_PAIR_SIAMESE)
		return nn_fail(err, NN_ERR_ARG, "unknown pair encoding %d", pair);
	return NN_OK;
}

NnStatus
batch_tokenize_all(const Backbone *bb, const Dataset *ds, int max_len, int pair, TokenCache *tc,
				   NnError *err)
{
	NnStatus	st = batch_check_pair(bb, ds, pair, err);

	if (st != NN_OK)
		return st;
	return batch_tokenize_texts(bb, (const char *const *) ds->texts, ds->text_lens,
								(const char *const *) ds->texts_b, ds->text_b_lens, ds->n_rows,
								max_len, pair, tc, err);
}

NnStatus
batch_tokenize_texts(const Backbone *bb, const char *const *texts, const size_t *lens,
					 const char *const *texts_b, const size_t *lens_b, int n, int max_len,
					 int pair, TokenCache *tc, NnError *err)
{
	int			entries = n * batch_sequences_per_row(pair);

	memset(tc, 0, sizeof(*tc));
	tc->max_len = max_len;
	tc->n_rows = n;
	tc->pair = pair;
	if (pair != ADAPTER_PAIR_JOINED && texts_b == NULL)
		return nn_fail(err, NN_ERR_ARG, "a pair encoding needs the second texts");
	tc->ids = malloc(sizeof(int32_t) * (size_t) (entries > 0 ? entries : 1) * max_len);
	tc->count = malloc(sizeof(int) * (size_t) (entries > 0 ? entries : 1));
	if (pair == ADAPTER_PAIR_NATIVE)
		tc->types = malloc((size_t) (n > 0 ? n : 1) * max_len);
	if (tc->ids == NULL || tc->count == NULL || (pair == ADAPTER_PAIR_NATIVE && tc->types == NULL))
		return nn_fail(err, NN_ERR_NOMEM, "out of memory tokenizing %d rows", n);
	for (int i = 0; i < entries; i++)
	{
		int32_t    *ids = tc->ids + (size_t) i * max_len;

		if (pair == ADAPTER_PAIR_NATIVE)
			tc->count[i] = backbone_tokenize_pair(bb, texts[i], lens[i], texts_b[i], lens_b[i], ids,
												  tc->types + (size_t) i * max_len, max_len);
		else if (i < n)
			tc->count[i] = bb->ops->tokenize(bb, texts[i], lens[i], ids, max_len);
		else
			tc->count[i] = bb->ops->tokenize(bb, texts_b[i - n], lens_b[i - n], ids, max_len);
		if (tc->count[i] < 0)
			return nn_fail(err, NN_ERR_NOMEM, "out of memory tokenizing row %d", i % (n > 0 ? n : 1));
	}
	return NN_OK;
}

void
batch_token_cache_free(TokenCache *tc)
{
	free(tc->ids);
	free(tc->count);
	free(tc->types);
}

void
batch_workspace_free(const Backbone *bb, Workspace *ws)
{
	free(ws->E);
	free(ws->e_mask);
	free(ws->X);
	free(ws->x_mask);
	free(ws->types);
	free(ws->dX);
	free(ws->h);
	free(ws->dh);
	free(ws->hp);
	free(ws->dhp);
	free(ws->logits);
	free(ws->labels);
	free(ws->targets);
	if (ws->run && ws->own_run)
		bb->ops->run_free(ws->run);
	memset(ws, 0, sizeof(*ws));
}

NnStatus
batch_workspace_init(const Backbone *bb, Workspace *ws, const AdapterConfig *cfg, int max_batch,
					 int max_len, int n_classes, bool training, bool bf16, BackboneRun *run,
					 NnError *err)
{
	int			prompt_rows = adapter_prompt_rows(cfg);
	bool		siamese = cfg->pair == ADAPTER_PAIR_SIAMESE;
	size_t		B = max_batch,
				R = B * batch_sequences_per_row(cfg->pair),
				d = bb->d_embed;

	memset(ws, 0, sizeof(*ws));
	ws->max_batch = max_batch;
	ws->max_seq = prompt_rows + max_len;
	ws->pair = cfg->pair;
	if (ws->max_seq > bb->max_positions)
		return nn_fail(err, NN_ERR_ARG,
					   "%d prompt rows + %d tokens exceed the %d positions of the backbone",
					   prompt_rows, max_len, bb->max_positions);
	if (cfg->h_dim != bb->d_out * (siamese ? 4 : 1))
		return nn_fail(err, NN_ERR_ARG, "the adapter's head reads %d values, the backbone pools %d%s",
					   cfg->h_dim, bb->d_out, siamese ? " per text (4 per pair)" : "");
	ws->E = malloc(sizeof(float) * R * max_len * d);
	ws->e_mask = malloc(R * max_len);
	ws->X = malloc(sizeof(float) * R * ws->max_seq * d);
	ws->x_mask = malloc(R * ws->max_seq);
	ws->types = cfg->pair == ADAPTER_PAIR_NATIVE ? malloc(B * ws->max_seq) : NULL;
	ws->dX = training ? malloc(sizeof(float) * R * ws->max_seq * d) : NULL;
	ws->h = malloc(sizeof(float) * B * cfg->h_dim);
	ws->dh = malloc(sizeof(float) * B * cfg->h_dim);
	ws->hp = siamese ? malloc(sizeof(float) * R * bb->d_out) : NULL;
	ws->dhp = siamese ? malloc(sizeof(float) * R * bb->d_out) : NULL;
	ws->logits = malloc(sizeof(float) * B * n_classes);
	ws->labels = malloc(sizeof(int) * B);
	ws->own_run = run == NULL;
	ws->run = run ? run : bb->ops->run_new(bb, (int) R, ws->max_seq);
	if (ws->run && bf16 && ws->own_run)
		backbone_run_use_bf16(bb, ws->run, true);
	if (!ws->E || !ws->e_mask || !ws->X || !ws->x_mask || (training && !ws->dX) || !ws->h ||
		!ws->dh || !ws->logits || !ws->labels || !ws->run ||
		(cfg->pair == ADAPTER_PAIR_NATIVE && !ws->types) || (siamese && (!ws->hp || !ws->dhp)))
	{
		batch_workspace_free(bb, ws);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory allocating training buffers");
	}
	return NN_OK;
}

/* E, e_mask for cache entries[0..R) padded to their longest; returns that length n. */
int
batch_gather_embeddings(const Backbone *bb, const TokenCache *tc, const int *entries, int R,
						float *E, uint8_t *e_mask)
{
	int			n = 1;
	size_t		d = bb->d_embed;

	for (int b = 0; b < R; b++)
		if (tc->count[entries[b]] > n)
			n = tc->count[entries[b]];
	memset(E, 0, sizeof(float) * (unsigned) R * (unsigned) n * d);
	memset(e_mask, 0, (size_t) (unsigned) R * (unsigned) n);
	for (int b = 0; b < R; b++)
		bb->ops->embed_tokens(bb, tc->ids + (size_t) entries[b] * tc->max_len, tc->count[entries[b]],
							  E + (size_t) b * n * d, e_mask + (size_t) b * n);
	return n;
}

/*
 * NATIVE: the token types of rows[0..B) for a forward of P prompt rows
 * (type 0, as HF PEFT gives them) and n token positions (padding 0).
 */
static void
gather_types(const TokenCache *tc, const int *rows, int B, int P, int n, uint8_t *types)
{
	memset(types, 0, (size_t) B * (P + n));
	for (int b = 0; b < B; b++)
		memcpy(types + (size_t) b * (P + n) + P, tc->types + (size_t) rows[b] * tc->max_len,
			   tc->count[rows[b]]);
}

/* The cache entries of rows: the rows, or (siamese) their first texts then their second. */
static int
row_entries(const TokenCache *tc, const int *rows, int B, int *entries)
{
	int			R = 0;

	for (int k = 0; k < batch_sequences_per_row(tc->pair); k++)
		for (int b = 0; b < B; b++)
			entries[R++] = rows[b] + k * tc->n_rows;
	return R;
}

/*
 * Forward of B rows through adapter, backbone and head; returns the
 * padded token length.  A siamese batch runs the 2 B texts as one batch
 * and the head reads [u; v; |u - v|; u * v] of each pair.
 */
NnStatus
batch_forward_rows(const Backbone *bb, Adapter *a, Workspace *ws, const TokenCache *tc,
				   const int *rows, int B, int *n_out, NnError *err)
{
	int			entries[2048];
	int			R = row_entries(tc, rows, B, entries);
	int			n = batch_gather_embeddings(bb, tc, entries, R, ws->E, ws->e_mask);
	int			P = adapter_prompt_rows(&a->cfg),
				T = P + n;
	bool		siamese = tc->pair == ADAPTER_PAIR_SIAMESE;
	NnStatus	st;

	adapter_forward(a, ws->E, ws->e_mask, R, n, ws->X, ws->x_mask);
	backbone_run_pool_skip(bb, ws->run, a->cfg.pool_text ? P : 0);
	if (tc->pair == ADAPTER_PAIR_NATIVE)
	{
		gather_types(tc, rows, B, P, n, ws->types);
		backbone_run_token_types(bb, ws->run, ws->types);
	}
	st = bb->ops->forward(bb, ws->run, ws->X, ws->x_mask, R, T, siamese ? ws->hp : ws->h, err);
	if (st != NN_OK)
		return st;
	if (siamese)
		siamese_features(ws->hp, ws->hp + (size_t) B * bb->d_out, B, bb->d_out, ws->h);
	head_forward(a, ws->h, B, ws->logits);
	*n_out = n;
	return NN_OK;
}

NnStatus
batch_backward_rows(const Backbone *bb, Adapter *a, Workspace *ws, int B, int n, NnError *err)
{
	int			R = B * batch_sequences_per_row(ws->pair);
	const float *dpooled = ws->dh;
	NnStatus	st;

	if (ws->pair == ADAPTER_PAIR_SIAMESE)
	{
		size_t		k = bb->d_out;

		siamese_backward(ws->hp, ws->hp + B * k, ws->dh, B, (int) k, ws->dhp, ws->dhp + B * k);
		dpooled = ws->dhp;
	}
	if ((st = bb->ops->backward(bb, ws->run, dpooled, ws->dX, err)) != NN_OK)
		return st;
	adapter_backward(a, ws->dX, R, n);
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
	size_t		h_dim = a->cfg.h_dim;

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
		memcpy(features + (size_t) start * h_dim, ws->h, sizeof(float) * B * h_dim);
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
			size_t		h_dim = a->cfg.h_dim;

			for (int b = 0; b < B; b++)
				memcpy(ws->h + (size_t) b * h_dim, features + (size_t) rows[start + b] * h_dim,
					   sizeof(float) * h_dim);
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
