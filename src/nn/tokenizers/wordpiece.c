/*
 * wordpiece.c: BERT WordPiece tokenization (behaviour in wordpiece.h).
 *
 * Encoding streams: bytes are decoded one code point at a time and pushed
 * through three small stages, so a long text is never copied or
 * normalized as a whole and stops being read once max_ids ids are out.
 *
 *   stage 1  clean_text and the CJK spacing (per code point)
 *   stage 2  strip_accents: canonical decomposition of the code point;
 *            nonspacing marks are dropped at once and the remaining
 *            non-starters (Mc/Me with a combining class, rare) are held in
 *            a short run and put in canonical order before they leave --
 *            dropping elements commutes with the stable sort by combining
 *            class, so this equals NFD followed by the Mn filter; then the
 *            full lowercase mapping
 *   stage 3  pre-tokenization into the current word, and WordPiece on each
 *            finished word
 *
 * The vocabulary is an open-addressing hash of token bytes -> id (FNV-1a);
 * the greedy longest match never tries a candidate longer than the longest
 * token, so a 100-character word costs at most 100 x (longest token)
 * lookups.
 */
#include "tokenizers/wordpiece.h"
#include "base/utf8.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "formats/hf_config.h"
#include "tokenizers/tok_json.h"

#define WP_MAX_FILE ((size_t) 64 << 20)
#define WP_MAX_ID ((1 << 24) - 1)
#define WP_MAX_AFFIX 8			/* specials before or after the sequence */
#define WP_MAX_PREFIX 16		/* bytes of the continuing-subword prefix */
#define WP_MAX_WORD_LIMIT 10000 /* largest max_input_chars_per_word accepted */
#define WP_RUN_CAP 32			/* held non-starters awaiting canonical order */
#define WP_MAX_DECOMP 8			/* longest canonical decomposition is 4 */

typedef struct WpAdded
{
	const char *content;		/* in the arena */
	size_t		len;
	int32_t		id;
	bool		single_word;
} WpAdded;

struct WordPiece
{
	int			n_ids;			/* largest id + 1 */
	const char **token;			/* (n_ids) token of each id, NULL for gaps */
	char	   *arena;			/* every token string, NUL-terminated */
	int32_t    *slots;			/* (hmask + 1) hash slots holding ids, -1 = free */
	size_t		hmask;
	size_t		max_token_bytes;
	int32_t		unk_id;
	char		prefix[WP_MAX_PREFIX];	/* "##" */
	size_t		prefix_len;
	int			max_chars;		/* max_input_chars_per_word */
	bool		clean_text,
				chinese,
				strip_accents,
				lowercase;
	int32_t		pre[WP_MAX_AFFIX];	/* template ids before the words */
	int			n_pre;
	int32_t		post[WP_MAX_AFFIX]; /* and after */
	int			n_post;
	WpAdded    *added;			/* raw-matched added tokens */
	int			n_added;
	char	   *added_arena;
	bool		added_first[256];	/* first bytes of added tokens */
};

/* ---- Unicode classes ------------------------------------------------------- */

