/*
 * hf_checkpoint.h: what every Hugging Face encoder family does with a
 * checkpoint directory the same way: open its weights (one
 * model.safetensors or the shards of model.safetensors.index.json), bind
 * named float tensors of a given shape, and hash its files into a model
 * fingerprint.
 */
#ifndef DEPT_NN_HF_CHECKPOINT_H
#define DEPT_NN_HF_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "base/nn_common.h"
#include "base/sha256.h"
#include "formats/safetensors.h"

/* Where a checkpoint directory's weights are (hf_weights_file). */
typedef enum HfWeightsFile
{
	HF_WEIGHTS_NONE,
	HF_WEIGHTS_SINGLE,			/* dir/model.safetensors */
	HF_WEIGHTS_INDEX			/* dir/model.safetensors.index.json and its shards */
} HfWeightsFile;

/* Methods */

/*
 * The weights of dir, as hf_open_weights finds them: dir/model.safetensors
 * if it can be opened, else dir/model.safetensors.index.json; its path in
 * path (size bytes).
 */
HfWeightsFile hf_weights_file(const char *dir, char *path, size_t size);

/*
 * Open dir/model.safetensors, else the shards of
 * dir/model.safetensors.index.json, naming the usual alternative when
 * neither is there (NN_ERR_IO).
 */
NnStatus	hf_open_weights(Safetensors **st, const char *dir, NnError *err);

/* Bind prefix + body as a float tensor of shape (d0) (ndim 1) or (d0, d1) (ndim 2). */
NnStatus	hf_bind(const Safetensors *st, const float **dst, const char *prefix, const char *body,
					int ndim, int64_t d0, int64_t d1, NnError *err);

/*
 * "<prefix><base>.weight" of shape (out, in), or (out) when in is 0, and,
 * when has_bias, "<prefix><base>.bias" of shape (out); else *b = NULL.
 */
NnStatus	hf_bind_weight_bias(const Safetensors *st, const float **w, const float **b,
								const char *prefix, const char *base, int out, int in,
								bool has_bias, NnError *err);

/* Hash name and the bytes of dir/name into ctx if it can be read whole (at most 256 MiB); false otherwise. */
bool		hf_hash_file(Sha256 *ctx, const char *dir, const char *name);

/*
 * Hash name and bytes into ctx exactly as hf_hash_file hashes a file of that
 * name and content, for a file the caller has already read.
 */
void		hf_hash_bytes(Sha256 *ctx, const char *name, const void *bytes, size_t len);

#endif							/* DEPT_NN_HF_CHECKPOINT_H */
