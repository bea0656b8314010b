/*
 * sp_tokenizer.c: SentencePiece-unigram tokenizer of use-lite (see
 * sp_tokenizer.h), a bit-exact port of the JavaScript Tokenizer of
 * @energetic-ai/embeddings 0.2.0 run on node 20 (ICU 78, Unicode 17).
 *
 * What the JavaScript does, and how this file reproduces it:
 *
 * 1. Decoding.  Callers of the JS pass a string; for bytes the reference is
 *    new TextDecoder().decode(bytes): a leading UTF-8 BOM is dropped and
 *    every maximal invalid subsequence becomes U+FFFD (sp_utf8_next).
 *
 * 2. str.normalize("NFKC"), then "\u2581" + str.replace(/ /g, "\u2581")
 *    unless the result is empty.  Only U+0020 becomes U+2581 (NBSP and the
 *    other Unicode spaces are turned into U+0020 by NFKC first); tabs and
 *    newlines stay as they are, nothing is lowercased or collapsed.  NFKC
 *    uses utf8proc for decompositions, combining classes and composition
 *    pairs, plus a small table of what Unicode 15.1-17.0 added (node's ICU
 *    is newer than utf8proc 2.8), checked against node for every code point.
 *
 * 3. Lattice.  The pieces of ids >= 6 sit in a trie over code points; a
 *    duplicated piece keeps the score and id of its last occurrence (the JS
 *    trie overwrites).  From every start position every piece that is a
 *    prefix of the rest is a candidate; if none is, a single-character
 *    unknown candidate (id 0, score 0) is.  Some real scores are JSON null,
 *    which JS arithmetic treats as 0, so null loads as 0.0.
 *
 * 4. Viterbi with the JS comparison: best[] starts at 0 everywhere and a
 *    candidate ending at e replaces the current one when best[e] == 0 or
 *    its score is >= best[e], candidates being offered by increasing start.
 *    Going forward start by start (sp_expand) offers them in the same order
 *    the JS does, so ties and the "== 0" quirk resolve the same way.
 *
 * 5. Backtrack from the end, stepping back by the UTF-16 length of each
 *    chosen piece (the JS uses piece.length), then merge runs of id 0 into
 *    one.  No BOS/EOS.
 *
 * Truncation without reading everything: a position p is a cut when no
 * candidate starts before p and ends after it.  Everything left of a cut is
 * then independent of the text right of it, and the final backtrack passes
 * through every cut (each step is one candidate as long as UTF-16 and code
 * point lengths agree, which holds for every piece of use-lite: that is the
 * "streamable" flag).  So the text is decoded and normalized block by block
 * (blocks end before a character NFKC cannot join to what precedes it),
 * the lattice is expanded start by start, and at every cut the segment
 * since the previous cut is backtracked and emitted.  Once max_ids ids are
 * out, the rest of the text cannot change them and is never read.  Memory
 * holds the window since the last cut, not the whole text.
 */
#include "tokenizers/sentencepiece.h"
#include "base/utf8.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <utf8proc.h>

#define SP_SEP			0x2581	/* U+2581 LOWER ONE EIGHTH BLOCK, the word marker */
#define SP_BLOCK		512		/* code points decoded and normalized at a time */
#define SP_MAX_DECOMP	32		/* longest full decomposition (U+FDFA: 18) fits */
#define SP_CP_MASK		0xFFFFFFu	/* normalized buffer entries: ccc << 24 | cp */

/* One entry of the trie's child map (key and value together: one cache line). */
typedef struct SpSlot
{
	uint64_t	key;			/* parent << 21 | code point */
	int32_t		child;			/* child node, -1 for a free slot */
} SpSlot;

struct SpTokenizer
{
	int			n_pieces;		/* vocabulary entries, ids 0 .. n_pieces - 1 */
	char	   *arena;			/* every piece NUL-terminated, back to back */
	size_t	   *offset;			/* (n_pieces) start of each piece in arena */
	int32_t    *step;			/* (n_pieces) UTF-16 length of each piece */
	int32_t		n_nodes;		/* trie nodes, 0 is the root */
	int32_t    *node_id;		/* (n_nodes) id of the piece ending here, -1 if none */
	double	   *node_score;		/* (n_nodes) score of that piece */
	SpSlot	   *slots;			/* (hmask + 1) open-addressing child map */
	size_t		hmask;
	int			hshift;			/* 64 - log2(hmask + 1), for Fibonacci hashing */
	size_t		max_len;		/* longest trie piece, in code points */
	bool		streamable;		/* backtrack steps equal code point lengths */
	bool		borrowed;		/* the arrays point into a caller's image */
};

/* ---- small helpers ------------------------------------------------------ */

/* Grow *buf (elem-byte items, *cap of them) to hold need items; false on overflow/OOM. */
static bool
sp_reserve(void **buf, size_t *cap, size_t need, size_t elem)
{
	size_t		ncap;
	void	   *p;

	if (need <= *cap)
		return true;
	ncap = *cap < 64 ? 64 : *cap;
	while (ncap < need)
	{
		if (ncap > SIZE_MAX / 2)
			return false;
		ncap *= 2;
	}
	if (ncap > SIZE_MAX / elem)
		return false;
	p = realloc(*buf, ncap * elem);
	if (p == NULL)
		return false;
	*buf = p;
	*cap = ncap;
	return true;
}


/* ---- NFKC --------------------------------------------------------------- */

/*
 * What Unicode 15.1-17.0 changed for NFKC, missing from utf8proc 2.8
 * (Unicode 15.0); derived from node 20.20 and checked by comparing NFKC of
 * every code point alone, after U+0345, before U+093C and decomposed.
 * Newer utf8proc releases agree with these entries, so they stay harmless.
 */
