/*
 * test_adapter_io.c: the adapter binary format (src/nn/adapters/adapter_io.h).
 *
 * Round trips for every method must be bit-identical and byte-identical
 * when encoded again.  Every corruption must come back as NN_ERR_FORMAT
 * with a message naming the fault and no allocation left behind: each
 * truncation, random byte flips, and forged fields.  A forged field is
 * written into a valid buffer which is then "resealed" (total size and
 * CRC recomputed), so the test reaches the check behind the CRC that is
 * meant to catch it.  The offsets below restate the table in
 * adapter_io.h, so a change of layout shows up here.
 *
 * Versions: linear-head adapters are still written as format version 1,
 * byte for byte as the build before version 2 (commit ad9f541) wrote them
 * (their lengths and CRCs are pinned below), and text-to-text adapters as
 * version 2 with head = 1 and no head tensors; both read back, and a head
 * field that disagrees with its version is refused.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/adapter_io.h"
#include "base/rng.h"
#include "unit.h"

enum
{
	OFF_VERSION = 4,
	OFF_HEADER_SIZE = 8,
	OFF_METHOD = 12,
	OFF_D = 16,
	OFF_H_DIM = 20,
	OFF_N_CLASSES = 24,
	OFF_PROMPT_LEN = 28,
	OFF_MAX_LEN = 32,
	OFF_RANK = 36,
	OFF_SUBSPACES = 40,
	OFF_SUBSPACE_RANK = 44,
	OFF_ALPHA = 48,
	OFF_N_TENSORS = 52,
	OFF_TOTAL_SIZE = 56,
	OFF_FINGERPRINT = 64,
	OFF_HEAD = 96,				/* reserved (0) in version 1 */
	OFF_RESERVED = 100,
	OFF_CLASSES = 104
};

static const char FP[] = "00112233445566778899aabbccddeeff0123456789abcdef0f1e2d3c4b5a6978";
static const char *const NAMES[] = {"abcd", "efgh", "n\xc3\xa9g"};	/* 4 bytes each */

/* ---- helpers ------------------------------------------------------------- */

static void
put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

/* Make a forged buffer consistent again: total size and CRC. */
static void
reseal(uint8_t *buf, size_t len)
{
	put32(buf + OFF_TOTAL_SIZE, (uint32_t) len);
	put32(buf + OFF_TOTAL_SIZE + 4, (uint32_t) ((uint64_t) len >> 32));
	put32(buf + len - 4, adapter_io_crc32(buf, len - 4));
}

static AdapterConfig
config_for(AdapterMethod method)
{
	AdapterConfig cfg = {.method = method, .d = 6, .h_dim = 5, .n_classes = 3,
	.max_len = 7, .alpha = 8.0f};

	if (method != ADAPTER_PROBE)
		cfg.prompt_len = method == ADAPTER_PT ? 3 : 2;
	if (method == ADAPTER_DEPT || method == ADAPTER_EPT)
		cfg.rank = 2;
	if (method == ADAPTER_EPT)
	{
		cfg.subspaces = 2;
		cfg.subspace_rank = 3;
	}
	return cfg;
}

/* Every stored value random, with a few special bit patterns mixed in. */
static void
randomize(Adapter *a, uint64_t seed)
{
	AdapterParam *params[] = {&a->prompt, &a->lora_a, &a->lora_b, &a->ept_u, &a->ept_v,
	&a->gate_w, &a->gate_b, &a->head_w, &a->head_b};
	const float special[] = {-0.0f, 1e-40f, -3.4e38f, 1.17549435e-38f};
	Rng			rng;

	rng_seed(&rng, seed);
	for (size_t k = 0; k < sizeof(params) / sizeof(params[0]); k++)
		for (size_t i = 0; i < params[k]->n; i++)
			params[k]->w[i] = i < 4 && k == 7 ? special[i] : (float) (rng_uniform(&rng) * 4 - 2);
}

static Adapter *
make_adapter(AdapterMethod method)
{
	AdapterConfig cfg = config_for(method);
	Adapter    *a = NULL;
	NnError		err;

	if (adapter_new(&a, &cfg, 2, 5, &err) != NN_OK)
	{
		printf("# adapter_new: %s\n", err.msg);
		exit(1);
	}
	randomize(a, 11 + (uint64_t) method);
	return a;
}

/* A valid encoding of the test adapter for method (caller frees). */
static uint8_t *
encode(AdapterMethod method, size_t *len)
{
	Adapter    *a = make_adapter(method);
	uint8_t    *buf = NULL;
	NnError		err;

	if (adapter_serialize(a, FP, NAMES, &buf, len, &err) != NN_OK)
	{
		printf("# adapter_serialize: %s\n", err.msg);
		exit(1);
	}
	adapter_free(a);
	return buf;
}

/* Offset of the record of the named tensor in a valid buffer, 0 if none. */
static size_t
find_tensor(const uint8_t *buf, const char *name)
{
	size_t		pos = OFF_CLASSES + 4;
	uint32_t	n_tensors = get32(buf + OFF_N_TENSORS);

	for (uint32_t i = 0; i < get32(buf + OFF_CLASSES); i++)
		pos += 4 + get32(buf + pos);
	for (uint32_t i = 0; i < n_tensors; i++)
	{
		size_t		rec = pos;
		uint32_t	name_len = get32(buf + pos);
		int			match = name_len == strlen(name) && memcmp(buf + pos + 4, name, name_len) == 0;

		pos += 4 + name_len;
		pos += 4 + 4 * (size_t) get32(buf + pos);
		pos += 8 + get32(buf + pos);	/* byte lengths stay below 4 GiB here */
		if (match)
			return rec;
	}
	return 0;
}

