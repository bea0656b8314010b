/*
 * test_tok_json.c: the strict JSON recogniser of tokenizers/tok_json.h and
 * the BPE reader's fast path built on it: bpe_from_json (vocab and merges
 * read from the text) gives the same status, message and tokenizer as
 * bpe_from_json_tree (cJSON's tree, the reader before the fast path) on
 * the fixtures' tokenizer.json files and on edits of them that the fast
 * path must leave to cJSON (\u escapes, ids written 5.0, duplicate keys,
 * a byte order mark) or that it reads itself ("a b" merges, escapes);
 * the same for the Unigram reader (hf_unigram_from_json against
 * hf_unigram_from_json_tree) on the four Unigram fixtures and edits, and
 * for WordPiece (wordpiece_from_json against wordpiece_from_json_tree) on
 * the bert and distilbert fixtures and edits.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/hf_config.h"
#include "tokenizers/bpe.h"
#include "tokenizers/template.h"
#include "tokenizers/tok_json.h"
#include "tokenizers/unigram.h"
#include "tokenizers/wordpiece.h"
#include "unit.h"

static bool
root_ok(const char *json)
{
	TokJsonSpan r;

	return tok_json_root(json, strlen(json), &r);
}

static void
test_recogniser(void)
{
	static const char *const good[] = {
		"{}", " \n{ }", "{\"a\": [1, -2.5e+3, 0, true, false, null, \"x\\\"\\u00e9\"]}",
		"{\"a\": {\"b\": [[], {}]}} trailing", "{\"\": 0}"};
	static const char *const bad[] = {
		"", "[]", "\xef\xbb\xbf{}", "{\"a\": 01}", "{\"a\": 1.}", "{\"a\": .5}", "{\"a\": +1}",
		"{\"a\": [1,]}", "{\"a\" 1}", "{\"a\": \"\\x\"}", "{\"a\": \"\\u12g4\"}", "{\"a\": \"\t\"}",
		"{\"a\": tru}", "{\"a\": 1", "{\"a\":\x01 1}", "{'a': 1}", "{\"a\": [1 2]}"};
	char		deep[200];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK(root_ok(good[i]), "refused %s", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(!root_ok(bad[i]), "accepted %s", bad[i]);
	/* nesting past TOK_JSON_MAX_DEPTH is left to cJSON */
	memset(deep, 0, sizeof(deep));
	deep[0] = '{';
	strcat(deep, "\"a\":");
	for (int i = 0; i < TOK_JSON_MAX_DEPTH + 1; i++)
		strcat(deep, "[");
	for (int i = 0; i < TOK_JSON_MAX_DEPTH + 1; i++)
		strcat(deep, "]");
	strcat(deep, "}");
	CHECK(!root_ok(deep), "accepted %d levels", TOK_JSON_MAX_DEPTH + 2);
}

static void
test_members_and_strings(void)
{
	const char *json = "{\"model\": {\"vocab\": {\"a\\\"b\\\\\\/\\n\": 3}}, \"m\\u006fdel\": 1}";
	const char *dup = "{\"model\": 1, \"x\": 2, \"model\": 3}";
	TokJsonSpan root,
				v,
				k;
	TokJsonIter it;
	bool		found;
	char		out[64];

	CHECK(tok_json_root(json, strlen(json), &root), "root");
	/* a key with an escape might spell "model": refused */
	CHECK(!tok_json_member(json, root, "model", &found, &v), "escaped key taken");
	CHECK(tok_json_root(dup, strlen(dup), &root), "root");
	CHECK(!tok_json_member(dup, root, "model", &found, &v), "duplicate key taken");
	CHECK(tok_json_member(dup, root, "x", &found, &v) && found && dup[v.start] == '2', "x");
	CHECK(tok_json_member(dup, root, "y", &found, &v) && !found, "y");

	json = "{\"model\": {\"vocab\": {\"a\\\"b\\\\\\/\\n\\t\": 3, \"\\u0120\": 4}}}";
	CHECK(tok_json_root(json, strlen(json), &root) &&
		  tok_json_member(json, root, "model", &found, &v) && found &&
		  tok_json_member(json, v, "vocab", &found, &v) && found, "vocab");
	CHECK(tok_json_iter(&it, json, v) && tok_json_next(&it, &k, &v) == 1, "first member");
	CHECK(tok_json_string(json, k, out) == 7 && strcmp(out, "a\"b\\/\n\t") == 0, "decoded %s", out);
	CHECK(tok_json_next(&it, &k, &v) == 1 && tok_json_string(json, k, out) == -1, "\\u decoded");
	CHECK(tok_json_next(&it, &k, &v) == 0, "end");
}

