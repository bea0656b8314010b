/*
 * test_sharded.c: a checkpoint split into shards with a
 * model.safetensors.index.json loads as one (safetensors_open_index).
 *
 * The fixture UNIT_HF_DIR()/roberta-tiny-random's model.safetensors is split
 * here into two shards (tensors alternating, written by write_shard) in a
 * temp directory with the index, config.json and tokenizer.json; the
 * backbone opened from it must give bit-identical outputs, and
 * backbone_uses_file must take the index and both shards.  Then damaged
 * indexes: not JSON, no weight_map, a shard path with a directory part, a
 * tensor in the wrong shard, a missing shard, a tensor in two shards.
 * The T5 fixtures (t5-tiny-random, tied head; t5-v1_1-tiny-random, gated
 * FFN and its own lm_head) are split the same way: the encoder's sentence
 * vectors and the decoder's label log-likelihoods must be bit-identical.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "models/backbone.h"
#include "models/t5/t5.h"
#include "unit.h"
#include "variant_fixture.h"

/* The tensors i of src with i % 2 == part (part < 0: all) as a .safetensors file. */
static void
write_shard(const Safetensors *src, int part, const char *name)
{
	VfSt		st = {0};

	for (int i = 0; i < safetensors_count(src); i++)
	{
		const StTensor *t = safetensors_tensor(src, i);

		if (part < 0 || i % 2 == part)
			vf_st_add(&st, t->name, safetensors_dtype_name(t->dtype), t->ndim, t->shape,
					  safetensors_raw(src, t), t->nbytes);
	}
	vf_st_write(&st, name);
}

/* The index mapping tensor i to shard name[i % 2]. */
static void
write_index(const Safetensors *src, const char *name0, const char *name1)
{
	cJSON	   *root = cJSON_CreateObject();
	cJSON	   *map;
	char	   *text;

	cJSON_AddObjectToObject(root, "metadata");
	map = cJSON_AddObjectToObject(root, "weight_map");
	for (int i = 0; i < safetensors_count(src); i++)
		cJSON_AddStringToObject(map, safetensors_tensor(src, i)->name, i % 2 ? name1 : name0);
	text = cJSON_PrintUnformatted(root);
	vf_write_file("model.safetensors.index.json", text, strlen(text));
	free(text);
	cJSON_Delete(root);
}

/* Pooled outputs of two texts through bb. */
static void
embed_two(const Backbone *bb, float *out)
{
	const char *texts[2] = {"hide new secretions from the parental units", "a joy !"};
	size_t		lens[2] = {strlen(texts[0]), strlen(texts[1])};
	BackboneRun *run = bb->ops->run_new(bb, 2, bb->max_tokens);
	NnError		err;

	CHECK(backbone_embed_texts(bb, run, texts, lens, 2, out, &err) == NN_OK, "%s", err.msg);
	bb->ops->run_free(run);
}

/*
 * vf_tmp_dir: the fixture's weights in two shards with their index, and
 * links to its config.json and tokenizer.json; the fixture's backbone into
 * *whole, the sharded one into *sharded (NULL when either fails to open).
 */
static void
open_whole_and_sharded(Backbone **whole, Backbone **sharded)
{
	Safetensors *src = NULL;
	char		path[4200];
	NnError		err;

	*whole = *sharded = NULL;
	snprintf(path, sizeof(path), "%s/model.safetensors", vf_src_dir);
	CHECK(safetensors_open(&src, path, &err) == NN_OK, "%s", err.msg);
	if (src == NULL)
		return;
	write_shard(src, 0, "model-00001-of-00002.safetensors");
	write_shard(src, 1, "model-00002-of-00002.safetensors");
	write_index(src, "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors");
	safetensors_close(src);
	CHECK(vf_link_file("config.json"), "symlink config.json");
	CHECK(vf_link_file("tokenizer.json"), "symlink tokenizer.json");
	CHECK(backbone_open(whole, vf_src_dir, &err) == NN_OK, "%s", err.msg);
	CHECK(backbone_open(sharded, vf_tmp_dir, &err) == NN_OK, "sharded: %s", err.msg);
	if (*whole != NULL && *sharded != NULL)
		CHECK(strcmp((*whole)->fingerprint, (*sharded)->fingerprint) != 0 &&
			  strlen((*sharded)->fingerprint) == 64, "fingerprint %s", (*sharded)->fingerprint);
}