/* Offset of a tensor record's first value. */
static size_t
tensor_data(const uint8_t *buf, size_t rec)
{
	size_t		pos = rec + 4 + get32(buf + rec);

	return pos + 4 + 4 * (size_t) get32(buf + pos) + 8;
}

/* Deserialize and expect NN_ERR_FORMAT with want in the message, nothing allocated. */
static void
expect_reject_at(const uint8_t *buf, size_t len, const char *want, int line)
{
	Adapter    *a = (Adapter *) 1;
	char	  **names = (char **) 1;
	char		fp[65];
	NnError		err;
	NnStatus	st;

	nn_error_clear(&err);
	st = adapter_deserialize(buf, len, 4, &a, fp, &names, &err);
	CHECK(st == NN_ERR_FORMAT, "line %d: status %d (%s)", line, (int) st, err.msg);
	CHECK(a == NULL && names == NULL, "line %d: outputs reset on failure", line);
	CHECK(want == NULL || strstr(err.msg, want) != NULL, "line %d: message \"%s\" lacks \"%s\"",
		  line, err.msg, want);
	if (st == NN_OK)
	{
		adapter_free_class_names(names, a->cfg.n_classes);
		adapter_free(a);
	}
}

#define EXPECT_REJECT(buf, len, want) expect_reject_at(buf, len, want, __LINE__)

/* Copy of a valid dept buffer with the u32 at off set to v, resealed. */
static void
expect_forged_u32(size_t off, uint32_t v, const char *want, int line)
{
	size_t		len;
	uint8_t    *buf = encode(ADAPTER_DEPT, &len);

	put32(buf + off, v);
	reseal(buf, len);
	expect_reject_at(buf, len, want, line);
	free(buf);
}

#define EXPECT_FORGED(off, v, want) expect_forged_u32(off, v, want, __LINE__)

/* ---- tests --------------------------------------------------------------- */

static void
test_crc32(void)
{
	CHECK(adapter_io_crc32((const uint8_t *) "123456789", 9) == 0xCBF43926u, "IEEE check value");
	CHECK(adapter_io_crc32((const uint8_t *) "", 0) == 0, "empty input");
}

static void
test_round_trip(void)
{
	for (int m = ADAPTER_PROBE; m <= ADAPTER_EPT; m++)
	{
		Adapter    *a = make_adapter((AdapterMethod) m),
				   *b = NULL;
		AdapterParam *pa[] = {&a->prompt, &a->lora_a, &a->lora_b, &a->ept_u, &a->ept_v,
		&a->gate_w, &a->gate_b, &a->head_w, &a->head_b};
		uint8_t    *buf = NULL,
				   *again = NULL;
		size_t		len = 0,
					len2 = 0;
		char		fp[65] = "",
				  **names = NULL;
		NnError		err;

		CHECK(adapter_serialize(a, FP, NAMES, &buf, &len, &err) == NN_OK, "method %d: %s", m, err.msg);
		CHECK(adapter_deserialize(buf, len, 3, &b, fp, &names, &err) == NN_OK, "method %d: %s", m, err.msg);
		if (b == NULL)
			continue;
		CHECK(memcmp(&a->cfg, &b->cfg, sizeof(AdapterConfig)) == 0, "method %d: config", m);
		CHECK(b->max_batch == 3 && b->scale == a->scale, "method %d: max_batch and scale", m);
		CHECK(strcmp(fp, FP) == 0, "method %d: fingerprint %s", m, fp);
		for (int c = 0; c < 3; c++)
			CHECK(strcmp(names[c], NAMES[c]) == 0, "method %d: class %d", m, c);
		for (size_t k = 0; k < sizeof(pa) / sizeof(pa[0]); k++)
		{
			AdapterParam *pb = (AdapterParam *) ((char *) b + ((char *) pa[k] - (char *) a));

			CHECK(pa[k]->n == pb->n, "method %d: tensor %zu size", m, k);
			CHECK(pa[k]->n == 0 || memcmp(pa[k]->w, pb->w, pa[k]->n * sizeof(float)) == 0,
				  "method %d: tensor %zu bits", m, k);
		}
		CHECK(memcmp(buf, "DEPT", 4) == 0 && get32(buf + OFF_VERSION) == 1 &&
			  get32(buf + OFF_HEADER_SIZE) == 104 && get32(buf + OFF_TOTAL_SIZE) == len &&
			  get32(buf + OFF_HEAD) == 0 && get32(buf + OFF_RESERVED) == 0,
			  "method %d: header fields at their documented offsets", m);
		CHECK(buf[OFF_FINGERPRINT] == 0x00 && buf[OFF_FINGERPRINT + 1] == 0x11 &&
			  buf[OFF_FINGERPRINT + 31] == 0x78, "method %d: raw fingerprint", m);
		CHECK(adapter_serialize(b, fp, (const char *const *) names, &again, &len2, &err) == NN_OK &&
			  len2 == len && memcmp(buf, again, len) == 0, "method %d: re-encoding is byte-identical", m);
		adapter_free_class_names(names, b->cfg.n_classes);
		adapter_free(a);
		adapter_free(b);
		free(buf);
		free(again);
	}
}

