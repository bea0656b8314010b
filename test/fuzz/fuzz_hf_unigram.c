/*
 * fuzz_hf_unigram.c: libFuzzer harness for the Unigram tokenizer.json
 * reader and tokenizer (src/nn/tokenizers/unigram.h); build and run with
 * test/fuzz/run.sh.
 *
 * Every input is used three ways:
 *
 *   1. as text, encoded with two valid tokenizers built once at start-up
 *      from $DEPT_HF_FIXTURES/t5-tiny-random/tokenizer.json
 *      (default test/fixtures/hf): the file as it is (NFKC, Metaspace), and the
 *      same vocabulary in the layout of real T5 checkpoints (Precompiled
 *      charsmap, Strip, Replace " {2,}", WhitespaceSplit + Metaspace,
 *      "</s>" template) with byte_fallback and 256 <0xXX> pieces and an
 *      added token matched on normalized text;
 *   2. as a tokenizer.json (hf_unigram_from_json);
 *   3. as a Precompiled charsmap blob in the second layout (with a smaller
 *      vocabulary): the input's first byte is the number of 32-bit trie
 *      units, the rest the units and then the strings, and the harness
 *      writes the 4-byte trie size and the base64 -- a mutated blob rarely
 *      keeps a consistent length header or valid base64 otherwise.
 *   An accepted tokenizer of 2 or 3 encodes the input itself and a few
 *   fixed texts.
 *
 * Properties checked beyond the sanitizers' own, abort() on a violation:
 *   - encode (flags 0 and HFU_SPECIALS | HFU_EOS) returns
 *     0..max_ids ids, each in
 *     0..vocab_size - 1, and (asked for, with max_ids 128) a token per id,
 *     each a NUL-terminated valid UTF-8 string;
 *   - truncation: without specials, max_ids k gives the first k ids of the
 *     full encoding; with them, E being the encoding of "", k < |E| gives
 *     E's first k, k >= |E| gives the full encoding's first p + k - |E| ids
 *     and E's last |E| - p for one split p of E that frames it;
 *   - hf_unigram_normalize returns valid UTF-8 (every stage works on valid
 *     UTF-8, hf_unigram.c);
 *   - neither fails (-1, NULL) unless the normalizer can expand a text past
 *     HFU_MAX_GROWTH (a Replace with a content longer than its pattern, a
 *     Precompiled charsmap: one with a replacement longer than
 *     HFU_MAX_GROWTH bytes in the charsmap mode); nothing runs out of
 *     memory here;
 *   - hf_unigram_from_json (its fast path over the text) and
 *     hf_unigram_from_json_tree (cJSON's tree) give the same status and
 *     message, and accepted, the same pieces and encoding of the input;
 *   - a rejected tokenizer is NN_ERR_FORMAT (or NN_ERR_NOMEM) with a
 *     message and no tokenizer; an accepted one has an unknown id naming a
 *     piece, no piece for ids out of range, every piece found again by
 *     hf_unigram_piece_id, and an eos id naming "</s>" or -1.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "formats/hf_config.h"
#include "tokenizers/unigram.h"

#define MAX_SPECIALS 80
#define MAX_FULL (1 << 20)		/* longest full encoding checked */

/* An nmt_nfkc-like charsmap of 12 rules (test/fuzz/make_hf_seeds.py prints it). */
static const char charsmap_b64[] =
"vAMAAAAEAAAAAAAAKAAAgAAAAAAAAAAADgAAgAAAAAAHAACACSkAAAAAAAAAAAAAAAAAABEAAIAAAAAAAAAAAAsA"
"AIAAAAAAJQAAgAwAAIAAAAAAAAAAAAAAAAAJAACAAAAAAAAAAAAAAACAFQAAgAAAAAAAAAAAAwAAgAAAAAAFAACA"
"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
"AAAAAAAAAABlnAEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
"jTECAAAAAACBAQIAAAAAAAAAAAAAAAAAhGQCAAAAAAAAAAAAAAAAAIAMAgAAAAAAAAAAAAAAAAAAAAAAm2ACAAAA"
"AACABAIAgA0CAAAAAAAAAAAAAAAAAIEBAgAAAAAAAAAAAJE8AgAAAAAAAAAAAIEBAgC37AIAuu0CAAAAAAAAAAAA"
"AAAAAAAAAACghQIAAAAAAKORAgAAAAAAvdACALzcAgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAC67AIAoIUCAAAA"
"AAAAAAAApp0CAAAAAAAAAAAAAAAAAAAAAACsjAIAAAAAAKGBAgAAAAAAAAAAAAAAAAAAAAAAAAAAAMIUAwAAAAAA"
"AAAAAMw0AwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAMwsAwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA4aADAAAAAADj2AMA4rgDAAAAAAAAAAAA"
"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAADv5AMAZmkAQQBhACAAIAAAMQDDqQDhuakA2LXZhNmJINin"
"2YTZhNmHAM+JACAA"
;