static void
test_sharded_equals_whole(void)
{
	Backbone   *whole,
			   *sharded;
	float		a[64],
				b[64];

	open_whole_and_sharded(&whole, &sharded);
	if (whole != NULL && sharded != NULL)
	{
		embed_two(whole, a);
		embed_two(sharded, b);
		CHECK(whole->d_out * 2 <= 64 && memcmp(a, b, sizeof(float) * 2 * (size_t) whole->d_out) == 0,
			  "sharded outputs differ");
	}
	CHECK(backbone_uses_file(vf_tmp_dir, "model.safetensors.index.json"), "the index");
	CHECK(backbone_uses_file(vf_tmp_dir, "model-00001-of-00002.safetensors") &&
		  backbone_uses_file(vf_tmp_dir, "model-00002-of-00002.safetensors"), "the shards");
	CHECK(!backbone_uses_file(vf_tmp_dir, "model-00003-of-00002.safetensors"), "not an unlisted file");
	backbone_close(whole);
	backbone_close(sharded);
}

#define T5_CANDS 2
#define T5_CAND_LEN 4

/* Log-likelihoods of two labels for each of two texts through a T5 bb's decoder. */
static void
label_scores_two(const Backbone *bb, float *scores)
{
	const char *texts[2] = {"sst2 sentence: a joy !", "sst2 sentence: dull and long"};
	const char *labels[T5_CANDS] = {"positive", "negative"};
	int32_t		ids[2 * 16],
				cands[T5_CANDS * T5_CAND_LEN];
	float		x[2 * 16 * 64];
	uint8_t		mask[2 * 16];
	BackboneRun *run = bb->ops->run_new(bb, 2, 16);
	NnError		err;

	CHECK(run != NULL && bb->d_embed <= 64, "run_new");
	if (run == NULL || bb->d_embed > 64)
		return;
	for (int i = 0; i < 2 * 16; i++)
		ids[i] = t5_pad_id(bb);
	for (int i = 0; i < T5_CANDS * T5_CAND_LEN; i++)
		cands[i] = t5_pad_id(bb);
	for (int t = 0; t < 2; t++)
		bb->ops->tokenize(bb, texts[t], strlen(texts[t]), ids + t * 16, 16);
	for (int c = 0; c < T5_CANDS; c++)
		bb->ops->tokenize(bb, labels[c], strlen(labels[c]), cands + c * T5_CAND_LEN, T5_CAND_LEN);
	bb->ops->embed_tokens(bb, ids, 2 * 16, x, mask);
	for (int i = 0; i < 2 * 16; i++)
		mask[i] = ids[i] != t5_pad_id(bb);
	CHECK(bb->ops->label_loglik(bb, run, x, mask, 2, 16, cands, T5_CANDS, T5_CAND_LEN, scores,
								&err) == NN_OK, "%s", err.msg);
	bb->ops->run_free(run);
}

/* The T5 fixture vf_src_dir split in two shards gives the same encoder and decoder outputs. */
static void
test_t5_sharded_equals_whole(void)
{
	Backbone   *whole,
			   *sharded;
	float		a[64],
				b[64],
				la[2 * T5_CANDS],
				lb[2 * T5_CANDS];

	open_whole_and_sharded(&whole, &sharded);
	if (whole != NULL && sharded != NULL)
	{
		CHECK(t5_is(whole) && t5_is(sharded), "both open as T5");
		embed_two(whole, a);
		embed_two(sharded, b);
		CHECK(whole->d_out * 2 <= 64 && memcmp(a, b, sizeof(float) * 2 * (size_t) whole->d_out) == 0,
			  "sharded sentence vectors differ");
		label_scores_two(whole, la);
		label_scores_two(sharded, lb);
		printf("# %s: log p(positive | text 0) %.6f whole, %.6f sharded\n", vf_src_dir, la[0], lb[0]);
		CHECK(memcmp(la, lb, sizeof(la)) == 0, "sharded label log-likelihoods differ");
	}
	backbone_close(whole);
	backbone_close(sharded);
}

