/*
 * backbone.c: what every family shares behind the interface of backbone.h:
 * allocation accounting, the optional ops' defaults, closing, and the
 * batch-embedding convenience.  Opening by family is registry.c: this file
 * names no family, so the families can include backbone.h without a cycle.
 */
#include "models/backbone.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/hf_checkpoint.h"
#include "formats/safetensors.h"

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

NnStatus
backbone_write_compiled(const Backbone *bb, const char *dir, NnError *err)
{
	return bb->ops->write_compiled != NULL ? bb->ops->write_compiled(bb, dir, err) : NN_OK;
}

/* dir/name as a regular file: its path into path (size bytes); false if it is not one. */
static bool
regular_file_in(char *path, size_t size, const char *dir, const char *name)
{
	struct stat st;

	return snprintf(path, size, "%s/%s", dir, name) < (int) size &&
		stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

NnStatus
backbone_write_converted(const char *dir, NnError *err)
{
	char		path[4096];

	/* a Hugging Face directory's weights, found as each family's open finds them */
	if (regular_file_in(path, sizeof(path), dir, "model.json") ||
		!regular_file_in(path, sizeof(path), dir, "config.json"))
		return NN_OK;
	switch (hf_weights_file(dir, path, sizeof(path)))
	{
		case HF_WEIGHTS_SINGLE:
			return safetensors_write_f32_sidecar(path, err);
		case HF_WEIGHTS_INDEX:
			return safetensors_write_f32_sidecars_index(path, err);
		default:
			return NN_OK;
	}
}

const char *
backbone_token_piece(const Backbone *bb, int32_t id, char *buf, size_t buf_len)
{
	const char *piece = bb->ops->token_piece ? bb->ops->token_piece(bb, id) : NULL;

	if (piece != NULL)
		return piece;
	snprintf(buf, buf_len, "#%d", (int) id);
	return buf;
}

int
backbone_tokenize_pair(const Backbone *bb, const char *a, size_t alen, const char *b,
					   size_t blen, int32_t *ids, uint8_t *type_ids, int max_ids)
{
	if (bb == NULL || bb->ops->tokenize_pair == NULL)
		return -1;
	return bb->ops->tokenize_pair(bb, a, alen, b, blen, ids, type_ids, max_ids);
}

bool
backbone_has_pair_template(const Backbone *bb)
{
	return bb != NULL && bb->ops->tokenize_pair != NULL;
}

bool
backbone_run_token_types(const Backbone *bb, BackboneRun *run, const uint8_t *type_ids)
{
	return bb->ops->run_token_types != NULL && bb->ops->run_token_types(run, type_ids);
}

bool
backbone_has_text_head(const Backbone *bb)
{
	return bb != NULL && bb->ops->label_loglik != NULL && bb->ops->label_loss_forward != NULL &&
		bb->ops->label_loss_backward != NULL;
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
