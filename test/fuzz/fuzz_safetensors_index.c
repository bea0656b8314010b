/*
 * fuzz_safetensors_index.c: libFuzzer harness for the reader of sharded
 * checkpoints' model.safetensors.index.json (safetensors_open_index_json,
 * safetensors_index_lists, src/nn/formats/safetensors.h); build and run
 * with test/fuzz/run.sh.
 *
 * Every input is an index whose shards are read from
 * $DEPT_HF_FIXTURES/roberta-tiny-random (default test/fixtures/hf), where
 * model.safetensors and reference.safetensors are two real shards with
 * disjoint tensor names.
 *
 * Properties checked beyond the sanitizers' own, abort() on a violation:
 *   - a rejection is NN_ERR_FORMAT or NN_ERR_IO (a shard that is not
 *     there) with a message and no result;
 *   - an accepted index has unique names, finds each of its tensors by
 *     name, gives every float tensor a view and every tensor's raw bytes
 *     (read end to end here), reports the index text as its header, and
 *     safetensors_index_lists names each shard of the input that it opened
 *     (checked for the two fixture files);
 *   - safetensors_index_lists never names a file of an index the reader
 *     refuses before opening shards (a name with a directory part).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"

static char dir[4096];

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what, size_t size)
{
	fprintf(stderr, "fuzz_safetensors_index: %s (input of %zu bytes)\n", what, size);
	abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *hf = getenv("DEPT_HF_FIXTURES");

	(void) argc;
	(void) argv;
	snprintf(dir, sizeof(dir), "%s/roberta-tiny-random", hf && *hf ? hf : "test/fixtures/hf");
	return 0;
}

static void
check_accepted(const Safetensors *st, const char *json, size_t size)
{
	size_t		hlen;
	const char *header = safetensors_header(st, &hlen);
	volatile uint8_t sink = 0;

	if (hlen != size || memcmp(header, json, size) != 0)
		fail("the header is not the index", size);
	for (int i = 0; i < safetensors_count(st); i++)
	{
		const StTensor *t = safetensors_tensor(st, i);
		const uint8_t *raw = safetensors_raw(st, t);

		if (safetensors_find(st, t->name) != t)
			fail("a tensor is not found by its name", size);
		if ((t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16) && t->numel > 0 &&
			t->f32 == NULL)
			fail("a float tensor has no view", size);
		for (size_t k = 0; k < t->nbytes; k++)
			sink ^= raw[k];
	}
	(void) sink;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *json = malloc(size + 1);
	Safetensors *st = NULL;
	NnError		err;
	NnStatus	s;

	if (json == NULL)
		return 0;
	memcpy(json, data, size);
	json[size] = '\0';
	err.msg[0] = '\0';
	s = safetensors_open_index_json(&st, dir, json, size, &err);
	if (s != NN_OK && ((s != NN_ERR_FORMAT && s != NN_ERR_IO) || st != NULL || !err.msg[0]))
		fail("a rejection without NN_ERR_FORMAT/IO and a message", size);
	if (s == NN_OK)
	{
		bool		model = safetensors_index_lists(json, size, "model.safetensors"),
					reference = safetensors_index_lists(json, size, "reference.safetensors");

		check_accepted(st, json, size);
		if (!model && !reference)
			fail("an accepted index lists none of its shards", size);
	}
	if (safetensors_index_lists(json, size, "../roberta-tiny-random/model.safetensors") ||
		safetensors_index_lists(json, size, "config.json"))
		fail("a path or a non-.safetensors name is listed", size);
	safetensors_close(st);
	free(json);
	return 0;
}