/* Fields a method ignores are stored as zero; fingerprints come back lower case. */
static void
test_canonical_form(void)
{
	AdapterConfig cfg = config_for(ADAPTER_PT);
	Adapter    *a = NULL,
			   *b = NULL;
	uint8_t    *buf = NULL;
	size_t		len;
	char		fp[65],
				upper[65],
			  **names = NULL;
	NnError		err;

	cfg.rank = 4;				/* a stray --rank given with --method pt */
	cfg.subspaces = 2;
	cfg.subspace_rank = 2;
	for (int i = 0; i < 65; i++)
		upper[i] = (FP[i] >= 'a' && FP[i] <= 'f') ? (char) (FP[i] - 32) : FP[i];
	CHECK(adapter_new(&a, &cfg, 1, 1, &err) == NN_OK, "%s", err.msg);
	CHECK(adapter_serialize(a, upper, NAMES, &buf, &len, &err) == NN_OK, "%s", err.msg);
	CHECK(get32(buf + OFF_RANK) == 0 && get32(buf + OFF_SUBSPACES) == 0 &&
		  get32(buf + OFF_SUBSPACE_RANK) == 0, "unused fields written as zero");
	CHECK(adapter_deserialize(buf, len, 1, &b, fp, &names, &err) == NN_OK, "%s", err.msg);
	CHECK(b && b->cfg.rank == 0 && b->cfg.prompt_len == 3 && b->cfg.max_len == 7,
		  "canonical configuration read back");
	CHECK(strcmp(fp, FP) == 0, "fingerprint in lower case: %s", fp);
	if (b)
	{
		adapter_free_class_names(names, b->cfg.n_classes);
		adapter_free(b);
	}
	adapter_free(a);
	free(buf);

	cfg = config_for(ADAPTER_PROBE);
	cfg.prompt_len = 9;			/* ignored by a probe */
	CHECK(adapter_new(&a, &cfg, 1, 1, &err) == NN_OK, "%s", err.msg);
	CHECK(adapter_serialize(a, FP, NAMES, &buf, &len, &err) == NN_OK &&
		  get32(buf + OFF_PROMPT_LEN) == 0, "a probe stores no prompt length");
	adapter_free(a);
	free(buf);
}

/* Every prefix is rejected, as is every prefix resealed to look complete. */
static void
test_truncations(void)
{
	for (int m = ADAPTER_PROBE; m <= ADAPTER_EPT; m++)
	{
		size_t		len;
		uint8_t    *buf = encode((AdapterMethod) m, &len);

		for (size_t k = 0; k < len; k++)
		{
			uint8_t    *cut = malloc(k ? k : 1);	/* exact size, so ASan sees overreads */

			memcpy(cut, buf, k);
			EXPECT_REJECT(cut, k, k < 4 ? "truncated" : NULL);
			if (k >= ADAPTER_IO_MIN_SIZE)
			{
				reseal(cut, k);
				EXPECT_REJECT(cut, k, NULL);
			}
			free(cut);
		}
		free(buf);
	}
}

/* Any single changed byte is caught; random multi-byte damage never crashes. */
static void
test_byte_flips(void)
{
	size_t		len;
	uint8_t    *buf = encode(ADAPTER_EPT, &len);
	uint8_t    *copy = malloc(len);
	Rng			rng;
	int			accepted = 0;

	rng_seed(&rng, 2024);
	for (int trial = 0; trial < 4000; trial++)
	{
		size_t		pos = (size_t) (rng_next(&rng) % len);
		uint8_t		x = (uint8_t) (1 + rng_next(&rng) % 255);

		memcpy(copy, buf, len);
		copy[pos] ^= x;
		EXPECT_REJECT(copy, len, NULL);
	}
	for (int trial = 0; trial < 3000; trial++)
	{
		int			flips = 1 + (int) (rng_next(&rng) % 8);
		Adapter    *a = NULL;
		char		fp[65],
				  **names = NULL;
		NnError		err;
		NnStatus	st;

		memcpy(copy, buf, len);
		for (int f = 0; f < flips; f++)
			copy[rng_next(&rng) % len] ^= (uint8_t) (1 + rng_next(&rng) % 255);
		reseal(copy, len);
		st = adapter_deserialize(copy, len, 2, &a, fp, &names, &err);
		CHECK(st == NN_OK || st == NN_ERR_FORMAT, "trial %d: status %d", trial, (int) st);
		CHECK((st == NN_OK) == (a != NULL && names != NULL), "trial %d: outputs match status", trial);
		if (st == NN_OK)
		{
			accepted++;			/* e.g. a flipped mantissa bit: still a valid adapter */
			adapter_free_class_names(names, a->cfg.n_classes);
			adapter_free(a);
		}
	}
	printf("# %d of 3000 resealed damaged buffers were still valid adapters\n", accepted);
	free(copy);
	free(buf);
}

