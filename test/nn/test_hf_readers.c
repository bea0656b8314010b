/*
 * test_hf_readers.c: regressions of what the libFuzzer harnesses
 * test/fuzz/fuzz_wordpiece.c and fuzz_hf_config.c found
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

#include "hf_config.h"
#include "wordpiece.h"
#include "unit.h"

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

int
main(void)
{
	RUN_TEST(test_wordpiece_nul_in_word);
	RUN_TEST(test_wordpiece_options);
	RUN_TEST(test_config_model_type);
	return unit_finish();
}
