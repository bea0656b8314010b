/*
 * safetensors.h: a validating reader of Hugging Face .safetensors files.
 *
 * File format (https://github.com/huggingface/safetensors, "Format"):
 *
 *   bytes 0..7      N, the header length, unsigned 64-bit little endian
 *   bytes 8..8+N-1  the header: a UTF-8 JSON object (writers pad it with
 *                   trailing spaces so the data starts 8-byte aligned)
 *                     { "__metadata__": { "format": "pt", ... },   optional
 *                       "<tensor name>": { "dtype": "F32",
 *                                          "shape": [30522, 32],
 *                                          "data_offsets": [begin, end] },
 *                       ... }
 *   bytes 8+N..     the data: each tensor's bytes, row-major, little endian,
 *                   at [begin, end) relative to the start of the data
 *
 * Accepted: the dtypes BOOL U8 I8 F8_E5M2 F8_E4M3 I16 U16 F16 BF16 I32 U32
 * F32 I64 U64 F64 (so a file that also carries, say, an I64 position_ids
 * buffer opens), 0..ST_MAX_DIMS dimensions each in 0..INT64_MAX, unique
 * names, and for every tensor end - begin == numel * dtype size with
 * begin <= end <= data length, no two tensors overlapping.  "__metadata__"
 * is skipped.  Unused bytes between or after tensors are tolerated (the
 * reference library refuses them; they cannot mislead a reader).  Rejected
 * with NN_ERR_FORMAT: a file shorter than 8 bytes, N = 0 or past the end of
 * the file or above ST_MAX_HEADER, a header that is not a JSON object,
 * any other dtype (sub-byte F4/F6 included), a shape or offset that is not
 * a non-negative integer or whose product overflows, and every
 * inconsistency above.  A missing or unreadable file is NN_ERR_IO.
 *
 * Memory: the file is mapped read-only (MAP_SHARED, PROT_READ), so every
 * process that opens a model shares the page cache, and F32 tensors are
 * used straight from the mapping.  At open, F16 and BF16 tensors are
 * converted to F32 in memory owned by the reader (F16 exactly, including
 * subnormals, infinities and NaN; BF16 by a 16-bit shift), as is an F32
 * tensor whose bytes are not 4-byte aligned in the file (possible when N is
 * not a multiple of 4).  When the file has a valid float32 sidecar beside
 * it ("<file>.dept-f32", f32_sidecar.h), those views point into the
 * sidecar's read-only shared mapping instead, and nothing is converted;
 * safetensors_write_f32_sidecar writes one (the server does, in its private
 * model copy only).  The usual mmap caveat applies: a file truncated while
 * mapped makes later reads fault (SIGBUS).
 *
 * The host must be little endian, as every machine this runs on is.
 */
#ifndef DEPT_NN_SAFETENSORS_H
#define DEPT_NN_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/nn_common.h"
#include "base/sha256.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER ((uint64_t) 100 << 20)	/* the reference library's limit */
#define ST_MAX_SHARDS 4096
#define ST_MAX_INDEX_BYTES ((size_t) 64 << 20)

typedef enum StDtype
{
	ST_BOOL, ST_U8, ST_I8, ST_F8_E5M2, ST_F8_E4M3,
	ST_I16, ST_U16, ST_F16, ST_BF16,
	ST_I32, ST_U32, ST_F32,
	ST_I64, ST_U64, ST_F64
} StDtype;

typedef struct StTensor
{
	const char *name;
	StDtype		dtype;			/* as stored in the file */
	int			ndim;			/* 0 for a scalar */
	int64_t		shape[ST_MAX_DIMS];
	size_t		numel;			/* product of shape (1 for a scalar) */
	size_t		offset;			/* bytes from the start of the data */
	size_t		nbytes;			/* numel * dtype size */
	const float *f32;			/* float view (F32/F16/BF16), else NULL */
} StTensor;

typedef struct Safetensors Safetensors;

/* Methods */

/* Map the file at path and validate its header against its size. */
NnStatus	safetensors_open(Safetensors **out, const char *path, NnError *err);

/*
 * Write the float32 sidecar of the file at path (f32_sidecar.h) unless it
 * has no F16/BF16 value or a valid sidecar is there already; later opens
 * map it instead of converting.  Only for a directory the caller owns.
 */
