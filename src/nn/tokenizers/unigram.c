/*
 * hf_unigram.c: the tokenizer.json Unigram tokenizer (contract and format
 * notes in hf_unigram.h).
 *
 * Layout: text helpers (UTF-8, growable buffers), the vocabulary trie, the
 * normalizers, the pre-tokenizers, the Viterbi model, the JSON loader and
 * the encode pipeline.  Each stage works on owned, NUL-terminated, valid
 * UTF-8 strings; the pipeline emits ids as soon as a piece is tokenized
 * and stops reading the text once max_ids is reached (pieces are
 * independent, so the first ids never depend on what follows).
 */
#include "tokenizers/unigram.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <utf8proc.h>

#include "tokenizers/tok_json.h"
#include "base/utf8.h"

#define HFU_UNK_PENALTY 10.0	/* tokenizers' K_UNK_PENALTY */
#define HFU_MAX_PIECE_BYTES 4096
#define HFU_MAX_ADDED 65536

/* ---- text helpers ------------------------------------------------------------ */

typedef struct Buf
{
	char	   *p;
	size_t		len;
	size_t		cap;
	size_t		limit;			/* most bytes it may hold, 0: no limit */
	bool		oom;			/* out of memory, or over the limit */
} Buf;

static bool
buf_reserve(Buf *b, size_t extra)
{
	size_t		need;
	char	   *q;

	if (b->oom)
		return false;
	if (b->limit > 0 && extra > b->limit - b->len)
	{
		b->oom = true;
		return false;
	}
	need = b->len + extra + 1;
	if (need <= b->cap)
		return true;
	if (need < 2 * b->cap)
		need = 2 * b->cap;
	if (need < 32)
		need = 32;
	q = realloc(b->p, need);
	if (q == NULL)
	{
		b->oom = true;
		return false;
	}
	b->p = q;
	b->cap = need;
	return true;
}

static void
buf_add(Buf *b, const void *s, size_t n)
{
	if (!buf_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

/* Encode cp as UTF-8 into out (4 bytes); returns the length. */
static size_t
utf8_put(uint8_t *out, int32_t cp)
{
	utf8proc_ssize_t n = utf8proc_encode_char(cp, out);

	return n > 0 ? (size_t) n : 0;
}

static void
buf_add_cp(Buf *b, int32_t cp)
{
	uint8_t		tmp[4];

	buf_add(b, tmp, utf8_put(tmp, cp));
}

/* Hand the buffer over as a NUL-terminated string (never NULL unless oom). */
static char *
buf_take(Buf *b, size_t *len)
{
	if (!buf_reserve(b, 0))
	{
		free(b->p);
		return NULL;
	}
	b->p[b->len] = '\0';		/* nothing was added to an empty text */
	if (len)
		*len = b->len;
	return b->p;
}

/*
 * Decode one character of valid UTF-8 at s[i] (i < len); returns its byte
 * length and sets *cp.  Only called on strings sanitize() produced.
 */
static size_t
utf8_next(const char *s, size_t len, size_t i, int32_t *cp)
{
	utf8proc_int32_t c;
	utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *) s + i,
										  (utf8proc_ssize_t) (len - i), &c);

	if (n <= 0)
	{
		*cp = 0xFFFD;
		return 1;
	}
	*cp = c;
	return (size_t) n;
}

/*
 * The WHATWG UTF-8 decoder's view of arbitrary bytes, re-encoded: every
 * maximal invalid subsequence becomes U+FFFD (EF BF BD).
 */
static char *
sanitize(const char *text, size_t len, size_t *out_len)
{
	const uint8_t *s = (const uint8_t *) text;
	Buf			b = {0};
	size_t		i = 0;

	buf_reserve(&b, len);
	while (i < len && !b.oom)
	{
		size_t		start = i;
		bool		valid;

		/* a bad sequence stops before the byte that broke it, which is decoded afresh */
		utf8_decode_next(s, len, &i, &valid);
		if (valid)
			buf_add(&b, s + start, i - start);
		else
			buf_add(&b, "\xEF\xBF\xBD", 3);
	}
	return buf_take(&b, out_len);
}

/* Rust's char::is_whitespace: the Unicode White_Space property. */
static bool
is_white_space(int32_t c)
{
	return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 ||
		c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
		c == 0x202F || c == 0x205F || c == 0x3000;
}

/* ---- the vocabulary trie ---------------------------------------------------------- */

/*
 * A byte trie over the pieces: the root's children in a 256-entry table,
 * deeper nodes as first-child / next-sibling lists until they have
 * TRIE_DENSE_AT children, then in a 256-entry table of their own (a
 * 250k-piece multilingual vocabulary has nodes of 100 children, a walk of
 * 50 scattered nodes a lookup as a list).  node id = the piece's id (-1 for
 * inner nodes); a duplicated piece keeps its last id, as the token-to-id
 * map of `tokenizers` does.  Built once by trie_build.
 */
#define TRIE_DENSE_AT 8

typedef struct TrieNode
{
	int32_t		id;
	int32_t		child;			/* first child, or the table's index when dense */
	int32_t		sibling;
	uint8_t		label;
	bool		dense;
} TrieNode;

typedef struct Trie
{
	TrieNode   *node;
	int32_t		n;
	int32_t		cap;
	int32_t		root[256];
	int32_t    *table;			/* n_tables x 256 child ids, -1 for none */
	int32_t		n_tables;
	int32_t		cap_tables;
} Trie;

/* Room for at least want nodes (one allocation when the caller knows the bound). */
static bool
trie_reserve(Trie *t, size_t want)
{
	TrieNode   *q;
	size_t		cap;

	if (want <= (size_t) t->cap)
		return true;
	if (want > INT32_MAX)
		return false;
	cap = t->cap ? 2 * (size_t) t->cap : 1024;
	if (cap < want)
		cap = want;
	if (cap > INT32_MAX)
		cap = INT32_MAX;
	if ((q = realloc(t->node, sizeof(TrieNode) * cap)) == NULL)
		return false;
	t->node = q;
	t->cap = (int32_t) cap;
	return true;
}

/* Give back what trie_reserve took beyond the nodes made. */
static void
trie_shrink(Trie *t)
{
	TrieNode   *q;

	if (t->n > 0 && t->n < t->cap && (q = realloc(t->node, sizeof(TrieNode) * (size_t) t->n)))
	{
		t->node = q;
		t->cap = t->n;
	}
}

static int32_t
trie_new_node(Trie *t, uint8_t label)
{
	if (t->n == t->cap && !trie_reserve(t, (size_t) t->n + 1))
		return -1;
	t->node[t->n] = (TrieNode) {.id = -1, .child = -1, .sibling = -1, .label = label};
	return t->n++;
}

/* The child of node (or of the root when node < 0) labelled c, or -1. */
static inline int32_t
trie_step(const Trie *t, int32_t node, uint8_t c)
{
	int32_t		k;

	if (node < 0)
		return t->root[c];
	if (t->node[node].dense)
		return t->table[(size_t) t->node[node].child * 256 + c];
	for (k = t->node[node].child; k >= 0; k = t->node[k].sibling)
		if (t->node[k].label == c)
			return k;
	return -1;
}

/* Move node's list of children into a table of its own. */
static bool
trie_make_dense(Trie *t, int32_t node)
{
	int32_t    *row;

	if (t->n_tables == t->cap_tables)
	{
		int32_t		cap = t->cap_tables ? 2 * t->cap_tables : 64;
		int32_t    *q = realloc(t->table, sizeof(int32_t) * 256 * (size_t) cap);

		if (q == NULL)
			return false;
		t->table = q;
		t->cap_tables = cap;
	}
	row = t->table + (size_t) t->n_tables * 256;
	for (int c = 0; c < 256; c++)
		row[c] = -1;
	for (int32_t k = t->node[node].child; k >= 0; k = t->node[k].sibling)
		row[t->node[k].label] = k;
	t->node[node].child = t->n_tables++;
	t->node[node].dense = true;
	return true;
}

/* Hang the new node next under node (the root when node < 0) at label c. */
static bool
trie_link(Trie *t, int32_t node, int32_t next, uint8_t c)
{
	int			n_children = 0;

	if (node < 0)
	{
		t->root[c] = next;
		return true;
	}
	if (!t->node[node].dense)
	{
		for (int32_t k = t->node[node].child; k >= 0; k = t->node[k].sibling)
			n_children++;
		if (n_children + 1 >= TRIE_DENSE_AT && !trie_make_dense(t, node))
			return false;
	}
	if (t->node[node].dense)
		t->table[(size_t) t->node[node].child * 256 + c] = next;
	else
	{
		t->node[next].sibling = t->node[node].child;
		t->node[node].child = next;
	}
	return true;
}

