/*
 * sp_tokenizer.h: the SentencePiece-unigram tokenizer of use-lite.
 *
 * A bit-exact C port of the Tokenizer class of the JavaScript runtime
 * @energetic-ai/embeddings 0.2.0 (itself the tfjs-models Universal Sentence
 * Encoder tokenizer), applied to text decoded the way node's
 * new TextDecoder().decode(bytes) decodes it:
 *
 *   bytes -> UTF-8 decode (WHATWG: leading BOM dropped, each maximal invalid
 *            subsequence -> U+FFFD) -> NFKC -> "\u2581" + text with every
 *            U+0020 replaced by U+2581 (nothing for empty text)
 *         -> Viterbi over a trie of the pieces (ids >= 6), one unknown id 0
 *            per character no piece starts with -> runs of id 0 merged.
 *
 * No BOS/EOS ids are added, no lowercasing, no whitespace collapsing.  The
 * quirks of the original (null scores counted as 0, duplicate pieces won by
 * the last one, the "best == 0" test in the Viterbi) are kept on purpose:
 * sp_tokenizer.c explains each of them.
 */
#ifndef DEPT_NN_SP_TOKENIZER_H
#define DEPT_NN_SP_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "base/nn_common.h"

/* Number of leading vocabulary entries never produced by encode (unk, <s>, ...). */
#define SP_RESERVED_IDS 6
/* Largest vocabulary accepted (entries). */
#define SP_MAX_VOCAB (1 << 18)
/* Largest vocab.json accepted (bytes). */
#define SP_MAX_JSON_BYTES ((size_t) 64 << 20)

typedef struct SpTokenizer SpTokenizer;

/* Methods */

/* Load vocab.json ([[piece, score], ...]) from a file. */
NnStatus	sp_tokenizer_load(SpTokenizer **out, const char *vocab_json_path, NnError *err);

/*
 * Same from a buffer (used by fuzzers): every entry validated, never crashes
 * on hostile input.  Anything but an array of SP_RESERVED_IDS to
 * SP_MAX_VOCAB [non-empty valid UTF-8 string, finite number or null] pairs
 * is NN_ERR_FORMAT.  Duplicated pieces are accepted, the last one winning
 * as in the JS: use-lite's own vocab.json repeats one piece three times.
 */
NnStatus	sp_tokenizer_from_json(SpTokenizer **out, const char *json, size_t len,
								   NnError *err);

/*
 * Encode len bytes (arbitrary, need not be valid UTF-8, may contain NUL)
 * into at most max_ids ids; returns the number written (truncating beyond
 * max_ids), or -1 if memory ran out (or tok/text/ids are NULL where they are
 * needed).  The ids written are always the first ones of the full encoding;
 * only the part of the text needed to fix them is read.
 */
int			sp_tokenizer_encode(const SpTokenizer *tok, const char *text, size_t len,
								int32_t *ids, int max_ids);

/* Number of vocabulary entries (ids are 0 .. size - 1). */
int			sp_tokenizer_vocab_size(const SpTokenizer *tok);

/* The piece of id as a NUL-terminated UTF-8 string; NULL if out of range. */
const char *sp_tokenizer_piece(const SpTokenizer *tok, int id);

void		sp_tokenizer_free(SpTokenizer *tok);

/*
 * The compiled image: tok's arrays in one buffer of image_size bytes
 * (write_image fills it), and a tokenizer that reads them in place from an
 * 8-aligned image (a mapped file), checked first: every index in range,
 * every piece valid UTF-8 with its recorded length, NN_ERR_FORMAT otherwise.
 * The image must outlive the tokenizer; sp_tokenizer_free leaves it alone.
 */
size_t		sp_tokenizer_image_size(const SpTokenizer *tok);
void		sp_tokenizer_write_image(const SpTokenizer *tok, void *image);
NnStatus	sp_tokenizer_from_image(SpTokenizer **out, const void *image, size_t len,
									NnError *err);

#endif							/* DEPT_NN_SP_TOKENIZER_H */
