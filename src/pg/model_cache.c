/*
 * model_cache.c: the per-backend backbone, loaded lazily on first use.
 *
 * The backbone's weights are mmap'ed read-only by src/nn, so every backend
 * shares one copy through the page cache; what each backend owns is the
 * small tokenizer and the activation buffers (BackboneRun).  The cache is
 * keyed by the resolved model directory: changing dept.model_path makes
 * the next call load the new model.  Memory comes from malloc inside src/nn
 * and lives as long as the backend, so no MemoryContext owns it.
 */
#include "postgres.h"

#include <cblas.h>

#include "miscadmin.h"
#include "portability/instr_time.h"
#include "port.h"

#include "dept.h"

static Backbone *cached_backbone = NULL;
static char cached_dir[MAXPGPATH];
static double cached_load_ms = 0.0;
static BackboneRun *cached_run = NULL;
static int	cached_run_batch = 0;
static int	cached_run_seq = 0;
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

/* Turn a failure of src/nn into an ereport with a matching SQLSTATE. */
void
DeptReportNnError(const NnError *err, const char *what)
{
	int			code;

	switch (err->status)
	{
		case NN_ERR_IO:
			code = ERRCODE_UNDEFINED_FILE;
			break;
		case NN_ERR_FORMAT:
			code = ERRCODE_DATA_CORRUPTED;
			break;
		case NN_ERR_NOMEM:
			code = ERRCODE_OUT_OF_MEMORY;
			break;
		default:
			code = ERRCODE_INVALID_PARAMETER_VALUE;
			break;
	}
	ereport(ERROR,
			(errcode(code),
			 errmsg("%s: %s", what, err->msg),
			 (err->status == NN_ERR_IO || err->status == NN_ERR_FORMAT) ?
			 errhint("Check the setting \"dept.model_path\" (now \"%s\"), or reinstall the default model with \"make install\".",
					 DeptModelDirectory()) : 0));
}

/* Set OpenBLAS's thread count from dept.threads when it changed. */
void
DeptApplyThreads(void)
{
	if (applied_threads != dept_threads)
	{
		openblas_set_num_threads(dept_threads);
		applied_threads = dept_threads;
	}
}

static void
DeptDropBackbone(void)
{
	if (cached_run != NULL)
		cached_backbone->ops->run_free(cached_run);
	cached_run = NULL;
	cached_run_batch = 0;
	cached_run_seq = 0;
	backbone_close(cached_backbone);
	cached_backbone = NULL;
	cached_dir[0] = '\0';
}

/* The backbone for the current dept.model_path, loading it if needed. */
const Backbone *
DeptGetBackbone(void)
{
	const char *dir = DeptModelDirectory();
	Backbone   *bb = NULL;
	NnError		err;
	instr_time	start,
				duration;

	DeptApplyThreads();
	if (cached_backbone != NULL && strcmp(cached_dir, dir) == 0)
		return cached_backbone;
	if (cached_backbone != NULL)
		DeptDropBackbone();

	if (strlen(dir) >= MAXPGPATH)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("model path is too long")));

	nn_error_clear(&err);
	INSTR_TIME_SET_CURRENT(start);
	if (backbone_open(&bb, dir, &err) != NN_OK)
		DeptReportNnError(&err, "could not load model");
	INSTR_TIME_SET_CURRENT(duration);
	INSTR_TIME_SUBTRACT(duration, start);

	cached_backbone = bb;
	strlcpy(cached_dir, dir, sizeof(cached_dir));
	cached_load_ms = INSTR_TIME_GET_MILLISEC(duration);
	return cached_backbone;
}

/* Milliseconds the current backbone took to load (0 before the first load). */
double
DeptModelLoadMillis(void)
{
	return cached_backbone ? cached_load_ms : 0.0;
}

/* Activation buffers for at least batch rows of seq positions. */
BackboneRun *
DeptGetRun(int batch, int seq)
{
	const Backbone *bb = DeptGetBackbone();

	if (cached_run != NULL && cached_run_batch >= batch && cached_run_seq >= seq)
		return cached_run;
	if (cached_run != NULL)
		bb->ops->run_free(cached_run);
	if (cached_run_batch > batch)
		batch = cached_run_batch;
	if (cached_run_seq > seq)
		seq = cached_run_seq;
	cached_run = bb->ops->run_new(bb, batch, seq);
	cached_run_batch = cached_run ? batch : 0;
	cached_run_seq = cached_run ? seq : 0;
	if (cached_run == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory allocating model buffers for %d rows", batch)));
	return cached_run;
}