static void
test_magic_version_sizes(void)
{
	size_t		len;
	uint8_t    *buf = encode(ADAPTER_PT, &len);
	uint8_t    *big = malloc(len + 1);

	buf[3] = 'S';
	EXPECT_REJECT(buf, len, "magic");
	buf[3] = 'T';
	put32(buf + OFF_VERSION, ADAPTER_IO_VERSION + 1);	/* 7: the first this build does not read */
	EXPECT_REJECT(buf, len, "version 7");
	/* version 6 (a pair encoding) has a header of 108 bytes */
	put32(buf + OFF_VERSION, 6);
	EXPECT_REJECT(buf, len, "header size 104 is not 108");
	put32(buf + OFF_VERSION, 0);
	EXPECT_REJECT(buf, len, "version 0");
	put32(buf + OFF_VERSION, 1);
	EXPECT_FORGED(OFF_HEADER_SIZE, 100, "header size 100");
	put32(buf + OFF_TOTAL_SIZE, (uint32_t) len + 1);
	EXPECT_REJECT(buf, len, "truncated");
	put32(buf + OFF_TOTAL_SIZE, (uint32_t) len - 1);
	EXPECT_REJECT(buf, len, "trailing");
	put32(buf + OFF_TOTAL_SIZE, (uint32_t) len);
	buf[len - 1] ^= 1;
	EXPECT_REJECT(buf, len, "checksum");
	buf[len - 1] ^= 1;
	EXPECT_FORGED(OFF_RESERVED, 1, "reserved field 1");
	EXPECT_FORGED(OFF_HEAD, 1, "reserved field 0");

	/* one byte too many after the last tensor, consistently declared */
	memcpy(big, buf, len - 4);
	big[len - 4] = 0;
	reseal(big, len + 1);
	EXPECT_REJECT(big, len + 1, "1 unexpected bytes after its last tensor");
	free(big);
	free(buf);
}

/* Forged dimensions are refused from the header alone, before any allocation. */
static void
test_forged_dims(void)
{
	uint8_t		hdr[ADAPTER_IO_MIN_SIZE];
	size_t		len;
	uint8_t    *buf = encode(ADAPTER_DEPT, &len);

	EXPECT_FORGED(OFF_D, 0xFFFFFFFFu, "d 4294967295 at offset 16 is out of range");
	EXPECT_FORGED(OFF_D, 16385, "d 16385 is outside 1..16384");
	EXPECT_FORGED(OFF_H_DIM, 0, "h_dim 0");
	EXPECT_FORGED(OFF_N_CLASSES, 10001, "n_classes 10001");
	EXPECT_FORGED(OFF_N_CLASSES, 1, "n_classes 1");
	EXPECT_FORGED(OFF_PROMPT_LEN, 4097, "prompt_len 4097");
	EXPECT_FORGED(OFF_MAX_LEN, 8193, "max_len 8193");
	EXPECT_FORGED(OFF_MAX_LEN, 0, "max_len 0 is outside 1..8192");
	EXPECT_FORGED(OFF_RANK, 7, "rank 7 is outside 0..6");
	EXPECT_FORGED(OFF_METHOD, 4, "method 4");
	EXPECT_FORGED(OFF_METHOD, ADAPTER_PT, "a pt adapter has no low-rank pair");
	EXPECT_FORGED(OFF_SUBSPACES, 1, "a dept adapter has no subspaces");
	EXPECT_FORGED(OFF_SUBSPACE_RANK, 1, "a dept adapter has no subspace rank");
	EXPECT_FORGED(OFF_ALPHA, 0x7FC00000u, "alpha");
	EXPECT_FORGED(OFF_N_TENSORS, 6, "lists 6 tensors, a dept adapter with this configuration has 5");

	/* A bare header declaring the largest shapes: values beyond 2^26 ... */
	memcpy(hdr, buf, OFF_CLASSES);
	put32(hdr + OFF_CLASSES, 0);
	put32(hdr + OFF_D, 16384);
	put32(hdr + OFF_H_DIM, 16384);
	put32(hdr + OFF_N_CLASSES, 10000);
	reseal(hdr, sizeof(hdr));
	EXPECT_REJECT(hdr, sizeof(hdr), "too large");
	/* ... or few values but 1 GiB of caches (L = A B and dL are s x d). */
	put32(hdr + OFF_H_DIM, 4);
	put32(hdr + OFF_N_CLASSES, 2);
	put32(hdr + OFF_MAX_LEN, 8192);
	put32(hdr + OFF_RANK, 1);
	reseal(hdr, sizeof(hdr));
	EXPECT_REJECT(hdr, sizeof(hdr), "too large");
	/* within the limits, the bare header is merely short of its classes */
	put32(hdr + OFF_MAX_LEN, 16);
	reseal(hdr, sizeof(hdr));
	EXPECT_REJECT(hdr, sizeof(hdr), "lists 0 class names for 2 classes");
	free(buf);
}

