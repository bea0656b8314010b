/*
 * batch.h: the batch machinery that training (train.c) and classification
 * (classify.c) share: every row's token ids cached once, the buffers of one
 * batch shape, and a batch through adapter, backbone and head.  Internal to
 * train/: callers outside it use train.h.
 */
#ifndef DEPT_NN_TRAIN_BATCH_H
#define DEPT_NN_TRAIN_BATCH_H

#include "train/train.h"

/*
 * Every row's token ids, computed once.  One text per row, or a sentence
 * pair by AdapterPair: JOINED is one text (the caller joined them);
 * NATIVE the family's pair template, with token types; SIAMESE each text
 * on its own, row i's first text at entry i and its second at entry
 * n_rows + i.
 */
typedef struct TokenCache
{
	int32_t    *ids;			/* (entries, max_len) */
	uint8_t    *types;			/* NATIVE: (n_rows, max_len) token type ids; else NULL */
	int		   *count;			/* (entries) */
	int			max_len;
	int			n_rows;
	int			pair;			/* AdapterPair */
} TokenCache;

/*
 * Buffers for one batch shape, allocated once per training run.  B counts
 * the head's rows (pairs); a siamese batch runs R = 2 B sequences through
 * adapter and backbone (both texts of every pair), every other one R = B.
 */
typedef struct Workspace
{
	int			max_batch;		/* rows (pairs) of the head */
	int			max_seq;		/* prompt rows + max_len */
	int			pair;			/* AdapterPair */
	float	   *E;				/* (R, max_len, d_embed) */
	uint8_t    *e_mask;			/* (R, max_len) */
	float	   *X;				/* (R, max_seq, d_embed) */
	uint8_t    *x_mask;			/* (R, max_seq) */
	uint8_t    *types;			/* NATIVE: (B, max_seq) token types of a forward; else NULL */
	float	   *dX;				/* (R, max_seq, d_embed) */
	float	   *h;				/* (B, h_dim) what the head reads */
	float	   *dh;				/* (B, h_dim) */
	float	   *hp;				/* SIAMESE: (2 B, d_out) pooled u rows then v rows; else NULL */
	float	   *dhp;			/* SIAMESE: (2 B, d_out) */
	float	   *logits;			/* (B, C) */
	int		   *labels;			/* (B) */
	int32_t    *targets;		/* (B, label_len) text-to-text target ids, or NULL */
	BackboneRun *run;
	bool		own_run;		/* allocated here (else the caller's, kept) */
} Workspace;

/* Sequences per head row: 2 for a siamese pair, else 1. */
int			batch_sequences_per_row(int pair);

/*
 * The pair encoding (AdapterPair) ds can be read with: NN_ERR_ARG when ds
 * holds pairs and pair is JOINED, or single texts and pair is not, or for
 * NATIVE on a family without a pair template.
 */
NnStatus	batch_check_pair(const Backbone *bb, const Dataset *ds, int pair, NnError *err);

NnStatus	batch_tokenize_all(const Backbone *bb, const Dataset *ds, int max_len, int pair,
						TokenCache *tc, NnError *err);
/* n texts (texts_b: their second texts, NULL unless pair is not JOINED) into tc. */
NnStatus	batch_tokenize_texts(const Backbone *bb, const char *const *texts, const size_t *lens,
						const char *const *texts_b, const size_t *lens_b, int n, int max_len,
						int pair, TokenCache *tc, NnError *err);
void		batch_token_cache_free(TokenCache *tc);
void		batch_workspace_free(const Backbone *bb, Workspace *ws);
/*
 * Buffers for up to max_batch head rows of the adapter a will run (its
 * pair encoding and h_dim); run: the caller's, holding max_batch x
 * batch_sequences_per_row sequences of prompt rows + max_len positions,
 * or NULL to allocate one.
 */
NnStatus	batch_workspace_init(const Backbone *bb, Workspace *ws, const AdapterConfig *cfg,
						int max_batch, int max_len, int n_classes, bool training, bool bf16,
						BackboneRun *run, NnError *err);
int		batch_gather_embeddings(const Backbone *bb, const TokenCache *tc, const int *entries, int R,
						float *E, uint8_t *e_mask);
NnStatus	batch_forward_rows(const Backbone *bb, Adapter *a, Workspace *ws, const TokenCache *tc,
						const int *rows, int B, int *n_out, NnError *err);
/* Input-backward of the last batch_forward_rows from ws->dh into the adapter's gradients. */
NnStatus	batch_backward_rows(const Backbone *bb, Adapter *a, Workspace *ws, int B, int n,
						NnError *err);
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