/* qsort_r's order of piece indices: by the bytes, then by index. */
static int
piece_order(const void *a, const void *b, void *arg)
{
	const char *const *piece = arg;
	int32_t		i = *(const int32_t *) a,
				j = *(const int32_t *) b;
	int			c = strcmp(piece[i], piece[j]);

	return c != 0 ? c : (i > j) - (i < j);
}

/*
 * The trie of the n pieces (each 1..HFU_MAX_PIECE_BYTES bytes), built in
 * the pieces' sorted order: a piece shares its path with the one before
 * it up to their common prefix, so no lookup is needed and the nodes of a
 * subtree are made together (a 250k vocabulary's pieces come by score,
 * and looking up each one's path was a cache miss a byte).  Equal pieces
 * come by index, so the last id is kept, as insertion in id order did.
 */
static bool
trie_build(Trie *t, const char *const *piece, int n)
{
	int32_t    *order = malloc(sizeof(int32_t) * (size_t) (n > 0 ? n : 1));
	int32_t		path[HFU_MAX_PIECE_BYTES];
	const char *prev = "";

	if (order == NULL)
		return false;
	for (int i = 0; i < n; i++)
		order[i] = i;
	qsort_r(order, (size_t) n, sizeof(int32_t), piece_order, (void *) piece);
	for (int r = 0; r < n; r++)
	{
		const char *key = piece[order[r]];
		size_t		d = 0;

		while (key[d] != '\0' && key[d] == prev[d])
			d++;
		for (; key[d] != '\0'; d++)
		{
			int32_t		parent = d > 0 ? path[d - 1] : -1;
			int32_t		next = trie_new_node(t, (uint8_t) key[d]);

			if (next < 0 || !trie_link(t, parent, next, (uint8_t) key[d]))
			{
				free(order);
				return false;
			}
			path[d] = next;
		}
		t->node[path[d - 1]].id = order[r];
		prev = key;
	}
	free(order);
	return true;
}

/* Exact lookup: the id of key, or -1. */
static int32_t
trie_find(const Trie *t, const char *key, size_t len)
{
	int32_t		node = -1;

	if (len == 0)
		return -1;
	for (size_t i = 0; i < len && (i == 0 || node >= 0); i++)
		node = trie_step(t, node, (uint8_t) key[i]);
	return node >= 0 ? t->node[node].id : -1;
}

/* ---- normalizers ------------------------------------------------------------------ */

typedef enum NormKind
{
	NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_LOWERCASE, NORM_STRIP, NORM_REPLACE,
	NORM_PRECOMPILED
} NormKind;

typedef struct NormOp
{
	NormKind	kind;
	/* Strip */
	bool		left,
				right;
	/* Replace: a literal string, or (regex) one character repeated min..max times */
	char	   *pattern;
	size_t		pattern_len;
	bool		regex;
	int			rep_min,
				rep_max;		/* rep_max < 0: unbounded */
	char	   *content;
	size_t		content_len;
	/* Precompiled */
	uint32_t   *units;
	size_t		n_units;
	char	   *strings;
	size_t		strings_len;
} NormOp;

/* utf8proc normalization forms. */
static char *
norm_unicode(const NormOp *op, const char *s, size_t len, size_t *out_len)
{
	utf8proc_uint8_t *dst = NULL;
	int			opts = UTF8PROC_STABLE;
	utf8proc_ssize_t n;

	switch (op->kind)
	{
		case NORM_NFC:
			opts |= UTF8PROC_COMPOSE;
			break;
		case NORM_NFD:
			opts |= UTF8PROC_DECOMPOSE;
			break;
		case NORM_NFKC:
			opts |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
			break;
		default:
			opts |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
			break;
	}
	if (len == 0)
	{
		char	   *e = calloc(1, 1);

		*out_len = 0;
		return e;
	}
	n = utf8proc_map((const utf8proc_uint8_t *) s, (utf8proc_ssize_t) len, &dst,
					 (utf8proc_option_t) opts);
	if (n < 0)
	{
		/* only UTF8PROC_ERROR_NOMEM is possible on sanitized input */
		free(dst);
		return NULL;
	}
	*out_len = (size_t) n;
	return (char *) dst;
}

/* Full lowercase mapping (Rust's str::to_lowercase for all but final sigma). */
static char *
norm_lowercase(const char *s, size_t len, size_t *out_len)
{
	Buf			b = {0};

	buf_reserve(&b, len);
	for (size_t i = 0; i < len;)
	{
		int32_t		c;

		i += utf8_next(s, len, i, &c);
		if (c == 0x130)
		{
			buf_add(&b, "i\xCC\x87", 3);	/* SpecialCasing: i + combining dot */
			continue;
		}
		buf_add_cp(&b, utf8proc_tolower(c));
	}
	return buf_take(&b, out_len);
}

static char *
norm_strip(const NormOp *op, const char *s, size_t len, size_t *out_len)
{
	size_t		a = 0,
				z = len;
	char	   *r;

	if (op->left)
		while (a < z)
		{
			int32_t		c;
			size_t		n = utf8_next(s, len, a, &c);

			if (!is_white_space(c))
				break;
			a += n;
		}
	if (op->right)
		while (z > a)
		{
			size_t		st = z - 1;
			int32_t		c;

			while (st > a && ((uint8_t) s[st] & 0xC0) == 0x80)
				st--;
			utf8_next(s, len, st, &c);
			if (!is_white_space(c))
				break;
			z = st;
		}
	if ((r = malloc(z - a + 1)) == NULL)
		return NULL;
	memcpy(r, s + a, z - a);
	r[z - a] = '\0';
	*out_len = z - a;
	return r;
}

static char *
norm_replace(const NormOp *op, const char *s, size_t len, size_t limit, size_t *out_len)
{
	Buf			b = {.limit = limit};
	size_t		pl = op->pattern_len;

	buf_reserve(&b, len);
	for (size_t i = 0; i < len;)
	{
		if (!op->regex)
		{
			if (pl > 0 && i + pl <= len && memcmp(s + i, op->pattern, pl) == 0)
			{
				buf_add(&b, op->content, op->content_len);
				i += pl;
				continue;
			}
		}
		else
		{
			/* greedy: a run of the character, at most rep_max at a time */
			size_t		j = i;
			int			run = 0;

			while (j + pl <= len && memcmp(s + j, op->pattern, pl) == 0 &&
				   (op->rep_max < 0 || run < op->rep_max))
			{
				j += pl;
				run++;
			}
			if (run >= op->rep_min && run > 0)
			{
				buf_add(&b, op->content, op->content_len);
				i = j;
				continue;
			}
		}
		{
			int32_t		c;
			size_t		n = utf8_next(s, len, i, &c);

			buf_add(&b, s + i, n);
			i += n;
		}
	}
	return buf_take(&b, out_len);
}

/* darts-clone unit accessors (see hf_unigram.h) */
static inline bool
unit_has_leaf(uint32_t u)
{
	return (u >> 8) & 1;
}

static inline uint32_t
unit_value(uint32_t u)
{
	return u & 0x7FFFFFFFu;
}

static inline uint32_t
unit_label(uint32_t u)
{
	return u & 0x800000FFu;
}

static inline size_t
unit_offset(uint32_t u)
{
	return (size_t) (u >> 10) << ((u & (1u << 9)) >> 6);
}

/*
 * The replacement string of the first (shortest) prefix of key[0..len)
 * found in the charsmap trie, or NULL.  Bounds-checked throughout.
 */
static const char *
charsmap_first(const NormOp *op, const char *key, size_t len, size_t *rep_len)
{
	size_t		pos;

	if (op->n_units == 0)
		return NULL;
	pos = unit_offset(op->units[0]);
	for (size_t i = 0; i < len; i++)
	{
		uint8_t		c = (uint8_t) key[i];
		uint32_t	u;

		if (c == 0)
			break;
		pos ^= c;
		if (pos >= op->n_units)
			return NULL;
		u = op->units[pos];
		if (unit_label(u) != c)
			return NULL;
		pos ^= unit_offset(u);
		if (unit_has_leaf(u))
		{
			size_t		v,
						e;

			if (pos >= op->n_units)
				return NULL;
			v = unit_value(op->units[pos]);
			if (v >= op->strings_len)
				return NULL;	/* `tokenizers` would yield "" past the end */
			if (((uint8_t) op->strings[v] & 0xC0) == 0x80)
				return NULL;	/* mid-character: not UTF-8 (`tokenizers` panics) */
			for (e = v; e < op->strings_len && op->strings[e] != '\0'; e++)
				;
			*rep_len = e - v;
			return op->strings + v;
		}
	}
	return NULL;
}

