/*
 * unit.h: a minimal TAP producer for the src/nn unit tests.
 *
 * Each test is a function run by RUN_TEST; CHECK records a failed
 * expectation (printing where and why) and the test continues, so one run
 * shows every mismatch.  unit_finish() prints the TAP plan and returns the
 * process exit code.  Paths to models and fixtures come from the
 * environment (DEPT_MODEL_DIR, DEPT_HF_FIXTURES) with defaults inside the
 * checkout, relative to its top directory (where make runs the tests).
 */
#ifndef DEPT_TEST_UNIT_H
#define DEPT_TEST_UNIT_H

#include <stdio.h>
#include <stdlib.h>

#include "base/rng.h"

static int	unit_tests_run;
static int	unit_tests_failed;
static int	unit_current_failures;

#define CHECK(cond, ...) \
	do { \
		if (!(cond)) { \
			unit_current_failures++; \
			if (unit_current_failures <= 20) { \
				printf("#   %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
				printf(__VA_ARGS__); \
				printf("\n"); \
			} \
		} \
	} while (0)

#define RUN_TEST(fn) \
	do { \
		unit_current_failures = 0; \
		fn(); \
		unit_tests_run++; \
		if (unit_current_failures) { \
			unit_tests_failed++; \
			printf("not ok %d - %s (%d failed checks)\n", unit_tests_run, #fn, \
				   unit_current_failures); \
		} else \
			printf("ok %d - %s\n", unit_tests_run, #fn); \
		fflush(stdout); \
	} while (0)

static inline int
unit_finish(void)
{
	printf("1..%d\n", unit_tests_run);
	return unit_tests_failed ? 1 : 0;
}

static inline const char *
unit_env(const char *name, const char *fallback)
{
	const char *v = getenv(name);

	return (v && *v) ? v : fallback;
}

/* n floats uniform in [-1, 1), freshly allocated (the caller frees). */
static inline float *
unit_random_floats(Rng *rng, size_t n)
{
	float	   *x = malloc(sizeof(float) * n);

	for (size_t i = 0; i < n; i++)
		x[i] = (float) (rng_uniform(rng) * 2.0 - 1.0);
	return x;
}

#define UNIT_MODEL_DIR() unit_env("DEPT_MODEL_DIR", "build/model/use-lite")
/* the tiny Hugging Face models of test/fixtures/hf (test/fixtures/hf/README.md) */
#define UNIT_HF_DIR() unit_env("DEPT_HF_FIXTURES", "test/fixtures/hf")

#endif							/* DEPT_TEST_UNIT_H */
