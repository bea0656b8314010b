/*
 * predict.c: inference with stored adapters: dept_predict,
 * dept_predict_proba (single and batch), dept_evaluate, dept_export,
 * dept_import, dept_activate.
 *
 * Each backend caches deserialized adapters by name.  Once per statement
 * the cache asks dept.adapters which version is active (and its xmin), so
 * a version activated by another session is used from that session's next
 * statement on, and a whole SELECT over many rows costs one catalog lookup.
 * The lookup runs as the calling role: row security decides who may use
 * an adapter.  Inference never writes, so it runs in parallel workers and
 * on hot standbys.
 *
 * A text-to-text (T5) adapter has no linear head: its labels are ranked by
 * the decoder's log-likelihood of each label string and the probabilities
 * are the softmax of those scores (classify_texts, train.h); its label
 * strings are tokenized once when the adapter is loaded into the cache.
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "adapters/adapter_io.h"
#include "dept.h"
#include "dept_catalog.h"
#include "train/explain.h"
#include "train/train.h"

PG_FUNCTION_INFO_V1(dept_predict);
PG_FUNCTION_INFO_V1(dept_predict_proba);
PG_FUNCTION_INFO_V1(dept_predict_batch);
PG_FUNCTION_INFO_V1(dept_predict_proba_batch);
PG_FUNCTION_INFO_V1(dept_predict_value);
PG_FUNCTION_INFO_V1(dept_predict_value_batch);
PG_FUNCTION_INFO_V1(dept_evaluate);
PG_FUNCTION_INFO_V1(dept_export);
PG_FUNCTION_INFO_V1(dept_import);
PG_FUNCTION_INFO_V1(dept_activate);
PG_FUNCTION_INFO_V1(dept_explain);
PG_FUNCTION_INFO_V1(dept_predict_pair);
PG_FUNCTION_INFO_V1(dept_predict_proba_pair);
PG_FUNCTION_INFO_V1(dept_predict_pair_batch);
PG_FUNCTION_INFO_V1(dept_predict_value_pair);
PG_FUNCTION_INFO_V1(dept_predict_proba_pair_batch);
PG_FUNCTION_INFO_V1(dept_evaluate_pair);

typedef struct CachedAdapter
{
	char	   *name;
	int			version;
	int64		row_xmin;
	char		model_dir[MAXPGPATH];	/* the backbone it was trained on */
	Adapter    *adapter;		/* malloc'd by src/nn */
	char	  **labels;
	int			n_labels;
	char		pair[2][NAMEDATALEN];	/* a sentence pair's columns, or "" (one text) */
	TimestampTz checked_statement;	/* statement start of the last catalog check */
	LocalTransactionId checked_lxid;
	struct CachedAdapter *next;
} CachedAdapter;

static CachedAdapter *adapter_cache = NULL;

static void
DeptNoSuchAdapter(const char *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("adapter \"%s\" does not exist or has no active version", name),
			 errhint("Train one with dept_train, or see dept.adapters for the adapters you may use.")));
}

/*
 * Error unless name has an active version the caller may use (row
 * security) that reads one text (dept_score's), reading only the catalog:
 * no model or adapter is loaded.  Inside an open SPI connection.
 */
void
DeptCheckAdapterActive(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	bool		isnull;

	DeptSpiExec("SELECT hyperparameters OPERATOR(pg_catalog.?) 'text_columns' FROM dept.adapters "
				"WHERE name OPERATOR(pg_catalog.=) $1 AND active",
				1, types, values, NULL, true, 1);
	if (SPI_processed == 0)
		DeptNoSuchAdapter(name);
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) &&
		!isnull)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("dept_score does not score sentence-pair adapters yet"),
				 errhint("Score pairs with dept_predict(adapter, text[], text[]) in batches.")));
}

/* Deserialize bytes into entry, replacing what it held. */
static void
DeptLoadAdapterBytes(CachedAdapter *entry, const bytea *tensors, const char *name)
{
	Adapter    *a = NULL;
	char		fingerprint[65];
	char	  **labels = NULL;
	NnError		err;
	const Backbone *bb = DeptGetBackboneAt(entry->model_dir);
	DeptFirstCallPart caller = DeptFirstCallEnter(DEPT_FC_ADAPTER);

	nn_error_clear(&err);
	if (adapter_deserialize((const uint8_t *) VARDATA_ANY(tensors), VARSIZE_ANY_EXHDR(tensors),
							DEPT_PREDICT_BATCH, &a, fingerprint, &labels, &err) != NN_OK)
		ereport(ERROR,
				(errcode(err.status == NN_ERR_NOMEM ? ERRCODE_OUT_OF_MEMORY : ERRCODE_DATA_CORRUPTED),
				 errmsg("adapter \"%s\" is corrupted: %s", name, err.msg)));
	if (strcmp(fingerprint, bb->fingerprint) != 0 || a->cfg.d != bb->d_embed ||
		a->cfg.h_dim != bb->d_out * (a->cfg.pair == ADAPTER_PAIR_SIAMESE ? 4 : 1))
	{
		adapter_free_class_names(labels, a->cfg.n_classes);
		adapter_free(a);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("adapter \"%s\" was trained on another backbone than the loaded one", name),
				 errdetail("Adapter backbone %.16s..., loaded backbone %.16s....", fingerprint,
						   bb->fingerprint)));
	}
	/* a text-to-text adapter ranks its label strings: tokenize them once, here */
	if (text_head_bind_labels(bb, a, (const char *const *) labels, &err) != NN_OK)
	{
		adapter_free_class_names(labels, a->cfg.n_classes);
		adapter_free(a);
		DeptReportNnError(&err, psprintf("could not use adapter \"%s\"", name));
	}
	if (entry->adapter)
	{
		adapter_free_class_names(entry->labels, entry->n_labels);
		adapter_free(entry->adapter);
	}
	entry->adapter = a;
	entry->labels = labels;
	entry->n_labels = a->cfg.n_classes;
	DeptFirstCallEnter(caller);
}