/* Rust's char::is_whitespace (the White_Space property). */
static bool
is_white_space(uint32_t c)
{
	return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
		(c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
		c == 0x205F || c == 0x3000;
}

/* BertNormalizer's is_control: Cc, Cf, Co, except tab, newline and return. */
static bool
is_control(uint32_t c)
{
	utf8proc_category_t cat;

	if (c == '\t' || c == '\n' || c == '\r')
		return false;
	cat = utf8proc_category((utf8proc_int32_t) c);
	return cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
		cat == UTF8PROC_CATEGORY_CO;
}

/* BertPreTokenizer's punctuation: ASCII punctuation or a Unicode P* category. */
static bool
is_punct(uint32_t c)
{
	utf8proc_category_t cat;

	if (c < 0x80)
		return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) ||
			(c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
	cat = utf8proc_category((utf8proc_int32_t) c);
	return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

/* The CJK blocks of tokenizers' BertNormalizer (its ranges, not Python's). */
static bool
is_cjk(uint32_t c)
{
	return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
		(c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
		(c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
		(c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static bool
is_mn(uint32_t c)
{
	return utf8proc_category((utf8proc_int32_t) c) == UTF8PROC_CATEGORY_MN;
}

/* A \w character for single_word added tokens: letter, mark, number or Pc. */
static bool
is_word_char(uint32_t c)
{
	utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t) c);

	return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_NO) ||
		cat == UTF8PROC_CATEGORY_PC;
}

/* The code point at s[*pos], invalid bytes decoded as WHATWG does (utf8.c). */
static uint32_t
utf8_next(const uint8_t *s, size_t len, size_t *pos)
{
	bool		valid;

	return utf8_decode_next(s, len, pos, &valid);
}

/* UTF-8 of c into out (4 bytes room); returns the length. */
static int
utf8_put(uint32_t c, char *out)
{
	if (c < 0x80)
		return out[0] = (char) c, 1;
	if (c < 0x800)
	{
		out[0] = (char) (0xC0 | (c >> 6));
		out[1] = (char) (0x80 | (c & 0x3F));
		return 2;
	}
	if (c < 0x10000)
	{
		out[0] = (char) (0xE0 | (c >> 12));
		out[1] = (char) (0x80 | ((c >> 6) & 0x3F));
		out[2] = (char) (0x80 | (c & 0x3F));
		return 3;
	}
	out[0] = (char) (0xF0 | (c >> 18));
	out[1] = (char) (0x80 | ((c >> 12) & 0x3F));
	out[2] = (char) (0x80 | ((c >> 6) & 0x3F));
	out[3] = (char) (0x80 | (c & 0x3F));
	return 4;
}

/* ---- vocabulary ------------------------------------------------------------- */

static uint64_t
fnv1a(const char *s, size_t len)
{
	uint64_t	h = 1469598103934665603ull;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t) s[i]) * 1099511628211ull;
	return h;
}

/* Slot of token s (len bytes): its slot if present, else the free slot to use. */
static size_t
vocab_slot(const WordPiece *wp, const char *s, size_t len)
{
	size_t		i = (size_t) fnv1a(s, len) & wp->hmask;

	for (;; i = (i + 1) & wp->hmask)
	{
		int32_t		id = wp->slots[i];
		const char *t;
		size_t		k = 0;

		if (id < 0)
			return i;
		t = wp->token[id];
		/* s may hold a NUL (text without clean_text): stop at t's end, never read past it */
		while (k < len && t[k] != '\0' && t[k] == s[k])
			k++;
		if (k == len && t[len] == '\0')
			return i;
	}
}

static int32_t
vocab_find(const WordPiece *wp, const char *s, size_t len)
{
	if (len > wp->max_token_bytes)
		return -1;
	return wp->slots[vocab_slot(wp, s, len)];
}

/*
 * Build the vocabulary from n (string, length, id) entries; a string seen
 * twice maps to its last id, as a Rust HashMap built in order does.
 */
static NnStatus
vocab_build(WordPiece *wp, const char *const *strs, const size_t *lens, const int32_t *ids,
			int n, NnError *err)
{
	size_t		bytes = 0,
				off = 0,
				cap = 64;
	int32_t		max_id = -1;

	for (int i = 0; i < n; i++)
	{
		if (ids[i] < 0 || ids[i] > WP_MAX_ID)
			return nn_fail(err, NN_ERR_FORMAT, "tokenizer: token id %d is outside 0..%d",
						   (int) ids[i], WP_MAX_ID);
		if (memchr(strs[i], '\0', lens[i]) != NULL)
			return nn_fail(err, NN_ERR_FORMAT, "tokenizer: token %d contains a NUL byte", (int) ids[i]);
		if (ids[i] > max_id)
			max_id = ids[i];
		bytes += lens[i] + 1;
	}
	if (n == 0)
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer: the vocabulary is empty");
	while (cap < 2 * (size_t) n)
		cap *= 2;
	wp->n_ids = max_id + 1;
	wp->token = calloc((size_t) wp->n_ids, sizeof(char *));
	wp->arena = malloc(bytes);
	wp->slots = malloc(cap * sizeof(int32_t));
	if (wp->token == NULL || wp->arena == NULL || wp->slots == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "tokenizer: out of memory for %d tokens", n);
	memset(wp->slots, 0xFF, cap * sizeof(int32_t));
	wp->hmask = cap - 1;
	for (int i = 0; i < n; i++)
	{
		char	   *t = wp->arena + off;

		memcpy(t, strs[i], lens[i]);
		t[lens[i]] = '\0';
		off += lens[i] + 1;
		wp->token[ids[i]] = t;
		wp->slots[vocab_slot(wp, t, lens[i])] = ids[i];
		if (lens[i] > wp->max_token_bytes)
			wp->max_token_bytes = lens[i];
	}
	return NN_OK;
}

/* ---- configuration ------------------------------------------------------------ */

static void
set_defaults(WordPiece *wp)
{
	memcpy(wp->prefix, "##", 3);
	wp->prefix_len = 2;
	wp->max_chars = 100;
	wp->unk_id = -1;
}

/* Register the added tokens named in strs (n of them, ids resolved already). */
static NnStatus
added_build(WordPiece *wp, const char *const *strs, const int32_t *ids, const bool *single,
			int n, NnError *err)
{
	size_t		bytes = 0,
				off = 0;

	for (int i = 0; i < n; i++)
		bytes += strlen(strs[i]) + 1;
	wp->added = calloc((size_t) (n > 0 ? n : 1), sizeof(WpAdded));
	wp->added_arena = malloc(bytes > 0 ? bytes : 1);
	if (wp->added == NULL || wp->added_arena == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "tokenizer: out of memory");
	for (int i = 0; i < n; i++)
	{
		size_t		len = strlen(strs[i]);
		WpAdded    *a = &wp->added[wp->n_added];

		if (len == 0)
			continue;
		memcpy(wp->added_arena + off, strs[i], len + 1);
		a->content = wp->added_arena + off;
		a->len = len;
		a->id = ids[i];
		a->single_word = single[i];
		off += len + 1;
		wp->added_first[(uint8_t) strs[i][0]] = true;
		wp->n_added++;
	}
	return NN_OK;
}

/* Look up the id of a named special token or fail. */
static NnStatus
special_id(const WordPiece *wp, const char *name, int32_t *id, NnError *err)
{
	*id = vocab_find(wp, name, strlen(name));
	if (*id < 0)
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer: special token \"%s\" is not in the vocabulary",
					   name);
	return NN_OK;
}