/* The Precompiled normalizer, grapheme by grapheme as `tokenizers` does it. */
static char *
norm_precompiled(const NormOp *op, const char *s, size_t len, size_t limit, size_t *out_len)
{
	Buf			b = {.limit = limit};
	size_t		g = 0;			/* start of the current grapheme cluster */
	utf8proc_int32_t state = 0;
	int32_t		prev = -1;

	buf_reserve(&b, len);
	for (size_t i = 0; i <= len;)
	{
		int32_t		c = -1;
		size_t		n = 0;
		bool		boundary;

		if (i < len)
			n = utf8_next(s, len, i, &c);
		boundary = i == len || (prev >= 0 && utf8proc_grapheme_break_stateful(prev, c, &state));
		if (boundary && i > g)
		{
			/* the cluster s[g..i): whole if short and mapped, else per character */
			size_t		rl;
			const char *rep = i - g < 6 ? charsmap_first(op, s + g, i - g, &rl) : NULL;

			if (rep != NULL)
				buf_add(&b, rep, rl);
			else
				for (size_t k = g; k < i;)
				{
					int32_t		cc;
					size_t		m = utf8_next(s, len, k, &cc);

					rep = charsmap_first(op, s + k, m, &rl);
					if (rep != NULL)
						buf_add(&b, rep, rl);
					else
						buf_add(&b, s + k, m);
					k += m;
				}
			g = i;
		}
		if (i == len)
			break;
		prev = c;
		i += n;
	}
	return buf_take(&b, out_len);
}

/* One normalizer; the Replace and Precompiled outputs stop at limit bytes (NULL). */
static char *
norm_apply(const NormOp *op, const char *s, size_t len, size_t limit, size_t *out_len)
{
	switch (op->kind)
	{
		case NORM_NFC:
		case NORM_NFD:
		case NORM_NFKC:
		case NORM_NFKD:
			return norm_unicode(op, s, len, out_len);
		case NORM_LOWERCASE:
			return norm_lowercase(s, len, out_len);
		case NORM_STRIP:
			return norm_strip(op, s, len, out_len);
		case NORM_REPLACE:
			return norm_replace(op, s, len, limit, out_len);
		case NORM_PRECOMPILED:
			return norm_precompiled(op, s, len, limit, out_len);
	}
	return NULL;
}

/* ---- the tokenizer ----------------------------------------------------------------- */

typedef enum PreKind
{
	PRE_METASPACE, PRE_WHITESPACE_SPLIT
} PreKind;

typedef enum Prepend
{
	PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER
} Prepend;

typedef struct PreOp
{
	PreKind		kind;
	char		repl[5];		/* Metaspace replacement, UTF-8 */
	size_t		repl_len;
	Prepend		prepend;
	bool		split;
} PreOp;

typedef struct AddedToken
{
	int32_t		id;
	char	   *content;
	size_t		len;
	bool		normalized;
} AddedToken;

typedef struct Special
{
	int32_t		id;
	char	   *token;
} Special;

struct HfUnigram
{
	int32_t		n_vocab;
	char	  **piece;			/* (n_vocab), into piece_bytes */
	char	   *piece_bytes;
	double	   *score;			/* (n_vocab) */
	Trie		trie;
	double		min_score;
	int32_t		unk_id;
	bool		byte_fallback;
	int32_t		byte_id[256];	/* <0xXX> pieces, -1 if absent */
	int32_t		eos_id;
	int32_t		size;			/* one more than the largest id */

	NormOp	   *norm;
	int			n_norm;
	PreOp	   *pre;
	int			n_pre;
	AddedToken *added;
	int			n_added;
	Special    *prefix;			/* the template's specials before A */
	int			n_prefix;
	Special    *suffix;			/* and after */
	int			n_suffix;
};

/* A piece of text moving through the pipeline. */
typedef struct Piece
{
	char	   *s;
	size_t		len;
	bool		origin;			/* starts at offset 0 of the input */
} Piece;

typedef struct PieceList
{
	Piece	   *v;
	int			n;
	int			cap;
	bool		oom;
} PieceList;

/* Append s[0..len) (copied) to l; empty pieces are dropped. */
static void
plist_add(PieceList *l, const char *s, size_t len, bool origin)
{
	char	   *c;

	if (l->oom || len == 0)
		return;
	if (l->n == l->cap)
	{
		int			cap = l->cap ? 2 * l->cap : 8;
		Piece	   *q = realloc(l->v, sizeof(Piece) * (size_t) cap);

		if (q == NULL)
		{
			l->oom = true;
			return;
		}
		l->v = q;
		l->cap = cap;
	}
	if ((c = malloc(len + 1)) == NULL)
	{
		l->oom = true;
		return;
	}
	memcpy(c, s, len);
	c[len] = '\0';
	l->v[l->n++] = (Piece) {.s = c, .len = len, .origin = origin};
}

static void
plist_free(PieceList *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->v[i].s);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* Where ids go; stops accepting at cap. */
typedef struct Emit
{
	int32_t    *ids;
	char	  **tokens;
	int			n;
	int			cap;
	bool		oom;
} Emit;

static bool
emit_full(const Emit *e)
{
	return e->oom || e->n >= e->cap;
}

static void
emit(Emit *e, int32_t id, const char *s, size_t len)
{
	if (emit_full(e))
		return;
	if (e->tokens != NULL)
	{
		char	   *c = malloc(len + 1);

		if (c == NULL)
		{
			e->oom = true;
			return;
		}
		memcpy(c, s, len);
		c[len] = '\0';
		e->tokens[e->n] = c;
	}
	e->ids[e->n++] = id;
}

/* WhitespaceSplit: the runs of non-whitespace of pc, into out. */
static void
whitespace_split(const Piece *pc, PieceList *out)
{
	size_t		i = 0;

	while (i < pc->len)
	{
		size_t		start;
		int32_t		c;

		while (i < pc->len)
		{
			size_t		n = utf8_next(pc->s, pc->len, i, &c);

			if (!is_white_space(c))
				break;
			i += n;
		}
		start = i;
		while (i < pc->len)
		{
			size_t		n = utf8_next(pc->s, pc->len, i, &c);

			if (is_white_space(c))
				break;
			i += n;
		}
		plist_add(out, pc->s + start, i - start, pc->origin && start == 0);
	}
}

/*
 * Metaspace: ' ' -> replacement, one prepended unless already there (per
 * the scheme), then split before every replacement (MergedWithNext).
 */
static void
metaspace(const PreOp *op, const Piece *pc, PieceList *out)
{
	Buf			b = {0};
	size_t		rl = op->repl_len,
				st = 0;
	bool		prepend;

	prepend = !(pc->len >= 1 && (pc->s[0] == ' ' ||
								 (pc->len >= rl && memcmp(pc->s, op->repl, rl) == 0))) &&
		(op->prepend == PREPEND_ALWAYS || (op->prepend == PREPEND_FIRST && pc->origin));
	buf_reserve(&b, pc->len + 16);
	if (prepend)
		buf_add(&b, op->repl, rl);
	for (size_t i = 0; i < pc->len; i++)
		if (pc->s[i] == ' ')
			buf_add(&b, op->repl, rl);
		else
			buf_add(&b, pc->s + i, 1);
	if (b.oom || b.p == NULL)
	{
		free(b.p);
		out->oom = true;
		return;
	}
	if (!op->split)
		plist_add(out, b.p, b.len, pc->origin);
	else
	{
		/* each replacement starts a piece (the empty one before a leading one is dropped) */
		for (size_t i = 0; i + rl <= b.len;)
		{
			if (memcmp(b.p + i, op->repl, rl) == 0)
			{
				plist_add(out, b.p + st, i - st, pc->origin && st == 0);
				st = i;
				i += rl;
			}
			else
				i++;
		}
		plist_add(out, b.p + st, b.len - st, pc->origin && st == 0);
	}
	free(b.p);
}

