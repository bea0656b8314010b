/*
 * train_worker.c: the training job's background worker: records the job,
 * reads the rows as the calling role (or a sample of them), trains, and
 * stores the adapter and the outcome, each in a fresh transaction
 * (docs/design.md 4, "Job life cycle").
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


static const char *const job_state_names[] = {"queued", "running", "succeeded", "failed", "cancelled"};

/* ---------------------------------------------------------------------------
 * The worker
 * ---------------------------------------------------------------------------
 */

/* The search_path nest level of the worker's open transaction (DeptSpiConnect). */
static int	worker_spi_level;

void
DeptWorkerBeginTxn(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	worker_spi_level = DeptSpiConnect();
	PushActiveSnapshot(GetTransactionSnapshot());
}

void
DeptWorkerCommit(void)
{
	DeptSpiFinish(worker_spi_level);
	PopActiveSnapshot();
	CommitTransactionCommand();
}

static void
DeptSetState(DeptTrainRequest *req, DeptJobState state)
{
	SpinLockAcquire(&req->mutex);
	req->state = state;
	SpinLockRelease(&req->mutex);
}

/* Error out (as a cancel) when the waiting caller has asked the job to stop or has gone. */
static void
DeptCheckCancelRequested(DeptTrainRequest *req)
{
	bool		cancel;

	SpinLockAcquire(&req->mutex);
	cancel = req->cancel_requested;
	SpinLockRelease(&req->mutex);
	if (cancel)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("training job " INT64_FORMAT " was cancelled by its waiting caller",
						req->job_id)));
}

/* Record the job as running, with this worker's pid, in its own transaction. */
static void
DeptJobInsert(DeptTrainRequest *req)
{
	Oid			types[10] = {INT8OID, TEXTOID, OIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	JSONBOID, TEXTOID, INT4OID};
	Datum		values[10];
	DeptSavedUser saved;

	DeptWorkerBeginTxn();
	values[0] = Int64GetDatum(req->job_id);
	values[1] = CStringGetTextDatum(req->adapter);
	values[2] = ObjectIdGetDatum(req->role);
	values[3] = CStringGetTextDatum(req->relation_name);
	values[4] = CStringGetTextDatum(req->label_column);
	values[5] = CStringGetTextDatum(req->text_column);
	values[6] = CStringGetTextDatum(req->method);
	values[7] = DirectFunctionCall1(jsonb_in, CStringGetDatum(req->options_json));
	values[8] = CStringGetTextDatum(req->activate);
	values[9] = Int32GetDatum(MyProcPid);
	DeptBecomeCatalogOwner(&saved);
	DeptSpiExec("INSERT INTO dept.jobs (id, adapter, owner, status, relation, label_column, "
				"text_column, method, options, activate, worker_pid, started_at) "
				"VALUES ($1, $2, $3::pg_catalog.regrole, 'running', $4, $5, $6, $7, $8, $9, $10, "
				"pg_catalog.now())",
				10, types, values, NULL, false, 0);
	DeptRestoreUser(&saved);
	DeptWorkerCommit();
	pgstat_report_activity(STATE_RUNNING, psprintf("training adapter %s", req->adapter));
}

/*
 * The exact estimate once the rows are read, before any training buffer
 * exists: every text and label held, the classes, and for T5 the longest
 * label in tokens (with "</s>").
 */
static void
DeptCheckMemoryOfRows(DeptTrainRequest *req, const Backbone *bb, const Dataset *ds, double held)
{
	DeptMemoryEstimate est;
	int			max_label = 0;

	if (backbone_has_text_head(bb))
	{
		int32_t    *ids = palloc(sizeof(int32_t) * bb->max_tokens);

		for (int c = 0; c < ds->n_classes; c++)
		{
			int			n = bb->ops->tokenize(bb, ds->class_names[c], strlen(ds->class_names[c]),
											  ids, bb->max_tokens);

			max_label = Max(max_label, n);
		}
		pfree(ids);
	}
	DeptEstimateTrainingMemory(bb, req->model_dir, &req->opt, ds->n_classes, ds->n_rows, held,
							   max_label, &est);
	ereport(LOG,
			(errmsg("dept: training job " INT64_FORMAT " estimated at %.0f bytes (activations %.0f, batch %.0f, adapter %.0f, rows %.0f, model %.0f, process %.0f)",
					req->job_id, est.total, est.activations, est.workspace, est.adapter,
					est.rows, est.weights, est.process)));
	DeptCheckTrainingMemory(&est, &req->opt, req->max_training_memory);
}

