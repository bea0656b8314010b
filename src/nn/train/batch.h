/*
 * batch.h: the batch machinery that training (train.c) and classification
 * (classify.c) share: every row's token ids cached once, the buffers of one
 * batch shape, and a batch through adapter, backbone and head.  Internal to
 * train/: callers outside it use train.h.
 */
#ifndef DEPT_NN_TRAIN_BATCH_H
#define DEPT_NN_TRAIN_BATCH_H

#include "train/train.h"

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

NnStatus	batch_tokenize_all(const Backbone *bb, const Dataset *ds, int max_len, TokenCache *tc,
						NnError *err);
void		batch_token_cache_free(TokenCache *tc);
void		batch_workspace_free(const Backbone *bb, Workspace *ws);
NnStatus	batch_workspace_init(const Backbone *bb, Workspace *ws, int max_batch, int prompt_rows,
						int max_len, int n_classes, bool training, bool bf16, NnError *err);
int		batch_gather_embeddings(const Backbone *bb, const TokenCache *tc, const int *rows, int B,
						float *E, uint8_t *e_mask);
NnStatus	batch_forward_rows(const Backbone *bb, Adapter *a, Workspace *ws, const TokenCache *tc,
						const int *rows, int B, int *n_out, NnError *err);
NnStatus	batch_score_rows(const Backbone *bb, Adapter *a, Workspace *ws, const TokenCache *tc,
						const int *rows, int B, NnError *err);
int		batch_argmax(const float *x, int n);
NnStatus	batch_rank_scores(const Backbone *bb, BackboneRun *run, const Adapter *a,
						const float *X, const uint8_t *mask, int B, int T, float *scores,
						NnError *err);
NnStatus	batch_pooled_features(const Backbone *bb, Adapter *a, Workspace *ws,
						const TokenCache *tc, int n_rows, float *features, NnError *err);
NnStatus	batch_evaluate(const Backbone *bb, Adapter *a, Workspace *ws, const TokenCache *tc,
						const Dataset *ds, const float *features, const int *rows, int n_rows,
						ClassMetrics **out, NnError *err);

#endif							/* DEPT_NN_TRAIN_BATCH_H */