static const cJSON *
item(const cJSON *obj, const char *name)
{
	return cJSON_GetObjectItemCaseSensitive(obj, name);
}

/* Optional boolean member (null/absent: def). */
static bool
opt_bool(const cJSON *obj, const char *name, bool def)
{
	const cJSON *v = item(obj, name);

	return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static NnStatus
parse_normalizer(WordPiece *wp, const cJSON *n, NnError *err)
{
	const cJSON *type = item(n, "type");
	const cJSON *sa;

	if (n == NULL || cJSON_IsNull(n))
		return NN_OK;			/* no normalization at all */
	if (!cJSON_IsString(type) || strcmp(type->valuestring, "BertNormalizer") != 0)
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: normalizer %s is not supported (BertNormalizer)",
					   cJSON_IsString(type) ? type->valuestring : "?");
	wp->clean_text = opt_bool(n, "clean_text", true);
	wp->chinese = opt_bool(n, "handle_chinese_chars", true);
	wp->lowercase = opt_bool(n, "lowercase", true);
	sa = item(n, "strip_accents");
	wp->strip_accents = cJSON_IsBool(sa) ? cJSON_IsTrue(sa) : wp->lowercase;
	return NN_OK;
}

/* Template ids of one special-token name from TemplateProcessing's table. */
static NnStatus
template_special(const cJSON *specials, const cJSON *ref, int32_t *dst, int *n, NnError *err)
{
	const cJSON *entry = cJSON_IsString(ref) ? item(specials, ref->valuestring) : NULL;
	const cJSON *ids = item(entry, "ids");
	const cJSON *v;

	if (!cJSON_IsArray(ids))
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: template special token %s is undefined",
					   cJSON_IsString(ref) ? ref->valuestring : "?");
	cJSON_ArrayForEach(v, ids)
	{
		if (*n >= WP_MAX_AFFIX || !cJSON_IsNumber(v) || v->valuedouble < 0 ||
			v->valuedouble > WP_MAX_ID)
			return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: bad template special token ids");
		dst[(*n)++] = (int32_t) v->valuedouble;
	}
	return NN_OK;
}

static NnStatus
parse_template(WordPiece *wp, const cJSON *pp, NnError *err)
{
	const cJSON *single = item(pp, "single");
	const cJSON *specials = item(pp, "special_tokens");
	const cJSON *it;
	bool		seen_seq = false;
	NnStatus	s;

	if (!cJSON_IsArray(single))
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: TemplateProcessing has no \"single\"");
	cJSON_ArrayForEach(it, single)
	{
		const cJSON *sp = item(it, "SpecialToken");

		if (item(it, "Sequence") != NULL)
		{
			if (seen_seq)
				return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: template repeats the sequence");
			seen_seq = true;
		}
		else if (sp != NULL)
		{
			s = seen_seq ? template_special(specials, item(sp, "id"), wp->post, &wp->n_post, err)
				: template_special(specials, item(sp, "id"), wp->pre, &wp->n_pre, err);
			if (s != NN_OK)
				return s;
		}
		else
			return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: unknown template item");
	}
	if (!seen_seq)
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: template has no sequence");
	return NN_OK;
}

/* ["[CLS]", 101] of BertProcessing. */
static NnStatus
pair_id(const cJSON *pair, int32_t *id, NnError *err)
{
	const cJSON *v = cJSON_GetArrayItem(pair, 1);

	if (!cJSON_IsArray(pair) || !cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > WP_MAX_ID)
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: bad cls/sep in the post-processor");
	*id = (int32_t) v->valuedouble;
	return NN_OK;
}

static NnStatus
parse_post_processor(WordPiece *wp, const cJSON *pp, NnError *err)
{
	const cJSON *type = item(pp, "type");
	const char *t = cJSON_IsString(type) ? type->valuestring : "";
	const cJSON *sub;
	NnStatus	s;

	if (pp == NULL || cJSON_IsNull(pp))
		return NN_OK;
	if (strcmp(t, "TemplateProcessing") == 0)
		return parse_template(wp, pp, err);
	if (strcmp(t, "BertProcessing") == 0 || strcmp(t, "RobertaProcessing") == 0)
	{
		if ((s = pair_id(item(pp, "cls"), &wp->pre[0], err)) ||
			(s = pair_id(item(pp, "sep"), &wp->post[0], err)))
			return s;
		wp->n_pre = wp->n_post = 1;
		return NN_OK;
	}
	if (strcmp(t, "Sequence") == 0)
	{
		/* the first processor that adds specials decides */
		cJSON_ArrayForEach(sub, item(pp, "processors"))
		{
			const cJSON *st = item(sub, "type");

			if (cJSON_IsString(st) && strcmp(st->valuestring, "ByteLevel") != 0)
				return parse_post_processor(wp, sub, err);
		}
		return NN_OK;
	}
	return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: post-processor %s is not supported", t);
}

