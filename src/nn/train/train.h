/*
 * train.h: training and evaluating an adapter on a frozen backbone.
 *
 * One step (docs/design.md 1): tokens -> frozen embeddings E -> adapter builds X
 * -> backbone forward -> pooled h -> head -> softmax cross-entropy; then
 * backward through the head, the backbone (input gradients only) and the
 * adapter, global-norm clipping and AdamW with per-group learning rates
 * under linear warm-up/decay.  Mini-batches are padded to their longest
 * row; DePT's A is still indexed by absolute position.  Validation runs
 * every eval_every steps; the best adapter (by validation accuracy) is
 * kept and training stops after `patience` evaluations without
 * improvement.  Everything is deterministic for a seed and thread count.
 *
 * With opt->pool_text (the default) a PT/DePT/EPT adapter's linear head
 * sees the mean of the text rows' hidden states only: the prompt rows
 * still take part in attention but are left out of the pool, in the
 * forward and the backward (backbone.h run_pool_skip).
 *
 * The linear probe never needs the backbone's backward: its pooled vectors
 * are computed once and the head is trained on them.
 *
 * Text-to-text (T5, the DePT paper's setting; the default head on a T5
 * backbone): there is no linear head.  Each class is its label string,
 * tokenized by the backbone's tokenizer followed by "</s>" (the class names
 * of the dataset, or of a stored adapter: text_head_bind_labels).  A step
 * runs adapter -> encoder -> teacher-forced decoder on each row's target
 * label (label_loss_forward: the mean cross-entropy over every target token
 * of the batch, as transformers averages it), and label_loss_backward returns
 * d(loss)/dX, which adapter_backward turns into the prompt and low-rank
 * gradients exactly as on the classifier path.  Prediction and validation
 * are rank classification: label_loglik scores every label string by
 * sum_t log p(y_t | y_<t, X); the predicted class is the argmax, and the
 * class probabilities are the softmax over the C scores, i.e. the
 * sequence likelihoods renormalised over the label set (a choice: the
 * decoder's mass on strings outside the set is ignored).  Ranking runs
 * the decoder once per row and label, in groups of rows that keep it at
 * max(batch, C) sequences (a training step runs batch), not batch * C.
 * A probe has no
 * meaning there (it trains only a linear head) and is refused when the
 * text head is asked for explicitly; with TRAIN_HEAD_AUTO it keeps its
 * linear head.
 */
#ifndef DEPT_NN_TRAIN_H
#define DEPT_NN_TRAIN_H

#include <stdbool.h>

#include "adapters/adapter.h"
#include "models/backbone.h"
#include "train/dataset.h"
#include "train/metrics.h"

typedef struct TrainProgress
{
	long		step;
	long		total_steps;
	int			epoch;
	double		loss;			/* mean loss of the last step */
	double		valid_accuracy; /* of the latest evaluation, or -1 */
	double		rows_per_second;
	double		eta_seconds;
} TrainProgress;

/* Which head to train; AUTO is text-to-text on T5 (except for a probe), else linear. */
typedef enum TrainHead
{
	TRAIN_HEAD_AUTO = 0,
	TRAIN_HEAD_LINEAR = 1,
	TRAIN_HEAD_TEXT = 2
} TrainHead;

