/*
 * test_regression.c: the regression head (adapter.h head_mse_backward)
 * against central differences of its own forward, the regression metrics
 * (Pearson, Spearman with ties, MSE) against hand-computed values, the
 * numeric labels of dataset_finish_regression, and the version-4 adapter
 * format (a regression's head kind and target mean/sd survive a round
 * trip byte for byte; classifiers keep their older versions).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/adapter.h"
#include "adapters/adapter_io.h"
#include "train/dataset.h"
#include "train/metrics.h"
#include "unit.h"

#define B 3
#define H 5
#define FP "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static Adapter *
regression_probe(void)
{
	AdapterConfig cfg = {0};
	Adapter    *a = NULL;
	NnError		err;

	cfg.method = ADAPTER_PROBE;
	cfg.d = 4;
	cfg.h_dim = H;
	cfg.n_classes = 1;
	cfg.regression = 1;
	CHECK(adapter_new(&a, &cfg, B, 7, &err) == NN_OK, "adapter_new: %s", err.msg);
	return a;
}

/* The loss of head_mse_backward, recomputed in double from head_forward. */
static double
mse_loss(const Adapter *a, const float *h, const float *y)
{
	float		z[B];
	double		sum = 0.0;

	head_forward(a, h, B, z);
	for (int b = 0; b < B; b++)
	{
		double		t = (y[b] - a->target.w[0]) / a->target.w[1];

		sum += (z[b] - t) * (z[b] - t);
	}
	return sum / B;
}

/* Central difference of mse_loss in x[i] against the analytic gradient g. */
static double
fd_error(Adapter *a, float *h, const float *y, float *x, int n, const float *g)
{
	double		worst = 0.0;
	const float step = 1.0f / 256.0f;

	for (int i = 0; i < n; i++)
	{
		float		keep = x[i];
		double		up,
					down,
					fd;

		x[i] = keep + step;
		up = mse_loss(a, h, y);
		x[i] = keep - step;
		down = mse_loss(a, h, y);
		x[i] = keep;
		fd = (up - down) / (2.0 * step);
		if (fabs(fd - g[i]) > worst)
			worst = fabs(fd - g[i]);
	}
	return worst;
}

static void
test_head_gradients(void)
{
	Adapter    *a = regression_probe();
	Rng			rng;
	float	   *h,
			   *w;
	float		y[B] = {2.5f, -1.0f, 7.25f},
				out[B],
				dh[B * H];
	double		loss,
				err_w,
				err_b,
				err_h;

	if (a == NULL)
		return;
	rng_seed(&rng, 11);
	h = unit_random_floats(&rng, B * H);
	w = unit_random_floats(&rng, H);
	memcpy(a->head_w.w, w, sizeof(w[0]) * H);
	a->head_b.w[0] = 0.25f;
	adapter_set_target(a, 2.0, 3.0);
	CHECK(a->target.w[0] == 2.0f && a->target.w[1] == 3.0f, "target %g %g", a->target.w[0],
		  a->target.w[1]);
	head_forward(a, h, B, out);
	head_mse_backward(a, h, out, y, B, dh, &loss);
	CHECK(fabs(loss - mse_loss(a, h, y)) < 1e-6, "loss %g vs %g", loss, mse_loss(a, h, y));
	err_w = fd_error(a, h, y, a->head_w.w, H, a->head_w.g);
	err_b = fd_error(a, h, y, a->head_b.w, 1, a->head_b.g);
	err_h = fd_error(a, h, y, h, B * H, dh);
	printf("# max |fd - grad|: W %.2e, b %.2e, h %.2e\n", err_w, err_b, err_h);
	CHECK(err_w < 1e-4 && err_b < 1e-4 && err_h < 1e-4, "W %g b %g h %g", err_w, err_b, err_h);
	/* the value of an output: mean + sd * z */
	CHECK(fabs(adapter_value(a, 0.5f) - 3.5) < 1e-6, "value %g", adapter_value(a, 0.5f));
	adapter_set_target(a, 1.0, 0.0);
	CHECK(a->target.w[1] == 1.0f, "a zero sd becomes 1, not %g", a->target.w[1]);
	free(h);
	free(w);
	adapter_free(a);
}

