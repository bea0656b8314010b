/*
 * dept.c: module entry point and GUCs.
 *
 * _PG_init only defines GUCs: no BLAS call, no model load, no thread
 * creation, because the postmaster forks backends after it (STYLE.md).
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "utils/guc.h"

#include "dept.h"

PG_MODULE_MAGIC;

char	   *dept_model_path = NULL;
int			dept_threads = 1;
bool		dept_packed_weights = true;
int			dept_max_training_memory = 2 * 1024 * 1024;	/* kB: 2 GB */
int			dept_matmul_precision = DEPT_PRECISION_FLOAT32;
int			dept_on_drop_extension = DEPT_ON_DROP_WARNING;

static const struct config_enum_entry precision_options[] = {
	{"float32", DEPT_PRECISION_FLOAT32, false},
	{"bfloat16", DEPT_PRECISION_BFLOAT16, false},
	{NULL, 0, false}
};

static const struct config_enum_entry on_drop_options[] = {
	{"warning", DEPT_ON_DROP_WARNING, false},
	{"error", DEPT_ON_DROP_ERROR, false},
	{NULL, 0, false}
};

void		_PG_init(void);

void
_PG_init(void)
{
	DeptFirstCallStart();

	/*
	 * Superuser-only: a model directory is a server file path, and reading
	 * arbitrary server files is a privilege.
	 */
	DefineCustomStringVariable("dept.model_path",
							   "Directory of the default backbone model.",
							   "Empty means the use-lite model installed under the share directory.",
							   &dept_model_path,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomEnumVariable("dept.matmul_precision",
							 "Precision of the model's matrix products in dept_embed and dept_predict.",
							 "bfloat16 runs them on Intel AMX or AVX512-BF16 where the CPU has either, float32 elsewhere; "
							 "training always uses float32.",
							 &dept_matmul_precision,
							 DEPT_PRECISION_FLOAT32,
							 precision_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("dept.packed_weights",
							 "Packs a model's float32 weights once for dept_embed and dept_predict.",
							 "The packed copy (4 bytes a weight of the linear layers) is written once "
							 "beside the model's copy in the data directory and mapped by every backend; "
							 "off reads the weights where they lie.",
							 &dept_packed_weights,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("dept.threads",
							"Number of OpenBLAS threads each backend uses.",
							NULL,
							&dept_threads,
							1, 1, 64,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	/*
	 * Superuser-only: dept_train is granted to ordinary roles, and this
	 * budget is what keeps their runs from exhausting the server's memory.
	 * A superuser may raise it for one role (ALTER ROLE ... SET).  2 GB
	 * admits use-lite's defaults (about 0.3 GB) up to batch 128, and
	 * refuses the 3 GB run the hostile tests found (batch 256 x 256
	 * positions).
	 */
	DefineCustomIntVariable("dept.max_training_memory",
							"Largest estimated memory a training run may use.",
							"Checked by dept_train before the worker starts and by the worker "
							"once the rows are read; -1 means no limit.",
							&dept_max_training_memory,
							2 * 1024 * 1024, -1, MAX_KILOBYTES,
							PGC_SUSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	/* Superuser-only: it guards every role's adapters (ownership.c). */
	DefineCustomEnumVariable("dept.on_drop_extension",
							 "What DROP EXTENSION dept does when adapters are stored.",
							 "warning: drop them with a WARNING giving their number; "
							 "error: refuse the drop.",
							 &dept_on_drop_extension,
							 DEPT_ON_DROP_WARNING,
							 on_drop_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	MarkGUCPrefixReserved("dept");
	DeptFirstCallEnter(DEPT_FC_OTHER);
}
