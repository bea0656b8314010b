/*
 * score.c: dept_score, scoring a whole table as a background job (docs/dba.md,
 * "Bulk scoring").
 *
 * dept_score(adapter, relation, key_column, text_column, output_table)
 * starts a worker connected as the calling role, recorded in dept.jobs
 * (kind 'score'), that walks the relation in key order, a batch per
 * transaction: it reads the next rows after the last key scored, classifies
 * them in one batched forward pass, and upserts (key, label, probability,
 * version) into the output table.  A batch commits with its rows, so a job
 * that is cancelled, fails or dies leaves every scored row, and the next
 * dept_score into the same table resumes after the largest key there.
 * Progress (rows scored of the table's rows) is in dept.jobs; dept_wait and
 * dept_cancel work as for training jobs.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/xact.h"
#include "catalog/pg_index.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "mb/pg_wchar.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/typcache.h"
#include "utils/varlena.h"

#include "dept.h"
#include "dept_catalog.h"
#include "dept_train.h"

PG_FUNCTION_INFO_V1(dept_score);

/* Rows per transaction: one upsert, one progress update. */
#define DEPT_SCORE_BATCH 256

typedef struct DeptScoreRequest
{
	int64		job_id;
	Oid			database;
	Oid			role;
	Oid			key_type;
	char		adapter[DEPT_NAME_LEN];
	char		relation_name[3 * DEPT_NAME_LEN];	/* quoted, qualified */
	char		key_column[NAMEDATALEN];
	char		text_column[NAMEDATALEN];
	char		output_name[3 * DEPT_NAME_LEN];	/* quoted, qualified */
	bool		keep_current;	/* a trigger queues changed keys for the next run */
	char		queue_name[3 * DEPT_NAME_LEN];	/* quoted, qualified: "<output>_queue" */
	char		trigger_name[NAMEDATALEN];	/* "dept_score_<output>" */
	char		enqueue_function[3 * DEPT_NAME_LEN];	/* quoted, qualified */
	slock_t		mutex;
	bool		recorded;		/* the worker has committed the job row */
} DeptScoreRequest;

/*
 * Wait until the worker has recorded the job in dept.jobs, so that the
 * caller's next statement (dept_wait, a look at dept.jobs) finds it.
 */
static void
DeptWaitJobRecorded(BackgroundWorkerHandle *handle, DeptScoreRequest *req)
{
	for (;;)
	{
		bool		recorded;
		pid_t		pid;

		SpinLockAcquire(&req->mutex);
		recorded = req->recorded;
		SpinLockRelease(&req->mutex);
		if (recorded)
			return;
		if (GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("scoring job " INT64_FORMAT " ended before it was recorded", req->job_id),
					 errhint("See the server log for the worker's messages.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* The key's type needs pg_catalog's ordering: scoring walks the table by key. */
static Oid
DeptCheckKeyColumn(Oid relid, const char *key_column)
{
	Oid			type = get_atttype(relid, get_attnum(relid, key_column));
	TypeCacheEntry *tc = lookup_type_cache(type, TYPECACHE_GT_OPR);

	if (!OidIsValid(tc->gt_opr) || get_func_namespace(get_opcode(tc->gt_opr)) != PG_CATALOG_NAMESPACE)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("key column \"%s\" is of type %s, which has no built-in ordering",
						key_column, format_type_be(type)),
				 errhint("Use an integer, text, uuid, date or timestamp key.")));
	return type;
}

/*
 * The key must be unique (a unique index on exactly that column, without a
 * predicate): scoring walks the table by key and resumes after the largest
 * scored, so two rows with one key would be scored once.
 */
static void
DeptCheckKeyUnique(Oid relid, const char *key_column)
{
	AttrNumber	attnum = get_attnum(relid, key_column);
	Relation	rel = relation_open(relid, AccessShareLock);
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	bool		unique = false;

	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index index;

		if (!HeapTupleIsValid(tup))
			continue;
		index = (Form_pg_index) GETSTRUCT(tup);
		unique |= index->indisunique && index->indnkeyatts == 1 &&
			index->indkey.values[0] == attnum && heap_attisnull(tup, Anum_pg_index_indpred, NULL);
		ReleaseSysCache(tup);
	}
	list_free(indexes);
	relation_close(rel, AccessShareLock);
	if (!unique)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key column \"%s\" of \"%s\" has no unique index", key_column,
						get_rel_name(relid)),
				 errdetail("Scoring walks the table in key order and resumes after the last key scored."),
				 errhint("Score by the primary key, or add a unique index on the column.")));
}

