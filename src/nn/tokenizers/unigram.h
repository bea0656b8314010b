/*
 * hf_unigram.h: the Unigram (SentencePiece-style) tokenizer of Hugging Face
 * `tokenizers`, read from a tokenizer.json -- what T5, mT5, Flan-T5 and
 * other SentencePiece conversions ship.
 *
 * tokenizer.json fields read:
 *
 *   "model":          {"type": "Unigram", "vocab": [[piece, score], ...],
 *                      "unk_id": int (required here), "byte_fallback": bool}
 *   "normalizer":     null or one of, possibly nested in {"type":
 *                     "Sequence", "normalizers": [...]}:
 *                       NFC, NFD, NFKC, NFKD      utf8proc
 *                       Lowercase                 full lowercase mapping
 *                       Strip {strip_left,        Unicode White_Space
 *                              strip_right}
 *                       Replace {pattern: {"String": s} | {"Regex": r},
 *                                content}          r limited to one literal
 *                                                  character with an
 *                                                  optional quantifier
 *                                                  (" {2,}", "x+", "a{2,5}")
 *                       Precompiled {precompiled_charsmap: base64}
 *   "pre_tokenizer":  null, Metaspace {replacement, prepend_scheme
 *                     ("always" | "first" | "never"; legacy
 *                     add_prefix_space: false means "never"), split},
 *                     WhitespaceSplit, or a Sequence of them
 *   "post_processor": null or TemplateProcessing ("single" template:
 *                     special tokens before and after {"Sequence": A})
 *   "added_tokens":   [{"id", "content", "normalized", ...}]
 *
 * Anything else (another model, normalizer or pre-tokenizer type, a regex
 * beyond the supported form) is NN_ERR_FORMAT naming it: a tokenizer that
 * cannot be reproduced is refused rather than approximated.  So are bytes
 * that are not UTF-8 in pieces, added tokens, Replace patterns and
 * contents, the Metaspace replacement, template special tokens and the
 * charsmap's strings (JSON text is UTF-8; cJSON does not check it).
 *
 * Encoding, as `tokenizers` does it:
 *   0. bytes are decoded as UTF-8 the WHATWG way (every maximal invalid
 *      subsequence becomes U+FFFD), so any input is safe
 *   1. added tokens with "normalized": false are found in the raw text
 *      (leftmost-longest) and emit their id; each stretch between them goes
 *      on alone; stretches that are empty (after 2) vanish
 *   2. the normalizer; added tokens with "normalized": true are then found
 *      in the normalized stretch the same way
 *   3. the pre-tokenizer: Metaspace replaces every ' ' with the replacement
 *      (U+2581), prepends one unless the stretch already starts with it
 *      ("first": only for the stretch at offset 0 of the input), and
 *      splits before every replacement character (each piece keeps its
 *      leading U+2581); WhitespaceSplit splits on and drops whitespace
 *   4. the Unigram model per piece: Viterbi over the vocabulary in a byte
 *      trie, scores in double, a character no piece starts with gets the
 *      unknown id at score min(score) - 10, ties keep the earlier
 *      candidate; adjacent unknowns are fused into one token; a token
 *      string missing from the vocabulary is <0xXX> byte pieces when
 *      byte_fallback is on, else the unknown id
 *   5. the post-processor template around the ids (T5: "</s>" after)
 *
 * The Precompiled normalizer is SentencePiece's compiled normalization
 * rule (e.g. nmt_nfkc, what real T5 checkpoints carry).  Its blob, after
 * base64 decoding:
 *
 *   bytes 0..3          T, the trie size in bytes, uint32 little endian
 *   bytes 4..4+T-1      T/4 uint32 LE units of a darts-clone double array
 *   bytes 4+T..end      the replacement strings, each NUL-terminated,
 *                       addressed by byte offset (the trie's values)
 *
 * A unit u encodes: has_leaf = bit 8, value = u & 0x7fffffff (a leaf's
 * payload; leaves have bit 31 set, so they never match a label), label =
 * u & 0x800000ff, offset = (u >> 10) << ((u & 0x200) >> 6).  A lookup of
 * the bytes c_1..c_k starts at p = units[0].offset(), and for each byte
 * does p ^= c; fails unless units[p].label() == c; p ^= units[p].offset();
 * when units[p_before].has_leaf, units[p].value() is a match for the
 * prefix c_1..c_i (the key stops at a NUL byte).  SentencePiece's
 * normalizer takes the longest such prefix at each position of the text;
 * `tokenizers` (and so transformers) instead walks extended grapheme
 * clusters: a cluster shorter than 6 bytes is replaced whole by the string
 * of its *first* (shortest) prefix match, if any; otherwise each of its
 * characters by its own first match or itself.  This file does what
 * `tokenizers` does, since that is what the checkpoints are used with; on
 * the nmt_nfkc map the two differ only for rare multi-character clusters.
 * (Checked against `tokenizers` 0.22.2 with SentencePiece's nmt_nfkc map
 * in T5's layout -- Precompiled, Strip right, Replace " {2,}", then
 * WhitespaceSplit + Metaspace: 2,039 strings, every id and token equal.)
 * Every trie position and string offset is bounds-checked: a hostile
 * charsmap cannot read outside the blob; a value pointing inside a
 * multi-byte character of the strings is no match (`tokenizers` panics).
 *
 * Not reproduced: the lstrip/rstrip/single_word flags of added tokens
 * (T5's are all false); "first" prepending after a normalizer that removed
 * leading characters (the stretch still counts as at offset 0).  Unicode
 * tables are utf8proc's (Unicode 15), `tokenizers` uses Rust crates'.
 */