/* tok_json_vocab reads {"token": id} of plain strings and ids, and nothing else. */
static void
test_vocab_lists(void)
{
	static const char *const refused[] = {
		"{\"\\u0041\": 1}", "{\"a\": 5.0}", "{\"a\": -1}", "{\"a\": 01}", "{\"a\": 1000}",
		"{\"a\": \"1\"}", "[\"a\", 1]"};
	const char *json = "{\"a\": 0, \"b\\n\\\"c\": 999, \"\": 7}";
	TokJsonVocab v;
	TokJsonSpan span;
	char		arena[64],
			   *at = arena;

	CHECK(tok_json_root(json, strlen(json), &span) &&
		  tok_json_vocab(json, span, 999, &v, &at), "vocab refused");
	CHECK(v.n == 3 && strcmp(v.strs[0], "a") == 0 && v.lens[0] == 1 && v.ids[0] == 0 &&
		  strcmp(v.strs[1], "b\n\"c") == 0 && v.lens[1] == 4 && v.ids[1] == 999 &&
		  strcmp(v.strs[2], "") == 0 && v.lens[2] == 0 && v.ids[2] == 7,
		  "vocab read as %d entries", v.n);
	CHECK(at <= arena + (span.end - span.start), "arena past the span's length");
	tok_json_vocab_free(&v);
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
	{
		at = arena;
		span.start = 0;
		span.end = strlen(refused[i]);
		CHECK(!tok_json_vocab(refused[i], span, 999, &v, &at) && v.n == 0 && v.strs == NULL,
			  "took %s", refused[i]);
	}
}

static char *
read_fixture(const char *name, size_t *len)
{
	char		path[4096];
	char	   *text;

	snprintf(path, sizeof(path), "%s/%s/tokenizer.json", UNIT_HF_DIR(), name);
	text = hf_read_file(path, (size_t) 64 << 20, len);
	CHECK(text != NULL, "cannot read %s", path);
	return text;
}

/* The fast and the tree reader agree on json: status, message, every token, encodings. */
static void
check_same(const char *what, const char *json, size_t len)
{
	static const char *const texts[] = {"hello world", "it's 42 caf\xc3\xa9s!!  \n", " <s>x</s>",
	"a\"b\\c"};
	Bpe		   *fast = NULL,
			   *tree = NULL;
	NnError		ef = {0},
				et = {0};
	NnStatus	sf = bpe_from_json(&fast, json, len, &ef),
				st = bpe_from_json_tree(&tree, json, len, &et);

	CHECK(sf == st && strcmp(ef.msg, et.msg) == 0, "%s: %d \"%s\" against %d \"%s\"", what, sf,
		  ef.msg, st, et.msg);
	if (fast != NULL && tree != NULL)
	{
		int			n = bpe_vocab_size(fast);

		CHECK(n == bpe_vocab_size(tree), "%s: %d ids against %d", what, n, bpe_vocab_size(tree));
		for (int i = 0; i < n && i < bpe_vocab_size(tree); i++)
		{
			const char *a = bpe_token(fast, i),
					   *b = bpe_token(tree, i);

			CHECK((a == NULL) == (b == NULL) && (a == NULL || strcmp(a, b) == 0),
				  "%s: token %d differs", what, i);
			if (a != NULL)
				CHECK(bpe_token_id(fast, a) == bpe_token_id(tree, a), "%s: id of %s", what, a);
		}
		for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++)
		{
			int32_t		ia[64],
						ib[64];
			int			na = bpe_encode(fast, texts[t], strlen(texts[t]), ia, 64),
						nb = bpe_encode(tree, texts[t], strlen(texts[t]), ib, 64);

			CHECK(na == nb && na >= 0 && memcmp(ia, ib, sizeof(int32_t) * (size_t) na) == 0,
				  "%s: encoding of \"%s\" differs", what, texts[t]);
		}
	}
	bpe_free(fast);
	bpe_free(tree);
}

