/*
 * fuzz_wordpiece.c: libFuzzer harness for the BERT WordPiece tokenizer
 * (src/nn/tokenizers/wordpiece.h); build and run with test/fuzz/run.sh.
 *
 * Every input is used four ways:
 *
 *   1. as text, encoded with the real bert-base-uncased tokenizer, both as
 *      loaded from its tokenizer.json and from its vocab.txt (+
 *      tokenizer_config.json), read once from
 *      $DEPT_HF_FIXTURES/bert-tiny-random (default test/fixtures/hf),
 *      and with a cased variant of the tokenizer.json (no accent
 *      stripping, no clean_text: the normalizer is null);
 *   2. as a tokenizer.json (wordpiece_from_json);
 *   3. as a vocab.txt (wordpiece_from_vocab), with BERT's default options
 *      and with options taken from the input's first byte;
 *   4. as a tokenizer_config.json (wordpiece_options_from_json).
 *   An accepted tokenizer of 2 or 3 encodes the input itself (its own
 *   tokens appear in it) and a few fixed texts.
 *
 * Properties checked beyond the sanitizers' own, abort() on a violation:
 *   - encode returns 0..max_ids ids (never -1: nothing runs out of memory
 *     here), each in 0..vocab_size - 1; max_ids 0 gives 0;
 *   - truncation keeps the specials: with E the encoding of "" (the
 *     template's specials, prefix then suffix) and F the full encoding,
 *     for max_ids k < |E| the ids are E's first k, and for k >= |E| they
 *     are F's first p + k - |E| followed by E's last |E| - p, for one
 *     split p of E that also frames F (checked for k = 1, 5, 128);
 *   - wordpiece_from_json (its fast path over the text) and
 *     wordpiece_from_json_tree (cJSON's tree) give the same status and
 *     message, and accepted, the same tokens and encoding of the input;
 *   - a rejected tokenizer is NN_ERR_FORMAT (or NN_ERR_NOMEM) with a
 *     message and no tokenizer; an accepted one has 1 to 2^24 ids, an
 *     unknown id naming a token, no token for ids out of range, and every
 *     token found again by wordpiece_token_id (as itself or a duplicate);
 *   - the options read from any bytes have strip_accents in -1..1.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "formats/hf_config.h"
#include "tokenizers/wordpiece.h"

/* One id per byte at most 8 times over (CJK spacing, decomposition, U+0130), plus specials. */
#define MAX_IDS_PER_BYTE 16
#define MAX_SPECIALS 64

static WordPiece *real[3];		/* tokenizer.json, vocab.txt, cased variant */

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what, size_t size)
{
	fprintf(stderr, "fuzz_wordpiece: %s (input of %zu bytes)\n", what, size);
	abort();
}

static void
die(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_wordpiece: %s: %s (set DEPT_HF_FIXTURES)\n", what, detail);
	exit(2);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *hf = getenv("DEPT_HF_FIXTURES");
	char		dir[4096],
				path[4200];
	char	   *json,
			   *cased;
	size_t		len;
	NnError		err;
	cJSON	   *root;

	(void) argc;
	(void) argv;
	snprintf(dir, sizeof(dir), "%s/bert-tiny-random",
			 hf && hf[0] ? hf : "test/fixtures/hf");
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	if ((json = hf_read_file(path, (size_t) 64 << 20, &len)) == NULL)
		die("cannot read", path);
	nn_error_clear(&err);
	if (wordpiece_from_json(&real[0], json, len, &err) != NN_OK)
		die(path, err.msg);
	/* the cased variant: "normalizer": null (no clean_text, no lowercase, no accent stripping) */
	if ((root = cJSON_ParseWithLength(json, len)) == NULL ||
		!cJSON_ReplaceItemInObjectCaseSensitive(root, "normalizer", cJSON_CreateNull()) ||
		(cased = cJSON_PrintUnformatted(root)) == NULL)
		die(path, "cannot make the cased variant");
	cJSON_Delete(root);
	len = strlen(cased);
	free(json);
	if (wordpiece_from_json(&real[2], cased, len, &err) != NN_OK)
		die("the cased variant", err.msg);
	free(cased);
	/* vocab.txt with the options of tokenizer_config.json, as wordpiece_load reads them */
	snprintf(path, sizeof(path), "%s/vocab.txt", dir);
	if ((json = hf_read_file(path, (size_t) 64 << 20, &len)) == NULL)
		die("cannot read", path);
	{
		char		cpath[4200];
		size_t		clen = 0;
		char	   *cfg;
		WordPieceOptions opt;

		snprintf(cpath, sizeof(cpath), "%s/tokenizer_config.json", dir);
		cfg = hf_read_file(cpath, (size_t) 1 << 20, &clen);
		wordpiece_options_from_json(&opt, cfg, clen);
		free(cfg);
		if (wordpiece_from_vocab(&real[1], json, len, &opt, &err) != NN_OK)
			die(path, err.msg);
	}
	free(json);
	return 0;
}