/* Publish the read phase's progress for a waiting caller's NOTICEs. */
static void
DeptPublishRowsRead(DeptTrainRequest *req, int64 rows)
{
	SpinLockAcquire(&req->mutex);
	req->rows_read = rows;
	SpinLockRelease(&req->mutex);
}

/* Errors unless the classes fit what the adapter format stores, before hours of training. */
static void
DeptCheckClassesStorable(const DeptTrainRequest *req, const Dataset *ds)
{
	if (ds->n_classes > ADAPTER_IO_MAX_CLASSES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("cannot train on %s: %d distinct labels, at most %d are supported",
						req->relation_name, ds->n_classes, ADAPTER_IO_MAX_CLASSES)));
	for (int c = 0; c < ds->n_classes; c++)
		if (strlen(ds->class_names[c]) > ADAPTER_IO_MAX_CLASS_NAME)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("cannot train on %s: a label is %zu bytes long, at most %d are supported",
							req->relation_name, strlen(ds->class_names[c]),
							ADAPTER_IO_MAX_CLASS_NAME)));
}

/*
 * Add one row to ds: text, or for a pair read apart (pair native or
 * siamese) its two texts separated by a NUL byte (DeptPairInput); a NULL
 * text or label is counted as skipped.
 */
void
DeptDatasetAddRow(Dataset *ds, const char *text, size_t text_len, const char *label,
				  size_t label_len, int pair)
{
	NnError		err;
	NnStatus	st;
	const char *nul = text && pair != ADAPTER_PAIR_JOINED ? memchr(text, '\0', text_len) : NULL;

	if (pair == ADAPTER_PAIR_JOINED)
		st = dataset_add(ds, text, text_len, label, label_len, &err);
	else if (nul == NULL)
		st = dataset_add_pair(ds, NULL, 0, NULL, 0, label, label_len, &err);
	else
		st = dataset_add_pair(ds, text, nul - text, nul + 1, text_len - (nul - text) - 1, label,
							  label_len, &err);
	if (st != NN_OK)
		DeptReportNnError(&err, "could not read training rows");
}

/*
 * The text a row of the read query gives: column 1 (the text, or a pair
 * joined as DeptTextSql formats it), or for a pair read apart its columns
 * 3 and 4 as DeptPairInput joins them for the dataset (into buf).  NULL
 * when null.
 */
static const char *
DeptRowText(uint64 i, int pair, StringInfo buf, size_t *len)
{
	bool		an,
				bn;
	Datum		a,
				b;
	text	   *at,
			   *bt;

	if (pair == ADAPTER_PAIR_JOINED)
		return NULL;
	a = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &an);
	b = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 4, &bn);
	if (an || bn)
		return NULL;
	at = DatumGetTextPP(a);
	bt = DatumGetTextPP(b);
	resetStringInfo(buf);
	appendBinaryStringInfo(buf, VARDATA_ANY(at), VARSIZE_ANY_EXHDR(at));
	appendStringInfoChar(buf, '\0');
	appendBinaryStringInfo(buf, VARDATA_ANY(bt), VARSIZE_ANY_EXHDR(bt));
	*len = buf->len;
	return buf->data;
}

/*
 * Take one fetched batch of (text, label) rows: into the dataset, or
 * offered to the sampler (NULL rows are counted as skipped either way).
 * A pair read apart travels as its two texts (DeptRowText); which rows are
 * test rows is decided on the joined text either way, so every encoding
 * holds out the same rows.  Returns the bytes of text and label now held.
 */
