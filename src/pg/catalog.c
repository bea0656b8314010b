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
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/syscache.h"

#include "dept_catalog.h"

/*
 * The search_path every SQL text of the extension runs under: names it
 * does not qualify resolve in pg_catalog, never in a schema a role could
 * create objects in (docs/dba.md, "search_path").
 */
#define DEPT_PINNED_SEARCH_PATH "pg_catalog, pg_temp"

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

/*
 * Open an SPI connection whose statements run with search_path pinned to
 * pg_catalog, pg_temp, as PostgreSQL's own maintenance commands do: a GUC
 * nest level with GUC_ACTION_SAVE, popped by DeptSpiFinish or by the
 * transaction's abort.  GUC_ACTION_SAVE is also what parallel workers
 * allow.  Returns the nest level to hand to DeptSpiFinish.
 */
int
DeptSpiConnect(void)
{
	int			level;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	level = NewGUCNestLevel();
	(void) set_config_option("search_path", DEPT_PINNED_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return level;
}

void
DeptSpiFinish(int level)
{
	AtEOXact_GUC(true, level);
	SPI_finish();
}

/*
 * Run a statement with parameters inside a connection opened by
 * DeptSpiConnect; errors on failure.  Statements qualify every function,
 * operator and type with pg_catalog besides running under the pinned path.
 */
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
	DeptSpiExec("UPDATE dept.jobs SET status = 'failed', finished_at = pg_catalog.now(), "
				"error = 'the training worker exited before finishing (server restart, crash or kill)' "
				"WHERE status OPERATOR(pg_catalog.=) ANY ('{queued,running}'::pg_catalog.text[]) "
				"AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a "
				" WHERE a.pid OPERATOR(pg_catalog.=) dept.jobs.worker_pid "
				" AND a.backend_type OPERATOR(pg_catalog.=) ANY (" DEPT_WORKER_TYPES "))",
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

	DeptSpiExec("SELECT pg_catalog.pg_advisory_xact_lock(1684369524, pg_catalog.hashtext($1))", 1, types, values, NULL,
				false, 1);
}

/*
 * The owner of adapter name (any version), or InvalidOid if none exists.
 * Read with a statement snapshot of its own (not read-only), so that after
 * DeptLockAdapterName it sees what another writer of the name committed.
 */
Oid
DeptAdapterOwner(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	DeptSavedUser saved;
	Oid			owner = InvalidOid;

	DeptBecomeCatalogOwner(&saved);
	DeptSpiExec("SELECT owner::pg_catalog.oid FROM dept.adapters "
				"WHERE name OPERATOR(pg_catalog.=) $1 LIMIT 1",
				1, types, values, NULL, false, 1);
	if (SPI_processed > 0)
	{
		bool		isnull;

		owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											   1, &isnull));
	}
	DeptRestoreUser(&saved);
	return owner;
}

/* "role \"x\"", or a note that the owner was dropped (the DBA can reclaim it). */
static char *
DeptOwnerDescription(Oid owner)
{
	char	   *name = GetUserNameFromId(owner, true);

	if (name)
		return psprintf("role \"%s\"", name);
	return psprintf("a dropped role (OID %u); a superuser can reclaim it with "
					"dept_reassign_owned or dept_drop_owned", owner);
}

/* Error unless the current user may write adapter name (new, or owned). */
void
DeptCheckAdapterWritable(const char *name)
{
	Oid			owner = DeptAdapterOwner(name);

	if (OidIsValid(owner) && !has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("adapter \"%s\" belongs to %s", name, DeptOwnerDescription(owner)),
				 errhint("Choose another adapter name, or ask its owner.")));
}

/*
 * Under the per-name lock: the name must still be free or belong to a role
 * whose privileges the writer has.  Two roles training the same new name
 * at once both pass the check before training; the second to store fails
 * here instead of splitting the versions between two owners.
 */
static void
DeptRecheckOwnerLocked(const DeptAdapterRow *row)
{
	Oid			owner = DeptAdapterOwner(row->name);

	if (OidIsValid(owner) && !has_privs_of_role(row->owner, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("adapter \"%s\" belongs to %s", row->name, DeptOwnerDescription(owner)),
				 errdetail("Another role stored a version under this name while this one trained."),
				 errhint("Train again under another adapter name.")));
}

/*
 * The next version of row->name, and whether the new one becomes active.
 * "if_better" activates it when no version is active, or when it has a
 * validation accuracy at least the active version's (or the active one has
 * none); a version trained without validation rows has none, so it
 * replaces an active version only with "always".  A regression compares
 * validation MSE instead (metrics "valid_mse"; at most the active one's):
 * an active classifier has none, so a regression replaces it, and the
 * other way round.
 */
