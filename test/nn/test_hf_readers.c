/*
 * test_hf_readers.c: regressions of what the libFuzzer harnesses
 * test/fuzz/fuzz_wordpiece.c, fuzz_hf_unigram.c and fuzz_hf_config.c found
 * in the readers of Hugging Face files, and the buffer entry points they
 * call (wordpiece_options_from_json, hf_config_model_type_from_json).
 * Each input is the smallest form of what the fuzzer produced; most of
 * these fail only under SANITIZE=1 (ASan) before the fix.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/hf_config.h"
#include "tokenizers/unigram.h"
#include "tokenizers/wordpiece.h"
#include "unit.h"

static HfUnigram *
unigram(const char *json, NnStatus expect)
{
	HfUnigram  *u = NULL;
	NnError		err;
	NnStatus	s;

	nn_error_clear(&err);
	s = hf_unigram_from_json(&u, json, strlen(json), &err);
	CHECK(s == expect, "status %d, expected %d (%s) for %.80s", (int) s, (int) expect, err.msg, json);
	CHECK((s == NN_OK) == (u != NULL), "tokenizer %p with status %d", (void *) u, (int) s);
	return u;
}

#define UNIGRAM_MODEL "\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0],[\"a\",-1]]}"

/*
 * A word holding a NUL byte (a tokenizer.json without normalizer keeps
 * it) was compared with strncmp, which stops at the NUL: "c\0" matched the
 * token "c" and then read the byte after it, past the vocabulary's arena
 * when "c" is its last token.  FNV-1a puts "c" and "c\0" in one slot of a
 * 64-slot table, so the lookup compares the two.
 */
static void
test_wordpiece_nul_in_word(void)
{
	static const char json[] =
		"{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"[UNK]\":0,\"c\":1}},"
		"\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},\"normalizer\":null}";
	WordPiece  *wp = NULL;
	NnError		err;
	int32_t		ids[8];
	int			n;

	nn_error_clear(&err);
	CHECK(wordpiece_from_json(&wp, json, strlen(json), &err) == NN_OK, "%s", err.msg);
	if (wp == NULL)
		return;
	n = wordpiece_encode(wp, "c\0", 2, ids, 8);
	CHECK(n == 1 && ids[0] == 0, "\"c\\0\" gave %d ids, first %d (expected [UNK] = 0)", n,
		  n > 0 ? ids[0] : -1);
	n = wordpiece_encode(wp, "c c\0c\0\0 c", 9, ids, 8);
	CHECK(n == 3 && ids[0] == 1 && ids[1] == 0 && ids[2] == 1, "got %d ids", n);
	CHECK(wordpiece_token_id(wp, "c") == 1, "token c");
	wordpiece_free(wp);
}

/* tokenizer_config.json text: BERT's defaults for anything absent or not JSON. */
static void
test_wordpiece_options(void)
{
	static const char cased[] =
		"{\"do_lower_case\": false, \"strip_accents\": true, \"tokenize_chinese_chars\": false}";
	static const char mixed[] = "{\"strip_accents\": false, \"do_lower_case\": 1}";
	WordPieceOptions opt;

	wordpiece_options_from_json(&opt, cased, strlen(cased));
	CHECK(!opt.lowercase && opt.strip_accents == 1 && !opt.chinese_chars, "cased options");
	wordpiece_options_from_json(&opt, mixed, strlen(mixed));
	CHECK(opt.lowercase && opt.strip_accents == 0 && opt.chinese_chars, "non-bool is default");
	wordpiece_options_from_json(&opt, "\xff[", 2);
	CHECK(opt.lowercase && opt.strip_accents == -1 && opt.chinese_chars, "garbage: defaults");
	wordpiece_options_from_json(&opt, NULL, 0);
	CHECK(opt.lowercase && opt.strip_accents == -1 && opt.chinese_chars, "no file: defaults");
}

static void
test_config_model_type(void)
{
	char		type[HF_NAME_LEN];
	NnError		err;
	static const char arch[] = "{\"architectures\": [\"BertForMaskedLM\"]}";
	static const char t5[] = "{\"model_type\": \"t5\", \"architectures\": [\"BertModel\"]}";

	nn_error_clear(&err);
	CHECK(hf_config_model_type_from_json(arch, strlen(arch), type, &err) == NN_OK &&
		  strcmp(type, "bert") == 0, "architectures: \"%s\"", type);
	CHECK(hf_config_model_type_from_json(t5, strlen(t5), type, &err) == NN_OK &&
		  strcmp(type, "t5") == 0, "model_type wins: \"%s\"", type);
	CHECK(hf_config_model_type_from_json("{}", 2, type, &err) == NN_OK && type[0] == '\0',
		  "neither: \"%s\"", type);
	CHECK(hf_config_model_type_from_json("[1]", 3, type, &err) == NN_ERR_FORMAT &&
		  type[0] == '\0' && err.msg[0] != '\0', "not an object");
}