static HfUnigram *real[2];		/* as shipped, T5 layout */
static char *blob_head,			/* the charsmap mode's tokenizer.json around the base64 */
		   *blob_tail;

int			LLVMFuzzerInitialize(int *argc, char ***argv);
int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what, size_t size)
{
	fprintf(stderr, "fuzz_hf_unigram: %s (input of %zu bytes)\n", what, size);
	abort();
}

static void
die(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_hf_unigram: %s: %s (set DEPT_HF_FIXTURES)\n", what, detail);
	exit(2);
}

static cJSON *
parse_or_die(const char *json)
{
	cJSON	   *j = cJSON_Parse(json);

	if (j == NULL)
		die("cannot parse", json);
	return j;
}

/* The T5-checkpoint layout around root's vocabulary, with a charsmap of b64 (n_pieces kept, -1: all). */
static char *
t5_layout(const cJSON *root, const char *b64, int n_pieces)
{
	cJSON	   *t = cJSON_Duplicate(root, true);
	cJSON	   *model = cJSON_GetObjectItemCaseSensitive(t, "model");
	cJSON	   *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
	cJSON	   *norm = parse_or_die(
		"{\"type\":\"Sequence\",\"normalizers\":["
		"{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"\"},"
		"{\"type\":\"Strip\",\"strip_left\":false,\"strip_right\":true},"
		"{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" {2,}\"},\"content\":\" \"}]}");
	char	   *out;

	while (n_pieces >= 0 && cJSON_GetArraySize(vocab) > n_pieces)
		cJSON_DeleteItemFromArray(vocab, cJSON_GetArraySize(vocab) - 1);
	for (int b = 0; b < 256; b++)
	{
		char		item[64];

		snprintf(item, sizeof(item), "[\"<0x%02X>\", -30.0]", (unsigned) b);
		cJSON_AddItemToArray(vocab, parse_or_die(item));
	}
	cJSON_ReplaceItemInObjectCaseSensitive(model, "byte_fallback", cJSON_CreateTrue());
	cJSON_ReplaceItemInObjectCaseSensitive(
		cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(norm, "normalizers"), 0),
		"precompiled_charsmap", cJSON_CreateString(b64));
	cJSON_ReplaceItemInObjectCaseSensitive(t, "normalizer", norm);
	cJSON_ReplaceItemInObjectCaseSensitive(t, "pre_tokenizer", parse_or_die(
		"{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"WhitespaceSplit\"},"
		"{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_scheme\":\"always\","
		"\"split\":true}]}"));
	cJSON_ReplaceItemInObjectCaseSensitive(t, "post_processor", parse_or_die(
		"{\"type\":\"TemplateProcessing\",\"single\":[{\"Sequence\":{\"id\":\"A\"}},"
		"{\"SpecialToken\":{\"id\":\"</s>\"}}],"
		"\"special_tokens\":{\"</s>\":{\"id\":\"</s>\",\"ids\":[1],\"tokens\":[\"</s>\"]}}}"));
	cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(t, "added_tokens"), parse_or_die(
		"{\"id\":1300,\"content\":\"\\u2581the film\",\"normalized\":true}"));
	out = cJSON_PrintUnformatted(t);
	cJSON_Delete(t);
	if (out == NULL)
		die("out of memory", "t5_layout");
	return out;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *hf = getenv("DEPT_HF_FIXTURES");
	char		path[4096];
	char	   *json,
			   *t5,
			   *mark;
	size_t		len;
	cJSON	   *root;
	NnError		err;

	(void) argc;
	(void) argv;
	snprintf(path, sizeof(path), "%s/t5-tiny-random/tokenizer.json",
			 hf && hf[0] ? hf : "test/fixtures/hf");
	if ((json = hf_read_file(path, (size_t) 64 << 20, &len)) == NULL)
		die("cannot read", path);
	nn_error_clear(&err);
	if (hf_unigram_from_json(&real[0], json, len, &err) != NN_OK)
		die(path, err.msg);
	root = parse_or_die(json);
	free(json);
	t5 = t5_layout(root, charsmap_b64, -1);
	if (hf_unigram_from_json(&real[1], t5, strlen(t5), &err) != NN_OK)
		die("the T5 layout", err.msg);
	free(t5);
	/* the charsmap mode's template: 100 pieces, the base64 spliced in at "@@" */
	t5 = t5_layout(root, "@@", 100);
	cJSON_Delete(root);
	if ((mark = strstr(t5, "\"@@\"")) == NULL)
		die("no charsmap mark", "t5_layout");
	*mark = '\0';
	blob_head = t5;
	blob_tail = mark + 4;
	return 0;
}