/* model.vocab as (string, length, id) lists: from cJSON's tree, or on the fast path from the text. */
typedef struct WpLists
{
	TokJsonVocab vocab;
	char	   *arena;			/* the fast path's decoded strings */
} WpLists;

static void
lists_free(WpLists *l)
{
	tok_json_vocab_free(&l->vocab);
	free(l->arena);
	memset(l, 0, sizeof(*l));
}

/*
 * The fast path (tok_json.h): model.vocab {"token": id, ...} of plain
 * strings and ids read from the text, its span in *span; false (l emptied)
 * to go through cJSON.
 */
static bool
lists_from_text(WpLists *l, const char *json, size_t len, TokJsonSpan *span)
{
	TokJsonSpan root,
				model;
	char	   *arena;

	memset(l, 0, sizeof(*l));
	if (!tok_json_root(json, len, &root) || !tok_json_find(json, root, "model", "{", &model) ||
		!tok_json_find(json, model, "vocab", "{", span) ||
		(l->arena = malloc(span->end - span->start)) == NULL)
		return false;
	arena = l->arena;
	if (tok_json_vocab(json, *span, WP_MAX_ID, &l->vocab, &arena))
		return true;
	lists_free(l);
	return false;
}

/* The tree's vocab {token: id} into l; false with err set when an entry is not token: id. */
static NnStatus
lists_from_tree(WpLists *l, const cJSON *vocab, NnError *err)
{
	const cJSON *e;
	int			n = cJSON_GetArraySize(vocab);
	TokJsonVocab *v = &l->vocab;

	v->strs = malloc(sizeof(char *) * (size_t) (n + 1));
	v->lens = malloc(sizeof(size_t) * (size_t) (n + 1));
	v->ids = malloc(sizeof(int32_t) * (size_t) (n + 1));
	if (v->strs == NULL || v->lens == NULL || v->ids == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "tokenizer: out of memory");
	cJSON_ArrayForEach(e, vocab)
	{
		if (e->string == NULL || !cJSON_IsNumber(e) || e->valuedouble < 0 ||
			e->valuedouble > WP_MAX_ID || e->valuedouble != (double) (int32_t) e->valuedouble)
			return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: vocab entry %d is not token: id",
						   v->n);
		v->strs[v->n] = e->string;
		v->lens[v->n] = strlen(e->string);
		v->ids[v->n++] = (int32_t) e->valuedouble;
	}
	return NN_OK;
}

static NnStatus
parse_model(WordPiece *wp, const cJSON *model, const WpLists *fast, NnError *err)
{
	const cJSON *type = item(model, "type");
	const cJSON *vocab = item(model, "vocab");
	const cJSON *unk = item(model, "unk_token");
	const cJSON *pre = item(model, "continuing_subword_prefix");
	const cJSON *mc = item(model, "max_input_chars_per_word");
	WpLists		tree = {0};
	const TokJsonVocab *v = fast ? &fast->vocab : &tree.vocab;
	NnStatus	s = NN_OK;

	if (!cJSON_IsString(type) || strcmp(type->valuestring, "WordPiece") != 0)
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: model type %s is not WordPiece",
					   cJSON_IsString(type) ? type->valuestring : "?");
	if (fast == NULL && !cJSON_IsObject(vocab))
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: WordPiece model has no vocab object");
	if (cJSON_IsString(pre))
	{
		if (strlen(pre->valuestring) >= WP_MAX_PREFIX)
			return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: continuing_subword_prefix is too long");
		wp->prefix_len = strlen(pre->valuestring);
		memcpy(wp->prefix, pre->valuestring, wp->prefix_len + 1);
	}
	if (cJSON_IsNumber(mc))
	{
		if (!(mc->valuedouble >= 1 && mc->valuedouble <= WP_MAX_WORD_LIMIT))
			return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: max_input_chars_per_word must be in 1..%d",
						   WP_MAX_WORD_LIMIT);
		wp->max_chars = (int) mc->valuedouble;
	}
	if (fast == NULL)
		s = lists_from_tree(&tree, vocab, err);
	if (s == NN_OK)
		s = vocab_build(wp, v->strs, v->lens, v->ids, v->n, err);
	lists_free(&tree);
	if (s == NN_OK)
		s = special_id(wp, cJSON_IsString(unk) ? unk->valuestring : "[UNK]", &wp->unk_id, err);
	return s;
}

