/*
 * fuzz_bpe.c: libFuzzer harness for the byte-level BPE tokenizer.json
 * reader and tokenizer (src/nn/tokenizers/bpe.h) and the post-processor
 * template (src/nn/tokenizers/template.h); build and run with
 * test/fuzz/run.sh.
 *
 * Every input is used three ways:
 *
 *   1. as text, encoded with the tokenizers of
 *      $DEPT_HF_FIXTURES/{roberta,modernbert}-tiny-random/tokenizer.json
 *      (default test/fixtures/hf), alone and as a sentence pair (the input
 *      cut in two at a point its first byte chooses) with each file's
 *      template;
 *   2. as a tokenizer.json (bpe_from_json, tok_template_from_json);
 *   3. an accepted tokenizer of 2 encodes the input itself and fixed texts.
 *
 * Properties checked beyond the sanitizers' own, abort() on a violation:
 *   - bpe_encode returns 0..max_ids ids, each naming a token (bpe_token),
 *     and max_ids k gives the first k ids of the full encoding;
 *   - a pair through the template has at most max_ids ids, type ids 0..255
 *     as the template says, and with max_ids at least the template's
 *     specials count + both texts' lengths, exactly that many ids;
 *   - a rejected tokenizer or template is NN_ERR_FORMAT (or NN_ERR_NOMEM)
 *     with a message and no tokenizer;
 *   - bpe_from_json (its fast path over the text) and bpe_from_json_tree
 *     (cJSON's tree) give the same status and message, and accepted, the
 *     same token for every id and the same encoding of the input; bpe_token_id of an accepted
 *     tokenizer's token names that token (or -1, see bpe.c's add_token).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/hf_config.h"
#include "tokenizers/bpe.h"
#include "tokenizers/template.h"

#define MAX_FULL 65536

static Bpe *real[2];
static TokTemplate real_template[2];

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what, size_t size)
{
	fprintf(stderr, "fuzz_bpe: %s (input of %zu bytes)\n", what, size);
	abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const names[2] = {"roberta-tiny-random", "modernbert-tiny-random"};
	const char *dir = getenv("DEPT_HF_FIXTURES");

	(void) argc;
	(void) argv;
	for (int i = 0; i < 2; i++)
	{
		char		path[4096];
		size_t		len;
		char	   *json;
		NnError		err;

		snprintf(path, sizeof(path), "%s/%s/tokenizer.json", dir && *dir ? dir : "test/fixtures/hf",
				 names[i]);
		if ((json = hf_read_file(path, (size_t) 64 << 20, &len)) == NULL ||
			bpe_from_json(&real[i], json, len, &err) != NN_OK ||
			tok_template_from_json(&real_template[i], json, len, &err) != NN_OK)
		{
			fprintf(stderr, "fuzz_bpe: cannot load %s (set DEPT_HF_FIXTURES)\n", path);
			exit(2);
		}
		free(json);
	}
	return 0;
}

static int
encode_cb(const void *tok, const char *text, size_t len, int32_t *ids, int max_ids)
{
	return bpe_encode(tok, text, len, ids, max_ids);
}

/* Encode text fully and truncated; check ids and prefixes. */
static void
check_encode(const Bpe *bpe, const char *text, size_t len, size_t size)
{
	static int32_t full[MAX_FULL],
				part[MAX_FULL];
	int			n = bpe_encode(bpe, text, len, full, MAX_FULL);

	if (n < 0 || n > MAX_FULL)
		fail("encode count out of range", size);
	for (int i = 0; i < n; i++)
		if (bpe_token(bpe, full[i]) == NULL)
			fail("an id names no token", size);
	for (int k = 0; k <= 5 && k <= n; k += (n > 8 ? 4 : 1))
	{
		int			m = bpe_encode(bpe, text, len, part, k);

		if (m != k || memcmp(part, full, sizeof(int32_t) * (size_t) k) != 0)
			fail("a truncated encoding is not a prefix", size);
	}
}