/* The two text columns of a sentence-pair adapter, from its hyperparameters (null: one text). */
#define DEPT_PAIR_COLUMNS_SQL \
	"hyperparameters OPERATOR(pg_catalog.#>>) '{text_columns,0}', " \
	"hyperparameters OPERATOR(pg_catalog.#>>) '{text_columns,1}'"

/* Read DEPT_PAIR_COLUMNS_SQL's two columns from column col of the last SPI result. */
static void
DeptReadPairColumns(CachedAdapter *entry, int col)
{
	for (int k = 0; k < 2; k++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col + k, &isnull);

		entry->pair[k][0] = '\0';
		if (!isnull)
			strlcpy(entry->pair[k], TextDatumGetCString(d), NAMEDATALEN);
	}
}

/* An adapter reads one text or a pair: the call must pass as many (22023). */
static void
DeptRequireInputs(const CachedAdapter *entry, int n)
{
	bool		pair = entry->pair[0][0] != '\0';

	if (pair && n == 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("adapter \"%s\" reads a sentence pair (%s, %s)", entry->name,
						entry->pair[0], entry->pair[1]),
				 errhint("Pass both texts: dept_predict('%s', %s, %s).", entry->name,
						 entry->pair[0], entry->pair[1])));
	if (!pair && n == 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("adapter \"%s\" reads one text, not a pair", entry->name)));
}

/* The active version of name, loading or refreshing it at most once per statement. */
static CachedAdapter *
DeptGetAdapter(const char *name)
{
	int			spi_level;
	CachedAdapter *entry;
	DeptFirstCallPart caller;
	TimestampTz stmt = GetCurrentStatementStartTimestamp();
	LocalTransactionId lxid = MyProc->lxid;

	for (entry = adapter_cache; entry; entry = entry->next)
		if (strcmp(entry->name, name) == 0)
			break;
	if (entry && entry->adapter && entry->checked_statement == stmt && entry->checked_lxid == lxid)
		return entry;

	caller = DeptFirstCallEnter(DEPT_FC_CATALOG);
	spi_level = DeptSpiConnect();
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(name)};
		bool		isnull,
					first = entry == NULL || entry->adapter == NULL;
		int			version;
		int64		row_xmin;

		/* the first use reads the tensors with the check: one query in a cold backend */
		DeptSpiExec(first ?
					"SELECT version, xmin::pg_catalog.text::pg_catalog.int8, backbone, tensors, "
					DEPT_PAIR_COLUMNS_SQL
					" FROM dept.adapters WHERE name OPERATOR(pg_catalog.=) $1 AND active" :
					"SELECT version, xmin::pg_catalog.text::pg_catalog.int8, backbone "
					"FROM dept.adapters WHERE name OPERATOR(pg_catalog.=) $1 AND active",
					1, types, values, NULL, true, 1);
		if (SPI_processed == 0)
			DeptNoSuchAdapter(name);
		version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		row_xmin = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		if (entry == NULL)
		{
			entry = MemoryContextAllocZero(TopMemoryContext, sizeof(CachedAdapter));
			entry->name = MemoryContextStrdup(TopMemoryContext, name);
			entry->next = adapter_cache;
			adapter_cache = entry;
		}
		if (entry->adapter == NULL || entry->version != version || entry->row_xmin != row_xmin)
		{
			char	   *model = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
																  SPI_tuptable->tupdesc, 3, &isnull));

			/* SPI's result tables live until DeptSpiFinish: later queries leave this one */
			bytea	   *tensors = first ?
				DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4,
											  &isnull)) : NULL;

			if (first)
				DeptReadPairColumns(entry, 5);

			strlcpy(entry->model_dir, DeptModelDirFor(model), sizeof(entry->model_dir));
			if (!first)
			{
				Datum		v[2] = {CStringGetTextDatum(name), Int32GetDatum(version)};
				Oid			t[2] = {TEXTOID, INT4OID};

				DeptSpiExec("SELECT tensors, " DEPT_PAIR_COLUMNS_SQL " FROM dept.adapters "
							"WHERE name OPERATOR(pg_catalog.=) $1 AND version OPERATOR(pg_catalog.=) $2",
							2, t, v, NULL, true, 1);
				if (SPI_processed == 0)
					DeptNoSuchAdapter(name);
				tensors = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0],
														SPI_tuptable->tupdesc, 1, &isnull));
				DeptReadPairColumns(entry, 2);
			}
			DeptLoadAdapterBytes(entry, tensors, name);
			entry->version = version;
			entry->row_xmin = row_xmin;
		}
	}
	DeptSpiFinish(spi_level);
	DeptFirstCallEnter(caller);
	entry->checked_statement = stmt;
	entry->checked_lxid = lxid;
	return entry;
}