typedef struct SpCccRange
{
	uint32_t	lo,
				hi;
	uint8_t		ccc;
} SpCccRange;

static const SpCccRange sp_new_marks[] = {
	{0x0897, 0x0897, 230}, {0x1ACF, 0x1ADC, 230}, {0x1ADD, 0x1ADD, 220},
	{0x1AE0, 0x1AE5, 230}, {0x1AE6, 0x1AE6, 220}, {0x1AE7, 0x1AEA, 230},
	{0x1AEB, 0x1AEB, 234}, {0x10D69, 0x10D6D, 230}, {0x10EFA, 0x10EFB, 220},
	{0x113CE, 0x113D0, 9}, {0x1612F, 0x1612F, 9}, {0x1E5EE, 0x1E5EE, 230},
	{0x1E5EF, 0x1E5EF, 220}, {0x1E6E3, 0x1E6E3, 230}, {0x1E6E6, 0x1E6E6, 230},
	{0x1E6EE, 0x1E6EF, 230}, {0x1E6F5, 0x1E6F5, 230},
};

/* New primary composites: first + second -> composite (all canonical). */
typedef struct SpPair
{
	uint32_t	first,
				second,
				composite;
} SpPair;

static const SpPair sp_new_pairs[] = {
	{0x105D2, 0x0307, 0x105C9}, {0x105DA, 0x0307, 0x105E4},
	{0x11382, 0x113C9, 0x11383}, {0x11384, 0x113BB, 0x11385},
	{0x1138B, 0x113C2, 0x1138E}, {0x11390, 0x113C9, 0x11391},
	{0x113C2, 0x113B8, 0x113C7}, {0x113C2, 0x113C2, 0x113C5},
	{0x113C2, 0x113C9, 0x113C8}, {0x1611E, 0x1611E, 0x16121},
	{0x1611E, 0x1611F, 0x16123}, {0x1611E, 0x16120, 0x16125},
	{0x1611E, 0x16129, 0x16122}, {0x16121, 0x1611F, 0x16126},
	{0x16121, 0x16120, 0x16128}, {0x16122, 0x1611F, 0x16127},
	{0x16129, 0x1611F, 0x16124}, {0x16D63, 0x16D67, 0x16D69},
	{0x16D67, 0x16D67, 0x16D68}, {0x16D69, 0x16D67, 0x16D6A},
};

#define SP_N_NEW_MARKS (sizeof(sp_new_marks) / sizeof(sp_new_marks[0]))
#define SP_N_NEW_PAIRS (sizeof(sp_new_pairs) / sizeof(sp_new_pairs[0]))

/* Canonical combining class of cp. */
static int
sp_ccc(uint32_t cp)
{
	if (cp < 0x300)
		return 0;
	for (size_t i = 0; cp >= 0x0897 && i < SP_N_NEW_MARKS; i++)
		if (cp >= sp_new_marks[i].lo && cp <= sp_new_marks[i].hi)
			return sp_new_marks[i].ccc;
	return utf8proc_get_property((utf8proc_int32_t) cp)->combining_class;
}

/* New compatibility singletons: outlined Latin letters/digits, U+A7F1 -> S; 0 if none. */
static uint32_t
sp_new_compat(uint32_t cp)
{
	if (cp == 0xA7F1)
		return 'S';
	if (cp >= 0x1CCD6 && cp <= 0x1CCEF)
		return 'A' + (cp - 0x1CCD6);
	if (cp >= 0x1CCF0 && cp <= 0x1CCF9)
		return '0' + (cp - 0x1CCF0);
	return 0;
}

/* The new pair composing to cp, or NULL. */
static const SpPair *
sp_new_pair_of(uint32_t cp)
{
	if (cp < 0x105C9 || cp > 0x16D6A)
		return NULL;
	for (size_t i = 0; i < SP_N_NEW_PAIRS; i++)
		if (sp_new_pairs[i].composite == cp)
			return &sp_new_pairs[i];
	return NULL;
}

/* Full compatibility decomposition of cp into out (SP_MAX_DECOMP); returns its length. */
static int
sp_decompose(uint32_t cp, uint32_t *out)
{
	utf8proc_int32_t buf[SP_MAX_DECOMP];
	const SpPair *pair;
	int			last = 0;
	utf8proc_ssize_t n;

	if (cp < 0xA0)
	{
		out[0] = cp;
		return 1;
	}
	if (sp_new_compat(cp) != 0)
	{
		out[0] = sp_new_compat(cp);
		return 1;
	}
	if (sp_new_pair_of(cp) != NULL)
	{
		uint32_t	seconds[4];
		int			ns = 0,
					nd = 0;

		/* a first element is itself a new composite at most twice in a row */
		while ((pair = sp_new_pair_of(cp)) != NULL && ns < 4)
		{
			seconds[ns++] = pair->second;
			cp = pair->first;
		}
		out[nd++] = cp;
		while (ns > 0)
			out[nd++] = seconds[--ns];
		return nd;
	}
	n = utf8proc_decompose_char((utf8proc_int32_t) cp, buf, SP_MAX_DECOMP,
								UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, &last);
	if (n < 1 || n > SP_MAX_DECOMP)
	{
		out[0] = cp;			/* cannot happen for a valid code point */
		return 1;
	}
	for (utf8proc_ssize_t i = 0; i < n; i++)
		out[i] = (uint32_t) buf[i];
	return (int) n;
}

