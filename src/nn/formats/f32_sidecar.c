/*
 * f32_sidecar.c: the float32 sidecar of a .safetensors file (layout and
 * validation in f32_sidecar.h).
 */
#include "formats/f32_sidecar.h"
#include "base/atomic_file.h"

#include "base/file_map.h"
#include "base/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define F32_SIDECAR_MAGIC "DEPTST32"
#define F32_SIDECAR_ALIGN 64
/* writes of 2 MiB at 2 MiB offsets: the page cache then holds 2 MiB folios (base/file_map.h) */
#define F32_SIDECAR_CHUNK NN_MAP_ALIGN

typedef struct F32SidecarHeader
{
	char		magic[8];
	uint32_t	version;
	uint32_t	n_entries;
	uint64_t	file_len;
	F32SidecarSource source;	/* 72 bytes */
} F32SidecarHeader;

typedef struct F32SidecarEntry
{
	uint32_t	tensor;			/* position in the source header */
	uint32_t	dtype;			/* StDtype as stored in the source */
	uint64_t	numel;
	uint64_t	offset;			/* of its floats, from the start of this file */
} F32SidecarEntry;

_Static_assert(sizeof(F32SidecarSource) == 72, "F32SidecarSource is 72 bytes");
_Static_assert(sizeof(F32SidecarHeader) == 96, "F32SidecarHeader is 96 bytes");
_Static_assert(sizeof(F32SidecarEntry) == 24, "F32SidecarEntry is 24 bytes");

void
f32_sidecar_source(F32SidecarSource *src, const struct stat *sb, const char *header,
				   size_t header_len)
{
	memset(src, 0, sizeof(*src));
	src->size = (uint64_t) sb->st_size;
	src->mtime_sec = sb->st_mtim.tv_sec;
	src->mtime_nsec = sb->st_mtim.tv_nsec;
	src->ctime_sec = sb->st_ctim.tv_sec;
	src->ctime_nsec = sb->st_ctim.tv_nsec;
	{
		Sha256		ctx;

		sha256_init(&ctx);
		sha256_update(&ctx, header, header_len);
		sha256_final(&ctx, src->header_sha256);
	}
}

bool
f32_sidecar_pending(const StTensor *t)
{
	return (t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16) && t->f32 == NULL;
}

static uint64_t
align_up(uint64_t v)
{
	return (v + F32_SIDECAR_ALIGN - 1) & ~(uint64_t) (F32_SIDECAR_ALIGN - 1);
}

/* The entry of tensor k (t) in a well-formed table, its floats starting at offset. */
static bool
entry_fits(const F32SidecarEntry *e, int k, const StTensor *t, uint64_t min_offset, size_t len)
{
	return e->tensor == (uint32_t) k && e->dtype == (uint32_t) t->dtype &&
		e->numel == (uint64_t) t->numel && e->offset % sizeof(float) == 0 &&
		e->offset >= min_offset && e->offset <= len &&
		e->numel <= (len - e->offset) / sizeof(float);
}

bool
f32_sidecar_check(const void *buf, size_t len, const F32SidecarSource *src, StTensor *tensors,
				  int n)
{
	const uint8_t *base = buf;
	F32SidecarHeader h;
	uint64_t	table_end,
				next;
	int			pending = 0,
				i = 0;

	if (len < sizeof(h) || (uintptr_t) buf % sizeof(float) != 0)
		return false;
	memcpy(&h, buf, sizeof(h));
	for (int k = 0; k < n; k++)
		pending += f32_sidecar_pending(&tensors[k]);
	if (memcmp(h.magic, F32_SIDECAR_MAGIC, sizeof(h.magic)) != 0 ||
		h.version != F32_SIDECAR_VERSION || h.file_len != (uint64_t) len ||
		memcmp(&h.source, src, sizeof(*src)) != 0 || h.n_entries != (uint32_t) pending)
		return false;
	table_end = sizeof(h) + (uint64_t) pending * sizeof(F32SidecarEntry);
	if (table_end > len)
		return false;
	/* every entry checked before any view is set */
	next = table_end;
	for (int k = 0; k < n; k++)
	{
		F32SidecarEntry e;

		if (!f32_sidecar_pending(&tensors[k]))
			continue;
		memcpy(&e, base + sizeof(h) + (size_t) i++ * sizeof(e), sizeof(e));
		if (!entry_fits(&e, k, &tensors[k], next, len))
			return false;
		next = e.offset + e.numel * sizeof(float);
	}
	i = 0;
	for (int k = 0; k < n; k++)
	{
		F32SidecarEntry e;

		if (!f32_sidecar_pending(&tensors[k]))
			continue;
		memcpy(&e, base + sizeof(h) + (size_t) i++ * sizeof(e), sizeof(e));
		tensors[k].f32 = (const float *) (base + e.offset);
	}
	return true;
}

bool
f32_sidecar_map(const char *path, const F32SidecarSource *src, StTensor *tensors, int n,
				void **map, size_t *map_len)
{
	struct stat sb;
	void	   *p;
	int			fd = open(path, O_RDONLY | O_CLOEXEC);

	*map = NULL;
	*map_len = 0;
	if (fd < 0)
		return false;
	/* the size is checked before any page is touched */
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < (off_t) sizeof(F32SidecarHeader))
	{
		close(fd);
		return false;
	}
	p = nn_map_file(fd, (size_t) sb.st_size);
	close(fd);
	if (p == NULL)
		return false;
	if (!f32_sidecar_check(p, (size_t) sb.st_size, src, tensors, n))
	{
		nn_map_release(p, (size_t) sb.st_size);
		return false;
	}
	*map = p;
	*map_len = (size_t) sb.st_size;
	return true;
}

