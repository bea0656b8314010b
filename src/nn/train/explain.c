/*
 * explain.c: gradient x input and integrated gradients of a class's
 * log-probability with respect to the frozen token embeddings (explain.h).
 *
 * One text is one batch row.  The forward is the prediction path itself
 * (adapter_forward, the backbone with the adapter's pool skip, then the
 * head or the label ranking of batch_rank_scores); the gradient reuses the
 * head's cross-entropy backward, the backbone's input backward and, for
 * EPT, the adapter's backward (see ept_gate_gradient).  Every buffer is
 * allocated once per text, before the path loop.
 */
#include "train/explain.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/blas.h"
#include "train/batch.h"

/* The buffers of one text's forwards and backwards. */
typedef struct ExplainWork
{
	const Backbone *bb;
	Adapter    *a;
	BackboneRun *run;
	bool		own_run;
	int			n;				/* real tokens */
	int			n_seq;			/* rows of E: n, at least 1 (an empty text is one padding row) */
	int			P;				/* prompt rows */
	int			T;				/* P + n_seq */
	int			C;
	size_t		d;
	float	   *E0;				/* (n_seq, d) the frozen embeddings */
	float	   *base;			/* (n_seq, d) the baseline: zero, or a token's embedding per row */
	uint8_t    *e_mask;			/* (n_seq) */
	float	   *E;				/* (n_seq, d) the scaled embeddings of the last forward */
	float	   *X;				/* (T, d) */
	uint8_t    *x_mask;			/* (T) */
	float	   *dX;				/* (T, d) dF/dX */
	float	   *dX_label;		/* (T, d) text-to-text: d(loss of one label)/dX */
	float	   *dE;				/* (n_seq, d) dF/dE */
	float	   *h;				/* (d_out) */
	float	   *dh;				/* (d_out) */
	float	   *scores;			/* (C) logits or label log-likelihoods, then scratch */
	double	   *log_probs;		/* (C) of the last forward */
} ExplainWork;

static void
work_free(ExplainWork *w)
{
	if (w->run != NULL)
	{
		backbone_run_pool_skip(w->bb, w->run, 0);
		if (w->own_run)
			w->bb->ops->run_free(w->run);
	}
	free(w->E0);
	free(w->base);
	free(w->e_mask);
	free(w->E);
	free(w->X);
	free(w->x_mask);
	free(w->dX);
	free(w->dX_label);
	free(w->dE);
	free(w->h);
	free(w->dh);
	free(w->scores);
	free(w->log_probs);
	memset(w, 0, sizeof(*w));
}

static int
adapter_max_len(const Backbone *bb, const Adapter *a)
{
	return a->cfg.max_len > 0 ? a->cfg.max_len : bb->max_tokens;
}

