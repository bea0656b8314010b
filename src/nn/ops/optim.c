/*
 * optim.c: AdamW with parameter groups, schedule, clipping (see optim.h).
 */
#include "ops/optim.h"

#include <math.h>
#include <string.h>

void
adamw_init(AdamW *opt)
{
	memset(opt, 0, sizeof(*opt));
	opt->beta1 = 0.9f;
	opt->beta2 = 0.999f;
	opt->eps = 1e-8f;
}

int
adamw_add(AdamW *opt, float *w, float *g, float *m, float *v, size_t n, int group)
{
	OptimTensor *t;

	if (opt->n_tensors >= OPTIM_MAX_TENSORS || group < 0 || group >= 8)
		return -1;
	t = &opt->tensors[opt->n_tensors++];
	t->w = w;
	t->g = g;
	t->m = m;
	t->v = v;
	t->n = n;
	t->group = group;
	if (group >= opt->n_groups)
		opt->n_groups = group + 1;
	return 0;
}

void
adamw_step(AdamW *opt, float lr_scale)
{
	double		bias1,
				bias2;

	opt->step++;
	bias1 = 1.0 - pow(opt->beta1, (double) opt->step);
	bias2 = 1.0 - pow(opt->beta2, (double) opt->step);
	for (int k = 0; k < opt->n_tensors; k++)
	{
		OptimTensor *t = &opt->tensors[k];
		float		lr = opt->lr[t->group] * lr_scale;
		float		wd = opt->weight_decay[t->group];
		float		step_size = (float) (lr / bias1);
		float		rsqrt_bias2 = (float) (1.0 / sqrt(bias2));

		for (size_t i = 0; i < t->n; i++)
		{
			float		g = t->g[i];

			t->m[i] = opt->beta1 * t->m[i] + (1.0f - opt->beta1) * g;
			t->v[i] = opt->beta2 * t->v[i] + (1.0f - opt->beta2) * g * g;
			/* decoupled decay first, as torch.optim.AdamW does */
			t->w[i] -= lr * wd * t->w[i];
			t->w[i] -= step_size * t->m[i] / (sqrtf(t->v[i]) * rsqrt_bias2 + opt->eps);
		}
	}
}

void
adamw_zero_grad(AdamW *opt)
{
	for (int k = 0; k < opt->n_tensors; k++)
		memset(opt->tensors[k].g, 0, sizeof(float) * opt->tensors[k].n);
}

double
clip_grad_norm(AdamW *opt, double max_norm)
{
	double		sum = 0.0;
	double		norm;

	for (int k = 0; k < opt->n_tensors; k++)
		for (size_t i = 0; i < opt->tensors[k].n; i++)
			sum += (double) opt->tensors[k].g[i] * opt->tensors[k].g[i];
	norm = sqrt(sum);
	if (max_norm > 0.0 && norm > max_norm)
	{
		float		scale = (float) (max_norm / (norm + 1e-6));

		for (int k = 0; k < opt->n_tensors; k++)
			for (size_t i = 0; i < opt->tensors[k].n; i++)
				opt->tensors[k].g[i] *= scale;
	}
	return norm;
}

float
schedule_warmup_linear(long step, long warmup, long total)
{
	/* as transformers' get_linear_schedule_with_warmup, which DePT uses */
	if (step < warmup)
		return (float) step / (float) warmup;
	if (total <= warmup)
		return 1.0f;
	if (step >= total)
		return 0.0f;
	return (float) (total - step) / (float) (total - warmup);
}