/* json with the first occurrence of from replaced by to (the caller frees). */
static char *
edited(const char *json, size_t len, const char *from, const char *to, size_t *out_len)
{
	const char *at = memmem(json, len, from, strlen(from));
	size_t		head,
				lf = strlen(from),
				lt = strlen(to);
	char	   *e;

	CHECK(at != NULL, "no \"%s\" to edit", from);
	if (at == NULL)
		return NULL;
	head = (size_t) (at - json);
	e = malloc(len - lf + lt);
	memcpy(e, json, head);
	memcpy(e + head, to, lt);
	memcpy(e + head + lt, at + lf, len - head - lf);
	*out_len = len - lf + lt;
	return e;
}

/* A check of the fast reader against the tree reader on one text. */
typedef void (*ReadersCheck) (const char *what, const char *json, size_t len);

/*
 * check on each fixture of names, whole and cut in half, then on each edit
 * (from -> to) of the first fixture, labelled "<label> <i>".
 */
static void
compare_on_fixtures(ReadersCheck check, const char *const *names, size_t n_names,
					const char *const (*edits)[2], size_t n_edits, const char *label)
{
	size_t		len,
				elen;
	char	   *json;

	for (size_t i = 0; i < n_names; i++)
	{
		if ((json = read_fixture(names[i], &len)) == NULL)
			return;
		check(names[i], json, len);
		check("a truncated file", json, len / 2);
		free(json);
	}
	if ((json = read_fixture(names[0], &len)) == NULL)
		return;
	for (size_t i = 0; i < n_edits; i++)
	{
		char	   *e = edited(json, len, edits[i][0], edits[i][1], &elen);
		char		what[64];

		snprintf(what, sizeof(what), "%s %zu", label, i);
		if (e != NULL)
			check(what, e, elen);
		free(e);
	}
	free(json);
}

static void
test_bpe_paths_agree(void)
{
	static const char *const names[] = {"roberta-tiny-random", "modernbert-tiny-random"};
	/* each: an edit of the roberta fixture, from -> to */
	static const char *const edits[][2] = {
		{"\"merges\": [\n      [\n        \"\xc4\xa0\",\n        \"a\"\n      ]",
		"\"merges\": [\"\xc4\xa0 a\""},	/* "a b" form, read by the fast path */
		{"\"merges\": [", "\"merges\": [\"\xc4\xa0  a\", "},	/* a malformed "a b" */
		{"\"merges\": [", "\"merges\": [[\"\xc4\xa0\"], "},	/* a one-part merge */
		{"\"merges\": [", "\"merges\": [[\"q\", \"\\u0071\"], "},	/* a \u: cJSON reads it */
		{"\"merges\": [", "\"merges\": [[\"\\\"\", \"x\"], "},	/* "\"" + "x" not in vocab */
		{"\"vocab\": {", "\"vocab\": {\"\\u0120zz\": 5.0, "},	/* \u and 5.0: cJSON */
		{"\"vocab\": {", "\"vocab\": {\"a\\\\b\\/\\t\": 1500, "},	/* escapes: the fast path */
		{"\"vocab\": {", "\"vocab\": {\"x\": 00, "},	/* a leading 0: cJSON */
		{"\"vocab\": {", "\"vocab\": {\"<s>\": 16777216, "},	/* out of range */
		{"\"vocab\": {", "\"vocab\": {\"<s>\": 999, \"tail\": 0, "},	/* duplicates */
		{"\"vocab\": {", "\"vocab\": 3, \"vocab\": {"},	/* a duplicate key */
		{"\"merges\": [", "\"merges\": {}, \"merges\": ["},
		{"\"model\": {", "\"model\": {}, \"model\": {"},
		{"\"model\": {", "\"m\\u006fdel\": {}, \"model\": {"},
		{"\"type\": \"BPE\"", "\"type\": \"WordPiece\""},	/* refused after reading */
		{"\"version\"", "\"version\": 1, \"version\""},
		{"{", "\xef\xbb\xbf{"},	/* a byte order mark: cJSON skips it */
		{"\"merges\": [", "\"merges\": [,"},	/* not JSON */
		{"\"truncation\": null", "\"truncation\": nul"},	/* not JSON outside the model */
	};
	compare_on_fixtures(check_same, names, sizeof(names) / sizeof(names[0]), edits,
						sizeof(edits) / sizeof(edits[0]), "edit");
}