/* Embed ids[0..n) and allocate every buffer the forwards and backwards need. */
static NnStatus
work_init(ExplainWork *w, const Backbone *bb, BackboneRun *run, Adapter *a, const int32_t *ids,
		  int n, int32_t baseline_id, NnError *err)
{
	memset(w, 0, sizeof(*w));
	w->bb = bb;
	w->a = a;
	w->n = n;
	w->n_seq = n > 0 ? n : 1;
	w->P = adapter_prompt_rows(&a->cfg);
	w->T = w->P + w->n_seq;
	w->C = a->cfg.n_classes;
	w->d = bb->d_embed;
	if (n < 0 || n > adapter_max_len(bb, a) || w->T > bb->max_positions)
		return nn_fail(err, NN_ERR_ARG, "%d tokens do not fit the adapter's %d", n,
					   adapter_max_len(bb, a));
	if (baseline_id < -1 || baseline_id >= bb->vocab_size)
		return nn_fail(err, NN_ERR_ARG, "baseline token %d is not in the vocabulary of %d",
					   (int) baseline_id, bb->vocab_size);
	if (a->cfg.head == ADAPTER_HEAD_TEXT && a->label_ids == NULL)
		return nn_fail(err, NN_ERR_ARG, "text-to-text adapter without label ids (text_head_bind_labels)");
	if (a->cfg.head == ADAPTER_HEAD_TEXT ? bb->ops->label_loss_backward == NULL : bb->ops->backward == NULL)
		return nn_fail(err, NN_ERR_ARG, "explanations are not supported on %s: it has no backward",
					   bb->ops->family);
	w->run = run != NULL ? run : bb->ops->run_new(bb, 1, w->P + adapter_max_len(bb, a));
	w->own_run = run == NULL;
	w->E0 = calloc((size_t) w->n_seq * w->d, sizeof(float));
	w->base = calloc((size_t) w->n_seq * w->d, sizeof(float));
	w->e_mask = calloc(w->n_seq, 1);
	w->E = malloc(sizeof(float) * w->n_seq * w->d);
	w->X = malloc(sizeof(float) * w->T * w->d);
	w->x_mask = malloc(w->T);
	w->dX = malloc(sizeof(float) * w->T * w->d);
	w->dX_label = a->cfg.head == ADAPTER_HEAD_TEXT ? malloc(sizeof(float) * w->T * w->d) : NULL;
	w->dE = malloc(sizeof(float) * w->n_seq * w->d);
	w->h = malloc(sizeof(float) * bb->d_out);
	w->dh = malloc(sizeof(float) * bb->d_out);
	w->scores = malloc(sizeof(float) * w->C);
	w->log_probs = malloc(sizeof(double) * w->C);
	if (!w->run || !w->E0 || !w->base || !w->e_mask || !w->E || !w->X || !w->x_mask || !w->dX || !w->dE ||
		!w->h || !w->dh || !w->scores || !w->log_probs ||
		(a->cfg.head == ADAPTER_HEAD_TEXT && !w->dX_label))
		return nn_fail(err, NN_ERR_NOMEM, "out of memory explaining %d tokens", n);
	bb->ops->embed_tokens(bb, ids, n, w->E0, w->e_mask);
	for (int i = 0; baseline_id >= 0 && i < n; i++)
	{
		uint8_t		unused;

		bb->ops->embed_tokens(bb, &baseline_id, 1, w->base + i * w->d, &unused);
	}
	return NN_OK;
}

/*
 * Forward of E_i = B_i + alpha scale_i (E0_i - B_i) (B the baseline; scale
 * NULL: every 1) into
 * w->log_probs; the run and the adapter cache it for work_gradient.
 */
static NnStatus
work_forward(ExplainWork *w, const float *scale, float alpha, NnError *err)
{
	const Backbone *bb = w->bb;
	Adapter    *a = w->a;
	double		max,
				sum = 0.0;
	NnStatus	st;

	for (int i = 0; i < w->n_seq; i++)
		for (size_t k = 0; k < w->d; k++)
		{
			float		b = w->base[i * w->d + k];

			w->E[i * w->d + k] = b + alpha * (scale && i < w->n ? scale[i] : 1.0f) *
				(w->E0[i * w->d + k] - b);
		}
	adapter_forward(a, w->E, w->e_mask, 1, w->n_seq, w->X, w->x_mask);
	if (a->cfg.head == ADAPTER_HEAD_TEXT)
		st = batch_rank_scores(bb, w->run, a, w->X, w->x_mask, 1, w->T, w->scores, err);
	else
	{
		backbone_run_pool_skip(bb, w->run, a->cfg.pool_text ? w->P : 0);
		st = bb->ops->forward(bb, w->run, w->X, w->x_mask, 1, w->T, w->h, err);
		if (st == NN_OK)
			head_forward(a, w->h, 1, w->scores);
	}
	if (st != NN_OK)
		return st;
	max = w->scores[batch_argmax(w->scores, w->C)];
	for (int c = 0; c < w->C; c++)
		sum += exp((double) w->scores[c] - max);
	for (int c = 0; c < w->C; c++)
		w->log_probs[c] = (double) w->scores[c] - max - log(sum);
	return NN_OK;
}

/*
 * Text-to-text: dF/dX into w->dX.  A label's score is s_c = sum_t log
 * p(y_t) = -len_c * loss_c (loss_c: the mean cross-entropy over its len_c
 * target tokens), and F = s_target - logsumexp(s), so
 * dF/dX = sum_c (1[c = target] - p_c) ds_c/dX, one decoder backward per label.
 */