static bool
valid_utf8(const uint8_t *s, size_t len)
{
	for (size_t i = 0; i < len;)
	{
		uint8_t		c = s[i];
		int			need;
		uint8_t		lo = 0x80,
					hi = 0xBF;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			need = 1;
		else if (c >= 0xE0 && c <= 0xEF)
			need = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
		else if (c >= 0xF0 && c <= 0xF4)
			need = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
		else
			return false;
		for (i++; need > 0; need--, i++, lo = 0x80, hi = 0xBF)
			if (i >= len || s[i] < lo || s[i] > hi)
				return false;
	}
	return true;
}

/*
 * Whether the tokenizer under test has normalizers that can grow a text past
 * hf_unigram.h's HFU_MAX_GROWTH limit, so that encode may return -1.
 */
static bool may_blow_up;

/* False when encode failed and may; abort() when it must not have. */
static bool
check_ids(const HfUnigram *u, const int32_t *ids, int n, int max_ids, size_t size)
{
	int			vs = hf_unigram_vocab_size(u);

	if (n < 0)
	{
		if (may_blow_up)
			return false;
		fail("encode failed (out of memory or over the growth limit) with no expanding normalizer",
			 size);
	}
	if (n > max_ids)
		fail("encode returned more than max_ids ids", size);
	for (int i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= vs)
			fail("encode wrote an id outside 0..vocab_size - 1", size);
	return true;
}

/* Encode in full (ids in *full, caller frees); -1 when longer than MAX_FULL or failed. */
static int
encode_full(const HfUnigram *u, const uint8_t *text, size_t len, unsigned flags,
			int32_t **full, size_t size)
{
	int			cap = len < 4096 ? (int) len * 8 + MAX_SPECIALS : 65536;

	for (;;)
	{
		int32_t    *f = malloc(sizeof(int32_t) * (size_t) cap);
		int			n;

		if (f == NULL)
			fail("out of memory in the harness", size);
		n = hf_unigram_encode(u, (const char *) text, len, flags, f, NULL, cap);
		if (!check_ids(u, f, n, cap, size))
		{
			free(f);
			return -1;
		}
		if (n < cap)
		{
			*full = f;
			return n;
		}
		free(f);
		if (cap >= MAX_FULL)
			return -1;
		cap *= 4;
	}
}

static void
encode_checked(const HfUnigram *u, const uint8_t *text, size_t len, size_t size)
{
	static const unsigned flag_sets[] = {0, HFU_SPECIALS | HFU_EOS};
	static const int caps[] = {1, 5, 128};
	int32_t		e[MAX_SPECIALS + 1],
				t[128];
	char	   *toks[128];
	size_t		nl;
	char	   *norm = hf_unigram_normalize(u, (const char *) text, len, &nl);

	if (norm == NULL)
	{
		if (may_blow_up)
			return;
		fail("hf_unigram_normalize failed with no expanding normalizer", size);
	}
	if (norm[nl] != '\0' || !valid_utf8((const uint8_t *) norm, nl))
		fail("the normalized text is not NUL-terminated valid UTF-8", size);
	free(norm);
	for (size_t fs = 0; fs < sizeof(flag_sets) / sizeof(flag_sets[0]); fs++)
	{
		unsigned	flags = flag_sets[fs];
		int32_t    *f;
		int			ne = hf_unigram_encode(u, "", 0, flags, e, NULL, MAX_SPECIALS + 1),
					nf;
		bool		framed[MAX_SPECIALS + 1];

		if (!check_ids(u, e, ne, MAX_SPECIALS + 1, size))
			continue;
		if (ne > MAX_SPECIALS)
			fail("more specials than the template can hold", size);
		if (flags == 0 && ne != 0)
			fail("an empty text gave ids without specials", size);
		if ((nf = encode_full(u, text, len, flags, &f, size)) < 0)
			continue;
		if (nf < ne)
			fail("the full encoding is shorter than the specials", size);
		for (int p = 0; p <= ne; p++)
			framed[p] = memcmp(f, e, sizeof(int32_t) * (size_t) p) == 0 &&
				memcmp(f + nf - (ne - p), e + p, sizeof(int32_t) * (size_t) (ne - p)) == 0;
		for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++)
		{
			int			k = caps[c],
						nt = hf_unigram_encode(u, (const char *) text, len, flags, t,
											   k == 128 ? toks : NULL, k);
			bool		ok = false;

			if (!check_ids(u, t, nt, k, size))
				break;
			if (k == 128)
			{
				for (int i = 0; i < nt; i++)
				{
					if (toks[i] == NULL || !valid_utf8((const uint8_t *) toks[i], strlen(toks[i])))
						fail("a token string is missing or not valid UTF-8", size);
					free(toks[i]);
				}
			}
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
				fail(flags ? "a truncated encoding is not the specials around a prefix of the full one"
					 : "a truncated encoding is not a prefix of the full one", size);
		}
		if (hf_unigram_encode(u, (const char *) text, len, flags, t, NULL, 0) != 0)
			fail("max_ids 0 must give 0 ids", size);
		free(f);
	}
}

