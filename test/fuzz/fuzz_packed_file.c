/*
 * fuzz_packed_file.c: libFuzzer harness for the reader of shared packed
 * weights, bfloat16 and float32 (packed_file_parse, src/nn/ops/packed_file.h);
 * build and run with test/fuzz/run.sh.
 *
 * The input is taken as a whole file (copied to malloc'ed memory of its
 * exact size, aligned as the reader needs) for a weight region of
 * REGION_BYTES, read as either kind.  Properties checked
 * beyond the sanitizers' own, abort() on a violation:
 *   - a rejection leaves no entries;
 *   - an accepted file: at least one entry; each entry's C and OC are
 *     positive, multiples of 32 (bfloat16) or OC of 16 (float32), its float
 *     source (C x OC x 4 bytes from its offset) lies inside the region, and
 *     its packed data (C x OC x 2 or 4 bytes) inside the input, 64-aligned
 *     from the start; every packed byte is read (ASan sees any read past
 *     the input).
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

/* One reading of buf as a file of kind; the sum of its packed bytes. */
static unsigned
check_kind(const uint8_t *buf, size_t size, PackedKind kind)
{
	PackedFile	pf;
	unsigned	sum = 0;
	size_t		bytes = kind == PACKED_F32 ? 4 : 2;

	if (!packed_file_parse(&pf, buf, size, kind, REGION_BYTES))
	{
		if (pf.entries != NULL || pf.n != 0)
			fail("a rejected file left entries", size);
		return 0;
	}
	if (pf.n <= 0)
		fail("an accepted file without entries", size);
	for (int i = 0; i < pf.n; i++)
	{
		const PackedEntry *e = &pf.entries[i];
		const uint8_t *d = e->data;
		size_t		values = (size_t) e->C * e->OC,
					at = (size_t) (d - buf);

		if (e->C <= 0 || e->OC <= 0 ||
			(kind == PACKED_BF16 ? e->C % 32 || e->OC % 32 : e->OC % 16))
			fail("a bad shape accepted", size);
		if (e->source_offset > REGION_BYTES || values * 4 > REGION_BYTES - e->source_offset)
			fail("a source outside the region accepted", size);
		if (at % 64 || at > size || values * bytes > size - at)
			fail("packed data outside the file accepted", size);
		for (size_t k = 0; k < values * bytes; k++)
			sum += d[k];
	}
	packed_file_close(&pf);
	return sum;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t    *buf = malloc(size > 0 ? size : 1);	/* exactly size: ASan sees a read past it */
	unsigned	sum;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	sum = check_kind(buf, size, PACKED_BF16) + check_kind(buf, size, PACKED_F32);
	free(buf);
	return (int) (sum & 0);
}
