/*
 * bpe.h: the byte-level BPE tokenizer of Hugging Face `tokenizers` (GPT-2,
 * RoBERTa, ModernBERT), read from a tokenizer.json.
 *
 * tokenizer.json fields read:
 *
 *   "model":          {"type": "BPE", "vocab": {token: id, ...},
 *                      "merges": ["a b", ...] or [["a", "b"], ...]}; dropout,
 *                      continuing_subword_prefix, end_of_word_suffix must
 *                      be null, byte_fallback and fuse_unk false
 *   "normalizer":     null
 *   "pre_tokenizer":  {"type": "ByteLevel", "add_prefix_space", "use_regex"
 *                      (true)}, alone or as the one entry of a Sequence
 *   "added_tokens":   [{"id", "content", "lstrip", "rstrip", ...}]
 *
 * Anything else is NN_ERR_FORMAT naming it, as is a merge whose parts or
 * result are not in the vocabulary (`tokenizers` refuses those too).  The
 * post-processor (the template of special tokens) is not applied here:
 * tokenizers/template.h does that for every family.
 *
 * Encoding, as `tokenizers` does it:
 *   0. bytes are decoded as UTF-8 the WHATWG way (every maximal invalid
 *      subsequence becomes U+FFFD), so any input is safe
 *   1. added tokens are found in the raw text, leftmost-longest, and emit
 *      their id (lstrip/rstrip also swallow the whitespace before/after);
 *      each stretch between them goes on alone
 *   2. ByteLevel: add_prefix_space puts ' ' before a stretch that does not
 *      start with one; the stretch is split with GPT-2's pattern
 *        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      (\s = White_Space; the classes from utf8proc's categories), and each
 *      piece's UTF-8 bytes become one symbol per byte through GPT-2's
 *      bytes_to_unicode map (printable bytes stand for themselves, the other
 *      68 for U+0100 onwards: ' ' is "Ġ")
 *   3. BPE per piece: repeatedly merge the adjacent pair of lowest merge
 *      rank (leftmost first on ties) until no pair has a rank; a symbol
 *      missing from the vocabulary is dropped (no unk_token)
 * Truncation: at most max_ids ids; text past them is never pre-tokenized.
 */
#ifndef DEPT_NN_BPE_H
#define DEPT_NN_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "base/nn_common.h"

typedef struct Bpe Bpe;

/* Methods */

/* Read path (a tokenizer.json file). */
NnStatus	bpe_load(Bpe **out, const char *path, NnError *err);

/*
 * The same from len bytes of tokenizer.json text; hostile input is safe.
 * The vocab and merges are read straight from the text when it is plain
 * JSON (tokenizers/tok_json.h), else from cJSON's tree.
 */
NnStatus	bpe_from_json(Bpe **out, const char *json, size_t len, NnError *err);

/*
 * The same, always through cJSON's tree: the reference the tests and the
 * fuzz harness hold bpe_from_json to (same status, message and tokenizer).
 */
NnStatus	bpe_from_json_tree(Bpe **out, const char *json, size_t len, NnError *err);

void		bpe_free(Bpe *bpe);

/*
 * Encode len bytes (any bytes) into at most max_ids ids, without special
 * tokens around them.  Returns the count, or -1 when out of memory.
 */
int			bpe_encode(const Bpe *bpe, const char *text, size_t len, int32_t *ids, int max_ids);

/* One more than the largest id (vocabulary and added tokens). */
int			bpe_vocab_size(const Bpe *bpe);

/* The token of id, or NULL when id names none. */
const char *bpe_token(const Bpe *bpe, int32_t id);

/* The id of token (vocabulary or added), or -1. */
int32_t		bpe_token_id(const Bpe *bpe, const char *token);

#endif							/* DEPT_NN_BPE_H */