static void
test_class_names(void)
{
	static const char *const bad[] = {
		"\xc0\x80zz",			/* overlong NUL */
		"\xe0\x80\x80z",		/* overlong 3-byte */
		"\xed\xa0\x80z",		/* surrogate U+D800 */
		"\xf4\x90\x80\x80",		/* above U+10FFFF */
		"ab\xe2\x82",			/* sequence cut by the end */
		"\x80zzz",				/* lone continuation byte */
		"\xffzzz",
		"a\0bc",				/* NUL inside */
	};
	size_t		len,
				name0 = OFF_CLASSES + 8;
	uint8_t    *buf = encode(ADAPTER_DEPT, &len);
	uint8_t    *copy = malloc(len);
	const char *names[3] = {"ok", "\xf0\x9f\x98\x80", "x"};
	Adapter    *a = make_adapter(ADAPTER_DEPT),
			   *b = NULL;
	uint8_t    *out = NULL;
	size_t		out_len;
	char		fp[65],
			  **got = NULL,
				long_name[ADAPTER_IO_MAX_CLASS_NAME + 2];
	NnError		err;

	EXPECT_FORGED(OFF_CLASSES, 4, "4 class names for 3 classes");
	EXPECT_FORGED(OFF_CLASSES + 4, 0, "class name 0 at offset 108 is 0 bytes");
	EXPECT_FORGED(OFF_CLASSES + 4, 1025, "is 1025 bytes, not 1..1024");
	EXPECT_FORGED(OFF_CLASSES + 4, 0xFFFFFFFFu, "is 4294967295 bytes");
	EXPECT_FORGED(OFF_CLASSES + 4, 1000, "truncated: class name 0 needs 1000 bytes");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		memcpy(copy, buf, len);
		memcpy(copy + name0, bad[i], 4);
		reseal(copy, len);
		EXPECT_REJECT(copy, len, "class name 0 is not valid UTF-8");
	}
	memcpy(copy, buf, len);
	memcpy(copy + name0 + 8, "abcd", 4);	/* class 1 = class 0 */
	reseal(copy, len);
	EXPECT_REJECT(copy, len, "class names 0 and 1 are both \"abcd\"");
	memcpy(copy, buf, len);
	memcpy(copy + name0, "\xf0\x9f\x98\x80", 4);	/* U+1F600 is fine */
	reseal(copy, len);
	CHECK(adapter_deserialize(copy, len, 1, &b, fp, &got, &err) == NN_OK &&
		  strcmp(got[0], "\xf0\x9f\x98\x80") == 0, "4-byte UTF-8 accepted: %s", err.msg);
	if (b)
	{
		adapter_free_class_names(got, 3);
		adapter_free(b);
	}

	/* the writer refuses what the reader would */
	CHECK(adapter_serialize(a, FP, names, &out, &out_len, &err) == NN_OK, "%s", err.msg);
	free(out);
	for (size_t i = 0; i + 1 < sizeof(bad) / sizeof(bad[0]); i++)	/* not "a\0bc": a C string */
	{
		names[0] = bad[i];
		CHECK(adapter_serialize(a, FP, names, &out, &out_len, &err) == NN_ERR_ARG && out == NULL,
			  "writer refuses bad name %zu", i);
	}
	memset(long_name, 'x', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	names[0] = long_name;
	CHECK(adapter_serialize(a, FP, names, &out, &out_len, &err) == NN_ERR_ARG, "name too long");
	long_name[ADAPTER_IO_MAX_CLASS_NAME] = '\0';
	CHECK(adapter_serialize(a, FP, names, &out, &out_len, &err) == NN_OK, "1024 bytes: %s", err.msg);
	free(out);
	names[0] = "";
	CHECK(adapter_serialize(a, FP, names, &out, &out_len, &err) == NN_ERR_ARG, "empty name");
	names[0] = NULL;
	CHECK(adapter_serialize(a, FP, names, &out, &out_len, &err) == NN_ERR_ARG, "NULL name");
	names[0] = "x";
	CHECK(adapter_serialize(a, FP, names, &out, &out_len, &err) == NN_ERR_ARG &&
		  strstr(err.msg, "both") != NULL, "duplicate names: %s", err.msg);
	CHECK(adapter_serialize(a, FP, NULL, &out, &out_len, &err) == NN_ERR_ARG, "no names");
	adapter_free(a);
	free(copy);
	free(buf);
}

static void
test_tensor_records(void)
{
	size_t		len;
	uint8_t    *buf = encode(ADAPTER_EPT, &len);
	uint8_t    *copy = malloc(len);
	size_t		head_w = find_tensor(buf, "head_w"),
				lora_a = find_tensor(buf, "lora_a"),
				prompt = find_tensor(buf, "prompt");
	Adapter    *a = make_adapter(ADAPTER_DEPT);
	uint8_t    *out = NULL;
	size_t		out_len;
	NnError		err;
	const struct
	{
		size_t		off;
		uint32_t	v;
		const char *want;
	}			forged[] = {
		{head_w + 4 + 6, 3, "head_w has 3 dimensions, not 2"},
		{head_w + 4 + 6 + 4, 4, "head_w dimension 0 is 4, the configuration says 3"},
		{head_w + 4 + 6 + 8, 6, "head_w dimension 1 is 6"},
		{head_w + 4 + 6 + 12, 61, "head_w is 61 bytes, its shape needs 60"},
		{head_w + 4 + 6 + 16, 0xFFFFFFFFu, "head_w is 18446744069414584380 bytes"},	/* high word */
		{head_w, 0, "tensor 7 name at offset"},
		{head_w, 0xFFFFFFF0u, "is 4294967280 bytes, not 1..32"},
		{head_w, 33, "not 1..32"},
		{tensor_data(buf, head_w), 0x7F800000u, "head_w value 0 at offset"},	/* +Inf */
		{tensor_data(buf, head_w) + 8, 0xFFC00001u, "head_w value 2"},	/* NaN */
	};

	CHECK(head_w && lora_a && prompt, "tensor records found");
	for (size_t i = 0; i < sizeof(forged) / sizeof(forged[0]); i++)
	{
		memcpy(copy, buf, len);
		put32(copy + forged[i].off, forged[i].v);
		reseal(copy, len);
		expect_reject_at(copy, len, forged[i].want, (int) (1000 + i));
	}
	memcpy(copy, buf, len);
	memcpy(copy + lora_a + 4, "prompt", 6);
	reseal(copy, len);
	EXPECT_REJECT(copy, len, "tensor \"prompt\" appears twice");
	memcpy(copy, buf, len);
	memcpy(copy + prompt + 4, "lora_a", 6);
	reseal(copy, len);
	EXPECT_REJECT(copy, len, "tensor 0 is \"lora_a\" where \"prompt\" is expected");
	memcpy(copy, buf, len);
	memcpy(copy + head_w + 4, "head\x01x", 6);
	reseal(copy, len);
	EXPECT_REJECT(copy, len, "unknown name \"head?x\"");

	/* the writer refuses values it could not read back */
	a->head_w.w[1] = NAN;
	CHECK(adapter_serialize(a, FP, NAMES, &out, &out_len, &err) == NN_ERR_ARG && out == NULL &&
		  strstr(err.msg, "head_w holds a non-finite value at index 1"), "NaN refused: %s", err.msg);
	a->head_w.w[1] = 0;
	a->lora_b.w[0] = -INFINITY;
	CHECK(adapter_serialize(a, FP, NAMES, &out, &out_len, &err) == NN_ERR_ARG, "Inf refused");
	adapter_free(a);
	free(copy);
	free(buf);
}

