/*
 * test_optim_metrics.c: AdamW against values computed by hand from
 * torch.optim.AdamW's update rule, the schedule, clipping, and metrics.
 */
#include <math.h>
#include <string.h>

#include "train/metrics.h"
#include "ops/optim.h"
#include "unit.h"

/* Two AdamW steps on one weight with constant gradient, worked by hand. */
static void
test_adamw_matches_reference_rule(void)
{
	AdamW		opt;
	float		w = 1.0f,
				g = 0.5f,
				m = 0.0f,
				v = 0.0f;
	double		ref_w = 1.0,
				ref_m = 0.0,
				ref_v = 0.0;

	adamw_init(&opt);
	opt.lr[0] = 0.1f;
	opt.weight_decay[0] = 0.01f;
	CHECK(adamw_add(&opt, &w, &g, &m, &v, 1, 0) == 0, "add");
	for (int step = 1; step <= 2; step++)
	{
		adamw_step(&opt, 1.0f);
		ref_w -= 0.1 * 0.01 * ref_w;
		ref_m = 0.9 * ref_m + 0.1 * 0.5;
		ref_v = 0.999 * ref_v + 0.001 * 0.25;
		ref_w -= 0.1 * (ref_m / (1 - pow(0.9, step))) /
			(sqrt(ref_v / (1 - pow(0.999, step))) + 1e-8);
		CHECK(fabs(w - ref_w) < 1e-6, "step %d: w %.8f want %.8f", step, w, ref_w);
	}
}

/* Groups get their own learning rate. */
static void
test_adamw_groups(void)
{
	AdamW		opt;
	float		w[2] = {0, 0}, g[2] = {1, 1}, m[2] = {0}, v[2] = {0};

	adamw_init(&opt);
	opt.lr[0] = 0.3f;
	opt.lr[1] = 0.001f;
	adamw_add(&opt, &w[0], &g[0], &m[0], &v[0], 1, 0);
	adamw_add(&opt, &w[1], &g[1], &m[1], &v[1], 1, 1);
	adamw_step(&opt, 1.0f);
	/* first Adam step moves each weight by lr * sign(g) */
	CHECK(fabsf(w[0] + 0.3f) < 1e-5f, "group 0 moved %f", w[0]);
	CHECK(fabsf(w[1] + 0.001f) < 1e-7f, "group 1 moved %f", w[1]);
	adamw_zero_grad(&opt);
	CHECK(g[0] == 0.0f && g[1] == 0.0f, "zero_grad");
}

static void
test_clip_and_schedule(void)
{
	AdamW		opt;
	float		w[2] = {0}, g[2] = {3, 4}, m[2] = {0}, v[2] = {0};
	double		norm;

	adamw_init(&opt);
	adamw_add(&opt, w, g, m, v, 2, 0);
	norm = clip_grad_norm(&opt, 1.0);
	CHECK(fabs(norm - 5.0) < 1e-9, "norm before clipping %f", norm);
	CHECK(fabsf(sqrtf(g[0] * g[0] + g[1] * g[1]) - 1.0f) < 1e-5f, "clipped to 1");
	CHECK(schedule_warmup_linear(0, 10, 110) == 0.0f, "warm-up starts at 0");
	CHECK(fabsf(schedule_warmup_linear(5, 10, 110) - 0.5f) < 1e-6f, "half way up");
	CHECK(schedule_warmup_linear(10, 10, 110) == 1.0f, "peak");
	CHECK(fabsf(schedule_warmup_linear(60, 10, 110) - 0.5f) < 1e-6f, "half way down");
	CHECK(schedule_warmup_linear(110, 10, 110) == 0.0f, "ends at 0");
}

/* Confusion [[5,1],[2,2]]: values from sklearn.metrics by hand. */
static void
test_metrics(void)
{
	ClassMetrics *m = metrics_new(3);
	int			pairs[][2] = {{0, 0}, {0, 0}, {0, 0}, {0, 0}, {0, 0}, {0, 1},
	{1, 0}, {1, 0}, {1, 1}, {1, 1}};

	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++)
		metrics_add(m, pairs[i][0], pairs[i][1]);
	metrics_add(m, 7, 0);		/* out of range: ignored */
	metrics_finish(m);
	CHECK(m->total == 10, "total %ld", (long) m->total);
	CHECK(fabs(m->accuracy - 0.7) < 1e-12, "accuracy %f", m->accuracy);
	CHECK(fabs(m->precision[0] - 5.0 / 7) < 1e-12, "precision 0");
	CHECK(fabs(m->recall[1] - 0.5) < 1e-12, "recall 1");
	/* f1_0 = 2*(5/7)(5/6)/((5/7)+(5/6)) = 10/13, f1_1 = 2*(2/3)(1/2)/(7/6) = 4/7, f1_2 = 0 */
	CHECK(fabs(m->macro_f1 - (10.0 / 13 + 4.0 / 7) / 3) < 1e-12, "macro-F1 %f", m->macro_f1);
	CHECK(m->confusion[1 * 3 + 0] == 2, "confusion");
	metrics_free(m);
	CHECK(metrics_new(0) == NULL, "zero classes refused");
}

/*
 * Rows of a label the classifier never saw are errors: [[1,0],[0,1]] plus
 * two unseen rows predicted 0 and 1 give accuracy 2/4, precision 1/2 each.
 */
static void
test_metrics_unseen_labels(void)
{
	ClassMetrics *m = metrics_new(2);

	metrics_add(m, 0, 0);
	metrics_add(m, 1, 1);
	metrics_add_unseen(m, 0);
	metrics_add_unseen(m, 1);
	metrics_finish(m);
	CHECK(m->total == 4 && m->n_unseen == 2, "total %ld unseen %ld", (long) m->total,
		  (long) m->n_unseen);
	CHECK(fabs(m->accuracy - 0.5) < 1e-12, "accuracy %f", m->accuracy);
	CHECK(fabs(m->precision[0] - 0.5) < 1e-12 && fabs(m->recall[0] - 1.0) < 1e-12,
		  "precision %f recall %f", m->precision[0], m->recall[0]);
	metrics_free(m);
}

int
main(void)
{
	RUN_TEST(test_adamw_matches_reference_rule);
	RUN_TEST(test_adamw_groups);
	RUN_TEST(test_clip_and_schedule);
	RUN_TEST(test_metrics);
	RUN_TEST(test_metrics_unseen_labels);
	return unit_finish();
}
