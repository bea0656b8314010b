/*
 * metrics.c: accuracy, macro-F1, per-class precision/recall (see metrics.h).
 */
#include "train/metrics.h"

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

void
metrics_finish(ClassMetrics *m)
{
	int			C = m->n_classes;
	int64_t		correct = 0;
	double		f1_sum = 0.0;

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