/* One pre-tokenizer over every piece of in, into out. */
static void
pre_apply(const PreOp *op, const PieceList *in, PieceList *out)
{
	for (int p = 0; p < in->n && !out->oom; p++)
	{
		if (op->kind == PRE_WHITESPACE_SPLIT)
			whitespace_split(&in->v[p], out);
		else
			metaspace(op, &in->v[p], out);
	}
}

/* Viterbi over one pre-tokenized piece; emits its tokens. */
static void
model_apply(const HfUnigram *u, const char *s, size_t size, Emit *e)
{
	typedef struct Best
	{
		double		score;
		int32_t		start;		/* -1: not reached */
		int32_t		id;
	} Best;
	Best	   *best;
	int32_t    *toks;			/* token boundaries, backwards: end, start, id */
	int			nt = 0;
	double		unk_score = u->min_score - HFU_UNK_PENALTY;

	if (size == 0 || emit_full(e))
		return;
	best = malloc(sizeof(Best) * (size + 1));
	toks = malloc(sizeof(int32_t) * 3 * (size + 1));
	if (best == NULL || toks == NULL)
	{
		free(best);
		free(toks);
		e->oom = true;
		return;
	}
	for (size_t i = 0; i <= size; i++)
		best[i] = (Best) {.score = 0.0, .start = -1, .id = 0};

	for (size_t at = 0; at < size;)
	{
		double		here = best[at].score;
		int32_t		c;
		size_t		mblen = utf8_next(s, size, at, &c);
		bool		single = false;
		int32_t		node = -1;

		for (size_t k = at; k < size; k++)
		{
			node = trie_step(&u->trie, node, (uint8_t) s[k]);
			if (node < 0)
				break;
			if (u->trie.node[node].id >= 0)
			{
				int32_t		id = u->trie.node[node].id;
				size_t		end = k + 1;
				double		cand = u->score[id] + here;

				if (best[end].start < 0 || cand > best[end].score)
					best[end] = (Best) {.score = cand, .start = (int32_t) at, .id = id};
				if (end - at == mblen)
					single = true;
			}
		}
		if (!single)
		{
			size_t		end = at + mblen;
			double		cand = unk_score + here;

			if (best[end].start < 0 || cand > best[end].score)
				best[end] = (Best) {.score = cand, .start = (int32_t) at, .id = u->unk_id};
		}
		at += mblen;
	}

	/* backtrack; runs of unknowns are fused into one token */
	for (int32_t end = (int32_t) size; end > 0;)
	{
		int32_t		start = best[end].start;
		int32_t		id = best[end].id;

		if (id == u->unk_id && nt > 0 && toks[3 * (nt - 1) + 2] == u->unk_id)
			toks[3 * (nt - 1) + 1] = start;
		else
		{
			toks[3 * nt] = end;
			toks[3 * nt + 1] = start;
			toks[3 * nt + 2] = id;
			nt++;
		}
		end = start;
	}
	for (int t = nt - 1; t >= 0 && !emit_full(e); t--)
	{
		int32_t		end = toks[3 * t],
					start = toks[3 * t + 1];
		const char *p = s + start;
		size_t		n = (size_t) (end - start);
		int32_t		id = trie_find(&u->trie, p, n);	/* the model's token-to-id map */

		if (id < 0 && u->byte_fallback)
		{
			bool		all = true;

			for (size_t k = 0; k < n; k++)
				all = all && u->byte_id[(uint8_t) p[k]] >= 0;
			if (all)
			{
				for (size_t k = 0; k < n; k++)
				{
					char		name[8];

					snprintf(name, sizeof(name), "<0x%02X>", (unsigned) (uint8_t) p[k]);
					emit(e, u->byte_id[(uint8_t) p[k]], name, strlen(name));
				}
				continue;
			}
		}
		emit(e, id >= 0 ? id : u->unk_id, p, n);
	}
	free(best);
	free(toks);
}

/* Pre-tokenize and tokenize one normalized stretch. */
static void
tokenize_stretch(const HfUnigram *u, const char *s, size_t len, bool origin, Emit *e)
{
	PieceList	cur = {0};

	plist_add(&cur, s, len, origin);
	for (int k = 0; k < u->n_pre && !cur.oom; k++)
	{
		PieceList	next = {0};

		pre_apply(&u->pre[k], &cur, &next);
		plist_free(&cur);
		cur = next;
	}
	if (cur.oom)
		e->oom = true;
	for (int p = 0; p < cur.n && !emit_full(e); p++)
		model_apply(u, cur.v[p].s, cur.v[p].len, e);
	plist_free(&cur);
}

/*
 * The leftmost-longest added token (of the given normalized flag) in
 * s[from..len): its index, with *at its position; -1 when none.
 */
static int
find_added(const HfUnigram *u, const char *s, size_t from, size_t len, bool normalized,
		   size_t *at)
{
	for (size_t i = from; i < len; i++)
	{
		int			bestk = -1;

		for (int k = 0; k < u->n_added; k++)
		{
			const AddedToken *a = &u->added[k];

			if (a->normalized != normalized || a->len > len - i ||
				(bestk >= 0 && a->len <= u->added[bestk].len))
				continue;
			if (memcmp(s + i, a->content, a->len) == 0)
				bestk = k;
		}
		if (bestk >= 0)
		{
			*at = i;
			return bestk;
		}
	}
	return -1;
}

/*
 * Run the normalizers over s; a malloc'ed result or NULL (out of memory, or
 * a stage's output longer than HFU_MAX_GROWTH * len + HFU_GROWTH_SLACK:
 * chained expanding Replace rules grow exponentially, and one rule's
 * content times the text is unbounded, so a hostile tokenizer.json could
 * otherwise make a short text take all memory).  The Unicode forms and
 * Lowercase grow by at most 18x, so only Replace and Precompiled need the
 * limit inside the stage.
 */
static char *
normalize(const HfUnigram *u, const char *s, size_t len, size_t *out_len)
{
	char	   *cur = malloc(len + 1);
	size_t		limit = len < (SIZE_MAX - HFU_GROWTH_SLACK) / HFU_MAX_GROWTH
		? HFU_MAX_GROWTH * len + HFU_GROWTH_SLACK : SIZE_MAX;

	if (cur == NULL)
		return NULL;
	memcpy(cur, s, len);
	cur[len] = '\0';
	*out_len = len;
	for (int k = 0; k < u->n_norm; k++)
	{
		size_t		nl;
		char	   *next = norm_apply(&u->norm[k], cur, *out_len, limit, &nl);

		free(cur);
		if (next != NULL && nl > limit)
		{
			free(next);
			next = NULL;
		}
		if (next == NULL)
			return NULL;
		cur = next;
		*out_len = nl;
	}
	return cur;
}

/* Normalize a raw stretch, split it on normalized added tokens, tokenize. */
static void
encode_stretch(const HfUnigram *u, const char *s, size_t len, bool origin, Emit *e)
{
	size_t		nl,
				pos = 0;
	char	   *n = normalize(u, s, len, &nl);

	if (n == NULL)
	{
		e->oom = true;
		return;
	}
	while (pos < nl && !emit_full(e))
	{
		size_t		at;
		int			k = find_added(u, n, pos, nl, true, &at);
		size_t		end = k >= 0 ? at : nl;

		if (end > pos)
			tokenize_stretch(u, n + pos, end - pos, origin && pos == 0, e);
		if (k < 0)
			break;
		emit(e, u->added[k].id, u->added[k].content, u->added[k].len);
		pos = at + u->added[k].len;
	}
	free(n);
}

