/*
 * adapter.h: the trainable part of a classifier on a frozen backbone.
 *
 * An adapter builds the encoder input X from the frozen token embeddings E
 * (docs/design.md section 1) and owns the linear classification head on the
 * pooled vector h:
 *
 *   probe  X = E                                        trainable: head
 *   PT     X = [P; E]                P: l x d           trainable: P, head
 *   DePT   X = [P; E + c (A B)[0:n]] P: m x d, A: s x r, B: r x d,
 *                                    c = alpha / sqrt(r) trainable: P, A, B, head
 *   EPT    X = [P*; E + c (A B)[0:n]] with
 *            L  = A B                                       (s x d)
 *            F  = P + softmax(P L^T / sqrt(d)) L             prompt fusion
 *            g  = softmax(Wg mean(E) + bg)                   gating, per row (K)
 *            P* = F + sum_k g_k F U_k V_k                    K subspaces U_k: d x q, V_k: q x d
 *
 * EPT has no public code; this is our reading of its abstract, as written
 * in docs/design.md.
 *
 * The head is either linear (logits z = W_c h + b_c on the pooled vector,
 * trainable) or text-to-text (ADAPTER_HEAD_TEXT, T5 as in the DePT paper):
 * no head parameters at all; the classes are label strings whose token ids
 * (label_ids, set by the training layer from the backbone's tokenizer) the
 * decoder scores by teacher-forced log-likelihood.  A probe has nothing to
 * train without a linear head, so it always has one.
 *
 * Pooling: the backbone mean-pools its last hidden states into h.  An
 * adapter with pool_text (the default for new PT/DePT/EPT adapters on a
 * backbone that supports it, backbone.h run_pool_skip) pools only the
 * text rows, past its prompt rows; older adapters (format versions 1 and
 * 2, adapter_io.h) pooled every row, prompt included, and still do.  It
 * has no meaning without prompt rows or without a linear head, where it is
 * always false (adapter_io's canonical form).  The DePT update applies to every position of the padded
 * batch (the mask hides padding anyway); prompt rows never get it.
 *
 * Every trainable tensor is an AdapterParam holding value, gradient and
 * the two AdamW moments.  forward caches what backward needs in the
 * adapter itself (it serves one batch at a time); backward accumulates.
 */
#ifndef DEPT_NN_ADAPTER_H
#define DEPT_NN_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/nn_common.h"
#include "ops/optim.h"

#define ADAPTER_MAX_SUBSPACES 64

typedef enum AdapterMethod
{
	ADAPTER_PROBE = 0,
	ADAPTER_PT = 1,
	ADAPTER_DEPT = 2,
	ADAPTER_EPT = 3
} AdapterMethod;

/* How classes are read off the backbone. */
typedef enum AdapterHead
{
	ADAPTER_HEAD_LINEAR = 0,	/* linear head on the pooled vector */
	ADAPTER_HEAD_TEXT = 1		/* T5 text-to-text: label strings ranked by log-likelihood */
} AdapterHead;

/*
 * How a sentence pair (two texts per row) reaches the head.  JOINED: the
 * caller joined the two texts into one ("a_name: a b_name: b", or one
 * text and no pair at all): every adapter stored before pairs had an
 * encoding is read as JOINED and predicts as it did.  NATIVE: the
 * family's own pair template (BERT [CLS] a [SEP] b [SEP] with token types
 * 0/1, RoBERTa <s> a </s></s> b </s>; backbone.h tokenize_pair).
 * SIAMESE: each text on its own through the same adapter and backbone,
 * pooled to u and v; the linear head reads [u; v; |u - v|; u * v], so
 * h_dim is 4 x the backbone's d_out (docs/design.md 1, "Sentence pairs").
 */
typedef enum AdapterPair
{
	ADAPTER_PAIR_JOINED = 0,
	ADAPTER_PAIR_NATIVE = 1,
	ADAPTER_PAIR_SIAMESE = 2
} AdapterPair;

/* Parameter groups, each with its own learning rate and weight decay. */
typedef enum AdapterGroup
{
	GROUP_PROMPT = 0,
	GROUP_LOWRANK = 1,
	GROUP_EPT = 2,
	GROUP_HEAD = 3
} AdapterGroup;