#ifndef DEPT_NN_HF_UNIGRAM_H
#define DEPT_NN_HF_UNIGRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/nn_common.h"

/* Largest vocabulary accepted (entries). */
#define HFU_MAX_VOCAB (1 << 22)
/* Largest tokenizer.json accepted (bytes). */
#define HFU_MAX_JSON_BYTES ((size_t) 256 << 20)
/* Longest normalized text of len bytes: HFU_MAX_GROWTH * len + HFU_GROWTH_SLACK. */
#define HFU_MAX_GROWTH 64
#define HFU_GROWTH_SLACK 4096

/* hf_unigram_encode flags */
#define HFU_SPECIALS 1			/* apply the post-processor template */
#define HFU_EOS 2				/* make sure the ids end with "</s>" (T5) */

typedef struct HfUnigram HfUnigram;

/* Methods */

/* Read path (a tokenizer.json file). */
NnStatus	hf_unigram_load(HfUnigram **out, const char *path, NnError *err);

/*
 * The same from len bytes of tokenizer.json text; hostile input is safe.
 * The vocab is read straight from the text when it is plain JSON
 * (tokenizers/tok_json.h), else from cJSON's tree.
 */
NnStatus	hf_unigram_from_json(HfUnigram **out, const char *json, size_t len,
								 NnError *err);

/*
 * The same, always through cJSON's tree: the reference the tests and the
 * fuzz harness hold hf_unigram_from_json to.
 */
NnStatus	hf_unigram_from_json_tree(HfUnigram **out, const char *json, size_t len,
									  NnError *err);

/*
 * Whether tokenizer.json's model is {"type": "Unigram", ...}, read by the
 * recogniser of tok_json.h (false too when the text is not the strict JSON
 * it takes): for a family whose own tokenizer is another kind but whose
 * checkpoints may ship this one (multilingual-e5-small: BertModel with
 * XLM-RoBERTa's tokenizer).
 */
bool		hf_unigram_json_is_unigram(const char *json, size_t len);

void		hf_unigram_free(HfUnigram *u);

/*
 * Encode len bytes (any bytes) into at most max_ids ids; returns the count,
 * or -1 when out of memory or when a normalizer makes a stretch of the text
 * longer than HFU_MAX_GROWTH times its length + HFU_GROWTH_SLACK bytes
 * (which only a hostile tokenizer.json does: chained Replace rules with
 * longer contents, or a charsmap with long replacements).  With
 * HFU_SPECIALS the template's special tokens are kept when truncating (the
 * text's first pieces fill the rest); HFU_EOS appends "</s>" unless the
 * template already ends with it.  When tokens is not NULL it receives a
 * malloc'ed NUL-terminated string per id (the piece, the original text of
 * a fused unknown, the special's content); the caller frees each one.
 */
int			hf_unigram_encode(const HfUnigram *u, const char *text, size_t len,
							  unsigned flags, int32_t *ids, char **tokens, int max_ids);

/*
 * Just the normalizer on len bytes: a malloc'ed NUL-terminated string
 * (its length in *out_len), or NULL when out of memory or over the
 * HFU_MAX_GROWTH limit of hf_unigram_encode.
 */
char	   *hf_unigram_normalize(const HfUnigram *u, const char *text, size_t len,
								 size_t *out_len);

/* Number of vocabulary entries (ids 0 .. size - 1, added tokens included). */
int			hf_unigram_vocab_size(const HfUnigram *u);

/* The piece of id, or NULL when id names none. */
const char *hf_unigram_piece(const HfUnigram *u, int32_t id);

/* The id of a piece (exact match), or -1. */
int32_t		hf_unigram_piece_id(const HfUnigram *u, const char *piece);

int32_t		hf_unigram_unk_id(const HfUnigram *u);

/* The id of "</s>", or -1 when the vocabulary has none. */
int32_t		hf_unigram_eos_id(const HfUnigram *u);

#endif							/* DEPT_NN_HF_UNIGRAM_H */