static double
DeptTakeRows(Dataset *ds, DeptSampler *sampler, DeptTestSet *ts, double fraction, double held,
			 int pair, StringInfo buf)
{
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		text_null,
					label_null;
		Datum		t = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &text_null);
		Datum		l = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &label_null);
		text	   *tt = text_null ? NULL : DatumGetTextPP(t);
		text	   *lt = label_null ? NULL : DatumGetTextPP(l);
		bool		usable = tt && lt && VARSIZE_ANY_EXHDR(lt) > 0;
		size_t		len = tt ? VARSIZE_ANY_EXHDR(tt) : 0;
		const char *payload = tt ? VARDATA_ANY(tt) : NULL;

		if (tt && pair != ADAPTER_PAIR_JOINED)
			payload = DeptRowText(i, pair, buf, &len);
		/* test rows first: never sampled, trained or validated on (train_test.c) */
		if (usable && DeptIsTestRow(VARDATA_ANY(tt), VARSIZE_ANY_EXHDR(tt), VARDATA_ANY(lt),
									VARSIZE_ANY_EXHDR(lt), fraction))
			DeptTestSetAdd(ts, payload, len, VARDATA_ANY(lt), VARSIZE_ANY_EXHDR(lt));
		else if (sampler && usable)
			DeptSamplerOffer(sampler, payload, len, VARDATA_ANY(lt), VARSIZE_ANY_EXHDR(lt));
		else if (sampler)
			ds->skipped++;
		else
		{
			DeptDatasetAddRow(ds, payload, len, lt ? VARDATA_ANY(lt) : NULL,
							  lt ? VARSIZE_ANY_EXHDR(lt) : 0, pair);
			held += usable ? len + VARSIZE_ANY_EXHDR(lt) : 0;
		}
	}
	return sampler ? DeptSamplerHeldBytes(sampler) : held;
}

/*
 * Read (text, label) rows through a cursor, as the calling role, checking
 * the memory estimate with the rows held so far after every fetch: a table
 * larger than dept.max_training_memory fails while reading, not by
 * exhausting memory.  With max_rows, a seeded sample is held instead
 * (train_sample.c), so memory is bounded by max_rows.
 */
