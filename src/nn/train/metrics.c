/*
 * metrics.c: accuracy, macro-F1, per-class precision/recall (see metrics.h).
 */
#include "train/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

ClassMetrics *
metrics_new(int n_classes)
{
	ClassMetrics *m;

	if (n_classes <= 0)
		return NULL;
	m = calloc(1, sizeof(ClassMetrics));
	if (m == NULL)
		return NULL;
	m->n_classes = n_classes;
	m->precision = calloc(n_classes, sizeof(double));
	m->recall = calloc(n_classes, sizeof(double));
	m->f1 = calloc(n_classes, sizeof(double));
	m->confusion = calloc((size_t) n_classes * n_classes, sizeof(int64_t));
	m->unseen = calloc(n_classes, sizeof(int64_t));
	if (!m->precision || !m->recall || !m->f1 || !m->confusion || !m->unseen)
	{
		metrics_free(m);
		return NULL;
	}
	return m;
}

void
metrics_free(ClassMetrics *m)
{
	if (m == NULL)
		return;
	free(m->precision);
	free(m->recall);
	free(m->f1);
	free(m->confusion);
	free(m->unseen);
	free(m->pred);
	free(m->gold);
	free(m);
}

void
metrics_add(ClassMetrics *m, int true_class, int predicted_class)
{
	if (true_class < 0 || true_class >= m->n_classes ||
		predicted_class < 0 || predicted_class >= m->n_classes)
		return;
	m->confusion[(size_t) true_class * m->n_classes + predicted_class]++;
	m->total++;
}

void
metrics_add_unseen(ClassMetrics *m, int predicted_class)
{
	if (predicted_class < 0 || predicted_class >= m->n_classes)
		return;
	m->unseen[predicted_class]++;
	m->n_unseen++;
	m->total++;
}

ClassMetrics *
metrics_new_regression(int64_t capacity)
{
	ClassMetrics *m = metrics_new(1);

	if (m == NULL)
		return NULL;
	m->regression = 1;
	m->capacity = capacity > 0 ? capacity : 1;
	m->pred = malloc(sizeof(double) * (size_t) m->capacity);
	m->gold = malloc(sizeof(double) * (size_t) m->capacity);
	if (m->pred == NULL || m->gold == NULL)
	{
		metrics_free(m);
		return NULL;
	}
	return m;
}

void
metrics_add_value(ClassMetrics *m, double true_value, double predicted_value)
{
	if (m->total >= m->capacity)
	{
		/* grow by doubling; a row that finds no memory is left out */
		double	   *pred = realloc(m->pred, sizeof(double) * (size_t) m->capacity * 2);
		double	   *gold = pred ? realloc(m->gold, sizeof(double) * (size_t) m->capacity * 2) : NULL;

		if (pred)
			m->pred = pred;
		if (gold == NULL)
			return;
		m->gold = gold;
		m->capacity *= 2;
	}
	m->gold[m->total] = true_value;
	m->pred[m->total] = predicted_value;
	m->total++;
}

double
metrics_pearson(const double *x, const double *y, int64_t n)
{
	double		mx = 0.0,
				my = 0.0,
				sxy = 0.0,
				sxx = 0.0,
				syy = 0.0;

	if (n < 2)
		return 0.0;
	for (int64_t i = 0; i < n; i++)
	{
		mx += x[i];
		my += y[i];
	}
	mx /= n;
	my /= n;
	for (int64_t i = 0; i < n; i++)
	{
		sxy += (x[i] - mx) * (y[i] - my);
		sxx += (x[i] - mx) * (x[i] - mx);
		syy += (y[i] - my) * (y[i] - my);
	}
	if (sxx <= 0.0 || syy <= 0.0)
		return 0.0;
	return sxy / sqrt(sxx * syy);
}

static const double *rank_keys;

static int
compare_by_key(const void *a, const void *b)
{
	double		x = rank_keys[*(const int64_t *) a],
				y = rank_keys[*(const int64_t *) b];

	return x < y ? -1 : x > y ? 1 : 0;
}

/* Ranks 1..n of x into r, tied values sharing their mean rank; false if memory ran out. */
static int
mean_ranks(const double *x, int64_t n, double *r)
{
	int64_t    *order = malloc(sizeof(int64_t) * (size_t) n);

	if (order == NULL)
		return 0;
	for (int64_t i = 0; i < n; i++)
		order[i] = i;
	rank_keys = x;
	qsort(order, (size_t) n, sizeof(int64_t), compare_by_key);
	for (int64_t i = 0; i < n;)
	{
		int64_t		j = i;

		while (j + 1 < n && x[order[j + 1]] == x[order[i]])
			j++;
		for (int64_t k = i; k <= j; k++)
			r[order[k]] = (i + j) / 2.0 + 1.0;
		i = j + 1;
	}
	free(order);
	return 1;
}

double
metrics_spearman(const double *x, const double *y, int64_t n)
{
	double	   *rx = malloc(sizeof(double) * (size_t) (n > 0 ? n : 1)),
			   *ry = malloc(sizeof(double) * (size_t) (n > 0 ? n : 1));
	double		rho = 0.0;

	if (rx && ry && mean_ranks(x, n, rx) && mean_ranks(y, n, ry))
		rho = metrics_pearson(rx, ry, n);
	free(rx);
	free(ry);
	return rho;
}

static void
regression_finish(ClassMetrics *m)
{
	double		se = 0.0;

	for (int64_t i = 0; i < m->total; i++)
		se += (m->pred[i] - m->gold[i]) * (m->pred[i] - m->gold[i]);
	m->mse = m->total > 0 ? se / m->total : 0.0;
	m->pearson = metrics_pearson(m->pred, m->gold, m->total);
	m->spearman = metrics_spearman(m->pred, m->gold, m->total);
}

void
metrics_finish(ClassMetrics *m)
{
	int			C = m->n_classes;
	int64_t		correct = 0;
	double		f1_sum = 0.0;

	if (m->regression)
	{
		regression_finish(m);
		return;
	}
	for (int c = 0; c < C; c++)
	{
		int64_t		tp = m->confusion[(size_t) c * C + c];
		int64_t		actual = 0,
					predicted = m->unseen[c];

		for (int k = 0; k < C; k++)
		{
			actual += m->confusion[(size_t) c * C + k];
			predicted += m->confusion[(size_t) k * C + c];
		}
		correct += tp;
		m->precision[c] = predicted ? (double) tp / predicted : 0.0;
		m->recall[c] = actual ? (double) tp / actual : 0.0;
		m->f1[c] = (m->precision[c] + m->recall[c]) > 0.0 ?
			2.0 * m->precision[c] * m->recall[c] / (m->precision[c] + m->recall[c]) : 0.0;
		f1_sum += m->f1[c];
	}
	m->accuracy = m->total ? (double) correct / m->total : 0.0;
	m->macro_f1 = f1_sum / C;
}
