/*
 * fuzz_tokenizer.c: libFuzzer harness for the SentencePiece tokenizer
 * (src/nn/tokenizers/sentencepiece.h); build and run with test/fuzz/run.sh.
 *
 * Every input is used twice:
 *
 *   1. as text, encoded with the real use-lite vocabulary (loaded once from
 *      $DEPT_MODEL_DIR/vocab.json, default build/model/use-lite/vocab.json);
 *   2. as a vocab.json, through sp_tokenizer_from_json; when accepted, the
 *      resulting tokenizer encodes the input itself and a few fixed strings.
 *
 * Properties checked beyond the sanitizers' own (out-of-bounds reads,
 * leaks, undefined behaviour), abort() on a violation:
 *   - encode returns 0..max_ids ids, each 0 or >= SP_RESERVED_IDS and below
 *     the vocabulary size, never two unknowns (id 0) in a row;
 *   - truncation is a prefix: encoding into max_ids slots gives the first
 *     max_ids ids of the full encoding (sp_tokenizer.h promises it), for
 *     128 (the backbone's limit) and 5 slots;
 *   - for printable ASCII (which NFKC leaves alone) without unknown ids,
 *     the pieces put back together are "\u2581" + the text with every
 *     space as U+2581;
 *   - a rejected vocab is NN_ERR_FORMAT (or NN_ERR_NOMEM) with a message
 *     and no tokenizer; an accepted one has SP_RESERVED_IDS to
 *     SP_MAX_VOCAB entries, each a non-empty piece.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizers/sentencepiece.h"

/* NFKC expands one code point to at most 18 (U+FDFA); one id per code point at most. */
#define MAX_EXPANSION 32

static SpTokenizer *vocab;		/* the real one, loaded once */

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what, size_t size)
{
	fprintf(stderr, "fuzz_tokenizer: %s (input of %zu bytes)\n", what, size);
	abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("DEPT_MODEL_DIR");
	char		path[4096];
	NnError		err;

	(void) argc;
	(void) argv;
	snprintf(path, sizeof(path), "%s/vocab.json", dir && dir[0] ? dir : "build/model/use-lite");
	nn_error_clear(&err);
	if (sp_tokenizer_load(&vocab, path, &err) != NN_OK)
	{
		fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s (set DEPT_MODEL_DIR, or run make first)\n",
				path, err.msg);
		exit(2);
	}
	return 0;
}

/* Check the ids one encode call wrote. */
static void
check_ids(const SpTokenizer *tok, const int32_t *ids, int n, int max_ids, size_t size)
{
	int			vocab_size = sp_tokenizer_vocab_size(tok);

	if (n < 0 || n > max_ids)
		fail("encode returned a count outside 0..max_ids", size);
	for (int i = 0; i < n; i++)
	{
		if (ids[i] < 0 || ids[i] >= vocab_size || (ids[i] > 0 && ids[i] < SP_RESERVED_IDS))
			fail("encode wrote an id outside {0} and SP_RESERVED_IDS..vocab size", size);
		if (i > 0 && ids[i] == 0 && ids[i - 1] == 0)
			fail("two unknown ids in a row (runs of unknowns must be merged)", size);
	}
}

/*
 * Encode text with tok in full and truncated; check every property above.
 * Returns the full id count (ids in *full, caller frees) or -1 on NOMEM.
 */
static int
encode_checked(const SpTokenizer *tok, const uint8_t *text, size_t len, int32_t **full,
			   size_t size)
{
	static const int caps[] = {128, 5};
	size_t		cap = len * MAX_EXPANSION + 2;
	int32_t    *all = malloc(sizeof(int32_t) * cap),
			   *again = malloc(sizeof(int32_t) * 128);
	int			n;

	*full = NULL;
	if (all == NULL || again == NULL || cap > INT32_MAX)
	{
		free(all);
		free(again);
		return -1;
	}
	n = sp_tokenizer_encode(tok, (const char *) text, len, all, (int) cap);
	if (n < 0)
	{
		free(all);
		free(again);
		return -1;
	}
	check_ids(tok, all, n, (int) cap, size);
	if (n == (int) cap)
		fail("the full encoding filled a buffer meant to be larger than any encoding", size);
	for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++)
	{
		int			m = sp_tokenizer_encode(tok, (const char *) text, len, again, caps[k]);

		if (m < 0)
			continue;			/* out of memory */
		check_ids(tok, again, m, caps[k], size);
		if (m != (n < caps[k] ? n : caps[k]) || memcmp(all, again, sizeof(int32_t) * (size_t) m) != 0)
			fail("a truncated encoding is not a prefix of the full one", size);
	}
	if (sp_tokenizer_encode(tok, (const char *) text, len, again, 0) != 0)
		fail("max_ids 0 must give 0 ids", size);
	free(again);
	*full = all;
	return n;
}

