/*
 * test_tokenizer.c: the use-lite tokenizer (src/nn/tokenizers/sentencepiece.c) against
 * the JavaScript runtime it ports.
 *
 * test/fixtures/use_lite_tokens.tsv (made by
 * tools/fixtures/gen-tokenizer-fixture.mjs) holds, per line, a byte string
 * in hex and the full id sequence @energetic-ai/embeddings 0.2.0 gives for
 * new TextDecoder().decode(bytes).  Every case must match exactly, in full
 * and truncated.  Then the robustness side: hostile vocab.json buffers, a
 * megabyte of random bytes, degenerate arguments.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizers/sentencepiece.h"
#include "unit.h"

#define MIN_FIXTURE_CASES 2000

typedef struct FixtureCase
{
	uint8_t    *bytes;
	size_t		len;
	int32_t    *ids;			/* the reference ids, in full */
	int			n_ids;
	int			line;
} FixtureCase;

static SpTokenizer *tok;
static FixtureCase *cases;
static int	n_cases;

/* Value of one hex digit, -1 if c is none. */
static int
hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Parse "hex<TAB>id id ..." into c; false if the line is malformed. */
static bool
parse_case(char *line, FixtureCase *c)
{
	char	   *tab = strchr(line, '\t');
	char	   *p;
	size_t		nhex,
				cap;

	if (tab == NULL || (tab - line) % 2 != 0)
		return false;
	nhex = (size_t) (tab - line);
	c->len = nhex / 2;
	c->bytes = malloc(c->len + 1);
	cap = strlen(tab + 1) / 2 + 1;
	c->ids = malloc(sizeof(int32_t) * cap);
	if (c->bytes == NULL || c->ids == NULL)
		return false;
	for (size_t i = 0; i < c->len; i++)
	{
		int			hi = hex_digit(line[2 * i]),
					lo = hex_digit(line[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		c->bytes[i] = (uint8_t) (hi * 16 + lo);
	}
	c->n_ids = 0;
	for (p = tab + 1; *p != '\0' && *p != '\n';)
	{
		char	   *end;
		long		id = strtol(p, &end, 10);

		if (end == p || (size_t) c->n_ids >= cap)
			return false;
		c->ids[c->n_ids++] = (int32_t) id;
		p = end;
		while (*p == ' ')
			p++;
	}
	return true;
}

/* Read the fixture; returns the number of cases (0 on any error). */
static int
load_fixture(void)
{
	char		path[4096];
	FILE	   *f;
	char	   *line = NULL;
	size_t		line_cap = 0;
	int			cap = 0,
				lineno = 0;

	snprintf(path, sizeof(path), "%s/use_lite_tokens.tsv",
			 unit_env("DEPT_FIXTURE_DIR", "test/fixtures"));
	if ((f = fopen(path, "r")) == NULL)
	{
		printf("# cannot open %s\n", path);
		return 0;
	}
	while (getline(&line, &line_cap, f) > 0)
	{
		lineno++;
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (n_cases == cap)
		{
			cap = cap ? 2 * cap : 1024;
			cases = realloc(cases, sizeof(FixtureCase) * cap);
			if (cases == NULL)
				break;
		}
		memset(&cases[n_cases], 0, sizeof(FixtureCase));
		cases[n_cases].line = lineno;
		if (!parse_case(line, &cases[n_cases]))
		{
			printf("# %s:%d: malformed line\n", path, lineno);
			n_cases = 0;
			break;
		}
		n_cases++;
	}
	free(line);
	fclose(f);
	return n_cases;
}

/* Index of the first difference between got (n) and want (m), or -1 if none. */
static int
first_diff(const int32_t *got, int n, const int32_t *want, int m)
{
	int			k = 0;

	while (k < n && k < m && got[k] == want[k])
		k++;
	return (k == n && k == m) ? -1 : k;
}

/* Are the n ids in got equal to the first n of want? */
static bool
same_ids(const int32_t *got, const int32_t *want, int n)
{
	return memcmp(got, want, sizeof(int32_t) * n) == 0;
}

/* The use-lite vocab.json loads, with the pieces where the JS has them. */
static void
test_vocab_loads(void)
{
	char		path[4096];
	NnError		err;
	NnStatus	st;
	SpTokenizer *missing = NULL;

	snprintf(path, sizeof(path), "%s/vocab.json", UNIT_MODEL_DIR());
	nn_error_clear(&err);
	st = sp_tokenizer_load(&tok, path, &err);
	CHECK(st == NN_OK, "load %s: %s", path, err.msg);
	if (tok == NULL)
		return;
	CHECK(sp_tokenizer_vocab_size(tok) == 8000, "vocab size %d", sp_tokenizer_vocab_size(tok));
	CHECK(strcmp(sp_tokenizer_piece(tok, 0), "\xEF\xBF\xBD") == 0, "piece 0 is U+FFFD");
	CHECK(strcmp(sp_tokenizer_piece(tok, 1), "<s>") == 0, "piece 1 is <s>");
	CHECK(strcmp(sp_tokenizer_piece(tok, 9), "\xE2\x96\x81the") == 0, "piece 9 is _the");
	CHECK(strcmp(sp_tokenizer_piece(tok, 7999), "") != 0, "last piece");
	CHECK(sp_tokenizer_piece(tok, -1) == NULL, "piece -1");
	CHECK(sp_tokenizer_piece(tok, 8000) == NULL, "piece 8000");
	CHECK(sp_tokenizer_piece(tok, 1 << 30) == NULL, "piece 2^30");
	CHECK(sp_tokenizer_piece(NULL, 0) == NULL, "piece of NULL");
	CHECK(sp_tokenizer_vocab_size(NULL) == 0, "size of NULL");
	st = sp_tokenizer_load(&missing, "/nonexistent/vocab.json", &err);
	CHECK(st == NN_ERR_IO && missing == NULL, "missing file gives NN_ERR_IO, got %d", st);
}

/* Every fixture case, in full and truncated to 128 (and a few other sizes). */
static void
test_fixture(void)
{
	static const int truncations[] = {128, 1, 2, 5, 17, 64};
	int			full_ok = 0,
				trunc_ok = 0,
				n_ids = 0;

	CHECK(n_cases >= MIN_FIXTURE_CASES, "fixture has %d cases, expected >= %d",
		  n_cases, MIN_FIXTURE_CASES);
	if (tok == NULL)
		return;
	for (int i = 0; i < n_cases; i++)
	{
		FixtureCase *c = &cases[i];
		int			max_ids = c->n_ids + 64;
		int32_t    *got = malloc(sizeof(int32_t) * max_ids);
		int			n;
		bool		trunc_all = true;

		if (got == NULL)
			continue;
		n = sp_tokenizer_encode(tok, (const char *) c->bytes, c->len, got, max_ids);
		n_ids += c->n_ids;
		if (n == c->n_ids && same_ids(got, c->ids, n))
			full_ok++;
		else
			CHECK(false, "line %d: %d ids, expected %d (first difference at %d)", c->line, n,
				  c->n_ids, first_diff(got, n, c->ids, c->n_ids));
		for (size_t t = 0; t < sizeof(truncations) / sizeof(truncations[0]); t++)
		{
			int			want = c->n_ids < truncations[t] ? c->n_ids : truncations[t];

			n = sp_tokenizer_encode(tok, (const char *) c->bytes, c->len, got, truncations[t]);
			if (n != want || !same_ids(got, c->ids, want))
			{
				trunc_all = false;
				CHECK(false, "line %d truncated to %d: %d ids", c->line, truncations[t], n);
			}
		}
		trunc_ok += trunc_all;
		free(got);
	}
	printf("# fixture: %d/%d cases match in full (%d ids), %d/%d truncated to 128 and below\n",
		   full_ok, n_cases, n_ids, trunc_ok, n_cases);
}

/* Load len bytes of json and expect the status want. */
static void
expect_vocab(const char *json, size_t len, NnStatus want, const char *what)
{
	SpTokenizer *t = NULL;
	NnError		err;
	NnStatus	st;

	nn_error_clear(&err);
	st = sp_tokenizer_from_json(&t, json, len, &err);
	CHECK(st == want, "%s: status %d, expected %d (%s)", what, st, want, err.msg);
	CHECK((st == NN_OK) == (t != NULL), "%s: tokenizer set iff NN_OK", what);
	if (st != NN_OK)
		CHECK(err.msg[0] != '\0', "%s: an error message", what);
	sp_tokenizer_free(t);
}

#define RESERVED6 "[\"u\",0],[\"<s>\",0],[\"</s>\",0],[\"e1\",0],[\"e2\",0],[\"e3\",0]"

/* A repeated string n times into a fresh buffer. */
static char *
repeat(const char *head, const char *body, int n, const char *tail, size_t *len)
{
	size_t		hl = strlen(head),
				bl = strlen(body),
				tl = strlen(tail);
	char	   *s = malloc(hl + bl * n + tl + 1);

	if (s == NULL)
		return NULL;
	memcpy(s, head, hl);
	for (int i = 0; i < n; i++)
		memcpy(s + hl + bl * i, body, bl);
	memcpy(s + hl + bl * n, tail, tl + 1);
	*len = hl + bl * n + tl;
	return s;
}

/* Corrupt or hostile vocab.json buffers give NN_ERR_FORMAT and never crash. */
static void
test_hostile_vocab(void)
{
	static const char *bad[] = {
		"", " ", "{}", "42", "null", "\"str\"", "[]", "[[\"a\",1]]", "[1,2,3,4,5,6,7]",
		"[" RESERVED6 ",[1,2]]", "[" RESERVED6 ",[\"a\",\"b\"]]", "[" RESERVED6 ",[\"a\"]]",
		"[" RESERVED6 ",[\"a\",1,2]]", "[" RESERVED6 ",[\"\",-1]]", "[" RESERVED6 ",[\"a\",NaN]]",
		"[" RESERVED6 ",[\"a\",1e999]]", "[" RESERVED6 ",[\"a\",-1e999]]", "[" RESERVED6 ",[\"a\",true]]",
		"[" RESERVED6 ",[\"a\",{}]]", "[" RESERVED6 ",[\"a\",[1]]]", "[" RESERVED6 ",{\"a\":1}]",
		"[" RESERVED6 ",[\"\xff\",1]]", "[" RESERVED6 ",[\"\xed\xa0\x80\",1]]", "[" RESERVED6 ",[\"\xc3\",1]]",
		"[" RESERVED6 ",[\"\\ud800\",1]]", "[" RESERVED6 ",[\"a\",1],", "[" RESERVED6 ",[\"a\",1]] x",
		"[" RESERVED6 ",[\"a\",1]][]", "[" RESERVED6 ",[\"a\",-]]", "[" RESERVED6 ",[\"a\",1", "[\"",
		"[[\"\\",
	};
	static const char nul_inside[] = "[" RESERVED6 ",[\"a\",1]]\0garbage";
	size_t		len;
	char	   *s;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		char		what[64];

		snprintf(what, sizeof(what), "hostile vocab #%zu", i);
		expect_vocab(bad[i], strlen(bad[i]), NN_ERR_FORMAT, what);
	}
	expect_vocab(nul_inside, sizeof(nul_inside) - 1, NN_ERR_FORMAT, "NUL then garbage");
	expect_vocab(NULL, 0, NN_ERR_FORMAT, "NULL buffer");
	CHECK(sp_tokenizer_from_json(NULL, "[]", 2, NULL) == NN_ERR_ARG, "NULL out");
	/* deep nesting: cJSON's nesting limit, not the stack */
	s = repeat("", "[", 200000, "", &len);
	if (s != NULL)
		expect_vocab(s, len, NN_ERR_FORMAT, "200000 nested arrays");
	free(s);
	/* huge count: refused before cJSON builds it */
	s = repeat("[" RESERVED6, ",[\"a\",1]", SP_MAX_VOCAB + 10, "]", &len);
	if (s != NULL)
		expect_vocab(s, len, NN_ERR_FORMAT, "too many entries");
	free(s);
	s = repeat("[" RESERVED6 ",[\"", "1,", 4 * SP_MAX_VOCAB, "\",1]]", &len);
	if (s != NULL)
		expect_vocab(s, len, NN_OK, "commas inside a string are no values");
	free(s);
	/* an exact-size buffer without NUL, cut short: no read past its end */
	len = strlen("[" RESERVED6 ",[\"a\",1");
	if ((s = malloc(len)) != NULL)
	{
		memcpy(s, "[" RESERVED6 ",[\"a\",1", len);
		expect_vocab(s, len, NN_ERR_FORMAT, "buffer cut short (no NUL)");
		expect_vocab(s, len - 4, NN_ERR_FORMAT, "buffer cut in a string");
	}
	free(s);
}

/* Build a tokenizer from json, encode text and compare with the JS ids want. */
static void
expect_ids(const char *json, const char *text, const int32_t *want, int n_want)
{
	SpTokenizer *t = NULL;
	NnError		err;
	int32_t		ids[32];
	int			n;

	nn_error_clear(&err);
	CHECK(sp_tokenizer_from_json(&t, json, strlen(json), &err) == NN_OK, "%s: %s", json, err.msg);
	if (t == NULL)
		return;
	n = sp_tokenizer_encode(t, text, strlen(text), ids, 32);
	CHECK(n == n_want && first_diff(ids, n, want, n_want) < 0,
		  "\"%s\": %d ids, expected %d (first difference at %d)", text, n, n_want,
		  first_diff(ids, n, want, n_want));
	sp_tokenizer_free(t);
}

#define EXPECT_IDS(json, text, ...) \
	expect_ids(json, text, (const int32_t[]) {__VA_ARGS__}, \
			   (int) (sizeof((const int32_t[]) {__VA_ARGS__}) / sizeof(int32_t)))

/*
 * Vocabularies the JS accepts, with the ids node gives: null scores (0),
 * duplicates (the last one wins), a trie with no piece, a piece outside the
 * BMP and an unknown piece longer than one character (both make the JS
 * backtrack skip characters, so nothing is cut early).
 */
static void
test_vocab_quirks(void)
{
	static const char dup[] = "[" RESERVED6
		",[\"ab\",-5],[\"\xe2\x96\x81\",null],[\"ab\",-0.2],[\"b\",-0.5],[\"a\",-0.5]]";
	static const char astral[] = "[" RESERVED6
		",[\"\xf0\x9f\x98\x80\",-1],[\"a\",-1],[\"\xe2\x96\x81\",-1]]";
	static const char long_unk[] = "[[\"<unk>\",0],[\"<s>\",0],[\"</s>\",0],[\"e1\",0],"
		"[\"e2\",0],[\"e3\",0],[\"\xe2\x96\x81\",-1],[\"a\",-1]]";
	SpTokenizer *t = NULL;
	NnError		err;
	int32_t		ids[4];

	EXPECT_IDS(dup, "ab", 7, 8);
	EXPECT_IDS(dup, "xyz a", 7, 0, 7, 10);
	EXPECT_IDS(astral, "\xf0\x9f\x98\x80" "a", 6, 7);
	EXPECT_IDS(astral, "a\xf0\x9f\x98\x80" "a a", 8, 6, 7, 8, 7);
	EXPECT_IDS(long_unk, "xyz", 0);
	EXPECT_IDS(long_unk, "a xyz a", 6, 0, 6, 7);
	EXPECT_IDS(long_unk, "axyzaaaa", 0, 7, 7, 7, 7);
	CHECK(sp_tokenizer_from_json(&t, "[" RESERVED6 "]", strlen("[" RESERVED6 "]"), &err) == NN_OK,
		  "reserved-only vocab: %s", err.msg);
	if (t == NULL)
		return;
	CHECK(sp_tokenizer_encode(t, "hello world", 11, ids, 4) == 1 && ids[0] == 0,
		  "empty trie: everything is one unknown");
	sp_tokenizer_free(t);
}

/* Deterministic xorshift for random bytes. */
static uint64_t
xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Encode the same len bytes in full and truncated to 128; the truncation is a prefix. */
static void
check_big_text(const char *what, const char *text, size_t len)
{
	size_t		max_full = len * 2 + 16;
	int32_t    *full = malloc(sizeof(int32_t) * max_full);
	int32_t		head[128];
	int			n_full,
				n_head;
	clock_t		t0,
				t1,
				t2;

	if (full == NULL)
		return;
	t0 = clock();
	n_full = sp_tokenizer_encode(tok, text, len, full, (int) max_full);
	t1 = clock();
	n_head = sp_tokenizer_encode(tok, text, len, head, 128);
	t2 = clock();
	CHECK(n_full > 128, "%s: %d ids in full", what, n_full);
	CHECK(n_head == 128 && same_ids(head, full, 128), "%s: first 128 ids (%d)", what, n_head);
	printf("# %s: %zu bytes -> %d ids in %.1f ms; first 128 in %.3f ms\n", what, len, n_full,
		   1000.0 * (t1 - t0) / CLOCKS_PER_SEC, 1000.0 * (t2 - t1) / CLOCKS_PER_SEC);
	free(full);
}

/* A megabyte of random bytes, and a megabyte of real text with NULs and bad bytes. */
static void
test_megabyte(void)
{
	size_t		len = 1 << 20;
	char	   *text = malloc(len);
	uint64_t	s = 0x9E3779B97F4A7C15ULL;
	size_t		pos = 0;

	if (tok == NULL || text == NULL)
	{
		free(text);
		return;
	}
	for (size_t i = 0; i < len; i++)
		text[i] = (char) (xorshift(&s) >> 56);
	check_big_text("1 MB random bytes", text, len);
	for (int i = 0; pos < len; i++)
	{
		FixtureCase *c = &cases[i % (n_cases ? n_cases : 1)];
		size_t		n = n_cases ? c->len : 0;

		if (n == 0 || n > len - pos)
			n = 1, text[pos] = ' ';
		else
			memcpy(text + pos, c->bytes, n);
		pos += n;
	}
	check_big_text("1 MB of fixture texts", text, len);
	memset(text, 'a', len);
	check_big_text("1 MB of 'a'", text, len);
	free(text);
}

/* Degenerate arguments: no ids wanted, NULLs, empty text, a lone BOM. */
static void
test_edge_args(void)
{
	int32_t		ids[8] = {-7};

	if (tok == NULL)
		return;
	CHECK(sp_tokenizer_encode(tok, "hello", 5, ids, 0) == 0, "max_ids 0");
	CHECK(ids[0] == -7, "max_ids 0 writes nothing");
	CHECK(sp_tokenizer_encode(tok, "hello", 5, NULL, 0) == 0, "max_ids 0, ids NULL");
	CHECK(sp_tokenizer_encode(tok, "hello", 5, ids, -3) == 0, "max_ids < 0");
	CHECK(sp_tokenizer_encode(tok, NULL, 0, ids, 8) == 0, "NULL empty text");
	CHECK(sp_tokenizer_encode(tok, "", 0, ids, 8) == 0, "empty text");
	CHECK(sp_tokenizer_encode(tok, "\xEF\xBB\xBF", 3, ids, 8) == 0, "a lone BOM is empty text");
	CHECK(sp_tokenizer_encode(tok, NULL, 5, ids, 8) == -1, "NULL text with a length");
	CHECK(sp_tokenizer_encode(NULL, "hello", 5, ids, 8) == -1, "NULL tokenizer");
	CHECK(sp_tokenizer_encode(tok, "hello", 5, NULL, 8) == -1, "NULL ids");
	CHECK(sp_tokenizer_encode(tok, "hello world", 11, ids, 1) == 1, "max_ids 1");
	sp_tokenizer_free(NULL);
}

/* Every fixture case encodes the same from the compiled image as from vocab.json. */
static void
test_image_round_trip(void)
{
	size_t		len;
	void	   *image;
	SpTokenizer *mapped = NULL;
	NnError		err;
	int32_t		a[256],
				b[256];
	int			same = 0;

	if (tok == NULL)
		return;
	len = sp_tokenizer_image_size(tok);
	image = aligned_alloc(8, (len + 7) & ~(size_t) 7);
	sp_tokenizer_write_image(tok, image);
	nn_error_clear(&err);
	CHECK(sp_tokenizer_from_image(&mapped, image, len, &err) == NN_OK, "from image: %s", err.msg);
	if (mapped != NULL)
	{
		CHECK(sp_tokenizer_vocab_size(mapped) == sp_tokenizer_vocab_size(tok), "vocab size");
		for (int i = 0; i < n_cases; i++)
		{
			int			n = sp_tokenizer_encode(tok, (const char *) cases[i].bytes, cases[i].len, a, 256),
						m = sp_tokenizer_encode(mapped, (const char *) cases[i].bytes, cases[i].len, b, 256);

			same += n == m && same_ids(a, b, n);
		}
		CHECK(same == n_cases, "%d of %d cases encode the same", same, n_cases);
		printf("# image of %zu bytes: %d cases encode the same\n", len, same);
	}
	sp_tokenizer_free(mapped);
	CHECK(sp_tokenizer_from_image(&mapped, image, len - 8, &err) == NN_ERR_FORMAT && mapped == NULL,
		  "a short image is refused");
	free(image);
}

/*
 * A damaged image (every byte of the header, then random bytes anywhere) is
 * refused or, where the damage leaves it consistent (a score), encodes
 * without reading out of bounds (the ASan build checks that).
 */
static void
test_damaged_image(void)
{
	size_t		len;
	uint8_t    *image,
			   *copy;
	unsigned	seed = 7;
	int			refused = 0,
				tries = 0;

	if (tok == NULL)
		return;
	len = sp_tokenizer_image_size(tok);
	image = aligned_alloc(8, (len + 7) & ~(size_t) 7);
	copy = aligned_alloc(8, (len + 7) & ~(size_t) 7);
	sp_tokenizer_write_image(tok, image);
	for (int t = 0; t < 64 + 400; t++)
	{
		SpTokenizer *damaged = NULL;
		NnError		err;
		size_t		at;

		seed = seed * 1103515245u + 12345u;
		at = t < 64 ? (size_t) t : (size_t) (((uint64_t) seed << 16 ^ seed) % len);
		memcpy(copy, image, len);
		copy[at] ^= (uint8_t) (1u << (seed >> 8 & 7));
		tries++;
		if (sp_tokenizer_from_image(&damaged, copy, len, &err) != NN_OK)
		{
			refused++;
			continue;
		}
		for (int i = 0; i < n_cases && i < 50; i++)
		{
			int32_t		ids[128];

			sp_tokenizer_encode(damaged, (const char *) cases[i].bytes, cases[i].len, ids, 128);
		}
		sp_tokenizer_free(damaged);
	}
	printf("# %d damaged images, %d refused, the rest encoded 50 texts each\n", tries, refused);
	CHECK(refused >= 56, "only %d of the 64 header flips refused", refused);
	free(image);
	free(copy);
}

int
main(void)
{
	load_fixture();
	RUN_TEST(test_vocab_loads);
	RUN_TEST(test_fixture);
	RUN_TEST(test_hostile_vocab);
	RUN_TEST(test_vocab_quirks);
	RUN_TEST(test_megabyte);
	RUN_TEST(test_edge_args);
	RUN_TEST(test_image_round_trip);
	RUN_TEST(test_damaged_image);
	sp_tokenizer_free(tok);
	for (int i = 0; i < n_cases; i++)
	{
		free(cases[i].bytes);
		free(cases[i].ids);
	}
	free(cases);
	return unit_finish();
}