/* Index text that must fail with want. */
static void
expect_index(const char *json, NnStatus want, const char *what)
{
	Safetensors *st = NULL;
	NnError		err;
	NnStatus	s = safetensors_open_index_json(&st, vf_tmp_dir, json, strlen(json), &err);

	CHECK(s == want && st == NULL, "%s: status %d", what, (int) s);
	if (s != NN_OK)
		printf("# %s -> %s\n", what, err.msg);
	safetensors_close(st);
}

static void
test_bad_indexes(void)
{
	Safetensors *src = NULL;
	char		path[4200];
	NnError		err;
	const char *q = "embeddings.LayerNorm.bias";

	expect_index("[1, 2]", NN_ERR_FORMAT, "not an object");
	expect_index("{\"weight_map\": {}}", NN_ERR_FORMAT, "empty weight_map");
	expect_index("{\"weight_map\": {\"x\": \"../model.safetensors\"}}", NN_ERR_FORMAT,
				 "a directory part");
	expect_index("{\"weight_map\": {\"x\": \"config.json\"}}", NN_ERR_FORMAT, "not .safetensors");
	expect_index("{\"weight_map\": {\"x\": 3}}", NN_ERR_FORMAT, "not a string");
	expect_index("{\"weight_map\": {\"x\": \"none.safetensors\"}}", NN_ERR_IO, "missing shard");
	snprintf(path, sizeof(path), "%s/model.safetensors", vf_src_dir);
	if (safetensors_open(&src, path, &err) != NN_OK)
		return;
	write_shard(src, -1, "all.safetensors");
	{
		char		json[512];

		snprintf(json, sizeof(json), "{\"weight_map\": {\"%s\": \"model-00002-of-00002.safetensors\"}}", q);
		/* tensor 0 of the alternation lives in shard 1: naming shard 2 is wrong */
		expect_index(json, NN_ERR_FORMAT, "tensor in another shard");
		snprintf(json, sizeof(json), "{\"weight_map\": {\"%s\": \"all.safetensors\", "
				 "\"x\": \"model-00001-of-00002.safetensors\"}}", q);
		expect_index(json, NN_ERR_FORMAT, "tensor in two shards");
		snprintf(json, sizeof(json), "{\"weight_map\": {\"nope\": \"all.safetensors\"}}");
		expect_index(json, NN_ERR_FORMAT, "tensor not in its shard");
	}
	vf_unlink("all.safetensors");
	safetensors_close(src);
}

int
main(void)
{
	static const char *const shards[] = {"model.safetensors.index.json",
		"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", NULL};

	if (!vf_setup("roberta-tiny-random", "/tmp/dept_shards_XXXXXX"))
	{
		printf("not ok 1 - mkdtemp or the fixture\n");
		return 1;
	}
	RUN_TEST(test_sharded_equals_whole);
	RUN_TEST(test_bad_indexes);
	vf_remove_tmp(shards);
	for (int f = 0; f < 2; f++)
	{
		if (!vf_setup(f == 0 ? "t5-tiny-random" : "t5-v1_1-tiny-random", "/tmp/dept_shards_XXXXXX"))
		{
			printf("not ok - mkdtemp or the T5 fixture\n");
			return 1;
		}
		RUN_TEST(test_t5_sharded_equals_whole);
		vf_remove_tmp(shards);
	}
	return unit_finish();
}
