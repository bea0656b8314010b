/*
 * backbone.c: family detection and the batch-embedding convenience shared
 * by every backbone (see backbone.h).
 */
#include "backbone.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bert.h"
#include "blas.h"
#include "hf_config.h"
#include "t5.h"
#include "use_lite.h"

static bool
file_exists_in(const char *dir, const char *name)
{
	char		path[4096];
	struct stat st;

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int) sizeof(path))
		return false;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

NnStatus
backbone_open(Backbone **out, const char *dir, NnError *err)
{
	struct stat st;

	*out = NULL;
	if (nn_blas_load(err) != NN_OK)
		return NN_ERR_IO;
	if (dir == NULL || dir[0] == '\0')
		return nn_fail(err, NN_ERR_ARG, "model directory is empty");
	if (strlen(dir) > 3000)
		return nn_fail(err, NN_ERR_ARG, "model directory path is too long");
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		return nn_fail(err, NN_ERR_IO, "model directory \"%s\" does not exist", dir);
	if (file_exists_in(dir, "model.json"))
		return use_lite_open(out, dir, err);
	if (file_exists_in(dir, "config.json"))
	{
		/* a Hugging Face directory: the family is config.json's model_type */
		char		type[HF_NAME_LEN];
		char		path[4096];
		NnStatus	s;

		snprintf(path, sizeof(path), "%s/config.json", dir);
		if ((s = hf_config_model_type(path, type, err)) != NN_OK)
			return s;
		if (strcmp(type, "bert") == 0)
			return bert_open(out, dir, err);
		if (strcmp(type, "t5") == 0)
			return t5_open(out, dir, err);
		return nn_fail(err, NN_ERR_FORMAT, "model_type \"%s\" in \"%s\" is not supported (bert, t5)",
					   type, path);
	}
	return nn_fail(err, NN_ERR_IO,
				   "no model found in \"%s\": expected model.json and vocab.json", dir);
}

bool
backbone_uses_file(const char *dir, const char *name)
{
	/* what bert_open and t5_open read, and the index that makes them refuse a sharded checkpoint */
	static const char *const hf_files[] = {"config.json", "model.safetensors",
		"model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
	"special_tokens_map.json"};

	if (file_exists_in(dir, "model.json"))
		return true;
	if (!file_exists_in(dir, "config.json"))
		return false;
	for (size_t i = 0; i < sizeof(hf_files) / sizeof(hf_files[0]); i++)
		if (strcmp(name, hf_files[i]) == 0)
			return true;
	return false;
}

size_t
backbone_alloc_bytes(size_t n)
{
	/* glibc: a 16-byte header, up to 64 bytes lost to alignment, whole pages for mmap'ed chunks */
	if (n > SIZE_MAX - 8192)
		return SIZE_MAX;
	return (n + 16 + 64 + 4095) / 4096 * 4096;
}

size_t
backbone_run_bytes(const Backbone *bb, int max_batch, int max_seq, int dec_seqs, int dec_len)
{
	if (bb == NULL || bb->ops->run_bytes == NULL)
		return SIZE_MAX;
	return bb->ops->run_bytes(bb, max_batch, max_seq, dec_seqs, dec_len);
}

bool
backbone_run_use_bf16(const Backbone *bb, BackboneRun *run, bool on)
{
	return bb->ops->run_use_bf16 != NULL && bb->ops->run_use_bf16(run, on);
}

bool
backbone_run_pool_skip(const Backbone *bb, BackboneRun *run, int skip)
{
	return bb->ops->run_pool_skip != NULL && bb->ops->run_pool_skip(run, skip);
}

bool
backbone_pool_skips(const Backbone *bb)
{
	return bb->ops->run_pool_skip != NULL;
}

void
backbone_close(Backbone *bb)
{
	if (bb != NULL)
		bb->ops->close(bb);
}

NnStatus
backbone_embed_texts(const Backbone *bb, BackboneRun *run,
					 const char *const *texts, const size_t *lens,
					 int n, float *out, NnError *err)
{
	int			max_tokens = bb->max_tokens;
	int32_t    *ids = NULL;
	int		   *counts = NULL;
	float	   *x = NULL;
	uint8_t    *mask = NULL;
	int			seq_len = 1;
	NnStatus	status = NN_OK;

	if (n <= 0)
		return NN_OK;
	ids = malloc(sizeof(int32_t) * (size_t) n * max_tokens);
	counts = malloc(sizeof(int) * (size_t) n);
	if (ids == NULL || counts == NULL)
	{
		status = nn_fail(err, NN_ERR_NOMEM, "out of memory tokenizing %d texts", n);
		goto done;
	}
	for (int i = 0; i < n; i++)
	{
		counts[i] = bb->ops->tokenize(bb, texts[i], lens[i], ids + (size_t) i * max_tokens,
									  max_tokens);
		if (counts[i] < 0)
		{
			status = nn_fail(err, NN_ERR_NOMEM, "out of memory tokenizing text %d", i);
			goto done;
		}
		if (counts[i] > seq_len)
			seq_len = counts[i];
	}

	/* Pad every row to the longest; padded positions are masked out. */
	x = calloc((size_t) n * seq_len * bb->d_embed, sizeof(float));
	mask = calloc((size_t) n * seq_len, 1);
	if (x == NULL || mask == NULL)
	{
		status = nn_fail(err, NN_ERR_NOMEM, "out of memory embedding %d texts", n);
		goto done;
	}
	for (int i = 0; i < n; i++)
		bb->ops->embed_tokens(bb, ids + (size_t) i * max_tokens, counts[i],
							  x + (size_t) i * seq_len * bb->d_embed,
							  mask + (size_t) i * seq_len);
	backbone_run_pool_skip(bb, run, 0);
	status = bb->ops->forward(bb, run, x, mask, n, seq_len, out, err);

done:
	free(ids);
	free(counts);
	free(x);
	free(mask);
	return status;
}
