/*
 * test_bert_unigram.c: a BERT checkpoint that ships XLM-RoBERTa's Unigram
 * tokenizer.json, as intfloat/multilingual-e5-small does (config.json:
 * model_type "bert", BertModel; tokenizer: XLMRobertaTokenizer).  bert.c's
 * bert family reads WordPiece files; with a Unigram tokenizer.json it
 * reads that one instead, with its template.
 *
 * The model is the xlm-roberta fixture's directory with config.json saying
 * "bert" (its tensors are a BertModel's by name); accepted when it opens as
 * the bert family and every case of the fixture's tokenizer_cases.jsonl
 * (transformers' XLMRobertaTokenizer ids, <s> A </s>) gives the same ids.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

#include "formats/hf_config.h"
#include "models/backbone.h"

#define MAX_IDS 512

static char fixture[4096];

/* Copy fixture/name into dir (config.json with model_type "bert"). */
static bool
copy_file(const char *dir, const char *name)
{
	char		from[4200],
				to[4200];
	size_t		len;
	char	   *bytes;
	FILE	   *f;
	bool		ok;

	snprintf(from, sizeof(from), "%s/%s", fixture, name);
	snprintf(to, sizeof(to), "%s/%s", dir, name);
	if ((bytes = hf_read_file(from, (size_t) 16 << 20, &len)) == NULL)
		return false;
	if (strcmp(name, "config.json") == 0)
	{
		cJSON	   *c = cJSON_Parse(bytes);

		free(bytes);
		cJSON_ReplaceItemInObject(c, "model_type", cJSON_CreateString("bert"));
		cJSON_ReplaceItemInObject(c, "architectures", cJSON_CreateStringReference("BertModel"));
		bytes = cJSON_Print(c);
		len = strlen(bytes);
		cJSON_Delete(c);
	}
	ok = (f = fopen(to, "wb")) != NULL && fwrite(bytes, 1, len, f) == len;
	if (f != NULL)
		ok = fclose(f) == 0 && ok;
	free(bytes);
	return ok;
}

/* The cases' ids against the model's tokenization; returns how many were equal. */
static int
run_cases(const Backbone *bb, int *total)
{
	char		path[4200];
	size_t		len;
	char	   *all,
			   *line,
			   *next;
	int			equal = 0;
	int32_t		ids[MAX_IDS];

	snprintf(path, sizeof(path), "%s/tokenizer_cases.jsonl", fixture);
	all = hf_read_file(path, (size_t) 64 << 20, &len);
	CHECK(all != NULL, "cannot read %s", path);
	*total = 0;
	for (line = all; all != NULL && line != NULL && *line != '\0'; line = next)
	{
		cJSON	   *c;
		const cJSON *text,
				   *want;
		int			n;
		bool		eq;

		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if ((c = cJSON_Parse(line)) == NULL)
			continue;
		text = cJSON_GetObjectItem(c, "text");
		want = cJSON_GetObjectItem(c, "ids");
		n = bb->ops->tokenize(bb, text->valuestring, strlen(text->valuestring), ids, MAX_IDS);
		eq = n == cJSON_GetArraySize(want);
		for (int i = 0; eq && i < n; i++)
			eq = ids[i] == cJSON_GetArrayItem(want, i)->valueint;
		CHECK(eq, "case %d \"%.40s\": %d ids", *total + 1, text->valuestring, n);
		equal += eq;
		(*total)++;
		cJSON_Delete(c);
	}
	free(all);
	return equal;
}

static void
test_bert_with_unigram_tokenizer(void)
{
	char		dir[] = "/tmp/dept-bert-unigram-XXXXXX";
	const char *files[] = {"config.json", "model.safetensors", "tokenizer.json"};
	Backbone   *bb = NULL;
	NnError		err;
	int			total = 0,
				equal = 0;

	CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	for (int i = 0; i < 3; i++)
		CHECK(copy_file(dir, files[i]), "cannot copy %s", files[i]);
	CHECK(backbone_open(&bb, dir, &err) == NN_OK, "%s", err.msg);
	if (bb != NULL)
	{
		CHECK(strcmp(bb->ops->family, "bert") == 0, "family %s", bb->ops->family);
		equal = run_cases(bb, &total);
		printf("# tokenizer_cases.jsonl: %d of %d cases equal\n", equal, total);
		CHECK(total >= 1000 && equal == total, "%d of %d", equal, total);
		backbone_close(bb);
	}
	for (int i = 0; i < 3; i++)
	{
		char		p[4200];

		snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
		unlink(p);
	}
	rmdir(dir);
}

int
main(void)
{
	snprintf(fixture, sizeof(fixture), "%s/xlm-roberta-tiny-random", UNIT_HF_DIR());
	RUN_TEST(test_bert_with_unigram_tokenizer);
	return unit_finish();
}
