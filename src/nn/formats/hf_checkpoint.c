/*
 * hf_checkpoint.c: a Hugging Face checkpoint directory's weights and
 * fingerprint, shared by the encoder families (hf_checkpoint.h).
 */
#include "formats/hf_checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HF_HASH_MAX_BYTES (256L << 20)	/* larger files are left out of a fingerprint */

/* path = dir/name if that file can be opened for reading */
static bool
readable_in(char *path, size_t size, const char *dir, const char *name)
{
	FILE	   *f;

	if (snprintf(path, size, "%s/%s", dir, name) >= (int) size || (f = fopen(path, "rb")) == NULL)
		return false;
	fclose(f);
	return true;
}

HfWeightsFile
hf_weights_file(const char *dir, char *path, size_t size)
{
	if (readable_in(path, size, dir, "model.safetensors"))
		return HF_WEIGHTS_SINGLE;
	if (readable_in(path, size, dir, "model.safetensors.index.json"))
		return HF_WEIGHTS_INDEX;
	return HF_WEIGHTS_NONE;
}

NnStatus
hf_open_weights(Safetensors **st, const char *dir, NnError *err)
{
	char		path[4096];

	switch (hf_weights_file(dir, path, sizeof(path)))
	{
		case HF_WEIGHTS_SINGLE:
			return safetensors_open(st, path, err);
		case HF_WEIGHTS_INDEX:
			return safetensors_open_index(st, path, err);
		default:
			return nn_fail(err, NN_ERR_IO,
						   "no model.safetensors in \"%s\" (convert pytorch_model.bin with the safetensors tools)",
						   dir);
	}
}

NnStatus
hf_bind(const Safetensors *st, const float **dst, const char *prefix, const char *body,
		int ndim, int64_t d0, int64_t d1, NnError *err)
{
	char		name[512];
	int64_t		shape[2] = {d0, d1};

	snprintf(name, sizeof(name), "%s%s", prefix, body);
	return safetensors_get_f32(st, name, ndim, shape, dst, err);
}

NnStatus
hf_bind_weight_bias(const Safetensors *st, const float **w, const float **b, const char *prefix,
					const char *base, int out, int in, bool has_bias, NnError *err)
{
	char		name[512];

	snprintf(name, sizeof(name), "%s.weight", base);
	if (hf_bind(st, w, prefix, name, in > 0 ? 2 : 1, out, in, err) != NN_OK)
		return NN_ERR_FORMAT;
	*b = NULL;
	if (!has_bias)
		return NN_OK;
	snprintf(name, sizeof(name), "%s.bias", base);
	return hf_bind(st, b, prefix, name, 1, out, 0, err);
}

bool
hf_hash_file(Sha256 *ctx, const char *dir, const char *name)
{
	enum
	{
		CHUNK = 1 << 18
	};
	char		path[4096];
	FILE	   *f;
	uint8_t    *buf;
	long		size;
	size_t		done = 0,
				n;
	Sha256		file = *ctx;

	/* streamed through one small buffer: a 9 MB tokenizer.json costs no 9 MB of fresh pages */
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "rb")) == NULL)
		return false;
	buf = malloc(CHUNK);
	if (buf == NULL || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
		size > HF_HASH_MAX_BYTES || fseek(f, 0, SEEK_SET) != 0)
		size = -1;
	if (size >= 0)
		hf_hash_bytes(&file, name, NULL, 0);
	while (size >= 0 && done < (size_t) size &&
		   (n = fread(buf, 1, (size_t) size - done < CHUNK ? (size_t) size - done : CHUNK, f)) > 0)
	{
		sha256_update(&file, buf, n);
		done += n;
	}
	free(buf);
	fclose(f);
	if (size < 0 || done != (size_t) size)
		return false;
	*ctx = file;
	return true;
}

void
hf_hash_bytes(Sha256 *ctx, const char *name, const void *bytes, size_t len)
{
	sha256_update(ctx, name, strlen(name) + 1);
	if (len > 0)
		sha256_update(ctx, bytes, len);
}