NnStatus	safetensors_write_f32_sidecar(const char *path, NnError *err);

/* The same for each shard of the index at path (model.safetensors.index.json). */
NnStatus	safetensors_write_f32_sidecars_index(const char *path, NnError *err);

/* The same over a copy of len bytes at buf (tests, fuzzers). */
NnStatus	safetensors_from_buffer(Safetensors **out, const void *buf, size_t len,
									NnError *err);

/*
 * A sharded checkpoint as one: the index at path (model.safetensors.index.json,
 * as transformers writes it)
 *
 *   {"metadata": {...}, "weight_map": {"<tensor name>": "<shard file>", ...}}
 *
 * names the shard of every tensor; each shard is a .safetensors file in the
 * index's directory, opened (mapped) as safetensors_open does.  Shard names
 * must be plain file names ending in ".safetensors" (no directory part,
 * not starting with '.'); every tensor the map names must be in its shard;
 * a tensor in two shards is NN_ERR_FORMAT.  The result answers every call
 * below over all shards' tensors; its header (safetensors_header) is the
 * index text, so safetensors_hash_sample covers the index and every tensor.
 */
NnStatus	safetensors_open_index(Safetensors **out, const char *path, NnError *err);

/* The same from len bytes of index text, shards read from dir (tests, fuzzers). */
NnStatus	safetensors_open_index_json(Safetensors **out, const char *dir, const char *json,
										size_t len, NnError *err);

/* Whether the index text names name as a shard (false for text that is not an index). */
bool		safetensors_index_lists(const char *json, size_t len, const char *name);

void		safetensors_close(Safetensors *st);

/* The header JSON bytes (not NUL-terminated), e.g. to fingerprint them. */
const char *safetensors_header(const Safetensors *st, size_t *len);

/* True when the file is memory-mapped rather than copied. */
bool		safetensors_mapped(const Safetensors *st);

/*
 * The mapping of a single mapped file (its whole bytes): where the float32
 * views of its F32 tensors point.  False for a sharded or copied one.
 */
bool		safetensors_region(const Safetensors *st, const void **base, size_t *len);

/*
 * Bytes of float views converted into private memory at open, and bytes of
 * sidecars mapped instead (over every shard).
 */
size_t		safetensors_converted_bytes(const Safetensors *st);
size_t		safetensors_sidecar_bytes(const Safetensors *st);

int			safetensors_count(const Safetensors *st);
const StTensor *safetensors_tensor(const Safetensors *st, int i);
const StTensor *safetensors_find(const Safetensors *st, const char *name);

/* The tensor's bytes as stored in the file (any dtype). */
const void *safetensors_raw(const Safetensors *st, const StTensor *t);

/*
 * Feed ctx the header and the first and last sample_bytes of every tensor:
 * a fingerprint that tells checkpoints apart without reading every weight.
 */
void		safetensors_hash_sample(const Safetensors *st, Sha256 *ctx, size_t sample_bytes);

/*
 * Elements first .. first + count - 1 of float tensor t (F32, F16, BF16),
 * its stored bytes at raw, as floats into dst (F16 exactly, BF16 by a shift).
 */
void		safetensors_convert_f32(const StTensor *t, const void *raw, size_t first,
									size_t count, float *dst);

/* Size in bytes of one element of dtype, and its name ("F32"). */
size_t		safetensors_dtype_size(StDtype dtype);
const char *safetensors_dtype_name(StDtype dtype);

/*
 * Look up a float tensor (stored as F32, F16 or BF16) of exactly the given
 * shape (ndim dims; ndim 0 is a scalar).  On success *data points at numel
 * floats; on a missing tensor, another dtype or another shape returns
 * NN_ERR_FORMAT naming it.
 */
NnStatus	safetensors_get_f32(const Safetensors *st, const char *name, int ndim,
								const int64_t *shape, const float **data, NnError *err);

/* The same for a tensor of exactly dtype, giving its raw bytes. */
NnStatus	safetensors_get(const Safetensors *st, const char *name, StDtype dtype,
							int ndim, const int64_t *shape, const void **data, NnError *err);

#endif							/* DEPT_NN_SAFETENSORS_H */