/* Class probabilities (n x C) of n texts, palloc'd. */
static float *
DeptClassify(CachedAdapter *entry, const char *const *texts, const size_t *lens, int n)
{
	const Backbone *bb = DeptGetBackboneAt(entry->model_dir);
	int			seq = adapter_prompt_rows(&entry->adapter->cfg) + entry->adapter->cfg.max_len;
	BackboneRun *run = DeptGetRunFor(bb, DEPT_PREDICT_BATCH, seq);
	float	   *probs = palloc(sizeof(float) * (size_t) n * entry->n_labels);
	NnError		err;
	DeptFirstCallPart caller = DeptFirstCallEnter(DEPT_FC_FORWARD);

	nn_error_clear(&err);
	if (DeptClassifyInputs(bb, run, entry->adapter, texts, lens, n, DEPT_PREDICT_BATCH, probs,
						   &err) != NN_OK)
		DeptReportNnError(&err, "could not classify text");
	DeptFirstCallEnter(caller);
	return probs;
}

/*
 * classify_texts, or for an adapter that reads its pairs apart (native,
 * siamese) classify_pairs of the inputs DeptPairInput made: each the two
 * texts separated by a NUL byte.
 */
NnStatus
DeptClassifyInputs(const Backbone *bb, BackboneRun *run, Adapter *a, const char *const *texts,
				   const size_t *lens, int n, int batch_size, float *probs, NnError *err)
{
	const char **b;
	size_t	   *alens,
			   *blens;

	if (a->cfg.pair == ADAPTER_PAIR_JOINED)
		return classify_texts(bb, run, a, texts, lens, n, batch_size, probs, err);
	b = palloc(sizeof(char *) * (n + 1));
	alens = palloc(sizeof(size_t) * (n + 1));
	blens = palloc(sizeof(size_t) * (n + 1));
	for (int i = 0; i < n; i++)
	{
		const char *nul = memchr(texts[i], '\0', lens[i]);

		if (nul == NULL)
			return nn_fail(err, NN_ERR_ARG, "input %d is not a sentence pair", i + 1);
		alens[i] = nul - texts[i];
		b[i] = nul + 1;
		blens[i] = lens[i] - alens[i] - 1;
	}
	return classify_pairs(bb, run, a, texts, alens, b, blens, n, batch_size, probs, err);
}

static int
DeptArgmax(const float *x, int n)
{
	int			best = 0;

	for (int i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return best;
}

static Datum
DeptProbaJsonb(CachedAdapter *entry, const float *p)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int c = 0; c < entry->n_labels; c++)
	{
		if (c)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, entry->labels[c]);
		appendStringInfo(&buf, ": %.6g", p[c]);
	}
	appendStringInfoChar(&buf, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/* What a prediction function returns: a label, the probabilities, or a regression's value. */
typedef enum DeptPredictKind
{
	PREDICT_LABEL,
	PREDICT_PROBA,
	PREDICT_VALUE
} DeptPredictKind;

/*
 * A regression adapter has values, not classes: no probabilities; a
 * classifier has no value.  22023 for the function that does not fit.
 */
static void
DeptCheckPredictKind(const char *name, const CachedAdapter *entry, DeptPredictKind kind)
{
	bool		regression = entry->adapter->cfg.regression;

	if (regression && kind == PREDICT_PROBA)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("adapter \"%s\" is a regression: it has no class probabilities", name),
				 errhint("Use dept_predict_value for its predicted number.")));
	if (!regression && kind == PREDICT_VALUE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("adapter \"%s\" is a classifier, not a regression", name),
				 errhint("Use dept_predict for its label, dept_predict_proba for its probabilities.")));
}

/* dept_predict's text for one row: the label, or a regression's value. */
static Datum
DeptLabelDatum(const CachedAdapter *entry, const float *p)
{
	if (entry->adapter->cfg.regression)
		return CStringGetTextDatum(psprintf("%.6g", p[0]));
	return CStringGetTextDatum(entry->labels[DeptArgmax(p, entry->n_labels)]);
}

