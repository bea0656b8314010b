/*
 * train_launch.c: dept_train in the calling backend: every check before a
 * worker starts (relation, columns, labels, model, options, memory), the
 * start of the worker and the wait for it, relaying progress as NOTICEs
 * (docs/design.md 4, "Job life cycle"; the pattern of contrib/pg_prewarm's
 * autoprewarm and pg_cron: one dynamic worker per job so a failure is
 * contained).
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "adapters/adapter_io.h"
#include "train/dataset.h"
#include "dept.h"
#include "dept_catalog.h"
#include "dept_train.h"


PG_FUNCTION_INFO_V1(dept_train);

/* ---------------------------------------------------------------------------
 * Validation in the calling backend
 * ---------------------------------------------------------------------------
 */

bool
DeptIsTextType(Oid typid)
{
	Oid			base = getBaseType(typid);

	return base == TEXTOID || base == VARCHAROID || base == BPCHAROID;
}

/*
 * The SQL expression of a row's text: the text column, or for a sentence
 * pair (column2 not empty) both as "name1: text name2: text2", the format
 * of the DePT code (docs/design.md 1, "Sentence pairs"), null when either is.  The names
 * are the columns an adapter was trained on (NULL: these columns), so an
 * evaluation table may name its columns otherwise.  DeptPairText builds
 * the same bytes in C for dept_predict's two arguments.
 */
char *
DeptTextSql(const char *column, const char *column2, const char *name1, const char *name2)
{
	const char *a = quote_identifier(column);
	const char *b;

	if (column2 == NULL || column2[0] == '\0')
		return pstrdup(a);
	b = quote_identifier(column2);
	return psprintf("CASE WHEN %s IS NULL OR %s IS NULL THEN NULL ELSE "
					"pg_catalog.format('%%s: %%s %%s: %%s', %s::pg_catalog.text, %s::pg_catalog.text, "
					"%s::pg_catalog.text, %s::pg_catalog.text) END",
					a, b, quote_literal_cstr(name1 ? name1 : column), a,
					quote_literal_cstr(name2 ? name2 : column2), b);
}

char *
DeptPairText(const char *name1, const char *a, size_t alen, const char *name2, const char *b,
			 size_t blen)
{
	return psprintf("%s: %.*s %s: %.*s", name1, (int) alen, a, name2, (int) blen, b);
}

/*
 * A pair as an adapter of encoding pair (AdapterPair) reads it, palloc'd
 * with its length in *len: joined, the bytes of DeptPairText; read apart
 * (native, siamese), the two texts separated by one NUL byte, which no
 * text value holds, so DeptDatasetAddRow and DeptClassifyInputs split it
 * back without ambiguity.
 */
char *
DeptPairInput(int pair, const char *name1, const char *a, size_t alen, const char *name2,
			  const char *b, size_t blen, size_t *len)
{
	char	   *out;

	if (pair == ADAPTER_PAIR_JOINED)
	{
		out = DeptPairText(name1, a, alen, name2, b, blen);
		*len = strlen(out);
		return out;
	}
	*len = alen + 1 + blen;
	out = palloc(*len + 1);
	memcpy(out, a, alen);
	out[alen] = '\0';
	memcpy(out + alen + 1, b, blen);
	out[*len] = '\0';
	return out;
}

/* The relation must be of a kind with rows, and committed. */
void
DeptCheckRelation(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	char		relkind;
	bool		created_here;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	relkind = ((Form_pg_class) GETSTRUCT(tup))->relkind;
	created_here = TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(tup->t_data));
	ReleaseSysCache(tup);

	if (relkind != RELKIND_RELATION && relkind != RELKIND_VIEW && relkind != RELKIND_MATVIEW &&
		relkind != RELKIND_PARTITIONED_TABLE && relkind != RELKIND_FOREIGN_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table, view or materialized view", get_rel_name(relid))));
	if (created_here)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"%s\" was created in the current transaction", get_rel_name(relid)),
				 errdetail("The training worker runs in its own transaction and cannot see it."),
				 errhint("Commit the transaction that creates the table, then train.")));
}