int
hf_unigram_encode(const HfUnigram *u, const char *text, size_t len, unsigned flags,
				  int32_t *ids, char **tokens, int max_ids)
{
	Emit		e = {.ids = ids, .tokens = tokens};
	int			n_pre = 0,
				n_suf = 0;
	bool		add_eos;
	char	   *s;
	size_t		sl,
				pos = 0;

	if (u == NULL || ids == NULL || (text == NULL && len > 0))
		return -1;
	if (max_ids <= 0)
		return 0;
	if (flags & HFU_SPECIALS)
	{
		n_pre = u->n_prefix;
		n_suf = u->n_suffix;
	}
	add_eos = (flags & HFU_EOS) && u->eos_id >= 0 &&
		!(n_suf > 0 && u->suffix[n_suf - 1].id == u->eos_id);

	/* the specials always fit; the text fills what remains */
	e.cap = max_ids;
	for (int k = 0; k < n_pre; k++)
		emit(&e, u->prefix[k].id, u->prefix[k].token, strlen(u->prefix[k].token));
	e.cap = max_ids - n_suf - (add_eos ? 1 : 0);
	if (e.cap < e.n)
		e.cap = e.n;

	if ((s = sanitize(text ? text : "", len, &sl)) == NULL)
		e.oom = true;
	while (s != NULL && pos < sl && !emit_full(&e))
	{
		size_t		at;
		int			k = find_added(u, s, pos, sl, false, &at);
		size_t		end = k >= 0 ? at : sl;

		if (end > pos)
			encode_stretch(u, s + pos, end - pos, pos == 0, &e);
		if (k < 0)
			break;
		emit(&e, u->added[k].id, u->added[k].content, u->added[k].len);
		pos = at + u->added[k].len;
	}
	free(s);

	e.cap = max_ids;
	for (int k = 0; k < n_suf; k++)
		emit(&e, u->suffix[k].id, u->suffix[k].token, strlen(u->suffix[k].token));
	if (add_eos)
		emit(&e, u->eos_id, "</s>", 4);	/* eos_id may be an added token's, past piece[] */
	if (e.oom)
	{
		if (tokens != NULL)
			for (int i = 0; i < e.n; i++)
				free(tokens[i]);
		return -1;
	}
	return e.n;
}

char *
hf_unigram_normalize(const HfUnigram *u, const char *text, size_t len, size_t *out_len)
{
	size_t		sl;
	char	   *s = sanitize(text ? text : "", text ? len : 0, &sl);
	char	   *n;

	if (s == NULL)
		return NULL;
	n = normalize(u, s, sl, out_len);
	free(s);
	return n;
}

int
hf_unigram_vocab_size(const HfUnigram *u)
{
	return u->size;
}

const char *
hf_unigram_piece(const HfUnigram *u, int32_t id)
{
	if (id >= 0 && id < u->n_vocab)
		return u->piece[id];
	for (int k = 0; k < u->n_added; k++)
		if (u->added[k].id == id)
			return u->added[k].content;
	return NULL;
}

int32_t
hf_unigram_piece_id(const HfUnigram *u, const char *piece)
{
	size_t		len = strlen(piece);
	int32_t		id = trie_find(&u->trie, piece, len);

	if (id >= 0)
		return id;
	for (int k = 0; k < u->n_added; k++)
		if (u->added[k].len == len && memcmp(u->added[k].content, piece, len) == 0)
			return u->added[k].id;
	return -1;
}

int32_t
hf_unigram_unk_id(const HfUnigram *u)
{
	return u->unk_id;
}

int32_t
hf_unigram_eos_id(const HfUnigram *u)
{
	return u->eos_id;
}

void
hf_unigram_free(HfUnigram *u)
{
	if (u == NULL)
		return;
	free(u->piece);
	free(u->piece_bytes);
	free(u->score);
	free(u->trie.node);
	free(u->trie.table);
	for (int k = 0; k < u->n_norm; k++)
	{
		free(u->norm[k].pattern);
		free(u->norm[k].content);
		free(u->norm[k].units);
		free(u->norm[k].strings);
	}
	free(u->norm);
	free(u->pre);
	for (int k = 0; k < u->n_added; k++)
		free(u->added[k].content);
	free(u->added);
	for (int k = 0; k < u->n_prefix; k++)
		free(u->prefix[k].token);
	free(u->prefix);
	for (int k = 0; k < u->n_suffix; k++)
		free(u->suffix[k].token);
	free(u->suffix);
	free(u);
}

/* ---- loading ------------------------------------------------------------------------ */

/* Is s[0..len) valid UTF-8, i.e. would sanitize() give it back unchanged? */
static bool
valid_utf8(const char *s, size_t len)
{
	return utf8_valid((const uint8_t *) s, len);
}

/* A JSON string's bytes (cJSON strings are NUL-terminated: no embedded NUL). */
static const char *
json_str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A JSON integer in [lo, hi] into *out. */
static bool
json_int(const cJSON *v, long lo, long hi, long *out)
{
	double		d;

	if (!cJSON_IsNumber(v))
		return false;
	d = v->valuedouble;
	if (!(d >= (double) lo && d <= (double) hi) || d != floor(d))
		return false;
	*out = (long) d;
	return true;
}

static bool
json_bool(const cJSON *o, const char *key, bool dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (cJSON_IsBool(v))
		return cJSON_IsTrue(v);
	return dflt;
}

static int
b64_value(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Standard base64 (padding optional) into a malloc'ed buffer; NULL if invalid. */
static uint8_t *
b64_decode(const char *s, size_t *out_len, bool *oom)
{
	size_t		n = strlen(s),
				o = 0;
	uint8_t    *out = malloc(n / 4 * 3 + 3);
	uint32_t	acc = 0;
	int			bits = 0;
	size_t		i;

	*oom = out == NULL;
	if (out == NULL)
		return NULL;
	for (i = 0; i < n && s[i] != '='; i++)
	{
		int			v = b64_value((unsigned char) s[i]);

		if (v < 0)
		{
			free(out);
			return NULL;
		}
		acc = (acc << 6) | (uint32_t) v;
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			out[o++] = (uint8_t) (acc >> bits);
		}
	}
	for (; i < n; i++)
		if (s[i] != '=')
		{
			free(out);
			return NULL;
		}
	if (bits >= 6)
	{
		free(out);
		return NULL;
	}
	*out_len = o;
	return out;
}