/*
 * One input under the active version of adapter (argument 0) as kind: the
 * text in argument 1, or for the three-argument forms the sentence pair in
 * arguments 1 and 2, formatted as training read it.
 */
static Datum
DeptPredictOne(FunctionCallInfo fcinfo, DeptPredictKind kind)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	text	   *input = PG_GETARG_TEXT_PP(1);
	CachedAdapter *entry = DeptGetAdapter(name);
	int			n_inputs = PG_NARGS() == 3 ? 2 : 1;
	const char *bytes = VARDATA_ANY(input);
	size_t		len = VARSIZE_ANY_EXHDR(input);
	float	   *p;

	DeptRequireInputs(entry, n_inputs);
	DeptCheckPredictKind(name, entry, kind);
	if (n_inputs == 2)
	{
		text	   *input2 = PG_GETARG_TEXT_PP(2);

		bytes = DeptPairInput(entry->adapter->cfg.pair, entry->pair[0], bytes, len, entry->pair[1],
							  VARDATA_ANY(input2), VARSIZE_ANY_EXHDR(input2), &len);
	}
	p = DeptClassify(entry, &bytes, &len, 1);
	if (kind == PREDICT_PROBA)
		return DeptProbaJsonb(entry, p);
	if (kind == PREDICT_VALUE)
		return Float8GetDatum((double) p[0]);
	return DeptLabelDatum(entry, p);
}

Datum
dept_predict(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(DeptPredictOne(fcinfo, PREDICT_LABEL));
}

Datum
dept_predict_proba(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(DeptPredictOne(fcinfo, PREDICT_PROBA));
}

Datum
dept_predict_value(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(DeptPredictOne(fcinfo, PREDICT_VALUE));
}

/* The elements of a one-dimensional text[] argument (n of them, with their nulls). */
static void
DeptTextArray(FunctionCallInfo fcinfo, int arg, Datum **elems, bool **nulls, int *n)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(arg);

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("inputs must be a one-dimensional array")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, elems, nulls, n);
}

/*
 * The texts of an array call: the non-null elements of argument 1, or for a
 * pair adapter (pair) the pairs of arguments 1 and 2 with neither null
 * (formatted as training did); nulls[i] marks the rest.  Returns how many.
 */
static int
DeptArrayInputs(FunctionCallInfo fcinfo, const CachedAdapter *entry, bool pair, int *n,
				bool **nulls, const char ***texts, size_t **lens)
{
	Datum	   *a,
			   *b = NULL;
	bool	   *bnulls = NULL;
	int			nb = 0,
				k = 0;

	DeptTextArray(fcinfo, 1, &a, nulls, n);
	if (pair)
	{
		DeptTextArray(fcinfo, 2, &b, &bnulls, &nb);
		if (nb != *n)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("the two arrays of texts have %d and %d elements", *n, nb)));
	}
	*texts = palloc(sizeof(char *) * (*n + 1));
	*lens = palloc(sizeof(size_t) * (*n + 1));
	for (int i = 0; i < *n; i++)
	{
		text	   *t;

		(*nulls)[i] = (*nulls)[i] || (pair && bnulls[i]);
		if ((*nulls)[i])
			continue;
		t = DatumGetTextPP(a[i]);
		if (pair)
		{
			text	   *u = DatumGetTextPP(b[i]);

			(*texts)[k] = DeptPairInput(entry->adapter->cfg.pair, entry->pair[0], VARDATA_ANY(t),
										VARSIZE_ANY_EXHDR(t), entry->pair[1], VARDATA_ANY(u),
										VARSIZE_ANY_EXHDR(u), &(*lens)[k]);
			k++;
		}
		else
		{
			(*texts)[k] = VARDATA_ANY(t);
			(*lens)[k++] = VARSIZE_ANY_EXHDR(t);
		}
	}
	return k;
}

