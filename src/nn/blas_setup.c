/*
 * blas_setup.c: choosing OpenBLAS's kernel set by CPU features when its
 * model table does not know the CPU (design in blas_setup.h).
 */
#include "blas_setup.h"

#include "gemm_rows.h"

#include <cblas.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* OpenBLAS DYNAMIC_ARCH internals: weak, so their absence is harmless. */
extern void gotoblas_dynamic_init(void) __attribute__((weak));
extern void gotoblas_dynamic_quit(void) __attribute__((weak));

static bool corrected;

/* The best kernel set for this CPU's features, or NULL for none better than SSE. */
static const char *
core_for_features(void)
{
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
		__builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
		return __builtin_cpu_supports("avx512bf16") ? "Cooperlake" : "SkylakeX";
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return "Haswell";
	return NULL;
}

/* True when OpenBLAS already runs kernels at least as wide as wanted's. */
static bool
core_is_enough(const char *current, const char *wanted)
{
	static const char *const avx512[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};

	if (strcmp(current, wanted) == 0)
		return true;
	for (size_t i = 0; i < sizeof(avx512) / sizeof(avx512[0]); i++)
		if (strcmp(current, avx512[i]) == 0)
			return strcmp(wanted, "Cooperlake") != 0 || i > 0;
	return strcmp(wanted, "Haswell") == 0 && strcmp(current, "Zen") == 0;
}

static void
correct_core(void)
{
	const char *wanted;

	corrected = true;
	if (getenv("OPENBLAS_CORETYPE") != NULL || gotoblas_dynamic_init == NULL ||
		gotoblas_dynamic_quit == NULL)
		return;
	wanted = core_for_features();
	if (wanted == NULL || core_is_enough(openblas_get_corename(), wanted))
		return;
	/* gotoblas_dynamic_init reads OPENBLAS_CORETYPE; leave the environment as found */
	setenv("OPENBLAS_CORETYPE", wanted, 1);
	gotoblas_dynamic_quit();
	gotoblas_dynamic_init();
	unsetenv("OPENBLAS_CORETYPE");
}

const char *
nn_blas_setup(int threads)
{
	if (!corrected)
		correct_core();
	openblas_set_num_threads(threads > 0 ? threads : 1);
	gemm_rows_set_threads(threads);
	return openblas_get_corename();
}

const char *
nn_blas_core(void)
{
	return openblas_get_corename();
}