/*
 * A normalizer stage given an empty text (Replace, Lowercase, Precompiled)
 * returned its buffer without the terminating NUL: hf_unigram_normalize("")
 * was not a string.
 */
static void
test_unigram_empty_normalized(void)
{
	static const char *const norms[] = {
		"{\"type\":\"Replace\",\"pattern\":{\"String\":\"a\"},\"content\":\"b\"}",
		"{\"type\":\"Lowercase\"}",
		"{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"DAAAAADkAQB4DQAAAAAAgMOpAA==\"}",
		"{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":true}",
	};

	for (size_t i = 0; i < sizeof(norms) / sizeof(norms[0]); i++)
	{
		char		json[512];
		HfUnigram  *u;

		snprintf(json, sizeof(json), "{" UNIGRAM_MODEL ",\"normalizer\":%s}", norms[i]);
		if ((u = unigram(json, NN_OK)) != NULL)
		{
			size_t		len = 99;
			char	   *n = hf_unigram_normalize(u, "", 0, &len);

			CHECK(n != NULL && len == 0 && n[0] == '\0', "%s: \"\" normalized to %zu bytes, first %d",
				  norms[i], len, n ? (int) (uint8_t) n[0] : -1);
			free(n);
			hf_unigram_free(u);
		}
	}
}

/*
 * "</s>" only among the added tokens, with an id past the vocabulary: the
 * HFU_EOS token string was read from piece[eos_id], out of bounds.
 */
static void
test_unigram_eos_added_only(void)
{
	HfUnigram  *u = unigram("{" UNIGRAM_MODEL ",\"added_tokens\":[{\"id\":5,\"content\":\"</s>\"}]}",
							NN_OK);
	int32_t		ids[8];
	char	   *toks[8];
	int			n;

	if (u == NULL)
		return;
	CHECK(hf_unigram_eos_id(u) == 5, "eos %d", (int) hf_unigram_eos_id(u));
	n = hf_unigram_encode(u, "a", 1, HFU_EOS, ids, toks, 8);
	CHECK(n == 2 && ids[0] == 1 && ids[1] == 5, "%d ids", n);
	if (n == 2)
	{
		CHECK(strcmp(toks[0], "a") == 0 && strcmp(toks[1], "</s>") == 0, "tokens %s %s",
			  toks[0], toks[1]);
		free(toks[0]);
		free(toks[1]);
	}
	hf_unigram_free(u);
}

/*
 * Bytes that are not UTF-8 in a Replace pattern or content, or in a
 * template special's token, went into the "valid UTF-8" pipeline: a later
 * Unicode normalizer then failed (encode said out of memory) and the token
 * strings were not UTF-8.  Refused at load now.
 */
static void
test_unigram_replace_not_utf8(void)
{
	static const char *const bad[] = {
		"\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"String\":\"a\"},\"content\":\"\xff\"}",
		"\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xc3\"},\"content\":\"x\"}",
		"\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"\xc3+\"},\"content\":\"x\"}",
		("\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"Sequence\":{\"id\":\"A\"}},"
		 "{\"SpecialToken\":{\"id\":\"\xe2\x82\"}}],\"special_tokens\":{\"\xe2\x82\":{\"ids\":[1]}}}"),
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		char		json[512];

		snprintf(json, sizeof(json), "{" UNIGRAM_MODEL ",%s}", bad[i]);
		hf_unigram_free(unigram(json, NN_ERR_FORMAT));
	}
	/* the same with UTF-8 loads and normalizes */
	{
		HfUnigram  *u = unigram("{" UNIGRAM_MODEL ",\"normalizer\":{\"type\":\"Replace\","
								"\"pattern\":{\"Regex\":\"\xc3\xa9+\"},\"content\":\"e\"}}", NN_OK);
		size_t		len;
		char	   *n = u ? hf_unigram_normalize(u, "caf\xc3\xa9\xc3\xa9!", 8, &len) : NULL;

		CHECK(n != NULL && strcmp(n, "cafe!") == 0, "got %s", n ? n : "(null)");
		free(n);
		hf_unigram_free(u);
	}
}

/*
 * A charsmap whose value points inside a multi-byte character of its
 * strings (the key "x" -> offset 1 of "\xc3\xa9") put a lone continuation
 * byte into the normalized text.  Such a match is ignored now (`tokenizers`
 * panics on it); the same charsmap with offset 0 maps x to é.
 */
