/*
 * wordpiece.h: the BERT WordPiece tokenizer of Hugging Face `tokenizers`.
 *
 * Sources, in order of preference, from a model directory:
 *
 *   tokenizer.json  (the fast tokenizer) with
 *     "model":          {"type": "WordPiece", "vocab": {token: id, ...},
 *                        "unk_token", "continuing_subword_prefix" ("##"),
 *                        "max_input_chars_per_word" (100)}
 *     "normalizer":     {"type": "BertNormalizer", "clean_text",
 *                        "handle_chinese_chars", "strip_accents" (null:
 *                        follows "lowercase"), "lowercase"} or null
 *     "pre_tokenizer":  {"type": "BertPreTokenizer"}
 *     "post_processor": TemplateProcessing ("single": special tokens around
 *                        {"Sequence": A}), BertProcessing ("cls", "sep") or null
 *     "added_tokens":   [{"id", "content", "special", "normalized",
 *                        "single_word", ...}]
 *   vocab.txt       one token per line, id = line number, with
 *                   tokenizer_config.json's do_lower_case (true),
 *                   strip_accents (null), tokenize_chinese_chars (true) and
 *                   the usual [UNK] [CLS] [SEP] [PAD] [MASK] -- what
 *                   transformers' BertTokenizerFast builds from it.
 *
 * Encoding (what `tokenizers` does, step by step):
 *   0. added tokens whose "normalized" is false (BERT's [CLS], [SEP], [MASK],
 *      ...) are matched in the raw text first, leftmost-longest, and emit
 *      their id; the text between matches goes through 1-4
 *   1. BertNormalizer: clean_text drops U+0000, U+FFFD and controls (Cc, Cf,
 *      Co except \t \n \r) and maps whitespace to ' '; handle_chinese_chars
 *      puts spaces around CJK ideographs; strip_accents takes NFD and drops
 *      nonspacing marks (Mn); lowercase is Unicode's full lowercase mapping
 *   2. BertPreTokenizer: split on whitespace (removed), then isolate every
 *      punctuation character (ASCII punctuation or Unicode P*)
 *   3. WordPiece per word: more than max_input_chars_per_word characters ->
 *      unk; else greedy longest-match-first, pieces after the first carrying
 *      the "##" prefix; a word with any unmatched rest -> a single unk
 *   4. the template's specials around the words: [CLS] ... [SEP]
 * Bytes are decoded as the WHATWG UTF-8 decoder does (every maximal invalid
 * subsequence -> U+FFFD, which clean_text then drops), so any bytes are
 * safe input.
 *
 * Truncation keeps the specials: with max_ids ids the output is the
 * template's prefix, the first max_ids - (specials) word pieces and the
 * suffix, as `tokenizers` truncates (LongestFirst, one sequence).  Words
 * past the budget are never normalized or looked up.
 *
 * Differences that remain: Unicode tables come from utf8proc (Unicode 15)
 * while `tokenizers` uses Rust's and older crates' tables, so characters
 * assigned in between may classify differently; added tokens with
 * "normalized": true are not matched separately (WordPiece still finds
 * them when they are whole words of the vocabulary); their lstrip/rstrip
 * flags change nothing here (whitespace emits no ids either way).
 */
#ifndef DEPT_NN_WORDPIECE_H
#define DEPT_NN_WORDPIECE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/nn_common.h"

typedef struct WordPiece WordPiece;

/* Normalizer switches for the vocab.txt path (tokenizer.json carries its own). */
typedef struct WordPieceOptions
{
	bool		lowercase;		/* do_lower_case */
	int			strip_accents;	/* -1: follow lowercase, 0: no, 1: yes */
	bool		chinese_chars;	/* tokenize_chinese_chars */
} WordPieceOptions;

/* Methods */

/* dir/tokenizer.json if present, else dir/vocab.txt (+ tokenizer_config.json). */
NnStatus	wordpiece_load(WordPiece **out, const char *dir, NnError *err);

/*
 * From tokenizer.json text.  The vocab is read straight from the text when
 * it is plain JSON (tokenizers/tok_json.h), else from cJSON's tree.
 */
NnStatus	wordpiece_from_json(WordPiece **out, const char *json, size_t len, NnError *err);

/*
 * The same, always through cJSON's tree: the reference the tests and the
 * fuzz harness hold wordpiece_from_json to.
 */
NnStatus	wordpiece_from_json_tree(WordPiece **out, const char *json, size_t len,
									 NnError *err);

/* From vocab.txt text with the given options (BERT's defaults when opt is NULL). */
NnStatus	wordpiece_from_vocab(WordPiece **out, const char *txt, size_t len,
								 const WordPieceOptions *opt, NnError *err);

/*
 * The vocab.txt options from tokenizer_config.json text (do_lower_case,
 * strip_accents, tokenize_chinese_chars); BERT's defaults for whatever is
 * absent, of another type, or when the text is not JSON.  wordpiece_load
 * reads dir/tokenizer_config.json through this.
 */
void		wordpiece_options_from_json(WordPieceOptions *opt, const char *json, size_t len);

void		wordpiece_free(WordPiece *wp);

/*
 * Tokenize len bytes into at most max_ids ids, specials included.  Returns
 * the count, or -1 when out of memory.
 */
int			wordpiece_encode(const WordPiece *wp, const char *text, size_t len,
							 int32_t *ids, int max_ids);

/* The same without the template's special tokens (for tokenizers/template.h). */
int			wordpiece_encode_text(const WordPiece *wp, const char *text, size_t len,
								  int32_t *ids, int max_ids);

/* One more than the largest id. */
int			wordpiece_vocab_size(const WordPiece *wp);

/* The token of id, or NULL when id names none. */
const char *wordpiece_token(const WordPiece *wp, int id);

/* The id of token, or -1. */
int32_t		wordpiece_token_id(const WordPiece *wp, const char *token);

int32_t		wordpiece_unk_id(const WordPiece *wp);

#endif							/* DEPT_NN_WORDPIECE_H */
