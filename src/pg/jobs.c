/*
 * jobs.c: dept_wait and dept_cancel, for training and scoring jobs alike
 * (dept.jobs; docs/dba.md, "Jobs").
 */
#include "postgres.h"


#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "dept.h"
#include "dept_catalog.h"
#include "dept_train.h"


PG_FUNCTION_INFO_V1(dept_wait);
PG_FUNCTION_INFO_V1(dept_cancel);

/* ---------------------------------------------------------------------------
 * dept_wait, dept_cancel
 * ---------------------------------------------------------------------------
 */

/* status, owner and worker pid of a job visible to the caller; false if none. */
static bool
DeptLookupJob(int64 job_id, char **status, Oid *owner, int *worker_pid)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job_id)};
	bool		isnull;
	Datum		pid;

	DeptSpiExec("SELECT status, owner::pg_catalog.oid, worker_pid FROM dept.jobs "
				"WHERE id OPERATOR(pg_catalog.=) $1", 1, types,
				values, NULL, false, 1);
	if (SPI_processed == 0)
		return false;
	*status = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
												&isnull));
	*owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2,
											&isnull));
	pid = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
	*worker_pid = isnull ? 0 : DatumGetInt32(pid);
	return true;
}

static bool
DeptJobIsOver(const char *status)
{
	return strcmp(status, "queued") != 0 && strcmp(status, "running") != 0;
}

static void
DeptNoSuchJob(int64 job_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("training job " INT64_FORMAT " does not exist", job_id)));
}

Datum
dept_wait(PG_FUNCTION_ARGS)
{
	int			spi_level;
	int64		job_id = PG_GETARG_INT64(0);
	char	   *status = NULL;
	Oid			owner;
	int			worker_pid;
	MemoryContext caller = CurrentMemoryContext;

	for (;;)
	{
		spi_level = DeptSpiConnect();
		DeptReapJobs();
		if (!DeptLookupJob(job_id, &status, &owner, &worker_pid))
			DeptNoSuchJob(job_id);
		if (DeptJobIsOver(status))
		{
			char	   *result = MemoryContextStrdup(caller, status);

			DeptSpiFinish(spi_level);
			PG_RETURN_TEXT_P(cstring_to_text(result));
		}
		DeptSpiFinish(spi_level);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 100,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Ask a job to stop with a query-cancel signal to its worker, which acts at
 * its next step whatever the caller's transaction does (a flag in
 * dept.jobs would hold the job's row lock until the caller commits, and
 * the worker could not record its end).  The worker then records the job
 * as cancelled and stores nothing.
 */
Datum
dept_cancel(PG_FUNCTION_ARGS)
{
	int			spi_level;
	int64		job_id = PG_GETARG_INT64(0);
	char	   *status;
	Oid			owner;
	int			worker_pid;
	bool		requested = false;

	spi_level = DeptSpiConnect();
	DeptReapJobs();
	if (!DeptLookupJob(job_id, &status, &owner, &worker_pid))
		DeptNoSuchJob(job_id);
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("training job " INT64_FORMAT " belongs to another role", job_id)));
	if (!DeptJobIsOver(status) && worker_pid > 0)
	{
		Oid			types[1] = {INT4OID};
		Datum		values[1] = {Int32GetDatum(worker_pid)};
		bool		isnull;

		/* as the caller: pg_cancel_backend checks that it may signal the worker's role */
		DeptSpiExec("SELECT COALESCE(pg_catalog.bool_or(pg_catalog.pg_cancel_backend(a.pid)), false) "
					"FROM pg_catalog.pg_stat_activity a WHERE a.pid OPERATOR(pg_catalog.=) $1 "
					"AND a.backend_type OPERATOR(pg_catalog.=) ANY (" DEPT_WORKER_TYPES ")",
					1, types, values, NULL, false, 1);
		requested = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
											   &isnull));
	}
	DeptSpiFinish(spi_level);
	PG_RETURN_BOOL(requested);
}