/* ---- writing ------------------------------------------------------------------ */

/* A file written through a buffer of one chunk, flushed whole. */
typedef struct ChunkWriter
{
	int			fd;
	uint8_t    *buf;
	size_t		used;
	bool		failed;
} ChunkWriter;

static void
writer_flush(ChunkWriter *w)
{
	if (!w->failed && !nn_write_all(w->fd, w->buf, w->used))
		w->failed = true;
	w->used = 0;
}

/* Room for at least one byte in the buffer: a pointer to it and how much. */
static uint8_t *
writer_room(ChunkWriter *w, size_t *room)
{
	if (w->used == F32_SIDECAR_CHUNK)
		writer_flush(w);
	*room = F32_SIDECAR_CHUNK - w->used;
	return w->buf + w->used;
}

/* n bytes into the file: bytes, or zeros when bytes is NULL. */
static void
writer_put(ChunkWriter *w, const void *bytes, size_t n)
{
	const uint8_t *p = bytes;

	while (n > 0)
	{
		size_t		room;
		uint8_t    *dst = writer_room(w, &room);
		size_t		k = n < room ? n : room;

		if (p != NULL)
		{
			memcpy(dst, p, k);
			p += k;
		}
		else
			memset(dst, 0, k);
		w->used += k;
		n -= k;
	}
}

/* Tensor t's numel floats, converted from its stored bytes raw straight into the buffer. */
static void
writer_put_converted(ChunkWriter *w, const StTensor *t, const uint8_t *raw)
{
	size_t		done = 0;

	while (done < t->numel)
	{
		size_t		room;
		uint8_t    *dst = writer_room(w, &room);
		size_t		k = room / sizeof(float);

		/* the chunk and every tensor offset are multiples of 4: room is too */
		if (k > t->numel - done)
			k = t->numel - done;
		safetensors_convert_f32(t, raw, done, k, (float *) dst);
		w->used += k * sizeof(float);
		done += k;
	}
}

/* The header and the table of the pending tensors; *total is the file's length. */
static bool
sidecar_layout(F32SidecarHeader *h, F32SidecarEntry **entries, const F32SidecarSource *src,
			   const StTensor *tensors, int n)
{
	uint64_t	pos;
	int			pending = 0;

	for (int k = 0; k < n; k++)
		pending += f32_sidecar_pending(&tensors[k]);
	memset(h, 0, sizeof(*h));
	memcpy(h->magic, F32_SIDECAR_MAGIC, sizeof(h->magic));
	h->version = F32_SIDECAR_VERSION;
	h->n_entries = (uint32_t) pending;
	h->source = *src;
	if ((*entries = calloc((size_t) (pending > 0 ? pending : 1), sizeof(F32SidecarEntry))) == NULL)
		return false;
	pos = sizeof(*h) + (uint64_t) pending * sizeof(F32SidecarEntry);
	pending = 0;
	for (int k = 0; k < n; k++)
	{
		F32SidecarEntry *e = &(*entries)[pending];

		if (!f32_sidecar_pending(&tensors[k]))
			continue;
		pending++;
		e->tensor = (uint32_t) k;
		e->dtype = (uint32_t) tensors[k].dtype;
		e->numel = tensors[k].numel;
		e->offset = align_up(pos);
		pos = e->offset + (uint64_t) tensors[k].numel * sizeof(float);
	}
	h->file_len = pos;
	return true;
}

/* Write the whole sidecar to fd; false with errno set on a failed write. */
static bool
write_sidecar(int fd, const F32SidecarHeader *h, const F32SidecarEntry *entries,
			  const StTensor *tensors, const uint8_t *data)
{
	ChunkWriter w = {.fd = fd};
	uint64_t	pos;

	if ((w.buf = malloc(F32_SIDECAR_CHUNK)) == NULL)
		return false;
	writer_put(&w, h, sizeof(*h));
	writer_put(&w, entries, (size_t) h->n_entries * sizeof(*entries));
	pos = sizeof(*h) + (uint64_t) h->n_entries * sizeof(*entries);
	for (uint32_t i = 0; i < h->n_entries && !w.failed; i++)
	{
		const StTensor *t = &tensors[entries[i].tensor];

		writer_put(&w, NULL, (size_t) (entries[i].offset - pos));
		writer_put_converted(&w, t, data + t->offset);
		pos = entries[i].offset + (uint64_t) t->numel * sizeof(float);
	}
	writer_flush(&w);
	free(w.buf);
	return !w.failed;
}

NnStatus
f32_sidecar_write(const char *path, const F32SidecarSource *src, const StTensor *tensors, int n,
				  const uint8_t *data, NnError *err)
{
	F32SidecarHeader h;
	F32SidecarEntry *entries;
	char		tmp[4096];
	int			fd;
	bool		ok;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long) getpid()) >= (int) sizeof(tmp))
		return nn_fail(err, NN_ERR_ARG, "sidecar path is too long");
	if (!sidecar_layout(&h, &entries, src, tensors, n))
		return nn_fail(err, NN_ERR_NOMEM, "out of memory writing \"%s\"", path);
	if ((fd = nn_atomic_open(path, tmp, sizeof(tmp))) < 0)
	{
		int			saved = errno;

		free(entries);
		return nn_fail(err, NN_ERR_IO, "could not create \"%s\": %s", tmp, strerror(saved));
	}
	ok = write_sidecar(fd, &h, entries, tensors, data);
	free(entries);
	if (!nn_atomic_commit(fd, tmp, path, ok))
		return nn_fail(err, NN_ERR_IO, "could not write \"%s\": %s", path, strerror(errno));
	return NN_OK;
}