static NnStatus
parse_added(WordPiece *wp, const cJSON *added, NnError *err)
{
	int			cap = cJSON_GetArraySize(added),
				n = 0;
	const char **strs = malloc(sizeof(char *) * (size_t) (cap + 1));
	int32_t    *ids = malloc(sizeof(int32_t) * (size_t) (cap + 1));
	bool	   *single = malloc(sizeof(bool) * (size_t) (cap + 1));
	const cJSON *a;
	NnStatus	s = NN_OK;

	if (strs == NULL || ids == NULL || single == NULL)
		s = nn_fail(err, NN_ERR_NOMEM, "tokenizer: out of memory");
	else
		cJSON_ArrayForEach(a, added)
		{
			const cJSON *content = item(a, "content");
			const cJSON *id = item(a, "id");
			bool		special = opt_bool(a, "special", false);

			if (!cJSON_IsString(content) || !cJSON_IsNumber(id) || id->valuedouble < 0 ||
				id->valuedouble > WP_MAX_ID)
			{
				s = nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: malformed added token");
				break;
			}
			if (opt_bool(a, "normalized", !special))
				continue;		/* matched on normalized text: not supported, see header */
			strs[n] = content->valuestring;
			ids[n] = (int32_t) id->valuedouble;
			single[n++] = opt_bool(a, "single_word", false);
		}
	if (s == NN_OK)
		s = added_build(wp, strs, ids, single, n, err);
	free(strs);
	free(ids);
	free(single);
	return s;
}

/* Every id the encoder can emit must name a token (so embeddings can check one bound). */
static NnStatus
check_ids(const WordPiece *wp, NnError *err)
{
	for (int i = 0; i < wp->n_pre; i++)
		if (wp->pre[i] >= wp->n_ids)
			return nn_fail(err, NN_ERR_FORMAT, "tokenizer: special id %d is past the vocabulary",
						   (int) wp->pre[i]);
	for (int i = 0; i < wp->n_post; i++)
		if (wp->post[i] >= wp->n_ids)
			return nn_fail(err, NN_ERR_FORMAT, "tokenizer: special id %d is past the vocabulary",
						   (int) wp->post[i]);
	for (int i = 0; i < wp->n_added; i++)
		if (wp->added[i].id >= wp->n_ids)
			return nn_fail(err, NN_ERR_FORMAT, "tokenizer: added token id %d is past the vocabulary",
						   (int) wp->added[i].id);
	return NN_OK;
}

/* cJSON's tree of json, with model.vocab blanked when fast lists were read from the text. */
static cJSON *
parse_tree(const char *json, size_t len, bool fast, WpLists *lists, bool *have_lists)
{
	TokJsonSpan span;
	char	   *blank;
	cJSON	   *root;

	*have_lists = false;
	if (!fast || !lists_from_text(lists, json, len, &span))
		return cJSON_ParseWithLength(json, len);
	if ((blank = tok_json_blanked(json, len, &span, 1)) == NULL)
	{
		lists_free(lists);
		return cJSON_ParseWithLength(json, len);
	}
	*have_lists = true;
	root = cJSON_ParseWithLength(blank, len);
	free(blank);
	return root;
}

/* The tokenizer of json; fast says whether the vocab may skip cJSON's tree. */
static NnStatus
from_json(WordPiece **out, const char *json, size_t len, bool fast, NnError *err)
{
	WordPiece  *wp;
	cJSON	   *root;
	const cJSON *pre;
	NnStatus	s;
	WpLists		lists = {0};
	bool		have_lists;

	*out = NULL;
	root = parse_tree(json, len, fast, &lists, &have_lists);
	if (!cJSON_IsObject(root) || (wp = calloc(1, sizeof(WordPiece))) == NULL)
	{
		s = cJSON_IsObject(root) ? nn_fail(err, NN_ERR_NOMEM, "tokenizer: out of memory") :
			nn_fail(err, NN_ERR_FORMAT, "tokenizer.json is not a JSON object");
		cJSON_Delete(root);
		lists_free(&lists);
		return s;
	}
	set_defaults(wp);
	pre = item(item(root, "pre_tokenizer"), "type");
	if (!cJSON_IsString(pre) || strcmp(pre->valuestring, "BertPreTokenizer") != 0)
		s = nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: pre-tokenizer %s is not supported (BertPreTokenizer)",
					cJSON_IsString(pre) ? pre->valuestring : "?");
	else if ((s = parse_model(wp, item(root, "model"), have_lists ? &lists : NULL, err)) == NN_OK &&
			 (s = parse_normalizer(wp, item(root, "normalizer"), err)) == NN_OK &&
			 (s = parse_post_processor(wp, item(root, "post_processor"), err)) == NN_OK &&
			 (s = parse_added(wp, item(root, "added_tokens"), err)) == NN_OK)
		s = check_ids(wp, err);
	cJSON_Delete(root);
	lists_free(&lists);
	if (s != NN_OK)
	{
		wordpiece_free(wp);
		return s;
	}
	*out = wp;
	return NN_OK;
}

NnStatus
wordpiece_from_json(WordPiece **out, const char *json, size_t len, NnError *err)
{
	return from_json(out, json, len, true, err);
}

NnStatus
wordpiece_from_json_tree(WordPiece **out, const char *json, size_t len, NnError *err)
{
	return from_json(out, json, len, false, err);
}