/* Printable ASCII without unknowns: the pieces must spell U+2581 + text (spaces as U+2581). */
static void
check_round_trip(const SpTokenizer *tok, const uint8_t *text, size_t len, const int32_t *ids,
				 int n, size_t size)
{
	char	   *want,
			   *got,
			   *w;
	size_t		got_len = 0;

	if (len == 0)
	{
		if (n != 0)
			fail("empty text gave ids", size);
		return;
	}
	for (size_t i = 0; i < len; i++)
		if (text[i] < 0x20 || text[i] > 0x7e)
			return;
	for (int i = 0; i < n; i++)
		if (ids[i] == 0)
			return;
	want = malloc(3 * (len + 1) + 1);
	got = malloc(3 * (len + 1) + 64);
	if (want == NULL || got == NULL)
	{
		free(want);
		free(got);
		return;
	}
	w = want;
	memcpy(w, "\xe2\x96\x81", 3), w += 3;
	for (size_t i = 0; i < len; i++)
		if (text[i] == ' ')
			memcpy(w, "\xe2\x96\x81", 3), w += 3;
		else
			*w++ = (char) text[i];
	*w = '\0';
	for (int i = 0; i < n; i++)
	{
		const char *p = sp_tokenizer_piece(tok, ids[i]);
		size_t		pl = p ? strlen(p) : 0;

		if (p == NULL)
			fail("an id without a piece", size);
		if (got_len + pl > 3 * (len + 1))
			fail("the pieces spell more than the text", size);
		memcpy(got + got_len, p, pl);
		got_len += pl;
	}
	got[got_len] = '\0';
	if (strcmp(got, want) != 0)
		fail("the pieces of an ASCII text do not spell it", size);
	free(want);
	free(got);
}

/* The input as a vocab.json. */
static void
fuzz_vocab(const uint8_t *data, size_t size)
{
	static const char *const texts[] = {
		"", "\xef\xbb\xbf" "BOM a b \xff\xfe\xc3",
		"\xf0\x9f\x98\x80 caf\xc3\xa9 cafe\xcc\x81 \xef\xac\x81 \xe2\x96\x81" "a  b",
	};
	SpTokenizer *tok = (SpTokenizer *) 0x1;	/* must be reset to NULL on failure */
	NnError		err;
	NnStatus	st;
	int32_t    *ids = NULL;
	int			n;

	nn_error_clear(&err);
	st = sp_tokenizer_from_json(&tok, (const char *) data, size, &err);
	if (st != NN_OK)
	{
		if ((st != NN_ERR_FORMAT && st != NN_ERR_NOMEM) || tok != NULL || err.msg[0] == '\0')
			fail("a rejected vocab must be NN_ERR_FORMAT with a message and no tokenizer", size);
		return;
	}
	if (tok == NULL)
		fail("an accepted vocab gave no tokenizer", size);
	n = sp_tokenizer_vocab_size(tok);
	if (n < SP_RESERVED_IDS || n > SP_MAX_VOCAB)
		fail("an accepted vocab has a size outside SP_RESERVED_IDS..SP_MAX_VOCAB", size);
	for (int i = 0; i < n; i++)
	{
		const char *p = sp_tokenizer_piece(tok, i);

		if (p == NULL || p[0] == '\0')
			fail("an accepted vocab has an empty piece", size);
	}
	if (sp_tokenizer_piece(tok, -1) != NULL || sp_tokenizer_piece(tok, n) != NULL)
		fail("a piece for an id out of range", size);
	/* the hostile vocab on the input itself (its own pieces appear in it) and on fixed texts */
	encode_checked(tok, data, size, &ids, size);
	free(ids);
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
	{
		encode_checked(tok, (const uint8_t *) texts[i], strlen(texts[i]), &ids, size);
		free(ids);
	}
	sp_tokenizer_free(tok);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int32_t    *ids = NULL;
	int			n;

	n = encode_checked(vocab, data, size, &ids, size);
	if (n >= 0)
		check_round_trip(vocab, data, size, ids, n, size);
	free(ids);
	fuzz_vocab(data, size);
	return 0;
}
