/*
 * tok_json.c: strict JSON recogniser and span walker for tokenizer.json's
 * large members (see tok_json.h).
 */
#include "tokenizers/tok_json.h"

#include <stdlib.h>
#include <string.h>

static void
skip_ws(const char *j, size_t *pos, size_t end)
{
	while (*pos < end && (j[*pos] == ' ' || j[*pos] == '\t' || j[*pos] == '\n' || j[*pos] == '\r'))
		(*pos)++;
}

static bool
is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The string at *pos (its opening quote); *escaped says whether it holds a backslash. */
static bool
skip_string(const char *j, size_t *pos, size_t end, bool *escaped)
{
	size_t		i = *pos + 1;

	*escaped = false;
	if (*pos >= end || j[*pos] != '"')
		return false;
	while (i < end)
	{
		unsigned char c = (unsigned char) j[i];

		if (c == '"')
		{
			*pos = i + 1;
			return true;
		}
		if (c < 0x20)
			return false;
		if (c != '\\')
		{
			i++;
			continue;
		}
		*escaped = true;
		if (i + 1 >= end)
			return false;
		c = (unsigned char) j[i + 1];
		if (c == 'u')
		{
			if (i + 6 > end || !is_hex(j[i + 2]) || !is_hex(j[i + 3]) || !is_hex(j[i + 4]) ||
				!is_hex(j[i + 5]))
				return false;
			i += 6;
		}
		else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' ||
				 c == 'r' || c == 't')
			i += 2;
		else
			return false;
	}
	return false;
}