NnStatus
wordpiece_from_vocab(WordPiece **out, const char *txt, size_t len, const WordPieceOptions *opt,
					 NnError *err)
{
	static const WordPieceOptions bert = {true, -1, true};
	static const char *const specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
	const char *sp_strs[5];
	int32_t		sp_ids[5];
	bool		sp_single[5] = {false};
	int			n_sp = 0;
	WordPiece  *wp;
	const char **strs = NULL;
	size_t	   *lens = NULL;
	int32_t    *ids = NULL;
	int			n = 0,
				lines = 1;
	NnStatus	s;

	*out = NULL;
	if (opt == NULL)
		opt = &bert;
	for (size_t i = 0; i < len; i++)
		lines += txt[i] == '\n';
	wp = calloc(1, sizeof(WordPiece));
	strs = malloc(sizeof(char *) * (size_t) lines);
	lens = malloc(sizeof(size_t) * (size_t) lines);
	ids = malloc(sizeof(int32_t) * (size_t) lines);
	if (wp == NULL || strs == NULL || lens == NULL || ids == NULL)
	{
		s = nn_fail(err, NN_ERR_NOMEM, "tokenizer: out of memory");
		goto done;
	}
	set_defaults(wp);
	wp->clean_text = true;
	wp->chinese = opt->chinese_chars;
	wp->lowercase = opt->lowercase;
	wp->strip_accents = opt->strip_accents < 0 ? opt->lowercase : opt->strip_accents > 0;
	/* one token per line, trailing whitespace trimmed (tokenizers' WordPiece::read_file) */
	for (size_t p = 0; p < len && n < lines;)
	{
		const char *line = txt + p;
		const char *nl = memchr(line, '\n', len - p);
		size_t		l = nl ? (size_t) (nl - line) : len - p;

		p += l + 1;
		if (nl == NULL && l == 0)
			break;
		while (l > 0 && (line[l - 1] == ' ' || (line[l - 1] >= '\t' && line[l - 1] <= '\r')))
			l--;
		strs[n] = line;
		lens[n] = l;
		ids[n] = n;
		n++;
	}
	if ((s = vocab_build(wp, strs, lens, ids, n, err)) != NN_OK ||
		(s = special_id(wp, "[UNK]", &wp->unk_id, err)) != NN_OK ||
		(s = special_id(wp, "[CLS]", &wp->pre[0], err)) != NN_OK ||
		(s = special_id(wp, "[SEP]", &wp->post[0], err)) != NN_OK)
		goto done;
	wp->n_pre = wp->n_post = 1;
	for (int i = 0; i < 5; i++)
	{
		int32_t		id = vocab_find(wp, specials[i], strlen(specials[i]));

		if (id >= 0)
		{
			sp_strs[n_sp] = specials[i];
			sp_ids[n_sp++] = id;
		}
	}
	s = added_build(wp, sp_strs, sp_ids, sp_single, n_sp, err);
done:
	free(strs);
	free(lens);
	free(ids);
	if (s != NN_OK)
	{
		wordpiece_free(wp);
		return s;
	}
	*out = wp;
	return NN_OK;
}

void
wordpiece_options_from_json(WordPieceOptions *opt, const char *json, size_t len)
{
	cJSON	   *root = json != NULL ? cJSON_ParseWithLength(json, len) : NULL;
	const cJSON *sa;

	opt->lowercase = opt_bool(root, "do_lower_case", true);
	opt->strip_accents = -1;
	opt->chinese_chars = opt_bool(root, "tokenize_chinese_chars", true);
	sa = item(root, "strip_accents");
	if (cJSON_IsBool(sa))
		opt->strip_accents = cJSON_IsTrue(sa) ? 1 : 0;
	cJSON_Delete(root);
}

/* tokenizer_config.json's BertTokenizer switches (absent file: BERT defaults). */
static void
read_vocab_options(const char *dir, WordPieceOptions *opt)
{
	char		path[4096];
	size_t		len = 0;
	char	   *json = NULL;

	if (snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir) < (int) sizeof(path))
		json = hf_read_file(path, WP_MAX_FILE, &len);
	wordpiece_options_from_json(opt, json, len);
	free(json);
}

NnStatus
wordpiece_load(WordPiece **out, const char *dir, NnError *err)
{
	char		path[4096];
	size_t		len;
	char	   *text;
	NnStatus	s;
	WordPieceOptions opt;

	*out = NULL;
	if (snprintf(path, sizeof(path), "%s/tokenizer.json", dir) >= (int) sizeof(path))
		return nn_fail(err, NN_ERR_ARG, "model directory path is too long");
	if ((text = hf_read_file(path, WP_MAX_FILE, &len)) != NULL)
	{
		s = wordpiece_from_json(out, text, len, err);
		free(text);
		return s;
	}
	snprintf(path, sizeof(path), "%s/vocab.txt", dir);
	if ((text = hf_read_file(path, WP_MAX_FILE, &len)) == NULL)
		return nn_fail(err, NN_ERR_IO, "no tokenizer.json or vocab.txt readable in \"%s\"", dir);
	read_vocab_options(dir, &opt);
	s = wordpiece_from_vocab(out, text, len, &opt, err);
	free(text);
	return s;
}

void
wordpiece_free(WordPiece *wp)
{
	if (wp == NULL)
		return;
	free(wp->token);
	free(wp->arena);
	free(wp->slots);
	free(wp->added);
	free(wp->added_arena);
	free(wp);
}