/* Parse a Precompiled charsmap blob into op (format in hf_unigram.h). */
static NnStatus
load_charsmap(NormOp *op, const char *b64, NnError *err)
{
	size_t		len;
	bool		oom;
	uint8_t    *blob = b64_decode(b64, &len, &oom);
	uint32_t	trie_bytes;
	size_t		n_units;

	if (blob == NULL)
		return oom ? nn_fail(err, NN_ERR_NOMEM, "out of memory reading a charsmap")
			: nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: precompiled_charsmap is not base64");
	if (len == 0)
	{
		/* an empty rule set: the identity */
		free(blob);
		return NN_OK;
	}
	if (len < 4)
	{
		free(blob);
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: precompiled_charsmap is truncated");
	}
	trie_bytes = (uint32_t) blob[0] | (uint32_t) blob[1] << 8 | (uint32_t) blob[2] << 16 |
		(uint32_t) blob[3] << 24;
	n_units = trie_bytes / 4;
	if (n_units > (len - 4) / 4)
	{
		free(blob);
		return nn_fail(err, NN_ERR_FORMAT,
					   "tokenizer.json: precompiled_charsmap trie of %u bytes exceeds its %zu",
					   trie_bytes, len - 4);
	}
	op->n_units = n_units;
	op->strings_len = len - 4 - 4 * n_units;
	op->units = malloc(sizeof(uint32_t) * (n_units ? n_units : 1));
	op->strings = malloc(op->strings_len + 1);
	if (op->units == NULL || op->strings == NULL)
	{
		free(blob);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory reading a charsmap");
	}
	for (size_t i = 0; i < n_units; i++)
	{
		const uint8_t *p = blob + 4 + 4 * i;

		op->units[i] = (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
			(uint32_t) p[3] << 24;
	}
	memcpy(op->strings, blob + 4 + 4 * n_units, op->strings_len);
	op->strings[op->strings_len] = '\0';
	free(blob);
	if (!valid_utf8(op->strings, op->strings_len))
		return nn_fail(err, NN_ERR_FORMAT,
					   "tokenizer.json: precompiled_charsmap strings are not valid UTF-8");
	return NN_OK;
}

/*
 * A Replace regex of the supported form: one literal character (or a
 * backslash-escaped non-alphanumeric one) and an optional quantifier.
 */
static bool
parse_regex(NormOp *op, const char *re)
{
	const char *p = re;
	const char *meta = ".^$*+?()[]{}|\\";
	size_t		cl;
	char	   *end;

	if (*p == '\\')
	{
		p++;
		/* \s, \d, \w ... are classes, not characters */
		if (*p == '\0' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
			(*p >= 'A' && *p <= 'Z') || (unsigned char) *p >= 0x80)
			return false;
		cl = 1;
	}
	else
	{
		int32_t		c;

		if (*p == '\0' || strchr(meta, *p) != NULL)
			return false;
		cl = utf8_next(p, strlen(p), 0, &c);
	}
	op->pattern = malloc(cl + 1);
	if (op->pattern == NULL)
		return false;
	memcpy(op->pattern, p, cl);
	op->pattern[cl] = '\0';
	op->pattern_len = cl;
	p += cl;
	op->rep_min = 1;
	op->rep_max = 1;
	if (*p == '+')
	{
		op->rep_max = -1;
		p++;
	}
	else if (*p == '{')
	{
		long		a = strtol(p + 1, &end, 10);

		if (end == p + 1 || a < 1 || a > 100000)
			return false;
		p = end;
		op->rep_min = op->rep_max = (int) a;
		if (*p == ',')
		{
			p++;
			if (*p == '}')
				op->rep_max = -1;
			else
			{
				long		b = strtol(p, &end, 10);

				if (end == p || b < a || b > 100000)
					return false;
				op->rep_max = (int) b;
				p = end;
			}
		}
		if (*p != '}')
			return false;
		p++;
	}
	return *p == '\0';
}

/* Add the normalizer described by j (recursing into Sequence). */
static NnStatus
load_normalizer(HfUnigram *u, const cJSON *j, int depth, NnError *err)
{
	const char *type;
	NormOp	   *op;
	NormOp	   *q;

	if (j == NULL || cJSON_IsNull(j))
		return NN_OK;
	type = json_str(j, "type");
	if (type == NULL || depth > 8)
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: a normalizer has no type");
	if (strcmp(type, "Sequence") == 0)
	{
		const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "normalizers");
		const cJSON *it;
		NnStatus	s;

		if (!cJSON_IsArray(list))
			return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: Sequence normalizer has no list");
		cJSON_ArrayForEach(it, list)
			if ((s = load_normalizer(u, it, depth + 1, err)) != NN_OK)
			return s;
		return NN_OK;
	}
	if (u->n_norm >= 64)
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: too many normalizers");
	q = realloc(u->norm, sizeof(NormOp) * (size_t) (u->n_norm + 1));
	if (q == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory reading tokenizer.json");
	u->norm = q;
	op = &u->norm[u->n_norm++];
	memset(op, 0, sizeof(*op));
	if (strcmp(type, "NFC") == 0)
		op->kind = NORM_NFC;
	else if (strcmp(type, "NFD") == 0)
		op->kind = NORM_NFD;
	else if (strcmp(type, "NFKC") == 0)
		op->kind = NORM_NFKC;
	else if (strcmp(type, "NFKD") == 0)
		op->kind = NORM_NFKD;
	else if (strcmp(type, "Lowercase") == 0)
		op->kind = NORM_LOWERCASE;
	else if (strcmp(type, "Strip") == 0)
	{
		const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "strip_left");
		const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "strip_right");

		op->kind = NORM_STRIP;
		if (!cJSON_IsBool(l) || !cJSON_IsBool(r))
			return nn_fail(err, NN_ERR_FORMAT,
						   "tokenizer.json: Strip needs strip_left and strip_right");
		op->left = cJSON_IsTrue(l);
		op->right = cJSON_IsTrue(r);
	}
	else if (strcmp(type, "Replace") == 0)
	{
		const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
		const char *str = json_str(pat, "String");
		const char *re = json_str(pat, "Regex");
		const char *content = json_str(j, "content");

		op->kind = NORM_REPLACE;
		if (content == NULL || (str == NULL && re == NULL))
			return nn_fail(err, NN_ERR_FORMAT,
						   "tokenizer.json: Replace normalizer needs a pattern and a content");
		/* the stages after it expect valid UTF-8 */
		if (!valid_utf8(content, strlen(content)) ||
			!valid_utf8(str ? str : re, strlen(str ? str : re)))
			return nn_fail(err, NN_ERR_FORMAT,
						   "tokenizer.json: Replace pattern or content is not UTF-8");
		if ((op->content = strdup(content)) == NULL)
			return nn_fail(err, NN_ERR_NOMEM, "out of memory reading tokenizer.json");
		op->content_len = strlen(content);
		if (str != NULL)
		{
			if (str[0] == '\0' || (op->pattern = strdup(str)) == NULL)
				return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: empty Replace pattern");
			op->pattern_len = strlen(str);
		}
		else
		{
			op->regex = true;
			if (!parse_regex(op, re))
				return nn_fail(err, NN_ERR_FORMAT,
							   "tokenizer.json: Replace regex \"%.60s\" is not supported "
							   "(one character with an optional quantifier)", re);
		}
	}
	else if (strcmp(type, "Precompiled") == 0)
	{
		const cJSON *cm = cJSON_GetObjectItemCaseSensitive(j, "precompiled_charsmap");

		op->kind = NORM_PRECOMPILED;
		if (cJSON_IsNull(cm) || cm == NULL)
			return NN_OK;
		if (!cJSON_IsString(cm))
			return nn_fail(err, NN_ERR_FORMAT,
						   "tokenizer.json: precompiled_charsmap is not a string");
		return load_charsmap(op, cm->valuestring, err);
	}
	else
		return nn_fail(err, NN_ERR_FORMAT,
					   "tokenizer.json: normalizer \"%.40s\" is not supported", type);
	return NN_OK;
}

/* Add the pre-tokenizer described by j (recursing into Sequence). */
static NnStatus
load_pre_tokenizer(HfUnigram *u, const cJSON *j, int depth, NnError *err)
{
	const char *type;
	PreOp	   *q,
			   *op;

	if (j == NULL || cJSON_IsNull(j))
		return NN_OK;
	type = json_str(j, "type");
	if (type == NULL || depth > 8)
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: a pre_tokenizer has no type");
	if (strcmp(type, "Sequence") == 0)
	{
		const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers");
		const cJSON *it;
		NnStatus	s;

		if (!cJSON_IsArray(list))
			return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: Sequence pre_tokenizer has no list");
		cJSON_ArrayForEach(it, list)
			if ((s = load_pre_tokenizer(u, it, depth + 1, err)) != NN_OK)
			return s;
		return NN_OK;
	}
	if (u->n_pre >= 16)
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: too many pre_tokenizers");
	q = realloc(u->pre, sizeof(PreOp) * (size_t) (u->n_pre + 1));
	if (q == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory reading tokenizer.json");
	u->pre = q;
	op = &u->pre[u->n_pre++];
	memset(op, 0, sizeof(*op));
	if (strcmp(type, "WhitespaceSplit") == 0)
	{
		op->kind = PRE_WHITESPACE_SPLIT;
		return NN_OK;
	}
	if (strcmp(type, "Metaspace") == 0)
	{
		const char *rep = json_str(j, "replacement");
		const char *scheme = json_str(j, "prepend_scheme");
		const cJSON *aps = cJSON_GetObjectItemCaseSensitive(j, "add_prefix_space");
		int32_t		c;

		op->kind = PRE_METASPACE;
		if (rep == NULL || rep[0] == '\0' || utf8_next(rep, strlen(rep), 0, &c) != strlen(rep) ||
			!valid_utf8(rep, strlen(rep)))
			return nn_fail(err, NN_ERR_FORMAT,
						   "tokenizer.json: Metaspace replacement must be one character");
		memcpy(op->repl, rep, strlen(rep));
		op->repl_len = strlen(rep);
		op->prepend = PREPEND_ALWAYS;
		if (scheme != NULL)
		{
			if (strcmp(scheme, "always") == 0)
				op->prepend = PREPEND_ALWAYS;
			else if (strcmp(scheme, "first") == 0)
				op->prepend = PREPEND_FIRST;
			else if (strcmp(scheme, "never") == 0)
				op->prepend = PREPEND_NEVER;
			else
				return nn_fail(err, NN_ERR_FORMAT,
							   "tokenizer.json: Metaspace prepend_scheme \"%.20s\" is unknown", scheme);
		}
		if (cJSON_IsFalse(aps))
			op->prepend = PREPEND_NEVER;
		op->split = json_bool(j, "split", true);
		return NN_OK;
	}
	return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: pre_tokenizer \"%.40s\" is not supported",
				   type);
}