static size_t
skip_digits(const char *j, size_t i, size_t end)
{
	while (i < end && j[i] >= '0' && j[i] <= '9')
		i++;
	return i;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool
skip_number(const char *j, size_t *pos, size_t end)
{
	size_t		i = *pos,
				k;

	if (i < end && j[i] == '-')
		i++;
	if (i >= end || j[i] < '0' || j[i] > '9')
		return false;
	i = j[i] == '0' ? i + 1 : skip_digits(j, i, end);
	if (i < end && j[i] == '.')
	{
		if ((k = skip_digits(j, i + 1, end)) == i + 1)
			return false;
		i = k;
	}
	if (i < end && (j[i] == 'e' || j[i] == 'E'))
	{
		i++;
		if (i < end && (j[i] == '+' || j[i] == '-'))
			i++;
		if ((k = skip_digits(j, i, end)) == i)
			return false;
		i = k;
	}
	*pos = i;
	return true;
}

static bool skip_value(const char *j, size_t *pos, size_t end, int depth);

/* The object or array at *pos, every member checked. */
static bool
skip_container(const char *j, size_t *pos, size_t end, int depth)
{
	bool		object = j[*pos] == '{',
				escaped;
	char		close = object ? '}' : ']';
	size_t		i = *pos + 1;

	if (depth >= TOK_JSON_MAX_DEPTH)
		return false;
	skip_ws(j, &i, end);
	if (i < end && j[i] == close)
	{
		*pos = i + 1;
		return true;
	}
	for (;;)
	{
		if (object)
		{
			if (!skip_string(j, &i, end, &escaped))
				return false;
			skip_ws(j, &i, end);
			if (i >= end || j[i] != ':')
				return false;
			i++;
		}
		if (!skip_value(j, &i, end, depth + 1))
			return false;
		skip_ws(j, &i, end);
		if (i < end && j[i] == close)
		{
			*pos = i + 1;
			return true;
		}
		if (i >= end || j[i] != ',')
			return false;
		i++;
		skip_ws(j, &i, end);
	}
}

/* Any value at *pos (white space before it skipped), leaving *pos just past it. */
static bool
skip_value(const char *j, size_t *pos, size_t end, int depth)
{
	bool		escaped;

	skip_ws(j, pos, end);
	if (*pos >= end)
		return false;
	switch (j[*pos])
	{
		case '{':
		case '[':
			return skip_container(j, pos, end, depth);
		case '"':
			return skip_string(j, pos, end, &escaped);
		case 't':
		case 'n':
			if (end - *pos < 4 || (memcmp(j + *pos, "true", 4) != 0 && memcmp(j + *pos, "null", 4) != 0))
				return false;
			*pos += 4;
			return true;
		case 'f':
			if (end - *pos < 5 || memcmp(j + *pos, "false", 5) != 0)
				return false;
			*pos += 5;
			return true;
		default:
			return skip_number(j, pos, end);
	}
}

bool
tok_json_root(const char *json, size_t len, TokJsonSpan *root)
{
	size_t		pos = 0;

	skip_ws(json, &pos, len);
	if (pos >= len || json[pos] != '{')
		return false;
	root->start = pos;
	if (!skip_container(json, &pos, len, 0))
		return false;
	root->end = pos;
	return true;
}

bool
tok_json_iter(TokJsonIter *it, const char *json, TokJsonSpan span)
{
	if (span.end - span.start < 2 || (json[span.start] != '{' && json[span.start] != '['))
		return false;
	it->json = json;
	it->object = json[span.start] == '{';
	it->pos = span.start + 1;
	it->end = span.end - 1;		/* the closing bracket */
	it->first = true;
	return true;
}

int
tok_json_next(TokJsonIter *it, TokJsonSpan *key, TokJsonSpan *value)
{
	const char *j = it->json;
	bool		escaped;

	skip_ws(j, &it->pos, it->end);
	if (it->pos == it->end)
		return 0;
	if (!it->first)
	{
		if (j[it->pos] != ',')
			return -1;
		it->pos++;
		skip_ws(j, &it->pos, it->end);
	}
	it->first = false;
	if (it->object)
	{
		key->start = it->pos;
		if (!skip_string(j, &it->pos, it->end, &escaped))
			return -1;
		key->end = it->pos;
		skip_ws(j, &it->pos, it->end);
		if (it->pos >= it->end || j[it->pos] != ':')
			return -1;
		it->pos++;
	}
	skip_ws(j, &it->pos, it->end);
	value->start = it->pos;
	if (!skip_value(j, &it->pos, it->end, 1))
		return -1;
	value->end = it->pos;
	return 1;
}

bool
tok_json_member(const char *json, TokJsonSpan obj, const char *key, bool *found,
				TokJsonSpan *value)
{
	TokJsonIter it;
	TokJsonSpan k,
				v;
	size_t		klen = strlen(key);
	int			r;

	*found = false;
	if (!tok_json_iter(&it, json, obj) || !it.object)
		return false;
	while ((r = tok_json_next(&it, &k, &v)) == 1)
	{
		if (memchr(json + k.start, '\\', k.end - k.start) != NULL)
			return false;
		if (k.end - k.start == klen + 2 && memcmp(json + k.start + 1, key, klen) == 0)
		{
			if (*found)
				return false;
			*found = true;
			*value = v;
		}
	}
	return r == 0;
}

bool
tok_json_find(const char *json, TokJsonSpan obj, const char *key, const char *openers,
			  TokJsonSpan *value)
{
	bool		found;

	return tok_json_member(json, obj, key, &found, value) && found &&
		json[value->start] != '\0' && strchr(openers, json[value->start]) != NULL;
}

int
tok_json_plain_int(const char *json, TokJsonSpan span, int max)
{
	int			v = 0;

	if (span.end - span.start > 8 || span.end == span.start ||
		(json[span.start] == '0' && span.end - span.start > 1))
		return -1;
	for (size_t i = span.start; i < span.end; i++)
	{
		if (json[i] < '0' || json[i] > '9')
			return -1;
		v = v * 10 + (json[i] - '0');
	}
	return v <= max ? v : -1;
}

long
tok_json_string(const char *json, TokJsonSpan span, char *out)
{
	static const char from[] = "\"\\/bfnrt",
				to[] = "\"\\/\b\f\n\r\t";
	long		n = 0;

	if (span.end - span.start < 2 || json[span.start] != '"')
		return -1;
	for (size_t i = span.start + 1; i + 1 < span.end; i++)
	{
		const char *esc;

		if (json[i] != '\\')
		{
			out[n++] = json[i];
			continue;
		}
		i++;
		if (json[i] == 'u' || (esc = strchr(from, json[i])) == NULL)
			return -1;
		out[n++] = to[esc - from];
	}
	out[n] = '\0';
	return n;
}

/* Room in v for one more entry; false when out of memory. */
static bool
vocab_grow(TokJsonVocab *v, int *cap)
{
	size_t		c = *cap ? 2 * (size_t) *cap : 4096;
	void	   *p;

	if (v->n < *cap)
		return true;
	if ((p = realloc(v->strs, sizeof(char *) * c)) == NULL)
		return false;
	v->strs = p;
	if ((p = realloc(v->lens, sizeof(size_t) * c)) == NULL)
		return false;
	v->lens = p;
	if ((p = realloc(v->ids, sizeof(int32_t) * c)) == NULL)
		return false;
	v->ids = p;
	*cap = (int) c;
	return true;
}

bool
tok_json_vocab(const char *json, TokJsonSpan span, int max_id, TokJsonVocab *v, char **arena)
{
	TokJsonIter it;
	TokJsonSpan k,
				val;
	int			cap = 0,
				r;

	memset(v, 0, sizeof(*v));
	if (!tok_json_iter(&it, json, span) || !it.object)
		return false;
	while ((r = tok_json_next(&it, &k, &val)) == 1)
	{
		long		n;

		/* an id written as digits only (anything else: cJSON decides) */
		if (!vocab_grow(v, &cap) || (v->ids[v->n] = tok_json_plain_int(json, val, max_id)) < 0 ||
			(n = tok_json_string(json, k, *arena)) < 0)
			break;
		v->strs[v->n] = *arena;
		v->lens[v->n++] = (size_t) n;
		*arena += n + 1;
	}
	if (r == 0)
		return true;
	tok_json_vocab_free(v);
	return false;
}

void
tok_json_vocab_free(TokJsonVocab *v)
{
	free(v->strs);
	free(v->lens);
	free(v->ids);
	memset(v, 0, sizeof(*v));
}

char *
tok_json_blanked(const char *json, size_t len, const TokJsonSpan *spans, int n)
{
	char	   *copy = malloc(len > 0 ? len : 1);

	if (copy == NULL)
		return NULL;
	memcpy(copy, json, len);
	for (int i = 0; i < n; i++)
	{
		TokJsonSpan s = spans[i];

		memset(copy + s.start + 1, ' ', s.end - s.start - 1);
		copy[s.start + 1] = json[s.start] == '{' ? '}' : ']';
	}
	return copy;
}

char *
tok_json_without(const char *json, size_t len, const TokJsonSpan *spans, int n, size_t *out_len)
{
	size_t		keep = len,
				from = 0,
				o = 0;
	char	   *out;

	for (int i = 0; i < n; i++)
		keep -= spans[i].end - spans[i].start - 2;
	if ((out = malloc(keep + 1)) == NULL)
		return NULL;
	for (int i = 0; i < n; i++)
	{
		memcpy(out + o, json + from, spans[i].start + 1 - from);
		o += spans[i].start + 1 - from;
		out[o++] = json[spans[i].start] == '{' ? '}' : ']';
		from = spans[i].end;
	}
	memcpy(out + o, json + from, len - from);
	o += len - from;
	out[o] = '\0';
	*out_len = o;
	return out;
}