static NnStatus
text_head_gradient(ExplainWork *w, int target, NnError *err)
{
	const Backbone *bb = w->bb;
	const Adapter *a = w->a;
	int			L = a->label_len;

	memset(w->dX, 0, sizeof(float) * w->T * w->d);
	for (int c = 0; c < w->C; c++)
	{
		const int32_t *label = a->label_ids + (size_t) c * L;
		float		loss;
		int			len = 0;
		double		weight = (c == target) - exp(w->log_probs[c]);
		NnStatus	st;

		for (int t = 0; t < L; t++)
			len += label[t] >= 0;
		st = bb->ops->label_loss_forward(bb, w->run, w->X, w->x_mask, 1, w->T, label, L, &loss,
										 NULL, err);
		if (st == NN_OK)
			st = bb->ops->label_loss_backward(bb, w->run, w->dX_label, err);
		if (st != NN_OK)
			return st;
		nn_axpy((int) (w->T * w->d), (float) (-weight * len), w->dX_label, w->dX);
	}
	return NN_OK;
}

/*
 * EPT's gate g = softmax(Wg mean(E) + bg) makes the prompt rows depend on
 * E: F gets dF/dE_i += (1/count) Wg^T dF/dz for each real token i.  The
 * adapter's backward of dF/dX from zeroed gradients leaves exactly dF/dz
 * (one row) in gate_b's gradient.
 */
static void
ept_gate_gradient(ExplainWork *w)
{
	Adapter    *a = w->a;
	int			K = a->cfg.subspaces,
				count = 0;

	for (int i = 0; i < w->n; i++)
		count += w->e_mask[i] != 0;
	if (a->cfg.method != ADAPTER_EPT || K == 0 || count == 0)
		return;
	memset(a->gate_b.g, 0, sizeof(float) * K);
	adapter_backward(a, w->dX, 1, w->n_seq);
	for (int i = 0; i < w->n; i++)
		for (int k = 0; w->e_mask[i] && k < K; k++)
			nn_axpy((int) w->d, a->gate_b.g[k] / count, a->gate_w.w + (size_t) k * w->d,
					w->dE + i * w->d);
}

/* dF/dE (F = log p_target) into w->dE at the point of the last work_forward. */
static NnStatus
work_gradient(ExplainWork *w, int target, NnError *err)
{
	const Backbone *bb = w->bb;
	Adapter    *a = w->a;
	NnStatus	st;

	if (a->cfg.head == ADAPTER_HEAD_TEXT)
		st = text_head_gradient(w, target, err);
	else
	{
		double		loss;

		/* d(cross-entropy with label target)/dh = -dF/dh; it overwrites the logits */
		if ((st = head_loss_backward(a, w->h, w->scores, &target, 1, w->dh, &loss, err)) != NN_OK)
			return st;
		for (int j = 0; j < bb->d_out; j++)
			w->dh[j] = -w->dh[j];
		st = bb->ops->backward(bb, w->run, w->dh, w->dX, err);
	}
	if (st != NN_OK)
		return st;
	/* X's text rows are E plus a constant offset (DePT, EPT): dF/dE_i = dF/dX_{P+i} */
	memcpy(w->dE, w->dX + (size_t) w->P * w->d, sizeof(float) * w->n_seq * w->d);
	ept_gate_gradient(w);
	return NN_OK;
}

/* sum_k dF/dE_ik (E0_ik - B_ik) for each real token (B = 0 unless from_baseline), added to a. */
static void
add_gradient_times_input(const ExplainWork *w, bool from_baseline, double *a)
{
	for (int i = 0; i < w->n; i++)
	{
		double		dot = 0.0;

		for (size_t k = 0; k < w->d; k++)
			dot += (double) w->dE[i * w->d + k] *
				(w->E0[i * w->d + k] - (from_baseline ? w->base[i * w->d + k] : 0.0f));
		a[i] += dot;
	}
}

static void
zero_gradients(Adapter *a)
{
	AdapterParam *params[] = {&a->prompt, &a->lora_a, &a->lora_b, &a->ept_u, &a->ept_v,
	&a->gate_w, &a->gate_b, &a->head_w, &a->head_b};

	for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++)
		if (params[i]->n > 0)
			memset(params[i]->g, 0, sizeof(float) * params[i]->n);
}