/* name clipped to the 63 bytes of an identifier */
static char *
DeptClipName(char *name)
{
	if (strlen(name) >= NAMEDATALEN)
		name[pg_mbcliplen(name, strlen(name), NAMEDATALEN - 1)] = '\0';
	return name;
}

/*
 * The output table (default "<relation>_<adapter>"; a name without a schema
 * goes beside the relation, since the worker's search_path is pinned), its
 * queue "<output>_queue" and trigger "dept_score_<output>", quoted.
 */
static void
DeptNameOutputs(DeptScoreRequest *req, Oid relid, const char *adapter, const char *output)
{
	char	   *schema = get_namespace_name(get_rel_namespace(relid));
	char	   *rel = psprintf("%s_%s", get_rel_name(relid), adapter);
	char	   *queue;

	if (output != NULL)
	{
		RangeVar   *rv = makeRangeVarFromNameList(stringToQualifiedNameList(output));

		schema = rv->schemaname ? rv->schemaname : schema;
		rel = rv->relname;
	}
	DeptClipName(rel);
	queue = DeptClipName(psprintf("%s_queue", rel));
	if (req->keep_current && strcmp(queue, rel) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("output table name \"%s\" leaves no room for its queue's name", rel)));
	strlcpy(req->output_name, quote_qualified_identifier(schema, rel), sizeof(req->output_name));
	strlcpy(req->queue_name, quote_qualified_identifier(schema, queue), sizeof(req->queue_name));
	strlcpy(req->trigger_name, DeptClipName(psprintf("dept_score_%s", rel)),
			sizeof(req->trigger_name));
}

/*
 * dept_score(adapter, relation, key_column, text_column, output_table)
 * RETURNS bigint: the job id.  The adapter must be usable by the caller
 * (row security), the columns readable, the key unique and ordered.
 */
Datum
dept_score(PG_FUNCTION_ARGS)
{
	char	   *adapter = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			relid = PG_GETARG_OID(1);
	char	   *key_column = text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *text_column = text_to_cstring(PG_GETARG_TEXT_PP(3));
	dsm_segment *seg;
	DeptScoreRequest *req;
	BackgroundWorkerHandle *handle;
	int			spi_level;

	DeptCheckRoleCanLogin(GetUserId());
	DeptCheckRelation(relid);
	DeptCheckColumn(relid, key_column, "key");
	DeptCheckColumn(relid, text_column, "text");
	if (!DeptIsTextType(get_atttype(relid, get_attnum(relid, text_column))))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" is not of a text type", text_column)));
	if (strlen(adapter) >= DEPT_NAME_LEN)
		ereport(ERROR, (errcode(ERRCODE_INVALID_NAME), errmsg("adapter name is too long")));

	seg = dsm_create(sizeof(DeptScoreRequest), 0);
	req = dsm_segment_address(seg);
	memset(req, 0, sizeof(*req));
	SpinLockInit(&req->mutex);
	req->key_type = DeptCheckKeyColumn(relid, key_column);
	DeptCheckKeyUnique(relid, key_column);
	spi_level = DeptSpiConnect();
	/* fails now, as the caller, if the adapter is not there for this role */
	DeptCheckAdapterActive(adapter);
	DeptReapJobs();
	req->job_id = DeptNextJobId();
	DeptSpiFinish(spi_level);

	req->database = MyDatabaseId;
	req->role = GetUserId();
	strlcpy(req->adapter, adapter, sizeof(req->adapter));
	strlcpy(req->relation_name, DeptQualifiedName(relid), sizeof(req->relation_name));
	strlcpy(req->key_column, key_column, sizeof(req->key_column));
	strlcpy(req->text_column, text_column, sizeof(req->text_column));
	req->keep_current = !PG_ARGISNULL(5) && PG_GETARG_BOOL(5);
	DeptNameOutputs(req, relid, adapter, PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4)));
	/* the trigger function lives beside this one, in the extension's schema */
	strlcpy(req->enqueue_function,
			quote_qualified_identifier(get_namespace_name(get_func_namespace(fcinfo->flinfo->fn_oid)),
									   "dept_score_enqueue"), sizeof(req->enqueue_function));

	dsm_pin_segment(seg);
	handle = DeptStartWorker(seg, req->job_id, "dept_score_worker_main", "dept scoring");
	DeptWaitJobRecorded(handle, req);
	{
		int64		job_id = req->job_id;

		dsm_detach(seg);
		PG_RETURN_INT64(job_id);
	}
}