static Dataset *
DeptReadRows(DeptTrainRequest *req, const Backbone *bb, DeptTestSet *ts)
{
	Dataset    *ds = dataset_new();
	DeptSampler *sampler;
	char	   *sql;
	SPIPlanPtr	plan;
	Portal		portal;
	NnError		err;
	double		held = 0;
	int64		fetched = 0;
	DeptMemoryEstimate est;
	StringInfoData buf;

	if (ds == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	DeptWorkerBeginTxn();
	initStringInfo(&buf);
	DeptResolveTestFraction(req);
	sampler = req->max_rows > 0 || req->max_rows_per_class > 0 ? DeptSamplerBegin(req) : NULL;
	/* a pair read apart: its two texts too (the joined one decides the test rows) */
	sql = psprintf("SELECT (%s)::pg_catalog.text, %s::pg_catalog.text%s FROM %s",
				   DeptTextSql(req->text_column, req->text_column2, NULL, NULL), quote_identifier(req->label_column),
				   req->opt.pair == ADAPTER_PAIR_JOINED ? "" :
				   psprintf(", %s::pg_catalog.text, %s::pg_catalog.text",
							quote_identifier(req->text_column), quote_identifier(req->text_column2)),
				   DeptQualifiedName(req->relation));
	plan = SPI_prepare(sql, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", sql);
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, 1000);
		if (SPI_processed == 0)
			break;
		fetched += SPI_processed;
		held = DeptTakeRows(ds, sampler, ts, req->test_fraction, held, req->opt.pair, &buf);
		SPI_freetuptable(SPI_tuptable);
		DeptPublishRowsRead(req, fetched);
		CHECK_FOR_INTERRUPTS();
		DeptCheckCancelRequested(req);
		if (req->max_training_memory >= 0)
		{
			double		rows = sampler && req->max_rows > 0 ? Min(fetched, req->max_rows) : ds->n_rows;

			DeptEstimateTrainingMemory(bb, req->model_dir, &req->opt, 2, rows,
									   held + DeptTestSetBytes(ts), 0, &est);
			DeptCheckTrainingMemory(&est, &req->opt, req->max_training_memory);
		}
	}
	SPI_cursor_close(portal);
	DeptWorkerCommit();
	if (sampler)
		DeptSamplerFinish(sampler, ds, req->opt.pair);
	/* a regression on T5's text-to-text head trains on 0.2-step bins (train.h) */
	if ((req->regression ? dataset_finish_regression(ds, req->label_column, &err)
		 : dataset_finish(ds, &err)) != NN_OK ||
		train_prepare_regression(bb, &req->opt, ds, &err) != NN_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot train on %s: %s", req->relation_name, err.msg)));
	DeptCheckClassesStorable(req, ds);
	DeptCheckMemoryOfRows(req, bb, ds, held + DeptTestSetBytes(ts));
	SpinLockAcquire(&req->mutex);
	req->rows_test = DeptTestSetRows(ts);
	req->rows_test_found = DeptTestSetFound(ts);
	req->rows_used = ds->n_rows;
	SpinLockRelease(&req->mutex);
	return ds;
}

/*
 * Called by the training loop after every step: publish progress, write it
 * to dept.jobs at most twice a second, and stop when cancelled (a waiting
 * caller's flag, or a query-cancel signal from dept_cancel).
 */
static bool
DeptWorkerProgress(void *arg, const TrainProgress *p)
{
	static TimestampTz last_write = 0;
	DeptTrainRequest *req = arg;
	bool		cancel;

	SpinLockAcquire(&req->mutex);
	req->progress = *p;
	cancel = req->cancel_requested;
	SpinLockRelease(&req->mutex);
	CHECK_FOR_INTERRUPTS();
	if (cancel)
		return false;
	if (TimestampDifferenceExceeds(last_write, GetCurrentTimestamp(), 500) ||
		p->step == p->total_steps)
	{
		Oid			types[8] = {INT8OID, INT8OID, INT8OID, INT4OID, FLOAT8OID, FLOAT8OID,
		FLOAT8OID, FLOAT8OID};
		Datum		values[8];
		char		nulls[8] = "        ";
		DeptSavedUser saved;

		values[0] = Int64GetDatum(req->job_id);
		values[1] = Int64GetDatum(p->step);
		values[2] = Int64GetDatum(p->total_steps);
		values[3] = Int32GetDatum(p->epoch);
		values[4] = Float8GetDatum(p->loss);
		values[5] = Float8GetDatum(p->valid_accuracy);
		nulls[5] = p->valid_accuracy < 0 || req->regression ? 'n' : ' ';
		values[6] = Float8GetDatum(p->rows_per_second);
		values[7] = Float8GetDatum(p->eta_seconds);
		DeptWorkerBeginTxn();
		DeptBecomeCatalogOwner(&saved);
		DeptSpiExec("UPDATE dept.jobs SET step = $2, total_steps = $3, epoch = $4, loss = $5, "
					"valid_accuracy = $6, rows_per_second = $7, eta_seconds = $8 "
					"WHERE id OPERATOR(pg_catalog.=) $1",
					8, types, values, nulls, false, 0);
		DeptRestoreUser(&saved);
		DeptWorkerCommit();
		last_write = GetCurrentTimestamp();
	}
	return !cancel;
}

static void
DeptAppendMetricsJson(StringInfo buf, const ClassMetrics *m, char **class_names)
{
	if (m->regression)
	{
		appendStringInfo(buf, "\"valid_pearson\": %.6f, \"valid_spearman\": %.6f, "
						 "\"valid_mse\": %.6f, \"valid_rows\": %lld", m->pearson, m->spearman,
						 m->mse, (long long) m->total);
		return;
	}
	appendStringInfo(buf, "\"valid_accuracy\": %.6f, \"valid_macro_f1\": %.6f, \"valid_rows\": %lld, ",
					 m->accuracy, m->macro_f1, (long long) m->total);
	DeptAppendClassMetricsJson(buf, m, class_names);
}

/*
 * A probe's strength as JSON members: ", \"l2\": lambda" and, when the
 * solver chose it, ", \"C\": C" (train/probe_fit.h: lambda = 1 / (C n)).
 */
char *
DeptProbeJson(float l2, double c)
{
	return c > 0 ? psprintf(", \"l2\": %g, \"C\": %g", l2, c) : psprintf(", \"l2\": %g", l2);
}

/* The version's hyperparameters as JSON: the options that shaped it, where it started, what it read. */
static char *
DeptHyperparametersJson(const DeptTrainRequest *req, const Backbone *bb, const Dataset *ds,
						const TrainResult *res, const char *auto_json)
{
	const Adapter *a = res->adapter;
	StringInfoData hyper;

	initStringInfo(&hyper);
	appendStringInfo(&hyper,
					 "{\"method\": \"%s\", \"prompt_length\": %d, \"rank\": %d, \"max_length\": %d, "
					 "\"alpha\": %g, \"subspaces\": %d, \"subspace_rank\": %d, \"lr\": %g, "
					 "\"lowrank_lr\": %g, \"ept_lr\": %g, \"head_lr\": %g, \"weight_decay\": %g, "
					 "\"epochs\": %d, \"max_steps\": %ld, \"batch_size\": %d, \"valid_fraction\": %g, "
					 "\"test_fraction\": %g, "
					 "\"seed\": %llu, \"trainable_params\": %zu, \"precision\": \"%s\", "
					 "\"init_text\": ",
					 req->method, adapter_prompt_rows(&a->cfg),
					 (a->cfg.method == ADAPTER_DEPT || a->cfg.method == ADAPTER_EPT) ? a->cfg.rank : 0,
					 a->cfg.max_len,
					 a->cfg.alpha, a->cfg.subspaces, a->cfg.subspace_rank, req->opt.lr_prompt,
					 req->opt.lr_lowrank, req->opt.lr_ept, req->opt.lr_head, req->opt.weight_decay,
					 a->cfg.method == ADAPTER_PROBE ? req->opt.probe_epochs : req->opt.epochs,
					 req->opt.max_steps, req->opt.batch_size,
					 req->opt.valid_fraction, req->test_fraction, (unsigned long long) req->opt.seed, res->param_count,
					 req->opt.bf16 ? "bfloat16" : "float32");
	escape_json(&hyper, req->init_text);
	appendStringInfoString(&hyper, ", \"model\": ");
	escape_json(&hyper, req->model_name);
	appendStringInfoString(&hyper, ", \"family\": ");
	escape_json(&hyper, bb->ops->family);
	appendStringInfo(&hyper, ", \"head\": \"%s\", \"task\": \"%s\"",
					 a->cfg.head == ADAPTER_HEAD_TEXT ? "text" : "linear",
					 a->cfg.regression ? "regression" : "classification");
	if (a->cfg.method == ADAPTER_PROBE && req->opt.probe_search)
		appendStringInfoString(&hyper, DeptProbeJson(res->probe_l2, res->probe_c));
	if (a->cfg.regression && a->cfg.head == ADAPTER_HEAD_LINEAR)
		appendStringInfo(&hyper, ", \"target_mean\": %.9g, \"target_sd\": %.9g",
						 a->target.w[0], a->target.w[1]);
	else if (a->cfg.regression)
		/* the labels are the bins; a prediction is their probability-weighted mean */
		appendStringInfo(&hyper, ", \"bins\": %d, \"bin_value\": \"mean\"", a->cfg.n_classes);
	if (req->text_column2[0] != '\0')
	{
		/* a sentence pair: dept_predict(adapter, a, b) formats it as training did */
		appendStringInfoString(&hyper, ", \"text_columns\": [");
		escape_json(&hyper, req->text_column);
		appendStringInfoString(&hyper, ", ");
		escape_json(&hyper, req->text_column2);
		appendStringInfo(&hyper, "], \"pair_encoding\": \"%s\"",
						 a->cfg.pair == ADAPTER_PAIR_NATIVE ? "native" :
						 a->cfg.pair == ADAPTER_PAIR_SIAMESE ? "siamese" : "joined");
	}
	if (req->init_from[0] != '\0')
	{
		appendStringInfoString(&hyper, ", \"init_from\": ");
		escape_json(&hyper, req->init_from);
		appendStringInfo(&hyper, ", \"init_from_version\": %d, \"init_head\": %s",
						 req->init_from_version, req->opt.init_head ? "true" : "false");
	}
	/* what was read and what was used (train_sample.c) */
	appendStringInfo(&hyper, ", \"max_rows\": " INT64_FORMAT ", \"max_rows_per_class\": " INT64_FORMAT
					 ", \"sample\": {\"method\": \"%s\", \"rows_read\": " INT64_FORMAT
					 ", \"rows_used\": %d, \"rows_test\": " INT64_FORMAT ", \"test_rows_found\": "
					 INT64_FORMAT "}", req->max_rows, req->max_rows_per_class, req->sample_method,
					 req->rows_read, ds->n_rows, req->rows_test, req->rows_test_found);
	/* method 'auto': every candidate, and which won (train_auto.c) */
	if (auto_json)
		appendStringInfo(&hyper, ", \"auto\": %s", auto_json);
	appendStringInfoChar(&hyper, '}');
	return hyper.data;
}

/*
 * The version's metrics as JSON: validation (when rows were held out for
 * it), the test report (test_json, or none) and the run's figures.
 */
static char *
DeptMetricsJson(const Dataset *ds, const TrainResult *res, bool has_valid, const char *test_json)
{
	StringInfoData metrics;

	initStringInfo(&metrics);
	appendStringInfoChar(&metrics, '{');
	if (has_valid)
	{
		DeptAppendMetricsJson(&metrics, res->valid_metrics, ds->class_names);
		appendStringInfoString(&metrics, ", ");
	}
	if (test_json)
		appendStringInfo(&metrics, "\"test\": %s, ", test_json);
	appendStringInfo(&metrics,
					 "\"steps\": %ld, \"best_step\": %ld, \"epochs\": %d, \"train_seconds\": %.3f, "
					 "\"tokens_per_second\": %.1f}",
					 res->steps, res->best_step, res->epochs_run, res->seconds,
					 res->tokens_per_second);
	return metrics.data;
}

/* Serialize and store the trained adapter and its test report; mark the job succeeded. */
static void
DeptStoreResult(DeptTrainRequest *req, const Backbone *bb, Dataset *ds, TrainResult *res,
				const DeptTestSet *ts, const char *auto_json)
{
	const Adapter *a = res->adapter;
	uint8_t    *bytes = NULL;
	size_t		len = 0;
	NnError		err;
	DeptAdapterRow row = {0};
	char	   *hyper;
	char	   *test_json;
	bytea	   *tensors;
	bool		activated;
	bool		has_valid;

	if (adapter_serialize(a, bb->fingerprint, (const char *const *) ds->class_names, &bytes,
						  &len, &err) != NN_OK)
		DeptReportNnError(&err, "could not serialize the adapter");
	tensors = palloc(VARHDRSZ + len);
	SET_VARSIZE(tensors, VARHDRSZ + len);
	memcpy(VARDATA(tensors), bytes, len);
	free(bytes);
	/* the stored tensors score the test rows, as dept_evaluate will */
	test_json = DeptTestReportJson(bb, (const uint8_t *) VARDATA(tensors), len, ts,
								   req->test_fraction);

	hyper = DeptHyperparametersJson(req, bb, ds, res, auto_json);

	/*
	 * With no rows held out, train.c selects its checkpoint on training
	 * rows: those figures are not validation metrics and are not stored as
	 * such (docs/dba.md, "Activation").
	 */
	has_valid = res->valid_metrics != NULL && res->n_valid > 0;

	row.name = req->adapter;
	row.owner = req->role;
	row.method = req->method;
	row.backbone = req->model_name;
	row.fingerprint = bb->fingerprint;
	row.labels = ds->class_names;
	row.n_labels = ds->n_classes;
	row.hyperparameters_json = hyper;
	row.metrics_json = DeptMetricsJson(ds, res, has_valid, test_json);
	row.regression = a->cfg.regression;
	row.valid_accuracy = !has_valid ? 0.0 : a->cfg.regression ? res->valid_metrics->mse
		: res->valid_metrics->accuracy;
	row.has_valid_accuracy = has_valid;
	row.job_id = req->job_id;
	row.relation = req->relation_name;
	row.label_column = req->label_column;
	row.text_column = req->text_column;
	row.train_rows = res->n_train;
	row.valid_rows = res->n_valid;
	row.skipped_rows = ds->skipped;
	row.tensors = tensors;

	DeptWorkerBeginTxn();
	req->version = DeptStoreAdapter(&row, req->activate, &activated);
	{
		Oid			types[5] = {INT8OID, INT4OID, INT8OID, INT8OID, FLOAT8OID};
		Datum		values[5] = {Int64GetDatum(req->job_id), Int32GetDatum(req->version),
			Int64GetDatum(ds->n_rows), Int64GetDatum(ds->skipped),
		Float8GetDatum(row.valid_accuracy)};
		char		nulls[5] = {' ', ' ', ' ', ' ', has_valid && !row.regression ? ' ' : 'n'};
		DeptSavedUser saved;

		DeptBecomeCatalogOwner(&saved);
		DeptSpiExec("UPDATE dept.jobs SET status = 'succeeded', finished_at = pg_catalog.now(), "
					"adapter_version = $2, rows_read = $3, rows_skipped = $4, valid_accuracy = $5 "
					"WHERE id OPERATOR(pg_catalog.=) $1", 5, types, values, nulls, false, 0);
		DeptRestoreUser(&saved);
	}
	DeptWorkerCommit();
	SpinLockAcquire(&req->mutex);
	req->progress.valid_accuracy = !has_valid ? -1 : row.regression ? res->valid_metrics->pearson
		: row.valid_accuracy;
	req->valid_pearson = has_valid && row.regression ? res->valid_metrics->pearson : 0;
	req->valid_spearman = has_valid && row.regression ? res->valid_metrics->spearman : 0;
	req->valid_mse = has_valid && row.regression ? res->valid_metrics->mse : -1;
	SpinLockRelease(&req->mutex);
	if (!activated && strcmp(req->activate, "if_better") == 0)
		ereport(LOG,
				(errmsg("dept: adapter \"%s\" version %d stored but not activated: %s",
						req->adapter, req->version,
						!has_valid ? "it has no validation rows to compare with the active version"
						: row.regression ? "its validation MSE is above the active version's"
						: "its validation accuracy is below the active version's")));
}

/* Record a job's end (status, error or NULL) in dept.jobs, in a transaction of its own. */
void
DeptRecordJobEnd(int64 job_id, const char *status, const char *error)
{
	Oid			types[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', error ? ' ' : 'n'};
	DeptSavedUser saved;

	values[0] = Int64GetDatum(job_id);
	values[1] = CStringGetTextDatum(status);
	values[2] = error ? CStringGetTextDatum(error) : (Datum) 0;
	DeptWorkerBeginTxn();
	DeptBecomeCatalogOwner(&saved);
	DeptSpiExec("UPDATE dept.jobs SET status = $2, error = $3, finished_at = pg_catalog.now() "
				"WHERE id OPERATOR(pg_catalog.=) $1",
				3, types, values, nulls, false, 0);
	DeptRestoreUser(&saved);
	DeptWorkerCommit();
}

/*
 * SELECT the tensors and version of the adapter init_from names (at
 * init_from_version, else its active version) as the current role: row
 * security decides; an error when there is none.  Inside an open SPI
 * connection; the row is SPI_tuptable's.
 */
void
DeptSelectInitFrom(const DeptTrainRequest *req)
{
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2] = {CStringGetTextDatum(req->init_from), Int32GetDatum(req->init_from_version)};

	DeptSpiExec("SELECT tensors, version FROM dept.adapters WHERE name OPERATOR(pg_catalog.=) $1 "
				"AND CASE WHEN $2 OPERATOR(pg_catalog.>) 0 THEN version OPERATOR(pg_catalog.=) $2 "
				"ELSE active END", 2, types, values, NULL, true, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("adapter \"%s\" to start from does not exist or has no such version",
						req->init_from),
				 errhint("See dept.adapters for the adapters you may use.")));
}

