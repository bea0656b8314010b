/*
 * packed_file.c: the shared file of packed weights (layout in
 * packed_file.h).
 */
#include "ops/packed_file.h"
#include "base/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define BF16_MAGIC "DEPTBF16"
#define F32_MAGIC "DEPTF32P"
#define PACKED_VERSION 1
#define HEADER_BYTES 32
#define ENTRY_BYTES 32
#define DATA_ALIGN 64

typedef struct FileHeader
{
	char		magic[8];
	uint32_t	version;
	uint32_t	entries;
	uint64_t	region_len;
	uint64_t	reserved;
} FileHeader;

typedef struct FileEntry
{
	uint64_t	source_offset;
	int32_t		C;
	int32_t		OC;
	uint32_t	transposed;
	uint32_t	reserved;
	uint64_t	data_offset;
} FileEntry;

_Static_assert(sizeof(FileHeader) == HEADER_BYTES, "header layout");
_Static_assert(sizeof(FileEntry) == ENTRY_BYTES, "entry layout");

static const char *
kind_magic(PackedKind kind)
{
	return kind == PACKED_F32 ? F32_MAGIC : BF16_MAGIC;
}

size_t
packed_value_bytes(PackedKind kind)
{
	return kind == PACKED_F32 ? sizeof(float) : sizeof(uint16_t);
}

/* The packed shapes each kind's products take (gemm_bf16.h, gemm_packed.h). */
static bool
shape_fits(PackedKind kind, int C, int OC)
{
	if (C <= 0 || OC <= 0)
		return false;
	return kind == PACKED_F32 ? OC % 16 == 0 : C % 32 == 0 && OC % 32 == 0;
}

static size_t
aligned(size_t n)
{
	return (n + DATA_ALIGN - 1) / DATA_ALIGN * DATA_ALIGN;
}

/* Header, entry table, then each entry's data at the aligned offset its table entry names. */
static bool
write_contents(int fd, PackedKind kind, size_t region_len, const PackedEntry *entries, int n)
{
	static const char zeros[DATA_ALIGN];
	FileHeader	h = {{0}, PACKED_VERSION, (uint32_t) n, region_len, 0};
	FileEntry  *table = malloc(sizeof(FileEntry) * (n > 0 ? n : 1));
	size_t		at = HEADER_BYTES + (size_t) n * ENTRY_BYTES;
	bool		ok;

	if (table == NULL)
		return false;
	memcpy(h.magic, kind_magic(kind), sizeof(h.magic));
	for (int i = 0; i < n; i++)
	{
		table[i] = (FileEntry) {entries[i].source_offset, entries[i].C, entries[i].OC,
		entries[i].transposed, 0, aligned(at)};
		at = table[i].data_offset + (size_t) entries[i].C * entries[i].OC * packed_value_bytes(kind);
	}
	ok = nn_write_all(fd, &h, sizeof(h)) && nn_write_all(fd, table, sizeof(FileEntry) * n);
	at = HEADER_BYTES + (size_t) n * ENTRY_BYTES;
	for (int i = 0; i < n && ok; i++)
	{
		size_t		bytes = (size_t) entries[i].C * entries[i].OC * packed_value_bytes(kind);

		ok = nn_write_all(fd, zeros, table[i].data_offset - at) &&
			nn_write_all(fd, entries[i].data, bytes);
		at = table[i].data_offset + bytes;
	}
	free(table);
	return ok;
}

bool
packed_file_write(const char *path, PackedKind kind, size_t region_len,
				  const PackedEntry *entries, int n)
{
	char		tmp[4200];
	int			fd = nn_atomic_open(path, tmp, sizeof(tmp));

	if (fd < 0)
		return false;
	return nn_atomic_commit(fd, tmp, path, write_contents(fd, kind, region_len, entries, n));
}

/* Entry i of the mapped file, checked against the file and the region; false when it does not fit. */
static bool
read_entry(PackedEntry *out, const FileEntry *e, PackedKind kind, size_t map_len,
		   size_t region_len, const char *base)
{
	size_t		values;

	if (!shape_fits(kind, e->C, e->OC) || e->transposed > 1 || e->data_offset % DATA_ALIGN != 0)
		return false;
	values = (size_t) e->C * (size_t) e->OC;
	/* the float source lies inside the region, the packed data inside the file */
	if (e->source_offset > region_len || values * sizeof(float) > region_len - e->source_offset ||
		e->data_offset > map_len || values * packed_value_bytes(kind) > map_len - e->data_offset)
		return false;
	*out = (PackedEntry) {e->source_offset, e->C, e->OC, e->transposed == 1,
	base + e->data_offset};
	return true;
}

bool
packed_file_parse(PackedFile *pf, const void *buf, size_t len, PackedKind kind,
				  size_t region_len)
{
	const char *base = buf;
	FileHeader	h;

	memset(pf, 0, sizeof(*pf));
	if (len < HEADER_BYTES)
		return false;
	memcpy(&h, base, sizeof(h));
	if (memcmp(h.magic, kind_magic(kind), 8) != 0 || h.version != PACKED_VERSION ||
		h.region_len != region_len || h.entries == 0 || h.entries > 1u << 20 ||
		(size_t) h.entries * ENTRY_BYTES > len - HEADER_BYTES)
		return false;
	if ((pf->entries = malloc(sizeof(PackedEntry) * h.entries)) == NULL)
		return false;
	for (uint32_t i = 0; i < h.entries; i++)
	{
		FileEntry	e;

		memcpy(&e, base + HEADER_BYTES + (size_t) i * ENTRY_BYTES, sizeof(e));
		if (!read_entry(&pf->entries[i], &e, kind, len, region_len, base))
		{
			packed_file_close(pf);
			return false;
		}
	}
	pf->n = (int) h.entries;
	return true;
}

bool
packed_file_map(PackedFile *pf, const char *path, PackedKind kind, size_t region_len)
{
	struct stat st;
	PackedFile	parsed;
	int			fd = open(path, O_RDONLY);

	memset(pf, 0, sizeof(*pf));
	if (fd < 0)
		return false;
	if (fstat(fd, &st) != 0 || st.st_size < HEADER_BYTES)
	{
		close(fd);
		return false;
	}
	pf->map = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (pf->map == MAP_FAILED)
	{
		pf->map = NULL;
		return false;
	}
	if (!packed_file_parse(&parsed, pf->map, (size_t) st.st_size, kind, region_len))
	{
		munmap(pf->map, (size_t) st.st_size);
		pf->map = NULL;
		return false;
	}
	parsed.map = pf->map;
	parsed.map_len = (size_t) st.st_size;
	*pf = parsed;
	return true;
}

void
packed_file_close(PackedFile *pf)
{
	if (pf->map != NULL)
		munmap(pf->map, pf->map_len);
	free(pf->entries);
	memset(pf, 0, sizeof(*pf));
}