/* The fast and the tree Unigram reader agree on json: status, message, every piece, encodings. */
static void
check_same_unigram(const char *what, const char *json, size_t len)
{
	static const char *const texts[] = {"hello world", "it's 42 caf\xc3\xa9s!!  \n", "</s>x",
	"a\"b\\c \xe2\x96\x81"};
	HfUnigram  *fast = NULL,
			   *tree = NULL;
	NnError		ef = {0},
				et = {0};
	NnStatus	sf = hf_unigram_from_json(&fast, json, len, &ef),
				st = hf_unigram_from_json_tree(&tree, json, len, &et);

	CHECK(sf == st && strcmp(ef.msg, et.msg) == 0, "%s: %d \"%s\" against %d \"%s\"", what, sf,
		  ef.msg, st, et.msg);
	if (fast != NULL && tree != NULL)
	{
		int			n = hf_unigram_vocab_size(fast);

		CHECK(n == hf_unigram_vocab_size(tree), "%s: %d ids against %d", what, n,
			  hf_unigram_vocab_size(tree));
		CHECK(hf_unigram_unk_id(fast) == hf_unigram_unk_id(tree), "%s: unk", what);
		for (int i = 0; i < n && i < hf_unigram_vocab_size(tree); i++)
		{
			const char *a = hf_unigram_piece(fast, i),
					   *b = hf_unigram_piece(tree, i);

			CHECK((a == NULL) == (b == NULL) && (a == NULL || strcmp(a, b) == 0),
				  "%s: piece %d differs", what, i);
		}
		for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++)
		{
			int32_t		ia[64],
						ib[64];
			int			na = hf_unigram_encode(fast, texts[t], strlen(texts[t]), 0, ia, NULL, 64),
						nb = hf_unigram_encode(tree, texts[t], strlen(texts[t]), 0, ib, NULL, 64);

			CHECK(na == nb && na >= 0 && memcmp(ia, ib, sizeof(int32_t) * (size_t) na) == 0,
				  "%s: encoding of \"%s\" differs", what, texts[t]);
		}
	}
	hf_unigram_free(fast);
	hf_unigram_free(tree);
}

static void
test_unigram_paths_agree(void)
{
	static const char *const names[] = {"t5-tiny-random", "t5-v1_1-tiny-random",
	"xlm-roberta-tiny-random", "deberta-v3-tiny-random"};
	/* each: an edit of the t5 fixture, from -> to */
	static const char *const edits[][2] = {
		{"\"vocab\": [", "\"vocab\": [[\"a\\\\b\\/\\t\", -1.5e-3], "},	/* escapes: the fast path */
		{"\"vocab\": [", "\"vocab\": [[\"\\u2581zz\", -2.0], "},	/* a \u: cJSON */
		{"\"vocab\": [", "\"vocab\": [[\"big\", -1e999], "},	/* not finite */
		{"\"vocab\": [", "\"vocab\": [[\"x\", -2, 1], "},	/* three parts */
		{"\"vocab\": [", "\"vocab\": [[\"x\"], "},
		{"\"vocab\": [", "\"vocab\": [[\"\", -2], "},	/* empty piece */
		{"\"vocab\": [", "\"vocab\": [[\"\xff\", -2], "},	/* not UTF-8 */
		{"\"vocab\": [", "\"vocab\": [[-2, \"x\"], "},
		{"\"vocab\": [", "\"vocab\": [[\"y\", -0.10000000000000000555111512312578270211815834045410156250000001], "},
		{"\"vocab\": [", "\"vocab\": 1, \"vocab\": ["},	/* a duplicate key */
		{"\"unk_id\": 2", "\"unk_id\": 2000"},
		{"\"vocab\": [", "\"vocab\": [,"},	/* not JSON */
	};
	compare_on_fixtures(check_same_unigram, names, sizeof(names) / sizeof(names[0]), edits,
						sizeof(edits) / sizeof(edits[0]), "unigram edit");
}