/* Primary composite of starter l and c, 0 if they do not compose. */
static uint32_t
sp_compose(uint32_t l, uint32_t c)
{
	utf8proc_int32_t pair[2];

	if (c < 0x300)				/* no second element of a pair is below U+0300 */
		return 0;
	for (size_t i = 0; i < SP_N_NEW_PAIRS; i++)
		if (sp_new_pairs[i].first == l && sp_new_pairs[i].second == c)
			return sp_new_pairs[i].composite;
	/* utf8proc has no pair lookup: compose the two-element string instead */
	pair[0] = (utf8proc_int32_t) l;
	pair[1] = (utf8proc_int32_t) c;
	if (utf8proc_normalize_utf32(pair, 2, UTF8PROC_STABLE | UTF8PROC_COMPOSE) == 1)
		return (uint32_t) pair[0];
	return 0;
}

/*
 * Can NFKC never join cp to the text before it?  True for starters that are
 * no second element of any composition and do not decompose into one:
 * ASCII, CJK unified ideographs, Hangul syllables (checked with node over
 * every canonical decomposition).  Blocks are cut just before such a
 * character, so NFKC block by block equals NFKC of the whole text.
 */
static bool
sp_nfkc_boundary(uint32_t cp)
{
	return cp < 0x80 || (cp >= 0x4E00 && cp <= 0x9FFF) ||
		(cp >= 0xAC00 && cp <= 0xD7A3);
}

/* Stable sort of buf[a..b) (ccc << 24 | cp entries) by ccc, via tmp when long. */
static bool
sp_sort_marks(uint32_t *buf, size_t a, size_t b, uint32_t **tmp, size_t *tmp_cap)
{
	size_t		count[257] = {0};

	if (b - a <= 64)
	{
		for (size_t i = a + 1; i < b; i++)
		{
			uint32_t	x = buf[i];
			size_t		j = i;

			for (; j > a && (buf[j - 1] >> 24) > (x >> 24); j--)
				buf[j] = buf[j - 1];
			buf[j] = x;
		}
		return true;
	}
	/* counting sort: long runs of marks must not cost O(n^2) */
	if (!sp_reserve((void **) tmp, tmp_cap, b - a, sizeof(uint32_t)))
		return false;
	for (size_t i = a; i < b; i++)
		count[(buf[i] >> 24) + 1]++;
	for (int k = 1; k < 257; k++)
		count[k] += count[k - 1];
	for (size_t i = a; i < b; i++)
		(*tmp)[count[buf[i] >> 24]++] = buf[i];
	memcpy(buf + a, *tmp, sizeof(uint32_t) * (b - a));
	return true;
}

/* Canonical composition (UAX #15) of buf[0..n) in place; returns the new length. */
static size_t
sp_compose_all(uint32_t *buf, size_t n)
{
	size_t		w = 0;
	size_t		starter = SIZE_MAX;
	int			max_ccc = -1;	/* highest class since the starter */

	for (size_t r = 0; r < n; r++)
	{
		uint32_t	x = buf[r];
		int			ccc = (int) (x >> 24);

		if (starter != SIZE_MAX && ccc > max_ccc)
		{
			uint32_t	comp = sp_compose(buf[starter], x & SP_CP_MASK);

			if (comp != 0)
			{
				buf[starter] = comp;
				continue;
			}
		}
		buf[w] = x;
		if (ccc == 0)
		{
			starter = w;
			max_ccc = -1;
		}
		else if (ccc > max_ccc)
			max_ccc = ccc;
		w++;
	}
	return w;
}

/*
 * NFKC of src[0..n) into *out (ccc << 24 | cp entries, cp in the low bits);
 * returns the length or SIZE_MAX when memory ran out.
 */
static size_t
sp_nfkc(const uint32_t *src, size_t n, uint32_t **out, size_t *out_cap,
		uint32_t **tmp, size_t *tmp_cap)
{
	size_t		len = 0;
	size_t		run;

	for (size_t i = 0; i < n; i++)
	{
		uint32_t	d[SP_MAX_DECOMP];
		int			nd = sp_decompose(src[i], d);

		if (len > SIZE_MAX - SP_MAX_DECOMP ||
			!sp_reserve((void **) out, out_cap, len + SP_MAX_DECOMP, sizeof(uint32_t)))
			return SIZE_MAX;
		for (int k = 0; k < nd; k++)
			(*out)[len++] = ((uint32_t) sp_ccc(d[k]) << 24) | d[k];
	}
	/* canonical ordering: sort every run of non-starters by class */
	run = 0;
	for (size_t i = 0; i <= len; i++)
	{
		if (i < len && ((*out)[i] >> 24) != 0)
			continue;
		if (i - run > 1 && !sp_sort_marks(*out, run, i, tmp, tmp_cap))
			return SIZE_MAX;
		run = i + 1;
	}
	return sp_compose_all(*out, len);
}

/* ---- the trie ----------------------------------------------------------- */

/* Slot of the child map where (parent, cp) is or would go. */
static size_t
sp_slot(const SpTokenizer *tok, uint64_t key)
{
	size_t		i = (size_t) ((key * 0x9E3779B97F4A7C15ULL) >> tok->hshift);

	while (tok->slots[i].child >= 0 && tok->slots[i].key != key)
		i = (i + 1) & tok->hmask;
	return i;
}

/* Child of node along code point cp, -1 if none. */
static inline int32_t
sp_child(const SpTokenizer *tok, int32_t node, uint32_t cp)
{
	return tok->slots[sp_slot(tok, ((uint64_t) node << 21) | cp)].child;
}

