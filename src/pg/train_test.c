/*
 * train_test.c: the held-out test split of dept_train (the "test_fraction"
 * option; docs/user-guide.md, "Test report").
 *
 * A usable row (text and non-empty label) is a test row when
 *     fmix64(FNV-1a-64(text bytes, 0x00, label bytes)) / 2^64 < test_fraction
 * (the quotient in double precision; fmix64 is MurmurHash3's 64-bit
 * finalizer, so every input bit reaches the high bits the rule compares).
 * The rule depends on the row's content only: a retrain, a sample or an
 * init_from never trains on the rows an earlier version was tested on, and
 * dept_is_test_row() recomputes it in SQL.  Test rows are taken out as the
 * worker reads, before sampling and the validation split; after training
 * (a run that samples a big table holds a seeded sample of them:
 * DeptTestSetNew), the stored adapter scores them exactly as dept_evaluate would (the
 * serialized tensors, batches of DEPT_PREDICT_BATCH), and the metrics are
 * stored with the version under metrics -> 'test' (dept_report).
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "adapters/adapter_io.h"
#include "dept.h"
#include "dept_catalog.h"
#include "dept_train.h"
#include "train/metrics.h"

PG_FUNCTION_INFO_V1(dept_is_test_row);

/* the default test_fraction, on tables with at least DEPT_TEST_MIN_ROWS usable rows */
#define DEPT_TEST_DEFAULT_FRACTION 0.1
#define DEPT_TEST_MIN_ROWS 1000
/* test rows scored per classify call */
#define DEPT_TEST_CHUNK 1024

/* test rows held when the run samples and max_rows does not say how many */
#define DEPT_TEST_SAMPLE_ROWS 10000

struct DeptTestSet
{
	MemoryContext cxt;
	char	  **texts;
	size_t	   *text_lens;
	char	  **labels;
	int64		n;				/* held */
	int64		cap;			/* allocated */
	int64		limit;			/* held at most (a seeded sample beyond); 0 none */
	int64		found;			/* test rows read */
	pg_prng_state rng;
	double		bytes;
};

uint64
DeptRowHash(const char *text, size_t text_len, const char *label, size_t label_len)
{
	uint64		h = UINT64CONST(0xcbf29ce484222325);
	const uint64 prime = UINT64CONST(0x100000001b3);

	for (size_t i = 0; i < text_len; i++)
		h = (h ^ (unsigned char) text[i]) * prime;
	h = h * prime;				/* the separator byte 0x00: h ^ 0 == h */
	for (size_t i = 0; i < label_len; i++)
		h = (h ^ (unsigned char) label[i]) * prime;
	h ^= h >> 33;
	h *= UINT64CONST(0xff51afd7ed558ccd);
	h ^= h >> 33;
	h *= UINT64CONST(0xc4ceb9fe1a85ec53);
	h ^= h >> 33;
	return h;
}

bool
DeptIsTestRow(const char *text, size_t text_len, const char *label, size_t label_len,
			  double fraction)
{
	if (fraction <= 0 || label_len == 0)
		return false;
	return ldexp((double) DeptRowHash(text, text_len, label, label_len), -64) < fraction;
}

/* dept_is_test_row(text, label, fraction): the rule above, in SQL. */
Datum
dept_is_test_row(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	text	   *l = PG_GETARG_TEXT_PP(1);
	double		fraction = PG_GETARG_FLOAT8(2);

	if (isnan(fraction) || fraction < 0 || fraction >= 0.5)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("test fraction must be at least 0 and less than 0.5")));
	PG_RETURN_BOOL(DeptIsTestRow(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), VARDATA_ANY(l),
								 VARSIZE_ANY_EXHDR(l), fraction));
}

/*
 * The test fraction of the run: the option, else 0.1 when the relation has
 * at least 1,000 usable rows (counted as the calling role), else 0; 0 for
 * a regression, whose test report is not built yet.
 * Inside the worker's read transaction.
 */
void
DeptResolveTestFraction(DeptTrainRequest *req)
{
	char	   *sql;
	bool		isnull;
	int64		usable;

	if (req->regression)
	{
		/* the report's metrics are a classifier's: a regression keeps its rows (docs/user-guide.md) */
		if (req->test_fraction_set && req->test_fraction > 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("a regression has no test report yet: test_fraction must be 0")));
		req->test_fraction = 0;
		return;
	}
	if (req->test_fraction_set)
		return;
	sql = psprintf("SELECT pg_catalog.count(*) FROM %s WHERE %s", req->relation_name,
				   DeptUsableRowSql(req->label_column,
									DeptTextSql(req->text_column, req->text_column2, NULL, NULL)));
	DeptSpiExec(sql, 0, NULL, NULL, NULL, true, 1);
	usable = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	req->test_fraction = usable >= DEPT_TEST_MIN_ROWS ? DEPT_TEST_DEFAULT_FRACTION : 0;
}

