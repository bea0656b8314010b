/*
 * hf_checkpoint.c: a Hugging Face checkpoint directory's weights and
 * fingerprint, shared by the encoder families (hf_checkpoint.h).
 */
#include "formats/hf_checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/hf_config.h"

NnStatus
hf_open_weights(Safetensors **st, const char *dir, NnError *err)
{
	char		path[4096];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	if ((f = fopen(path, "rb")) != NULL)
	{
		fclose(f);
		return safetensors_open(st, path, err);
	}
	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
	if ((f = fopen(path, "rb")) != NULL)
	{
		fclose(f);
		return safetensors_open_index(st, path, err);
	}
	return nn_fail(err, NN_ERR_IO,
				   "no model.safetensors in \"%s\" (convert pytorch_model.bin with the safetensors tools)",
				   dir);
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
	char		path[4096];
	size_t		len;
	char	   *text;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((text = hf_read_file(path, (size_t) 256 << 20, &len)) == NULL)
		return false;
	sha256_update(ctx, name, strlen(name) + 1);
	sha256_update(ctx, text, len);
	free(text);
	return true;
}