/* attnum of a readable column, or an error naming it. */
AttrNumber
DeptCheckColumn(Oid relid, const char *column, const char *role)
{
	AttrNumber	attnum = get_attnum(relid, column);

	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist", column,
						get_rel_name(relid)),
				 errdetail("It was given as the %s column.", role)));
	/* training reads the rows as the calling role: it needs SELECT on them */
	if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK &&
		pg_attribute_aclcheck(relid, attnum, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for column \"%s\" of relation \"%s\"", column,
						get_rel_name(relid)),
				 errhint("Training reads the rows as the calling role, which needs SELECT on them.")));
	return attnum;
}

/* The only text-like column besides the label, or an error. */
static char *
DeptInferTextColumn(Oid relid, AttrNumber label_attnum)
{
	Relation	rel = relation_open(relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	char	   *found = NULL;
	int			count = 0;

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && att->attnum != label_attnum && DeptIsTextType(att->atttypid))
		{
			count++;
			found = pstrdup(NameStr(att->attname));
		}
	}
	relation_close(rel, AccessShareLock);
	if (count != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot infer the text column of \"%s\"", get_rel_name(relid)),
				 errdetail("The relation has %d text columns besides the label.", count),
				 errhint("Pass text_column => 'name'.")));
	return found;
}

/* Schema-qualified, quoted name of relid, safe to put in SQL. */
char *
DeptQualifiedName(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/*
 * The SQL condition that a row of the user's table is used for training:
 * its text (text_sql, as DeptTextSql builds it) is not null and its label
 * is neither null nor empty.  The label check, the sampler's counts and the
 * default test fraction all count these rows.
 */
char *
DeptUsableRowSql(const char *label_column, const char *text_sql)
{
	const char *col = quote_identifier(label_column);

	return psprintf("(%s) IS NOT NULL AND %s IS NOT NULL "
					"AND %s::pg_catalog.text OPERATOR(pg_catalog.<>) ''", text_sql, col, col);
}

/* The usable rows must hold at least two distinct labels. */
static void
DeptCheckLabels(Oid relid, const char *label_column, const char *text_sql)
{
	char	   *rel = DeptQualifiedName(relid);
	const char *col = quote_identifier(label_column);
	char	   *usable = DeptUsableRowSql(label_column, text_sql);
	char	   *sql;
	bool		isnull;
	int64		with_label;

	/* count only rows the worker will use: a text, and a non-empty label */
	sql = psprintf("SELECT (SELECT pg_catalog.count(*) FROM (SELECT 1 FROM %s WHERE %s LIMIT 1) s), "
				   "EXISTS (SELECT 1 FROM %s WHERE %s AND %s::pg_catalog.text OPERATOR(pg_catalog.<>) "
				   "(SELECT %s::pg_catalog.text FROM %s WHERE %s LIMIT 1))",
				   rel, usable, rel, usable, col, col, rel, usable);
	DeptSpiExec(sql, 0, NULL, NULL, NULL, true, 1);
	with_label = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (with_label == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("relation \"%s\" has no rows with a label in column \"%s\"",
						get_rel_name(relid), label_column)));
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("label column \"%s\" has only one distinct value", label_column),
				 errdetail("A classifier needs at least two classes.")));
}

/* More distinct values than this in an integer label column look like a quantity, not classes. */
#define DEPT_MAX_INTEGER_CLASSES 50

/*
 * The task of req: a regression when "task" says so (the label must then
 * be of a numeric type), or, without "task", when the label column is of a
 * non-integer numeric type (a NOTICE says so).  A classifier on such a
 * column, or on an integer one with more than DEPT_MAX_INTEGER_CLASSES
 * distinct values, would hold a class per quantity: refused.
 */