typedef struct TrainOptions
{
	AdapterMethod method;
	TrainHead	head;
	int			prompt_len;		/* l for PT, m for DePT/EPT */
	int			budget;			/* when rank is 0: PT length whose budget sets r */
	int			rank;			/* r */
	int			max_len;		/* s: tokens kept per row (<= backbone max_tokens) */
	float		alpha;
	int			subspaces;		/* EPT K */
	int			subspace_rank;	/* EPT q */
	float		lr_prompt;
	float		lr_lowrank;
	float		lr_ept;
	float		lr_head;
	float		weight_decay;
	int			epochs;
	long		max_steps;		/* 0 = epochs decide */
	int			batch_size;
	double		valid_fraction;
	int			valid_tail;		/* > 0: the last valid_tail rows of ds validate (no random split) */
	uint64_t	seed;
	int			eval_every;		/* steps between evaluations; 0 = once per epoch */
	int			patience;		/* evaluations without improvement; 0 = no early stop */
	float		warmup_ratio;
	double		max_grad_norm;	/* 0 = no clipping */
	const char *init_text;		/* prompt TEXT init; NULL or "" = sampled vocabulary */
	bool		bf16;			/* encoder products in bfloat16 on AMX or AVX512-BF16 (gemm_bf16.h) */
	/*
	 * The linear head pools the text rows only, not the prompt rows
	 * (AdapterConfig.pool_text; default true).  Kept where the backbone can
	 * (backbone_pool_skips: use-lite) and the adapter has a linear head and
	 * prompt rows; the adapter records it, so prediction pools the same way.
	 */
	bool		pool_text;
	/*
	 * Sentence pairs (the dataset's texts_b): how the two texts reach the
	 * head (AdapterPair, adapter.h): ADAPTER_PAIR_NATIVE the family's pair
	 * template and token types, ADAPTER_PAIR_SIAMESE each text through the
	 * same adapter and backbone, the head on [u; v; |u - v|; u * v].
	 * ADAPTER_PAIR_JOINED (0, the default) for one text per row, a pair the
	 * caller joined into one included.  The adapter records it.
	 */
	int			pair;
	/*
	 * Transfer: start the adapter's tensors from this trained adapter
	 * (adapter_init_from; NULL = a fresh start), its head too when
	 * init_head (the caller found the label sets equal).
	 */
	const Adapter *init_from;
	bool		init_head;
	/*
	 * The linear probe (docs/design.md 1, "The probe and auto") without
	 * probe_solver: its head trains probe_epochs passes over the cached
	 * pooled vectors (default 100: they cost no forward), once per L2
	 * strength of the grid when probe_search, and the checkpoint of best
	 * validation score over every strength and epoch is kept.  The CLI and
	 * dept_train set probe_epochs from an explicit epochs for method probe
	 * (not for auto, whose epochs are DePT's).
	 */
	int			probe_epochs;
	bool		probe_search;
	/*
	 * With probe_search, a classifier's probe is solved exactly instead
	 * (train/probe_fit.h: logistic regression by L-BFGS, C chosen by 5-fold
	 * cross-validation on the training rows, validation scored once); false
	 * keeps the passes above (an explicit epochs for method probe asks for them).
	 */
	bool		probe_solver;
	/*
	 * Start the linear head from this adapter's head (its classes and
	 * width must match; e.g. a probe trained on the same rows: linear
	 * probing, then fine-tuning); NULL = a zero head.
	 */
	const Adapter *head_from;
	/* called after every step; returning false cancels training */
	bool		(*progress) (void *arg, const TrainProgress *p);
	void	   *progress_arg;
} TrainOptions;

typedef struct TrainResult
{
	Adapter    *adapter;		/* the best checkpoint; caller frees */
	ClassMetrics *valid_metrics;	/* of the best checkpoint; caller frees */
	int			n_train;
	int			n_valid;
	long		steps;
	int			epochs_run;
	long		best_step;
	double		seconds;
	double		seconds_per_epoch;
	long		train_tokens;	/* tokens (prompt rows included) through forward+backward */
	double		tokens_per_second;
	size_t		param_count;
	float		probe_l2;		/* probe: the L2 strength chosen */
	double		probe_c;		/* probe by the solver: C chosen (0 otherwise) */
	bool		cancelled;
} TrainResult;

/*
 * Defaults: DePT m = 60 within the budget of PT l = 100.  The prompt learning
 * rate is 3e-2, not the paper's 3e-1 for T5: on use-lite 3e-1 diverged to chance
 * on SST-2 (600 rows, 3 epochs: 50% vs 75.5% test accuracy at 3e-2).
 */
void		train_options_default(TrainOptions *opt);

/*
 * The adapter head opt asks for on bb: NN_ERR_ARG when text-to-text is
 * asked for on a backbone other than T5 or for a probe.
 */
NnStatus	train_choose_head(const Backbone *bb, const TrainOptions *opt, AdapterHead *head,
							  NnError *err);

