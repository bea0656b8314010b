/*
 * test_backbone_files.c: backbone_uses_file, the list of files the server's
 * private model copy takes from a model directory (model_cache.c): enough
 * for backbone_open to load the copy exactly as the source, and nothing
 * else (other checkpoint formats, fixtures, or any directory that is not a
 * model).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/backbone.h"
#include "unit.h"

static void
test_tfjs_directory(void)
{
	const char *dir = UNIT_MODEL_DIR();

	CHECK(backbone_uses_file(dir, "model.json"), "the manifest");
	CHECK(backbone_uses_file(dir, "vocab.json"), "the vocabulary");
	CHECK(backbone_uses_file(dir, "group1-shard1of7"), "a shard");
}

static void
test_hf_directory(void)
{
	char		dir[4096];

	snprintf(dir, sizeof(dir), "%s/bert-tiny-random", UNIT_HF_DIR());
	CHECK(backbone_uses_file(dir, "config.json"), "config.json");
	CHECK(backbone_uses_file(dir, "model.safetensors"), "the weights");
	CHECK(backbone_uses_file(dir, "tokenizer.json"), "the tokenizer");
	CHECK(backbone_uses_file(dir, "vocab.txt"), "vocab.txt");
	CHECK(backbone_uses_file(dir, "model.safetensors.index.json"), "a shard index");
	CHECK(!backbone_uses_file(dir, "reference.safetensors"), "not the test reference tensors");
	CHECK(!backbone_uses_file(dir, "tokenizer_cases.jsonl"), "not the test cases");
	CHECK(!backbone_uses_file(dir, "pytorch_model.bin"), "not another checkpoint format");
}

/* A directory that holds no model contributes nothing (the copy is not made). */
static void
test_other_directory(void)
{
	CHECK(!backbone_uses_file("/etc", "passwd"), "/etc/passwd");
	CHECK(!backbone_uses_file("/nonexistent", "model.safetensors"), "a missing directory");
}

int
main(void)
{
	RUN_TEST(test_tfjs_directory);
	RUN_TEST(test_hf_directory);
	RUN_TEST(test_other_directory);
	return unit_finish();
}