static int
DeptNextVersion(const DeptAdapterRow *row, const char *activate, bool *make_active)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(row->name),
	CStringGetTextDatum(row->regression ? "valid_mse" : "valid_accuracy")};
	bool		isnull,
				acc_null;
	int			version;
	bool		has_active;
	Datum		active_acc;

	DeptSpiExec("SELECT COALESCE(pg_catalog.max(version), 0) OPERATOR(pg_catalog.+) 1, "
				" (SELECT (metrics OPERATOR(pg_catalog.->>) $2)::pg_catalog.float8 "
				"   FROM dept.adapters WHERE name OPERATOR(pg_catalog.=) $1 AND active), "
				" pg_catalog.bool_or(active) "
				"FROM dept.adapters WHERE name OPERATOR(pg_catalog.=) $1",
				2, types, values, NULL, false, 1);
	version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	active_acc = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &acc_null);
	has_active = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3,
											&isnull)) && !isnull;
	if (strcmp(activate, "always") == 0)
		*make_active = true;
	else if (strcmp(activate, "never") == 0)
		*make_active = false;
	else if (!has_active)
		*make_active = true;
	else if (!row->has_valid_accuracy)
		*make_active = false;
	else
		*make_active = acc_null || (row->regression ?
									row->valid_accuracy <= DatumGetFloat8(active_acc) :
									row->valid_accuracy >= DatumGetFloat8(active_acc));
	return version;
}

static void
DeptInsertAdapterRow(const DeptAdapterRow *row, int version, bool make_active)
{
	Oid			types[18] = {TEXTOID, INT4OID, OIDOID, BOOLOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTARRAYOID, JSONBOID, JSONBOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID,
	INT8OID, BYTEAOID, INT8OID};
	Datum		values[18];
	char		nulls[18];
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
	values[17] = Int64GetDatum(row->job_id);
	nulls[17] = row->job_id > 0 ? ' ' : 'n';
	DeptSpiExec("INSERT INTO dept.adapters (name, version, owner, active, method, backbone, "
				"backbone_fingerprint, labels, hyperparameters, metrics, training_relation, "
				"label_column, text_column, train_rows, valid_rows, skipped_rows, tensors, job_id) "
				"VALUES ($1, $2, $3::pg_catalog.regrole, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
				"$13, $14, $15, $16, $17, $18)", 18, types, values, nulls, false, 0);
}

/*
 * Store a new version of an adapter; returns the version.  activate:
 * "always", "never", or "if_better" (DeptNextVersion).  Runs as the catalog
 * owner; the caller has checked DeptCheckAdapterWritable, and the owner is
 * checked again under the per-name lock.
 */
int
DeptStoreAdapter(const DeptAdapterRow *row, const char *activate, bool *activated)
{
	DeptSavedUser saved;
	int			version;
	bool		make_active;

	DeptBecomeCatalogOwner(&saved);
	DeptLockAdapterName(row->name);
	DeptRecheckOwnerLocked(row);
	version = DeptNextVersion(row, activate, &make_active);
	if (make_active)
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(row->name)};

		DeptSpiExec("UPDATE dept.adapters SET active = false "
					"WHERE name OPERATOR(pg_catalog.=) $1 AND active",
					1, types, values, NULL, false, 0);
	}
	DeptInsertAdapterRow(row, version, make_active);
	DeptRestoreUser(&saved);
	*activated = make_active;
	return version;
}

/*
 * "per_class": {label: {precision, recall, f1}}, "confusion": [[...]] of m,
 * for the metrics a version stores and for dept_evaluate.
 */
void
DeptAppendClassMetricsJson(StringInfo buf, const ClassMetrics *m, char *const *class_names)
{
	if (m->regression)
	{
		/* a regression has no classes: its correlations and error instead */
		appendStringInfo(buf, "\"pearson\": %.6f, \"spearman\": %.6f, \"mse\": %.6f",
						 m->pearson, m->spearman, m->mse);
		return;
	}
	appendStringInfoString(buf, "\"per_class\": {");
	for (int c = 0; c < m->n_classes; c++)
	{
		if (c)
			appendStringInfoString(buf, ", ");
		escape_json(buf, class_names[c]);
		appendStringInfo(buf, ": {\"precision\": %.6f, \"recall\": %.6f, \"f1\": %.6f}",
						 m->precision[c], m->recall[c], m->f1[c]);
	}
	appendStringInfoString(buf, "}, \"confusion\": [");
	for (int t = 0; t < m->n_classes; t++)
	{
		appendStringInfo(buf, "%s[", t ? ", " : "");
		for (int p = 0; p < m->n_classes; p++)
			appendStringInfo(buf, "%s%lld", p ? ", " : "",
							 (long long) m->confusion[t * m->n_classes + p]);
		appendStringInfoChar(buf, ']');
	}
	appendStringInfoChar(buf, ']');
}