/*
 * The test rows of a run.  A run that samples (max_rows or
 * max_rows_per_class: a big table) holds a seeded uniform sample of its
 * test rows, at most max_rows of them (else 10,000), so scoring them costs
 * no more than a pass over the training sample; every other run holds all.
 */
DeptTestSet *
DeptTestSetNew(const DeptTrainRequest *req)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "dept test rows",
											  ALLOCSET_DEFAULT_SIZES);
	DeptTestSet *ts = MemoryContextAllocZero(cxt, sizeof(DeptTestSet));

	ts->cxt = cxt;
	if (req->max_rows > 0)
		ts->limit = req->max_rows;
	else if (req->max_rows_per_class > 0)
		ts->limit = DEPT_TEST_SAMPLE_ROWS;
	pg_prng_seed(&ts->rng, req->opt.seed ^ UINT64CONST(0x7E57D47A5EED0001));
	return ts;
}

int64
DeptTestSetFound(const DeptTestSet *ts)
{
	return ts ? ts->found : 0;
}

void
DeptTestSetFree(DeptTestSet *ts)
{
	if (ts)
		MemoryContextDelete(ts->cxt);
}

int64
DeptTestSetRows(const DeptTestSet *ts)
{
	return ts ? ts->n : 0;
}

double
DeptTestSetBytes(const DeptTestSet *ts)
{
	return ts ? ts->bytes : 0;
}

/* Copy a row into slot i (freeing what it held). */
static void
DeptTestSetPut(DeptTestSet *ts, int64 i, const char *text, size_t text_len, const char *label,
			   size_t label_len)
{
	if (i < ts->n)
	{
		ts->bytes -= ts->text_lens[i] + strlen(ts->labels[i]);
		pfree(ts->texts[i]);
		pfree(ts->labels[i]);
	}
	ts->texts[i] = MemoryContextAlloc(ts->cxt, text_len + 1);
	memcpy(ts->texts[i], text, text_len);
	ts->texts[i][text_len] = '\0';
	ts->text_lens[i] = text_len;
	ts->labels[i] = MemoryContextAlloc(ts->cxt, label_len + 1);
	memcpy(ts->labels[i], label, label_len);
	ts->labels[i][label_len] = '\0';
	ts->bytes += text_len + label_len;
}

/* Take one test row: held, or past the limit offered to the sample (algorithm R). */
void
DeptTestSetAdd(DeptTestSet *ts, const char *text, size_t text_len, const char *label,
			   size_t label_len)
{
	ts->found++;
	if (ts->limit > 0 && ts->n >= ts->limit)
	{
		uint64		j = pg_prng_uint64_range(&ts->rng, 0, (uint64) ts->found - 1);

		if (j < (uint64) ts->limit)
			DeptTestSetPut(ts, (int64) j, text, text_len, label, label_len);
		return;
	}
	if (ts->n == ts->cap)
	{
		int64		cap = Max(ts->cap * 2, 256);

		if (ts->cap == 0)
		{
			ts->texts = MemoryContextAlloc(ts->cxt, sizeof(char *) * cap);
			ts->text_lens = MemoryContextAlloc(ts->cxt, sizeof(size_t) * cap);
			ts->labels = MemoryContextAlloc(ts->cxt, sizeof(char *) * cap);
		}
		else
		{
			ts->texts = repalloc_huge(ts->texts, sizeof(char *) * cap);
			ts->text_lens = repalloc_huge(ts->text_lens, sizeof(size_t) * cap);
			ts->labels = repalloc_huge(ts->labels, sizeof(char *) * cap);
		}
		ts->cap = cap;
	}
	DeptTestSetPut(ts, ts->n, text, text_len, label, label_len);
	ts->n++;
}

/* The class of label among the adapter's, or -1 (as dept_evaluate looks it up). */
static int
DeptClassOf(char *const *class_names, int n_classes, const char *label)
{
	int			found = -1;

	for (int c = 0; c < n_classes; c++)
		if (strcmp(class_names[c], label) == 0)
			found = c;
	return found;
}

typedef struct AucPoint
{
	float		score;
	bool		positive;
} AucPoint;

static int
DeptCompareAucPoints(const void *a, const void *b)
{
	float		x = ((const AucPoint *) a)->score,
				y = ((const AucPoint *) b)->score;

	return (x > y) - (x < y);
}

/*
 * ROC AUC of n scored points (Mann-Whitney U with tied scores sharing
 * their mean rank); NAN without both a positive and a negative point.
 */
static double
DeptRocAuc(AucPoint *pts, int64 n)
{
	double		rank_sum = 0;
	int64		n_pos = 0;

	qsort(pts, n, sizeof(AucPoint), DeptCompareAucPoints);
	for (int64 i = 0; i < n;)
	{
		int64		j = i;
		int64		pos = 0;

		while (j < n && pts[j].score == pts[i].score)
			pos += pts[j++].positive;
		/* ranks i+1 .. j share their mean */
		rank_sum += pos * ((double) (i + 1 + j) / 2.0);
		n_pos += pos;
		i = j;
	}
	if (n_pos == 0 || n_pos == n)
		return NAN;
	return (rank_sum - (double) n_pos * (n_pos + 1) / 2.0) / ((double) n_pos * (n - n_pos));
}

