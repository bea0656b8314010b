/*
 * catalog.c: reading and writing dept.adapters and dept.jobs.
 *
 * The catalog tables are written only by the extension: user roles get
 * SELECT under row security, never INSERT/UPDATE.  Writes therefore run
 * with the identity of the dept schema's owner (the role that created the
 * extension), the way a SECURITY DEFINER function would, after the caller's
 * right to do that particular thing has been checked.  Reads that serve a
 * user (dept_predict) run as that user, so row security applies.
 * Every statement takes its values as SPI parameters, never spliced text.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "dept_catalog.h"

/* Owner of schema dept: the identity catalog writes run under. */
static Oid
DeptCatalogOwner(void)
{
	Oid			nspid = get_namespace_oid("dept", false);
	HeapTuple	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nspid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for schema dept");
	owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);
	return owner;
}

void
DeptBecomeCatalogOwner(DeptSavedUser *saved)
{
	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	SetUserIdAndSecContext(DeptCatalogOwner(),
						   saved->sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

void
DeptRestoreUser(const DeptSavedUser *saved)
{
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
}

/* Run a statement with parameters inside an open SPI connection; errors on failure. */
int
DeptSpiExec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
			bool read_only, long limit)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, read_only, limit);

	if (rc < 0)
		elog(ERROR, "SPI_execute_with_args failed (%d): %s", rc, sql);
	return rc;
}

/*
 * Mark jobs whose worker is gone (crash, kill -9, server restart) as
 * failed.  A live job's worker appears in pg_stat_activity with
 * backend_type "dept training" and the pid it recorded.
 */
void
DeptReapJobs(void)
{
	DeptSavedUser saved;

	if (RecoveryInProgress())
		return;
	/* pg_stat_activity is otherwise a snapshot taken once per transaction */
	DeptSpiExec("SELECT pg_catalog.pg_stat_clear_snapshot()", 0, NULL, NULL, NULL, false, 0);
	DeptBecomeCatalogOwner(&saved);
	DeptSpiExec("UPDATE dept.jobs SET status = 'failed', finished_at = now(), "
				"error = 'the training worker exited before finishing (server restart, crash or kill)' "
				"WHERE status IN ('queued', 'running') AND NOT EXISTS ("
				" SELECT 1 FROM pg_catalog.pg_stat_activity a "
				" WHERE a.pid = dept.jobs.worker_pid AND a.backend_type = 'dept training')",
				0, NULL, NULL, NULL, false, 0);
	DeptRestoreUser(&saved);
}

/*
 * Serialize writers of one adapter name (new version, activation) until the
 * end of the transaction, so versions and the active flag stay consistent.
 * An advisory lock per name, not a table lock: a session that activated one
 * adapter must still be able to wait for the training of another.
 */
void
DeptLockAdapterName(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};

	DeptSpiExec("SELECT pg_advisory_xact_lock(1684369524, hashtext($1))", 1, types, values, NULL,
				false, 1);
}

/* The owner of adapter name (any version), or InvalidOid if none exists. */
Oid
DeptAdapterOwner(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	DeptSavedUser saved;
	Oid			owner = InvalidOid;

	DeptBecomeCatalogOwner(&saved);
	DeptSpiExec("SELECT owner::oid FROM dept.adapters WHERE name = $1 LIMIT 1",
				1, types, values, NULL, true, 1);
	if (SPI_processed > 0)
	{
		bool		isnull;

		owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											   1, &isnull));
	}
	DeptRestoreUser(&saved);
	return owner;
}

/* Error unless the current user may write adapter name (new, or owned). */
void
DeptCheckAdapterWritable(const char *name)
{
	Oid			owner = DeptAdapterOwner(name);

	if (OidIsValid(owner) && !has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("adapter \"%s\" belongs to role \"%s\"", name,
						GetUserNameFromId(owner, false)),
				 errhint("Choose another adapter name, or ask its owner.")));
}