/* Insert piece id (valid UTF-8) into the trie; a duplicate overwrites, as in the JS. */
static void
sp_trie_insert(SpTokenizer *tok, int id, double score)
{
	const uint8_t *s = (const uint8_t *) tok->arena + tok->offset[id];
	size_t		len = strlen((const char *) s);
	size_t		pos = 0,
				depth = 0;
	int32_t		node = 0;
	bool		valid;

	while (pos < len)
	{
		uint32_t	cp = utf8_decode_next(s, len, &pos, &valid);
		uint64_t	key = ((uint64_t) node << 21) | cp;
		size_t		slot = sp_slot(tok, key);

		if (tok->slots[slot].child < 0)
		{
			int32_t		child = tok->n_nodes++;

			tok->node_id[child] = -1;
			tok->node_score[child] = 0.0;
			tok->slots[slot].key = key;
			tok->slots[slot].child = child;
		}
		node = tok->slots[slot].child;
		depth++;
	}
	tok->node_id[node] = id;
	tok->node_score[node] = score;
	if (depth > tok->max_len)
		tok->max_len = depth;
}

/* Build the trie of ids >= SP_RESERVED_IDS; total_cps bounds the node count. */
static NnStatus
sp_trie_build(SpTokenizer *tok, const double *scores, size_t total_cps, NnError *err)
{
	size_t		nodes = total_cps + 1;
	size_t		slots = 64;
	int			bits = 6;

	while (slots < 2 * nodes)	/* load factor <= 1/2 */
		slots *= 2, bits++;
	tok->node_id = malloc(sizeof(int32_t) * nodes);
	tok->node_score = malloc(sizeof(double) * nodes);
	tok->slots = malloc(sizeof(SpSlot) * slots);
	if (!tok->node_id || !tok->node_score || !tok->slots)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory building the tokenizer trie");
	for (size_t i = 0; i < slots; i++)
		tok->slots[i].child = -1;
	tok->hmask = slots - 1;
	tok->hshift = 64 - bits;
	tok->n_nodes = 1;
	tok->node_id[0] = -1;
	tok->node_score[0] = 0.0;
	for (int id = SP_RESERVED_IDS; id < tok->n_pieces; id++)
		sp_trie_insert(tok, id, scores[id]);
	return NN_OK;
}

/* ---- loading vocab.json ------------------------------------------------- */

/*
 * Count the values of a JSON text (strings, brackets, commas outside
 * strings), to refuse a huge document before cJSON allocates a node each.
 */
static size_t
sp_json_count_values(const char *s, size_t len)
{
	size_t		n = 0;
	bool		in_string = false;

	for (size_t i = 0; i < len; i++)
	{
		char		c = s[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true, n++;
		else if (c == '[' || c == '{' || c == ',')
			n++;
	}
	return n;
}

/*
 * Check entry i ([piece, score]) and return its piece, score, code point
 * and UTF-16 lengths.  A null score is 0, as JS arithmetic makes it.
 */
static NnStatus
sp_entry_check(const cJSON *e, int i, const char **piece, double *score,
			   size_t *n_cps, size_t *n_utf16, NnError *err)
{
	const cJSON *p,
			   *s;
	size_t		len,
				pos = 0;
	bool		valid;

	if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2)
		return nn_fail(err, NN_ERR_FORMAT, "vocab entry %d is not a [piece, score] pair", i);
	p = e->child;
	s = p->next;
	if (!cJSON_IsString(p) || p->valuestring == NULL || p->valuestring[0] == '\0')
		return nn_fail(err, NN_ERR_FORMAT, "vocab entry %d: piece is not a non-empty string", i);
	if (cJSON_IsNull(s))
		*score = 0.0;
	else if (cJSON_IsNumber(s) && isfinite(s->valuedouble))
		*score = s->valuedouble;
	else
		return nn_fail(err, NN_ERR_FORMAT, "vocab entry %d: score is not a finite number", i);
	*piece = p->valuestring;
	len = strlen(p->valuestring);
	*n_cps = *n_utf16 = 0;
	while (pos < len)
	{
		uint32_t	cp = utf8_decode_next((const uint8_t *) p->valuestring, len, &pos, &valid);

		if (!valid)
			return nn_fail(err, NN_ERR_FORMAT, "vocab entry %d: piece is not valid UTF-8", i);
		(*n_cps)++;
		*n_utf16 += cp >= 0x10000 ? 2 : 1;
	}
	return NN_OK;
}

/* Copy the checked entries of the array root into tok, then build the trie. */
static NnStatus
sp_read_entries(SpTokenizer *tok, const cJSON *root, NnError *err)
{
	const cJSON *e;
	double	   *scores;
	size_t		bytes = 0,
				total_cps = 0;
	int			i = 0;
	NnStatus	st = NN_OK;

	tok->offset = malloc(sizeof(size_t) * tok->n_pieces);
	tok->step = malloc(sizeof(int32_t) * tok->n_pieces);
	scores = malloc(sizeof(double) * tok->n_pieces);
	if (!tok->offset || !tok->step || !scores)
	{
		free(scores);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory loading %d vocab entries", tok->n_pieces);
	}
	tok->streamable = true;
	cJSON_ArrayForEach(e, root)
	{
		const char *piece = NULL;
		size_t		n_cps = 0,
					n_utf16 = 0;

		if ((st = sp_entry_check(e, i, &piece, &scores[i], &n_cps, &n_utf16, err)) != NN_OK)
			goto done;
		tok->offset[i] = bytes;
		tok->step[i] = (int32_t) n_utf16;	/* < SP_MAX_JSON_BYTES */
		bytes += strlen(piece) + 1;
		if (i >= SP_RESERVED_IDS)
			total_cps += n_cps;
		if ((i == 0 || i >= SP_RESERVED_IDS) && n_utf16 != (i == 0 ? 1 : n_cps))
			tok->streamable = false;
		i++;
	}
	if ((tok->arena = malloc(bytes)) == NULL)
	{
		st = nn_fail(err, NN_ERR_NOMEM, "out of memory loading the vocab pieces");
		goto done;
	}
	i = 0;
	cJSON_ArrayForEach(e, root)
	{
		strcpy(tok->arena + tok->offset[i], e->child->valuestring);
		i++;
	}
	st = sp_trie_build(tok, scores, total_cps, err);
done:
	free(scores);
	return st;
}

