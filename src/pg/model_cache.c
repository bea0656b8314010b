/*
 * model_cache.c: the per-backend backbone, loaded lazily on first use, from
 * the server's private copy of the model directory.
 *
 * The backbone's weights are mmap'ed read-only by src/nn, so every backend
 * shares one copy through the page cache; what each backend owns is the
 * small tokenizer and the activation buffers (BackboneRun).  The cache is
 * keyed by model directory: the default one (dept.model_path) and any
 * registered model an adapter was trained on; changing dept.model_path
 * makes the next call use the new directory.  Model memory comes from
 * malloc inside src/nn and lives as long as the backend.
 *
 * The private copy.  A file that is mmap'ed and then truncated in place
 * raises SIGBUS in every process that touches a page past the new end, and
 * a backend killed by a signal makes the postmaster restart the whole
 * server.  The model directories are outside the server's control (the
 * share directory, a registered path), so no backend maps them: the first
 * backend to load a model copies the files backbone_uses_file names into
 * $PGDATA/pgsql_tmp_dept_models/<key>/, where key is a SHA-256 of the
 * source path and each file's name, size, inode, mtime and ctime.  It
 * copies into a "tmp.<pid>.<key>" directory, fsyncs the files and the
 * directory and renames it into place, so an entry is complete or absent;
 * a backend that loses the rename race uses the winner's copy.  Every
 * backend maps the copy: the weights are still shared through the page
 * cache, and a new backend pays a readdir and a few stat calls for the key
 * (no copy) once the entry exists.  Truncating or removing the source then
 * harms no running backend; a new backend sees the changed source (a new
 * key) and copies it, so it serves the new files or fails cleanly with the
 * loader's error (58P01 missing, XX001 damaged) -- it never serves a copy
 * of files that are gone.  Entries of the same source with an older key,
 * and the temporary directories of backends that died, are removed when a
 * new entry is made; backends still mapping them keep their inodes.  The
 * "pgsql_tmp" prefix keeps the copies out of base backups (pg_basebackup
 * skips such names); a standby makes its own.
 */
#include "postgres.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ops/blas.h"
#include "ops/gemm_bf16.h"
#include "ops/gemm_packed.h"

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "storage/fd.h"
#include "utils/memutils.h"
#include "portability/instr_time.h"
#include "port.h"

#include "dept.h"
#include "base/sha256.h"
#include "formats/compiled.h"
#include "formats/f32_sidecar.h"

#define DEPT_MODEL_CACHE_DIR PG_TEMP_FILE_PREFIX "_dept_models"
#define DEPT_PACKED_FILE_NAME "dept-packed-bf16.bin"
#define DEPT_PANELS_FILE_NAME "dept-packed-f32.bin"

/* One loaded model directory with its activation buffers. */
typedef struct LoadedModel
{
	char		dir[MAXPGPATH];
	Backbone   *bb;
	double		load_ms;
	BackboneRun *run;
	int			run_batch;
	int			run_seq;
	char	   *entry;			/* its private copy entry, or NULL */
	bool		packed_mapped;	/* the shared packed bfloat16 weights were looked for */
	bool		packed_write_failed;	/* writing them failed once: not tried again */
	bool		panels_mapped;	/* the same for the float32 panels (gemm_packed.h) */
	bool		panels_write_failed;
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

static int
DeptCompareNames(const ListCell *a, const ListCell *b)
{
	return strcmp(lfirst(a), lfirst(b));
}

/* Entry names (the model files) in dir that backbone_open reads, sorted. */
static List *
DeptModelFiles(const char *dir)
{
	DIR		   *d = AllocateDir(dir);
	struct dirent *de;
	List	   *names = NIL;

	while ((de = ReadDir(d, dir)) != NULL)
	{
		char		path[MAXPGPATH];
		struct stat st;

		/* an unreadable file is left out: the loader then reports it missing, as without a copy */
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, R_OK) == 0 &&
			backbone_uses_file(dir, de->d_name))
			names = lappend(names, pstrdup(de->d_name));
	}
	FreeDir(d);
	list_sort(names, DeptCompareNames);
	return names;
}