/* ---------------------------------------------------------------------------
 * The worker
 * ---------------------------------------------------------------------------
 */

static void
DeptScoreJobInsert(const DeptScoreRequest *req)
{
	Oid			types[8] = {INT8OID, TEXTOID, OIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, BOOLOID};
	Datum		values[8];
	DeptSavedUser saved;

	values[0] = Int64GetDatum(req->job_id);
	values[1] = CStringGetTextDatum(req->adapter);
	values[2] = ObjectIdGetDatum(req->role);
	values[3] = CStringGetTextDatum(req->relation_name);
	values[4] = CStringGetTextDatum(req->key_column);
	values[5] = CStringGetTextDatum(req->text_column);
	values[6] = CStringGetTextDatum(req->output_name);
	values[7] = BoolGetDatum(req->keep_current);
	DeptWorkerBeginTxn();
	DeptBecomeCatalogOwner(&saved);
	DeptSpiExec("INSERT INTO dept.jobs (id, kind, adapter, owner, status, relation, label_column, "
				"text_column, method, options, worker_pid, started_at) "
				"VALUES ($1, 'score', $2, $3::pg_catalog.regrole, 'running', $4, $5, $6, 'score', "
				"pg_catalog.jsonb_build_object('output_table', $7, 'keep_current', $8), "
				"pg_catalog.pg_backend_pid(), pg_catalog.now())",
				8, types, values, NULL, false, 0);
	DeptRestoreUser(&saved);
	DeptWorkerCommit();
	pgstat_report_activity(STATE_RUNNING, psprintf("scoring %s with %s", req->relation_name,
												   req->adapter));
}

static void
DeptScoreJobUpdate(const DeptScoreRequest *req, const char *status, int64 scored, int64 total,
				   const char *error)
{
	Oid			types[5] = {INT8OID, TEXTOID, INT8OID, INT8OID, TEXTOID};
	Datum		values[5] = {Int64GetDatum(req->job_id), CStringGetTextDatum(status),
		Int64GetDatum(scored), Int64GetDatum(total), error ? CStringGetTextDatum(error) : (Datum) 0};
	char		nulls[5] = {' ', ' ', ' ', ' ', error ? ' ' : 'n'};
	DeptSavedUser saved;

	DeptBecomeCatalogOwner(&saved);
	DeptSpiExec("UPDATE dept.jobs SET status = $2, step = $3, total_steps = $4, rows_read = $3, "
				"error = $5, finished_at = CASE WHEN $2 OPERATOR(pg_catalog.=) 'running' THEN NULL "
				"ELSE pg_catalog.now() END WHERE id OPERATOR(pg_catalog.=) $1",
				5, types, values, nulls, false, 0);
	DeptRestoreUser(&saved);
}

/*
 * keep_current: the queue of keys to score again and the trigger that
 * fills it when a row is inserted, deleted or has its text or key changed
 * (dept_score_enqueue, as the writing role: the queue takes INSERT from
 * PUBLIC, it holds only keys).  Drained at the end of every run.
 */
