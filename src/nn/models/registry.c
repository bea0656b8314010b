/*
 * registry.c: open a model directory with its family (backbone_open,
 * backbone_uses_file, declared in backbone.h).  The one place outside a
 * family's folder that names the families.
 */
#include "models/backbone.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "models/bert/bert.h"
#include "models/deberta/deberta.h"
#include "models/modernbert/modernbert.h"
#include "models/t5/t5.h"
#include "models/use_lite/use_lite.h"
#include "ops/blas.h"

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
		if (bert_is_family(type))
			return bert_open(out, dir, err);
		if (strcmp(type, "deberta-v2") == 0)
			return deberta_open(out, dir, err);
		if (strcmp(type, "modernbert") == 0)
			return modernbert_open(out, dir, err);
		if (strcmp(type, "t5") == 0)
			return t5_open(out, dir, err);
		return nn_fail(err, NN_ERR_FORMAT, "model_type \"%s\" in \"%s\" is not supported "
					   "(bert, roberta, xlm-roberta, distilbert, deberta-v2, modernbert, t5)",
					   type, path);
	}
	return nn_fail(err, NN_ERR_IO,
				   "no model found in \"%s\": expected model.json and vocab.json", dir);
}

/* Whether dir/model.safetensors.index.json names name as a shard. */
static bool
index_lists(const char *dir, const char *name)
{
	char		path[4096];
	size_t		len;
	char	   *json;
	bool		found;

	if (snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir) >= (int) sizeof(path) ||
		(json = hf_read_file(path, ST_MAX_INDEX_BYTES, &len)) == NULL)
		return false;
	found = safetensors_index_lists(json, len, name);
	free(json);
	return found;
}

bool
backbone_uses_file(const char *dir, const char *name)
{
	/* what bert_open, deberta_open, modernbert_open and t5_open read, the index of a sharded checkpoint and its shards */
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
	return index_lists(dir, name);
}