static void
check_ids(const WordPiece *wp, const int32_t *ids, int n, int max_ids, size_t size)
{
	int			vs = wordpiece_vocab_size(wp);

	if (n < 0)
		fail("encode ran out of memory", size);
	if (n > max_ids)
		fail("encode returned more than max_ids ids", size);
	for (int i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= vs)
			fail("encode wrote an id outside 0..vocab_size - 1", size);
}

/* Encode text in full and truncated; check every encoding property above. */
static void
encode_checked(const WordPiece *wp, const uint8_t *text, size_t len, size_t size)
{
	static const int caps[] = {1, 5, 128};
	int32_t		e[MAX_SPECIALS + 1],
				t[128];
	size_t		cap = len * MAX_IDS_PER_BYTE + MAX_SPECIALS;
	int32_t    *f = malloc(sizeof(int32_t) * cap);
	int			ne,
				nf;
	bool		framed[MAX_SPECIALS + 1];

	if (f == NULL)
		return;
	ne = wordpiece_encode(wp, "", 0, e, MAX_SPECIALS + 1);
	check_ids(wp, e, ne, MAX_SPECIALS + 1, size);
	if (ne > MAX_SPECIALS)
		fail("more specials than the template can hold", size);
	nf = wordpiece_encode(wp, (const char *) text, len, f, (int) cap);
	check_ids(wp, f, nf, (int) cap, size);
	if (nf == (int) cap)
		fail("the full encoding filled a buffer meant to be larger than any encoding", size);
	if (nf < ne)
		fail("the full encoding is shorter than the specials", size);
	/* the splits p of E into prefix and suffix that frame F */
	for (int p = 0; p <= ne; p++)
		framed[p] = memcmp(f, e, sizeof(int32_t) * (size_t) p) == 0 &&
			memcmp(f + nf - (ne - p), e + p, sizeof(int32_t) * (size_t) (ne - p)) == 0;
	for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++)
	{
		int			k = caps[c],
					nt = wordpiece_encode(wp, (const char *) text, len, t, k);
		bool		ok = false;

		check_ids(wp, t, nt, k, size);
		if (k < ne)
			ok = nt == k && memcmp(t, e, sizeof(int32_t) * (size_t) k) == 0;
		else
			for (int p = 0; p <= ne && !ok; p++)
			{
				int			head = p + (k - ne < nf - ne ? k - ne : nf - ne);

				ok = framed[p] && nt == head + (ne - p) &&
					memcmp(t, f, sizeof(int32_t) * (size_t) head) == 0 &&
					memcmp(t + head, e + p, sizeof(int32_t) * (size_t) (ne - p)) == 0;
			}
		if (!ok)
			fail("a truncated encoding is not the specials around a prefix of the full one", size);
	}
	if (wordpiece_encode(wp, (const char *) text, len, t, 0) != 0)
		fail("max_ids 0 must give 0 ids", size);
	free(f);
}

