/*
 * dataset.h: labelled texts in memory, from a delimited file or added row
 * by row (the PostgreSQL layer feeds SPI rows through dataset_add).
 *
 * Labels are strings; dataset_finish() assigns class indexes in sorted
 * (byte-wise) order of the distinct labels, so the same rows in any order
 * give the same classes.  Rows with an empty label are skipped and counted.
 */
#ifndef DEPT_NN_DATASET_H
#define DEPT_NN_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "base/nn_common.h"

typedef struct Dataset
{
	int			n_rows;
	int			capacity;
	char	  **texts;			/* (n_rows) NUL-terminated copies */
	size_t	   *text_lens;		/* (n_rows) */
	char	  **texts_b;		/* sentence pairs (dataset_add_pair): (n_rows) second texts;
								 * NULL for one text per row */
	size_t	   *text_b_lens;	/* (n_rows), or NULL */
	char	  **row_labels;		/* (n_rows) label strings until dataset_finish */
	int		   *labels;			/* (n_rows) class index, after dataset_finish */
	int			n_classes;
	char	  **class_names;	/* (n_classes) sorted */
	long		skipped;		/* rows without text or label */
	int			regression;		/* dataset_finish_regression: one class, numeric targets
								 * (or their bins: dataset_bin_targets) */
	float	   *targets;		/* (n_rows) regression targets, or NULL */
} Dataset;

Dataset    *dataset_new(void);
void		dataset_free(Dataset *ds);

/* Append one row (copies both strings); NN_ERR_NOMEM if memory ran out. */
NnStatus	dataset_add(Dataset *ds, const char *text, size_t text_len,
						const char *label, size_t label_len, NnError *err);

/*
 * Append one sentence pair (copies the three strings).  A dataset holds
 * either pairs only or single texts only: NN_ERR_ARG when mixing.
 */
NnStatus	dataset_add_pair(Dataset *ds, const char *text, size_t text_len, const char *text_b,
							 size_t text_b_len, const char *label, size_t label_len, NnError *err);

/* Assign class indexes (sorted distinct labels).  Needs >= 2 classes. */
NnStatus	dataset_finish(Dataset *ds, NnError *err);

/*
 * Regression instead of classes: every label must be a finite number
 * (strtod, surrounding blanks allowed), kept in targets; there is one
 * class, named value_name (labels all 0), and the rows need not differ.
 * NN_ERR_ARG names the first label that is not a number.
 */
NnStatus	dataset_finish_regression(Dataset *ds, const char *value_name, NnError *err);

/*
 * T5's text-to-text regression (the DePT code's STS-B): a regression's
 * targets rounded to the nearest multiple of 0.2 (1 / DATASET_BINS_PER_UNIT,
 * half to even) become classes named by their value with one decimal
 * ("3.4", "-0.2"), every step from the lowest target's to the highest's
 * (steps no row has included); labels become bin indexes, targets and
 * regression stay.  NN_ERR_ARG unless ds is a regression not yet binned
 * whose targets span 2 to max_bins steps.
 */
#define DATASET_BINS_PER_UNIT 5.0
NnStatus	dataset_bin_targets(Dataset *ds, int max_bins, NnError *err);

/*
 * Load a delimited file with a header row: TSV (delimiter '\t', no
 * quoting) or CSV (',' with RFC 4180 double quotes).  text_column and
 * label_column name header fields.
 */
NnStatus	dataset_load(Dataset **out, const char *path, char delimiter,
						 const char *text_column, const char *label_column, NnError *err);

/*
 * dataset_load of sentence pairs from text_column and text_column2
 * (dataset_add_pair), classes or (regression) numeric labels.
 */
NnStatus	dataset_load_pairs(Dataset **out, const char *path, char delimiter,
							   const char *text_column, const char *text_column2,
							   const char *label_column, int regression, NnError *err);

/* dataset_load with numeric labels: dataset_finish_regression, one class named label_column. */
NnStatus	dataset_load_regression(Dataset **out, const char *path, char delimiter,
									const char *text_column, const char *label_column, NnError *err);

/*
 * Stratified split: within each class, rows are shuffled with seed and the
 * first round(valid_fraction * count) go to validation (at least one per
 * class when the class has two rows or more and valid_fraction > 0).
 * train and valid must hold n_rows indexes; counts are returned.
 */
void		dataset_split(const Dataset *ds, double valid_fraction, uint64_t seed,
						  int *train, int *n_train, int *valid, int *n_valid);

#endif							/* DEPT_NN_DATASET_H */