/* Append a template special token (all of its ids) to *list. */
static NnStatus
add_special(Special **list, int *n, const cJSON *specials, const char *name, NnError *err)
{
	const cJSON *sp = cJSON_GetObjectItemCaseSensitive(specials, name);
	const cJSON *ids = cJSON_GetObjectItemCaseSensitive(sp, "ids");
	const cJSON *toks = cJSON_GetObjectItemCaseSensitive(sp, "tokens");
	int			k = 0;
	const cJSON *it;

	if (!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) > 16)
		return nn_fail(err, NN_ERR_FORMAT,
					   "tokenizer.json: template special \"%.40s\" has no ids", name);
	cJSON_ArrayForEach(it, ids)
	{
		long		id;
		const cJSON *t = cJSON_GetArrayItem(toks, k++);
		const char *tok = cJSON_IsString(t) ? t->valuestring : name;
		Special    *q;

		if (!valid_utf8(tok, strlen(tok)))
			return nn_fail(err, NN_ERR_FORMAT,
						   "tokenizer.json: template special \"%.40s\" is not UTF-8", name);

		if (!json_int(it, 0, HFU_MAX_VOCAB + HFU_MAX_ADDED, &id))
			return nn_fail(err, NN_ERR_FORMAT,
						   "tokenizer.json: template special \"%.40s\" has a bad id", name);
		if ((q = realloc(*list, sizeof(Special) * (size_t) (*n + 1))) == NULL)
			return nn_fail(err, NN_ERR_NOMEM, "out of memory reading tokenizer.json");
		*list = q;
		q[*n].id = (int32_t) id;
		if ((q[*n].token = strdup(tok)) == NULL)
			return nn_fail(err, NN_ERR_NOMEM, "out of memory reading tokenizer.json");
		(*n)++;
	}
	return NN_OK;
}

static NnStatus
load_post_processor(HfUnigram *u, const cJSON *j, NnError *err)
{
	const char *type;
	const cJSON *single,
			   *specials,
			   *it;
	bool		seen_a = false;

	if (j == NULL || cJSON_IsNull(j))
		return NN_OK;
	type = json_str(j, "type");
	if (type == NULL || strcmp(type, "TemplateProcessing") != 0)
		return nn_fail(err, NN_ERR_FORMAT,
					   "tokenizer.json: post_processor \"%.40s\" is not supported (TemplateProcessing)",
					   type ? type : "?");
	single = cJSON_GetObjectItemCaseSensitive(j, "single");
	specials = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
	if (!cJSON_IsArray(single))
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: TemplateProcessing has no single template");
	cJSON_ArrayForEach(it, single)
	{
		const cJSON *sq = cJSON_GetObjectItemCaseSensitive(it, "Sequence");
		const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
		NnStatus	s;

		if (sq != NULL)
		{
			if (seen_a)
				return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: template repeats its sequence");
			seen_a = true;
		}
		else if (sp != NULL && json_str(sp, "id") != NULL)
		{
			if (seen_a)
				s = add_special(&u->suffix, &u->n_suffix, specials, json_str(sp, "id"), err);
			else
				s = add_special(&u->prefix, &u->n_prefix, specials, json_str(sp, "id"), err);
			if (s != NN_OK)
				return s;
		}
		else
			return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: unknown template item");
	}
	if (!seen_a)
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: template has no sequence");
	return NN_OK;
}

/*
 * The vocab as plain lists, read from cJSON's tree or, on the fast path,
 * straight from the JSON text (tok_json.h); piece NULL marks an entry that
 * is not [piece, score].
 */
typedef struct UniLists
{
	int			n;
	const char **piece;
	double	   *score;
	char	   *arena;			/* the fast path's decoded strings */
} UniLists;

static void
lists_free(UniLists *l)
{
	free(l->piece);
	free(l->score);
	free(l->arena);
	memset(l, 0, sizeof(*l));
}

static bool
lists_from_tree(UniLists *l, const cJSON *vocab, int n)
{
	const cJSON *it;

	l->piece = calloc((size_t) n, sizeof(char *));
	l->score = calloc((size_t) n, sizeof(double));
	if (l->piece == NULL || l->score == NULL)
		return false;
	cJSON_ArrayForEach(it, vocab)
	{
		const cJSON *p = cJSON_GetArrayItem(it, 0);
		const cJSON *s = cJSON_GetArrayItem(it, 1);

		if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(p) &&
			cJSON_IsNumber(s) && isfinite(s->valuedouble))
		{
			l->piece[l->n] = p->valuestring;
			l->score[l->n] = s->valuedouble;
		}
		l->n++;
	}
	return true;
}

/* A number span of at most 63 bytes as cJSON reads it (strtod); false otherwise. */
static bool
plain_number(const char *json, TokJsonSpan v, double *out)
{
	char		buf[64],
			   *end;

	if (v.end - v.start >= sizeof(buf) || (json[v.start] != '-' && (json[v.start] < '0' ||
																	 json[v.start] > '9')))
		return false;
	memcpy(buf, json + v.start, v.end - v.start);
	buf[v.end - v.start] = '\0';
	*out = strtod(buf, &end);
	return *end == '\0' && isfinite(*out);
}

/* One [piece, score] of plain JSON into l; false to leave the file to cJSON. */
static bool
entry_from_text(UniLists *l, const char *json, TokJsonSpan v, char **arena)
{
	TokJsonIter pair;
	TokJsonSpan k,
				p,
				sc,
				extra;
	long		n;

	if (!tok_json_iter(&pair, json, v) || pair.object ||
		tok_json_next(&pair, &k, &p) != 1 || tok_json_next(&pair, &k, &sc) != 1 ||
		tok_json_next(&pair, &k, &extra) != 0 || !plain_number(json, sc, &l->score[l->n]) ||
		(n = tok_json_string(json, p, *arena)) < 0)
		return false;
	l->piece[l->n++] = *arena;
	*arena += n + 1;
	return true;
}

/*
 * The fast path: model.vocab read from the text, its span in *span; false
 * (l emptied) to go through cJSON.
 */
static bool
lists_from_text(UniLists *l, const char *json, size_t len, TokJsonSpan *span)
{
	TokJsonSpan root,
				model,
				v,
				k;
	TokJsonIter it;
	char	   *arena;
	int			cap = 0,
				r;

	memset(l, 0, sizeof(*l));
	if (!tok_json_root(json, len, &root) || !tok_json_find(json, root, "model", "{", &model) ||
		!tok_json_find(json, model, "vocab", "[", span) ||
		(l->arena = malloc(span->end - span->start)) == NULL)
		return false;
	arena = l->arena;
	tok_json_iter(&it, json, *span);
	while ((r = tok_json_next(&it, &k, &v)) == 1)
	{
		if (l->n == cap)
		{
			void	   *p = realloc(l->piece, sizeof(char *) * (size_t) (cap = cap ? 2 * cap : 4096)),
					   *q = p ? realloc(l->score, sizeof(double) * (size_t) cap) : NULL;

			l->piece = p ? p : l->piece;
			l->score = q ? q : l->score;
			if (p == NULL || q == NULL)
				break;
		}
		if (!entry_from_text(l, json, v, &arena))
			break;
	}
	if (r == 0)
		return true;
	lists_free(l);
	return false;
}

/*
 * Every entry of l into u's pieces (one block of NUL-terminated strings),
 * scores and trie (its nodes allocated once: at most one per piece byte).
 */
static NnStatus
fill_vocab(HfUnigram *u, const UniLists *l, NnError *err)
{
	size_t		bytes = 0,
				at = 0;

	for (int i = 0; i < l->n; i++)
		bytes += l->piece[i] != NULL ? strlen(l->piece[i]) + 1 : 0;
	u->piece = calloc((size_t) l->n, sizeof(char *));
	u->score = malloc(sizeof(double) * (size_t) l->n);
	u->piece_bytes = malloc(bytes + 1);
	if (u->piece == NULL || u->score == NULL || u->piece_bytes == NULL ||
		!trie_reserve(&u->trie, bytes + 1))
		return nn_fail(err, NN_ERR_NOMEM, "out of memory reading tokenizer.json");
	u->n_vocab = l->n;
	u->min_score = INFINITY;
	for (int c = 0; c < 256; c++)
		u->trie.root[c] = -1;
	for (int i = 0; i < l->n; i++)
	{
		const char *p = l->piece[i];
		size_t		pl;

		if (p == NULL)
			return nn_fail(err, NN_ERR_FORMAT,
						   "tokenizer.json: vocab entry %d is not [piece, score]", i);
		pl = strlen(p);
		/* an empty piece (also "\u0000..." as cJSON cuts it) could never be matched or found */
		if (pl == 0 || pl > HFU_MAX_PIECE_BYTES || !valid_utf8(p, pl))
			return nn_fail(err, NN_ERR_FORMAT,
						   "tokenizer.json: vocab entry %d is empty, too long or not UTF-8", i);
		u->piece[i] = memcpy(u->piece_bytes + at, p, pl + 1);
		at += pl + 1;
		u->score[i] = l->score[i];
		if (l->score[i] < u->min_score)
			u->min_score = l->score[i];
	}
	if (!trie_build(&u->trie, (const char *const *) u->piece, l->n))
		return nn_fail(err, NN_ERR_NOMEM, "out of memory reading tokenizer.json");
	trie_shrink(&u->trie);
	return NN_OK;
}

