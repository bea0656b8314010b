/*
 * metrics.h: classification metrics from a confusion matrix.
 *
 * confusion[t * C + p] counts rows of true class t predicted as p.
 * Macro-F1 averages the per-class F1 over all C classes; a class with no
 * true and no predicted rows has precision = recall = F1 = 0, as
 * scikit-learn reports with zero_division=0.
 *
 * A row whose true label is none of the C classes (evaluating on labels
 * the adapter never saw) is an error: metrics_add_unseen counts it in the
 * total and as a false positive of the class it was predicted as.
 */
#ifndef DEPT_NN_METRICS_H
#define DEPT_NN_METRICS_H

#include <stdint.h>

typedef struct ClassMetrics
{
	int			n_classes;
	int64_t		total;
	double		accuracy;
	double		macro_f1;
	double	   *precision;		/* (C) */
	double	   *recall;			/* (C) */
	double	   *f1;				/* (C) */
	int64_t    *confusion;		/* (C, C) true x predicted */
	int64_t    *unseen;			/* (C) rows of an unseen label, by predicted class */
	int64_t		n_unseen;

	/*
	 * Regression (n_classes 1, metrics_new_regression): the predicted and
	 * true values, then by metrics_finish Pearson's r, Spearman's rho
	 * (Pearson's r of the ranks, ties sharing their mean rank) and the mean
	 * squared error; accuracy and macro_f1 stay 0.
	 */
	int			regression;
	double	   *pred;			/* (capacity) */
	double	   *gold;			/* (capacity) */
	int64_t		capacity;
	double		pearson;
	double		spearman;
	double		mse;
} ClassMetrics;

/* Regression metrics for up to capacity rows; NULL if memory ran out. */
ClassMetrics *metrics_new_regression(int64_t capacity);

/* Count one regression row (the arrays grow past capacity; a row without memory is left out). */
void		metrics_add_value(ClassMetrics *m, double true_value, double predicted_value);

/* Pearson's r of x and y (n); 0 when either is constant or n < 2. */
double		metrics_pearson(const double *x, const double *y, int64_t n);

/* Spearman's rho: Pearson's r of the ranks, tied values sharing their mean rank. */
double		metrics_spearman(const double *x, const double *y, int64_t n);

/* Allocate zeroed metrics for C classes; NULL if memory ran out. */
ClassMetrics *metrics_new(int n_classes);
void		metrics_free(ClassMetrics *m);

/* Count one prediction. */
void		metrics_add(ClassMetrics *m, int true_class, int predicted_class);

/* Count one prediction for a row whose true label is not a class. */
void		metrics_add_unseen(ClassMetrics *m, int predicted_class);

/* Fill accuracy, per-class precision/recall/F1 and macro-F1 from the counts. */
void		metrics_finish(ClassMetrics *m);

#endif							/* DEPT_NN_METRICS_H */
