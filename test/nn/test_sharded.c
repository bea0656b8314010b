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
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "models/backbone.h"
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

static void
test_sharded_equals_whole(void)
{
	Safetensors *src = NULL;
	Backbone   *whole = NULL,
			   *sharded = NULL;
	char		path[4200];
	float		a[64],
				b[64];
	NnError		err;

	snprintf(path, sizeof(path), "%s/model.safetensors", vf_src_dir);
	CHECK(safetensors_open(&src, path, &err) == NN_OK, "%s", err.msg);
	if (src == NULL)
		return;
	write_shard(src, 0, "model-00001-of-00002.safetensors");
	write_shard(src, 1, "model-00002-of-00002.safetensors");
	write_index(src, "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors");
	CHECK(vf_link_file("config.json"), "symlink config.json");
	CHECK(vf_link_file("tokenizer.json"), "symlink tokenizer.json");
	CHECK(backbone_open(&whole, vf_src_dir, &err) == NN_OK, "%s", err.msg);
	CHECK(backbone_open(&sharded, vf_tmp_dir, &err) == NN_OK, "sharded: %s", err.msg);
	if (whole != NULL && sharded != NULL)
	{
		embed_two(whole, a);
		embed_two(sharded, b);
		CHECK(whole->d_out * 2 <= 64 && memcmp(a, b, sizeof(float) * 2 * (size_t) whole->d_out) == 0,
			  "sharded outputs differ");
		CHECK(strcmp(whole->fingerprint, sharded->fingerprint) != 0 &&
			  strlen(sharded->fingerprint) == 64, "fingerprint %s", sharded->fingerprint);
	}
	CHECK(backbone_uses_file(vf_tmp_dir, "model.safetensors.index.json"), "the index");
	CHECK(backbone_uses_file(vf_tmp_dir, "model-00001-of-00002.safetensors") &&
		  backbone_uses_file(vf_tmp_dir, "model-00002-of-00002.safetensors"), "the shards");
	CHECK(!backbone_uses_file(vf_tmp_dir, "model-00003-of-00002.safetensors"), "not an unlisted file");
	backbone_close(whole);
	backbone_close(sharded);
	safetensors_close(src);
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
	return unit_finish();
}
