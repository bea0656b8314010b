/*
 * compiled.c: the compiled file of a model directory (see compiled.h).
 *
 * Layout: CompiledHeader, then the blob at header.blob_offset (8-aligned).
 */
#include "formats/compiled.h"
#include "base/atomic_file.h"

#include "base/file_map.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COMPILED_MAGIC "DEPTCMP1"

typedef struct CompiledSource
{
	uint64_t	size;
	int64_t		mtime_sec;
	int64_t		mtime_nsec;
} CompiledSource;

typedef struct CompiledHeader
{
	char		magic[8];
	char		format[16];
	char		fingerprint[72];
	uint32_t	n_sources;
	uint32_t	unused;
	CompiledSource source[COMPILED_MAX_SOURCES];
	uint64_t	blob_offset;
	uint64_t	blob_len;
} CompiledHeader;

#define COMPILED_BLOB_OFFSET ((sizeof(CompiledHeader) + 7) & ~(size_t) 7)

static bool
path_in(char *path, size_t size, const char *dir, const char *name)
{
	return snprintf(path, size, "%s/%s", dir, name) < (int) size;
}

/* The header for the sources in dir as they are now; false if one is missing. */
static bool
describe_sources(CompiledHeader *h, const char *dir, const char *format,
				 const char *const *sources, int n_sources)
{
	char		path[4096];
	struct stat st;

	memset(h, 0, sizeof(*h));
	if (n_sources < 0 || n_sources > COMPILED_MAX_SOURCES || strlen(format) >= sizeof(h->format))
		return false;
	memcpy(h->magic, COMPILED_MAGIC, sizeof(h->magic));
	strcpy(h->format, format);
	h->n_sources = (uint32_t) n_sources;
	for (int i = 0; i < n_sources; i++)
	{
		if (!path_in(path, sizeof(path), dir, sources[i]) || stat(path, &st) != 0)
			return false;
		h->source[i].size = (uint64_t) st.st_size;
		h->source[i].mtime_sec = st.st_mtim.tv_sec;
		h->source[i].mtime_nsec = st.st_mtim.tv_nsec;
	}
	return true;
}

/* Whether the mapped header matches want (sources, format) and frames a blob inside len. */
static bool
header_matches(const CompiledHeader *got, const CompiledHeader *want, size_t len)
{
	return memcmp(got->magic, want->magic, sizeof(got->magic)) == 0 &&
		memcmp(got->format, want->format, sizeof(got->format)) == 0 &&
		got->n_sources == want->n_sources &&
		memcmp(got->source, want->source, sizeof(got->source)) == 0 &&
		got->blob_offset == COMPILED_BLOB_OFFSET && got->blob_len <= len &&
		got->blob_offset + got->blob_len == len;
}

static bool
is_fingerprint(const char *s)
{
	for (int i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[64] == '\0';
}

NnStatus
compiled_open(CompiledFile *cf, const char *dir, const char *format,
			  const char *const *sources, int n_sources, NnError *err)
{
	CompiledHeader want;
	const CompiledHeader *got;
	char		path[4096];
	struct stat st;
	void	   *map;
	int			fd;

	memset(cf, 0, sizeof(*cf));
	if (!describe_sources(&want, dir, format, sources, n_sources) ||
		!path_in(path, sizeof(path), dir, COMPILED_FILE_NAME) ||
		(fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return nn_fail(err, NN_ERR_IO, "no compiled file in \"%s\"", dir);
	if (fstat(fd, &st) != 0 || (size_t) st.st_size < COMPILED_BLOB_OFFSET)
	{
		close(fd);
		return nn_fail(err, NN_ERR_FORMAT, "\"%s\" is too short", path);
	}
	map = nn_map_file(fd, (size_t) st.st_size);
	close(fd);
	if (map == NULL)
		return nn_fail(err, NN_ERR_IO, "could not map \"%s\": %s", path, strerror(errno));
	got = map;
	if (!header_matches(got, &want, (size_t) st.st_size) || !is_fingerprint(got->fingerprint))
	{
		nn_map_release(map, (size_t) st.st_size);
		return nn_fail(err, NN_ERR_IO, "\"%s\" is stale or damaged", path);
	}
	cf->map = map;
	cf->map_len = (size_t) st.st_size;
	cf->blob = (const char *) map + got->blob_offset;
	cf->blob_len = got->blob_len;
	memcpy(cf->fingerprint, got->fingerprint, sizeof(cf->fingerprint));
	return NN_OK;
}

void
compiled_close(CompiledFile *cf)
{
	if (cf->map != NULL)
		nn_map_release(cf->map, cf->map_len);
	memset(cf, 0, sizeof(*cf));
}

NnStatus
compiled_write(const char *dir, const char *format, const char *const *sources, int n_sources,
			   const char *fingerprint, const void *blob, size_t blob_len, NnError *err)
{
	CompiledHeader h;
	char	   *file;
	char		tmp[4200],
				path[4096];
	int			fd;
	bool		ok;

	if (!describe_sources(&h, dir, format, sources, n_sources) || !is_fingerprint(fingerprint))
		return nn_fail(err, NN_ERR_ARG, "cannot describe the sources of a compiled file in \"%s\"",
					   dir);
	memcpy(h.fingerprint, fingerprint, 65);
	h.blob_offset = COMPILED_BLOB_OFFSET;
	h.blob_len = blob_len;
	if (!path_in(path, sizeof(path), dir, COMPILED_FILE_NAME))
		return nn_fail(err, NN_ERR_ARG, "model directory path is too long");
	if (blob_len > SIZE_MAX - COMPILED_BLOB_OFFSET ||
		(file = calloc(1, COMPILED_BLOB_OFFSET + blob_len)) == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory writing a compiled file");
	memcpy(file, &h, sizeof(h));
	memcpy(file + COMPILED_BLOB_OFFSET, blob, blob_len);
	if ((fd = nn_atomic_open(path, tmp, sizeof(tmp))) < 0)
	{
		int			saved = errno;

		free(file);
		return nn_fail(err, NN_ERR_IO, "could not create \"%s\": %s", tmp, strerror(saved));
	}
	/* one write, so that the page cache holds it in 2 MiB folios (base/file_map.h) */
	ok = nn_write_all(fd, file, COMPILED_BLOB_OFFSET + blob_len);
	free(file);
	if (!nn_atomic_commit(fd, tmp, path, ok))
		return nn_fail(err, NN_ERR_IO, "could not write \"%s\": %s", path, strerror(errno));
	return NN_OK;
}