/* Classify the inputs of an array call; nulls stay null in the result. */
static Datum
DeptPredictArray(FunctionCallInfo fcinfo, DeptPredictKind kind, bool pair)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	CachedAdapter *entry = DeptGetAdapter(name);
	bool	   *nulls;
	int			n,
				k;
	const char **texts;
	size_t	   *lens;
	float	   *probs;
	Datum	   *out;
	int			dims[1],
				lbs[1] = {1};
	Oid			type = kind == PREDICT_PROBA ? JSONBOID : kind == PREDICT_VALUE ? FLOAT8OID : TEXTOID;

	DeptRequireInputs(entry, pair ? 2 : 1);
	DeptCheckPredictKind(name, entry, kind);
	k = DeptArrayInputs(fcinfo, entry, pair, &n, &nulls, &texts, &lens);
	probs = k > 0 ? DeptClassify(entry, texts, lens, k) : NULL;
	out = palloc(sizeof(Datum) * (n + 1));
	k = 0;
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			continue;
		if (kind == PREDICT_PROBA)
			out[i] = DeptProbaJsonb(entry, probs + (size_t) k * entry->n_labels);
		else if (kind == PREDICT_VALUE)
			out[i] = Float8GetDatum((double) probs[k]);
		else
			out[i] = DeptLabelDatum(entry, probs + (size_t) k * entry->n_labels);
		k++;
	}
	dims[0] = n;
	if (n == 0)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(type));
	if (kind == PREDICT_VALUE)
		PG_RETURN_ARRAYTYPE_P(construct_md_array(out, nulls, 1, dims, lbs, FLOAT8OID, 8,
												 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	PG_RETURN_ARRAYTYPE_P(construct_md_array(out, nulls, 1, dims, lbs, type,
											 -1, false, TYPALIGN_INT));
}

/* dept_predict(adapter, a, b) and its kin: a sentence pair (DeptPredictOne). */
Datum
dept_predict_pair(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(DeptPredictOne(fcinfo, PREDICT_LABEL));
}

Datum
dept_predict_value_pair(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(DeptPredictOne(fcinfo, PREDICT_VALUE));
}

Datum
dept_predict_proba_pair(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(DeptPredictOne(fcinfo, PREDICT_PROBA));
}

Datum
dept_predict_pair_batch(PG_FUNCTION_ARGS)
{
	return DeptPredictArray(fcinfo, PREDICT_LABEL, true);
}

Datum
dept_predict_proba_pair_batch(PG_FUNCTION_ARGS)
{
	return DeptPredictArray(fcinfo, PREDICT_PROBA, true);
}

Datum
dept_predict_batch(PG_FUNCTION_ARGS)
{
	return DeptPredictArray(fcinfo, PREDICT_LABEL, false);
}

Datum
dept_predict_proba_batch(PG_FUNCTION_ARGS)
{
	return DeptPredictArray(fcinfo, PREDICT_PROBA, false);
}

Datum
dept_predict_value_batch(PG_FUNCTION_ARGS)
{
	return DeptPredictArray(fcinfo, PREDICT_VALUE, false);
}

/*
 * The most probable label (a pointer into the adapter cache, valid until
 * the next lookup) and its probability for each of n texts (n may be 0)
 * under the active version of name; returns that version.  For dept_score's
 * worker.
 */
int
DeptPredictLabels(const char *name, const char *const *texts, const size_t *lens, int n,
				  char **best, float *prob)
{
	CachedAdapter *entry = DeptGetAdapter(name);
	float	   *probs;

	DeptRequireInputs(entry, 1);	/* dept_score reads one text column */
	if (entry->adapter->cfg.regression)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("adapter \"%s\" is a regression: dept_score writes labels and does not score it yet",
						name)));
	probs = n > 0 ? DeptClassify(entry, (const char **) texts, lens, n) : NULL;
	for (int i = 0; i < n; i++)
	{
		const float *p = probs + (size_t) i * entry->n_labels;
		int			c = DeptArgmax(p, entry->n_labels);

		best[i] = entry->labels[c];
		prob[i] = p[c];
	}
	return entry->version;
}

/* dept_evaluate's report: counts, accuracy (null without rows), per class, confusion. */
static char *
DeptEvaluationJson(const char *name, const CachedAdapter *entry, const ClassMetrics *m,
				   int64 skipped)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"adapter\": ");
	escape_json(&buf, name);
	appendStringInfo(&buf, ", \"version\": %d, \"rows\": %lld, \"skipped_null\": %lld, "
					 "\"unknown_label\": %lld, ",
					 entry->version, (long long) m->total, (long long) skipped,
					 (long long) m->n_unseen);
	/* a regression: its correlations and error (null without rows) */
	if (m->regression)
	{
		appendStringInfoString(&buf, "\"task\": \"regression\", ");
		if (m->total > 0)
			DeptAppendClassMetricsJson(&buf, m, entry->labels);
		else
			appendStringInfoString(&buf, "\"pearson\": null, \"spearman\": null, \"mse\": null");
		appendStringInfoChar(&buf, '}');
		return buf.data;
	}
	/* no scored row: no accuracy, rather than a misleading 0 */
	if (m->total > 0)
		appendStringInfo(&buf, "\"accuracy\": %.6f, \"macro_f1\": %.6f, ", m->accuracy, m->macro_f1);
	else
		appendStringInfoString(&buf, "\"accuracy\": null, \"macro_f1\": null, ");
	DeptAppendClassMetricsJson(&buf, m, entry->labels);
	appendStringInfoString(&buf, ", \"labels\": [");
	for (int c = 0; c < entry->n_labels; c++)
	{
		if (c)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, entry->labels[c]);
	}
	appendStringInfoString(&buf, "]}");
	return buf.data;
}

/* A regression's true value in dept_evaluate: a number, or 22P02. */
static double
DeptParseValue(const char *label, const char *label_column)
{
	char	   *end;
	double		v = strtod(label, &end);

	while (*end == ' ')
		end++;
	if (end == label || *end != '\0' || !isfinite(v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("label \"%s\" in column \"%s\" is not a number", label, label_column),
				 errdetail("The adapter is a regression.")));
	return v;
}