static void
test_metrics_hand_computed(void)
{
	const double x[5] = {1, 2, 3, 4, 5},
				y[5] = {2, 4, 5, 4, 5},
				cube[3] = {1, 8, 27},
				flat[3] = {2, 2, 2};
	ClassMetrics *m = metrics_new_regression(1);

	/* sxy 6, sxx 10, syy 6 */
	CHECK(fabs(metrics_pearson(x, y, 5) - 6.0 / sqrt(60.0)) < 1e-12, "pearson %.12f",
		  metrics_pearson(x, y, 5));
	/* ranks of y with ties: 1, 2.5, 4.5, 2.5, 4.5: sxy 7, sxx 10, syy 9 */
	CHECK(fabs(metrics_spearman(x, y, 5) - 7.0 / sqrt(90.0)) < 1e-12, "spearman %.12f",
		  metrics_spearman(x, y, 5));
	CHECK(fabs(metrics_spearman(x, cube, 3) - 1.0) < 1e-12, "monotone: %.12f",
		  metrics_spearman(x, cube, 3));
	CHECK(metrics_pearson(x, cube, 3) < 0.99, "not linear: %.6f", metrics_pearson(x, cube, 3));
	CHECK(metrics_pearson(x, flat, 3) == 0.0 && metrics_spearman(flat, x, 3) == 0.0,
		  "a constant correlates 0");
	metrics_add_value(m, 1, 1);
	metrics_add_value(m, 3, 2);
	metrics_add_value(m, 5, 3);
	metrics_finish(m);
	CHECK(m->regression && m->total == 3 && m->capacity >= 3, "total %ld (grown past 1)",
		  (long) m->total);
	CHECK(fabs(m->mse - 5.0 / 3.0) < 1e-12, "mse %.12f", m->mse);
	CHECK(fabs(m->pearson - 1.0) < 1e-12 && fabs(m->spearman - 1.0) < 1e-12, "r %g rho %g",
		  m->pearson, m->spearman);
	metrics_free(m);
}

static void
test_dataset_numbers(void)
{
	Dataset    *ds = dataset_new();
	NnError		err;

	dataset_add(ds, "a", 1, " 1.5", 4, &err);
	dataset_add(ds, "b", 1, "-2e1", 4, &err);
	dataset_add(ds, "c", 1, "3", 1, &err);
	CHECK(dataset_finish_regression(ds, "score", &err) == NN_OK, "%s", err.msg);
	CHECK(ds->n_classes == 1 && strcmp(ds->class_names[0], "score") == 0, "one class");
	CHECK(ds->targets[0] == 1.5f && ds->targets[1] == -20.0f && ds->targets[2] == 3.0f,
		  "targets %g %g %g", ds->targets[0], ds->targets[1], ds->targets[2]);
	dataset_free(ds);
	ds = dataset_new();
	dataset_add(ds, "a", 1, "1", 1, &err);
	dataset_add(ds, "b", 1, "high", 4, &err);
	CHECK(dataset_finish_regression(ds, "score", &err) == NN_ERR_ARG &&
		  strstr(err.msg, "\"high\"") != NULL, "a word is refused: %s", err.msg);
	dataset_free(ds);
}

static void
test_format_round_trip(void)
{
	Adapter    *a = regression_probe(),
			   *back = NULL;
	const char *names[] = {"score"};
	uint8_t    *bytes = NULL,
			   *again = NULL;
	size_t		len = 0,
				len2 = 0;
	char		fp[65];
	char	  **back_names = NULL;
	NnError		err;

	if (a == NULL)
		return;
	a->head_w.w[2] = 0.5f;
	adapter_set_target(a, 3.25, 1.5);
	CHECK(adapter_serialize(a, FP, names, &bytes, &len, &err) == NN_OK, "serialize: %s", err.msg);
	if (bytes == NULL)
		return;
	CHECK(bytes[4] == ADAPTER_IO_VERSION_REGRESSION && bytes[96] == ADAPTER_IO_HEAD_REGRESSION,
		  "version %d head %d", bytes[4], bytes[96]);
	CHECK(adapter_deserialize(bytes, len, 4, &back, fp, &back_names, &err) == NN_OK,
		  "deserialize: %s", err.msg);
	if (back != NULL)
	{
		CHECK(back->cfg.regression == 1 && back->cfg.n_classes == 1 &&
			  back->cfg.head == ADAPTER_HEAD_LINEAR, "regression config");
		CHECK(back->target.w[0] == 3.25f && back->target.w[1] == 1.5f && back->head_w.w[2] == 0.5f,
			  "target %g %g", back->target.w[0], back->target.w[1]);
		CHECK(strcmp(back_names[0], "score") == 0, "name %s", back_names[0]);
		CHECK(adapter_serialize(back, FP, names, &again, &len2, &err) == NN_OK &&
			  len2 == len && memcmp(again, bytes, len) == 0, "one encoding");
		adapter_free_class_names(back_names, 1);
		adapter_free(back);
	}
	free(bytes);
	free(again);
	adapter_free(a);
}

int
main(void)
{
	RUN_TEST(test_head_gradients);
	RUN_TEST(test_metrics_hand_computed);
	RUN_TEST(test_dataset_numbers);
	RUN_TEST(test_format_round_trip);
	return unit_finish();
}