static void
DeptCheckLabelType(DeptTrainRequest *req, Oid relid, const char *label_column)
{
	Oid			type = getBaseType(get_atttype(relid, get_attnum(relid, label_column)));
	bool		integer = type == INT2OID || type == INT4OID || type == INT8OID;
	bool		real = type == NUMERICOID || type == FLOAT4OID || type == FLOAT8OID;
	char	   *sql;
	bool		isnull;
	int64		distinct;

	if (req->task == DEPT_TASK_REGRESSION && !integer && !real)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a regression needs a numeric label column, and \"%s\" is of type %s",
						label_column, format_type_be(type)),
				 errhint("Cast the column to double precision in a view.")));
	if (real && req->task == DEPT_TASK_AUTO)
	{
		ereport(NOTICE,
				(errmsg("label column \"%s\" is of type %s: training a regression",
						label_column, format_type_be(type)),
				 errhint("Pass options => '{\"task\": \"regression\"}' to say so.")));
		req->task = DEPT_TASK_REGRESSION;
	}
	req->regression = req->task == DEPT_TASK_REGRESSION;
	if (real && !req->regression)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("label column \"%s\" is of type %s: its values look like quantities, not classes",
						label_column, format_type_be(type)),
				 errhint("Train a regression with options => '{\"task\": \"regression\"}', or a classifier on a text or integer label.")));
	if (req->regression && req->max_rows_per_class > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows_per_class has no meaning for a regression"),
				 errhint("Use max_rows with a uniform sample.")));
	if (!integer || req->regression)
		return;
	sql = psprintf("SELECT pg_catalog.count(*) FROM (SELECT DISTINCT %s FROM %s WHERE %s IS NOT NULL "
				   "LIMIT %d) s", quote_identifier(label_column), DeptQualifiedName(relid),
				   quote_identifier(label_column), DEPT_MAX_INTEGER_CLASSES + 1);
	DeptSpiExec(sql, 0, NULL, NULL, NULL, true, 1);
	distinct = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (distinct > DEPT_MAX_INTEGER_CLASSES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("integer label column \"%s\" has more than %d distinct values",
						label_column, DEPT_MAX_INTEGER_CLASSES),
				 errdetail("So many values look like a quantity, not classes."),
				 errhint("Train a regression with options => '{\"task\": \"regression\"}', or cast the column to text in a view if these really are classes.")));
}

/*
 * The options against the model they train: widths, lengths, heads.  A
 * default method (method_defaulted) on a T5 text-to-text regression
 * becomes DePT here, since 'auto' cannot train one.
 */
static void
DeptCheckModelFits(DeptTrainRequest *req)
{
	const Backbone *bb = DeptGetBackboneAt(req->model_dir);
	int			prompt = req->opt.method == ADAPTER_PROBE ? 0 : req->opt.prompt_len;

	if (prompt + req->opt.max_len > bb->max_positions)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("prompt_length %d + max_length %d exceed the model's %d positions",
						prompt, req->opt.max_len, bb->max_positions)));
	if (req->opt.method == ADAPTER_DEPT && req->opt.rank == 0 && req->opt.prompt_len > req->opt.budget)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a DePT prompt of %d rows exceeds the budget of %d prompt vectors",
						req->opt.prompt_len, req->opt.budget),
				 errhint("Lower prompt_length, raise budget, or give rank explicitly.")));
	if (req->opt.method == ADAPTER_EPT && req->opt.rank == 0 &&
		adapter_rank_for_budget(req->opt.budget, bb->d_embed, req->opt.max_len, req->opt.prompt_len,
								req->opt.subspaces, req->opt.subspace_rank) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the budget of %d prompt vectors leaves no room for EPT's low-rank pair",
						req->opt.budget),
				 errhint("Raise budget, or lower prompt_length, subspaces or subspace_rank.")));
	if (req->opt.rank > bb->d_embed)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rank %d is larger than the embedding width %d", req->opt.rank, bb->d_embed)));
	if (req->opt.method != ADAPTER_PROBE && bb->ops->backward == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("model \"%s\" (%s) cannot train prompts yet", req->model_name, bb->ops->family),
				 errhint("Train a linear probe with method => 'probe'.")));
	if (req->opt.max_len > bb->max_tokens)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_length %d exceeds the model's %d tokens", req->opt.max_len,
						bb->max_tokens)));
	{
		AdapterHead head;
		NnError		err;

		/* "head": "text" needs T5 and a method with a prompt (train.h) */
		if (train_choose_head(bb, &req->opt, &head, &err) != NN_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s", err.msg),
					 errhint("Use \"head\": \"linear\", or a T5 model with a method other than probe.")));
		/*
		 * T5's text-to-text regression trains on 0.2-step bins (train.h); the
		 * candidates of 'auto' would need the bins and the numbers at once,
		 * so the default (no method) trains DePT there
		 */
		if (req->regression && head == ADAPTER_HEAD_TEXT && req->auto_method && req->method_defaulted)
		{
			req->auto_method = false;
			req->budget_rows = 0;
			strlcpy(req->method, "dept", sizeof(req->method));
		}
		if (req->regression && head == ADAPTER_HEAD_TEXT && req->auto_method)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("method \"auto\" does not train a text-to-text regression"),
					 errhint("Choose a method, or \"head\": \"linear\".")));
	}
}

