/*
 * fuzz_packed_file.c: libFuzzer harness for the reader of shared packed
 * bfloat16 weights (packed_file_parse, src/nn/ops/packed_file.h); build and
 * run with test/fuzz/run.sh.
 *
 * The input is taken as a whole file (copied to malloc'ed memory of its
 * exact size, aligned as the reader needs) for a weight region of
 * REGION_BYTES.  Properties checked
 * beyond the sanitizers' own, abort() on a violation:
 *   - a rejection leaves no entries;
 *   - an accepted file: at least one entry; each entry's C and OC are
 *     positive multiples of 32, its float source (C x OC x 4 bytes from its
 *     offset) lies inside the region, and its packed data (C x OC x 2
 *     bytes) inside the input, 64-aligned from the start; every packed
 *     byte is read (ASan sees any read past the input).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/packed_file.h"

#define REGION_BYTES ((size_t) 1 << 20)

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what, size_t size)
{
	fprintf(stderr, "fuzz_packed_file: %s (input of %zu bytes)\n", what, size);
	abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t    *buf = malloc(size > 0 ? size : 1);	/* exactly size: ASan sees a read past it */
	PackedFile	pf;
	unsigned	sum = 0;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	if (!packed_file_parse(&pf, buf, size, REGION_BYTES))
	{
		if (pf.entries != NULL || pf.n != 0)
			fail("a rejected file left entries", size);
		free(buf);
		return 0;
	}
	if (pf.n <= 0)
		fail("an accepted file without entries", size);
	for (int i = 0; i < pf.n; i++)
	{
		const PackedEntry *e = &pf.entries[i];
		size_t		values = (size_t) e->C * e->OC,
					at = (size_t) ((const uint8_t *) e->data - buf);

		if (e->C <= 0 || e->OC <= 0 || e->C % 32 || e->OC % 32)
			fail("a bad shape accepted", size);
		if (e->source_offset > REGION_BYTES || values * 4 > REGION_BYTES - e->source_offset)
			fail("a source outside the region accepted", size);
		if (at % 64 || at > size || values * 2 > size - at)
			fail("packed data outside the file accepted", size);
		for (size_t k = 0; k < values; k++)
			sum += e->data[k];
	}
	packed_file_close(&pf);
	free(buf);
	return (int) (sum & 0);
}