static void
DeptScoreQueueCreate(const DeptScoreRequest *req)
{
	DeptSpiExec(psprintf("CREATE TABLE IF NOT EXISTS %s (key %s PRIMARY KEY)", req->queue_name,
						 format_type_be_qualified(req->key_type)), 0, NULL, NULL, NULL, false, 0);
	DeptSpiExec(psprintf("GRANT INSERT ON %s TO PUBLIC", req->queue_name),
				0, NULL, NULL, NULL, false, 0);
	DeptSpiExec(psprintf("CREATE OR REPLACE TRIGGER %s AFTER INSERT OR DELETE OR UPDATE OF %s, %s "
						 "ON %s FOR EACH ROW EXECUTE FUNCTION %s(%s, %s)",
						 quote_identifier(req->trigger_name), quote_identifier(req->text_column),
						 quote_identifier(req->key_column), req->relation_name,
						 req->enqueue_function, quote_literal_cstr(req->queue_name),
						 quote_literal_cstr(req->key_column)), 0, NULL, NULL, NULL, false, 0);
}

/*
 * Create the output table if it does not exist (as the role, beside the
 * relation), count the rows to score, and find where to resume: the
 * largest key already scored, or none.  Returns the rows already scored.
 */
static int64
DeptScorePrepare(const DeptScoreRequest *req, int64 *total, Datum *resume, bool *has_resume)
{
	bool		isnull;
	int64		done;

	DeptSpiExec(psprintf("CREATE TABLE IF NOT EXISTS %s (key %s PRIMARY KEY, label text, "
						 "probability real, version integer, scored_at timestamptz)",
						 req->output_name, format_type_be_qualified(req->key_type)),
				0, NULL, NULL, NULL, false, 0);
	if (req->keep_current)
		DeptScoreQueueCreate(req);
	DeptSpiExec(psprintf("SELECT pg_catalog.count(*) FROM %s", req->relation_name),
				0, NULL, NULL, NULL, true, 1);
	*total = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	DeptSpiExec(psprintf("SELECT pg_catalog.count(*), pg_catalog.max(key) FROM %s", req->output_name),
				0, NULL, NULL, NULL, true, 1);
	done = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	*resume = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	*has_resume = !isnull;
	return done;
}

/* Upsert one batch of results. */
static void
DeptScoreStore(const DeptScoreRequest *req, Datum *keys, Datum *labels, bool *label_nulls,
			   Datum *probs, int n, int version)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n},
				lbs[1] = {1};
	Oid			types[4] = {get_array_type(req->key_type), TEXTARRAYOID, FLOAT4ARRAYOID, INT4OID};
	Datum		values[4];

	get_typlenbyvalalign(req->key_type, &typlen, &typbyval, &typalign);
	values[0] = PointerGetDatum(construct_array(keys, n, req->key_type, typlen, typbyval, typalign));
	values[1] = PointerGetDatum(construct_md_array(labels, label_nulls, 1, dims, lbs, TEXTOID, -1,
												   false, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_md_array(probs, label_nulls, 1, dims, lbs, FLOAT4OID,
												   sizeof(float4), true, TYPALIGN_INT));
	values[3] = Int32GetDatum(version);
	DeptSpiExec(psprintf("INSERT INTO %s (key, label, probability, version, scored_at) "
						 "SELECT k, l, p, $4, pg_catalog.now() "
						 "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3)) AS r(k, l, p) "
						 "ON CONFLICT (key) DO UPDATE SET label = EXCLUDED.label, "
						 "probability = EXCLUDED.probability, version = EXCLUDED.version, "
						 "scored_at = EXCLUDED.scored_at", req->output_name),
				4, types, values, NULL, false, 0);
}

/*
 * Score the next batch after *last (or from the start); returns its rows,
 * 0 at the end.  Runs inside the worker's transaction.
 */
/*
 * Score the (key, text) rows SPI just returned and upsert them; returns
 * their number and sets *last to the last key.
 */
