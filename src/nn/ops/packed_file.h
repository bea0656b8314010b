/*
 * packed_file.h: a file of packed weights, bfloat16 (gemm_bf16.h) or
 * float32 panels (gemm_packed.h), written once beside a model's private
 * copy and mapped read-only by every process that runs the model, so the
 * packed copy (2 or 4 bytes a weight: 170 or 340 MB for BERT-base) is one
 * set of shared page-cache pages instead of private memory in every
 * backend (docs/design.md 6, "Packed weights, shared").
 *
 * An entry is named by where its float source lies in the model's weight
 * region (the mapped model.safetensors) -- its byte offset, the packed
 * shape and whether it was packed transposed -- since addresses differ
 * between processes.  The file is made for one region length; the region
 * itself never changes under it, because the server's model copy is
 * immutable (a changed source is a new copy, src/pg/model_cache.c).
 *
 * Layout (little-endian, as the host): a 32-byte header
 *   "DEPTBF16" (or "DEPTF32P" for float32 panels), uint32 version,
 *   uint32 entries, uint64 region length, uint64 0
 * then per entry 32 bytes
 *   uint64 source offset, int32 C, int32 OC, uint32 transposed, uint32 0,
 *   uint64 data offset (from the file's start, a multiple of 64)
 * then the packed data, C x OC values per entry (bfloat16 with C and OC
 * multiples of 32; float32 with OC a multiple of 16).  A reader checks
 * every field and bound before use: a damaged, truncated or foreign file
 * is not used (and never read past its end).
 */
#ifndef DEPT_NN_PACKED_FILE_H
#define DEPT_NN_PACKED_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a file's values are. */
typedef enum PackedKind
{
	PACKED_BF16,				/* gemm_bf16.h's tiles, 2 bytes a value */
	PACKED_F32					/* gemm_packed.h's panels, 4 bytes a value */
} PackedKind;

/* One packed weight: where its source lies in the region, and its packed values. */
typedef struct PackedEntry
{
	uint64_t	source_offset;
	int			C,
				OC;
	bool		transposed;
	const void *data;			/* C x OC values of the file's kind */
} PackedEntry;

/* A mapped file: its entries point into the mapping. */
typedef struct PackedFile
{
	void	   *map;
	size_t		map_len;
	PackedEntry *entries;
	int			n;
} PackedFile;

/* Methods */

/* Bytes of one packed value of kind: 2 (bfloat16) or 4 (float32). */
size_t		packed_value_bytes(PackedKind kind);

/*
 * Write the n entries for a region of region_len bytes to path: a
 * temporary file beside it, fsync'ed and renamed into place, so a reader
 * sees the old file, the new one or none.  False (errno set) on failure.
 */
bool		packed_file_write(const char *path, PackedKind kind, size_t region_len,
							  const PackedEntry *entries, int n);

/*
 * Map path if it is a valid file of kind for a region of region_len bytes; false
 * when it is absent, damaged or made for another region (pf left closed).
 */
bool		packed_file_map(PackedFile *pf, const char *path, PackedKind kind,
							size_t region_len);

/*
 * The same check of a file's bytes in memory (len bytes at buf, 8-aligned,
 * not copied: the entries point into buf); pf->map stays NULL.  For the
 * fuzz harness and for packed_file_map.
 */
bool		packed_file_parse(PackedFile *pf, const void *buf, size_t len, PackedKind kind,
							  size_t region_len);

void		packed_file_close(PackedFile *pf);

#endif							/* DEPT_NN_PACKED_FILE_H */