static void
check_loaded(NnStatus st, HfUnigram *u, const NnError *err, const uint8_t *data, size_t size)
{
	static const char *const texts[] = {
		"", "Hello world, the film.  It's </s> <pad> good!",
		"\xef\xac\x81ne \xef\xbc\xa1 caf\xc3\xa9 e\xcc\x81 \xe2\x80\x8d \xe4\xb8\xad \xff\xfe\xc3 \xc4\xb0  ",
	};
	int			n;
	int32_t		unk,
				eos;

	if (st != NN_OK)
	{
		if ((st != NN_ERR_FORMAT && st != NN_ERR_NOMEM) || u != NULL || err->msg[0] == '\0')
			fail("a rejected tokenizer must be NN_ERR_FORMAT with a message and no tokenizer", size);
		return;
	}
	if (u == NULL)
		fail("an accepted tokenizer is NULL", size);
	n = hf_unigram_vocab_size(u);
	if (n < 1)
		fail("an accepted vocabulary is empty", size);
	unk = hf_unigram_unk_id(u);
	if (unk < 0 || unk >= n || hf_unigram_piece(u, unk) == NULL)
		fail("the unknown id names no piece", size);
	if (hf_unigram_piece(u, -1) != NULL || hf_unigram_piece(u, n) != NULL)
		fail("a piece for an id out of range", size);
	eos = hf_unigram_eos_id(u);
	if (eos != -1 && (eos < 0 || eos >= n || hf_unigram_piece_id(u, "</s>") != eos))
		fail("the eos id is neither -1 nor the id of \"</s>\"", size);
	for (int i = 0; i < n && i < 4096; i++)
	{
		const char *p = hf_unigram_piece(u, i);

		if (p != NULL && hf_unigram_piece_id(u, p) < 0)
			fail("a piece is not found again by hf_unigram_piece_id", size);
	}
	encode_checked(u, data, size, size);
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		encode_checked(u, (const uint8_t *) texts[i], strlen(texts[i]), size);
	hf_unigram_free(u);
}

/* Can the normalizer n (as the reader sees it) grow a text more than HFU_MAX_GROWTH-fold? */
static bool
expanding(const cJSON *n, int depth)
{
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(n, "type"),
			   *it;

	if (!cJSON_IsString(type) || depth > 16)
		return false;
	if (strcmp(type->valuestring, "Sequence") == 0)
	{
		cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(n, "normalizers"))
			if (expanding(it, depth + 1))
			return true;
		return false;
	}
	if (strcmp(type->valuestring, "Precompiled") == 0)
		return true;
	if (strcmp(type->valuestring, "Replace") == 0)
	{
		const cJSON *content = cJSON_GetObjectItemCaseSensitive(n, "content"),
				   *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern"),
				   *str = cJSON_GetObjectItemCaseSensitive(pat, "String");

		/* a Regex matches one character, 1 byte or more */
		return cJSON_IsString(content) &&
			strlen(content->valuestring) > (cJSON_IsString(str) ? strlen(str->valuestring) : 1);
	}
	return false;
}

