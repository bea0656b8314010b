/*
 * test_probe_fit.c: the probe's logistic regression (src/nn/train/probe_fit.h)
 * on synthetic vectors: three Gaussian classes in 24 dimensions, 300 rows.
 *
 *   gradient          probe_logreg_objective's gradient against central
 *                     finite differences of f, at a random point.
 *   optimum           the fit ends at a stationary point (every gradient
 *                     entry below 1e-4): f is convex, so it is the minimum;
 *                     a stronger lambda gives a smaller ||W||.
 *   warm_start        a fit started from the optimum stays there (a few
 *                     iterations at most, within 1e-5: f is summed from
 *                     float logits, so its last digits are noise).
 *   search            C is one of the grid, its cross-validated accuracy
 *                     the best (the smaller C on a tie), 5 x 6 + 1 fits,
 *                     the final theta the fit of every row at lambda =
 *                     1 / (C n), the same for the same seed.
 *   cancel            a between callback that refuses stops the search.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "ops/blas.h"
#include "train/probe_fit.h"
#include "unit.h"

#define N_ROWS 300
#define DIM 24
#define CLASSES 3
#define N_THETA (CLASSES * DIM + CLASSES)

static float features[N_ROWS * DIM];
static int	labels[N_ROWS];
static int	rows[N_ROWS];

static double
gaussian(Rng *r)
{
	double		u = (rng_next(r) >> 11) * 0x1.0p-53 + 1e-12,
				v = (rng_next(r) >> 11) * 0x1.0p-53;

	return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

/* Class c's mean is 0.6 on coordinates c, c + 3, ...; unit noise; overlapping classes. */
static void
make_data(void)
{
	Rng			r;

	rng_seed(&r, 11);
	for (int i = 0; i < N_ROWS; i++)
	{
		labels[i] = (int) (rng_next(&r) % CLASSES);
		rows[i] = i;
		for (int j = 0; j < DIM; j++)
			features[i * DIM + j] = (float) (gaussian(&r) + (j % CLASSES == labels[i] ? 0.6 : 0.0));
	}
}

static ProbeProblem
problem(void)
{
	ProbeProblem p = {features, labels, rows, N_ROWS, DIM, CLASSES};

	return p;
}

static void
test_gradient(void)
{
	ProbeProblem p = problem();
	double		theta[N_THETA],
				grad[N_THETA],
				worst = 0.0;
	Rng			r;
	NnError		err = {0};
	double		f;

	rng_seed(&r, 5);
	for (int i = 0; i < N_THETA; i++)
		theta[i] = 0.3 * gaussian(&r);
	CHECK(probe_logreg_objective(&p, 0.01, theta, &f, grad, &err) == NN_OK, "%s", err.msg);
	for (int i = 0; i < N_THETA; i++)
	{
		double		keep = theta[i],
					fp,
					fm,
					h = 1e-3;

		theta[i] = keep + h;
		probe_logreg_objective(&p, 0.01, theta, &fp, NULL, &err);
		theta[i] = keep - h;
		probe_logreg_objective(&p, 0.01, theta, &fm, NULL, &err);
		theta[i] = keep;
		worst = fmax(worst, fabs((fp - fm) / (2 * h) - grad[i]));
	}
	/* f is computed from float logits: differences of 1e-3 resolve about 1e-4 */
	CHECK(worst < 2e-4, "gradient differs from finite differences by %.2e", worst);
	printf("# gradient vs central differences: max |diff| %.2e\n", worst);
}

static double
weight_norm(const double *theta)
{
	double		s = 0.0;

	for (int i = 0; i < CLASSES * DIM; i++)
		s += theta[i] * theta[i];
	return sqrt(s);
}

static void
test_optimum(void)
{
	ProbeProblem p = problem();
	double		weak[N_THETA] = {0},
				strong[N_THETA] = {0},
				grad[N_THETA],
				f,
				g_max = 0.0;
	int			iters;
	NnError		err = {0};

	CHECK(probe_logreg_fit(&p, 1e-3, weak, 500, 1e-6, &iters, &f, &err) == NN_OK, "%s", err.msg);
	probe_logreg_objective(&p, 1e-3, weak, &f, grad, &err);
	for (int i = 0; i < N_THETA; i++)
		g_max = fmax(g_max, fabs(grad[i]));
	CHECK(g_max < 1e-4, "largest gradient entry at the solution %.2e", g_max);
	CHECK(iters > 1 && iters < 500, "%d iterations", iters);
	CHECK(probe_logreg_fit(&p, 1e-1, strong, 500, 1e-6, &iters, &f, &err) == NN_OK, "%s", err.msg);
	CHECK(weight_norm(strong) < weight_norm(weak), "||W|| %.3f at lambda 0.1, %.3f at 0.001",
		  weight_norm(strong), weight_norm(weak));
	printf("# optimum: max |grad| %.2e after %d iterations; ||W|| %.3f (lambda 1e-3), %.3f (1e-1)\n",
		   g_max, iters, weight_norm(weak), weight_norm(strong));
}

