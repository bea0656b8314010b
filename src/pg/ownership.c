/*
 * ownership.c: what a DBA does with adapters when roles or the extension go
 * away (docs/dba.md, "Roles and adapters").
 *
 * PostgreSQL gives an extension no hook on DROP ROLE, and dept.adapters
 * stores its owner as a role OID, which DROP ROLE neither checks nor
 * updates.  The contract is therefore explicit: before dropping a role, a
 * DBA runs dept_reassign_owned(old, new) or dept_drop_owned(old), as with
 * REASSIGN OWNED / DROP OWNED; adapters whose owner was dropped anyway are
 * listed by dept_orphaned_adapters() and reclaimed by a superuser with the
 * same two functions, given the old OID ('16390'::regrole).
 *
 * DROP EXTENSION dept deletes every stored adapter with the extension: an
 * event trigger (dept_guard_drop_extension) warns with their number, or
 * refuses when dept.on_drop_extension = 'error'.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "dept.h"
#include "dept_catalog.h"

PG_FUNCTION_INFO_V1(dept_reassign_owned);
PG_FUNCTION_INFO_V1(dept_drop_owned);
PG_FUNCTION_INFO_V1(dept_guard_drop_extension);

/* As REASSIGN OWNED / DROP OWNED: the caller needs the privileges of the role. */
static void
DeptCheckMayActFor(Oid role, const char *what)
{
	if (!has_privs_of_role(GetUserId(), role))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s the adapters of role %u", what, role),
				 errdetail("Only roles with privileges of the owner, and superusers, may %s its adapters.",
						   what)));
}

/* Run a catalog write with one or two role OIDs; returns the rows it touched. */
static int64
DeptCatalogWrite(const char *sql, int nargs, Oid a, Oid b)
{
	Oid			types[2] = {OIDOID, OIDOID};
	Datum		values[2] = {ObjectIdGetDatum(a), ObjectIdGetDatum(b)};
	DeptSavedUser saved;
	int			spi_level = DeptSpiConnect();
	int64		rows;

	DeptBecomeCatalogOwner(&saved);
	DeptSpiExec(sql, nargs, types, values, NULL, false, 0);
	rows = (int64) SPI_processed;
	DeptRestoreUser(&saved);
	DeptSpiFinish(spi_level);
	return rows;
}

/* dept_reassign_owned(old_role, new_role) RETURNS bigint: adapter versions moved. */
Datum
dept_reassign_owned(PG_FUNCTION_ARGS)
{
	Oid			old_role = PG_GETARG_OID(0);
	Oid			new_role = PG_GETARG_OID(1);
	int64		moved;

	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(new_role)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u does not exist", new_role)));
	DeptCheckMayActFor(old_role, "reassign");
	DeptCheckMayActFor(new_role, "reassign");
	/* names stay unique per owner: every version of a name has one owner */
	moved = DeptCatalogWrite("UPDATE dept.adapters SET owner = $2::pg_catalog.regrole "
							 "WHERE owner::pg_catalog.oid OPERATOR(pg_catalog.=) $1", 2,
							 old_role, new_role);
	DeptCatalogWrite("UPDATE dept.jobs SET owner = $2::pg_catalog.regrole "
					 "WHERE owner::pg_catalog.oid OPERATOR(pg_catalog.=) $1", 2, old_role, new_role);
	PG_RETURN_INT64(moved);
}

/* dept_drop_owned(role) RETURNS bigint: adapter versions deleted, with the role's finished jobs. */
Datum
dept_drop_owned(PG_FUNCTION_ARGS)
{
	Oid			role = PG_GETARG_OID(0);
	int64		dropped;

	DeptCheckMayActFor(role, "drop");
	dropped = DeptCatalogWrite("DELETE FROM dept.adapters "
							   "WHERE owner::pg_catalog.oid OPERATOR(pg_catalog.=) $1", 1,
							   role, InvalidOid);
	DeptCatalogWrite("DELETE FROM dept.jobs WHERE owner::pg_catalog.oid OPERATOR(pg_catalog.=) $1 "
					 "AND status OPERATOR(pg_catalog.<>) ALL ('{queued,running}'::pg_catalog.text[])",
					 1, role, InvalidOid);
	PG_RETURN_INT64(dropped);
}

/* Whether a DROP EXTENSION statement names dept. */
static bool
DeptDropsThisExtension(Node *parsetree)
{
	DropStmt   *drop;
	ListCell   *lc;

	if (parsetree == NULL || !IsA(parsetree, DropStmt))
		return false;
	drop = (DropStmt *) parsetree;
	if (drop->removeType != OBJECT_EXTENSION)
		return false;
	foreach(lc, drop->objects)
		if (strcmp(strVal(lfirst(lc)), "dept") == 0)
			return true;
	return false;
}

/* Stored adapter versions, counted as the catalog owner (row security hides others'). */
static int64
DeptCountAdapters(void)
{
	DeptSavedUser saved;
	int			spi_level = DeptSpiConnect();
	bool		isnull;
	int64		n;

	DeptBecomeCatalogOwner(&saved);
	DeptSpiExec("SELECT pg_catalog.count(*) FROM dept.adapters", 0, NULL, NULL, NULL, true, 1);
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	DeptRestoreUser(&saved);
	DeptSpiFinish(spi_level);
	return n;
}

/*
 * Event trigger on ddl_command_start for DROP EXTENSION: a WARNING with the
 * number of adapters about to be deleted (so pg_restore --clean still
 * works), or an error when dept.on_drop_extension = 'error'.
 */
Datum
dept_guard_drop_extension(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	int64		adapters;
	const char *schema;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("dept_guard_drop_extension must be called as an event trigger")));
	trigdata = (EventTriggerData *) fcinfo->context;
	if (!DeptDropsThisExtension(trigdata->parsetree) || get_namespace_oid("dept", true) == InvalidOid)
		PG_RETURN_NULL();
	adapters = DeptCountAdapters();
	if (adapters == 0)
		PG_RETURN_NULL();
	/* this function lives in the extension's schema */
	schema = quote_identifier(get_namespace_name(get_func_namespace(fcinfo->flinfo->fn_oid)));
	ereport(dept_on_drop_extension == DEPT_ON_DROP_ERROR ? ERROR : WARNING,
			(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
			 errmsg("dropping extension dept deletes " INT64_FORMAT " stored adapter version%s",
					adapters, adapters == 1 ? "" : "s"),
			 errhint("Save them first: SELECT name, %s.dept_export(name) FROM dept.adapters WHERE active; "
					 "dept.on_drop_extension = 'error' refuses the drop instead.", schema)));
	PG_RETURN_NULL();
}
