/*
 * dept.c: module entry point and GUCs.
 *
 * _PG_init only defines GUCs: no BLAS call, no model load, no thread
 * creation, because the postmaster forks backends after it (STYLE.md).
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "dept.h"

PG_MODULE_MAGIC;

char	   *dept_model_path = NULL;
int			dept_threads = 1;

void		_PG_init(void);

void
_PG_init(void)
{
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

	DefineCustomIntVariable("dept.threads",
							"Number of OpenBLAS threads each backend uses.",
							NULL,
							&dept_threads,
							1, 1, 64,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("dept");
}