/* A tokenizer that the reader produced or refused. */
static void
check_loaded(NnStatus st, WordPiece *wp, const NnError *err, const uint8_t *data, size_t size)
{
	static const char *const texts[] = {
		"", "Hello, World! [CLS] [MASK] un##affable",
		"\xef\xbb\xbf" "caf\xc3\xa9 cafe\xcc\x81 \xe4\xb8\xad\xe6\x96\x87 \xff\xfe \xc4\xb0 \t\n a",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	int			n;
	int32_t		unk;

	if (st != NN_OK)
	{
		if ((st != NN_ERR_FORMAT && st != NN_ERR_NOMEM) || wp != NULL || err->msg[0] == '\0')
			fail("a rejected tokenizer must be NN_ERR_FORMAT with a message and no tokenizer", size);
		return;
	}
	if (wp == NULL)
		fail("an accepted tokenizer is NULL", size);
	n = wordpiece_vocab_size(wp);
	if (n < 1 || n > (1 << 24))
		fail("an accepted vocabulary has a size outside 1..2^24", size);
	unk = wordpiece_unk_id(wp);
	if (unk < 0 || unk >= n || wordpiece_token(wp, unk) == NULL)
		fail("the unknown id names no token", size);
	if (wordpiece_token(wp, -1) != NULL || wordpiece_token(wp, n) != NULL)
		fail("a token for an id out of range", size);
	for (int i = 0; i < n && i < 4096; i++)
	{
		const char *t = wordpiece_token(wp, i);
		int32_t		j;

		if (t == NULL)
			continue;
		j = wordpiece_token_id(wp, t);
		if (j < 0 || wordpiece_token(wp, j) == NULL || strcmp(wordpiece_token(wp, j), t) != 0)
			fail("a token is not found again by wordpiece_token_id", size);
	}
	encode_checked(wp, data, size, size);
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		encode_checked(wp, (const uint8_t *) texts[i], strlen(texts[i]), size);
	wordpiece_free(wp);
}

/* The fast reader and cJSON's tree agree on the input as a tokenizer.json. */
static void
check_paths_agree(const WordPiece *fast, NnStatus st, const NnError *err, const uint8_t *data,
				  size_t size)
{
	static int32_t a[4096],
				b[4096];
	WordPiece  *tree = NULL;
	NnError		et;
	NnStatus	s;
	int			n;

	nn_error_clear(&et);
	s = wordpiece_from_json_tree(&tree, (const char *) data, size, &et);
	if (s != st || (s != NN_OK && strcmp(err->msg, et.msg) != 0))
		fail("wordpiece_from_json and wordpiece_from_json_tree disagree", size);
	if (s != NN_OK)
		return;
	n = wordpiece_vocab_size(fast);
	if (n != wordpiece_vocab_size(tree) || wordpiece_unk_id(fast) != wordpiece_unk_id(tree))
		fail("the two readers' vocabularies differ", size);
	for (int i = 0; i < n; i++)
	{
		const char *x = wordpiece_token(fast, i),
				   *y = wordpiece_token(tree, i);

		if ((x == NULL) != (y == NULL) || (x != NULL && strcmp(x, y) != 0))
			fail("the two readers' tokens differ", size);
	}
	n = wordpiece_encode(fast, (const char *) data, size, a, 4096);
	if (n != wordpiece_encode(tree, (const char *) data, size, b, 4096) ||
		(n > 0 && memcmp(a, b, sizeof(int32_t) * (size_t) n) != 0))
		fail("the two readers' encodings differ", size);
	wordpiece_free(tree);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	WordPiece  *wp;
	WordPieceOptions opt;
	NnError		err;
	NnStatus	st;

	for (int i = 0; i < 3; i++)
		encode_checked(real[i], data, size, size);

	wp = (WordPiece *) 0x1;		/* must be reset to NULL on failure */
	nn_error_clear(&err);
	st = wordpiece_from_json(&wp, (const char *) data, size, &err);
	check_paths_agree(wp, st, &err, data, size);
	check_loaded(st, wp, &err, data, size);

	wp = (WordPiece *) 0x1;
	nn_error_clear(&err);
	st = wordpiece_from_vocab(&wp, (const char *) data, size, NULL, &err);
	check_loaded(st, wp, &err, data, size);
	if (size > 0)
	{
		opt.lowercase = data[0] & 1;
		opt.strip_accents = (int) ((data[0] >> 1) % 3) - 1;
		opt.chinese_chars = (data[0] >> 3) & 1;
		wp = (WordPiece *) 0x1;
		nn_error_clear(&err);
		st = wordpiece_from_vocab(&wp, (const char *) data, size, &opt, &err);
		check_loaded(st, wp, &err, data, size);
	}

	memset(&opt, 0x5A, sizeof(opt));
	wordpiece_options_from_json(&opt, (const char *) data, size);
	if (opt.strip_accents < -1 || opt.strip_accents > 1)
		fail("strip_accents outside -1..1", size);
	return 0;
}
