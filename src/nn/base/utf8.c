/*
 * utf8.c: decoding bytes that may not be valid UTF-8, the way the WHATWG
 * TextDecoder (and so the JavaScript and Hugging Face tokenizers) does
 * (see utf8.h).
 */
#include "base/utf8.h"

/*
 * Decode the code point at s[*pos] as the WHATWG UTF-8 decoder does: a bad
 * lead byte, or a lead byte followed by fewer bytes in their allowed range
 * than it needs, becomes one U+FFFD and the byte that broke the sequence is
 * read again.  *valid tells whether the bytes were well-formed.
 */
uint32_t
utf8_decode_next(const uint8_t *s, size_t len, size_t *pos, bool *valid)
{
	uint32_t	c = s[*pos];
	uint8_t		lo = 0x80,
				hi = 0xBF;
	int			need;
	size_t		p = *pos + 1;

	*valid = true;
	if (c < 0x80)
	{
		*pos = p;
		return c;
	}
	if (c >= 0xC2 && c <= 0xDF)
		need = 1, c &= 0x1F;
	else if (c >= 0xE0 && c <= 0xEF)
	{
		need = 2;
		lo = (c == 0xE0) ? 0xA0 : 0x80;
		hi = (c == 0xED) ? 0x9F : 0xBF;
		c &= 0x0F;
	}
	else if (c >= 0xF0 && c <= 0xF4)
	{
		need = 3;
		lo = (c == 0xF0) ? 0x90 : 0x80;
		hi = (c == 0xF4) ? 0x8F : 0xBF;
		c &= 0x07;
	}
	else
		need = -1;
	for (; need > 0; need--, p++)
	{
		if (p >= len || s[p] < lo || s[p] > hi)
			break;
		c = (c << 6) | (s[p] & 0x3F);
		lo = 0x80;
		hi = 0xBF;
	}
	*pos = p;
	if (need != 0)
	{
		*valid = false;
		return 0xFFFD;
	}
	return c;
}

bool
utf8_valid(const uint8_t *s, size_t len)
{
	bool		valid = true;

	for (size_t pos = 0; pos < len && valid;)
		utf8_decode_next(s, len, &pos, &valid);
	return valid;
}