/* Linear-head adapters encode exactly as format version 1 did before version 2 existed. */
static void
test_version1_unchanged(void)
{
	/* length and stored CRC of encode(method) at commit ad9f541 (format version 1 only) */
	static const struct
	{
		size_t		len;
		uint32_t	crc;
	}			golden[] = {{264, 0xa4324cf1}, {366, 0x129db00b}, {506, 0x29bba5f1}, {972, 0xe1bc7bcc}};

	for (int m = ADAPTER_PROBE; m <= ADAPTER_EPT; m++)
	{
		size_t		len;
		uint8_t    *buf = encode((AdapterMethod) m, &len);

		CHECK(len == golden[m].len && get32(buf + len - 4) == golden[m].crc,
			  "method %d: %zu bytes, crc %08x; version 1 wrote %zu bytes, crc %08x", m, len,
			  get32(buf + len - 4), golden[m].len, golden[m].crc);
		CHECK(get32(buf + OFF_VERSION) == 1, "method %d: version 1", m);
		free(buf);
	}
}

/* Text-to-text adapters: version 2, head 1, no head tensors, one encoding. */
static void
test_text_head(void)
{
	for (int m = ADAPTER_PT; m <= ADAPTER_EPT; m++)
	{
		AdapterConfig cfg = config_for((AdapterMethod) m),
					linear = cfg;
		Adapter    *a = NULL,
				   *b = NULL;
		uint8_t    *buf = NULL,
				   *again = NULL,
				   *lin = NULL;
		size_t		len = 0,
					len2 = 0,
					lin_len = 0;
		char		fp[65],
				  **names = NULL;
		NnError		err;

		cfg.head = ADAPTER_HEAD_TEXT;
		CHECK(adapter_new(&a, &cfg, 2, 5, &err) == NN_OK, "method %d: %s", m, err.msg);
		if (a == NULL)
			continue;
		randomize(a, 31 + (uint64_t) m);
		CHECK(a->head_w.n == 0 && a->head_b.n == 0 && a->head_w.w == NULL,
			  "method %d: a text head has no tensors", m);
		CHECK(adapter_param_count(&cfg) == adapter_param_count(&linear) - (3 * 5 + 3),
			  "method %d: parameter count without the head", m);
		CHECK(adapter_serialize(a, FP, NAMES, &buf, &len, &err) == NN_OK, "method %d: %s", m, err.msg);
		lin = encode((AdapterMethod) m, &lin_len);
		CHECK(get32(buf + OFF_VERSION) == 2 && get32(buf + OFF_HEAD) == 1 &&
			  get32(buf + OFF_RESERVED) == 0, "method %d: version 2, head 1", m);
		CHECK(find_tensor(buf, "head_w") == 0 && find_tensor(buf, "head_b") == 0 &&
			  get32(buf + OFF_N_TENSORS) == get32(lin + OFF_N_TENSORS) - 2,
			  "method %d: no head tensors stored", m);
		CHECK(len == lin_len - (4 + 6 + 4 + 8 + 8 + 4 * 15) - (4 + 6 + 4 + 4 + 8 + 4 * 3),
			  "method %d: %zu bytes, the linear encoding minus the head records", m, len);
		CHECK(adapter_deserialize(buf, len, 3, &b, fp, &names, &err) == NN_OK, "method %d: %s", m, err.msg);
		if (b)
		{
			CHECK(memcmp(&a->cfg, &b->cfg, sizeof(AdapterConfig)) == 0 &&
				  b->cfg.head == ADAPTER_HEAD_TEXT, "method %d: configuration read back", m);
			CHECK(b->prompt.n == a->prompt.n &&
				  memcmp(a->prompt.w, b->prompt.w, sizeof(float) * a->prompt.n) == 0 &&
				  b->lora_a.n == a->lora_a.n && b->head_w.n == 0 && b->label_ids == NULL,
				  "method %d: tensors read back", m);
			CHECK(strcmp(names[2], NAMES[2]) == 0, "method %d: label strings kept", m);
			CHECK(adapter_serialize(b, fp, (const char *const *) names, &again, &len2, &err) == NN_OK &&
				  len2 == len && memcmp(again, buf, len) == 0, "method %d: re-encoding byte-identical", m);
			adapter_free_class_names(names, b->cfg.n_classes);
			adapter_free(b);
		}
		/* the head field must agree with the version */
		put32(buf + OFF_HEAD, 0);
		reseal(buf, len);
		EXPECT_REJECT(buf, len, "version 2 stores a text-to-text head");
		put32(buf + OFF_HEAD, 2);
		reseal(buf, len);
		EXPECT_REJECT(buf, len, "version 2 stores a text-to-text head");
		put32(buf + OFF_HEAD, 1);
		put32(buf + OFF_VERSION, 1);
		reseal(buf, len);
		EXPECT_REJECT(buf, len, "reserved field 0");
		/* a linear adapter relabelled version 2 with head 1 lacks nothing but has head tensors */
		put32(lin + OFF_VERSION, 2);
		put32(lin + OFF_HEAD, 1);
		reseal(lin, lin_len);
		EXPECT_REJECT(lin, lin_len, "tensors");
		adapter_free(a);
		free(buf);
		free(again);
		free(lin);
	}
	{
		AdapterConfig cfg = config_for(ADAPTER_PROBE);
		Adapter    *a = NULL;
		NnError		err;
		int32_t		ids[6] = {5, 1, -100, 7, 8, 1},
					more[3] = {1, 2, 3};

		cfg.head = ADAPTER_HEAD_TEXT;
		CHECK(adapter_new(&a, &cfg, 1, 1, &err) == NN_ERR_ARG && a == NULL &&
			  strstr(err.msg, "probe"), "a text-to-text probe is refused: %s", err.msg);
		cfg = config_for(ADAPTER_PT);
		CHECK(adapter_new(&a, &cfg, 1, 1, &err) == NN_OK, "%s", err.msg);
		CHECK(adapter_set_label_ids(a, ids, 2, &err) == NN_ERR_ARG, "label ids need a text head");
		adapter_free(a);
		cfg.head = ADAPTER_HEAD_TEXT;
		CHECK(adapter_new(&a, &cfg, 1, 1, &err) == NN_OK, "%s", err.msg);
		CHECK(adapter_set_label_ids(a, ids, 2, &err) == NN_OK && a->label_len == 2 &&
			  a->label_ids[0] == 5 && a->label_ids[2] == -1 && a->label_ids[5] == 1,
			  "label ids copied, padding -1");
		CHECK(adapter_set_label_ids(a, more, 1, &err) == NN_OK && a->label_len == 1 &&
			  a->label_ids[2] == 3, "label ids replaced");
		CHECK(adapter_set_label_ids(a, more, 0, &err) == NN_ERR_ARG, "length 0 refused");
		cfg.head = (AdapterHead) 7;
		adapter_free(a);
		CHECK(adapter_new(&a, &cfg, 1, 1, &err) == NN_ERR_ARG, "unknown head refused");
	}
}