/* Fill e's tokens, prediction and class choice from the forward at E. */
static NnStatus
explanation_setup(Explanation *e, const ExplainWork *w, const int32_t *ids, int target,
				  NnError *err)
{
	char		buf[32];
	size_t		text_bytes = 0;
	char	   *text;

	e->n_classes = w->C;
	e->ids = malloc(sizeof(int32_t) * (w->n + 1));
	e->tokens = malloc(sizeof(char *) * (w->n + 1));
	e->attributions = calloc(w->n + 1, sizeof(float));
	e->probs = malloc(sizeof(float) * w->C);
	for (int i = 0; i < w->n; i++)
		text_bytes += strlen(backbone_token_piece(w->bb, ids[i], buf, sizeof(buf))) + 1;
	/* one block holds every piece; tokens[0] owns it */
	text = malloc(text_bytes + 1);
	if (!e->ids || !e->tokens || !e->attributions || !e->probs || !text)
	{
		free(text);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory for an explanation");
	}
	for (int i = 0; i < w->n; i++)
	{
		const char *piece = backbone_token_piece(w->bb, ids[i], buf, sizeof(buf));
		size_t		len = strlen(piece);

		e->ids[i] = ids[i];
		e->tokens[i] = memcpy(text, piece, len + 1);
		text += len + 1;
	}
	if (w->n == 0)
		free(text);
	e->n_tokens = w->n;
	for (int c = 0; c < w->C; c++)
		e->probs[c] = (float) exp(w->log_probs[c]);
	e->predicted_class = batch_argmax(e->probs, w->C);
	e->predicted_prob = e->probs[e->predicted_class];
	e->target_class = target >= 0 ? target : e->predicted_class;
	e->target_log_prob = w->log_probs[e->target_class];
	return NN_OK;
}

/* Forward and gradient at alpha E, its gradient x input added to acc. */
static NnStatus
accumulate_point(ExplainWork *w, float alpha, int target, bool from_baseline, double *acc,
				 NnError *err)
{
	NnStatus	st = work_forward(w, NULL, alpha, err);

	if (st == NN_OK)
		st = work_gradient(w, target, err);
	if (st == NN_OK)
		add_gradient_times_input(w, from_baseline, acc);
	return st;
}

/*
 * Integrated gradients by the trapezoid rule on m intervals of [0, 1],
 * a_i = (1/m) (g_i(0)/2 + g_i(1)/2 + sum_{0<j<m} g_i(j/m)), g_i(alpha) =
 * E_i . dF/dE_i(alpha E).  Doubling m adds only the new midpoints, so it
 * refines until completeness holds within the tolerance, or max_steps.
 */
static NnStatus
integrated_gradients(ExplainWork *w, const ExplainOptions *opt, Explanation *e, double *ends,
					 double *interior, NnError *err)
{
	int			target = e->target_class,
				m = opt->steps;
	double		delta = e->target_log_prob - e->baseline_log_prob;
	NnStatus	st = accumulate_point(w, 0.0f, target, true, ends, err);

	if (st == NN_OK)
		st = accumulate_point(w, 1.0f, target, true, ends, err);
	for (int j = 1; st == NN_OK && j < m; j++)
		st = accumulate_point(w, (float) j / m, target, true, interior, err);
	while (st == NN_OK)
	{
		e->attribution_sum = 0.0;
		for (int i = 0; i < w->n; i++)
		{
			e->attributions[i] = (float) ((0.5 * ends[i] + interior[i]) / m);
			e->attribution_sum += (0.5 * ends[i] + interior[i]) / m;
		}
		e->steps = m;
		if (opt->completeness_tolerance <= 0.0 || 2 * m > opt->max_steps ||
			fabs(e->attribution_sum - delta) <= opt->completeness_tolerance * fabs(delta))
			break;
		for (int j = 0; st == NN_OK && j < m; j++)
			st = accumulate_point(w, (float) (2 * j + 1) / (2 * m), target, true, interior, err);
		m *= 2;
	}
	return st;
}

/* Attributions of the explained class into e (after explanation_setup). */
static NnStatus
attribute(ExplainWork *w, const ExplainOptions *opt, Explanation *e, NnError *err)
{
	double	   *ends = calloc(w->n + 1, sizeof(double));
	double	   *interior = calloc(w->n + 1, sizeof(double));
	NnStatus	st = ends && interior ? NN_OK : nn_fail(err, NN_ERR_NOMEM, "out of memory for attributions");

	if (st == NN_OK)
		st = work_forward(w, NULL, 0.0f, err);
	if (st == NN_OK)
	{
		e->baseline_log_prob = w->log_probs[e->target_class];
		if (opt->method == EXPLAIN_INTEGRATED_GRADIENTS)
			st = integrated_gradients(w, opt, e, ends, interior, err);
		else if ((st = accumulate_point(w, 1.0f, e->target_class, false, ends, err)) == NN_OK)
		{
			e->steps = 0;
			e->attribution_sum = 0.0;
			for (int i = 0; i < w->n; i++)
			{
				e->attributions[i] = (float) ends[i];
				e->attribution_sum += ends[i];
			}
		}
	}
	free(ends);
	free(interior);
	return st;
}