/*
 * Transfer: the stored adapter to start from (init_from, at
 * init_from_version or the active version), read as the calling role so
 * row security applies, checked against the backbone; its head is reused
 * when its labels are the training set's (docs/design.md 1, "Transfer").
 */
static void
DeptLoadInitFrom(DeptTrainRequest *req, const Backbone *bb, const Dataset *ds)
{
	Adapter    *a = NULL;
	char		fingerprint[65];
	char	  **labels = NULL;
	NnError		err;
	bool		isnull,
				same;
	bytea	   *bytes;

	DeptWorkerBeginTxn();
	DeptSelectInitFrom(req);
	bytes = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	req->init_from_version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
														 SPI_tuptable->tupdesc, 2, &isnull));
	nn_error_clear(&err);
	if (adapter_deserialize((const uint8_t *) VARDATA_ANY(bytes), VARSIZE_ANY_EXHDR(bytes),
							req->opt.batch_size, &a, fingerprint, &labels, &err) != NN_OK)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("adapter \"%s\" to start from is corrupted: %s", req->init_from, err.msg)));
	DeptWorkerCommit();
	same = a->cfg.n_classes == ds->n_classes;
	for (int c = 0; same && c < ds->n_classes; c++)
		same = strcmp(labels[c], ds->class_names[c]) == 0;
	adapter_free_class_names(labels, a->cfg.n_classes);
	if (strcmp(fingerprint, bb->fingerprint) != 0)
	{
		adapter_free(a);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("adapter \"%s\" to start from was trained on another backbone", req->init_from),
				 errhint("Start from an adapter of model \"%s\".", req->model_name)));
	}
	req->opt.init_from = a;
	req->opt.init_head = same;
}

