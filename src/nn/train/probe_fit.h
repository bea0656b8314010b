/*
 * probe_fit.h: the linear probe solved as L2-regularised multinomial
 * logistic regression on cached sentence vectors (docs/design.md 1, "The
 * probe and auto"), with its strength chosen by k-fold cross-validation on
 * the training rows, so the validation rows stay unseen until the solution
 * is scored on them once.
 *
 * The objective for classes c, weights W (C x d), bias b, rows i = 1..n:
 *
 *     f(W, b) = (1/n) sum_i -log softmax(W x_i + b)[y_i] + (lambda/2) ||W||^2
 *
 * with lambda = 1 / (C_reg n): scikit-learn's LogisticRegression(C = C_reg)
 * scaled by 1 / (C_reg n), so the same C_reg means the same solution.  The bias
 * is not penalised.  f is convex (strictly in W for lambda > 0) and is
 * minimised by L-BFGS with a backtracking (Armijo) line search.
 */
#ifndef DEPT_NN_PROBE_FIT_H
#define DEPT_NN_PROBE_FIT_H

#include <stdbool.h>
#include <stdint.h>

#include "base/nn_common.h"

/* The strengths tried, as scikit-learn's C; the benchmark's baseline grid (bench/accuracy). */
#define PROBE_C_GRID_SIZE 6
extern const double probe_c_grid[PROBE_C_GRID_SIZE];

#define PROBE_FOLDS 5

/* One problem: rows of features (feature_rows apart) and their labels. */
typedef struct ProbeProblem
{
	const float *features;		/* (any rows, d): the cached vectors */
	const int  *labels;			/* by row of features */
	const int  *rows;			/* which rows of features take part */
	int			n;				/* how many */
	int			d;
	int			classes;
} ProbeProblem;

/*
 * Minimise f above for lambda from the (C x d + C) parameters in theta
 * (W row-major, then b), which also give the start (a warm start, or
 * zeros).  Stops when the gradient's largest entry is below tol or after
 * max_iter iterations; *iters says how many ran.  Returns the final f in
 * *objective.
 */
NnStatus	probe_logreg_fit(const ProbeProblem *p, double lambda, double *theta, int max_iter,
							 double tol, int *iters, double *objective, NnError *err);

/* f and its gradient at theta (grad may be NULL): what the fit minimises. */
NnStatus	probe_logreg_objective(const ProbeProblem *p, double lambda, const double *theta,
								   double *f, double *grad, NnError *err);

/* What the search found. */
typedef struct ProbeSearch
{
	double		c_reg;			/* the C chosen */
	double		lambda;			/* 1 / (c_reg n) for the n training rows */
	double		cv_accuracy[PROBE_C_GRID_SIZE];	/* held-out fold accuracy of each C */
	long		iterations;		/* L-BFGS iterations of every fit together */
	int			fits;
} ProbeSearch;

/*
 * Choose C by PROBE_FOLDS-fold cross-validation over p's rows (folds dealt
 * class by class after a shuffle from seed; the best mean held-out accuracy,
 * the smaller C on a tie), then fit every row with it into theta.  between
 * (may be NULL) is called after each fit with the fits done and due;
 * returning false stops the search (*cancelled).
 */
NnStatus	probe_search_fit(const ProbeProblem *p, uint64_t seed, double *theta,
							 ProbeSearch *out, bool (*between) (void *arg, int done, int due),
							 void *arg, bool *cancelled, NnError *err);

#endif							/* DEPT_NN_PROBE_FIT_H */