/* The planner's row count of a table or materialized view; 0 when it has none. */
static double
DeptRelationRowEstimate(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	double		rows = 0;

	if (HeapTupleIsValid(tup))
	{
		Form_pg_class rel = (Form_pg_class) GETSTRUCT(tup);

		if (rel->reltuples > 0)
			rows = rel->reltuples;
		ReleaseSysCache(tup);
	}
	return rows;
}

/*
 * The run's memory estimate before any row is read: the buffers, the
 * adapter, the model and the planner's row count (texts are counted by the
 * worker as it reads them).  For T5 the decoder is sized for its labels:
 * how many, and the longest bounded by its bytes + 2 tokens (a piece covers
 * at least one byte; a leading U+2581 and "</s>" may add two).
 */
static void
DeptCheckMemoryBeforeStart(DeptTrainRequest *req, Oid relid, const char *label_column,
						   const char *text_sql)
{
	const Backbone *bb = DeptGetBackboneAt(req->model_dir);
	DeptMemoryEstimate est;
	int			max_label = 0;
	int64		n_classes = 2;

	if (backbone_has_text_head(bb))
	{
		const char *col = quote_identifier(label_column);
		char	   *sql = psprintf("SELECT COALESCE(pg_catalog.max(pg_catalog.octet_length(%s::pg_catalog.text)), 0), "
								   "pg_catalog.count(DISTINCT %s::pg_catalog.text) "
								   "FROM %s WHERE %s IS NOT NULL AND (%s) IS NOT NULL", col, col,
								   DeptQualifiedName(relid), col, text_sql);
		bool		isnull;

		DeptSpiExec(sql, 0, NULL, NULL, NULL, true, 1);
		max_label = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
												&isnull));
		max_label = Min(max_label + 2, bb->max_positions);
		n_classes = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2,
												&isnull));
		/* a regression's labels are its bins ("5" is "5.0"): at most TRAIN_MAX_BINS */
		if (req->regression)
		{
			max_label = Min(max_label + 2, bb->max_positions);
			n_classes = Min(n_classes, TRAIN_MAX_BINS);
		}
	}
	DeptEstimateTrainingMemory(bb, req->model_dir, &req->opt, (int) Min(n_classes, INT_MAX),
							   DeptRelationRowEstimate(relid), 0, max_label, &est);
	DeptCheckTrainingMemory(&est, &req->opt, req->max_training_memory);
}

/* The worker connects as the calling role, which therefore needs LOGIN. */
void
DeptCheckRoleCanLogin(Oid role)
{
	HeapTuple	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(role));
	bool		can_login;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for role %u", role);
	can_login = ((Form_pg_authid) GETSTRUCT(tup))->rolcanlogin;
	ReleaseSysCache(tup);
	if (!can_login)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" cannot log in, so no training worker can run as it",
						GetUserNameFromId(role, false)),
				 errhint("Train as a role with LOGIN, or ALTER ROLE ... LOGIN.")));
}