/* Pair of the two halves of text through the template. */
static void
check_pair(const Bpe *bpe, const TokTemplate *t, const char *text, size_t len, size_t size)
{
	static int32_t ids[MAX_FULL];
	static uint8_t types[MAX_FULL];
	size_t		cut = len > 0 ? (uint8_t) text[0] % (len + 1) : 0;
	int			na = bpe_encode(bpe, text, cut, ids, MAX_FULL);
	int			nb = bpe_encode(bpe, text + cut, len - cut, ids, MAX_FULL);
	int			specials = 0;

	for (int i = 0; i < t->n_pair; i++)
		specials += t->pair[i].id >= 0;
	for (int max = 0; max <= 40; max += 13)
	{
		int			n = tok_template_encode(t, encode_cb, bpe, text, cut, text + cut, len - cut,
											ids, types, max);

		if (n < 0 || n > max)
			fail("pair count out of range", size);
	}
	if (na + nb + specials < MAX_FULL &&
		tok_template_encode(t, encode_cb, bpe, text, cut, text + cut, len - cut, ids, types,
							MAX_FULL) != na + nb + specials)
		fail("an untruncated pair has the wrong length", size);
}

static void
check_tokenizer(const Bpe *bpe, size_t size)
{
	int			n = bpe_vocab_size(bpe);

	if (n < 1 || n > (1 << 24))
		fail("vocabulary size out of range", size);
	for (int i = 0; i < n && i < 4096; i++)
	{
		const char *tok = bpe_token(bpe, i);
		int32_t		back;

		if (tok == NULL)
			continue;
		/* -1 only when the string's slot went to an id that later took another string */
		back = bpe_token_id(bpe, tok);
		if (back >= 0 && (bpe_token(bpe, back) == NULL || strcmp(bpe_token(bpe, back), tok) != 0))
			fail("a token is found as another", size);
	}
}

/* The fast reader and cJSON's tree agree on json. */
static void
check_paths_agree(const Bpe *fast, NnStatus s, const NnError *err, const char *json, size_t size)
{
	static int32_t a[MAX_FULL],
				b[MAX_FULL];
	Bpe		   *tree = NULL;
	NnError		et;
	NnStatus	st;

	et.msg[0] = '\0';
	st = bpe_from_json_tree(&tree, json, size, &et);
	if (st != s || (s != NN_OK && strcmp(err->msg, et.msg) != 0))
		fail("bpe_from_json and bpe_from_json_tree disagree", size);
	if (s == NN_OK)
	{
		int			n = bpe_vocab_size(fast);

		if (n != bpe_vocab_size(tree))
			fail("the two readers' vocabulary sizes differ", size);
		for (int i = 0; i < n; i++)
		{
			const char *x = bpe_token(fast, i),
					   *y = bpe_token(tree, i);

			if ((x == NULL) != (y == NULL) || (x != NULL && strcmp(x, y) != 0))
				fail("the two readers' tokens differ", size);
		}
		n = bpe_encode(fast, json, size, a, MAX_FULL);
		if (n != bpe_encode(tree, json, size, b, MAX_FULL) ||
			(n > 0 && memcmp(a, b, sizeof(int32_t) * (size_t) n) != 0))
			fail("the two readers' encodings differ", size);
	}
	bpe_free(tree);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const texts[] = {"", " ", "hello world", "it's 42 caf\xc3\xa9s!!  \n",
	"<s>x</s>", "\xff\xfe\xe2\x82"};
	const char *text = (const char *) data;
	Bpe		   *bpe = NULL;
	TokTemplate t;
	NnError		err;
	NnStatus	s;

	for (int i = 0; i < 2; i++)
	{
		check_encode(real[i], text, size, size);
		check_pair(real[i], &real_template[i], text, size, size);
	}
	err.msg[0] = '\0';
	s = bpe_from_json(&bpe, text, size, &err);
	if (s != NN_OK && ((s != NN_ERR_FORMAT && s != NN_ERR_NOMEM) || bpe != NULL || !err.msg[0]))
		fail("a rejection without NN_ERR_FORMAT and a message", size);
	check_paths_agree(bpe, s, &err, text, size);
	if (s == NN_OK)
	{
		check_tokenizer(bpe, size);
		check_encode(bpe, text, size, size);
		for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
			check_encode(bpe, texts[i], strlen(texts[i]), size);
		if (tok_template_from_json(&t, text, size, &err) == NN_OK)
			check_pair(bpe, &t, text, size, size);
	}
	bpe_free(bpe);
	err.msg[0] = '\0';
	s = tok_template_from_json(&t, text, size, &err);
	if (s != NN_OK && (s != NN_ERR_FORMAT || !err.msg[0]))
		fail("a template rejection without NN_ERR_FORMAT and a message", size);
	if (s == NN_OK && (t.n_single > TOK_TEMPLATE_MAX || t.n_pair > TOK_TEMPLATE_MAX))
		fail("template too long", size);
	return 0;
}