/* The cache key of dir: its path and each file's name, size, inode, mtime and ctime. */
static void
DeptModelKey(const char *dir, List *files, char key[65])
{
	Sha256		ctx;
	ListCell   *lc;

	sha256_init(&ctx);
	sha256_update(&ctx, dir, strlen(dir) + 1);
	foreach(lc, files)
	{
		const char *name = lfirst(lc);
		char		path[MAXPGPATH];
		struct stat st;
		int64		fields[7] = {0};

		snprintf(path, sizeof(path), "%s/%s", dir, name);
		if (stat(path, &st) == 0)
		{
			fields[0] = st.st_size;
			fields[1] = st.st_ino;
			fields[2] = st.st_dev;
			fields[3] = st.st_mtim.tv_sec;
			fields[4] = st.st_mtim.tv_nsec;
			fields[5] = st.st_ctim.tv_sec;
			fields[6] = st.st_ctim.tv_nsec;
		}
		sha256_update(&ctx, name, strlen(name) + 1);
		sha256_update(&ctx, fields, sizeof(fields));
	}
	sha256_final_hex(&ctx, key);
}

/* The source directory an entry of the cache copies ("" if unknown). */
static char *
DeptEntrySource(const char *entry)
{
	char	   *path = psprintf("%s/source", entry);
	FILE	   *f = AllocateFile(path, "r");
	char		buf[MAXPGPATH] = "";

	if (f != NULL)
	{
		size_t		n = fread(buf, 1, sizeof(buf) - 1, f);

		buf[n] = '\0';
		FreeFile(f);
	}
	return pstrdup(buf);
}

/*
 * Remove what a new entry of dir (named keep) makes obsolete: older entries
 * of the same source, and temporary directories of backends that are gone.
 * Backends mapping a removed file keep it until they exit.
 */
static void
DeptPruneModelCache(const char *root, const char *dir, const char *keep)
{
	DIR		   *d = AllocateDir(root);
	struct dirent *de;

	while ((de = ReadDir(d, root)) != NULL)
	{
		char	   *entry = psprintf("%s/%s", root, de->d_name);
		int			pid;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
			strcmp(de->d_name, keep) == 0)
			continue;
		if (sscanf(de->d_name, "tmp.%d.", &pid) == 1)
		{
			if (pid != MyProcPid && kill(pid, 0) != 0 && errno == ESRCH)
				rmtree(entry, true);
		}
		else if (strcmp(DeptEntrySource(entry), dir) == 0)
			rmtree(entry, true);
	}
	FreeDir(d);
}

/*
 * Copy from into the new file to in writes of 2 MiB at 2 MiB offsets, so
 * that the page cache holds the copy in 2 MiB folios, which a new backend
 * maps with one page-table entry each instead of 512 (base/file_map.h).
 */
static void
DeptCopyFileInChunks(const char *from, const char *to)
{
	const size_t chunk = (size_t) 2 << 20;
	char	   *buf = palloc(chunk);
	int			src = OpenTransientFile(from, O_RDONLY | PG_BINARY);
	int			dst;

	if (src < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", from)));
	dst = OpenTransientFile(to, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY);
	if (dst < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", to)));
	for (;;)
	{
		size_t		n = 0;
		ssize_t		r;

		/* fill a whole chunk unless the file ends: a short write would split the folio */
		while (n < chunk && (r = read(src, buf + n, chunk - n)) != 0)
		{
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				ereport(ERROR,
						(errcode_for_file_access(),
						 errmsg("could not read file \"%s\": %m", from)));
			n += (size_t) r;
		}
		if (n == 0)
			break;
		errno = 0;
		if (write(dst, buf, n) != (ssize_t) n)
		{
			/* a short write without an error means the disk is full */
			if (errno == 0)
				errno = ENOSPC;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write to file \"%s\": %m", to)));
		}
	}
	if (CloseTransientFile(dst) != 0 || CloseTransientFile(src) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", to)));
	pfree(buf);
}