static void
test_warm_start(void)
{
	ProbeProblem p = problem();
	double		theta[N_THETA] = {0},
				again[N_THETA],
				f0,
				f1,
				moved = 0.0;
	int			iters;
	NnError		err = {0};

	probe_logreg_fit(&p, 1e-2, theta, 500, 1e-6, &iters, &f0, &err);
	memcpy(again, theta, sizeof(theta));
	CHECK(probe_logreg_fit(&p, 1e-2, again, 500, 1e-6, &iters, &f1, &err) == NN_OK, "%s", err.msg);
	for (int i = 0; i < N_THETA; i++)
		moved = fmax(moved, fabs(again[i] - theta[i]));
	CHECK(iters <= 5 && moved < 1e-5 && f1 <= f0 + 1e-12,
		  "from the optimum: %d iterations, moved %.2e, f %.9f -> %.9f", iters, moved, f0, f1);
}

static void
test_search(void)
{
	ProbeProblem p = problem();
	double		theta[N_THETA],
				twice[N_THETA],
				direct[N_THETA] = {0},
				f,
				gap = 0.0;
	ProbeSearch s,
				s2;
	bool		cancelled;
	int			iters,
				best = 0;
	NnError		err = {0};

	CHECK(probe_search_fit(&p, 3, theta, &s, NULL, NULL, &cancelled, &err) == NN_OK, "%s", err.msg);
	CHECK(!cancelled && s.fits == PROBE_FOLDS * PROBE_C_GRID_SIZE + 1, "%d fits", s.fits);
	for (int c = 0; c < PROBE_C_GRID_SIZE; c++)
	{
		CHECK(s.cv_accuracy[c] > 1.0 / CLASSES && s.cv_accuracy[c] <= 1.0, "C %g: accuracy %.3f",
			  probe_c_grid[c], s.cv_accuracy[c]);
		if (s.cv_accuracy[c] > s.cv_accuracy[best])
			best = c;
	}
	CHECK(s.c_reg == probe_c_grid[best] && fabs(s.lambda - 1.0 / (s.c_reg * N_ROWS)) < 1e-15,
		  "C %g, lambda %g (best C %g)", s.c_reg, s.lambda, probe_c_grid[best]);
	probe_logreg_fit(&p, s.lambda, direct, 500, 1e-5, &iters, &f, &err);
	for (int i = 0; i < N_THETA; i++)
		gap = fmax(gap, fabs(direct[i] - theta[i]));
	CHECK(gap < 1e-9, "the final theta differs from the fit at the chosen lambda by %.2e", gap);
	probe_search_fit(&p, 3, twice, &s2, NULL, NULL, &cancelled, &err);
	CHECK(memcmp(theta, twice, sizeof(theta)) == 0 && s2.c_reg == s.c_reg, "the same seed, the same fit");
	printf("# search: C %g; cross-validated accuracy", s.c_reg);
	for (int c = 0; c < PROBE_C_GRID_SIZE; c++)
		printf(" %.3f", s.cv_accuracy[c]);
	printf("; %ld iterations in %d fits\n", s.iterations, s.fits);
}

static bool
refuse_after_two(void *arg, int done, int due)
{
	(void) arg;
	(void) due;
	return done < 2;
}

static void
test_cancel(void)
{
	ProbeProblem p = problem();
	double		theta[N_THETA];
	ProbeSearch s;
	bool		cancelled;
	NnError		err = {0};

	CHECK(probe_search_fit(&p, 3, theta, &s, refuse_after_two, NULL, &cancelled, &err) == NN_OK,
		  "%s", err.msg);
	CHECK(cancelled && s.fits == 2, "cancelled %d after %d fits", cancelled, s.fits);
}

int
main(void)
{
	nn_blas_setup(1);
	make_data();
	RUN_TEST(test_gradient);
	RUN_TEST(test_optimum);
	RUN_TEST(test_warm_start);
	RUN_TEST(test_search);
	RUN_TEST(test_cancel);
	return unit_finish();
}
