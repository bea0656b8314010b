/*
 * models.c: the registry of backbone models (dept.models) and
 * dept_register_model.
 *
 * "use-lite" always names the default backbone (dept.model_path or the
 * installed model).  Other names map to a server directory registered by a
 * role that may read server files: a model directory is a path on the
 * server, so pointing the extension at one is that privilege.
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "dept.h"
#include "dept_catalog.h"

PG_FUNCTION_INFO_V1(dept_register_model);

#define DEPT_DEFAULT_MODEL "use-lite"

/*
 * The directory of model_name (palloc'd), looked up in dept.models; needs
 * an open SPI connection.  NULL or "use-lite" is the default directory.
 */
char *
DeptModelDirFor(const char *model_name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;

	if (model_name == NULL || model_name[0] == '\0' || strcmp(model_name, DEPT_DEFAULT_MODEL) == 0)
		return pstrdup(DeptModelDirectory());
	values[0] = CStringGetTextDatum(model_name);
	DeptSpiExec("SELECT path FROM dept.models WHERE name OPERATOR(pg_catalog.=) $1", 1, types, values, NULL, true, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" is not registered", model_name),
				 errhint("Register it with dept_register_model(name, path), or use \"use-lite\".")));
	return TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
											 &isnull));
}

/* dept_register_model(name, path) RETURNS jsonb: load, check and record a model directory. */
Datum
dept_register_model(PG_FUNCTION_ARGS)
{
	int			spi_level;
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(1));
	const Backbone *bb;
	DeptSavedUser saved;
	StringInfoData info;

	if (!superuser() && !has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to register a model directory"),
				 errdetail("Only superusers and roles with privileges of pg_read_server_files may point the extension at server files.")));
	if (name[0] == '\0' || strlen(name) > 63 || strcmp(name, DEPT_DEFAULT_MODEL) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid model name \"%s\"", name),
				 errhint("Use 1 to 63 bytes, other than the reserved name \"use-lite\".")));
	if (!is_absolute_path(path))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model path must be absolute")));

	/* load it now: a directory that does not open is never registered */
	bb = DeptGetBackboneAt(path);

	spi_level = DeptSpiConnect();
	{
		Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, OIDOID};
		Datum		values[5] = {CStringGetTextDatum(name), CStringGetTextDatum(path),
			CStringGetTextDatum(bb->ops->family), CStringGetTextDatum(bb->fingerprint),
		ObjectIdGetDatum(GetUserId())};

		DeptBecomeCatalogOwner(&saved);
		DeptSpiExec("INSERT INTO dept.models (name, path, family, fingerprint, registered_by) "
					"VALUES ($1, $2, $3, $4, $5::pg_catalog.regrole) ON CONFLICT (name) DO UPDATE SET "
					"path = EXCLUDED.path, family = EXCLUDED.family, fingerprint = EXCLUDED.fingerprint, "
					"registered_by = EXCLUDED.registered_by, registered_at = pg_catalog.now()",
					5, types, values, NULL, false, 0);
		DeptRestoreUser(&saved);
	}
	DeptSpiFinish(spi_level);

	initStringInfo(&info);
	appendStringInfoString(&info, "{\"name\": ");
	escape_json(&info, name);
	appendStringInfoString(&info, ", \"family\": ");
	escape_json(&info, bb->ops->family);
	appendStringInfoString(&info, ", \"fingerprint\": ");
	escape_json(&info, bb->fingerprint);
	appendStringInfo(&info, ", \"vocab_size\": %d, \"d_embed\": %d, \"d_out\": %d, "
					 "\"max_tokens\": %d, \"max_positions\": %d, \"trainable\": %s}",
					 bb->vocab_size, bb->d_embed, bb->d_out, bb->max_tokens, bb->max_positions,
					 bb->ops->backward ? "true" : "false");
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(info.data)));
}