typedef struct AdapterConfig
{
	AdapterMethod method;
	int			d;				/* token embedding width */
	int			h_dim;			/* pooled vector width */
	int			n_classes;		/* C */
	int			prompt_len;		/* l for PT, m for DePT/EPT, 0 for probe */
	int			max_len;		/* s: positions of A (the longest token input) */
	int			rank;			/* r */
	float		alpha;			/* DePT scale numerator (8) */
	int			subspaces;		/* K (EPT) */
	int			subspace_rank;	/* q (EPT) */
	AdapterHead head;			/* linear (W_c, b_c) or text-to-text (no head tensors) */
	int			pool_text;		/* 1: the linear head's h pools the text rows only, not the
								 * prompt's; 0: every row (an int, so the struct has no
								 * padding and compares with memcmp) */
	int			regression;		/* 1: predicting a number.  A linear head has one
								 * output (n_classes 1): mean + sd * output, loss MSE on
								 * the standardised target.  A text-to-text head ranks
								 * n_classes bins, label strings that are numbers
								 * (dataset_bin_targets), see adapter_bin_value */
	int			pair;			/* AdapterPair (an int, as pool_text) */
} AdapterConfig;

typedef struct AdapterParam
{
	float	   *w;				/* value */
	float	   *g;				/* gradient */
	float	   *m;				/* AdamW first moment */
	float	   *v;				/* AdamW second moment */
	size_t		n;
} AdapterParam;

typedef struct Adapter
{
	AdapterConfig cfg;
	float		scale;			/* alpha / sqrt(r) */

	AdapterParam prompt;		/* (P, d) */
	AdapterParam lora_a;		/* (s, r) */
	AdapterParam lora_b;		/* (r, d) */
	AdapterParam ept_u;			/* (K, d, q) */
	AdapterParam ept_v;			/* (K, q, d) */
	AdapterParam gate_w;		/* (K, d) */
	AdapterParam gate_b;		/* (K) */
	AdapterParam head_w;		/* (C, h_dim) */
	AdapterParam head_b;		/* (C) */
	AdapterParam target;		/* regression: (2) mean and sd of the training targets,
								 * fixed (not trained); empty otherwise */

	/*
	 * Text-to-text head: each class's target token ids (label tokens then
	 * "</s>"), (C, label_len), padded with -1; NULL until set.
	 */
	int32_t    *label_ids;
	int			label_len;

	/*
	 * Text-to-text regression: each bin's value (C), its label string read
	 * as a number (adapter_set_bin_values); NULL until set.  bin_argmax
	 * predicts the likeliest bin's value instead of the probability-
	 * weighted mean (not stored: a choice made at prediction time).
	 */
	float	   *bin_values;
	bool		bin_argmax;

	/* forward caches, sized for max_batch rows */
	int			max_batch;
	float	   *low_rank;		/* (s, d) L = A B */
	float	   *grad_low_rank;	/* (s, d) dL */
	float	   *fusion_attn;	/* (P, s) softmax(P L^T / sqrt(d)) */
	float	   *fused;			/* (P, d) F */
	float	   *grad_fused;		/* (P, d) dF */
	float	   *fused_u;		/* (K, P, q) F U_k */
	float	   *token_mean;		/* (B, d) mean of E over real tokens */
	float	   *gates;			/* (B, K) */
	float	   *scratch;		/* (P, max(s, d)) */
	float	   *scratch_q;		/* (P, q) */
	int			cached_batch;
	int			cached_n;
} Adapter;

/*
 * Siamese head features: feat (B, 4 k) = [u; v; |u - v|; u * v] of u
 * (row b of hu) and v (row b of hv), each (B, k).  siamese_backward: du
 * and dv (B, k) from dfeat (B, 4 k) (the subgradient of |x| at 0 is 0).
 */
void		siamese_features(const float *hu, const float *hv, int B, int k, float *feat);
void		siamese_backward(const float *hu, const float *hv, const float *dfeat, int B, int k,
							 float *du, float *dv);

/* Number of prompt rows the adapter prepends. */
int			adapter_prompt_rows(const AdapterConfig *cfg);

/*
 * The method's name as SQL, the CLI and reports spell it: "probe", "pt",
 * "dept" or "ept" ("unknown" for a value outside the enum).
 */
const char *adapter_method_name(AdapterMethod m);

/* The method named s (as adapter_method_name spells it) into *m: 0, or -1 for another name. */
int			adapter_method_parse(const char *s, AdapterMethod *m);

/*
 * Copy src's linear head (weights and bias) into a: the same classes and
 * head width, both linear; NN_ERR_ARG otherwise.
 */
NnStatus	adapter_copy_head(Adapter *a, const Adapter *src, NnError *err);

/*
 * Transfer (docs/design.md 1, "Transfer"): copy the trained tensors of src
 * into a, which must have the same method, head kind and shapes: the
 * prompt, the low-rank pair and EPT's extras, and the head too when
 * copy_head (the label sets match; otherwise a keeps its fresh head).
 * NN_ERR_ARG, naming what differs, when they do not match.
 */
NnStatus	adapter_init_from(Adapter *a, const Adapter *src, bool copy_head, NnError *err);