/*
 * The pair encoding (AdapterPair) sentence pairs get when none is asked
 * for: the family's template where it has one (NATIVE) and the head is
 * linear; JOINED on a backbone with a text-to-text head (T5) or for such a
 * head; SIAMESE elsewhere (use-lite: it beat JOINED on validation,
 * bench/README.md "Sentence pairs").
 */
int			train_default_pair(const Backbone *bb, const TrainOptions *opt);

/*
 * Text-to-text adapter: tokenize its n_classes class names (the label
 * strings, "</s>" appended) with bb's tokenizer into a's label_ids, as
 * train_adapter does and as a loader must after adapter_deserialize.
 * NN_ERR_ARG when bb is not T5 or two labels tokenize to the same ids
 * (rank classification could not tell them apart); a linear-head adapter
 * is left alone (NN_OK).
 */
NnStatus	text_head_bind_labels(const Backbone *bb, Adapter *a, const char *const *class_names,
								  NnError *err);

/*
 * Before train_adapter: a regression dataset that opt trains on a
 * text-to-text head has its targets binned (dataset_bin_targets, at most
 * TRAIN_MAX_BINS bins); anything else is left alone.  The class names are
 * then the bins, which the caller stores with the adapter.  NN_ERR_ARG
 * when the targets span fewer than 2 or more than TRAIN_MAX_BINS bins.
 */
#define TRAIN_MAX_BINS 101		/* a span of 20 at steps of 0.2 */
NnStatus	train_prepare_regression(const Backbone *bb, const TrainOptions *opt, Dataset *ds,
									 NnError *err);

NnStatus	train_adapter(const Backbone *bb, const Dataset *ds, const TrainOptions *opt,
						  TrainResult *result, NnError *err);

void		train_result_free(TrainResult *result);

/*
 * Regression (the dataset's labels are numbers, dataset_finish_regression):
 * the adapter has cfg.regression and one output z on the linear head; the
 * loss is the mean squared error of z against the standardised target
 * (y - mean) / sd, mean and sd those of the training rows, stored in the
 * adapter; a prediction is mean + sd * z.  The best checkpoint is the one
 * of lowest validation MSE; TrainProgress.valid_accuracy holds Pearson's r.
 *
 * On a text-to-text head (T5, as the DePT code trains STS-B) there is no
 * MSE: train_prepare_regression rounds the targets to bins of 0.2
 * (dataset_bin_targets), each a label string ("3.4") trained by the same
 * teacher-forced cross-entropy as a classifier's; a prediction ranks the
 * bins by label_loglik and returns the probability-weighted mean of their
 * values (adapter_bin_value; docs/design.md 1).  The best checkpoint is
 * still the one of lowest validation MSE of those values.
 *
 * Class probabilities (n, C) of n texts in batches of batch_size.  run
 * must hold batch_size rows of prompt rows + max_len positions.  A linear
 * head gives softmax(logits); a text-to-text head (labels bound) gives
 * softmax over the label_loglik scores of the C label strings.
 */
NnStatus	classify_texts(const Backbone *bb, BackboneRun *run, Adapter *a,
						   const char *const *texts, const size_t *lens, int n,
						   int batch_size, float *probs, NnError *err);

/*
 * classify_texts of n sentence pairs (texts, texts_b) read with the
 * adapter's pair encoding (cfg.pair: NATIVE or SIAMESE; NN_ERR_ARG for a
 * JOINED adapter, whose caller joins the pair into one text).  A siamese
 * batch runs two sequences per pair: run must hold batch_size rows, and
 * batch_size / 2 pairs go at a time.
 */
NnStatus	classify_pairs(const Backbone *bb, BackboneRun *run, Adapter *a,
						   const char *const *texts, const size_t *lens,
						   const char *const *texts_b, const size_t *lens_b, int n,
						   int batch_size, float *probs, NnError *err);
/*
 * (A regression adapter: probs (n) receives the predicted values; a
 * text-to-text one's, adapter_bin_value of its bin scores.)
 */

/* Metrics of the adapter on rows of ds. */
NnStatus	evaluate_rows(const Backbone *bb, Adapter *a, const Dataset *ds, const int *rows,
						  int n_rows, int batch_size, ClassMetrics **out, NnError *err);

#endif							/* DEPT_NN_TRAIN_H */