NnStatus
sp_tokenizer_from_json(SpTokenizer **out, const char *json, size_t len, NnError *err)
{
	SpTokenizer *tok;
	cJSON	   *root;
	const char *end = NULL;
	NnStatus	st;
	int			n;

	if (out == NULL)
		return nn_fail(err, NN_ERR_ARG, "no place for the tokenizer");
	*out = NULL;
	if (json == NULL || len == 0)
		return nn_fail(err, NN_ERR_FORMAT, "vocab.json is empty");
	if (len > SP_MAX_JSON_BYTES ||
		sp_json_count_values(json, len) > 4 * (size_t) SP_MAX_VOCAB + 64)
		return nn_fail(err, NN_ERR_FORMAT, "vocab.json is too large (at most %d entries)",
					   SP_MAX_VOCAB);
	root = cJSON_ParseWithLengthOpts(json, len, &end, false);
	if (root == NULL)
		return nn_fail(err, NN_ERR_FORMAT, "vocab.json is not valid JSON");
	for (; end != NULL && end < json + len; end++)
		if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r')
		{
			cJSON_Delete(root);
			return nn_fail(err, NN_ERR_FORMAT, "vocab.json has data after its array");
		}
	n = cJSON_IsArray(root) ? cJSON_GetArraySize(root) : -1;
	if (n < SP_RESERVED_IDS || n > SP_MAX_VOCAB)
	{
		cJSON_Delete(root);
		return nn_fail(err, NN_ERR_FORMAT,
					   "vocab.json must be an array of %d to %d [piece, score] entries",
					   SP_RESERVED_IDS, SP_MAX_VOCAB);
	}
	if ((tok = calloc(1, sizeof(SpTokenizer))) == NULL)
	{
		cJSON_Delete(root);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory loading the tokenizer");
	}
	tok->n_pieces = n;
	st = sp_read_entries(tok, root, err);
	cJSON_Delete(root);
	if (st != NN_OK)
	{
		sp_tokenizer_free(tok);
		return st;
	}
	*out = tok;
	return NN_OK;
}

NnStatus
sp_tokenizer_load(SpTokenizer **out, const char *vocab_json_path, NnError *err)
{
	FILE	   *f;
	char	   *buf;
	long		size;
	size_t		got;
	NnStatus	st;

	if (out == NULL || vocab_json_path == NULL)
		return nn_fail(err, NN_ERR_ARG, "no vocab.json path");
	*out = NULL;
	if ((f = fopen(vocab_json_path, "rb")) == NULL)
		return nn_fail(err, NN_ERR_IO, "could not open \"%s\": %s", vocab_json_path,
					   strerror(errno));
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
	{
		fclose(f);
		return nn_fail(err, NN_ERR_IO, "could not read \"%s\"", vocab_json_path);
	}
	if ((size_t) size > SP_MAX_JSON_BYTES)
	{
		fclose(f);
		return nn_fail(err, NN_ERR_FORMAT, "\"%s\" is too large", vocab_json_path);
	}
	if ((buf = malloc((size_t) size + 1)) == NULL)
	{
		fclose(f);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory reading \"%s\"", vocab_json_path);
	}
	got = fread(buf, 1, (size_t) size, f);
	fclose(f);
	if (got != (size_t) size)
	{
		free(buf);
		return nn_fail(err, NN_ERR_IO, "could not read \"%s\"", vocab_json_path);
	}
	st = sp_tokenizer_from_json(out, buf, got, err);
	free(buf);
	return st;
}

/* ---- encoding ----------------------------------------------------------- */

/* State of one sp_tokenizer_encode call. */
typedef struct SpEncoder
{
	const SpTokenizer *tok;
	const uint8_t *text;
	size_t		len;
	size_t		pos;			/* next byte of text to decode */
	bool		done;			/* every byte decoded */
	bool		prefixed;		/* the leading U+2581 is in the window */

	uint32_t   *raw;			/* (raw_cap) one decoded block */
	uint32_t   *norm;			/* (norm_cap) its NFKC */
	uint32_t   *tmp;			/* (tmp_cap) sort scratch */
	size_t		raw_cap,
				norm_cap,
				tmp_cap;

	/* the window: symbol k sits between absolute positions base + k and base + k + 1 */
	uint32_t   *sym;			/* (cap) normalized code points, spaces as U+2581 */
	double	   *best;			/* (cap + 1) best path score ending at position base + k */
	int32_t    *words;			/* (cap + 1) last id of that path */
	int32_t    *back;			/* (cap + 1) backtrack scratch */
	size_t		cap,
				nsym,
				base;
	size_t		seg;			/* last cut (absolute); ids left of it are out */
	size_t		next;			/* next start position to expand (absolute) */
	size_t		reach;			/* furthest end of any candidate so far (absolute) */

	int32_t    *ids;			/* (max_ids) output */
	int			max_ids;
	int			n_out;
	int32_t		last;			/* last id written, to merge runs of unknowns */
} SpEncoder;

/* Make room for need symbols (need + 1 positions) in the window; false when memory ran out. */
static bool
sp_window_reserve(SpEncoder *e, size_t need)
{
	size_t		ncap = e->cap < SP_BLOCK ? SP_BLOCK : e->cap;
	void	   *p;

	if (need <= e->cap)
		return true;
	while (ncap < need)
	{
		if (ncap > SIZE_MAX / 32)
			return false;
		ncap *= 2;
	}
	/* cap only grows once all four arrays have: a failure leaves e consistent */
	if ((p = realloc(e->sym, sizeof(uint32_t) * (ncap + 1))) == NULL)
		return false;
	e->sym = p;
	if ((p = realloc(e->best, sizeof(double) * (ncap + 1))) == NULL)
		return false;
	e->best = p;
	if ((p = realloc(e->words, sizeof(int32_t) * (ncap + 1))) == NULL)
		return false;
	e->words = p;
	if ((p = realloc(e->back, sizeof(int32_t) * (ncap + 1))) == NULL)
		return false;
	e->back = p;
	e->cap = ncap;
	return true;
}