int64
DeptNextJobId(void)
{
	DeptSavedUser saved;
	bool		isnull;
	int64		id;

	DeptBecomeCatalogOwner(&saved);
	DeptSpiExec("SELECT pg_catalog.nextval('dept.job_ids'::pg_catalog.regclass)", 0, NULL, NULL, NULL, false, 1);
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	DeptRestoreUser(&saved);
	return id;
}

static char *
DeptTextArg(FunctionCallInfo fcinfo, int n, const char *what)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

/* ---------------------------------------------------------------------------
 * Starting and waiting for the worker
 * ---------------------------------------------------------------------------
 */

BackgroundWorkerHandle *
DeptStartWorker(dsm_segment *seg, int64 job_id, const char *function, const char *type)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	pid_t		pid;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "dept");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s job " INT64_FORMAT, type, job_id);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", type);
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		dsm_unpin_segment(dsm_segment_handle(seg));
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start a %s worker: no background worker slot is free", type),
				 errhint("Raise max_worker_processes (now %d) and restart the server, or wait for running jobs to end.",
						 max_worker_processes)));
	}
	if (WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("the %s worker could not start", type),
				 errhint("See the server log; max_worker_processes is %d.", max_worker_processes)));
	return handle;
}

static DeptJobState
DeptReadState(DeptTrainRequest *req, TrainProgress *progress)
{
	DeptJobState state;

	SpinLockAcquire(&req->mutex);
	state = req->state;
	if (progress)
		*progress = req->progress;
	SpinLockRelease(&req->mutex);
	return state;
}

/*
 * Error if the worker waits for a lock this transaction holds (say the
 * caller activated the same adapter earlier in its transaction): waiting
 * for it would never end.
 */
static void
DeptCheckWorkerNotBlocked(pid_t worker_pid, const DeptTrainRequest *req)
{
	int			spi_level;
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		values[2] = {Int32GetDatum(MyProcPid), Int32GetDatum(worker_pid)};
	bool		isnull;
	bool		blocked;

	spi_level = DeptSpiConnect();
	DeptSpiExec("SELECT $1 OPERATOR(pg_catalog.=) ANY (pg_catalog.pg_blocking_pids($2))", 2, types, values, NULL,
				true, 1);
	blocked = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	DeptSpiFinish(spi_level);
	if (blocked)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("training job " INT64_FORMAT " waits for a lock held by this transaction",
						req->job_id),
				 errhint("Commit first, or train with wait => false and call dept_wait after committing.")));
}

/* Sleep until woken or 100 ms pass; errors if the worker died without reporting. */
static void
DeptWaitStep(BackgroundWorkerHandle *handle, DeptTrainRequest *req)
{
	static int	ticks = 0;
	pid_t		pid;

	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 100,
					 PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (GetBackgroundWorkerPid(handle, &pid) == BGWH_STARTED && ++ticks % 10 == 0)
		DeptCheckWorkerNotBlocked(pid, req);
	else if (GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED &&
			 DeptReadState(req, NULL) <= JOB_RUNNING)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("training job " INT64_FORMAT " ended without reporting its outcome",
						req->job_id),
				 errhint("See the server log for the worker's messages.")));
}

/*
 * A waiting caller that goes away without an error of its own (terminated
 * with pg_terminate_backend, or its client disconnected: both exit with
 * FATAL, which no PG_CATCH sees) detaches from the job's segment on its way
 * out; the job must not finish, store and activate a version on its own.
 */
static void
DeptCancelOnCallerExit(dsm_segment *seg, Datum arg)
{
	DeptTrainRequest *req = (DeptTrainRequest *) DatumGetPointer(arg);

	SpinLockAcquire(&req->mutex);
	if (req->state <= JOB_RUNNING)
		req->cancel_requested = true;
	SpinLockRelease(&req->mutex);
}