/* Copy files of dir into the new directory tmp, each fsync'ed, then tmp itself. */
static void
DeptCopyModelFiles(const char *dir, List *files, const char *tmp)
{
	ListCell   *lc;
	char	   *source = psprintf("%s/source", tmp);
	FILE	   *f;

	if (MakePGDirectory(tmp) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", tmp)));
	foreach(lc, files)
	{
		const char *name = lfirst(lc);
		char	   *from = psprintf("%s/%s", dir, name);
		char	   *to = psprintf("%s/%s", tmp, name);

		DeptCopyFileInChunks(from, to);
		fsync_fname(to, false);
	}
	if ((f = AllocateFile(source, "w")) == NULL || fputs(dir, f) < 0 || FreeFile(f) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", source)));
	fsync_fname(source, false);
	fsync_fname(tmp, true);
}

/*
 * The private copy of model directory dir (see the header comment), made
 * on first use; NULL when dir is not a directory or holds no model file
 * (the caller then reports the loader's own error for it).
 */
static char *
DeptModelCacheEntry(const char *dir)
{
	char	   *root = psprintf("%s/%s", DataDir, DEPT_MODEL_CACHE_DIR);
	char		key[65];
	char	   *entry,
			   *tmp;
	struct stat st;
	List	   *files;

	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		return NULL;
	files = DeptModelFiles(dir);
	if (files == NIL)
		return NULL;
	DeptModelKey(dir, files, key);
	entry = psprintf("%s/%s", root, key);
	if (stat(entry, &st) == 0)
		return entry;

	if (MakePGDirectory(root) != 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", root)));
	tmp = psprintf("%s/tmp.%d.%s", root, MyProcPid, key);
	if (stat(tmp, &st) == 0)
		rmtree(tmp, true);		/* a leftover of an earlier backend with our pid */
	PG_TRY();
	{
		DeptCopyModelFiles(dir, files, tmp);
	}
	PG_CATCH();
	{
		/* a half-made copy is never used: remove it, keep the error (disk full, ...) */
		rmtree(tmp, true);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (rename(tmp, entry) != 0)
	{
		/* another backend made the entry first: use its copy */
		if (errno != EEXIST && errno != ENOTEMPTY)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not rename \"%s\" to \"%s\": %m", tmp, entry)));
		rmtree(tmp, true);
		return entry;
	}
	fsync_fname(root, true);
	DeptPruneModelCache(root, dir, key);
	return entry;
}

/* Rewrite the private copy's path in a loader message as the source directory. */
static char *
DeptSourceMessage(const char *msg, const char *entry, const char *dir)
{
	StringInfoData buf;
	const char *p = msg,
			   *hit;
	size_t		n = strlen(entry);

	initStringInfo(&buf);
	while ((hit = strstr(p, entry)) != NULL)
	{
		appendBinaryStringInfo(&buf, p, hit - p);
		appendStringInfoString(&buf, dir);
		p = hit + n;
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

/*
 * Leave the compiled file (formats/compiled.h) in the private copy entry
 * for the next backend, unless bb was opened from one: it maps the
 * tokenizer and the fingerprint instead of deriving them (docs/design.md 6).
 * Only an optimisation: a failure (a full disk) is logged at DEBUG1 and the
 * next backend derives them again.
 */
static void
DeptCompileModelCacheEntry(const Backbone *bb, const char *entry)
{
	NnError		err;

	if (entry == NULL)
		return;
	nn_error_clear(&err);
	if (backbone_write_compiled(bb, entry, &err) != NN_OK)
		ereport(DEBUG1,
				(errmsg("could not write the compiled file of model copy \"%s\": %s", entry,
						err.msg)));
}

/*
 * Remove what backends that died while writing a sidecar, the compiled
 * file or the packed weights left in entry ("<file>.tmp.<pid>"): a
 * sidecar's can be as large as the model's float32 weights.
 */
static void
DeptRemoveDeadWriters(const char *entry)
{
	DIR		   *d = AllocateDir(entry);
	struct dirent *de;

	while ((de = ReadDir(d, entry)) != NULL)
	{
		const char *tmp = strstr(de->d_name, ".tmp.");
		size_t		stem = tmp ? tmp - de->d_name : 0;
		size_t		suffix = strlen(F32_SIDECAR_SUFFIX);
		int			pid;
		char		end;

		if (tmp == NULL || sscanf(tmp, ".tmp.%d%c", &pid, &end) != 1 || pid == MyProcPid ||
			kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		/* only the names the writers use: a copied model file is never removed */
		if ((stem > suffix && memcmp(tmp - suffix, F32_SIDECAR_SUFFIX, suffix) == 0) ||
			(stem == strlen(COMPILED_FILE_NAME) &&
			 memcmp(de->d_name, COMPILED_FILE_NAME, stem) == 0) ||
			(stem == strlen(DEPT_PACKED_FILE_NAME) &&
			 memcmp(de->d_name, DEPT_PACKED_FILE_NAME, stem) == 0) ||
			(stem == strlen(DEPT_PANELS_FILE_NAME) &&
			 memcmp(de->d_name, DEPT_PANELS_FILE_NAME, stem) == 0))
		{
			char	   *path = psprintf("%s/%s", entry, de->d_name);

			if (unlink(path) != 0 && errno != ENOENT)
				ereport(DEBUG1, (errmsg("could not remove \"%s\": %m", path)));
		}
	}
	FreeDir(d);
}

/*
 * Leave the float32 conversion of the F16/BF16 weights in the private copy
 * entry (formats/f32_sidecar.h), unless a valid one is there, before the
 * open: this backend and every later one then map it shared instead of
 * converting into private memory (docs/design.md 6, "Converted weights").
 * Only an optimisation: a failure (a full disk, damaged weights the open
 * will report) is logged at DEBUG1 and the open converts as before.
 */
static void
DeptConvertModelCacheEntry(const char *entry)
{
	NnError		err;

	if (entry == NULL)
		return;
	DeptRemoveDeadWriters(entry);
	nn_error_clear(&err);
	if (backbone_write_converted(entry, &err) != NN_OK)
		ereport(DEBUG1,
				(errmsg("could not write the converted weights of model copy \"%s\": %s", entry,
						err.msg)));
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
	char	   *entry;
	DeptFirstCallPart caller;

	DeptApplyThreads();
	for (m = loaded_models; m; m = m->next)
		if (strcmp(m->dir, dir) == 0)
			return m->bb;
	if (strlen(dir) >= MAXPGPATH)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("model path is too long")));

	nn_error_clear(&err);
	caller = DeptFirstCallEnter(DEPT_FC_MODEL);
	INSTR_TIME_SET_CURRENT(start);
	entry = DeptModelCacheEntry(dir);
	DeptConvertModelCacheEntry(entry);
	if (backbone_open(&bb, entry ? entry : dir, &err) != NN_OK)
	{
		/* a copy of files that do not load is not kept (the next try copies the source again) */
		if (entry != NULL && (err.status == NN_ERR_IO || err.status == NN_ERR_FORMAT))
			rmtree(entry, true);
		ereport(ERROR,
				(errcode(DeptNnSqlState(&err)),
				 errmsg("could not load model: %s",
						entry ? DeptSourceMessage(err.msg, entry, dir) : err.msg),
				 strcmp(dir, DeptModelDirectory()) == 0 ?
				 errhint("Check the setting \"dept.model_path\" (now \"%s\"), or reinstall the default model with \"make install\".", dir) :
				 errhint("Check the model directory \"%s\" and its files.", dir)));
	}
	INSTR_TIME_SET_CURRENT(duration);
	INSTR_TIME_SUBTRACT(duration, start);
	DeptCompileModelCacheEntry(bb, entry);

	m = MemoryContextAllocZero(TopMemoryContext, sizeof(LoadedModel));
	strlcpy(m->dir, dir, sizeof(m->dir));
	m->bb = bb;
	m->load_ms = INSTR_TIME_GET_MILLISEC(duration);
	m->entry = entry ? MemoryContextStrdup(TopMemoryContext, entry) : NULL;
	m->next = loaded_models;
	loaded_models = m;
	DeptFirstCallEnter(caller);
	return bb;
}

/* The private copy bb was loaded from; NULL when it was loaded from its source directory. */
const char *
DeptModelCopyDir(const Backbone *bb)
{
	return DeptFindModel(bb)->entry;
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

/* One kind of packed weights a backend shares through a file (ops/packed_registry.h). */
typedef struct PackedSharing
{
	const char *file_name;
	const char *what;			/* for the log */
	bool		(*map) (const char *path, const void *base, size_t len);
	int			(*private_count) (const void *base, size_t len);
	bool		(*write) (const char *path, const void *base, size_t len);
	void		(*forget) (const void *base, size_t len);
	bool		drop_unshared;	/* a failed write frees the private copies (products run without) */
} PackedSharing;

static const PackedSharing bf16_sharing = {
	DEPT_PACKED_FILE_NAME, "packed bfloat16 weights", gemm_bf16_map_shared,
	gemm_bf16_private_count, gemm_bf16_write_shared, gemm_bf16_forget_region, false
};
static const PackedSharing panel_sharing = {
	DEPT_PANELS_FILE_NAME, "float32 panels", gemm_packed_map_shared,
	gemm_packed_private_count, gemm_packed_write_shared, gemm_packed_forget_region, true
};

/*
 * m's packed weights of one kind (the bfloat16 tiles, the float32 panels),
 * shared through a file in its private copy entry (ops/packed_file.h;
 * docs/design.md 6): the first call of a backend maps the file if another
 * backend wrote it; a later call writes one whenever this backend had to
 * pack weights of m itself (none in the file yet, or a product the file's
 * writer never ran), so the next backend maps them instead of packing them
 * privately, and maps it in place of its own copies of m's weights (other
 * models' copies and files stay).  *mapped and *write_failed are m's flags
 * for the kind.  Only an optimisation: a failure (a full disk, a read-only
 * directory) is logged at DEBUG1 and not retried in this backend; the
 * float32 panels are then dropped and not made again for m (its products
 * read the weights in place), the bfloat16 copies kept (bfloat16 needs them).
 */
static void
DeptShareCopies(LoadedModel *m, const PackedSharing *kind, bool *mapped, bool *write_failed)
{
	const Backbone *bb = m->bb;
	char	   *path;

	/* the usual call: mapped before, nothing packed here since */
	if (m->entry == NULL || bb->weights == NULL || *write_failed ||
		(*mapped && kind->private_count(bb->weights, bb->weights_len) == 0))
		return;
	path = psprintf("%s/%s", m->entry, kind->file_name);
	if (!*mapped)
	{
		*mapped = true;
		kind->map(path, bb->weights, bb->weights_len);
	}
	else if (!kind->write(path, bb->weights, bb->weights_len))
	{
		*write_failed = true;
		ereport(DEBUG1,
				(errmsg("could not write the %s of model copy \"%s\": %m",
						kind->what, m->entry)));
		/* float32 panels are only a speed-up: not one private copy per backend */
		if (kind->drop_unshared)
			kind->forget(bb->weights, bb->weights_len);
	}
	else
	{
		/* this backend too drops its private copies for the file's shared pages */
		kind->forget(bb->weights, bb->weights_len);
		kind->map(path, bb->weights, bb->weights_len);
	}
	pfree(path);
}

/*
 * Set run to the precision dept.matmul_precision asks for; true when that
 * is bfloat16.  In float32, a backend's inference packs the frozen weights
 * into panels when dept.packed_weights is on and the model has a private
 * copy to keep the shared file in and the file could be written (never in
 * the training worker, whose memory dept.max_training_memory bounds).
 */
static bool
use_precision(LoadedModel *m, BackboneRun *run)
{
	bool		bf16 = backbone_run_use_bf16(m->bb, run,
											 dept_matmul_precision == DEPT_PRECISION_BFLOAT16);
	bool		panels = !bf16 && dept_packed_weights && MyBackendType == B_BACKEND &&
		m->entry != NULL && m->bb->weights != NULL && !m->panels_write_failed;

	if (bf16)
		DeptShareCopies(m, &bf16_sharing, &m->packed_mapped, &m->packed_write_failed);
	else if (panels)
		DeptShareCopies(m, &panel_sharing, &m->panels_mapped, &m->panels_write_failed);
	/* after the sharing: a write that failed just now turns the panels off for this call too */
	gemm_packed_enable(panels && !m->panels_write_failed, m->bb->weights, m->bb->weights_len);
	return bf16;
}

/* Activation buffers of bb for at least batch rows of seq positions. */
BackboneRun *
DeptGetRunFor(const Backbone *bb, int batch, int seq)
{
	LoadedModel *m = DeptFindModel(bb);
	DeptFirstCallPart caller;

	if (m->run != NULL && m->run_batch >= batch && m->run_seq >= seq)
	{
		use_precision(m, m->run);
		return m->run;
	}
	caller = DeptFirstCallEnter(DEPT_FC_BUFFERS);
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
	use_precision(m, m->run);
	DeptFirstCallEnter(caller);
	return m->run;
}

/* Whether bb's inference products run in bfloat16 now (the GUC, and AMX or AVX512-BF16 here). */
bool
DeptRunsInBf16(const Backbone *bb)
{
	return use_precision(DeptFindModel(bb), DeptGetRunFor(bb, 1, 1));
}

/* Activation buffers of the default backbone. */
BackboneRun *
DeptGetRun(int batch, int seq)
{
	return DeptGetRunFor(DeptGetBackbone(), batch, seq);
}