/*
 * Text-row pooling: version 3, pooling 1, only for a linear head past
 * prompt rows; everything else keeps its older encoding (pool_text false).
 */
static void
test_pool_text(void)
{
	for (int m = ADAPTER_PROBE; m <= ADAPTER_EPT; m++)
	{
		AdapterConfig cfg = config_for((AdapterMethod) m);
		Adapter    *a = NULL,
				   *b = NULL;
		uint8_t    *buf = NULL,
				   *old = NULL,
				   *again = NULL;
		size_t		len = 0,
					old_len = 0,
					len2 = 0;
		char		fp[65],
				  **names = NULL;
		NnError		err;
		bool		pools = m != ADAPTER_PROBE;

		cfg.pool_text = true;
		CHECK(adapter_new(&a, &cfg, 2, 5, &err) == NN_OK, "method %d: %s", m, err.msg);
		if (a == NULL)
			continue;
		CHECK(a->cfg.pool_text == pools, "method %d: pool_text kept only past prompt rows", m);
		randomize(a, 11 + (uint64_t) m);	/* the values encode(m) stores */
		CHECK(adapter_serialize(a, FP, NAMES, &buf, &len, &err) == NN_OK, "method %d: %s", m, err.msg);
		old = encode((AdapterMethod) m, &old_len);
		CHECK(get32(buf + OFF_VERSION) == (pools ? 3u : 1u) && get32(buf + OFF_HEAD) == 0 &&
			  get32(buf + OFF_RESERVED) == (pools ? 1u : 0u),
			  "method %d: version %u, pooling %u", m, get32(buf + OFF_VERSION),
			  get32(buf + OFF_RESERVED));
		/* the same adapter pooling every row is the old encoding, and differs only there */
		CHECK(len == old_len && memcmp(buf + 8, old + 8, OFF_RESERVED - 8) == 0 &&
			  memcmp(buf + OFF_RESERVED + 4, old + OFF_RESERVED + 4, len - OFF_RESERVED - 8) == 0,
			  "method %d: same bytes as version 1 apart from version, pooling and CRC", m);
		CHECK(get32(old + OFF_VERSION) == 1 && get32(old + OFF_RESERVED) == 0,
			  "method %d: pool_text false is still version 1", m);
		CHECK(adapter_deserialize(buf, len, 3, &b, fp, &names, &err) == NN_OK, "method %d: %s", m, err.msg);
		if (b)
		{
			CHECK(b->cfg.pool_text == pools && memcmp(&a->cfg, &b->cfg, sizeof(AdapterConfig)) == 0,
				  "method %d: pooling read back", m);
			CHECK(adapter_serialize(b, fp, (const char *const *) names, &again, &len2, &err) == NN_OK &&
				  len2 == len && memcmp(again, buf, len) == 0, "method %d: re-encoding byte-identical", m);
			adapter_free_class_names(names, b->cfg.n_classes);
			adapter_free(b);
			free(again);
		}
		CHECK(adapter_deserialize(old, old_len, 3, &b, fp, &names, &err) == NN_OK && !b->cfg.pool_text,
			  "method %d: a version-1 adapter pools every row", m);
		if (b)
		{
			adapter_free_class_names(names, b->cfg.n_classes);
			adapter_free(b);
		}
		if (pools)
		{
			/* pooling and version must agree, and version 3 is linear only */
			put32(buf + OFF_RESERVED, 0);
			reseal(buf, len);
			EXPECT_REJECT(buf, len, "version 3 stores text-row pooling");
			put32(buf + OFF_RESERVED, 2);
			reseal(buf, len);
			EXPECT_REJECT(buf, len, "version 3 stores text-row pooling");
			put32(buf + OFF_RESERVED, 1);
			put32(buf + OFF_HEAD, 1);
			reseal(buf, len);
			EXPECT_REJECT(buf, len, "version 3 stores a linear head");
			put32(buf + OFF_HEAD, 0);
			put32(buf + OFF_VERSION, 2);
			reseal(buf, len);
			EXPECT_REJECT(buf, len, "reserved field 1");
		}
		else
		{
			/* a probe has no prompt rows to skip: version 3 is refused */
			put32(old + OFF_VERSION, 3);
			put32(old + OFF_RESERVED, 1);
			reseal(old, old_len);
			EXPECT_REJECT(old, old_len, "text-row pooling needs a linear head and prompt rows");
		}
		adapter_free(a);
		free(buf);
		free(old);
	}
	{
		/* a text-to-text adapter ignores pool_text: still version 2 */
		AdapterConfig cfg = config_for(ADAPTER_DEPT);
		Adapter    *a = NULL;
		uint8_t    *buf = NULL;
		size_t		len = 0;
		NnError		err;

		cfg.pool_text = true;
		cfg.head = ADAPTER_HEAD_TEXT;
		CHECK(adapter_new(&a, &cfg, 2, 5, &err) == NN_OK && !a->cfg.pool_text, "%s", err.msg);
		if (a)
		{
			a->cfg.pool_text = true;	/* even forced, the writer stores the canonical form */
			CHECK(adapter_serialize(a, FP, NAMES, &buf, &len, &err) == NN_OK &&
				  get32(buf + OFF_VERSION) == 2 && get32(buf + OFF_RESERVED) == 0,
				  "text head: version 2, pooling 0");
			adapter_free(a);
			free(buf);
		}
	}
}