/*
 * The read phase as NOTICEs: the rows read every second while it lasts,
 * then once what was read, what is used and the steps to come.
 */
static void
DeptNoticeReadProgress(DeptTrainRequest *req, TimestampTz *last_notice, bool *announced)
{
	int64		read,
				used,
				test,
				found;

	SpinLockAcquire(&req->mutex);
	read = req->rows_read;
	used = req->rows_used;
	test = req->rows_test;
	found = req->rows_test_found;
	SpinLockRelease(&req->mutex);
	if (used >= 0 && !*announced)
	{
		int64		per_epoch = (int64) ceil(used * (1.0 - req->opt.valid_fraction) /
											 req->opt.batch_size);
		int64		steps = per_epoch * req->opt.epochs;

		if (req->opt.max_steps > 0)
			steps = Min(steps, req->opt.max_steps);
		/* method 'auto': DePT within budget_rows, after the probe's one pass (train_auto.c) */
		if (req->auto_method && req->budget_rows > 0)
			steps = Min(steps, Max(req->budget_rows / req->opt.batch_size, 1));
		ereport(NOTICE,
				(errmsg("job " INT64_FORMAT ": " INT64_FORMAT " rows read, " INT64_FORMAT
						" used%s; training about " INT64_FORMAT " steps of %d rows",
						req->job_id, read, used,
						found == 0 ? "" : found == test ?
						psprintf(", " INT64_FORMAT " held out for the test report", found) :
						psprintf(", " INT64_FORMAT " held out for the test report (a sample of "
								 INT64_FORMAT " of them scored)", found, test),
						steps, req->opt.batch_size)));
		*announced = true;
		*last_notice = GetCurrentTimestamp();
	}
	else if (used < 0 && read > 0 && TimestampDifferenceExceeds(*last_notice, GetCurrentTimestamp(), 1000))
	{
		ereport(NOTICE,
				(errmsg("job " INT64_FORMAT ": reading rows: " INT64_FORMAT " read",
						req->job_id, read)));
		*last_notice = GetCurrentTimestamp();
	}
}

/* Relay progress as NOTICEs until the job ends; cancel it if we are cancelled. */
static void
DeptWaitForJob(BackgroundWorkerHandle *handle, DeptTrainRequest *req)
{
	TimestampTz last_notice = GetCurrentTimestamp();
	bool		read_announced = false;

	PG_TRY();
	{
		TrainProgress p;

		while (DeptReadState(req, &p) <= JOB_RUNNING)
		{
			DeptWaitStep(handle, req);
			if (p.step == 0)
				DeptNoticeReadProgress(req, &last_notice, &read_announced);
			else if (TimestampDifferenceExceeds(last_notice, GetCurrentTimestamp(), 2000))
			{
				ereport(NOTICE,
						(errmsg("job " INT64_FORMAT ": step %ld/%ld, epoch %d, loss %.4f, validation %s %s, %.1f rows/s, ETA %.0f s",
								req->job_id, p.step, p.total_steps, p.epoch, p.loss,
								req->regression ? "Pearson" : "accuracy",
								p.valid_accuracy < 0 ? "-" : psprintf("%.4f", p.valid_accuracy),
								p.rows_per_second, p.eta_seconds)));
				last_notice = GetCurrentTimestamp();
			}
		}
	}
	PG_CATCH();
	{
		/* the caller gave up (cancel, timeout): the job must not go on alone */
		SpinLockAcquire(&req->mutex);
		req->cancel_requested = true;
		SpinLockRelease(&req->mutex);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * The label and text columns must exist, be readable by the caller and
 * differ, the text one of a text type; returns the text column (inferred
 * when NULL: the relation's only other text column).
 */
static AttrNumber
DeptCheckTextColumn(Oid relid, const char *text_column, AttrNumber label_attnum)
{
	AttrNumber	text_attnum = DeptCheckColumn(relid, text_column, "text");

	if (text_attnum == label_attnum)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the text and label columns must differ")));
	if (!DeptIsTextType(get_atttype(relid, text_attnum)))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" is of type %s, not a text type", text_column,
						format_type_be(get_atttype(relid, text_attnum))),
				 errhint("Train on a text, varchar or char column, or on a view that casts it.")));
	return text_attnum;
}