/*
 * Store a new version of an adapter; returns the version.  activate:
 * "always", "never", or "if_better" (active only if its validation accuracy
 * is at least the active version's).  Runs as the catalog owner; the
 * caller has checked DeptCheckAdapterWritable.
 */
int
DeptStoreAdapter(const DeptAdapterRow *row, const char *activate, bool *activated)
{
	DeptSavedUser saved;
	int			version;
	bool		isnull;
	bool		make_active;

	DeptBecomeCatalogOwner(&saved);
	DeptLockAdapterName(row->name);
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(row->name)};

		DeptSpiExec("SELECT coalesce(max(version), 0) + 1, "
					" (SELECT (metrics ->> 'valid_accuracy')::float8 FROM dept.adapters "
					"   WHERE name = $1 AND active) "
					"FROM dept.adapters WHERE name = $1", 1, types, values, NULL, false, 1);
		version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
											  &isnull));
		{
			Datum		active_acc = SPI_getbinval(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 2, &isnull);

			if (strcmp(activate, "always") == 0)
				make_active = true;
			else if (strcmp(activate, "never") == 0)
				make_active = false;
			else
				make_active = isnull || row->valid_accuracy >= DatumGetFloat8(active_acc);
		}
	}
	if (make_active)
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(row->name)};

		DeptSpiExec("UPDATE dept.adapters SET active = false WHERE name = $1 AND active",
					1, types, values, NULL, false, 0);
	}
	{
		Oid			types[17] = {TEXTOID, INT4OID, OIDOID, BOOLOID, TEXTOID, TEXTOID, TEXTOID,
			TEXTARRAYOID, JSONBOID, JSONBOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID,
		INT8OID, BYTEAOID};
		Datum		values[17];
		char		nulls[17];
		Datum	   *label_datums = palloc(sizeof(Datum) * row->n_labels);

		memset(nulls, ' ', sizeof(nulls));
		for (int i = 0; i < row->n_labels; i++)
			label_datums[i] = CStringGetTextDatum(row->labels[i]);
		values[0] = CStringGetTextDatum(row->name);
		values[1] = Int32GetDatum(version);
		values[2] = ObjectIdGetDatum(row->owner);
		values[3] = BoolGetDatum(make_active);
		values[4] = CStringGetTextDatum(row->method);
		values[5] = CStringGetTextDatum(row->backbone);
		values[6] = CStringGetTextDatum(row->fingerprint);
		values[7] = PointerGetDatum(construct_array(label_datums, row->n_labels, TEXTOID, -1,
													false, TYPALIGN_INT));
		values[8] = DirectFunctionCall1(jsonb_in, CStringGetDatum(row->hyperparameters_json));
		values[9] = DirectFunctionCall1(jsonb_in, CStringGetDatum(row->metrics_json));
		values[10] = row->relation ? CStringGetTextDatum(row->relation) : (Datum) 0;
		nulls[10] = row->relation ? ' ' : 'n';
		values[11] = row->label_column ? CStringGetTextDatum(row->label_column) : (Datum) 0;
		nulls[11] = row->label_column ? ' ' : 'n';
		values[12] = row->text_column ? CStringGetTextDatum(row->text_column) : (Datum) 0;
		nulls[12] = row->text_column ? ' ' : 'n';
		values[13] = Int64GetDatum(row->train_rows);
		values[14] = Int64GetDatum(row->valid_rows);
		values[15] = Int64GetDatum(row->skipped_rows);
		values[16] = PointerGetDatum(row->tensors);
		DeptSpiExec("INSERT INTO dept.adapters (name, version, owner, active, method, backbone, "
					"backbone_fingerprint, labels, hyperparameters, metrics, training_relation, "
					"label_column, text_column, train_rows, valid_rows, skipped_rows, tensors) "
					"VALUES ($1, $2, $3::regrole, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, "
					"$14, $15, $16, $17)", 17, types, values, nulls, false, 0);
	}
	DeptRestoreUser(&saved);
	*activated = make_active;
	return version;
}
