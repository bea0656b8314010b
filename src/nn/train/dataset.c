/*
 * dataset.c: labelled texts, delimited-file loading, stratified split
 * (see dataset.h).
 */
#include "train/dataset.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"

Dataset *
dataset_new(void)
{
	return calloc(1, sizeof(Dataset));
}

void
dataset_free(Dataset *ds)
{
	if (ds == NULL)
		return;
	for (int i = 0; i < ds->n_rows; i++)
	{
		free(ds->texts[i]);
		free(ds->row_labels[i]);
		if (ds->texts_b)
			free(ds->texts_b[i]);
	}
	free(ds->texts_b);
	free(ds->text_b_lens);
	for (int c = 0; c < ds->n_classes; c++)
		free(ds->class_names[c]);
	free(ds->texts);
	free(ds->text_lens);
	free(ds->row_labels);
	free(ds->labels);
	free(ds->class_names);
	free(ds->targets);
	free(ds);
}

static char *
copy_bytes(const char *s, size_t len)
{
	char	   *out = malloc(len + 1);

	if (out != NULL)
	{
		memcpy(out, s, len);
		out[len] = '\0';
	}
	return out;
}

static NnStatus
grow(Dataset *ds)
{
	int			cap = ds->capacity ? ds->capacity * 2 : 1024;
	char	  **texts = realloc(ds->texts, sizeof(char *) * cap);

	if (texts == NULL)
		return NN_ERR_NOMEM;
	ds->texts = texts;
	{
		size_t	   *lens = realloc(ds->text_lens, sizeof(size_t) * cap);

		if (lens == NULL)
			return NN_ERR_NOMEM;
		ds->text_lens = lens;
	}
	{
		char	  **labels = realloc(ds->row_labels, sizeof(char *) * cap);

		if (labels == NULL)
			return NN_ERR_NOMEM;
		ds->row_labels = labels;
	}
	if (ds->texts_b)
	{
		char	  **b = realloc(ds->texts_b, sizeof(char *) * cap);
		size_t	   *lens;

		if (b == NULL)
			return NN_ERR_NOMEM;
		ds->texts_b = b;
		if ((lens = realloc(ds->text_b_lens, sizeof(size_t) * cap)) == NULL)
			return NN_ERR_NOMEM;
		ds->text_b_lens = lens;
	}
	ds->capacity = cap;
	return NN_OK;
}

static NnStatus add_row(Dataset *ds, const char *text, size_t text_len, const char *label,
						size_t label_len, NnError *err);

NnStatus
dataset_add(Dataset *ds, const char *text, size_t text_len, const char *label,
			size_t label_len, NnError *err)
{
	if (ds->texts_b != NULL)
		return nn_fail(err, NN_ERR_ARG, "a dataset of sentence pairs takes pairs, not one text");
	return add_row(ds, text, text_len, label, label_len, err);
}