/*
 * The text column(s): text_column, or the pair of options' text_columns
 * (req->text_column, req->text_column2), or the relation's only other text
 * column.  Returns the first.
 */
static char *
DeptCheckTrainColumns(Oid relid, const char *label_column, char *text_column,
					  const DeptTrainRequest *req)
{
	AttrNumber	label_attnum = DeptCheckColumn(relid, label_column, "label");

	if (req->text_column2[0] != '\0')
	{
		if (text_column != NULL && strcmp(text_column, req->text_column) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("text_column \"%s\" is not the first of the option text_columns",
							text_column),
					 errhint("Leave text_column out when the option text_columns names the pair.")));
		text_column = pstrdup(req->text_column);
		if (DeptCheckTextColumn(relid, req->text_column2, label_attnum) ==
			DeptCheckTextColumn(relid, text_column, label_attnum))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the two text columns must differ")));
		return text_column;
	}
	if (text_column == NULL)
		text_column = DeptInferTextColumn(relid, label_attnum);
	DeptCheckTextColumn(relid, text_column, label_attnum);
	return text_column;
}

/* The ended job's outcome, copied out of the segment before detaching: an error, or the adapter's name. */
static char *
DeptReportOutcome(dsm_segment *seg, const DeptTrainRequest *req)
{
	DeptTrainRequest outcome = *req;

	dsm_detach(seg);
	if (outcome.state == JOB_CANCELLED)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("training job " INT64_FORMAT " was cancelled", outcome.job_id)));
	if (outcome.state == JOB_FAILED)
		ereport(ERROR,
				(errcode(outcome.sqlerrcode ? outcome.sqlerrcode : ERRCODE_INTERNAL_ERROR),
				 errmsg("training job " INT64_FORMAT " failed: %s", outcome.job_id,
						outcome.error)));
	/* method 'auto': what every candidate scored (train_auto.c) */
	for (char *line = strtok(outcome.auto_notes, "\n"); line; line = strtok(NULL, "\n"))
		ereport(NOTICE, (errmsg("job " INT64_FORMAT ": auto: %s", outcome.job_id, line)));
	if (outcome.regression)
		ereport(NOTICE,
				(errmsg("adapter \"%s\" version %d trained (job " INT64_FORMAT ", regression, "
						"validation Pearson %s, Spearman %s, MSE %s)",
						outcome.adapter, outcome.version, outcome.job_id,
						outcome.valid_mse < 0 ? "-" : psprintf("%.4f", outcome.valid_pearson),
						outcome.valid_mse < 0 ? "-" : psprintf("%.4f", outcome.valid_spearman),
						outcome.valid_mse < 0 ? "-" : psprintf("%.4f", outcome.valid_mse))));
	else
		ereport(NOTICE,
			(errmsg("adapter \"%s\" version %d trained (job " INT64_FORMAT ", validation accuracy %s)",
					outcome.adapter, outcome.version, outcome.job_id,
					outcome.progress.valid_accuracy < 0 ? "-" :
					psprintf("%.4f", outcome.progress.valid_accuracy))));
	return pstrdup(outcome.adapter);
}