static void
test_bad_arguments(void)
{
	Adapter    *a = make_adapter(ADAPTER_PT),
			   *b = (Adapter *) 1;
	uint8_t    *out = (uint8_t *) 1;
	size_t		len = 1;
	char		fp[65],
			  **names = (char **) 1;
	NnError		err;

	CHECK(adapter_serialize(a, "abc", NAMES, &out, &len, &err) == NN_ERR_ARG &&
		  out == NULL && len == 0, "short fingerprint");
	CHECK(adapter_serialize(a, NULL, NAMES, &out, &len, &err) == NN_ERR_ARG, "no fingerprint");
	CHECK(adapter_serialize(a, "g0112233445566778899aabbccddeeff0123456789abcdef0f1e2d3c4b5a6978",
							NAMES, &out, &len, &err) == NN_ERR_ARG, "non-hex fingerprint");
	CHECK(adapter_serialize(NULL, FP, NAMES, &out, &len, &err) == NN_ERR_ARG, "no adapter");
	CHECK(adapter_serialize(a, FP, NAMES, &out, &len, &err) == NN_OK, "%s", err.msg);
	CHECK(adapter_deserialize(out, len, 0, &b, fp, &names, &err) == NN_ERR_ARG &&
		  b == NULL && names == NULL, "max_batch 0");
	CHECK(adapter_deserialize(NULL, 0, 1, &b, fp, &names, &err) == NN_ERR_FORMAT, "empty input");
	free(out);
	CHECK(adapter_serialize(a, FP, NAMES, &out, &len, NULL) == NN_OK, "NULL err is fine");
	free(out);
	a->head_b.n = 2;			/* an adapter whose tensors disagree with its config */
	CHECK(adapter_serialize(a, FP, NAMES, &out, &len, &err) == NN_ERR_ARG, "inconsistent adapter");
	a->head_b.n = 3;
	adapter_free_class_names(NULL, 3);
	adapter_free(a);
}

int
main(void)
{
	RUN_TEST(test_crc32);
	RUN_TEST(test_round_trip);
	RUN_TEST(test_canonical_form);
	RUN_TEST(test_truncations);
	RUN_TEST(test_byte_flips);
	RUN_TEST(test_magic_version_sizes);
	RUN_TEST(test_forged_dims);
	RUN_TEST(test_class_names);
	RUN_TEST(test_tensor_records);
	RUN_TEST(test_bad_arguments);
	RUN_TEST(test_version1_unchanged);
	RUN_TEST(test_text_head);
	RUN_TEST(test_pool_text);
	return unit_finish();
}