/* Predict k rows and count them in m: classes (truth) or a regression's values. */
static void
DeptScoreBatch(CachedAdapter *entry, ClassMetrics *m, const char *const *texts, const size_t *lens,
			   const int *truth, const double *values, int k)
{
	float	   *probs = DeptClassify(entry, texts, lens, k);

	for (int i = 0; i < k; i++)
	{
		int			predicted;

		if (m->regression)
		{
			metrics_add_value(m, values[i], probs[i]);
			continue;
		}
		predicted = DeptArgmax(probs + (size_t) i * entry->n_labels, entry->n_labels);
		/* a label the adapter never saw cannot be predicted: an error */
		if (truth[i] < 0)
			metrics_add_unseen(m, predicted);
		else
			metrics_add(m, truth[i], predicted);
	}
}

/*
 * The input of row i of dept_evaluate's query, whose first column is t (the
 * text, or the pair joined): t, or for an adapter that reads its pairs
 * apart the pair of columns 3 and 4 as DeptPairInput gives it.
 */
static const char *
DeptEvaluateInput(const CachedAdapter *entry, uint64 i, Datum t, size_t *len)
{
	bool		isnull;
	text	   *a,
			   *b;

	if (entry->adapter->cfg.pair == ADAPTER_PAIR_JOINED)
	{
		*len = VARSIZE_ANY_EXHDR(DatumGetTextPP(t));
		return VARDATA_ANY(DatumGetTextPP(t));
	}
	/* not null: the joined text of column 1 is null when either is */
	a = DatumGetTextPP(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &isnull));
	b = DatumGetTextPP(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 4, &isnull));
	return DeptPairInput(entry->adapter->cfg.pair, entry->pair[0], VARDATA_ANY(a),
						 VARSIZE_ANY_EXHDR(a), entry->pair[1], VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b),
						 len);
}

/*
 * Metrics of the adapter over (text, label) rows read as the caller; a
 * pair adapter reads the texts from text_column and text_column2.
 */
static Datum
DeptEvaluate(FunctionCallInfo fcinfo, const char *text_column, const char *text_column2)
{
	int			spi_level;
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			relid = PG_GETARG_OID(1);
	char	   *label_column = text_to_cstring(PG_GETARG_TEXT_PP(2));
	CachedAdapter *entry = DeptGetAdapter(name);
	ClassMetrics *m = entry->adapter->cfg.regression ? metrics_new_regression(1024)
		: metrics_new(entry->n_labels);
	char	   *sql;
	SPIPlanPtr	plan;
	Portal		portal;
	int64		skipped = 0;
	char	   *json;
	MemoryContext batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "dept_evaluate batch",
													ALLOCSET_DEFAULT_SIZES);

	if (m == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	DeptRequireInputs(entry, text_column2 ? 2 : 1);
	/* a pair the adapter reads apart: its two texts too (DeptEvaluateInput) */
	sql = psprintf("SELECT (%s)::pg_catalog.text, %s::pg_catalog.text%s FROM %s",
				   DeptTextSql(text_column, text_column2, entry->pair[0], entry->pair[1]),
				   quote_identifier(label_column),
				   entry->adapter->cfg.pair == ADAPTER_PAIR_JOINED ? "" :
				   psprintf(", %s::pg_catalog.text, %s::pg_catalog.text",
							quote_identifier(text_column), quote_identifier(text_column2)),
				   quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
											  get_rel_name(relid)));
	spi_level = DeptSpiConnect();
	plan = SPI_prepare(sql, 0, NULL);
	if (plan == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("could not read columns \"%s\" and \"%s\" of %s", text_column,
						label_column, get_rel_name(relid))));
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);
	for (;;)
	{
		const char *texts[DEPT_PREDICT_BATCH];
		size_t		lens[DEPT_PREDICT_BATCH];
		int			truth[DEPT_PREDICT_BATCH];
		double		values[DEPT_PREDICT_BATCH];
		int			k = 0;
		MemoryContext old;

		SPI_cursor_fetch(portal, true, DEPT_PREDICT_BATCH);
		if (SPI_processed == 0)
			break;
		old = MemoryContextSwitchTo(batch_cxt);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		tn,
						ln;
			Datum		t = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &tn);
			Datum		l = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &ln);
			char	   *label;

			if (tn || ln)
			{
				skipped++;
				continue;
			}
			label = TextDatumGetCString(l);
			truth[k] = -1;
			if (m->regression)
				values[k] = DeptParseValue(label, label_column);
			for (int c = 0; c < entry->n_labels && !m->regression; c++)
				if (strcmp(entry->labels[c], label) == 0)
					truth[k] = c;
			texts[k] = DeptEvaluateInput(entry, i, t, &lens[k]);
			k++;
		}
		if (k > 0)
			DeptScoreBatch(entry, m, texts, lens, truth, values, k);
		MemoryContextSwitchTo(old);
		MemoryContextReset(batch_cxt);
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	DeptSpiFinish(spi_level);
	metrics_finish(m);

	json = DeptEvaluationJson(name, entry, m, skipped);
	metrics_free(m);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
}

