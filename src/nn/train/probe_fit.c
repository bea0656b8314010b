/*
 * probe_fit.c: the linear probe as L2-regularised logistic regression,
 * solved by L-BFGS, its strength chosen by cross-validation (probe_fit.h;
 * docs/design.md 1, "The probe and auto").
 */
#include "train/probe_fit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "ops/blas.h"

const double probe_c_grid[PROBE_C_GRID_SIZE] = {0.01, 0.1, 1.0, 10.0, 100.0, 1000.0};

#define LBFGS_MEMORY 10
#define SEARCH_MAX_ITER 200
#define FINAL_MAX_ITER 500
#define GRAD_TOL 1e-5

/* A problem's rows gathered contiguously, with the buffers one evaluation needs. */
typedef struct Gathered
{
	float	   *x;				/* (n, d) */
	int		   *y;				/* (n) */
	float	   *w;				/* (C, d): theta's weights in float */
	float	   *logits;			/* (n, C), then the loss's gradient by logit */
	float	   *gw;				/* (C, d) */
	int			n,
				d,
				classes;
} Gathered;

static void
gathered_free(Gathered *g)
{
	free(g->x);
	free(g->y);
	free(g->w);
	free(g->logits);
	free(g->gw);
	memset(g, 0, sizeof(*g));
}

static NnStatus
gather(const ProbeProblem *p, Gathered *g, NnError *err)
{
	size_t		d = p->d;

	memset(g, 0, sizeof(*g));
	g->n = p->n;
	g->d = p->d;
	g->classes = p->classes;
	g->x = malloc(sizeof(float) * (size_t) (p->n > 0 ? p->n : 1) * d);
	g->y = malloc(sizeof(int) * (size_t) (p->n > 0 ? p->n : 1));
	g->w = malloc(sizeof(float) * (size_t) p->classes * d);
	g->logits = malloc(sizeof(float) * (size_t) (p->n > 0 ? p->n : 1) * p->classes);
	g->gw = malloc(sizeof(float) * (size_t) p->classes * d);
	if (!g->x || !g->y || !g->w || !g->logits || !g->gw)
	{
		gathered_free(g);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory for the probe's vectors");
	}
	for (int i = 0; i < p->n; i++)
	{
		memcpy(g->x + (size_t) i * d, p->features + (size_t) p->rows[i] * d, sizeof(float) * d);
		g->y[i] = p->labels[p->rows[i]];
	}
	return NN_OK;
}

/* logits = X W^T + b for theta's W and b. */
static void
compute_logits(Gathered *g, const double *theta)
{
	size_t		nw = (size_t) g->classes * g->d;
	const double *b = theta + nw;

	for (size_t i = 0; i < nw; i++)
		g->w[i] = (float) theta[i];
	nn_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->n, g->classes, g->d, 1.0f, g->x, g->d,
			 g->w, g->d, 0.0f, g->logits, g->classes);
	for (int i = 0; i < g->n; i++)
		for (int c = 0; c < g->classes; c++)
			g->logits[(size_t) i * g->classes + c] += (float) b[c];
}

/*
 * f(theta) of probe_fit.h and, when grad, its gradient: the mean cross-entropy's
 * by logit is (softmax - onehot) / n, by W its product with X plus lambda W,
 * by b its sum over rows.
 */
static double
evaluate(Gathered *g, double lambda, const double *theta, double *grad)
{
	int			C = g->classes;
	size_t		nw = (size_t) C * g->d;
	double		loss = 0.0,
				penalty = 0.0;

	compute_logits(g, theta);
	if (grad)
		memset(grad + nw, 0, sizeof(double) * C);
	for (int i = 0; i < g->n; i++)
	{
		float	   *z = g->logits + (size_t) i * C;
		double		top = z[0],
					sum = 0.0;

		for (int c = 1; c < C; c++)
			top = z[c] > top ? z[c] : top;
		for (int c = 0; c < C; c++)
			sum += exp(z[c] - top);
		loss += log(sum) + top - z[g->y[i]];
		for (int c = 0; grad && c < C; c++)
		{
			double		dz = (exp(z[c] - top) / sum - (c == g->y[i])) / g->n;

			z[c] = (float) dz;
			grad[nw + c] += dz;
		}
	}
	for (size_t i = 0; i < nw; i++)
		penalty += theta[i] * theta[i];
	if (grad)
	{
		nn_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, g->d, g->n, 1.0f, g->logits, C,
				 g->x, g->d, 0.0f, g->gw, g->d);
		for (size_t i = 0; i < nw; i++)
			grad[i] = g->gw[i] + lambda * theta[i];
	}
	return (g->n > 0 ? loss / g->n : 0.0) + 0.5 * lambda * penalty;
}

