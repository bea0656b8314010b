/*
 * fuzz_adapter_io.c: libFuzzer harness for adapter_deserialize
 * (src/nn/adapters/adapter_io.h); build and run as test/fuzz/README.md says.
 *
 * Each input is decoded twice: as given, and "resealed" (the header's
 * total size and the trailing CRC-32 rewritten to match the bytes), since a
 * mutated input almost never has a valid CRC and the checks behind it
 * would otherwise go unexercised.  Properties checked beyond the
 * sanitizers' own (out-of-bounds reads, leaks, undefined behaviour):
 *   - a rejection is NN_ERR_FORMAT with a message and no outputs;
 *   - an accepted input encodes back to exactly the same bytes (the format
 *     has one encoding per adapter, adapter_io.h).
 *
 * Built with -DADAPTER_IO_SEEDS instead of -fsanitize=fuzzer, the file is
 * a small program that writes the seed corpus: one tiny adapter per
 * method and shape of configuration, and a text-to-text regression.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/adapter_io.h"

#ifndef ADAPTER_IO_SEEDS

static void
put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

/* Decode buf and check the properties above; abort() on a violation. */
static void
check_one(const uint8_t *buf, size_t len)
{
	Adapter    *a = NULL;
	char		fp[65],
			  **names = NULL;
	NnError	err;
	NnStatus	st;
	uint8_t    *again = NULL;
	size_t		again_len = 0;

	nn_error_clear(&err);
	st = adapter_deserialize(buf, len, 2, &a, fp, &names, &err);
	if (st != NN_OK)
	{
		if (st != NN_ERR_FORMAT || a != NULL || names != NULL || err.msg[0] == '\0')
		{
			fprintf(stderr, "bad rejection: status %d, message \"%s\"\n", (int) st, err.msg);
			abort();
		}
		return;
	}
	if (adapter_serialize(a, fp, (const char *const *) names, &again, &again_len, &err) != NN_OK ||
		again_len != len || memcmp(again, buf, len) != 0)
	{
		fprintf(stderr, "accepted input does not encode back to itself: %s\n", err.msg);
		abort();
	}
	free(again);
	adapter_free_class_names(names, a->cfg.n_classes);
	adapter_free(a);
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t    *copy;

	check_one(data, size);
	if (size < ADAPTER_IO_MIN_SIZE || (copy = malloc(size)) == NULL)
		return 0;
	memcpy(copy, data, size);
	put32(copy + 56, (uint32_t) size);	/* total_size, a u64 */
	put32(copy + 60, (uint32_t) ((uint64_t) size >> 32));
	put32(copy + size - 4, adapter_io_crc32(copy, size - 4));
	check_one(copy, size);
	free(copy);
	return 0;
}

#else							/* ADAPTER_IO_SEEDS */

static const char FP[] = "8c1b5a7e2f4d6039a1b2c3d4e5f60718293a4b5c6d7e8f9001122334455667f8";

/* Write one seed adapter for cfg to dir/name. */
static int
write_seed(const char *dir, const char *name, AdapterConfig cfg)
{
	static const char *const classes[] = {"neg", "pos", "neutral \xc3\xa9"},
			   *const bins[] = {"0.0", "0.2", "0.4"};
	Adapter    *a;
	AdapterParam *params[9];
	uint8_t    *buf;
	size_t		len;
	char		path[4096];
	FILE	   *f;
	NnError		err;
	float		x = 0.25f;

	if (adapter_new(&a, &cfg, 1, 1, &err) != NN_OK)
	{
		fprintf(stderr, "%s: %s\n", name, err.msg);
		return 1;
	}
	params[0] = &a->prompt, params[1] = &a->lora_a, params[2] = &a->lora_b;
	params[3] = &a->ept_u, params[4] = &a->ept_v, params[5] = &a->gate_w;
	params[6] = &a->gate_b, params[7] = &a->head_w, params[8] = &a->head_b;
	for (int k = 0; k < 9; k++)
		for (size_t i = 0; i < params[k]->n; i++, x = -x * 1.5f + 0.125f)
			params[k]->w[i] = x;
	if (adapter_serialize(a, FP, cfg.regression ? bins : classes, &buf, &len, &err) != NN_OK)
	{
		fprintf(stderr, "%s: %s\n", name, err.msg);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "wb")) == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
	{
		perror(path);
		return 1;
	}
	printf("%s: %zu bytes\n", path, len);
	free(buf);
	adapter_free(a);
	return 0;
}

int
main(int argc, char **argv)
{
	AdapterConfig base = {.d = 4, .h_dim = 3, .n_classes = 3, .max_len = 5, .alpha = 8.0f};
	AdapterConfig probe = base,
				pt = base,
				dept = base,
				dept_no_rank = base,
				ept = base,
				text_regression = base;
	int			bad = 0;

	if (argc != 2)
	{
		fprintf(stderr, "usage: %s corpus-directory\n", argv[0]);
		return 2;
	}
	probe.method = ADAPTER_PROBE;
	pt.method = ADAPTER_PT;
	pt.prompt_len = 2;
	dept.method = ADAPTER_DEPT;
	dept.prompt_len = 1;
	dept.rank = 2;
	dept_no_rank.method = ADAPTER_DEPT;
	dept_no_rank.prompt_len = 2;
	dept_no_rank.max_len = 0;
	ept.method = ADAPTER_EPT;
	ept.prompt_len = 2;
	ept.rank = 1;
	ept.subspaces = 2;
	ept.subspace_rank = 1;
	bad |= write_seed(argv[1], "probe.bin", probe);
	bad |= write_seed(argv[1], "pt.bin", pt);
	bad |= write_seed(argv[1], "dept.bin", dept);
	bad |= write_seed(argv[1], "dept_rank0.bin", dept_no_rank);
	bad |= write_seed(argv[1], "ept.bin", ept);
	/* format version 5: a text-to-text regression, its class names the bins' values */
	text_regression = dept;
	text_regression.head = ADAPTER_HEAD_TEXT;
	text_regression.regression = 1;
	bad |= write_seed(argv[1], "text_regression.bin", text_regression);
	return bad;
}

#endif							/* ADAPTER_IO_SEEDS */