Datum
dept_evaluate(PG_FUNCTION_ARGS)
{
	return DeptEvaluate(fcinfo, text_to_cstring(PG_GETARG_TEXT_PP(3)), NULL);
}

/* dept_evaluate(adapter, relation, label_column, text_columns text[]): a sentence pair. */
Datum
dept_evaluate_pair(PG_FUNCTION_ARGS)
{
	Datum	   *cols;
	bool	   *nulls;
	int			n;

	DeptTextArray(fcinfo, 3, &cols, &nulls, &n);
	if (n != 2 || nulls[0] || nulls[1])
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("text_columns must name two columns")));
	return DeptEvaluate(fcinfo, TextDatumGetCString(cols[0]), TextDatumGetCString(cols[1]));
}

Datum
dept_export(PG_FUNCTION_ARGS)
{
	int			spi_level;
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	bool		isnull;
	bytea	   *result;
	MemoryContext caller = CurrentMemoryContext;

	spi_level = DeptSpiConnect();
	DeptSpiExec("SELECT tensors FROM dept.adapters "
				"WHERE name OPERATOR(pg_catalog.=) $1 AND active", 1, types, values,
				NULL, true, 1);
	if (SPI_processed == 0)
		DeptNoSuchAdapter(name);
	{
		bytea	   *b = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
													  1, &isnull));
		size_t		len = VARSIZE_ANY_EXHDR(b);

		result = MemoryContextAlloc(caller, VARHDRSZ + len);
		SET_VARSIZE(result, VARHDRSZ + len);
		memcpy(VARDATA(result), VARDATA_ANY(b), len);
	}
	DeptSpiFinish(spi_level);
	PG_RETURN_BYTEA_P(result);
}

Datum
dept_import(PG_FUNCTION_ARGS)
{
	int			spi_level;
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	bytea	   *data = PG_GETARG_BYTEA_P(1);
	bool		activate = PG_GETARG_BOOL(2);
	Adapter    *a = NULL;
	char		fingerprint[65];
	char	  **labels = NULL;
	NnError		err;
	DeptAdapterRow row = {0};
	bool		activated;
	int			version;

	if (name[0] == '\0' || strlen(name) >= 256)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("adapter name must be 1 to 255 bytes long")));
	nn_error_clear(&err);
	if (adapter_deserialize((const uint8_t *) VARDATA(data), VARSIZE(data) - VARHDRSZ, 1, &a,
							fingerprint, &labels, &err) != NN_OK)
		ereport(ERROR,
				(errcode(err.status == NN_ERR_NOMEM ? ERRCODE_OUT_OF_MEMORY : ERRCODE_DATA_CORRUPTED),
				 errmsg("not a valid dept adapter: %s", err.msg)));
	row.name = name;
	row.owner = GetUserId();
	row.method = adapter_method_name(a->cfg.method);
	row.backbone = "use-lite";	/* the registered model with this fingerprint, if any, below */
	row.fingerprint = pstrdup(fingerprint);
	row.n_labels = a->cfg.n_classes;
	row.labels = palloc(sizeof(char *) * row.n_labels);
	for (int i = 0; i < row.n_labels; i++)
		row.labels[i] = pstrdup(labels[i]);
	adapter_free_class_names(labels, a->cfg.n_classes);
	adapter_free(a);
	row.hyperparameters_json = "{\"imported\": true}";
	row.metrics_json = "{}";
	row.tensors = data;

	spi_level = DeptSpiConnect();
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(fingerprint)};
		bool		isnull;

		DeptSpiExec("SELECT name FROM dept.models WHERE fingerprint OPERATOR(pg_catalog.=) $1 "
					"ORDER BY name USING OPERATOR(pg_catalog.<) LIMIT 1",
					1, types, values, NULL, true, 1);
		if (SPI_processed > 0)
			row.backbone = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
															 SPI_tuptable->tupdesc, 1, &isnull));
	}
	DeptCheckAdapterWritable(name);
	version = DeptStoreAdapter(&row, activate ? "always" : "never", &activated);
	DeptSpiFinish(spi_level);
	PG_RETURN_INT32(version);
}

