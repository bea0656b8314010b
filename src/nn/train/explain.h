/*
 * explain.h: token attributions of a trained adapter's prediction
 * (docs/design.md, "Explanations").
 *
 * The explained scalar is F(E) = log p_c(E): the log-probability the
 * adapter gives class c (the predicted class unless one is asked for) as
 * a function of the frozen embeddings E (n x d) of the text's tokens.  The
 * adapter builds X from E as it does for prediction (prompt rows, DePT's
 * position-wise offset, EPT's gate on mean(E)), so dF/dE goes through the
 * adapter, the backbone and the head; prompt rows are parameters, not
 * tokens, and get no attribution.  Two methods:
 *
 *   gradient x input       a_i = sum_k dF/dE_ik (E) * E_ik
 *   integrated gradients   a_i = sum_k E_ik * int_0^1 dF/dE_ik(alpha E) dalpha
 *
 * with the zero baseline E' = 0 (the path alpha E; a token's embedding
 * can be asked for instead, see baseline_id), so that
 * sum_i a_i = F(E) - F(0) (completeness).  The integral is the trapezoid
 * rule on m = steps intervals, m doubled (every gradient reused) while
 * |sum_i a_i - (F(E) - F(0))| > completeness_tolerance |F(E) - F(0)| and
 * 2 m <= max_steps: the backbones' ReLUs make F kinked along the path, so
 * a fixed m misses completeness by a few percent on some texts.
 *
 * Heads: linear (softmax over the logits) and text-to-text (T5: softmax
 * over the label strings' log-likelihoods, as classify_texts).  Every
 * method (probe, PT, DePT, EPT) is supported.
 *
 * The adapter's forward caches and gradient buffers are used as scratch
 * (as prediction and training use them); its parameters are not changed,
 * and its gradient buffers are left zeroed.
 */
#ifndef DEPT_NN_TRAIN_EXPLAIN_H
#define DEPT_NN_TRAIN_EXPLAIN_H

#include <stdint.h>

#include "adapters/adapter.h"
#include "models/backbone.h"

#define EXPLAIN_DEFAULT_STEPS 32
#define EXPLAIN_DEFAULT_TOLERANCE 0.01
#define EXPLAIN_DEFAULT_MAX_STEPS 512
#define EXPLAIN_MAX_STEPS 4096

typedef enum ExplainMethod
{
	EXPLAIN_GRADIENT_X_INPUT = 0,
	EXPLAIN_INTEGRATED_GRADIENTS = 1
} ExplainMethod;

typedef struct ExplainOptions
{
	ExplainMethod method;
	/* integrated gradients only: */
	int			steps;			/* first number of path intervals m (1..EXPLAIN_MAX_STEPS) */
	double		completeness_tolerance;	/* relative; 0: exactly steps intervals */
	int			max_steps;		/* doubling m stops before it exceeds this */
	int			target_class;	/* the class explained; -1: the predicted class */
	/*
	 * The baseline B: -1 (default) zero embeddings; a token id: its
	 * embedding in every token's place (integrated gradients then
	 * integrates from B to E and a_i uses E_i - B_i; gradient x input is
	 * unchanged).  For T5, whose encoder starts with an RMSNorm (each row
	 * scale-invariant), the padding id 0 is the better choice.
	 */
	int32_t		baseline_id;
} ExplainOptions;

typedef struct Explanation
{
	int			n_tokens;
	int32_t    *ids;			/* (n_tokens) the tokenizer's ids */
	char	  **tokens;			/* (n_tokens) their pieces (backbone_token_piece) */
	float	   *attributions;	/* (n_tokens) a_i */
	int			n_classes;
	float	   *probs;			/* (n_classes) class probabilities of the text */
	int			predicted_class;
	float		predicted_prob;
	int			target_class;	/* the class whose log-probability is explained */
	double		target_log_prob;	/* F(E) */
	double		baseline_log_prob;	/* F(B): every token embedding replaced by the baseline */
	double		attribution_sum;	/* sum_i a_i */
	int			steps;			/* integrated gradients: the intervals m used; 0 otherwise */
} Explanation;

/*
 * Integrated gradients from 32 intervals, refined to 1% completeness or 512
 * intervals, for the predicted class.
 */
void		explain_options_default(ExplainOptions *opt);

/*
 * Attributions of text (len bytes) for adapter a on bb into *out (the
 * caller frees it with explanation_free, also after a failure).  Tokens
 * are the tokenizer's, truncated to the adapter's max_len as classify_texts
 * does.  run: NULL to let explain allocate its own, or a float run (not
 * switched to bfloat16: the backward is float) holding 1 row of
 * adapter_prompt_rows + max_len positions; its pool skip is left at 0.
 * NN_ERR_ARG for a bad option, a family without a backward, or a
 * text-to-text adapter without label ids; NN_ERR_NOMEM.
 */
NnStatus	explain_text(const Backbone *bb, BackboneRun *run, Adapter *a, const char *text,
						 size_t len, const ExplainOptions *opt, Explanation *out, NnError *err);

void		explanation_free(Explanation *e);

/*
 * Class log-probabilities (a->cfg.n_classes) of the token ids[0..n) with
 * token i's frozen embedding E_i replaced by B_i + scale[i] (E_i - B_i)
 * (scale NULL: every 1; B as ExplainOptions.baseline_id): 0 replaces the
 * token by the baseline (the deletion test), 1 +- eps probes F along E_i
 * with the zero baseline (finite differences).  run as for explain_text.
 */
NnStatus	explain_log_probs(const Backbone *bb, BackboneRun *run, Adapter *a, const int32_t *ids,
							  int n, int32_t baseline_id, const float *scale, double *log_probs,
							  NnError *err);

#endif							/* DEPT_NN_TRAIN_EXPLAIN_H */
