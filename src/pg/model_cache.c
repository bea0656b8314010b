/*
 * model_cache.c: the per-backend backbone, loaded lazily on first use.
 *
 * The backbone's weights are mmap'ed read-only by src/nn, so every backend
 * shares one copy through the page cache; what each backend owns is the
 * small tokenizer and the activation buffers (BackboneRun).  The cache is
 * keyed by model directory: the default one (dept.model_path) and any
 * registered model an adapter was trained on; changing dept.model_path
 * makes the next call use the new directory.  Model memory comes from
 * malloc inside src/nn and lives as long as the backend.
 */
#include "postgres.h"

#include "blas_setup.h"

#include "miscadmin.h"
#include "utils/memutils.h"
#include "portability/instr_time.h"
#include "port.h"

#include "dept.h"

/* One loaded model directory with its activation buffers. */
typedef struct LoadedModel
{
	char		dir[MAXPGPATH];
	Backbone   *bb;
	double		load_ms;
	BackboneRun *run;
	int			run_batch;
	int			run_seq;
	struct LoadedModel *next;
} LoadedModel;

static LoadedModel *loaded_models = NULL;
static int	applied_threads = 0;

/* The directory to load: dept.model_path, or the installed default. */
const char *
DeptModelDirectory(void)
{
	static char default_dir[MAXPGPATH];

	if (dept_model_path != NULL && dept_model_path[0] != '\0')
		return dept_model_path;
	if (default_dir[0] == '\0')
	{
		char		sharepath[MAXPGPATH];

		get_share_path(my_exec_path, sharepath);
		snprintf(default_dir, sizeof(default_dir), "%s/dept/models/use-lite", sharepath);
	}
	return default_dir;
}

/* The SQLSTATE of a src/nn failure. */
int
DeptNnSqlState(const NnError *err)
{
	switch (err->status)
	{
		case NN_ERR_IO:
			return ERRCODE_UNDEFINED_FILE;
		case NN_ERR_FORMAT:
			return ERRCODE_DATA_CORRUPTED;
		case NN_ERR_NOMEM:
			return ERRCODE_OUT_OF_MEMORY;
		default:
			return ERRCODE_INVALID_PARAMETER_VALUE;
	}
}

/* Turn a failure of src/nn into an ereport with a matching SQLSTATE. */
void
DeptReportNnError(const NnError *err, const char *what)
{
	ereport(ERROR,
			(errcode(DeptNnSqlState(err)),
			 errmsg("%s: %s", what, err->msg)));
}

/* Set OpenBLAS's thread count from dept.threads when it changed. */
void
DeptApplyThreads(void)
{
	if (applied_threads != dept_threads)
	{
		nn_blas_setup(dept_threads);
		applied_threads = dept_threads;
	}
}

static LoadedModel *
DeptFindModel(const Backbone *bb)
{
	for (LoadedModel *m = loaded_models; m; m = m->next)
		if (m->bb == bb)
			return m;
	elog(ERROR, "backbone is not in the model cache");
	return NULL;
}

/* The backbone in directory dir, loading it on first use in this backend. */
const Backbone *
DeptGetBackboneAt(const char *dir)
{
	LoadedModel *m;
	Backbone   *bb = NULL;
	NnError		err;
	instr_time	start,
				duration;

	DeptApplyThreads();
	for (m = loaded_models; m; m = m->next)
		if (strcmp(m->dir, dir) == 0)
			return m->bb;
	if (strlen(dir) >= MAXPGPATH)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("model path is too long")));

	nn_error_clear(&err);
	INSTR_TIME_SET_CURRENT(start);
	if (backbone_open(&bb, dir, &err) != NN_OK)
		ereport(ERROR,
				(errcode(DeptNnSqlState(&err)),
				 errmsg("could not load model: %s", err.msg),
				 strcmp(dir, DeptModelDirectory()) == 0 ?
				 errhint("Check the setting \"dept.model_path\" (now \"%s\"), or reinstall the default model with \"make install\".", dir) :
				 errhint("Check the model directory \"%s\" and its files.", dir)));
	INSTR_TIME_SET_CURRENT(duration);
	INSTR_TIME_SUBTRACT(duration, start);

	m = MemoryContextAllocZero(TopMemoryContext, sizeof(LoadedModel));
	strlcpy(m->dir, dir, sizeof(m->dir));
	m->bb = bb;
	m->load_ms = INSTR_TIME_GET_MILLISEC(duration);
	m->next = loaded_models;
	loaded_models = m;
	return bb;
}

/* The default backbone: dept.model_path, or the installed use-lite. */
const Backbone *
DeptGetBackbone(void)
{
	return DeptGetBackboneAt(DeptModelDirectory());
}

/* Milliseconds the default backbone took to load in this backend. */
double
DeptModelLoadMillis(void)
{
	return DeptFindModel(DeptGetBackbone())->load_ms;
}

/* Activation buffers of bb for at least batch rows of seq positions. */
BackboneRun *
DeptGetRunFor(const Backbone *bb, int batch, int seq)
{
	LoadedModel *m = DeptFindModel(bb);

	if (m->run != NULL && m->run_batch >= batch && m->run_seq >= seq)
		return m->run;
	if (m->run != NULL)
		bb->ops->run_free(m->run);
	m->run = NULL;
	batch = Max(batch, m->run_batch);
	seq = Max(seq, m->run_seq);
	m->run = bb->ops->run_new(bb, batch, seq);
	m->run_batch = m->run ? batch : 0;
	m->run_seq = m->run ? seq : 0;
	if (m->run == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory allocating model buffers for %d rows", batch)));
	return m->run;
}

/* Activation buffers of the default backbone. */
BackboneRun *
DeptGetRun(int batch, int seq)
{
	return DeptGetRunFor(DeptGetBackbone(), batch, seq);
}