void
explain_options_default(ExplainOptions *opt)
{
	opt->method = EXPLAIN_INTEGRATED_GRADIENTS;
	opt->steps = EXPLAIN_DEFAULT_STEPS;
	opt->completeness_tolerance = EXPLAIN_DEFAULT_TOLERANCE;
	opt->max_steps = EXPLAIN_DEFAULT_MAX_STEPS;
	opt->target_class = -1;
	opt->baseline_id = -1;
}

NnStatus
explain_text(const Backbone *bb, BackboneRun *run, Adapter *a, const char *text, size_t len,
			 const ExplainOptions *opt, Explanation *out, NnError *err)
{
	int			max_len = adapter_max_len(bb, a);
	int32_t    *ids = malloc(sizeof(int32_t) * max_len);
	ExplainWork w = {0};
	NnStatus	st = NN_OK;
	int			n = 0;

	memset(out, 0, sizeof(*out));
	if (a->cfg.regression)
		st = nn_fail(err, NN_ERR_ARG, "explanations of a regression adapter are not supported yet");
	else if (a->cfg.pair != ADAPTER_PAIR_JOINED)
		st = nn_fail(err, NN_ERR_ARG, "explanations of a sentence-pair adapter that reads its pairs "
					 "%s are not supported yet (only of one text, or a pair joined into one)",
					 a->cfg.pair == ADAPTER_PAIR_NATIVE ? "natively" : "siamese");
	else if (opt->method != EXPLAIN_GRADIENT_X_INPUT && opt->method != EXPLAIN_INTEGRATED_GRADIENTS)
		st = nn_fail(err, NN_ERR_ARG, "unknown explanation method %d", (int) opt->method);
	else if (opt->method == EXPLAIN_INTEGRATED_GRADIENTS &&
			 (opt->steps < 1 || opt->steps > EXPLAIN_MAX_STEPS ||
			  opt->max_steps > EXPLAIN_MAX_STEPS || !(opt->completeness_tolerance >= 0.0)))
		st = nn_fail(err, NN_ERR_ARG,
					 "integrated gradients need 1 <= steps (%d), max_steps (%d) <= %d and a "
					 "tolerance >= 0", opt->steps, opt->max_steps, EXPLAIN_MAX_STEPS);
	else if (opt->target_class < -1 || opt->target_class >= a->cfg.n_classes)
		st = nn_fail(err, NN_ERR_ARG, "class %d is not one of the adapter's %d", opt->target_class,
					 a->cfg.n_classes);
	else if (ids == NULL)
		st = nn_fail(err, NN_ERR_NOMEM, "out of memory tokenizing");
	else if ((n = bb->ops->tokenize(bb, text, len, ids, max_len)) < 0)
		st = nn_fail(err, NN_ERR_NOMEM, "out of memory tokenizing");
	if (st == NN_OK)
		st = work_init(&w, bb, run, a, ids, n, opt->baseline_id, err);
	if (st == NN_OK)
		st = work_forward(&w, NULL, 1.0f, err);
	if (st == NN_OK)
		st = explanation_setup(out, &w, ids, opt->target_class, err);
	if (st == NN_OK)
		st = attribute(&w, opt, out, err);
	zero_gradients(a);
	work_free(&w);
	free(ids);
	return st;
}

void
explanation_free(Explanation *e)
{
	if (e->tokens != NULL && e->n_tokens > 0)
		free(e->tokens[0]);
	free(e->tokens);
	free(e->ids);
	free(e->attributions);
	free(e->probs);
	memset(e, 0, sizeof(*e));
}

NnStatus
explain_log_probs(const Backbone *bb, BackboneRun *run, Adapter *a, const int32_t *ids, int n,
				  int32_t baseline_id, const float *scale, double *log_probs, NnError *err)
{
	ExplainWork w = {0};
	NnStatus	st = work_init(&w, bb, run, a, ids, n, baseline_id, err);

	if (st == NN_OK)
		st = work_forward(&w, scale, 1.0f, err);
	if (st == NN_OK)
		memcpy(log_probs, w.log_probs, sizeof(double) * w.C);
	work_free(&w);
	return st;
}
