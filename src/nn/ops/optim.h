/*
 * optim.h: AdamW over parameter groups, the learning-rate schedule and
 * global gradient-norm clipping.
 *
 * DePT trains its prompt and its low-rank pair with different learning
 * rates (docs/design.md 1), so every trainable tensor belongs to a group with
 * its own lr and weight decay.  Each tensor owns its moment buffers; the
 * optimizer only holds pointers, so adapters keep their memory layout.
 * AdamW (Loshchilov & Hutter): m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * w -= lr_t * (m_hat / (sqrt(v_hat) + eps) + wd * w), with bias-corrected
 * m_hat, v_hat and decoupled weight decay, as torch.optim.AdamW.
 */
#ifndef DEPT_NN_OPTIM_H
#define DEPT_NN_OPTIM_H

#include <stddef.h>

#define OPTIM_MAX_TENSORS 32

typedef struct OptimTensor
{
	float	   *w;				/* (n) parameters */
	float	   *g;				/* (n) gradient, accumulated by backward */
	float	   *m;				/* (n) first moment */
	float	   *v;				/* (n) second moment */
	size_t		n;
	int			group;			/* index into AdamW.lr / weight_decay */
} OptimTensor;

typedef struct AdamW
{
	float		beta1;
	float		beta2;
	float		eps;
	long		step;			/* number of updates done */
	int			n_groups;
	float		lr[8];			/* peak learning rate per group */
	float		weight_decay[8];
	int			n_tensors;
	OptimTensor tensors[OPTIM_MAX_TENSORS];
} AdamW;

/* Defaults of torch.optim.AdamW: betas (0.9, 0.999), eps 1e-8. */
void		adamw_init(AdamW *opt);

/* Register a tensor (w, g, m, v of n floats) in group; returns -1 if full. */
int			adamw_add(AdamW *opt, float *w, float *g, float *m, float *v, size_t n, int group);

/* One update with every group's lr multiplied by lr_scale (the schedule). */
void		adamw_step(AdamW *opt, float lr_scale);

/* Zero every registered gradient. */
void		adamw_zero_grad(AdamW *opt);

/* Scale gradients so their global L2 norm is at most max_norm; returns the norm before. */
double		clip_grad_norm(AdamW *opt, double max_norm);

/* Linear warm-up from 0 over warmup steps to 1, then linear decay to 0 at total. */
float		schedule_warmup_linear(long step, long warmup, long total);

#endif							/* DEPT_NN_OPTIM_H */