/* Append symbol cp and its end position (best 0, id 0: "nothing yet", as in the JS). */
static void
sp_window_push(SpEncoder *e, uint32_t cp)
{
	e->sym[e->nsym++] = cp == ' ' ? SP_SEP : cp;
	e->best[e->nsym] = 0.0;
	e->words[e->nsym] = 0;
}

/* Drop the window left of the last cut: nothing there can change any more. */
static void
sp_window_compact(SpEncoder *e)
{
	size_t		drop = e->seg - e->base;
	size_t		keep = e->nsym - drop;

	if (drop == 0)
		return;
	memmove(e->sym, e->sym + drop, sizeof(uint32_t) * keep);
	memmove(e->best, e->best + drop, sizeof(double) * (keep + 1));
	memmove(e->words, e->words + drop, sizeof(int32_t) * (keep + 1));
	e->base = e->seg;
	e->nsym = keep;
}

/* Decode one block of text (ending before an NFKC boundary) into e->raw; returns its length. */
static size_t
sp_decode_block(SpEncoder *e)
{
	size_t		n = 0;

	while (e->pos < e->len)
	{
		size_t		p = e->pos;
		bool		valid;
		uint32_t	cp = utf8_decode_next(e->text, e->len, &p, &valid);

		if (n >= SP_BLOCK && sp_nfkc_boundary(cp))
			break;
		if (!sp_reserve((void **) &e->raw, &e->raw_cap, n + 1, sizeof(uint32_t)))
			return SIZE_MAX;
		e->raw[n++] = cp;
		e->pos = p;
	}
	e->done = e->pos >= e->len;
	return n;
}

/* Decode and normalize the next block of text onto the window; false when memory ran out. */
static bool
sp_feed(SpEncoder *e)
{
	size_t		n_raw,
				n_norm;

	if (e->tok->streamable)
		sp_window_compact(e);
	if ((n_raw = sp_decode_block(e)) == SIZE_MAX)
		return false;
	n_norm = sp_nfkc(e->raw, n_raw, &e->norm, &e->norm_cap, &e->tmp, &e->tmp_cap);
	if (n_norm == SIZE_MAX || !sp_window_reserve(e, e->nsym + n_norm + 1))
		return false;
	/* NFKC never empties a non-empty text, so the JS prefix goes before any text */
	if (!e->prefixed && n_norm > 0)
	{
		sp_window_push(e, SP_SEP);
		e->prefixed = true;
	}
	for (size_t i = 0; i < n_norm; i++)
		sp_window_push(e, e->norm[i] & SP_CP_MASK);
	return true;
}

/*
 * Offer the candidate id (score) spanning window positions [k, end): the JS
 * test, where a best of exactly 0 counts as unset and ties go to the later
 * candidate.
 */
static inline void
sp_relax(SpEncoder *e, size_t k, size_t end, double score, int32_t id)
{
	double		s = score + e->best[k];

	if (e->best[end] == 0.0 || s >= e->best[end])
	{
		e->best[end] = s;
		e->words[end] = id;
	}
}

/* Offer every candidate starting at absolute position i (the JS commonPrefixSearch). */
static void
sp_expand(SpEncoder *e, size_t i)
{
	const SpTokenizer *tok = e->tok;
	size_t		k = i - e->base;
	int32_t		node = 0;
	bool		matched = false;

	for (size_t j = k; j < e->nsym; j++)
	{
		node = sp_child(tok, node, e->sym[j]);
		if (node < 0)
			break;
		if (tok->node_id[node] >= 0)
		{
			sp_relax(e, k, j + 1, tok->node_score[node], tok->node_id[node]);
			matched = true;
			if (e->base + j + 1 > e->reach)
				e->reach = e->base + j + 1;
		}
	}
	if (!matched)
	{
		sp_relax(e, k, k + 1, 0.0, 0);
		if (i + 1 > e->reach)
			e->reach = i + 1;
	}
}

/*
 * Backtrack from absolute position p to the last cut as the JS does from the
 * end (steps of the UTF-16 length of each piece) and write the ids in text
 * order, merging runs of unknowns.
 */
static void
sp_emit(SpEncoder *e, size_t p)
{
	int64_t		iter = (int64_t) p;
	size_t		nb = 0;

	while (iter > (int64_t) e->seg)
	{
		int32_t		id = e->words[iter - (int64_t) e->base];

		e->back[nb++] = id;
		iter -= e->tok->step[id];
	}
	while (nb > 0 && e->n_out < e->max_ids)
	{
		int32_t		id = e->back[--nb];

		if (id == 0 && e->last == 0)
			continue;
		e->ids[e->n_out++] = id;
		e->last = id;
	}
	e->seg = p;
}

/* Run the lattice over the whole text, emitting at cuts; false when memory ran out. */
static bool
sp_run(SpEncoder *e)
{
	const SpTokenizer *tok = e->tok;

	for (;;)
	{
		while (e->next < e->base + e->nsym &&
			   (e->done || e->next + tok->max_len <= e->base + e->nsym))
		{
			if (tok->streamable && e->reach <= e->next && e->next > e->seg)
			{
				sp_emit(e, e->next);
				if (e->n_out >= e->max_ids)
					return true;
			}
			sp_expand(e, e->next);
			e->next++;
		}
		if (e->done)
			break;
		if (!sp_feed(e))
			return false;
	}
	if (e->base + e->nsym > e->seg)
		sp_emit(e, e->base + e->nsym);
	return true;
}