static double
dot(const double *a, const double *b, size_t n)
{
	double		s = 0.0;

	for (size_t i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
}

static double
max_abs(const double *a, size_t n)
{
	double		m = 0.0;

	for (size_t i = 0; i < n; i++)
		m = fabs(a[i]) > m ? fabs(a[i]) : m;
	return m;
}

/* L-BFGS's memory: the last pairs s = step, y = change of gradient. */
typedef struct Lbfgs
{
	double	   *s[LBFGS_MEMORY];
	double	   *y[LBFGS_MEMORY];
	double		rho[LBFGS_MEMORY];
	int			count;			/* pairs held */
	int			next;			/* where the next pair goes */
	size_t		n;
} Lbfgs;

/*
 * direction = -H grad by the two-loop recursion (Nocedal and Wright,
 * Algorithm 7.4), H0 = (s'y / y'y) I of the newest pair; with no pair, the
 * gradient scaled to unit length.
 */
static void
lbfgs_direction(const Lbfgs *m, const double *grad, double *dir, double *alpha)
{
	size_t		n = m->n;
	double		scale;

	for (size_t i = 0; i < n; i++)
		dir[i] = -grad[i];
	if (m->count == 0)
	{
		double		norm = sqrt(dot(grad, grad, n));

		for (size_t i = 0; i < n; i++)
			dir[i] /= norm > 1.0 ? norm : 1.0;
		return;
	}
	for (int k = 0; k < m->count; k++)
	{
		int			j = (m->next - 1 - k + LBFGS_MEMORY) % LBFGS_MEMORY;

		alpha[j] = m->rho[j] * dot(m->s[j], dir, n);
		for (size_t i = 0; i < n; i++)
			dir[i] -= alpha[j] * m->y[j][i];
	}
	{
		int			newest = (m->next - 1 + LBFGS_MEMORY) % LBFGS_MEMORY;

		scale = dot(m->s[newest], m->y[newest], n) / dot(m->y[newest], m->y[newest], n);
	}
	for (size_t i = 0; i < n; i++)
		dir[i] *= scale;
	for (int k = m->count - 1; k >= 0; k--)
	{
		int			j = (m->next - 1 - k + LBFGS_MEMORY) % LBFGS_MEMORY;
		double		beta = m->rho[j] * dot(m->y[j], dir, n);

		for (size_t i = 0; i < n; i++)
			dir[i] += (alpha[j] - beta) * m->s[j][i];
	}
}

/* Keep the pair (s, y) when its curvature s'y is positive. */
static void
lbfgs_remember(Lbfgs *m, const double *s, const double *y)
{
	double		sy = dot(s, y, m->n);

	if (sy <= 1e-12)
		return;
	memcpy(m->s[m->next], s, sizeof(double) * m->n);
	memcpy(m->y[m->next], y, sizeof(double) * m->n);
	m->rho[m->next] = 1.0 / sy;
	m->next = (m->next + 1) % LBFGS_MEMORY;
	if (m->count < LBFGS_MEMORY)
		m->count++;
}

static void
lbfgs_free(Lbfgs *m, double *work)
{
	for (int k = 0; k < LBFGS_MEMORY; k++)
	{
		free(m->s[k]);
		free(m->y[k]);
	}
	free(work);
}

/* Armijo backtracking from step 1 along dir; false when no step decreases f. */
static bool
line_search(Gathered *g, double lambda, double *theta, const double *dir, double slope,
			double *f, double *grad, double *trial, size_t n)
{
	double		step = 1.0;

	for (int halvings = 0; halvings < 40; halvings++, step *= 0.5)
	{
		double		ft;

		for (size_t i = 0; i < n; i++)
			trial[i] = theta[i] + step * dir[i];
		ft = evaluate(g, lambda, trial, grad);
		if (ft <= *f + 1e-4 * step * slope)
		{
			memcpy(theta, trial, sizeof(double) * n);
			*f = ft;
			return true;
		}
	}
	return false;
}

static NnStatus
lbfgs_minimise(Gathered *g, double lambda, double *theta, int max_iter, double tol, int *iters,
			   double *objective, NnError *err)
{
	size_t		n = (size_t) g->classes * g->d + g->classes;
	Lbfgs		m = {.n = n};
	double	   *work = malloc(sizeof(double) * n * 6);
	double	   *grad = work, *dir = work + n, *trial = work + 2 * n, *gnew = work + 3 * n,
			   *s = work + 4 * n, *alpha = work + 5 * n;
	double		f;
	int			it = 0;

	for (int k = 0; k < LBFGS_MEMORY && work; k++)
		if ((m.s[k] = malloc(sizeof(double) * n)) == NULL || (m.y[k] = malloc(sizeof(double) * n)) == NULL)
			break;
	if (!work || !m.y[LBFGS_MEMORY - 1])
	{
		lbfgs_free(&m, work);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory for the probe's solver");
	}
	f = evaluate(g, lambda, theta, grad);
	for (; it < max_iter && max_abs(grad, n) > tol; it++)
	{
		double		slope,
					f_before = f;

		lbfgs_direction(&m, grad, dir, alpha);
		if ((slope = dot(dir, grad, n)) >= 0.0)
		{
			m.count = 0;		/* not a descent direction: restart from the gradient */
			lbfgs_direction(&m, grad, dir, alpha);
			slope = dot(dir, grad, n);
		}
		memcpy(s, theta, sizeof(double) * n);
		if (!line_search(g, lambda, theta, dir, slope, &f, gnew, trial, n))
			break;
		for (size_t i = 0; i < n; i++)
		{
			s[i] = theta[i] - s[i];
			grad[i] = gnew[i] - grad[i];	/* y, then the new gradient below */
		}
		lbfgs_remember(&m, s, grad);
		memcpy(grad, gnew, sizeof(double) * n);
		if (f_before - f <= 1e-12 * (fabs(f) > 1.0 ? fabs(f) : 1.0))
		{
			it++;
			break;
		}
	}
	*iters = it;
	*objective = f;
	lbfgs_free(&m, work);
	return NN_OK;
}

NnStatus
probe_logreg_fit(const ProbeProblem *p, double lambda, double *theta, int max_iter, double tol,
				 int *iters, double *objective, NnError *err)
{
	Gathered	g;
	NnStatus	st;

	if ((st = gather(p, &g, err)) != NN_OK)
		return st;
	st = lbfgs_minimise(&g, lambda, theta, max_iter, tol, iters, objective, err);
	gathered_free(&g);
	return st;
}

NnStatus
probe_logreg_objective(const ProbeProblem *p, double lambda, const double *theta, double *f,
					   double *grad, NnError *err)
{
	Gathered	g;
	NnStatus	st;

	if ((st = gather(p, &g, err)) != NN_OK)
		return st;
	*f = evaluate(&g, lambda, theta, grad);
	gathered_free(&g);
	return NN_OK;
}

/* Rows of g whose argmax of theta's logits is their label. */
static int
count_correct(Gathered *g, const double *theta)
{
	int			correct = 0;

	compute_logits(g, theta);
	for (int i = 0; i < g->n; i++)
	{
		const float *z = g->logits + (size_t) i * g->classes;
		int			top = 0;

		for (int c = 1; c < g->classes; c++)
			top = z[c] > z[top] ? c : top;
		correct += top == g->y[i];
	}
	return correct;
}

/*
 * fold[i] for p's rows: shuffled from seed, then dealt round-robin class by
 * class, so every fold holds about 1/k of each class.
 */
static void
assign_folds(const ProbeProblem *p, uint64_t seed, int *order, int *fold)
{
	Rng			rng;
	int			dealt = 0;

	rng_seed(&rng, seed ^ 0xf01dULL);
	for (int i = 0; i < p->n; i++)
		order[i] = i;
	for (int i = p->n - 1; i > 0; i--)
	{
		int			j = (int) (rng_next(&rng) % (uint64_t) (i + 1)),
					t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	for (int c = 0; c < p->classes; c++)
		for (int i = 0; i < p->n; i++)
			if (p->labels[p->rows[order[i]]] == c)
				fold[order[i]] = dealt++ % PROBE_FOLDS;
}

typedef struct SearchRun
{
	const ProbeProblem *p;
	bool		(*between) (void *arg, int done, int due);
	void	   *arg;
	ProbeSearch *out;
	int			due;
	bool		cancelled;
} SearchRun;

static bool
fit_done(SearchRun *sr, int iters)
{
	sr->out->fits++;
	sr->out->iterations += iters;
	if (sr->between && !sr->between(sr->arg, sr->out->fits, sr->due))
		sr->cancelled = true;
	return !sr->cancelled;
}

/* One fold's path of C ascending over its gathered rows, warm-started; correct rows added. */
static NnStatus
search_path(SearchRun *sr, Gathered *train, Gathered *held, double *theta, long *correct,
			NnError *err)
{
	const ProbeProblem *p = sr->p;
	NnStatus	st;

	memset(theta, 0, sizeof(double) * ((size_t) p->classes * p->d + p->classes));
	for (int c = 0; c < PROBE_C_GRID_SIZE; c++)
	{
		int			iters = 0;
		double		f;

		if ((st = lbfgs_minimise(train, 1.0 / (probe_c_grid[c] * train->n), theta,
								 SEARCH_MAX_ITER, GRAD_TOL, &iters, &f, err)) != NN_OK)
			return st;
		correct[c] += count_correct(held, theta);
		if (!fit_done(sr, iters))
			break;
	}
	return NN_OK;
}

/* Fold k: its training and held-out rows gathered once for the whole path of C. */
static NnStatus
search_fold(SearchRun *sr, const int *fold, int k, int *train_rows, int *held_rows, double *theta,
			long *correct, NnError *err)
{
	const ProbeProblem *p = sr->p;
	ProbeProblem tr = *p,
				ho = *p;
	Gathered	gt,
				gh;
	NnStatus	st;

	tr.rows = train_rows;
	ho.rows = held_rows;
	tr.n = ho.n = 0;
	for (int i = 0; i < p->n; i++)
		*(fold[i] == k ? &held_rows[ho.n++] : &train_rows[tr.n++]) = p->rows[i];
	if ((st = gather(&tr, &gt, err)) != NN_OK)
		return st;
	if ((st = gather(&ho, &gh, err)) != NN_OK)
	{
		gathered_free(&gt);
		return st;
	}
	st = search_path(sr, &gt, &gh, theta, correct, err);
	gathered_free(&gt);
	gathered_free(&gh);
	return st;
}

/* Held-out accuracy of every C over the folds into out->cv_accuracy. */
static NnStatus
cross_validate(SearchRun *sr, uint64_t seed, double *theta, NnError *err)
{
	const ProbeProblem *p = sr->p;
	int		   *buf = malloc(sizeof(int) * (size_t) p->n * 4);
	long		correct[PROBE_C_GRID_SIZE] = {0};
	NnStatus	st = NN_OK;

	if (buf == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory for the probe's folds");
	assign_folds(p, seed, buf, buf + p->n);
	for (int k = 0; k < PROBE_FOLDS && st == NN_OK && !sr->cancelled; k++)
		st = search_fold(sr, buf + p->n, k, buf + 2 * p->n, buf + 3 * p->n, theta, correct, err);
	for (int c = 0; c < PROBE_C_GRID_SIZE; c++)
		sr->out->cv_accuracy[c] = (double) correct[c] / p->n;
	free(buf);
	return st;
}

NnStatus
probe_search_fit(const ProbeProblem *p, uint64_t seed, double *theta, ProbeSearch *out,
				 bool (*between) (void *arg, int done, int due), void *arg, bool *cancelled,
				 NnError *err)
{
	SearchRun	sr = {.p = p, .between = between, .arg = arg, .out = out};
	int			best = 2;		/* C = 1, scikit-learn's default, when too few rows to fold */
	int			iters;
	double		f;
	NnStatus	st;

	memset(out, 0, sizeof(*out));
	*cancelled = false;
	if (p->n >= 2 * PROBE_FOLDS)
	{
		sr.due = PROBE_FOLDS * PROBE_C_GRID_SIZE + 1;
		if ((st = cross_validate(&sr, seed, theta, err)) != NN_OK)
			return st;
		if ((*cancelled = sr.cancelled))
			return NN_OK;
		best = 0;
		for (int c = 1; c < PROBE_C_GRID_SIZE; c++)
			if (out->cv_accuracy[c] > out->cv_accuracy[best])
				best = c;
	}
	else
		sr.due = 1;
	out->c_reg = probe_c_grid[best];
	out->lambda = 1.0 / (out->c_reg * p->n);
	memset(theta, 0, sizeof(double) * ((size_t) p->classes * p->d + p->classes));
	if ((st = probe_logreg_fit(p, out->lambda, theta, FINAL_MAX_ITER, GRAD_TOL, &iters, &f, err)) != NN_OK)
		return st;
	fit_done(&sr, iters);
	*cancelled = sr.cancelled;
	return NN_OK;
}