Datum
dept_activate(PG_FUNCTION_ARGS)
{
	int			spi_level;
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int32		version = PG_GETARG_INT32(1);
	Oid			owner;
	DeptSavedUser saved;

	spi_level = DeptSpiConnect();
	owner = DeptAdapterOwner(name);
	if (!OidIsValid(owner))
		DeptNoSuchAdapter(name);
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only the owner of adapter \"%s\" may activate its versions", name)));
	DeptBecomeCatalogOwner(&saved);
	{
		Oid			types[2] = {TEXTOID, INT4OID};
		Datum		values[2] = {CStringGetTextDatum(name), Int32GetDatum(version)};

		DeptLockAdapterName(name);
		DeptSpiExec("SELECT 1 FROM dept.adapters "
					"WHERE name OPERATOR(pg_catalog.=) $1 AND version OPERATOR(pg_catalog.=) $2", 2, types,
					values, NULL, false, 1);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("adapter \"%s\" has no version %d", name, version)));
		DeptSpiExec("UPDATE dept.adapters SET active = false "
					"WHERE name OPERATOR(pg_catalog.=) $1 AND active", 1,
					types, values, NULL, false, 0);
		DeptSpiExec("UPDATE dept.adapters SET active = true "
					"WHERE name OPERATOR(pg_catalog.=) $1 AND version OPERATOR(pg_catalog.=) $2", 2,
					types, values, NULL, false, 0);
	}
	DeptRestoreUser(&saved);
	DeptSpiFinish(spi_level);
	PG_RETURN_VOID();
}

/*
 * Integrated gradients in SQL stop refining at this many path intervals:
 * about a second a text on use-lite (bench/explain_faithfulness.sh), where
 * the library's 512 takes three.  The result says how complete it is.
 */
#define DEPT_EXPLAIN_MAX_STEPS 64

/* The options of dept_explain's method and label arguments. */
static void
DeptExplainOptions(CachedAdapter *entry, const char *method, const char *label,
				   ExplainOptions *opt)
{
	explain_options_default(opt);
	opt->max_steps = DEPT_EXPLAIN_MAX_STEPS;
	if (strcmp(method, "gradient_x_input") == 0)
		opt->method = EXPLAIN_GRADIENT_X_INPUT;
	else if (strcmp(method, "integrated_gradients") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown explanation method \"%s\"", method),
				 errhint("Use \"integrated_gradients\" (the default) or \"gradient_x_input\".")));
	if (entry->adapter->cfg.head == ADAPTER_HEAD_TEXT)
		opt->baseline_id = 0;	/* T5's padding: its RMSNorm makes a zero row degenerate */
	if (label == NULL)
		return;
	for (int c = 0; c < entry->n_labels; c++)
		if (strcmp(entry->labels[c], label) == 0)
			opt->target_class = c;
	if (opt->target_class < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("adapter has no label \"%s\"", label)));
}

/* The explanation as jsonb: prediction, the label explained, completeness, tokens. */
static Datum
DeptExplanationJsonb(CachedAdapter *entry, const char *method, const Explanation *e)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"label\": ");
	escape_json(&buf, entry->labels[e->predicted_class]);
	appendStringInfo(&buf, ", \"probability\": %.6g, \"explained_label\": ", e->predicted_prob);
	escape_json(&buf, entry->labels[e->target_class]);
	appendStringInfoString(&buf, ", \"method\": ");
	escape_json(&buf, method);
	if (e->steps > 0)
		appendStringInfo(&buf, ", \"steps\": %d", e->steps);
	appendStringInfo(&buf, ", \"log_probability\": %.6g, \"baseline_log_probability\": %.6g, "
					 "\"attribution_sum\": %.6g, \"tokens\": [",
					 e->target_log_prob, e->baseline_log_prob, e->attribution_sum);
	for (int i = 0; i < e->n_tokens; i++)
	{
		appendStringInfoString(&buf, i ? ", {\"token\": " : "{\"token\": ");
		escape_json(&buf, e->tokens[i]);
		appendStringInfo(&buf, ", \"attribution\": %.6g}", e->attributions[i]);
	}
	appendStringInfoString(&buf, "]}");
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/*
 * dept_explain(adapter, input, method, label): the tokens of input with
 * their attributions to the log-probability of label (default: the
 * predicted one), docs/design.md 7.
 */
Datum
dept_explain(PG_FUNCTION_ARGS)
{
	char	   *name,
			   *method;
	text	   *input;
	CachedAdapter *entry;
	ExplainOptions opt;
	Explanation e;
	NnError		err;
	NnStatus	st;
	Datum		result;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	input = PG_GETARG_TEXT_PP(1);
	method = text_to_cstring(PG_GETARG_TEXT_PP(2));
	entry = DeptGetAdapter(name);
	DeptRequireInputs(entry, 1);
	DeptExplainOptions(entry, method, PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3)),
					   &opt);
	nn_error_clear(&err);
	memset(&e, 0, sizeof(e));
	st = explain_text(DeptGetBackboneAt(entry->model_dir), NULL, entry->adapter,
					  VARDATA_ANY(input), VARSIZE_ANY_EXHDR(input), &opt, &e, &err);
	if (st != NN_OK)
	{
		explanation_free(&e);
		DeptReportNnError(&err, psprintf("could not explain with adapter \"%s\"", name));
	}
	result = DeptExplanationJsonb(entry, method, &e);
	explanation_free(&e);
	PG_RETURN_DATUM(result);
}