/* Release the buffers of e. */
static void
sp_encoder_free(SpEncoder *e)
{
	free(e->raw);
	free(e->norm);
	free(e->tmp);
	free(e->sym);
	free(e->best);
	free(e->words);
	free(e->back);
}

int
sp_tokenizer_encode(const SpTokenizer *tok, const char *text, size_t len,
					int32_t *ids, int max_ids)
{
	SpEncoder	e;
	bool		ok;

	if (tok == NULL || (text == NULL && len > 0))
		return -1;
	if (max_ids <= 0)
		return 0;
	if (ids == NULL)
		return -1;
	memset(&e, 0, sizeof(e));
	e.tok = tok;
	e.text = (const uint8_t *) text;
	e.len = len;
	e.ids = ids;
	e.max_ids = max_ids;
	e.last = -1;
	/* TextDecoder drops one leading BOM */
	if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
		e.pos = 3;
	e.done = e.pos >= len;
	ok = sp_window_reserve(&e, SP_BLOCK);
	if (ok)
	{
		e.best[0] = 0.0;
		e.words[0] = 0;
		ok = sp_run(&e);
	}
	sp_encoder_free(&e);
	return ok ? e.n_out : -1;
}

int
sp_tokenizer_vocab_size(const SpTokenizer *tok)
{
	return tok != NULL ? tok->n_pieces : 0;
}

const char *
sp_tokenizer_piece(const SpTokenizer *tok, int id)
{
	if (tok == NULL || id < 0 || id >= tok->n_pieces)
		return NULL;
	return tok->arena + tok->offset[id];
}

void
sp_tokenizer_free(SpTokenizer *tok)
{
	if (tok == NULL)
		return;
	if (tok->borrowed)
	{
		free(tok);
		return;
	}
	free(tok->arena);
	free(tok->offset);
	free(tok->step);
	free(tok->node_id);
	free(tok->node_score);
	free(tok->slots);
	free(tok);
}

/* ---- the compiled image ------------------------------------------------- */

/*
 * An image is the loaded tokenizer's arrays back to back, so that a later
 * load points into it (a mapped file) instead of parsing vocab.json and
 * building the trie again (docs/design.md 6, first call).  Sections, each
 * starting 8-aligned: header, arena, offset (u64), step, node_id,
 * node_score, slots.  Native byte order: an image never leaves the machine
 * that wrote it.
 */
#define SP_IMAGE_MAGIC UINT64_C(0x3154505354504544)	/* "DEPTSPT1" */

typedef struct SpImageHeader
{
	uint64_t	magic;
	uint64_t	arena_len;
	uint64_t	n_slots;
	uint64_t	max_len;
	int32_t		n_pieces;
	int32_t		n_nodes;
	int32_t		hshift;
	int32_t		streamable;
} SpImageHeader;

/* Byte offsets of an image's sections; end is the image's size. */
typedef struct SpImageLayout
{
	size_t		arena,
				offset,
				step,
				node_id,
				node_score,
				slots,
				end;
} SpImageLayout;

#define SP_ALIGN8(n) (((n) + 7) & ~(size_t) 7)

/* The layout of an image of these counts (each bounded well below SIZE_MAX / 16). */
static SpImageLayout
sp_image_layout(size_t arena_len, size_t n_pieces, size_t n_nodes, size_t n_slots)
{
	SpImageLayout l = {0};

	l.arena = SP_ALIGN8(sizeof(SpImageHeader));
	l.offset = l.arena + SP_ALIGN8(arena_len);
	l.step = l.offset + sizeof(uint64_t) * n_pieces;
	l.node_id = l.step + SP_ALIGN8(sizeof(int32_t) * n_pieces);
	l.node_score = l.node_id + SP_ALIGN8(sizeof(int32_t) * n_nodes);
	l.slots = l.node_score + sizeof(double) * n_nodes;
	l.end = l.slots + sizeof(SpSlot) * n_slots;
	return l;
}

static size_t
sp_arena_len(const SpTokenizer *tok)
{
	int			last = tok->n_pieces - 1;

	return tok->offset[last] + strlen(tok->arena + tok->offset[last]) + 1;
}

size_t
sp_tokenizer_image_size(const SpTokenizer *tok)
{
	return sp_image_layout(sp_arena_len(tok), tok->n_pieces, tok->n_nodes, tok->hmask + 1).end;
}

void
sp_tokenizer_write_image(const SpTokenizer *tok, void *image)
{
	size_t		arena_len = sp_arena_len(tok);
	SpImageLayout l = sp_image_layout(arena_len, tok->n_pieces, tok->n_nodes, tok->hmask + 1);
	char	   *p = image;
	SpImageHeader h = {SP_IMAGE_MAGIC, arena_len, tok->hmask + 1, tok->max_len,
		tok->n_pieces, tok->n_nodes, tok->hshift, tok->streamable};

	memset(image, 0, l.end);	/* padding, and the slots' padding bytes, are zero */
	memcpy(p, &h, sizeof(h));
	memcpy(p + l.arena, tok->arena, arena_len);
	for (int i = 0; i < tok->n_pieces; i++)
		((uint64_t *) (p + l.offset))[i] = tok->offset[i];
	memcpy(p + l.step, tok->step, sizeof(int32_t) * tok->n_pieces);
	memcpy(p + l.node_id, tok->node_id, sizeof(int32_t) * tok->n_nodes);
	memcpy(p + l.node_score, tok->node_score, sizeof(double) * tok->n_nodes);
	for (size_t i = 0; i <= tok->hmask; i++)
	{
		SpSlot	   *dst = (SpSlot *) (p + l.slots) + i;

		dst->key = tok->slots[i].key;
		dst->child = tok->slots[i].child;
	}
}

