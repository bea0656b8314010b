/*
 * blas_setup.c: OpenBLAS's thread count, and the kernel set the CPU's
 * features call for when OpenBLAS's model table does not know the CPU
 * (design in blas_setup.h).
 */
#include "blas_setup.h"

#include "gemm_rows.h"

#include <cblas.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

const char *
nn_blas_preferred_core(void)
{
	const char *wanted;

	if (getenv("OPENBLAS_CORETYPE") != NULL)
		return NULL;
	wanted = core_for_features();
	if (wanted == NULL || core_is_enough(openblas_get_corename(), wanted))
		return NULL;
	return wanted;
}

void
nn_blas_reexec_with_core(char **argv)
{
	const char *wanted = nn_blas_preferred_core();

	if (wanted == NULL)
		return;
	/* OpenBLAS reads OPENBLAS_CORETYPE when it loads: start again with it set */
	setenv("OPENBLAS_CORETYPE", wanted, 1);
	execv("/proc/self/exe", argv);
	unsetenv("OPENBLAS_CORETYPE");	/* exec failed: run with what OpenBLAS chose */
}

const char *
nn_blas_setup(int threads)
{
	openblas_set_num_threads(threads > 0 ? threads : 1);
	gemm_rows_set_threads(threads);
	return openblas_get_corename();
}
