/*
 * f32_sidecar.h: the float32 conversion of a .safetensors file's F16 and
 * BF16 tensors, kept in a file beside it ("<file>.dept-f32") so that every
 * later open maps it read-only and shared instead of converting into
 * private memory (docs/design.md 6, "Converted weights").
 *
 * safetensors_open (safetensors.h) gives every float tensor a float view.
 * Aligned F32 tensors are read from the mapping; the rest -- F16, BF16 and
 * F32 at an offset that is not 4-byte aligned, the "pending" tensors -- are
 * converted at open, which for BERT-base in BF16 is 422 MB of anonymous
 * memory in every process.  A sidecar holds exactly the pending tensors'
 * floats; a reader that finds a valid one points their views into its
 * mapping.  Only the server writes sidecars, into its private model copy
 * (src/pg/model_cache.c); the CLI tools read a user's directory and write
 * nothing there.
 *
 * Layout (little endian, as the host):
 *
 *   0    F32SidecarHeader (96 bytes): magic "DEPTST32", version, the number
 *        of entries, the file's own length, and the source it was made
 *        from: size, mtime, ctime (seconds, nanoseconds) and the SHA-256 of
 *        its header JSON
 *   96   n entries of F32SidecarEntry (24 bytes): the tensor's position in
 *        the source header, its dtype, numel and the byte offset of its
 *        floats in this file
 *   ...  the floats, each tensor at a 64-byte aligned offset
 *
 * Validation (f32_sidecar_check), all before any float is read: the magic,
 * version and length; the source fields equal to the file as it is now
 * (a stale sidecar is not used); one entry per pending tensor, in header
 * order, with its position, dtype and numel; every offset 4-aligned, past
 * the table, inside the file and past the previous tensor's end.  A sidecar
 * that fails any of these is ignored and the reader converts as before.
 */
#ifndef DEPT_NN_F32_SIDECAR_H
#define DEPT_NN_F32_SIDECAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "base/nn_common.h"
#include "formats/safetensors.h"

#define F32_SIDECAR_SUFFIX ".dept-f32"
#define F32_SIDECAR_VERSION 1

/* What a sidecar was made from: a safetensors file as it is now. */
typedef struct F32SidecarSource
{
	uint64_t	size;
	int64_t		mtime_sec;
	int64_t		mtime_nsec;
	int64_t		ctime_sec;
	int64_t		ctime_nsec;
	uint8_t		header_sha256[32];
} F32SidecarSource;

/* Methods */

/* Describe the source from its stat and its header JSON. */
void		f32_sidecar_source(F32SidecarSource *src, const struct stat *sb, const char *header,
							   size_t header_len);

/* Whether a tensor is pending: a float dtype without a view yet. */
bool		f32_sidecar_pending(const StTensor *t);

/*
 * Check len bytes of a sidecar at buf (4-byte aligned) against src and the
 * n tensors of the source (header order); when it is valid, point each
 * pending tensor's f32 view into buf and return true.  Reads only the
 * header and the table; leaves the tensors untouched when false.
 */
bool		f32_sidecar_check(const void *buf, size_t len, const F32SidecarSource *src,
							  StTensor *tensors, int n);

/*
 * Map path (a sidecar) and bind it as f32_sidecar_check does; on success
 * *map and *map_len hold the mapping (release with nn_map_release).  False
 * when the file is absent, stale or damaged.
 */
bool		f32_sidecar_map(const char *path, const F32SidecarSource *src, StTensor *tensors,
							int n, void **map, size_t *map_len);

/*
 * Write path (a sidecar) for the pending tensors of the n tensors of a
 * source described by src, their stored bytes at data + offset: a
 * temporary file in 2 MiB writes, fsync'ed and renamed into place, so a
 * reader sees the old file, the new one or none.
 */
NnStatus	f32_sidecar_write(const char *path, const F32SidecarSource *src,
							  const StTensor *tensors, int n, const uint8_t *data, NnError *err);

#endif							/* DEPT_NN_F32_SIDECAR_H */