/* The adapter as dept_predict loads it: deserialized for DEPT_PREDICT_BATCH rows, labels bound. */
static Adapter *
DeptLoadForScoring(const Backbone *bb, const uint8_t *bytes, size_t len, char ***labels)
{
	Adapter    *a = NULL;
	char		fingerprint[65];
	NnError		err;

	nn_error_clear(&err);
	if (adapter_deserialize(bytes, len, DEPT_PREDICT_BATCH, &a, fingerprint, labels, &err) != NN_OK)
		DeptReportNnError(&err, "could not load the trained adapter to score the test rows");
	if (text_head_bind_labels(bb, a, (const char *const *) *labels, &err) != NN_OK)
	{
		adapter_free_class_names(*labels, a->cfg.n_classes);
		adapter_free(a);
		DeptReportNnError(&err, "could not load the trained adapter to score the test rows");
	}
	return a;
}

/* Score the test rows ts[start, start + n) into m (and pts for two classes). */
static void
DeptScoreChunk(const Backbone *bb, Adapter *a, char **labels, const DeptTestSet *ts,
			   int64 start, int n, ClassMetrics *m, AucPoint *pts, int64 *n_pts)
{
	int			C = a->cfg.n_classes;
	int			seq = adapter_prompt_rows(&a->cfg) + a->cfg.max_len;
	BackboneRun *run = DeptGetRunFor(bb, DEPT_PREDICT_BATCH, seq);
	float	   *probs = palloc(sizeof(float) * (size_t) n * C);
	NnError		err;

	nn_error_clear(&err);
	if (DeptClassifyInputs(bb, run, a, (const char *const *) ts->texts + start, ts->text_lens + start,
						   n, DEPT_PREDICT_BATCH, probs, &err) != NN_OK)
		DeptReportNnError(&err, "could not score the test rows");
	for (int i = 0; i < n; i++)
	{
		const float *p = probs + (size_t) i * C;
		int			truth = DeptClassOf(labels, C, ts->labels[start + i]);
		int			predicted = 0;

		for (int c = 1; c < C; c++)
			if (p[c] > p[predicted])
				predicted = c;
		if (truth < 0)
			metrics_add_unseen(m, predicted);
		else
			metrics_add(m, truth, predicted);
		if (C == 2 && truth >= 0)
		{
			pts[*n_pts].score = p[1];
			pts[(*n_pts)++].positive = truth == 1;
		}
	}
	pfree(probs);
}

/*
 * The test report of the stored adapter (bytes, as serialized) on the test
 * rows, as a JSON object for metrics -> 'test'; NULL without test rows.
 */
char *
DeptTestReportJson(const Backbone *bb, const uint8_t *bytes, size_t len, const DeptTestSet *ts,
				   double fraction)
{
	char	  **labels = NULL;
	Adapter    *a;
	ClassMetrics *m;
	AucPoint   *pts;
	int64		n_pts = 0;
	StringInfoData buf;
	double		auc;

	if (ts == NULL || ts->n == 0)
		return NULL;
	a = DeptLoadForScoring(bb, bytes, len, &labels);
	m = metrics_new(a->cfg.n_classes);
	if (m == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	pts = palloc_extended(sizeof(AucPoint) * Max(ts->n, 1), MCXT_ALLOC_HUGE);
	for (int64 start = 0; start < ts->n; start += DEPT_TEST_CHUNK)
	{
		DeptScoreChunk(bb, a, labels, ts, start, (int) Min(ts->n - start, DEPT_TEST_CHUNK), m,
					   pts, &n_pts);
		CHECK_FOR_INTERRUPTS();
	}
	metrics_finish(m);
	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"test_fraction\": %g, \"rows\": %lld, \"test_rows_found\": %lld, "
					 "\"unknown_label\": %lld, \"accuracy\": %.6f, \"macro_f1\": %.6f, ",
					 fraction, (long long) m->total, (long long) ts->found,
					 (long long) m->n_unseen, m->accuracy, m->macro_f1);
	if (a->cfg.n_classes == 2)
	{
		auc = DeptRocAuc(pts, n_pts);
		if (isnan(auc))
			appendStringInfoString(&buf, "\"roc_auc\": null, ");
		else
			appendStringInfo(&buf, "\"roc_auc\": %.6f, ", auc);
		appendStringInfoString(&buf, "\"positive_label\": ");
		escape_json(&buf, labels[1]);
		appendStringInfoString(&buf, ", ");
	}
	DeptAppendClassMetricsJson(&buf, m, labels);
	appendStringInfoChar(&buf, '}');
	metrics_free(m);
	adapter_free_class_names(labels, a->cfg.n_classes);
	adapter_free(a);
	pfree(pts);
	return buf.data;
}
