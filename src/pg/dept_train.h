/*
 * dept_train.h: a training job as shared between the calling backend and
 * its background worker (one dynamic shared memory segment per job).
 *
 * The caller validates everything, fills the request, pins the segment and
 * starts the worker; the worker unpins it once attached (so the segment
 * lives exactly as long as someone uses it), records the job in dept.jobs,
 * reads the rows as the calling role, trains, stores the adapter, and
 * reports progress and the outcome both in the segment (for a waiting
 * caller) and in dept.jobs (for everyone else).
 */
#ifndef DEPT_PG_TRAIN_H
#define DEPT_PG_TRAIN_H

#include "postgres.h"

#include "access/attnum.h"
#include "storage/spin.h"
#include "utils/jsonb.h"

#include "train/dataset.h"
#include "train/train.h"

typedef enum DeptJobState
{
	JOB_STARTING = 0,			/* worker not yet attached */
	JOB_RUNNING = 1,			/* job row committed, training under way */
	JOB_SUCCEEDED = 2,
	JOB_FAILED = 3,
	JOB_CANCELLED = 4
} DeptJobState;

#define DEPT_NAME_LEN 256

/* The "task" option (train_options.c); regression is inferred for numeric labels. */
#define DEPT_TASK_AUTO 0
#define DEPT_TASK_CLASSIFICATION 1
#define DEPT_TASK_REGRESSION 2

typedef struct DeptTrainRequest
{
	/* written by the caller before the worker starts */
	int64		job_id;
	Oid			database;
	Oid			role;
	Oid			relation;
	char		adapter[DEPT_NAME_LEN];
	char		relation_name[3 * DEPT_NAME_LEN];	/* for display and dept.jobs */
	char		label_column[NAMEDATALEN];
	char		text_column[NAMEDATALEN];
	char		text_column2[NAMEDATALEN];	/* "text_columns": the pair's second, or "" */
	int			pair_encoding;	/* "pair_encoding": an AdapterPair, or -1 (not given); the
								 * caller resolves it into opt.pair (DeptResolvePairEncoding) */
	char		method[16];
	char		activate[16];
	char		options_json[8192];
	char		init_text[1024];
	char		model_name[64];		/* "use-lite" or a name in dept.models */
	char		model_dir[MAXPGPATH];	/* resolved by the caller */
	bool		prompt_len_set;
	int64		max_training_memory;	/* bytes, the caller's dept.max_training_memory; -1 none */
	int64		max_rows;		/* "max_rows": train on a sample of at most this many; 0 all */
	bool		sample_stratified;	/* "sample": stratified by label (default) or uniform */
	int64		max_rows_per_class; /* few-shot: at most this many rows of each label; 0 all */
	char		sample_method[16];	/* how the rows used were drawn (train_sample.c) */
	int			task;			/* "task": DEPT_TASK_AUTO (not given), _CLASSIFICATION or _REGRESSION */
	bool		regression;		/* decided by the caller from task and the label type */
	char		init_from[DEPT_NAME_LEN];	/* "init_from": a stored adapter to start from, or "" */
	int			init_from_version;	/* its version; 0 = the active one */
	char		extension_schema[NAMEDATALEN];	/* of dept_train, where its SQL functions are */
	bool		auto_method;	/* method 'auto': candidates, the best kept (train_auto.c) */
	bool		method_defaulted;	/* method was NULL: auto (or dept) chosen by DeptParseTrainOptions */
	int64		budget_rows;	/* "budget_rows": rows the candidates see together; 0 none */
	double		test_fraction;	/* "test_fraction": held out for the test report (train_test.c) */
	bool		test_fraction_set;	/* given; else the worker picks the default */
	TrainOptions opt;			/* progress fields and init_text set by the worker */

	/* progress, written by the worker under mutex */
	slock_t		mutex;
	DeptJobState state;
	bool		cancel_requested;	/* set by a waiting caller that was cancelled */
	TrainProgress progress;		/* a regression's valid_accuracy is its Pearson r */
	double		valid_pearson;	/* regression, once stored: the best checkpoint's validation */
	double		valid_spearman;
	double		valid_mse;		/* -1 without validation rows */
	int64		rows_read;		/* usable rows read so far (the read phase's progress) */
	int64		rows_used;		/* rows held for training once the read phase is over; -1 before */
	int64		rows_test;		/* test rows held for the report (a sample of them on a big table) */
	int64		rows_test_found;	/* test rows read, all kept out of training and validation */
	int			version;
	char		auto_notes[2048];	/* method 'auto': a line per candidate, for the caller's NOTICEs */
	int			sqlerrcode;
	char		error[1024];
} DeptTrainRequest;

