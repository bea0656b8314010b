/*
 * tok_json.h: a strict, allocation-free JSON recogniser for the large
 * members of a tokenizer.json (a BPE vocab of 50k strings and its merges),
 * so that opening a tokenizer does not build a cJSON node per piece.
 *
 * The readers use it as a fast path that must give the same tokenizer as
 * cJSON would: it accepts a subset of what cJSON accepts (RFC 8259 with
 * only ' ', \t, \n, \r as white space, no byte order mark, nesting at
 * most TOK_JSON_MAX_DEPTH) and whatever it refuses goes through cJSON's
 * tree as before.  tok_json_blanked() then hands cJSON the text with the
 * large values replaced by an empty object or array (and spaces), so the
 * rest of the document is still read and checked by cJSON itself.
 *
 * Strings are decoded only when they hold no \u escape (the other escapes
 * decode as cJSON decodes them); a \u makes the caller fall back.
 */
#ifndef DEPT_NN_TOK_JSON_H
#define DEPT_NN_TOK_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOK_JSON_MAX_DEPTH 64

/* A value's bytes: json[start..end). */
typedef struct TokJsonSpan
{
	size_t		start,
				end;
} TokJsonSpan;

/* Walks the members of an object or the elements of an array. */
typedef struct TokJsonIter
{
	const char *json;
	size_t		pos,
				end;
	bool		object,
				first;
} TokJsonIter;

/*
 * A vocabulary {"token": id, ...} as lists: read from the text by
 * tok_json_vocab, or filled by a reader from cJSON's tree.
 */
typedef struct TokJsonVocab
{
	int			n;
	const char **strs;			/* NUL-terminated */
	size_t	   *lens;
	int32_t    *ids;
} TokJsonVocab;

/* Methods */

/*
 * The span of the root object of json[0..len) (white space before it
 * allowed); false unless it is strict JSON as above.
 */
bool		tok_json_root(const char *json, size_t len, TokJsonSpan *root);

/*
 * The value of the member named key (raw bytes, no escapes) of the object
 * in span.  False when the object is malformed, when any key of it holds
 * a backslash (an escape could spell key), or when key is given twice;
 * *found says whether it is there.
 */
bool		tok_json_member(const char *json, TokJsonSpan obj, const char *key,
							bool *found, TokJsonSpan *value);

/*
 * tok_json_member's value of key when it is there and starts with one of
 * the characters of openers ("{", "[" or both); false otherwise (the
 * readers' fast path then leaves the file to cJSON).
 */
bool		tok_json_find(const char *json, TokJsonSpan obj, const char *key, const char *openers,
						  TokJsonSpan *value);

/*
 * The integer of span when it is written as plain digits (no sign, no
 * leading zero, at most 8 digits) and is at most max; -1 for anything else.
 */
int			tok_json_plain_int(const char *json, TokJsonSpan span, int max);

/* Start walking the object or array of span (false: it is neither). */
bool		tok_json_iter(TokJsonIter *it, const char *json, TokJsonSpan span);

/*
 * The next member (key and value; key NULL for arrays) or element.
 * Returns 1, 0 at the end, -1 when malformed.
 */
int			tok_json_next(TokJsonIter *it, TokJsonSpan *key, TokJsonSpan *value);

/*
 * Decode the string of span (quotes included) into out, NUL-terminated;
 * out needs span length - 1 bytes.  Returns the decoded length, or -1 for
 * a \u escape (or a span that is not a string).
 */
long		tok_json_string(const char *json, TokJsonSpan span, char *out);

/*
 * The members of the object of span into v (empty, its arrays allocated
 * here), each a string tok_json_string decodes (into *arena, which it
 * advances; span's length in bytes is enough for all) and an id that
 * tok_json_plain_int reads as 0..max_id.  False when a member is not so, or
 * out of memory: the reader's fast path then leaves the file to cJSON.
 */
bool		tok_json_vocab(const char *json, TokJsonSpan span, int max_id, TokJsonVocab *v,
						   char **arena);

void		tok_json_vocab_free(TokJsonVocab *v);

/*
 * A copy of json[0..len) (malloc'ed, len bytes) in which each of the n
 * spans (objects or arrays) is "{}" or "[]" followed by spaces; NULL when
 * out of memory.
 */
char	   *tok_json_blanked(const char *json, size_t len, const TokJsonSpan *spans, int n);

/*
 * The same document without the n spans' contents: json[0..len) with each
 * span (objects or arrays, in increasing order, not overlapping) written
 * "{}" or "[]", and nothing in their place; malloc'ed, its length in
 * *out_len, NUL-terminated; NULL when out of memory.  cJSON reads it as it
 * reads tok_json_blanked's, without touching a copy of the large values'
 * bytes (a 250k-piece vocabulary is most of a 10-17 MB file).
 */
char	   *tok_json_without(const char *json, size_t len, const TokJsonSpan *spans, int n,
							 size_t *out_len);

#endif							/* DEPT_NN_TOK_JSON_H */