static const char b64chars[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The input as a charsmap: LE32(4 * min(data[0], units the rest holds)) + data[1..]. */
static void
fuzz_charsmap(const uint8_t *data, size_t size)
{
	size_t		units = size > 0 ? data[0] : 0,
				blen,
				hl = strlen(blob_head),
				tl = strlen(blob_tail),
				o;
	uint8_t    *blob;
	char	   *json;
	HfUnigram  *u = (HfUnigram *) 0x1;
	NnError		err;
	NnStatus	st;

	if (size == 0)
		return;
	if (units > (size - 1) / 4)
		units = (size - 1) / 4;
	blen = 4 + size - 1;
	blob = malloc(blen);
	json = malloc(hl + tl + 2 + (blen + 2) / 3 * 4 + 1);
	if (blob == NULL || json == NULL)
		fail("out of memory in the harness", size);
	blob[0] = (uint8_t) (4 * units);
	blob[1] = (uint8_t) ((4 * units) >> 8);
	blob[2] = blob[3] = 0;
	memcpy(blob + 4, data + 1, size - 1);
	memcpy(json, blob_head, hl);
	o = hl;
	json[o++] = '"';
	for (size_t i = 0; i < blen; i += 3)
	{
		uint32_t	v = (uint32_t) blob[i] << 16 | (i + 1 < blen ? (uint32_t) blob[i + 1] << 8 : 0) |
			(i + 2 < blen ? blob[i + 2] : 0);

		json[o++] = b64chars[(v >> 18) & 63];
		json[o++] = b64chars[(v >> 12) & 63];
		json[o++] = i + 1 < blen ? b64chars[(v >> 6) & 63] : '=';
		json[o++] = i + 2 < blen ? b64chars[v & 63] : '=';
	}
	json[o++] = '"';
	memcpy(json + o, blob_tail, tl);
	o += tl;
	free(blob);
	nn_error_clear(&err);
	st = hf_unigram_from_json(&u, json, o, &err);
	free(json);
	/* a replacement string longer than HFU_MAX_GROWTH can exceed the limit */
	for (size_t i = 1 + 4 * units, run = 0; i < size && !may_blow_up; i++)
		if ((run = data[i] ? run + 1 : 0) > HFU_MAX_GROWTH)
			may_blow_up = true;
	check_loaded(st, u, &err, data + 1, size - 1);
	may_blow_up = false;
}

/* The fast reader and cJSON's tree agree on the input as a tokenizer.json. */
static void
check_paths_agree(const HfUnigram *fast, NnStatus st, const NnError *err, const uint8_t *data,
				  size_t size)
{
	static int32_t a[4096],
				b[4096];
	HfUnigram  *tree = NULL;
	NnError		et;
	NnStatus	s;
	int			n;

	nn_error_clear(&et);
	s = hf_unigram_from_json_tree(&tree, (const char *) data, size, &et);
	if (s != st || (s != NN_OK && strcmp(err->msg, et.msg) != 0))
		fail("hf_unigram_from_json and hf_unigram_from_json_tree disagree", size);
	if (s != NN_OK)
		return;
	n = hf_unigram_vocab_size(fast);
	if (n != hf_unigram_vocab_size(tree) || hf_unigram_unk_id(fast) != hf_unigram_unk_id(tree))
		fail("the two readers' vocabularies differ", size);
	for (int i = 0; i < n; i++)
	{
		const char *x = hf_unigram_piece(fast, i),
				   *y = hf_unigram_piece(tree, i);

		if ((x == NULL) != (y == NULL) || (x != NULL && strcmp(x, y) != 0))
			fail("the two readers' pieces differ", size);
	}
	n = hf_unigram_encode(fast, (const char *) data, size, 0, a, NULL, 4096);
	if (n != hf_unigram_encode(tree, (const char *) data, size, 0, b, NULL, 4096) ||
		(n > 0 && memcmp(a, b, sizeof(int32_t) * (size_t) n) != 0))
		fail("the two readers' encodings differ", size);
	hf_unigram_free(tree);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	HfUnigram  *u = (HfUnigram *) 0x1;	/* must be reset to NULL on failure */
	NnError		err;
	NnStatus	st;

	for (int i = 0; i < 2; i++)
		encode_checked(real[i], data, size, size);
	nn_error_clear(&err);
	st = hf_unigram_from_json(&u, (const char *) data, size, &err);
	check_paths_agree(u, st, &err, data, size);
	if (st == NN_OK)
	{
		cJSON	   *root = cJSON_ParseWithLength((const char *) data, size);

		may_blow_up = expanding(cJSON_GetObjectItemCaseSensitive(root, "normalizer"), 0);
		cJSON_Delete(root);
	}
	check_loaded(st, u, &err, data, size);
	may_blow_up = false;
	fuzz_charsmap(data, size);
	return 0;
}