Datum
dept_train(PG_FUNCTION_ARGS)
{
	int			spi_level;
	Oid			relid;
	char	   *label_column = DeptTextArg(fcinfo, 1, "label_column");
	char	   *text_column = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *adapter = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	/* NULL, the default: 'auto', or 'dept' when options shape a prompt (train_options.c) */
	char	   *method = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));
	char	   *activate = DeptTextArg(fcinfo, 7, "activate");
	char	   *text_sql;
	bool		wait;
	Jsonb	   *options;
	dsm_segment *seg;
	DeptTrainRequest *req;
	BackgroundWorkerHandle *handle;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(5) || PG_ARGISNULL(6))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("relation, options and wait must not be null")));
	relid = PG_GETARG_OID(0);
	options = PG_GETARG_JSONB_P(5);
	wait = PG_GETARG_BOOL(6);
	if (strcmp(activate, "always") != 0 && strcmp(activate, "if_better") != 0 &&
		strcmp(activate, "never") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("activate must be 'always', 'if_better' or 'never', not \"%s\"", activate)));

	DeptCheckRoleCanLogin(GetUserId());
	DeptCheckRelation(relid);
	seg = dsm_create(sizeof(DeptTrainRequest), 0);
	req = dsm_segment_address(seg);
	memset(req, 0, sizeof(*req));
	SpinLockInit(&req->mutex);
	req->rows_used = -1;
	/* the extension's schema, where the worker finds dept_is_test_row (train_sample.c) */
	strlcpy(req->extension_schema, get_namespace_name(get_func_namespace(fcinfo->flinfo->fn_oid)),
			sizeof(req->extension_schema));
	DeptParseTrainOptions(req, method, options);
	text_column = DeptCheckTrainColumns(relid, label_column, text_column, req);
	text_sql = DeptTextSql(text_column, req->text_column2, NULL, NULL);
	if (adapter == NULL)
		adapter = psprintf("%s_%s", get_rel_name(relid), label_column);
	if (adapter[0] == '\0' || strlen(adapter) >= DEPT_NAME_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("adapter name must be 1 to %d bytes long", DEPT_NAME_LEN - 1)));

	spi_level = DeptSpiConnect();
	DeptReapJobs();
	DeptCheckAdapterWritable(adapter);
	if (req->init_from[0] != '\0')
		DeptSelectInitFrom(req);	/* fails now if the caller may not use it */
	DeptCheckLabelType(req, relid, label_column);
	DeptCheckLabels(relid, label_column, text_sql);
	strlcpy(req->model_dir, DeptModelDirFor(req->model_name), sizeof(req->model_dir));
	DeptCheckModelFits(req);
	DeptResolvePairEncoding(req, DeptGetBackboneAt(req->model_dir));
	/* the caller's budget travels with the job: the worker has no session of its own */
	req->max_training_memory = dept_max_training_memory < 0 ? -1 :
		(int64) dept_max_training_memory * 1024;
	DeptCheckMemoryBeforeStart(req, relid, label_column, text_sql);
	req->job_id = DeptNextJobId();
	DeptSpiFinish(spi_level);

	req->database = MyDatabaseId;
	req->role = GetUserId();
	req->relation = relid;
	strlcpy(req->adapter, adapter, sizeof(req->adapter));
	strlcpy(req->relation_name, DeptQualifiedName(relid), sizeof(req->relation_name));
	strlcpy(req->label_column, label_column, sizeof(req->label_column));
	strlcpy(req->text_column, text_column, sizeof(req->text_column));
	strlcpy(req->activate, activate, sizeof(req->activate));
	{
		char	   *json = JsonbToCString(NULL, &options->root, VARSIZE(options));

		if (strlen(json) >= sizeof(req->options_json))
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("options are too long")));
		strlcpy(req->options_json, json, sizeof(req->options_json));
	}

	/* the worker unpins the segment once attached; it then lives as long as it is mapped */
	dsm_pin_segment(seg);
	handle = DeptStartWorker(seg, req->job_id, "dept_train_worker_main", "dept training");
	/* returning before the job row exists would let dept_wait miss it */
	while (DeptReadState(req, NULL) == JOB_STARTING)
		DeptWaitStep(handle, req);

	if (!wait)
	{
		int64		job_id = req->job_id;

		dsm_detach(seg);
		PG_RETURN_TEXT_P(cstring_to_text(psprintf(INT64_FORMAT, job_id)));
	}

	on_dsm_detach(seg, DeptCancelOnCallerExit, PointerGetDatum(req));
	DeptWaitForJob(handle, req);
	PG_RETURN_TEXT_P(cstring_to_text(DeptReportOutcome(seg, req)));
}

