/*
 * utf8.h: WHATWG UTF-8 decoding, shared by the tokenizers and the adapter
 * format's check of its class names.
 */
#ifndef DEPT_NN_UTF8_H
#define DEPT_NN_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The code point at s[*pos] (pos < len), advancing *pos.  A bad lead byte,
 * or one followed by fewer bytes in their allowed range than it needs,
 * gives one U+FFFD and the byte that broke the sequence is read again;
 * *valid tells whether the bytes were well-formed.
 */
uint32_t	utf8_decode_next(const uint8_t *s, size_t len, size_t *pos, bool *valid);

/* Whether s[0..len) is well-formed UTF-8 (utf8_decode_next finds no bad sequence). */
bool		utf8_valid(const uint8_t *s, size_t len);

#endif							/* DEPT_NN_UTF8_H */