static int
DeptScoreFetched(const DeptScoreRequest *req, Datum *last)
{
	Datum		keys[DEPT_SCORE_BATCH],
				labels[DEPT_SCORE_BATCH],
				probs[DEPT_SCORE_BATCH];
	bool		nulls[DEPT_SCORE_BATCH];
	const char *texts[DEPT_SCORE_BATCH];
	size_t		lens[DEPT_SCORE_BATCH];
	char	   *best[DEPT_SCORE_BATCH];
	float		prob[DEPT_SCORE_BATCH];
	int			n = (int) Min(SPI_processed, DEPT_SCORE_BATCH),
				k = 0,
				version;
	int16		typlen;
	bool		typbyval;

	get_typlenbyval(req->key_type, &typlen, &typbyval);
	for (int i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		t;

		keys[i] = datumCopy(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull),
							typbyval, typlen);
		t = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &nulls[i]);
		if (!nulls[i])
		{
			text	   *tt = DatumGetTextPCopy(t);

			texts[k] = VARDATA_ANY(tt);
			lens[k++] = VARSIZE_ANY_EXHDR(tt);
		}
	}
	if (n == 0)
		return 0;
	version = DeptPredictLabels(req->adapter, texts, lens, k, best, prob);
	k = 0;
	for (int i = 0; i < n; i++)
	{
		labels[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(best[k]);
		probs[i] = nulls[i] ? (Datum) 0 : Float4GetDatum(prob[k]);
		k += nulls[i] ? 0 : 1;
	}
	DeptScoreStore(req, keys, labels, nulls, probs, n, version);
	*last = keys[n - 1];
	return n;
}

/*
 * Score the next batch after *last (or from the start); returns its rows,
 * 0 at the end.  Runs inside the worker's transaction.
 */
static int
DeptScoreBatch(const DeptScoreRequest *req, Datum *last, bool *has_last)
{
	char	   *sql = psprintf("SELECT %s, %s::pg_catalog.text FROM %s %s ORDER BY 1 LIMIT %d",
							   quote_identifier(req->key_column), quote_identifier(req->text_column),
							   req->relation_name,
							   *has_last ? psprintf("WHERE %s OPERATOR(pg_catalog.>) $1",
													quote_identifier(req->key_column)) : "",
							   DEPT_SCORE_BATCH);
	Oid			types[1] = {req->key_type};
	int			n;

	DeptSpiExec(sql, *has_last ? 1 : 0, types, last, NULL, true, 0);
	n = DeptScoreFetched(req, last);
	*has_last |= n > 0;
	return n;
}

/*
 * Take up to a batch of keys off the queue and score them again: their old
 * results go, the rows still there are scored (a deleted row leaves no
 * result).  Returns the keys taken, 0 when the queue is empty.
 */
static int
DeptScoreDrainBatch(const DeptScoreRequest *req)
{
	Oid			types[1] = {get_array_type(req->key_type)};
	Datum		keys[1];
	Datum		last;
	int			taken;

	DeptSpiExec(psprintf("WITH taken AS (DELETE FROM %s WHERE key OPERATOR(pg_catalog.=) ANY (ARRAY("
						 "SELECT key FROM %s ORDER BY 1 LIMIT %d FOR UPDATE SKIP LOCKED)) RETURNING key) "
						 "SELECT pg_catalog.array_agg(key), pg_catalog.count(*) FROM taken",
						 req->queue_name, req->queue_name, DEPT_SCORE_BATCH),
				0, NULL, NULL, NULL, false, 1);
	{
		bool		isnull;

		taken = (int) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
												  2, &isnull));
		keys[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (taken == 0)
			return 0;
		keys[0] = PointerGetDatum(DatumGetArrayTypePCopy(keys[0]));
	}
	DeptSpiExec(psprintf("DELETE FROM %s WHERE key OPERATOR(pg_catalog.=) ANY ($1)", req->output_name),
				1, types, keys, NULL, false, 0);
	DeptSpiExec(psprintf("SELECT %s, %s::pg_catalog.text FROM %s WHERE %s OPERATOR(pg_catalog.=) ANY ($1) "
						 "ORDER BY 1", quote_identifier(req->key_column),
						 quote_identifier(req->text_column), req->relation_name,
						 quote_identifier(req->key_column)), 1, types, keys, NULL, true, 0);
	(void) DeptScoreFetched(req, &last);
	return taken;
}