static void
DeptRunJob(DeptTrainRequest *req)
{
	Dataset    *ds;
	const Backbone *bb;
	TrainResult res;
	NnError		err;
	NnStatus	st;
	DeptTestSet *ts = DeptTestSetNew(req);
	char	   *auto_json = NULL;

	DeptJobInsert(req);
	DeptSetState(req, JOB_RUNNING);
	/* the model first: its estimate bounds the rows read */
	bb = DeptGetBackboneAt(req->model_dir);
	ds = DeptReadRows(req, bb, ts);

	req->opt.progress = DeptWorkerProgress;
	req->opt.progress_arg = req;
	req->opt.init_text = req->init_text;
	if (req->init_from[0] != '\0')
		DeptLoadInitFrom(req, bb, ds);
	nn_error_clear(&err);
	if (req->auto_method)
		auto_json = DeptTrainAuto(req, bb, ds, &res);
	else
	{
		st = train_adapter(bb, ds, &req->opt, &res, &err);
		adapter_free((Adapter *) req->opt.init_from);
		req->opt.init_from = NULL;
		if (st != NN_OK)
			DeptReportNnError(&err, "training failed");
	}
	if (res.cancelled)
	{
		train_result_free(&res);
		dataset_free(ds);
		DeptTestSetFree(ts);
		DeptRecordJobEnd(req->job_id, job_state_names[JOB_CANCELLED], NULL);
		DeptSetState(req, JOB_CANCELLED);
		return;
	}
	DeptCheckCancelRequested(req);
	DeptStoreResult(req, bb, ds, &res, ts, auto_json);
	train_result_free(&res);
	dataset_free(ds);
	DeptTestSetFree(ts);
	DeptSetState(req, JOB_SUCCEEDED);
}

