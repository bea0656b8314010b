/*
 * train_sample.c: training on a sample of a large table (the "max_rows",
 * "sample" and "max_rows_per_class" options; docs/dba.md, "Big tables").
 *
 * One design for every sampling option: rows are offered one by one as the
 * worker's cursor reads them, and a seeded reservoir per stratum (Vitter's
 * algorithm R) keeps a uniform random sample of the stratum's usable rows,
 * so memory is bounded by max_rows whatever the table's size.
 *   - "uniform": one stratum, max_rows rows.
 *   - "stratified" (the default): one stratum per label, with quotas from a
 *     first pass that counts the usable rows per label: proportional to
 *     the label's rows, but at least min(count, max_rows / (2 * labels)),
 *     so a rare label keeps enough rows to be learned.
 *   - "max_rows_per_class" (few-shot): k rows of every label.
 * The rows read, the rows used and the method are stored with the version.
 * The test rows (train_test.c) are never offered, and the counting pass
 * leaves them out, so the quotas are of the rows that can be drawn.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/dependency.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "dept.h"
#include "dept_catalog.h"
#include "dept_train.h"

typedef struct SampleRow
{
	char	   *text;
	size_t		text_len;
	char	   *label;
	size_t		label_len;
} SampleRow;

typedef struct Stratum
{
	char	   *label;			/* NULL for the single uniform stratum */
	int64		quota;
	int64		seen;
	int64		held;
	SampleRow  *rows;			/* (quota) */
} Stratum;

struct DeptSampler
{
	MemoryContext cxt;
	pg_prng_state rng;
	Stratum    *strata;
	int			n_strata;
	int64		rows_read;		/* usable rows offered */
	double		held_bytes;
};

/*
 * The extension's dept_is_test_row, quoted and qualified, or NULL when the
 * catalog does not have it yet (a 1.0 catalog under this library, before
 * ALTER EXTENSION dept UPDATE).
 */
static char *
DeptTestRowFunction(const DeptTrainRequest *req)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, FLOAT8OID};
	char	   *schema = pstrdup(req->extension_schema);
	Oid			fn;

	if (schema[0] == '\0')
		return NULL;
	fn = LookupFuncName(list_make2(makeString(schema), makeString("dept_is_test_row")), 3,
						argtypes, true);
	/* only the extension's own: not a function of that name someone else created there */
	if (!OidIsValid(fn) ||
		getExtensionOfObject(ProcedureRelationId, fn) != get_extension_oid("dept", true))
		return NULL;
	return quote_qualified_identifier(schema, "dept_is_test_row");
}

/*
 * Usable rows per label (as the calling role), the test rows left out
 * (train_test.c: sampling draws from the other rows); returns the number
 * of labels.
 */
static int
DeptCountLabels(const DeptTrainRequest *req, MemoryContext cxt, char ***labels, int64 **counts)
{
	const char *label = quote_identifier(req->label_column);
	const char *text_col = DeptTextSql(req->text_column, req->text_column2, NULL, NULL);
	char	   *test_fn = req->test_fraction > 0 ? DeptTestRowFunction(req) : NULL;
	char	   *sql = psprintf("SELECT %s::pg_catalog.text, pg_catalog.count(*) FROM %s WHERE %s %s "
							   "GROUP BY 1",
							   label, req->relation_name, DeptUsableRowSql(req->label_column, text_col),
							   test_fn == NULL ? "" :
							   psprintf("AND NOT %s((%s)::pg_catalog.text, %s::pg_catalog.text, $1)",
										test_fn, text_col, label));
	Oid			types[1] = {FLOAT8OID};
	Datum		values[1] = {Float8GetDatum(req->test_fraction)};
	bool		isnull;
	MemoryContext old;

	DeptSpiExec(sql, test_fn ? 1 : 0, types, values, NULL, true, 0);
	/* SPI returns in its own procedure context, which ends with the transaction */
	old = MemoryContextSwitchTo(cxt);
	*labels = palloc(sizeof(char *) * (SPI_processed + 1));
	*counts = palloc(sizeof(int64) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		(*labels)[i] = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[i],
														 SPI_tuptable->tupdesc, 1, &isnull));
		(*counts)[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
												   SPI_tuptable->tupdesc, 2, &isnull));
	}
	MemoryContextSwitchTo(old);
	return (int) SPI_processed;		/* in SPI's context again: the caller switches */
}