/* A copy of key in cxt (reset first): the last key outlives its batch's transaction. */
static Datum
DeptKeepKey(MemoryContext cxt, const DeptScoreRequest *req, Datum key)
{
	MemoryContext old;
	Datum		copy;

	MemoryContextReset(cxt);
	old = MemoryContextSwitchTo(cxt);
	copy = datumCopy(key, get_typbyval(req->key_type), get_typlen(req->key_type));
	MemoryContextSwitchTo(old);
	return copy;
}

static void
DeptScoreRun(const DeptScoreRequest *req)
{
	int64		total,
				scored;
	Datum		last = (Datum) 0;
	bool		has_last;
	int			n;
	MemoryContext key_cxt = AllocSetContextCreate(TopMemoryContext, "dept scoring key",
												  ALLOCSET_SMALL_SIZES);

	DeptWorkerBeginTxn();
	scored = DeptScorePrepare(req, &total, &last, &has_last);
	DeptScoreJobUpdate(req, "running", scored, total, NULL);
	if (has_last)
		last = DeptKeepKey(key_cxt, req, last);
	DeptWorkerCommit();
	do
	{
		CHECK_FOR_INTERRUPTS();
		DeptWorkerBeginTxn();
		n = DeptScoreBatch(req, &last, &has_last);
		scored += n;
		DeptScoreJobUpdate(req, "running", scored, Max(total, scored), NULL);
		if (n > 0)
			last = DeptKeepKey(key_cxt, req, last);
		DeptWorkerCommit();
	} while (n > 0);
	/* keys the trigger queued: changed rows, and new ones below the last key */
	while (req->keep_current)
	{
		CHECK_FOR_INTERRUPTS();
		DeptWorkerBeginTxn();
		n = DeptScoreDrainBatch(req);
		scored += n;
		DeptScoreJobUpdate(req, "running", scored, Max(total, scored), NULL);
		DeptWorkerCommit();
		if (n == 0)
			break;
	}
	DeptWorkerBeginTxn();
	DeptScoreJobUpdate(req, "succeeded", scored, Max(total, scored), NULL);
	DeptWorkerCommit();
}

void
dept_score_worker_main(Datum arg)
{
	dsm_segment *volatile seg;
	DeptScoreRequest *shared;
	DeptScoreRequest req;

	seg = DeptWorkerAttach(arg, "scoring");
	shared = dsm_segment_address(seg);
	req = *shared;
	DeptWorkerConnect(req.database, req.role, "scoring", req.job_id);
	PG_TRY();
	{
		DeptScoreJobInsert(&req);
		SpinLockAcquire(&shared->mutex);
		shared->recorded = true;
		SpinLockRelease(&shared->mutex);
		dsm_detach(seg);
		seg = NULL;
		DeptScoreRun(&req);
	}
	PG_CATCH();
	{
		MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "dept scoring error",
												  ALLOCSET_DEFAULT_SIZES);
		ErrorData  *edata;
		bool		cancelled;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		cancelled = edata->sqlerrcode == ERRCODE_QUERY_CANCELED;
		ereport(LOG,
				(errmsg("dept: scoring job " INT64_FORMAT " %s: %s", req.job_id,
						cancelled ? "cancelled" : "failed", edata->message)));
		DeptRecordJobEnd(req.job_id, cancelled ? "cancelled" : "failed",
						 cancelled ? NULL : (edata->message ? edata->message : "unknown error"));
	}
	PG_END_TRY();
	if (seg)
		dsm_detach(seg);
	proc_exit(0);
}