int
wordpiece_vocab_size(const WordPiece *wp)
{
	return wp->n_ids;
}

const char *
wordpiece_token(const WordPiece *wp, int id)
{
	return id >= 0 && id < wp->n_ids ? wp->token[id] : NULL;
}

int32_t
wordpiece_token_id(const WordPiece *wp, const char *token)
{
	return vocab_find(wp, token, strlen(token));
}

int32_t
wordpiece_unk_id(const WordPiece *wp)
{
	return wp->unk_id;
}

/* ---- encoding ------------------------------------------------------------------ */

typedef struct WpEnc
{
	const WordPiece *wp;
	int32_t    *ids;			/* word-piece ids go here */
	int			n;
	int			cap;			/* budget for word pieces */
	bool		full;
	char	   *word;			/* current word, UTF-8, up to max_chars + 1 chars */
	size_t		word_len;
	int		   *starts;			/* (max_chars + 2) byte offset of each char */
	int			n_chars;		/* counted up to max_chars + 1 */
	char	   *cand;			/* prefix + longest candidate */
	int32_t    *pieces;			/* (max_chars) one word's pieces */
	uint32_t	run[WP_RUN_CAP];	/* held non-starters, in canonical order */
	uint8_t		run_ccc[WP_RUN_CAP];
	int			run_len;
} WpEnc;

static void
emit(WpEnc *e, int32_t id)
{
	if (e->n < e->cap)
		e->ids[e->n++] = id;
	if (e->n >= e->cap)
		e->full = true;
}

/* Greedy longest-match-first over the finished word; emits its pieces or unk. */
static void
end_word(WpEnc *e)
{
	const WordPiece *wp = e->wp;
	int			nc = e->n_chars,
				np = 0,
				start = 0;

	if (nc == 0 || e->full)
		goto reset;
	if (nc > wp->max_chars)
	{
		emit(e, wp->unk_id);
		goto reset;
	}
	e->starts[nc] = (int) e->word_len;
	while (start < nc)
	{
		size_t		pre = start > 0 ? wp->prefix_len : 0;
		int			end = nc;
		int32_t		id = -1;

		if (pre)
			memcpy(e->cand, wp->prefix, pre);
		/* never try a candidate longer than the longest token */
		while (end > start && pre + (size_t) (e->starts[end] - e->starts[start]) > wp->max_token_bytes)
			end--;
		for (; end > start; end--)
		{
			size_t		l = (size_t) (e->starts[end] - e->starts[start]);

			memcpy(e->cand + pre, e->word + e->starts[start], l);
			if ((id = vocab_find(wp, e->cand, pre + l)) >= 0)
				break;
		}
		if (id < 0)
		{
			np = 0;
			e->pieces[np++] = wp->unk_id;
			break;
		}
		e->pieces[np++] = id;
		start = end;
	}
	for (int i = 0; i < np && !e->full; i++)
		emit(e, e->pieces[i]);
reset:
	e->word_len = 0;
	e->n_chars = 0;
}

/* Stage 3: pre-tokenization of normalized code points. */
static void
stage3(WpEnc *e, uint32_t c)
{
	if (is_white_space(c))
	{
		end_word(e);
		return;
	}
	if (is_punct(c))
		end_word(e);			/* punctuation is a word of its own */
	if (e->n_chars <= e->wp->max_chars)
	{
		/* store up to max_chars + 1 characters: one more means "too long" */
		e->starts[e->n_chars++] = (int) e->word_len;
		e->word_len += (size_t) utf8_put(c, e->word + e->word_len);
	}
	if (is_punct(c))
		end_word(e);
}

/* Lowercase (Unicode full mapping, as Rust's char::to_lowercase) into stage 3. */
static void
lower_out(WpEnc *e, uint32_t c)
{
	if (!e->wp->lowercase)
		stage3(e, c);
	else if (c == 0x130)
	{
		/* the one unconditional multi-character lowercase mapping */
		stage3(e, 'i');
		stage3(e, 0x307);
	}
	else
		stage3(e, (uint32_t) utf8proc_tolower((utf8proc_int32_t) c));
}

static void
flush_run(WpEnc *e)
{
	for (int i = 0; i < e->run_len; i++)
		lower_out(e, e->run[i]);
	e->run_len = 0;
}

/* Stage 2: NFD with nonspacing marks dropped (strip_accents), then lowercase. */
static void
stage2(WpEnc *e, uint32_t c)
{
	utf8proc_int32_t d[WP_MAX_DECOMP];
	utf8proc_ssize_t n;
	int			last = 0;

	if (!e->wp->strip_accents)
	{
		lower_out(e, c);
		return;
	}
	n = utf8proc_decompose_char((utf8proc_int32_t) c, d, WP_MAX_DECOMP, UTF8PROC_DECOMPOSE, &last);
	if (n < 0 || n > WP_MAX_DECOMP)
	{
		d[0] = (utf8proc_int32_t) c;
		n = 1;
	}
	for (utf8proc_ssize_t i = 0; i < n; i++)
	{
		uint32_t	x = (uint32_t) d[i];
		int			ccc = utf8proc_get_property(d[i])->combining_class;
		int			j;

		if (ccc == 0)
		{
			flush_run(e);
			if (!is_mn(x))
				lower_out(e, x);
			continue;
		}
		if (is_mn(x))
			continue;
		if (e->run_len == WP_RUN_CAP)
			flush_run(e);
		/* stable insertion by combining class: canonical ordering */
		for (j = e->run_len; j > 0 && e->run_ccc[j - 1] > ccc; j--)
		{
			e->run[j] = e->run[j - 1];
			e->run_ccc[j] = e->run_ccc[j - 1];
		}
		e->run[j] = x;
		e->run_ccc[j] = (uint8_t) ccc;
		e->run_len++;
	}
}

