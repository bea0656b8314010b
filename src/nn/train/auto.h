/*
 * auto.h: method 'auto' (docs/design.md 1, "The probe and auto"): a short
 * fixed list of candidates trained one after the other on the same rows and
 * validation split, the best by validation score kept.
 *
 * Candidates, cheapest first (a tie keeps the earlier one): the linear
 * probe solved (train/probe_fit.h), then DePT with m = 20 (the rank from the
 * budget of PT l = 100) whose linear head starts from the probe's (linear
 * probing, then fine-tuning).  budget_rows (> 0) bounds the rows the
 * prompt candidates see (steps x batch_size), shared evenly; the probe is
 * not counted (its vectors are computed once).
 */
#ifndef DEPT_NN_TRAIN_AUTO_H
#define DEPT_NN_TRAIN_AUTO_H

#include "train/train.h"

#define AUTO_MAX_CANDIDATES 4

/*
 * dept_train's and dept-train's budget when none is given: 16,000 rows
 * (500 steps of 32) for DePT, about 2.6 epochs of SST-2's 6,228 training
 * rows.  bench/accuracy chose it over 8,000 on the full tier's validation
 * rows (mean accuracy 85.5 against 85.0 over nine sets, three seeds), and
 * the default still trains SST-2 within the float32 goal of issue 14
 * (bench/README.md, "bench/accuracy").
 */
#define AUTO_DEFAULT_BUDGET_ROWS 16000L

typedef struct AutoTrial
{
	AdapterMethod method;
	int			prompt_len;
	bool		head_from_probe;
	long		steps;
	long		rows_seen;		/* steps x batch_size */
	double		seconds;
	double		valid_accuracy;	/* or a regression's Pearson r */
	double		valid_macro_f1;
	double		valid_score;	/* what is compared: accuracy, or minus the MSE */
	int			valid_rows;
	float		probe_l2;
	double		probe_c;		/* the probe solver's C (0 for passes of descent) */
	bool		regression;
} AutoTrial;

typedef struct AutoReport
{
	long		budget_rows;
	long		steps_each;		/* max_steps of each prompt candidate, 0 = its epochs */
	int			n_trials;
	int			winner;			/* index into trials */
	AutoTrial	trials[AUTO_MAX_CANDIDATES];
} AutoReport;

/*
 * Train the candidates with opt's other settings; the winner's result in
 * *best (caller frees; its seconds are every candidate's together), the options it trained with in *best_opt.  on_trial,
 * when not NULL, sees each trial as it ends.  best->cancelled when a
 * candidate was cancelled (nothing more runs; *best then holds nothing).
 * warm_head false starts DePT's head from zero (for measuring).
 */
NnStatus	train_auto(const Backbone *bb, const Dataset *ds, const TrainOptions *opt,
					   long budget_rows, bool warm_head, TrainResult *best, TrainOptions *best_opt,
					   AutoReport *report, void (*on_trial) (void *arg, const AutoTrial *t),
					   void *arg, NnError *err);

#endif							/* DEPT_NN_TRAIN_AUTO_H */
