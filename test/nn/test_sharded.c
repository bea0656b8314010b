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
#include <unistd.h>

#include "formats/safetensors.h"
#include "models/backbone.h"
#include "unit.h"

static char src_dir[4096];
static char tmp_dir[64];

static void
write_file(const char *name, const void *data, size_t len)
{
	char		p[256];
	FILE	   *f;

	snprintf(p, sizeof(p), "%s/%s", tmp_dir, name);
	unlink(p);
	if ((f = fopen(p, "wb")) != NULL)
	{
		fwrite(data, 1, len, f);
		fclose(f);
	}
}

/* The tensors i of src with i % 2 == part (part < 0: all) as a .safetensors file. */
static void
write_shard(const Safetensors *src, int part, const char *name)
{
	cJSON	   *hdr = cJSON_CreateObject();
	size_t		off = 0,
				hlen,
				pad;
	char	   *text;
	uint8_t    *buf;
	uint64_t	n;

	for (int i = 0; i < safetensors_count(src); i++)
	{
		const StTensor *t = safetensors_tensor(src, i);
		cJSON	   *e;
		double		shape[ST_MAX_DIMS],
					offs[2] = {(double) off, (double) (off + t->nbytes)};

		if (part >= 0 && i % 2 != part)
			continue;
		for (int d = 0; d < t->ndim; d++)
			shape[d] = (double) t->shape[d];
		e = cJSON_AddObjectToObject(hdr, t->name);
		cJSON_AddStringToObject(e, "dtype", safetensors_dtype_name(t->dtype));
		cJSON_AddItemToObject(e, "shape", cJSON_CreateDoubleArray(shape, t->ndim));
		cJSON_AddItemToObject(e, "data_offsets", cJSON_CreateDoubleArray(offs, 2));
		off += t->nbytes;
	}
	text = cJSON_PrintUnformatted(hdr);
	hlen = strlen(text);
	pad = (8 - hlen % 8) % 8;
	n = hlen + pad;
	buf = malloc(8 + n + off);
	memcpy(buf, &n, 8);
	memcpy(buf + 8, text, hlen);
	memset(buf + 8 + hlen, ' ', pad);
	off = 0;
	for (int i = 0; i < safetensors_count(src); i++)
	{
		const StTensor *t = safetensors_tensor(src, i);

		if (part >= 0 && i % 2 != part)
			continue;
		memcpy(buf + 8 + n + off, safetensors_raw(src, t), t->nbytes);
		off += t->nbytes;
	}
	write_file(name, buf, 8 + n + off);
	free(buf);
	free(text);
	cJSON_Delete(hdr);
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
	write_file("model.safetensors.index.json", text, strlen(text));
	free(text);
	cJSON_Delete(root);
}

static void
link_file(const char *name)
{
	char		from[4200],
				to[256],
				abs[4096];

	if (realpath(src_dir, abs) == NULL)
		return;
	snprintf(from, sizeof(from), "%s/%s", abs, name);
	snprintf(to, sizeof(to), "%s/%s", tmp_dir, name);
	CHECK(symlink(from, to) == 0, "symlink %s", name);
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

	snprintf(path, sizeof(path), "%s/model.safetensors", src_dir);
	CHECK(safetensors_open(&src, path, &err) == NN_OK, "%s", err.msg);
	if (src == NULL)
		return;
	write_shard(src, 0, "model-00001-of-00002.safetensors");
	write_shard(src, 1, "model-00002-of-00002.safetensors");
	write_index(src, "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors");
	link_file("config.json");
	link_file("tokenizer.json");
	CHECK(backbone_open(&whole, src_dir, &err) == NN_OK, "%s", err.msg);
	CHECK(backbone_open(&sharded, tmp_dir, &err) == NN_OK, "sharded: %s", err.msg);
	if (whole != NULL && sharded != NULL)
	{
		embed_two(whole, a);
		embed_two(sharded, b);
		CHECK(whole->d_out * 2 <= 64 && memcmp(a, b, sizeof(float) * 2 * (size_t) whole->d_out) == 0,
			  "sharded outputs differ");
		CHECK(strcmp(whole->fingerprint, sharded->fingerprint) != 0 &&
			  strlen(sharded->fingerprint) == 64, "fingerprint %s", sharded->fingerprint);
	}
	CHECK(backbone_uses_file(tmp_dir, "model.safetensors.index.json"), "the index");
	CHECK(backbone_uses_file(tmp_dir, "model-00001-of-00002.safetensors") &&
		  backbone_uses_file(tmp_dir, "model-00002-of-00002.safetensors"), "the shards");
	CHECK(!backbone_uses_file(tmp_dir, "model-00003-of-00002.safetensors"), "not an unlisted file");
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
	NnStatus	s = safetensors_open_index_json(&st, tmp_dir, json, strlen(json), &err);

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
	snprintf(path, sizeof(path), "%s/model.safetensors", src_dir);
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
	snprintf(path, sizeof(path), "%s/all.safetensors", tmp_dir);
	unlink(path);
	safetensors_close(src);
}

static void
remove_tmp(void)
{
	static const char *files[] = {"config.json", "tokenizer.json", "model.safetensors.index.json",
	"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
	char		p[256];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
	{
		snprintf(p, sizeof(p), "%s/%s", tmp_dir, files[i]);
		unlink(p);
	}
	rmdir(tmp_dir);
}

int
main(void)
{
	snprintf(src_dir, sizeof(src_dir), "%s/roberta-tiny-random", UNIT_HF_DIR());
	snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/dept_shards_XXXXXX");
	if (mkdtemp(tmp_dir) == NULL)
	{
		printf("not ok 1 - mkdtemp\n");
		return 1;
	}
	RUN_TEST(test_sharded_equals_whole);
	RUN_TEST(test_bad_indexes);
	remove_tmp();
	return unit_finish();
}