/*
 * The peak heap of a training run, by part (train_options.c): what the
 * backbone's run, train.c's batch buffers, the adapter with its AdamW
 * state and the rows read will hold at once, the model's weight files
 * (mmap'ed, resident while training) and the worker process itself.
 */
typedef struct DeptMemoryEstimate
{
	double		activations;	/* backbone run buffers (run_bytes) */
	double		workspace;		/* batch embeddings, inputs, gradients, logits */
	double		adapter;		/* parameters, gradients, AdamW moments, best copy */
	double		rows;			/* texts, labels, token ids, split, probe features */
	double		weights;		/* the model files and float32 sidecars mapped (plus the float weights again in bfloat16) */
	double		process;		/* the worker itself: backend, libraries, OpenBLAS buffers */
	double		total;
	int			prompt_rows;	/* of the adapter the run trains */
} DeptMemoryEstimate;

/* The held-out test rows of a run (train_test.c). */
typedef struct DeptTestSet DeptTestSet;

/* A seeded sample of the rows read (train_sample.c). */
typedef struct DeptSampler DeptSampler;

/* What dept_train and dept_score share (train_worker.c) */
struct BackgroundWorkerHandle;
struct dsm_segment;
extern bool DeptIsTextType(Oid typid);
extern void DeptCheckRelation(Oid relid);
extern AttrNumber DeptCheckColumn(Oid relid, const char *column, const char *role);
extern char *DeptQualifiedName(Oid relid);
extern char *DeptUsableRowSql(const char *label_column, const char *text_sql);
extern void DeptCheckRoleCanLogin(Oid role);
extern int64 DeptNextJobId(void);
extern struct BackgroundWorkerHandle *DeptStartWorker(struct dsm_segment *seg, int64 job_id,
													  const char *function, const char *type);
extern void DeptWorkerBeginTxn(void);
extern void DeptWorkerCommit(void);
extern struct dsm_segment *DeptWorkerAttach(Datum arg, const char *kind);
extern void DeptWorkerConnect(Oid database, Oid role, const char *kind, int64 job_id);
extern void DeptSelectInitFrom(const DeptTrainRequest *req);
extern void DeptRecordJobEnd(int64 job_id, const char *status, const char *error);

/* Methods */
extern DeptSampler *DeptSamplerBegin(DeptTrainRequest *req);
extern void DeptSamplerOffer(DeptSampler *s, const char *text, size_t text_len,
							 const char *label, size_t label_len);
extern double DeptSamplerHeldBytes(const DeptSampler *s);
extern int64 DeptSamplerRowsRead(const DeptSampler *s);
extern void DeptSamplerFinish(DeptSampler *s, Dataset *ds, int pair);
extern void DeptDatasetAddRow(Dataset *ds, const char *text, size_t text_len, const char *label,
							  size_t label_len, int pair);
extern void DeptResolvePairEncoding(DeptTrainRequest *req, const Backbone *bb);
extern uint64 DeptRowHash(const char *text, size_t text_len, const char *label, size_t label_len);
extern bool DeptIsTestRow(const char *text, size_t text_len, const char *label, size_t label_len,
						  double fraction);
extern void DeptResolveTestFraction(DeptTrainRequest *req);
extern DeptTestSet *DeptTestSetNew(const DeptTrainRequest *req);
extern int64 DeptTestSetFound(const DeptTestSet *ts);
extern void DeptTestSetFree(DeptTestSet *ts);
extern int64 DeptTestSetRows(const DeptTestSet *ts);
extern double DeptTestSetBytes(const DeptTestSet *ts);
extern void DeptTestSetAdd(DeptTestSet *ts, const char *text, size_t text_len, const char *label,
						   size_t label_len);
extern char *DeptTestReportJson(const Backbone *bb, const uint8_t *bytes, size_t len,
								const DeptTestSet *ts, double fraction);
extern char *DeptProbeJson(float l2, double c);
extern char *DeptTrainAuto(DeptTrainRequest *req, const Backbone *bb, const Dataset *ds,
						   TrainResult *best);
extern void DeptParseTrainOptions(DeptTrainRequest *req, const char *method, Jsonb *options);
extern void DeptEstimateTrainingMemory(const Backbone *bb, const char *model_dir,
									   const TrainOptions *opt, int n_classes, double n_rows,
									   double text_bytes, int max_label, DeptMemoryEstimate *est);
extern void DeptCheckTrainingMemory(const DeptMemoryEstimate *est, const TrainOptions *opt,
									int64 limit);
PGDLLEXPORT void dept_train_worker_main(Datum arg);
PGDLLEXPORT void dept_score_worker_main(Datum arg);

#endif							/* DEPT_PG_TRAIN_H */