static void
test_unigram_charsmap_mid_character(void)
{
	static const char mid[] = "DAAAAADkAQB4DQAAAQAAgMOpAA==",
				whole[] = "DAAAAADkAQB4DQAAAAAAgMOpAA==";
	const char *b64[] = {mid, whole};
	const char *want[] = {"axa", "a\xc3\xa9" "a"};

	for (int i = 0; i < 2; i++)
	{
		char		json[512];
		HfUnigram  *u;

		snprintf(json, sizeof(json),
				 "{" UNIGRAM_MODEL ",\"normalizer\":{\"type\":\"Precompiled\","
				 "\"precompiled_charsmap\":\"%s\"}}", b64[i]);
		if ((u = unigram(json, NN_OK)) != NULL)
		{
			size_t		len;
			char	   *n = hf_unigram_normalize(u, "axa", 3, &len);

			CHECK(n != NULL && strcmp(n, want[i]) == 0, "charsmap %d: \"axa\" gave \"%s\"", i,
				  n ? n : "(null)");
			free(n);
			hf_unigram_free(u);
		}
	}
}

/*
 * Twelve chained Replace "a" -> "aaaaaaaa" rules (an 899-byte
 * tokenizer.json) made encoding one "a" allocate 8^12 bytes.  The
 * normalized text may now grow HFU_MAX_GROWTH-fold (+ HFU_GROWTH_SLACK
 * bytes) at most: encode fails at once instead; moderate expansions work.
 */
static void
test_unigram_growth_limit(void)
{
	char		json[4096];
	size_t		o;
	HfUnigram  *u;
	int32_t		ids[8];
	size_t		len;
	char	   *n;
	char		text[101];

	o = (size_t) snprintf(json, sizeof(json), "{" UNIGRAM_MODEL ",\"normalizer\":"
						  "{\"type\":\"Sequence\",\"normalizers\":[");
	for (int i = 0; i < 12; i++)
		o += (size_t) snprintf(json + o, sizeof(json) - o, "%s{\"type\":\"Replace\",\"pattern\":"
							   "{\"String\":\"a\"},\"content\":\"aaaaaaaa\"}", i ? "," : "");
	snprintf(json + o, sizeof(json) - o, "]}}");
	if ((u = unigram(json, NN_OK)) != NULL)
	{
		CHECK(hf_unigram_encode(u, "a", 1, 0, ids, NULL, 8) == -1, "the blow-up was encoded");
		CHECK(hf_unigram_normalize(u, "a", 1, &len) == NULL, "the blow-up was normalized");
		CHECK(hf_unigram_encode(u, "bcd", 3, 0, ids, NULL, 8) == 1, "a text without a");
		hf_unigram_free(u);
	}
	/* 100 x "a" -> 32 bytes each: 3,200 bytes, within 64 x 100 + 4096 */
	snprintf(json, sizeof(json), "{" UNIGRAM_MODEL ",\"normalizer\":{\"type\":\"Replace\","
			 "\"pattern\":{\"String\":\"a\"},\"content\":\"%s\"}}",
			 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	memset(text, 'a', 100);
	text[100] = '\0';
	if ((u = unigram(json, NN_OK)) != NULL)
	{
		n = hf_unigram_normalize(u, text, 100, &len);
		CHECK(n != NULL && len == 3200, "moderate expansion: %zu bytes", n ? len : 0);
		free(n);
		CHECK(hf_unigram_encode(u, text, 100, 0, ids, NULL, 8) == 8, "moderate expansion encodes");
		hf_unigram_free(u);
	}
}

/*
 * A vocabulary piece that is empty, or that cJSON cuts to "" at a raw or
 * escaped NUL: it was accepted but could never be matched, and
 * hf_unigram_piece_id did not find it.  Refused now (SentencePiece has no
 * empty pieces either).
 */
static void
test_unigram_empty_piece(void)
{
	static const char *const vocabs[] = {
		"[[\"<unk>\",0],[\"\",-1]]",
		"[[\"<unk>\",0],[\"\\u0000x\",-1]]",
	};
	static const char raw[] =
		"{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0],[\"\0\0\x80\",-1]]}}";

	for (size_t i = 0; i < sizeof(vocabs) / sizeof(vocabs[0]); i++)
	{
		char		json[256];

		snprintf(json, sizeof(json), "{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":%s}}",
				 vocabs[i]);
		hf_unigram_free(unigram(json, NN_ERR_FORMAT));
	}
	{
		HfUnigram  *u = NULL;
		NnError		err;

		nn_error_clear(&err);
		CHECK(hf_unigram_from_json(&u, raw, sizeof(raw) - 1, &err) == NN_ERR_FORMAT && u == NULL,
			  "a piece with raw NUL bytes: %s", err.msg);
		hf_unigram_free(u);
	}
}

int
main(void)
{
	RUN_TEST(test_wordpiece_nul_in_word);
	RUN_TEST(test_wordpiece_options);
	RUN_TEST(test_config_model_type);
	RUN_TEST(test_unigram_empty_normalized);
	RUN_TEST(test_unigram_eos_added_only);
	RUN_TEST(test_unigram_replace_not_utf8);
	RUN_TEST(test_unigram_charsmap_mid_character);
	RUN_TEST(test_unigram_growth_limit);
	RUN_TEST(test_unigram_empty_piece);
	return unit_finish();
}