/* Trainable parameter count (a linear head included) for a configuration. */
size_t		adapter_param_count(const AdapterConfig *cfg);

/*
 * The rank r that spends the budget of PT with l prompt vectors on a
 * prompt of m rows plus A, B (and EPT's extras when subspaces > 0):
 * m d + r (s + d) [+ K (2 d q + d + 1)] <= l d, capped at min(s, d) (a
 * larger rank adds nothing).  Returns 0 if none fits.
 */
int			adapter_rank_for_budget(int l, int d, int s, int m, int subspaces, int subspace_rank);

/*
 * Allocate an adapter for cfg and up to max_batch rows.  Initialisation:
 * A kaiming-uniform (U(-1/sqrt(r), 1/sqrt(r)) as DePT's PEFT code), B = 0,
 * EPT U ~ U(-1/sqrt(d), 1/sqrt(d)), V = 0, gate 0, head 0 (a text-to-text
 * head has no tensors); the prompt is filled by adapter_init_prompt.
 */
NnStatus	adapter_new(Adapter **out, const AdapterConfig *cfg, int max_batch,
						uint64_t seed, NnError *err);
void		adapter_free(Adapter *a);

/*
 * Prompt init from token embeddings: rows (n_rows x d) are repeated or
 * trimmed to the prompt length (PEFT's TEXT init; pass sampled vocabulary
 * rows for the sampled init).
 */
void		adapter_init_prompt(Adapter *a, const float *rows, int n_rows);

/*
 * Text-to-text head: keep a copy of ids (n_classes, label_len), each row a
 * class's target token ids padded with negative values.  NN_ERR_ARG for a
 * linear head or a bad shape, NN_ERR_NOMEM.
 */
NnStatus	adapter_set_label_ids(Adapter *a, const int32_t *ids, int label_len, NnError *err);

/* Register every trainable tensor with opt, in its group. */
void		adapter_register(Adapter *a, AdamW *opt);

/*
 * X (B, P + n, d), x_mask (B, P + n) from E (B, n, d), e_mask (B, n).
 * The caller guarantees n <= max_len for DePT/EPT and B <= max_batch.
 */
void		adapter_forward(Adapter *a, const float *E, const uint8_t *e_mask,
							int B, int n, float *X, uint8_t *x_mask);

/* Accumulate parameter gradients from dX (B, P + n, d) of the last forward. */
void		adapter_backward(Adapter *a, const float *dX, int B, int n);

/* logits (B, C) = h W^T + b. */
void		head_forward(const Adapter *a, const float *h, int B, float *logits);

/*
 * Mean softmax cross-entropy of logits (B, C) against labels into *loss;
 * accumulates the head's gradients and writes dh (B, h_dim) = d(loss)/dh.
 * logits is overwritten with d(loss)/d(logits): nothing is allocated, so
 * it runs every step at no cost.  NN_ERR_ARG for a label outside [0, C).
 */
NnStatus	head_loss_backward(Adapter *a, const float *h, float *logits, const int *labels,
							   int B, float *dh, double *loss, NnError *err);

/*
 * Regression head (cfg.regression, C = 1): with z = head output (logits of
 * head_forward) and t = (y - mean) / sd the standardised target, the loss
 * is mean_b (z_b - t_b)^2; accumulates the head's gradients and writes dh.
 * out (B) is overwritten with d(loss)/dz.
 */
void		head_mse_backward(Adapter *a, const float *h, float *out, const float *targets,
							  int B, float *dh, double *loss);

/* Regression: the value of a head output z, mean + sd * z. */
double		adapter_value(const Adapter *a, float z);

/*
 * A text-to-text regression's bin name read as its value: the whole name
 * a number strtod reads (leading white space and trailing spaces
 * allowed), finite and within float range.  False for anything else.
 */
bool		adapter_bin_name_value(const char *name, double *value);

/*
 * Text-to-text regression: keep a copy of the n_classes bin values.
 * NN_ERR_ARG unless a is a text-to-text regression and every value is
 * finite; NN_ERR_NOMEM.
 */
NnStatus	adapter_set_bin_values(Adapter *a, const double *values, NnError *err);

/*
 * Text-to-text regression: the value of one row's bin scores s (C), the
 * label log-likelihoods: sum_c softmax(s)_c v_c, the probability-weighted
 * mean of the bin values v (docs/design.md 1), or with bin_argmax the
 * value of the likeliest bin.
 */
double		adapter_bin_value(const Adapter *a, const float *scores);

/* Regression: set the target mean and sd (sd <= 0 or not finite becomes 1). */
void		adapter_set_target(Adapter *a, double mean, double sd);

#endif							/* DEPT_NN_ADAPTER_H */