/* The fast and the tree WordPiece reader agree on json: status, message, every token, encodings. */
static void
check_same_wordpiece(const char *what, const char *json, size_t len)
{
	static const char *const texts[] = {"hello world", "it's 42 caf\xc3\xa9s!!  \n", "[CLS] x",
	"a\"b\\c unaffable"};
	WordPiece  *fast = NULL,
			   *tree = NULL;
	NnError		ef = {0},
				et = {0};
	NnStatus	sf = wordpiece_from_json(&fast, json, len, &ef),
				st = wordpiece_from_json_tree(&tree, json, len, &et);

	CHECK(sf == st && strcmp(ef.msg, et.msg) == 0, "%s: %d \"%s\" against %d \"%s\"", what, sf,
		  ef.msg, st, et.msg);
	if (fast != NULL && tree != NULL)
	{
		int			n = wordpiece_vocab_size(fast);

		CHECK(n == wordpiece_vocab_size(tree), "%s: %d ids against %d", what, n,
			  wordpiece_vocab_size(tree));
		CHECK(wordpiece_unk_id(fast) == wordpiece_unk_id(tree), "%s: unk", what);
		for (int i = 0; i < n && i < wordpiece_vocab_size(tree); i++)
		{
			const char *a = wordpiece_token(fast, i),
					   *b = wordpiece_token(tree, i);

			CHECK((a == NULL) == (b == NULL) && (a == NULL || strcmp(a, b) == 0),
				  "%s: token %d differs", what, i);
			if (a != NULL)
				CHECK(wordpiece_token_id(fast, a) == wordpiece_token_id(tree, a), "%s: id of %s",
					  what, a);
		}
		for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++)
		{
			int32_t		ia[64],
						ib[64];
			int			na = wordpiece_encode(fast, texts[t], strlen(texts[t]), ia, 64),
						nb = wordpiece_encode(tree, texts[t], strlen(texts[t]), ib, 64);

			CHECK(na == nb && na >= 0 && memcmp(ia, ib, sizeof(int32_t) * (size_t) na) == 0,
				  "%s: encoding of \"%s\" differs", what, texts[t]);
		}
	}
	wordpiece_free(fast);
	wordpiece_free(tree);
}

static void
test_wordpiece_paths_agree(void)
{
	static const char *const names[] = {"bert-tiny-random", "distilbert-tiny-random"};
	/* each: an edit of the bert fixture, from -> to */
	static const char *const edits[][2] = {
		{"\"vocab\":{", "\"vocab\":{\"a\\\\b\\/\\t\":30600,"},	/* escapes: the fast path */
		{"\"vocab\":{", "\"vocab\":{\"\\u00e9zz\":30600,"},	/* a \u: cJSON */
		{"\"vocab\":{", "\"vocab\":{\"x\":00,"},	/* a leading 0: cJSON */
		{"\"vocab\":{", "\"vocab\":{\"x\":1.5,"},	/* not an id */
		{"\"vocab\":{", "\"vocab\":{\"x\":16777216,"},	/* out of range */
		{"\"vocab\":{", "\"vocab\":{\"[UNK]\":7,"},	/* a duplicate token */
		{"\"vocab\":{", "\"vocab\":[],\"vocab\":{"},	/* a duplicate key */
		{"\"unk_token\":\"[UNK]\"", "\"unk_token\":\"[NOPE]\""},
		{"\"vocab\":{", "\"vocab\":{,"},	/* not JSON */
	};
	compare_on_fixtures(check_same_wordpiece, names, sizeof(names) / sizeof(names[0]), edits,
						sizeof(edits) / sizeof(edits[0]), "wordpiece edit");
}

/* The template reads the same post-processor with the model skipped or not. */
static void
test_template_without_model(void)
{
	size_t		len,
				elen;
	char	   *json = read_fixture("roberta-tiny-random", &len),
			   *e;
	TokTemplate a,
				b;
	NnError		err;

	if (json == NULL)
		return;
	/* a \u in the model makes the recogniser refuse nothing: it is still plain JSON */
	e = edited(json, len, "\"vocab\": {", "\"vocab\": {\"\\u0120zz\": 5.0, ", &elen);
	CHECK(tok_template_from_json(&a, json, len, &err) == NN_OK, "%s", err.msg);
	CHECK(e != NULL && tok_template_from_json(&b, e, elen, &err) == NN_OK, "%s", err.msg);
	CHECK(memcmp(&a, &b, sizeof(a)) == 0, "templates differ");
	CHECK(a.n_single == 3 && a.n_pair == 6, "roberta's template: %d and %d items", a.n_single,
		  a.n_pair);
	free(e);
	/* not JSON inside the model: refused as before */
	e = edited(json, len, "\"merges\": [", "\"merges\": [,", &elen);
	CHECK(e != NULL && tok_template_from_json(&b, e, elen, &err) == NN_ERR_FORMAT,
		  "a broken model accepted");
	free(e);
	free(json);
}

int
main(void)
{
	RUN_TEST(test_recogniser);
	RUN_TEST(test_members_and_strings);
	RUN_TEST(test_vocab_lists);
	RUN_TEST(test_bpe_paths_agree);
	RUN_TEST(test_unigram_paths_agree);
	RUN_TEST(test_wordpiece_paths_agree);
	RUN_TEST(test_template_without_model);
	return unit_finish();
}