/* Check an image's header and size; fill the layout. */
static NnStatus
sp_image_check_header(const SpImageHeader *h, size_t len, SpImageLayout *l, NnError *err)
{
	int			bits = 0;

	while (bits < 40 && (UINT64_C(1) << bits) < h->n_slots)
		bits++;
	if (h->magic != SP_IMAGE_MAGIC ||
		h->n_pieces < SP_RESERVED_IDS || h->n_pieces > SP_MAX_VOCAB ||
		h->arena_len < (uint64_t) h->n_pieces * 2 || h->arena_len > SP_MAX_JSON_BYTES ||
		h->n_nodes < 1 || (uint64_t) h->n_nodes > h->arena_len + 1 ||
		bits < 6 || bits >= 40 || (UINT64_C(1) << bits) != h->n_slots ||
		h->n_slots < 2 * (uint64_t) h->n_nodes || h->hshift != 64 - bits)
		return nn_fail(err, NN_ERR_FORMAT, "the compiled tokenizer's header is damaged");
	*l = sp_image_layout(h->arena_len, h->n_pieces, h->n_nodes, h->n_slots);
	if (l->end != len)
		return nn_fail(err, NN_ERR_FORMAT, "the compiled tokenizer has %zu bytes, its header says %zu",
					   len, l->end);
	return NN_OK;
}

/*
 * Check every piece of tok (valid UTF-8 inside the arena, its step) and
 * recompute max_len and streamable as sp_read_entries does.
 */
static bool
sp_image_check_pieces(const SpTokenizer *tok, size_t arena_len, size_t *max_len,
					  bool *streamable)
{
	const uint64_t *offset = (const uint64_t *) tok->offset;

	if (arena_len == 0 || tok->arena[arena_len - 1] != '\0' || offset[0] != 0)
		return false;
	*max_len = 0;
	*streamable = true;
	for (int i = 0; i < tok->n_pieces; i++)
	{
		const uint8_t *piece = (const uint8_t *) tok->arena + offset[i];
		size_t		end = i + 1 < tok->n_pieces ? offset[i + 1] : arena_len,
					len,
					pos = 0,
					n_cps = 0,
					n_utf16 = 0;
		bool		valid;

		if (end <= offset[i] || end > arena_len)
			return false;
		len = end - offset[i] - 1;
		if (len == 0 || piece[len] != '\0' || strlen((const char *) piece) != len)
			return false;
		while (pos < len)
		{
			uint32_t	cp = utf8_decode_next(piece, len, &pos, &valid);

			if (!valid)
				return false;
			n_cps++;
			n_utf16 += cp >= 0x10000 ? 2 : 1;
		}
		if ((size_t) tok->step[i] != n_utf16)
			return false;
		if ((i == 0 || i >= SP_RESERVED_IDS) && n_utf16 != (i == 0 ? 1 : n_cps))
			*streamable = false;
		if (i >= SP_RESERVED_IDS && n_cps > *max_len)
			*max_len = n_cps;
	}
	return true;
}

/* Every trie index of tok in range, every score finite, a free slot left. */
static bool
sp_image_check_trie(const SpTokenizer *tok)
{
	size_t		free_slots = 0;

	for (int32_t k = 0; k < tok->n_nodes; k++)
		if (tok->node_id[k] < -1 || tok->node_id[k] >= tok->n_pieces ||
			!isfinite(tok->node_score[k]))
			return false;
	for (size_t i = 0; i <= tok->hmask; i++)
	{
		int32_t		child = tok->slots[i].child;

		if (child < -1 || child >= tok->n_nodes || child == 0)
			return false;
		free_slots += child < 0;
	}
	return free_slots > 0;
}

NnStatus
sp_tokenizer_from_image(SpTokenizer **out, const void *image, size_t len, NnError *err)
{
	const char *p = image;
	SpImageHeader h;
	SpImageLayout l = {0};
	SpTokenizer *tok;
	NnStatus	st;
	size_t		max_len;
	bool		streamable;

	*out = NULL;
	if (sizeof(size_t) != sizeof(uint64_t) || image == NULL || len < sizeof(h) ||
		((uintptr_t) image & 7) != 0)
		return nn_fail(err, NN_ERR_FORMAT, "the compiled tokenizer is unusable here");
	memcpy(&h, image, sizeof(h));
	if ((st = sp_image_check_header(&h, len, &l, err)) != NN_OK)
		return st;
	if ((tok = calloc(1, sizeof(SpTokenizer))) == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory loading the tokenizer");
	tok->borrowed = true;
	tok->n_pieces = h.n_pieces;
	tok->arena = (char *) p + l.arena;
	tok->offset = (size_t *) (p + l.offset);
	tok->step = (int32_t *) (p + l.step);
	tok->n_nodes = h.n_nodes;
	tok->node_id = (int32_t *) (p + l.node_id);
	tok->node_score = (double *) (p + l.node_score);
	tok->slots = (SpSlot *) (p + l.slots);
	tok->hmask = h.n_slots - 1;
	tok->hshift = h.hshift;
	if (!sp_image_check_pieces(tok, h.arena_len, &max_len, &streamable) ||
		max_len != h.max_len || streamable != (h.streamable != 0) || !sp_image_check_trie(tok))
	{
		sp_tokenizer_free(tok);
		return nn_fail(err, NN_ERR_FORMAT, "the compiled tokenizer is damaged");
	}
	tok->max_len = max_len;
	tok->streamable = streamable;
	*out = tok;
	return NN_OK;
}