NnStatus
dataset_add_pair(Dataset *ds, const char *text, size_t text_len, const char *text_b,
				 size_t text_b_len, const char *label, size_t label_len, NnError *err)
{
	NnStatus	st;

	if (ds->texts_b == NULL && ds->n_rows > 0)
		return nn_fail(err, NN_ERR_ARG, "a dataset of single texts takes no pair");
	if (ds->texts_b == NULL)
	{
		/* the first pair: the second-text arrays follow the capacity from now on */
		int			cap = ds->capacity > 0 ? ds->capacity : 1;

		ds->texts_b = calloc(cap, sizeof(char *));
		ds->text_b_lens = calloc(cap, sizeof(size_t));
		if (ds->texts_b == NULL || ds->text_b_lens == NULL)
		{
			free(ds->texts_b);
			free(ds->text_b_lens);
			ds->texts_b = NULL;
			ds->text_b_lens = NULL;
			return nn_fail(err, NN_ERR_NOMEM, "out of memory adding a pair");
		}
	}
	if (text_b == NULL)
		text = NULL;			/* skipped below, as a row without text */
	if ((st = add_row(ds, text, text_len, label, label_len, err)) != NN_OK ||
		text == NULL || label == NULL || label_len == 0)
		return st;
	if ((ds->texts_b[ds->n_rows - 1] = copy_bytes(text_b, text_b_len)) == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory adding row %d", ds->n_rows - 1);
	ds->text_b_lens[ds->n_rows - 1] = text_b_len;
	return NN_OK;
}

/* Append one row's text and label (the second text, if any, is the caller's). */
static NnStatus
add_row(Dataset *ds, const char *text, size_t text_len, const char *label, size_t label_len,
		NnError *err)
{
	if (text == NULL || label == NULL || label_len == 0)
	{
		ds->skipped++;
		return NN_OK;
	}
	if (ds->n_rows >= 0x7fffffff - 1)
		return nn_fail(err, NN_ERR_ARG, "too many rows");
	if (ds->n_rows == ds->capacity && grow(ds) != NN_OK)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory adding row %d", ds->n_rows);
	ds->texts[ds->n_rows] = copy_bytes(text, text_len);
	ds->row_labels[ds->n_rows] = copy_bytes(label, label_len);
	if (ds->texts[ds->n_rows] == NULL || ds->row_labels[ds->n_rows] == NULL)
	{
		free(ds->texts[ds->n_rows]);
		free(ds->row_labels[ds->n_rows]);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory adding row %d", ds->n_rows);
	}
	ds->text_lens[ds->n_rows] = text_len;
	ds->n_rows++;
	return NN_OK;
}

static int
compare_strings(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

NnStatus
dataset_finish(Dataset *ds, NnError *err)
{
	char	  **sorted;
	int			n_unique = 0;

	if (ds->n_rows == 0)
		return nn_fail(err, NN_ERR_ARG, "no labelled rows");
	sorted = malloc(sizeof(char *) * ds->n_rows);
	ds->labels = malloc(sizeof(int) * ds->n_rows);
	if (sorted == NULL || ds->labels == NULL)
	{
		free(sorted);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory assigning classes");
	}
	memcpy(sorted, ds->row_labels, sizeof(char *) * ds->n_rows);
	qsort(sorted, ds->n_rows, sizeof(char *), compare_strings);
	for (int i = 0; i < ds->n_rows; i++)
		if (n_unique == 0 || strcmp(sorted[n_unique - 1], sorted[i]) != 0)
			sorted[n_unique++] = sorted[i];
	if (n_unique < 2)
	{
		free(sorted);
		return nn_fail(err, NN_ERR_ARG, "the label column has %d distinct value%s; at least 2 are needed",
					   n_unique, n_unique == 1 ? "" : "s");
	}
	ds->class_names = calloc(n_unique, sizeof(char *));
	if (ds->class_names == NULL)
	{
		free(sorted);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory assigning classes");
	}
	for (int c = 0; c < n_unique; c++)
		ds->class_names[c] = copy_bytes(sorted[c], strlen(sorted[c]));
	ds->n_classes = n_unique;
	for (int i = 0; i < ds->n_rows; i++)
	{
		char	  **hit = bsearch(&ds->row_labels[i], sorted, n_unique, sizeof(char *),
								  compare_strings);

		ds->labels[i] = (int) (hit - sorted);
	}
	free(sorted);
	for (int c = 0; c < n_unique; c++)
		if (ds->class_names[c] == NULL)
			return nn_fail(err, NN_ERR_NOMEM, "out of memory assigning classes");
	return NN_OK;
}

NnStatus
dataset_finish_regression(Dataset *ds, const char *value_name, NnError *err)
{
	if (ds->n_rows == 0)
		return nn_fail(err, NN_ERR_ARG, "no labelled rows");
	ds->labels = calloc(ds->n_rows, sizeof(int));
	ds->targets = malloc(sizeof(float) * ds->n_rows);
	ds->class_names = calloc(1, sizeof(char *));
	if (ds->labels == NULL || ds->targets == NULL || ds->class_names == NULL ||
		(ds->class_names[0] = copy_bytes(value_name, strlen(value_name))) == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory reading targets");
	ds->n_classes = 1;
	ds->regression = 1;
	for (int i = 0; i < ds->n_rows; i++)
	{
		char	   *end;
		double		v = strtod(ds->row_labels[i], &end);

		while (*end == ' ' || *end == '\t' || *end == '\r')
			end++;
		if (end == ds->row_labels[i] || *end != '\0' || !isfinite(v) || fabs(v) > 3e38)
			return nn_fail(err, NN_ERR_ARG, "label \"%.64s\" of row %d is not a finite number",
						   ds->row_labels[i], i + 1);
		ds->targets[i] = (float) v;
	}
	return NN_OK;
}

NnStatus
dataset_bin_targets(Dataset *ds, int max_bins, NnError *err)
{
	double		lo = 0.0,
				hi = 0.0;
	int			n_bins;
	char	  **names;

	if (!ds->regression || ds->n_classes != 1 || ds->n_rows == 0)
		return nn_fail(err, NN_ERR_ARG, "only a regression dataset not yet binned has targets to bin");
	/*
	 * bin k holds k / 5: rint(t * 5) rounds half to even, as numpy's round
	 * in T5's round(t * 5) / 5 (a float times 5 is exact in a double)
	 */
	for (int i = 0; i < ds->n_rows; i++)
	{
		double		k = rint(ds->targets[i] * DATASET_BINS_PER_UNIT);

		lo = i == 0 || k < lo ? k : lo;
		hi = i == 0 || k > hi ? k : hi;
	}
	if (hi - lo + 1 < 2 || hi - lo + 1 > max_bins)
		return nn_fail(err, NN_ERR_ARG, "the targets span %.0f steps of %.1f (%.1f to %.1f): "
					   "a text-to-text regression needs 2 to %d", hi - lo + 1,
					   1.0 / DATASET_BINS_PER_UNIT, lo / DATASET_BINS_PER_UNIT,
					   hi / DATASET_BINS_PER_UNIT, max_bins);
	n_bins = (int) (hi - lo + 1);
	if ((names = calloc(n_bins, sizeof(char *))) == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory naming bins");
	for (int c = 0; c < n_bins; c++)
	{
		char		buf[64];

		/* + 0.0: a bin of -0.0 is named "0.0" */
		snprintf(buf, sizeof(buf), "%.1f", (lo + c) / DATASET_BINS_PER_UNIT + 0.0);
		if ((names[c] = copy_bytes(buf, strlen(buf))) == NULL)
		{
			for (int k = 0; k < c; k++)
				free(names[k]);
			free(names);
			return nn_fail(err, NN_ERR_NOMEM, "out of memory naming bins");
		}
	}
	for (int i = 0; i < ds->n_rows; i++)
		ds->labels[i] = (int) (rint(ds->targets[i] * DATASET_BINS_PER_UNIT) - lo);
	free(ds->class_names[0]);
	free(ds->class_names);
	ds->class_names = names;
	ds->n_classes = n_bins;
	return NN_OK;
}

/*
 * Split one line into fields in place.  CSV honours double quotes ("" is a
 * quote); TSV does not.  Returns the number of fields (at most max).
 */
static int
split_fields(char *line, char delimiter, char **fields, int max)
{
	int			n = 0;
	char	   *p = line;

	while (n < max)
	{
		char	   *out = p;

		fields[n++] = p;
		if (delimiter == ',' && *p == '"')
		{
			char	   *in = p + 1;

			fields[n - 1] = out;
			while (*in)
			{
				if (in[0] == '"' && in[1] == '"')
				{
					*out++ = '"';
					in += 2;
				}
				else if (in[0] == '"')
				{
					in++;
					break;
				}
				else
					*out++ = *in++;
			}
			while (*in && *in != delimiter)
				in++;
			p = in;
			if (*p == delimiter)
			{
				*out = '\0';
				p++;
				continue;
			}
			*out = '\0';
			break;
		}
		while (*p && *p != delimiter)
			p++;
		if (*p == delimiter)
		{
			*p++ = '\0';
			continue;
		}
		break;
	}
	return n;
}

static int
find_column(char **fields, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(fields[i], name) == 0)
			return i;
	return -1;
}

static void
strip_newline(char *line, ssize_t *len)
{
	while (*len > 0 && (line[*len - 1] == '\n' || line[*len - 1] == '\r'))
		line[--*len] = '\0';
}

static NnStatus load_file(Dataset **out, const char *path, char delimiter, const char *text_column,
						  const char *text_column2, const char *label_column, int regression,
						  NnError *err);

NnStatus
dataset_load(Dataset **out, const char *path, char delimiter, const char *text_column,
			 const char *label_column, NnError *err)
{
	return load_file(out, path, delimiter, text_column, NULL, label_column, 0, err);
}

NnStatus
dataset_load_regression(Dataset **out, const char *path, char delimiter, const char *text_column,
						const char *label_column, NnError *err)
{
	return load_file(out, path, delimiter, text_column, NULL, label_column, 1, err);
}

NnStatus
dataset_load_pairs(Dataset **out, const char *path, char delimiter, const char *text_column,
				   const char *text_column2, const char *label_column, int regression,
				   NnError *err)
{
	return load_file(out, path, delimiter, text_column, text_column2, label_column, regression,
					 err);
}

static NnStatus
load_file(Dataset **out, const char *path, char delimiter, const char *text_column,
		  const char *text_column2, const char *label_column, int regression, NnError *err)
{
	FILE	   *f = fopen(path, "r");
	char	   *line = NULL;
	size_t		cap = 0;
	ssize_t		len;
	char	   *fields[256];
	int			text_idx,
				text2_idx = -1,
				label_idx,
				n;
	Dataset    *ds;
	NnStatus	st = NN_OK;

	*out = NULL;
	if (f == NULL)
		return nn_fail(err, NN_ERR_IO, "could not open \"%s\"", path);
	ds = dataset_new();
	len = getline(&line, &cap, f);
	if (ds == NULL || len < 0)
	{
		st = ds ? nn_fail(err, NN_ERR_FORMAT, "\"%s\" is empty", path)
			: nn_fail(err, NN_ERR_NOMEM, "out of memory");
		goto done;
	}
	strip_newline(line, &len);
	if (len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0)
		memmove(line, line + 3, len - 2);	/* UTF-8 byte order mark */
	n = split_fields(line, delimiter, fields, 256);
	text_idx = find_column(fields, n, text_column);
	label_idx = find_column(fields, n, label_column);
	if (text_column2)
		text2_idx = find_column(fields, n, text_column2);
	if (text_idx < 0 || label_idx < 0 || (text_column2 && text2_idx < 0))
	{
		st = nn_fail(err, NN_ERR_FORMAT, "\"%s\" has no column \"%s\"", path,
					 text_idx < 0 ? text_column : label_idx < 0 ? label_column : text_column2);
		goto done;
	}
	while ((len = getline(&line, &cap, f)) >= 0)
	{
		strip_newline(line, &len);
		if (len == 0)
			continue;
		n = split_fields(line, delimiter, fields, 256);
		if (n <= text_idx || n <= label_idx || n <= text2_idx)
		{
			ds->skipped++;
			continue;
		}
		st = text_column2 ?
			dataset_add_pair(ds, fields[text_idx], strlen(fields[text_idx]), fields[text2_idx],
							 strlen(fields[text2_idx]), fields[label_idx], strlen(fields[label_idx]),
							 err) :
			dataset_add(ds, fields[text_idx], strlen(fields[text_idx]), fields[label_idx],
						strlen(fields[label_idx]), err);
		if (st != NN_OK)
			goto done;
	}
	st = regression ? dataset_finish_regression(ds, label_column, err) : dataset_finish(ds, err);

done:
	free(line);
	fclose(f);
	if (st != NN_OK)
		dataset_free(ds);
	else
		*out = ds;
	return st;
}

void
dataset_split(const Dataset *ds, double valid_fraction, uint64_t seed,
			  int *train, int *n_train, int *valid, int *n_valid)
{
	Rng			rng;
	int		   *members = malloc(sizeof(int) * (ds->n_rows > 0 ? ds->n_rows : 1));

	*n_train = 0;
	*n_valid = 0;
	rng_seed(&rng, seed);
	for (int c = 0; c < ds->n_classes; c++)
	{
		int			count = 0,
					take;

		for (int i = 0; i < ds->n_rows; i++)
			if (ds->labels[i] == c)
				members[count++] = i;
		/* Fisher-Yates */
		for (int i = count - 1; i > 0; i--)
		{
			int			j = (int) rng_below(&rng, (uint64_t) i + 1);
			int			t = members[i];

			members[i] = members[j];
			members[j] = t;
		}
		take = (int) (valid_fraction * count + 0.5);
		if (valid_fraction > 0 && take == 0 && count >= 2)
			take = 1;
		if (take >= count)
			take = count - 1;
		for (int i = 0; i < count; i++)
		{
			if (i < take)
				valid[(*n_valid)++] = members[i];
			else
				train[(*n_train)++] = members[i];
		}
	}
	free(members);
}