/* fast: the vocab read from the text, or NULL to read it from the tree. */
static NnStatus
load_model(HfUnigram *u, const cJSON *model, const UniLists *fast, NnError *err)
{
	const char *type = json_str(model, "type");
	const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
	const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_id");
	UniLists	tree = {0};
	long		unk_id;
	int			n;
	NnStatus	s;

	if (type == NULL || strcmp(type, "Unigram") != 0)
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: model type \"%.40s\" is not Unigram",
					   type ? type : "?");
	if (fast != NULL)
		n = fast->n;
	else if (!cJSON_IsArray(vocab))
		n = 0;
	else
		n = cJSON_GetArraySize(vocab);
	if (n < 1 || n > HFU_MAX_VOCAB)
		return nn_fail(err, NN_ERR_FORMAT,
					   "tokenizer.json: Unigram vocab must be an array of 1 to %d entries",
					   HFU_MAX_VOCAB);
	if (fast == NULL && !lists_from_tree(&tree, vocab, n))
		s = nn_fail(err, NN_ERR_NOMEM, "out of memory reading tokenizer.json");
	else
		s = fill_vocab(u, fast ? fast : &tree, err);
	lists_free(&tree);
	if (s != NN_OK)
		return s;
	if (!json_int(unk, 0, n - 1, &unk_id))
		return nn_fail(err, NN_ERR_FORMAT,
					   "tokenizer.json: Unigram unk_id must be an id of the vocabulary");
	u->unk_id = (int32_t) unk_id;
	u->byte_fallback = json_bool(model, "byte_fallback", false);
	for (int c = 0; c < 256; c++)
	{
		char		name[8];

		snprintf(name, sizeof(name), "<0x%02X>", (unsigned) c);
		u->byte_id[c] = trie_find(&u->trie, name, strlen(name));
	}
	return NN_OK;
}

static NnStatus
load_added(HfUnigram *u, const cJSON *list, NnError *err)
{
	const cJSON *it;
	int			n;

	if (list == NULL || cJSON_IsNull(list))
		return NN_OK;
	if (!cJSON_IsArray(list) || (n = cJSON_GetArraySize(list)) > HFU_MAX_ADDED)
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: added_tokens is not a short array");
	if (n == 0)
		return NN_OK;
	if ((u->added = calloc((size_t) n, sizeof(AddedToken))) == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory reading tokenizer.json");
	cJSON_ArrayForEach(it, list)
	{
		const char *content = json_str(it, "content");
		long		id;
		AddedToken *a;

		if (content == NULL || !json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), 0,
										 HFU_MAX_VOCAB + HFU_MAX_ADDED, &id) ||
			!valid_utf8(content, strlen(content)))
			return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: added token %d is malformed",
						   u->n_added);
		if (content[0] == '\0')
			continue;
		a = &u->added[u->n_added++];
		a->id = (int32_t) id;
		a->len = strlen(content);
		a->normalized = json_bool(it, "normalized", false);
		if ((a->content = strdup(content)) == NULL)
			return nn_fail(err, NN_ERR_NOMEM, "out of memory reading tokenizer.json");
		if (a->id + 1 > u->size)
			u->size = a->id + 1;
	}
	return NN_OK;
}

/* cJSON's tree of json, with model.vocab emptied when fast lists were read from the text. */
static cJSON *
parse_tree(const char *json, size_t len, bool fast, UniLists *lists)
{
	TokJsonSpan span;
	char	   *blank;
	size_t		blank_len;
	cJSON	   *root;

	if (!fast || !lists_from_text(lists, json, len, &span))
		return cJSON_ParseWithLength(json, len);
	if ((blank = tok_json_without(json, len, &span, 1, &blank_len)) == NULL)
	{
		lists_free(lists);
		return cJSON_ParseWithLength(json, len);
	}
	root = cJSON_ParseWithLength(blank, blank_len);
	free(blank);
	return root;
}

/* The tokenizer of json; fast says whether the vocab may skip cJSON's tree. */
static NnStatus
from_json(HfUnigram **out, const char *json, size_t len, bool fast, NnError *err)
{
	HfUnigram  *u;
	cJSON	   *root;
	NnStatus	s;
	UniLists	lists = {0};

	*out = NULL;
	if (json == NULL || len > HFU_MAX_JSON_BYTES)
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json is missing or too large");
	root = parse_tree(json, len, fast, &lists);
	if (!cJSON_IsObject(root))
	{
		cJSON_Delete(root);
		lists_free(&lists);
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json is not a JSON object");
	}
	if ((u = calloc(1, sizeof(HfUnigram))) == NULL)
	{
		cJSON_Delete(root);
		lists_free(&lists);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory reading tokenizer.json");
	}
	s = load_model(u, cJSON_GetObjectItemCaseSensitive(root, "model"),
				   lists.piece != NULL ? &lists : NULL, err);
	lists_free(&lists);
	if (s ||
		(s = load_normalizer(u, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), 0, err)) ||
		(s = load_pre_tokenizer(u, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), 0,
								err)) ||
		(s = load_post_processor(u, cJSON_GetObjectItemCaseSensitive(root, "post_processor"),
								 err)) ||
		(s = load_added(u, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), err)))
	{
		cJSON_Delete(root);
		hf_unigram_free(u);
		return s;
	}
	cJSON_Delete(root);
	if (u->size < u->n_vocab)
		u->size = u->n_vocab;
	u->eos_id = hf_unigram_piece_id(u, "</s>");
	for (int k = 0; k < u->n_prefix; k++)
		if (u->prefix[k].id >= u->size)
			u->size = u->prefix[k].id + 1;
	for (int k = 0; k < u->n_suffix; k++)
		if (u->suffix[k].id >= u->size)
			u->size = u->suffix[k].id + 1;
	*out = u;
	return NN_OK;
}

bool
hf_unigram_json_is_unigram(const char *json, size_t len)
{
	TokJsonSpan root,
				model,
				type;
	bool		found;

	return json != NULL && tok_json_root(json, len, &root) &&
		tok_json_find(json, root, "model", "{", &model) &&
		tok_json_member(json, model, "type", &found, &type) && found &&
		type.end - type.start == 9 && memcmp(json + type.start, "\"Unigram\"", 9) == 0;
}

NnStatus
hf_unigram_from_json(HfUnigram **out, const char *json, size_t len, NnError *err)
{
	return from_json(out, json, len, true, err);
}

NnStatus
hf_unigram_from_json_tree(HfUnigram **out, const char *json, size_t len, NnError *err)
{
	return from_json(out, json, len, false, err);
}

NnStatus
hf_unigram_load(HfUnigram **out, const char *path, NnError *err)
{
	FILE	   *f;
	char	   *buf = NULL;
	size_t		len = 0,
				cap = 0;
	NnStatus	s;

	*out = NULL;
	if (path == NULL || (f = fopen(path, "rb")) == NULL)
		return nn_fail(err, NN_ERR_IO, "cannot open \"%s\"", path ? path : "(null)");
	for (;;)
	{
		size_t		got;

		if (len == cap)
		{
			char	   *q;

			cap = cap ? 2 * cap : 1 << 16;
			if (cap > HFU_MAX_JSON_BYTES + 1 || (q = realloc(buf, cap)) == NULL)
			{
				fclose(f);
				free(buf);
				return cap > HFU_MAX_JSON_BYTES + 1
					? nn_fail(err, NN_ERR_FORMAT, "\"%s\" is too large", path)
					: nn_fail(err, NN_ERR_NOMEM, "out of memory reading \"%s\"", path);
			}
			buf = q;
		}
		got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f))
	{
		fclose(f);
		free(buf);
		return nn_fail(err, NN_ERR_IO, "cannot read \"%s\"", path);
	}
	fclose(f);
	s = hf_unigram_from_json(out, buf, len, err);
	free(buf);
	return s;
}