/*
 * A job's worker, first steps: signals (SIGTERM ends it, SIGINT cancels
 * the job: dept_cancel), then its segment, attached and unpinned (it then
 * lives as long as someone maps it).
 */
dsm_segment *
DeptWorkerAttach(Datum arg, const char *kind)
{
	dsm_segment *seg;

	pqsignal(SIGTERM, die);
	pqsignal(SIGINT, StatementCancelHandler);
	BackgroundWorkerUnblockSignals();
	seg = dsm_attach(DatumGetUInt32(arg));
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("dept %s worker could not attach to its job", kind)));
	dsm_unpin_segment(dsm_segment_handle(seg));
	return seg;
}

/*
 * Connect as the job's role.  The role's own settings (ALTER ROLE ... SET
 * search_path) are applied at connection: the session's path is pinned
 * over them (every SQL section pins it anyway: DeptSpiConnect), and the
 * worker names its job in application_name.
 */
void
DeptWorkerConnect(Oid database, Oid role, const char *kind, int64 job_id)
{
	BackgroundWorkerInitializeConnectionByOid(database, role, 0);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION);
	SetConfigOption("application_name", psprintf("dept %s job " INT64_FORMAT, kind, job_id),
					PGC_USERSET, PGC_S_SESSION);
}

void
dept_train_worker_main(Datum arg)
{
	dsm_segment *seg;
	DeptTrainRequest *req;
	MemoryContext worker_context;

	seg = DeptWorkerAttach(arg, "training");
	req = dsm_segment_address(seg);
	DeptWorkerConnect(req->database, req->role, "training", req->job_id);
	worker_context = AllocSetContextCreate(TopMemoryContext, "dept training job",
										   ALLOCSET_DEFAULT_SIZES);

	PG_TRY();
	{
		DeptRunJob(req);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		DeptJobState state;

		MemoryContextSwitchTo(worker_context);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		state = edata->sqlerrcode == ERRCODE_QUERY_CANCELED ? JOB_CANCELLED : JOB_FAILED;
		SpinLockAcquire(&req->mutex);
		req->sqlerrcode = edata->sqlerrcode;
		strlcpy(req->error, edata->message ? edata->message : "unknown error", sizeof(req->error));
		SpinLockRelease(&req->mutex);
		ereport(LOG,
				(errmsg("dept: training job " INT64_FORMAT " %s: %s", req->job_id,
						job_state_names[state], req->error)));
		DeptRecordJobEnd(req->job_id, job_state_names[state], state == JOB_FAILED ? req->error : NULL);
		DeptSetState(req, state);
	}
	PG_END_TRY();
	dsm_detach(seg);
	proc_exit(0);
}