/* Take one row at a time from the largest quota until the quotas (summing to sum) fit max_rows. */
static void
DeptTrimQuotas(int64 *quota, int n, int64 sum, int64 max_rows)
{
	while (sum > max_rows)
	{
		int			largest = 0;

		for (int i = 1; i < n; i++)
			if (quota[i] > quota[largest])
				largest = i;
		quota[largest]--;
		sum--;
	}
}

/*
 * Quotas of a stratified sample: proportional, with a floor of
 * min(count, max_rows / (2 * labels)) per label, then trimmed from the
 * largest quotas until they sum to max_rows.
 */
static void
DeptStratifiedQuotas(const int64 *counts, int n, int64 max_rows, int64 *quota)
{
	int64		total = 0,
				sum = 0,
				floor_rows = Max(max_rows / (2 * (int64) n), 1);

	for (int i = 0; i < n; i++)
		total += counts[i];
	for (int i = 0; i < n; i++)
	{
		int64		share = (int64) ceil((double) max_rows * counts[i] / (double) total);

		quota[i] = Min(counts[i], Max(share, floor_rows));
		sum += quota[i];
	}
	DeptTrimQuotas(quota, n, sum, max_rows);
}

/* Byte order of (label, length) pairs: the order strata are searched in. */
static int
DeptCompareBytes(const char *a, size_t alen, const char *b, size_t blen)
{
	int			c = memcmp(a, b, Min(alen, blen));

	return c != 0 ? c : (alen > blen) - (alen < blen);
}

static int
DeptCompareStrata(const void *a, const void *b)
{
	const Stratum *x = a,
			   *y = b;

	return DeptCompareBytes(x->label, strlen(x->label), y->label, strlen(y->label));
}

/*
 * Few-shot quotas (max_rows_per_class): k rows of every label (all of a
 * label with fewer), then, with max_rows too, trimmed from the largest.
 */
static void
DeptPerClassQuotas(const int64 *counts, int n, int64 k, int64 max_rows, int64 *quota)
{
	int64		sum = 0;

	for (int i = 0; i < n; i++)
		sum += (quota[i] = Min(counts[i], k));
	if (max_rows > 0)
		DeptTrimQuotas(quota, n, sum, max_rows);
}

/*
 * Whether the options call for a sample of these rows, and which (stored
 * with the version): per class when a label has more than
 * max_rows_per_class rows, else stratified or uniform when the table has
 * more usable rows than max_rows.
 */
static bool
DeptSampleNeeded(DeptTrainRequest *req, const int64 *counts, int n, int64 usable)
{
	bool		needed = false;

	for (int i = 0; i < n && req->max_rows_per_class > 0; i++)
		needed |= counts[i] > req->max_rows_per_class;
	if (needed || (req->max_rows_per_class > 0 && req->max_rows > 0 && usable > req->max_rows))
	{
		strlcpy(req->sample_method, "per_class", sizeof(req->sample_method));
		return true;
	}
	if (req->max_rows <= 0 || usable <= req->max_rows)
		return false;
	strlcpy(req->sample_method, req->sample_stratified ? "stratified" : "uniform",
			sizeof(req->sample_method));
	return true;
}

static void
DeptStratumInit(Stratum *s, const char *label, int64 quota)
{
	s->label = label ? pstrdup(label) : NULL;
	s->quota = quota;
	s->rows = palloc0(sizeof(SampleRow) * Max(quota, 1));
}

/*
 * A sampler for the request, or NULL when every row is used (no max_rows,
 * or a table that has no more usable rows than max_rows).  Runs the
 * counting pass, so it needs the worker's open SPI connection.
 */