/* Stage 1: clean_text and CJK spacing. */
static void
stage1(WpEnc *e, uint32_t c)
{
	const WordPiece *wp = e->wp;

	if (wp->clean_text)
	{
		if (c == 0 || c == 0xFFFD || is_control(c))
			return;
		if (is_white_space(c))
			c = ' ';
	}
	if (wp->chinese && is_cjk(c))
	{
		stage2(e, ' ');
		stage2(e, c);
		stage2(e, ' ');
	}
	else
		stage2(e, c);
}

/* The last code point of the len bytes at s (valid UTF-8, len > 0). */
static uint32_t
last_char(const char *s, size_t len)
{
	size_t		p = len - 1;

	while (p > 0 && ((uint8_t) s[p] & 0xC0) == 0x80)
		p--;
	return utf8_next((const uint8_t *) s, len, &p);
}

/* The longest added token matching text at pos (-1: none); single_word needs \w boundaries. */
static int
match_added(const WordPiece *wp, const uint8_t *s, size_t len, size_t pos, uint32_t prev)
{
	int			best = -1;

	for (int k = 0; k < wp->n_added; k++)
	{
		const WpAdded *a = &wp->added[k];

		if (a->len > len - pos || memcmp(s + pos, a->content, a->len) != 0 ||
			(best >= 0 && wp->added[best].len >= a->len))
			continue;
		if (a->single_word)
		{
			size_t		q = pos + a->len;

			if ((pos > 0 && is_word_char(prev)) || (q < len && is_word_char(utf8_next(s, len, &q))))
				continue;
		}
		best = k;
	}
	return best;
}

/* wordpiece_encode (with_specials) or wordpiece_encode_text. */
static int
encode(const WordPiece *wp, const char *text, size_t len, int32_t *ids, int max_ids,
	   bool with_specials)
{
	const uint8_t *s = (const uint8_t *) text;
	int			specials = with_specials ? wp->n_pre + wp->n_post : 0;
	int			pre = with_specials ? wp->n_pre : 0;
	int			n_pre = pre < max_ids ? pre : (max_ids > 0 ? max_ids : 0);
	WpEnc		e = {0};
	uint32_t	prev = 0;
	size_t		pos = 0;
	int			n;

	if (max_ids <= 0)
		return 0;
	memcpy(ids, wp->pre, sizeof(int32_t) * (size_t) n_pre);
	if (n_pre == max_ids)
		return n_pre;
	e.wp = wp;
	e.ids = ids + n_pre;
	e.cap = max_ids > specials ? max_ids - specials : 0;
	e.full = e.cap == 0;
	if (!e.full)
	{
		e.word = malloc((size_t) 4 * (wp->max_chars + 1));
		e.starts = malloc(sizeof(int) * (size_t) (wp->max_chars + 2));
		e.cand = malloc(wp->prefix_len + (size_t) 4 * (wp->max_chars + 1));
		e.pieces = malloc(sizeof(int32_t) * (size_t) (wp->max_chars + 1));
		if (e.word == NULL || e.starts == NULL || e.cand == NULL || e.pieces == NULL)
		{
			n = -1;
			goto done;
		}
	}
	while (pos < len && !e.full)
	{
		int			k = wp->added_first[s[pos]] ? match_added(wp, s, len, pos, prev) : -1;

		if (k >= 0)
		{
			/* an added token: the text before it is a segment of its own */
			flush_run(&e);
			end_word(&e);
			emit(&e, wp->added[k].id);
			pos += wp->added[k].len;
			prev = last_char(wp->added[k].content, wp->added[k].len);
			continue;
		}
		prev = utf8_next(s, len, &pos);
		stage1(&e, prev);
	}
	flush_run(&e);
	end_word(&e);
	n = n_pre + e.n;
	for (int i = 0; with_specials && i < wp->n_post && n < max_ids; i++)
		ids[n++] = wp->post[i];
done:
	free(e.word);
	free(e.starts);
	free(e.cand);
	free(e.pieces);
	return n;
}

int
wordpiece_encode(const WordPiece *wp, const char *text, size_t len, int32_t *ids, int max_ids)
{
	return encode(wp, text, len, ids, max_ids, true);
}

int
wordpiece_encode_text(const WordPiece *wp, const char *text, size_t len, int32_t *ids,
					  int max_ids)
{
	return encode(wp, text, len, ids, max_ids, false);
}
