/*
 * dept.h: shared declarations of the PostgreSQL layer.
 *
 * src/pg owns everything that touches the server: GUCs, the per-backend
 * model cache, SQL-callable functions.  It calls into src/nn (pure C) and
 * turns NnStatus codes into ereport()s with SQLSTATEs.
 */
#ifndef DEPT_PG_DEPT_H
#define DEPT_PG_DEPT_H

#include "postgres.h"

#include "lib/stringinfo.h"

#include "adapters/adapter.h"
#include "models/backbone.h"

/* GUCs */
extern char *dept_model_path;
extern int	dept_threads;
extern bool dept_packed_weights;	/* float32 inference on packed panels (gemm_packed.h) */
extern int	dept_max_training_memory;	/* kB; -1 = no limit */
extern int	dept_matmul_precision;	/* DeptPrecision */
extern int	dept_on_drop_extension; /* DeptOnDrop */

typedef enum DeptOnDrop
{
	DEPT_ON_DROP_WARNING,
	DEPT_ON_DROP_ERROR
} DeptOnDrop;

typedef enum DeptPrecision
{
	DEPT_PRECISION_FLOAT32,
	DEPT_PRECISION_BFLOAT16
} DeptPrecision;

/* rows per classify call of dept_predict, dept_evaluate and the test report (train_test.c) */
#define DEPT_PREDICT_BATCH 32

/* Parts of the first statement of a backend that uses dept (first_call.c). */
typedef enum DeptFirstCallPart
{
	DEPT_FC_BEFORE,				/* statement start to _PG_init: parse, plan, loading dept.so */
	DEPT_FC_INIT,				/* _PG_init, and until a function names a part */
	DEPT_FC_OTHER,				/* inside a function, outside the parts below */
	DEPT_FC_CATALOG,			/* the adapter's catalog query */
	DEPT_FC_MODEL,				/* loading the backbone (with its private copy) */
	DEPT_FC_ADAPTER,			/* deserializing the adapter */
	DEPT_FC_BUFFERS,			/* allocating activation buffers */
	DEPT_FC_FORWARD,			/* tokenizing, the forward pass, the head */
	DEPT_FC_N
} DeptFirstCallPart;

/* Methods */
extern const Backbone *DeptGetBackbone(void);
extern const Backbone *DeptGetBackboneAt(const char *dir);
extern const char *DeptModelCopyDir(const Backbone *bb);
extern BackboneRun *DeptGetRunFor(const Backbone *bb, int batch, int seq);
extern char *DeptModelDirFor(const char *model_name);
extern BackboneRun *DeptGetRun(int batch, int seq);
extern void DeptApplyThreads(void);
extern const char *DeptModelDirectory(void);
extern double DeptModelLoadMillis(void);
extern bool DeptRunsInBf16(const Backbone *bb);
extern int	DeptNnSqlState(const NnError *err);
extern void DeptCheckAdapterActive(const char *name);
extern char *DeptTextSql(const char *column, const char *column2, const char *name1,
						 const char *name2);
extern char *DeptPairInput(int pair, const char *name1, const char *a, size_t alen,
						   const char *name2, const char *b, size_t blen, size_t *len);
extern NnStatus DeptClassifyInputs(const Backbone *bb, BackboneRun *run, Adapter *a,
								   const char *const *texts, const size_t *lens, int n,
								   int batch_size, float *probs, NnError *err);
extern char *DeptPairText(const char *name1, const char *a, size_t alen, const char *name2,
						  const char *b, size_t blen);
extern int	DeptPredictLabels(const char *name, const char *const *texts, const size_t *lens,
							  int n, char **best, float *prob);
extern void DeptFirstCallStart(void);
extern DeptFirstCallPart DeptFirstCallEnter(DeptFirstCallPart part);
extern void DeptFirstCallJson(StringInfo buf);
extern void DeptReportNnError(const NnError *err, const char *what) pg_attribute_noreturn();

#endif							/* DEPT_PG_DEPT_H */
