/*
 * dept_catalog.h: access to dept.adapters and dept.jobs (catalog.c).
 */
#ifndef DEPT_PG_CATALOG_H
#define DEPT_PG_CATALOG_H

#include "postgres.h"

#include "lib/stringinfo.h"

#include "train/metrics.h"

/* backend_type of the extension's workers (dept_train's and dept_score's), as a SQL text[] literal */
#define DEPT_WORKER_TYPES "'{dept training,dept scoring}'::pg_catalog.text[]"

typedef struct DeptSavedUser
{
	Oid			userid;
	int			sec_context;
} DeptSavedUser;

/* One row of dept.adapters to insert. */
typedef struct DeptAdapterRow
{
	const char *name;
	Oid			owner;
	const char *method;
	const char *backbone;
	const char *fingerprint;
	char	  **labels;
	int			n_labels;
	const char *hyperparameters_json;
	const char *metrics_json;
	double		valid_accuracy;
	bool		has_valid_accuracy;	/* false when no rows were held out for validation */
	bool		regression;		/* valid_accuracy holds the validation MSE (lower is better) */
	int64		job_id;			/* the training job, 0 for none (import) */
	const char *relation;
	const char *label_column;
	const char *text_column;
	int64		train_rows;
	int64		valid_rows;
	int64		skipped_rows;
	bytea	   *tensors;
} DeptAdapterRow;

/* Methods */
extern void DeptBecomeCatalogOwner(DeptSavedUser *saved);
extern void DeptRestoreUser(const DeptSavedUser *saved);
extern int	DeptSpiConnect(void);
extern void DeptSpiFinish(int level);
extern int	DeptSpiExec(const char *sql, int nargs, Oid *types, Datum *values,
						const char *nulls, bool read_only, long limit);
extern void DeptReapJobs(void);
extern void DeptLockAdapterName(const char *name);
extern Oid	DeptAdapterOwner(const char *name);
extern void DeptCheckAdapterWritable(const char *name);
extern void DeptAppendClassMetricsJson(StringInfo buf, const ClassMetrics *m,
									   char *const *class_names);
extern int	DeptStoreAdapter(const DeptAdapterRow *row, const char *activate, bool *activated);

#endif							/* DEPT_PG_CATALOG_H */
