/*
 * tfjs_weights.h: the TensorFlow.js weights-manifest reader.
 *
 * File format (a TF.js "graph model" directory):
 *
 *   model.json   JSON object; the only member read here is
 *                "weightsManifest": [ group, ... ] with
 *                group = { "paths":   [ "group1-shard1of7", ... ],
 *                          "weights": [ { "name":  "module/Embeddings_en",
 *                                         "shape": [8002, 256],
 *                                         "dtype": "float32" }, ... ] }
 *                ("modelTopology", the TF GraphDef, is left to the caller).
 *   shard files  a group's tensors are stored back to back, raw little-endian,
 *                in the order of "weights", in the concatenation of its
 *                "paths"; a tensor may span two shards and carries no header
 *                or padding.  Byte offsets are therefore implied by the
 *                shapes and dtypes alone.
 *
 * Accepted: dtypes float32 and int32 (4 bytes each, so every tensor is
 * 4-byte aligned), 0..TFJS_MAX_DIMS dimensions each in 0..INT32_MAX, shard
 * paths that are plain file names in the model directory, unique tensor
 * names.  Rejected with NN_ERR_FORMAT: anything else, quantized weights,
 * shape products or offsets that overflow, and shard files whose sizes do not
 * sum exactly to what the manifest implies.  A missing or unreadable file is
 * NN_ERR_IO.
 *
 * Memory: each group is mapped read-only and contiguous.  One PROT_NONE
 * anonymous region, 2 MiB aligned (base/file_map.h), is reserved for the group
 * and every shard is mmap'ed MAP_SHARED|MAP_FIXED at its offset inside it,
 * which is possible when every
 * shard but the last is a whole number of pages (TF.js writes 4 MiB shards):
 * tensors that span shards are then contiguous, nothing is copied, and all
 * processes that open the model share the page cache.  Otherwise the group
 * is read into one malloc'ed buffer.  The usual mmap caveat applies: a shard
 * file truncated while mapped makes later reads fault (SIGBUS).
 */
#ifndef DEPT_NN_TFJS_WEIGHTS_H
#define DEPT_NN_TFJS_WEIGHTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/nn_common.h"

#define TFJS_MAX_DIMS 8

typedef enum TfjsDtype
{
	TFJS_FLOAT32 = 0,
	TFJS_INT32 = 1
} TfjsDtype;

typedef struct TfjsTensor
{
	const char *name;
	TfjsDtype	dtype;
	int			ndim;			/* 0 for a scalar */
	int64_t		shape[TFJS_MAX_DIMS];
	size_t		numel;			/* product of shape (1 for a scalar) */
	int			group;			/* index into weightsManifest */
	size_t		offset;			/* bytes from the start of the group's data */
	size_t		nbytes;
} TfjsTensor;

typedef struct TfjsWeights TfjsWeights;

/* Methods */

/* Read dir/model.json, check the manifest against the shards and map them. */
NnStatus	tfjs_weights_open(TfjsWeights **out, const char *dir, NnError *err);

/*
 * The same from memory (for tests and fuzzers): json is the model.json text,
 * shards[i] (shard_sizes[i] bytes) the i-th path of the manifest counting
 * across groups in order.  The shard bytes are copied.
 */
NnStatus	tfjs_weights_from_buffers(TfjsWeights **out, const char *json, size_t json_len,
									  const void *const *shards, const size_t *shard_sizes,
									  int n_shards, NnError *err);

void		tfjs_weights_close(TfjsWeights *w);

/* The raw model.json bytes (not NUL-terminated), e.g. to fingerprint them. */
const char *tfjs_weights_json(const TfjsWeights *w, size_t *len);

/* True when the shards are memory-mapped rather than copied. */
bool		tfjs_weights_mapped(const TfjsWeights *w);

int			tfjs_weights_count(const TfjsWeights *w);
const TfjsTensor *tfjs_weights_tensor(const TfjsWeights *w, int i);
const TfjsTensor *tfjs_weights_find(const TfjsWeights *w, const char *name);
const void *tfjs_weights_data(const TfjsWeights *w, const TfjsTensor *t);

/*
 * Look up name and check its dtype and shape (ndim dims in shape; ndim 0 is
 * a scalar).  On success *data points at its bytes; on a missing or
 * mismatched tensor returns NN_ERR_FORMAT naming it.
 */
NnStatus	tfjs_weights_get(const TfjsWeights *w, const char *name, TfjsDtype dtype,
							 int ndim, const int64_t *shape, const void **data,
							 NnError *err);

/* A float32 / int32 scalar (shape [] or [1]). */
NnStatus	tfjs_weights_scalar_f32(const TfjsWeights *w, const char *name, float *out,
									NnError *err);
NnStatus	tfjs_weights_scalar_i32(const TfjsWeights *w, const char *name, int32_t *out,
									NnError *err);

#endif							/* DEPT_NN_TFJS_WEIGHTS_H */