DeptSampler *
DeptSamplerBegin(DeptTrainRequest *req)
{
	/* outlives the read transaction: the sample is moved into the dataset after it */
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "dept sample",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	DeptSampler *s = palloc0(sizeof(DeptSampler));
	char	  **labels;
	int64	   *counts;
	int			n_labels;
	int64		usable = 0;

	s->cxt = cxt;
	/* a regression's labels are numbers, not strata: its sample is uniform */
	if (req->regression)
		req->sample_stratified = false;
	n_labels = DeptCountLabels(req, cxt, &labels, &counts);
	MemoryContextSwitchTo(cxt);
	for (int i = 0; i < n_labels; i++)
		usable += counts[i];
	if (n_labels == 0 || !DeptSampleNeeded(req, counts, n_labels, usable))
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
		return NULL;
	}
	pg_prng_seed(&s->rng, req->opt.seed ^ UINT64CONST(0x9E3779B97F4A7C15));
	if (req->sample_stratified || req->max_rows_per_class > 0)
	{
		int64	   *quota = palloc(sizeof(int64) * n_labels);

		if (req->max_rows_per_class > 0)
			DeptPerClassQuotas(counts, n_labels, req->max_rows_per_class, req->max_rows, quota);
		else
			DeptStratifiedQuotas(counts, n_labels, req->max_rows, quota);
		s->strata = palloc0(sizeof(Stratum) * n_labels);
		s->n_strata = n_labels;
		for (int i = 0; i < n_labels; i++)
			DeptStratumInit(&s->strata[i], labels[i], quota[i]);
		qsort(s->strata, n_labels, sizeof(Stratum), DeptCompareStrata);
	}
	else
	{
		s->strata = palloc0(sizeof(Stratum));
		s->n_strata = 1;
		DeptStratumInit(&s->strata[0], NULL, req->max_rows);
	}
	MemoryContextSwitchTo(old);
	return s;
}

/* The stratum of a label (binary search over strata sorted in byte order), or NULL. */
static Stratum *
DeptStratumOf(DeptSampler *s, const char *label, size_t label_len)
{
	int			lo = 0,
				hi = s->n_strata - 1;

	if (s->strata[0].label == NULL)
		return &s->strata[0];
	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		int			c = DeptCompareBytes(s->strata[mid].label, strlen(s->strata[mid].label),
										 label, label_len);

		if (c == 0)
			return &s->strata[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

static void
DeptSampleRowSet(DeptSampler *s, SampleRow *r, const char *text, size_t text_len,
				 const char *label, size_t label_len)
{
	if (r->text)
	{
		s->held_bytes -= r->text_len + r->label_len;
		pfree(r->text);
		pfree(r->label);
	}
	r->text = MemoryContextAlloc(s->cxt, text_len + 1);
	memcpy(r->text, text, text_len);
	r->text[text_len] = '\0';
	r->text_len = text_len;
	r->label = MemoryContextAlloc(s->cxt, label_len + 1);
	memcpy(r->label, label, label_len);
	r->label[label_len] = '\0';
	r->label_len = label_len;
	s->held_bytes += text_len + label_len;
}

/*
 * Offer one usable row (text and non-empty label).  Algorithm R: the k-th
 * row of a stratum replaces a random held row with probability quota / k.
 * A label the counting pass did not see (inserted since) is not sampled.
 */
void
DeptSamplerOffer(DeptSampler *s, const char *text, size_t text_len, const char *label,
				 size_t label_len)
{
	Stratum    *st = DeptStratumOf(s, label, label_len);

	s->rows_read++;
	if (st == NULL || st->quota == 0)
		return;
	st->seen++;
	if (st->held < st->quota)
		DeptSampleRowSet(s, &st->rows[st->held++], text, text_len, label, label_len);
	else
	{
		uint64		j = pg_prng_uint64_range(&s->rng, 0, (uint64) st->seen - 1);

		if (j < (uint64) st->quota)
			DeptSampleRowSet(s, &st->rows[j], text, text_len, label, label_len);
	}
}

double
DeptSamplerHeldBytes(const DeptSampler *s)
{
	return s->held_bytes;
}

int64
DeptSamplerRowsRead(const DeptSampler *s)
{
	return s->rows_read;
}

/* Move the sample into ds (stratum by stratum; pairs read with pair, DeptDatasetAddRow) and free the sampler. */
void
DeptSamplerFinish(DeptSampler *s, Dataset *ds, int pair)
{
	for (int i = 0; i < s->n_strata; i++)
		for (int64 k = 0; k < s->strata[i].held; k++)
		{
			SampleRow  *r = &s->strata[i].rows[k];

			DeptDatasetAddRow(ds, r->text, r->text_len, r->label, r->label_len, pair);
		}
	MemoryContextDelete(s->cxt);
}
