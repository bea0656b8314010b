/*
 * bpe.c: byte-level BPE from tokenizer.json (format and algorithm in
 * bpe.h).
 *
 * Two hash tables: token string -> id (open addressing over ids) and
 * (left id, right id) -> (rank, merged id).  A piece's merges use a binary
 * heap of candidate pairs ordered by (rank, position), as `tokenizers`
 * does, so a hostile 1 MB word costs n log n rather than n^2; entries made
 * stale by a neighbouring merge are skipped when popped.
 */
#include "tokenizers/bpe.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "base/utf8.h"
#include "formats/hf_config.h"
#include "tokenizers/tok_json.h"

#define BPE_MAX_FILE ((size_t) 256 << 20)
#define BPE_MAX_ID ((1 << 24) - 1)
#define BPE_NO_PAIR UINT64_MAX

typedef struct BpeAdded
{
	char	   *content;
	size_t		len;
	int32_t		id;
	bool		lstrip,
				rstrip;
} BpeAdded;

typedef struct BpeMerge
{
	uint64_t	key;			/* left << 32 | right, BPE_NO_PAIR = free */
	int32_t		rank;
	int32_t		id;				/* the merged token */
} BpeMerge;

struct Bpe
{
	int			n_ids;			/* largest id + 1 */
	char	  **token;			/* (n_ids) owned strings, NULL for gaps */
	int32_t    *slots;			/* (smask + 1) string hash slots holding ids, -1 free */
	size_t		smask;
	BpeMerge   *merges;			/* (mmask + 1) */
	size_t		mmask;
	int32_t		byte_id[256];	/* vocabulary id of each byte's symbol, -1 if none */
	bool		add_prefix_space;
	BpeAdded   *added;
	int			n_added;
	bool		added_first[256];	/* first bytes of added tokens */
};

/* ---- tables ---------------------------------------------------------------- */

static uint64_t
fnv1a(const char *s, size_t len)
{
	uint64_t	h = 1469598103934665603ull;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t) s[i]) * 1099511628211ull;
	return h;
}

/* The slot of s (len bytes): where its id is, or the free slot it would take. */
static size_t
token_slot(const Bpe *bpe, const char *s, size_t len)
{
	for (size_t i = (size_t) fnv1a(s, len) & bpe->smask;; i = (i + 1) & bpe->smask)
	{
		int32_t		id = bpe->slots[i];

		if (id < 0 || (strlen(bpe->token[id]) == len && memcmp(bpe->token[id], s, len) == 0))
			return i;
	}
}

static int32_t
token_find(const Bpe *bpe, const char *s, size_t len)
{
	return bpe->slots[token_slot(bpe, s, len)];
}

static uint64_t
pair_key(int32_t left, int32_t right)
{
	return (uint64_t) (uint32_t) left << 32 | (uint32_t) right;
}

static uint64_t
mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

static BpeMerge *
merge_slot(const Bpe *bpe, uint64_t key)
{
	for (size_t i = (size_t) mix64(key) & bpe->mmask;; i = (i + 1) & bpe->mmask)
		if (bpe->merges[i].key == key || bpe->merges[i].key == BPE_NO_PAIR)
			return &bpe->merges[i];
}

/* Power of two at least 2 n (and 16). */
static size_t
table_size(size_t n)
{
	size_t		s = 16;

	while (s < 2 * n)
		s <<= 1;
	return s;
}

/* ---- loading ---------------------------------------------------------------- */

static const cJSON *
item(const cJSON *obj, const char *name)
{
	return cJSON_GetObjectItemCaseSensitive(obj, name);
}

static bool
opt_bool(const cJSON *obj, const char *name, bool def)
{
	const cJSON *v = item(obj, name);

	return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

/*
 * Record token s as id.  A string given twice keeps its last id and an id
 * given twice its last string, as the HashMaps `tokenizers` builds in order;
 * a slot whose id has since taken another string never matches again.
 */
static NnStatus
add_token(Bpe *bpe, const char *s, int32_t id, NnError *err)
{
	char	   *copy = strdup(s);

	if (copy == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "tokenizer: out of memory");
	free(bpe->token[id]);
	bpe->token[id] = copy;
	bpe->slots[token_slot(bpe, s, strlen(s))] = id;
	return NN_OK;
}

/*
 * The vocab and merges as plain lists, read from cJSON's tree or, on the
 * fast path, straight from the JSON text (tok_json.h): the tables are built
 * from these the same way whichever read them.
 */
typedef struct BpeMergeText
{
	const char *a;				/* NULL: malformed (neither "a b" nor ["a", "b"]) */
	const char *b;				/* NULL: a is the "a b" string form */
} BpeMergeText;

typedef struct BpeLists
{
	TokJsonVocab vocab;
	int			n_merges;
	BpeMergeText *merges;
	bool		merges_array;	/* merges was an array */
	char	   *arena;			/* the fast path's decoded strings */
} BpeLists;

static void
lists_free(BpeLists *l)
{
	tok_json_vocab_free(&l->vocab);
	free(l->merges);
	free(l->arena);
}

/* The tree's vocab {token: id}, each id checked. */
static NnStatus
vocab_from_tree(BpeLists *l, const cJSON *vocab, NnError *err)
{
	const cJSON *v;
	int			n = cJSON_GetArraySize(vocab);
	TokJsonVocab *tv = &l->vocab;

	if (!cJSON_IsObject(vocab))
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: BPE vocab is not an object");
	tv->strs = malloc(sizeof(char *) * (size_t) (n > 0 ? n : 1));
	tv->lens = malloc(sizeof(size_t) * (size_t) (n > 0 ? n : 1));
	tv->ids = malloc(sizeof(int32_t) * (size_t) (n > 0 ? n : 1));
	if (tv->strs == NULL || tv->lens == NULL || tv->ids == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "tokenizer: out of memory");
	cJSON_ArrayForEach(v, vocab)
	{
		if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > BPE_MAX_ID ||
			v->valuedouble != (double) (int32_t) v->valuedouble || v->string == NULL)
			return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: a BPE vocab id is not in 0..%d",
						   BPE_MAX_ID);
		tv->strs[tv->n] = v->string;
		tv->lens[tv->n] = strlen(v->string);
		tv->ids[tv->n++] = v->valueint;
	}
	return NN_OK;
}

/* The tree's merges, "a b" or ["a", "b"] each (checked when the table is built). */
static NnStatus
merges_from_tree(BpeLists *l, const cJSON *merges, NnError *err)
{
	const cJSON *m;
	int			n = cJSON_GetArraySize(merges);

	if (!(l->merges_array = cJSON_IsArray(merges)))
		return NN_OK;
	if ((l->merges = calloc((size_t) (n > 0 ? n : 1), sizeof(BpeMergeText))) == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "tokenizer: out of memory");
	cJSON_ArrayForEach(m, merges)
	{
		BpeMergeText *t = &l->merges[l->n_merges++];

		if (cJSON_IsString(m))
			t->a = m->valuestring;
		else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
				 cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
				 cJSON_IsString(cJSON_GetArrayItem(m, 1)))
		{
			t->a = cJSON_GetArrayItem(m, 0)->valuestring;
			t->b = cJSON_GetArrayItem(m, 1)->valuestring;
		}
	}
	return NN_OK;
}

/* vocab's strings and added tokens' ids decide n_ids; then every string goes in. */
static NnStatus
parse_vocab(Bpe *bpe, const BpeLists *l, const cJSON *added, NnError *err)
{
	const cJSON *v;
	int			max_id = -1,
				n = l->vocab.n;
	NnStatus	s;

	for (int i = 0; i < l->vocab.n; i++)
		max_id = l->vocab.ids[i] > max_id ? l->vocab.ids[i] : max_id;
	cJSON_ArrayForEach(v, added)
	{
		const cJSON *id = item(v, "id");

		if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > BPE_MAX_ID ||
			!cJSON_IsString(item(v, "content")))
			return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: malformed added token");
		max_id = id->valueint > max_id ? id->valueint : max_id;
		n++;
	}
	if (max_id < 0)
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: the BPE vocab is empty");
	bpe->n_ids = max_id + 1;
	bpe->smask = table_size((size_t) n) - 1;
	bpe->token = calloc((size_t) bpe->n_ids, sizeof(char *));
	bpe->slots = malloc(sizeof(int32_t) * (bpe->smask + 1));
	if (bpe->token == NULL || bpe->slots == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "tokenizer: out of memory");
	memset(bpe->slots, 0xff, sizeof(int32_t) * (bpe->smask + 1));
	for (int i = 0; i < l->vocab.n; i++)
		if ((s = add_token(bpe, l->vocab.strs[i], l->vocab.ids[i], err)) != NN_OK)
			return s;
	return NN_OK;
}

/* One merge, "a b" or ["a", "b"], into its two parts. */
static bool
merge_parts(const BpeMergeText *m, char *buf, size_t cap, const char **a, const char **b)
{
	char	   *sp;

	if (m->a == NULL)
		return false;
	if (m->b != NULL)
	{
		*a = m->a;
		*b = m->b;
		return true;
	}
	if (strlen(m->a) >= cap)
		return false;
	strcpy(buf, m->a);
	/* `tokenizers` wants exactly two parts split on ' ' */
	if ((sp = strchr(buf, ' ')) == NULL || strchr(sp + 1, ' ') != NULL)
		return false;
	*sp = '\0';
	*a = buf;
	*b = sp + 1;
	return true;
}

static NnStatus
parse_merges(Bpe *bpe, const BpeLists *l, NnError *err)
{
	int			n = l->n_merges,
				rank = 0;
	size_t		cap = 4096;
	char	   *buf = malloc(cap),
			   *joined = malloc(2 * cap);
	NnStatus	s = NN_OK;

	if (!l->merges_array)
		s = nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: BPE merges is not an array");
	else if (buf == NULL || joined == NULL ||
			 (bpe->merges = malloc(sizeof(BpeMerge) * table_size((size_t) n))) == NULL)
		s = nn_fail(err, NN_ERR_NOMEM, "tokenizer: out of memory");
	if (s != NN_OK)
	{
		free(buf);
		free(joined);
		return s;
	}
	bpe->mmask = table_size((size_t) n) - 1;
	for (size_t i = 0; i <= bpe->mmask; i++)
		bpe->merges[i].key = BPE_NO_PAIR;
	for (int k = 0; k < n; k++)
	{
		const char *a,
				   *b;
		int32_t		ia,
					ib,
					ij;
		BpeMerge   *slot;
		size_t		la,
					lb;

		if (!merge_parts(&l->merges[k], buf, cap, &a, &b) ||
			(la = strlen(a)) + (lb = strlen(b)) >= 2 * cap)
		{
			s = nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: merge %d is malformed", rank);
			break;
		}
		memcpy(joined, a, la);
		memcpy(joined + la, b, lb + 1);
		ia = token_find(bpe, a, la);
		ib = token_find(bpe, b, lb);
		ij = token_find(bpe, joined, strlen(joined));
		if (ia < 0 || ib < 0 || ij < 0)
		{
			s = nn_fail(err, NN_ERR_FORMAT,
						"tokenizer.json: merge %d (\"%.40s\" \"%.40s\") is not in the vocabulary",
						rank, a, b);
			break;
		}
		/* a repeated pair keeps its last rank, as the HashMap `tokenizers` builds */
		slot = merge_slot(bpe, pair_key(ia, ib));
		slot->key = pair_key(ia, ib);
		slot->rank = rank++;
		slot->id = ij;
	}
	free(buf);
	free(joined);
	return s;
}

static NnStatus
parse_added(Bpe *bpe, const cJSON *added, NnError *err)
{
	const cJSON *a;
	int			n = cJSON_GetArraySize(added);
	NnStatus	s;

	if (n == 0)
		return NN_OK;
	if ((bpe->added = calloc((size_t) n, sizeof(BpeAdded))) == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "tokenizer: out of memory");
	cJSON_ArrayForEach(a, added)
	{
		BpeAdded   *t = &bpe->added[bpe->n_added];
		const char *content = item(a, "content")->valuestring;

		if (content[0] == '\0')
			continue;			/* an empty token never matches */
		if ((s = add_token(bpe, content, item(a, "id")->valueint, err)) != NN_OK)
			return s;
		if ((t->content = strdup(content)) == NULL)
			return nn_fail(err, NN_ERR_NOMEM, "tokenizer: out of memory");
		t->len = strlen(content);
		t->id = item(a, "id")->valueint;
		t->lstrip = opt_bool(a, "lstrip", false);
		t->rstrip = opt_bool(a, "rstrip", false);
		bpe->added_first[(uint8_t) content[0]] = true;
		bpe->n_added++;
	}
	return NN_OK;
}

/* ByteLevel, alone or as the only member of a Sequence. */
static NnStatus
parse_pre_tokenizer(Bpe *bpe, const cJSON *pre, NnError *err)
{
	const cJSON *type = item(pre, "type");

	if (cJSON_IsString(type) && strcmp(type->valuestring, "Sequence") == 0 &&
		cJSON_GetArraySize(item(pre, "pretokenizers")) == 1)
	{
		pre = cJSON_GetArrayItem(item(pre, "pretokenizers"), 0);
		type = item(pre, "type");
	}
	if (!cJSON_IsString(type) || strcmp(type->valuestring, "ByteLevel") != 0)
		return nn_fail(err, NN_ERR_FORMAT,
					   "tokenizer.json: a BPE pre_tokenizer other than ByteLevel is not supported");
	if (!opt_bool(pre, "use_regex", true))
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: ByteLevel without use_regex is not supported");
	bpe->add_prefix_space = opt_bool(pre, "add_prefix_space", true);
	return NN_OK;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves. */
static uint32_t
byte_char(int b)
{
	int			shift = 0;

	if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
		return (uint32_t) b;
	/* the others, in byte order, take U+0100 onwards */
	for (int x = 0; x < b; x++)
		if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255)))
			shift++;
	return 256u + (uint32_t) shift;
}

static NnStatus
check_model(const cJSON *model, NnError *err)
{
	static const char *const null_fields[] = {"dropout", "continuing_subword_prefix",
	"end_of_word_suffix"};
	const cJSON *type = item(model, "type");

	if (!cJSON_IsObject(model) || (type != NULL &&
								   (!cJSON_IsString(type) || strcmp(type->valuestring, "BPE") != 0)))
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: the model is not BPE");
	for (size_t i = 0; i < sizeof(null_fields) / sizeof(null_fields[0]); i++)
	{
		const cJSON *f = item(model, null_fields[i]);

		if (f != NULL && !cJSON_IsNull(f) && !(cJSON_IsString(f) && f->valuestring[0] == '\0'))
			return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: BPE %s is not supported",
						   null_fields[i]);
	}
	if (opt_bool(model, "byte_fallback", false) || opt_bool(model, "fuse_unk", false))
		return nn_fail(err, NN_ERR_FORMAT,
					   "tokenizer.json: BPE byte_fallback and fuse_unk are not supported");
	return NN_OK;
}

/* Grow an array of n items of size bytes to hold one more; false when out of memory. */
static bool
grow(void **arr, int n, int *cap, size_t size)
{
	void	   *p;

	if (n < *cap)
		return true;
	*cap = *cap < 1024 ? 1024 : 2 * *cap;
	if ((p = realloc(*arr, size * (size_t) *cap)) == NULL)
		return false;
	*arr = p;
	return true;
}

/* The fast path's merges: "a b" or ["a", "b"] of plain strings each. */
static bool
merges_from_text(BpeLists *l, const char *json, TokJsonSpan merges, char **arena)
{
	TokJsonIter it,
				pair;
	TokJsonSpan k,
				v,
				part[3];
	int			r,
				cap = 0;

	tok_json_iter(&it, json, merges);
	while ((r = tok_json_next(&it, &k, &v)) == 1)
	{
		BpeMergeText *t;
		long		n;
		int			np = 0;

		if (!grow((void **) &l->merges, l->n_merges, &cap, sizeof(BpeMergeText)))
			return false;
		t = &l->merges[l->n_merges++];
		t->b = NULL;
		if (json[v.start] == '"')
			part[np++] = v;
		else if (json[v.start] == '[' && tok_json_iter(&pair, json, v))
			while (np < 3 && tok_json_next(&pair, &k, &part[np]) == 1)
				np++;
		if ((json[v.start] == '[' && np != 2) || np == 0)
			return false;
		for (int i = 0; i < np; i++)
		{
			if ((n = tok_json_string(json, part[i], *arena)) < 0)
				return false;
			*(i == 0 ? &t->a : &t->b) = *arena;
			*arena += n + 1;
		}
	}
	return r == 0;
}

/*
 * The fast path (tok_json.h): model.vocab and model.merges read from the
 * text, their spans in spans[0..1]; false (l emptied) to go through cJSON.
 */
static bool
lists_from_text(BpeLists *l, const char *json, size_t len, TokJsonSpan spans[2])
{
	TokJsonSpan root,
				model;
	char	   *arena;

	memset(l, 0, sizeof(*l));
	if (!tok_json_root(json, len, &root) || !tok_json_find(json, root, "model", "{", &model) ||
		!tok_json_find(json, model, "vocab", "{", &spans[0]) ||
		!tok_json_find(json, model, "merges", "[", &spans[1]))
		return false;
	/* each string decodes to at most its quoted length - 1 bytes with the NUL */
	l->arena = malloc(spans[0].end - spans[0].start + spans[1].end - spans[1].start);
	arena = l->arena;
	l->merges_array = true;
	if (l->arena != NULL && tok_json_vocab(json, spans[0], BPE_MAX_ID, &l->vocab, &arena) &&
		merges_from_text(l, json, spans[1], &arena))
		return true;
	lists_free(l);
	memset(l, 0, sizeof(*l));
	return false;
}

/* fast: the lists read from the text, or NULL to read them from the tree. */
static NnStatus
parse_root(Bpe *bpe, const cJSON *root, const BpeLists *fast, NnError *err)
{
	const cJSON *model = item(root, "model");
	const cJSON *added = item(root, "added_tokens");
	const cJSON *norm = item(root, "normalizer");
	BpeLists	tree = {0};
	NnStatus	s;

	if (added != NULL && !cJSON_IsArray(added) && !cJSON_IsNull(added))
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: added_tokens is not an array");
	if (norm != NULL && !cJSON_IsNull(norm))
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: a BPE normalizer is not supported");
	if ((s = check_model(model, err)) ||
		(s = parse_pre_tokenizer(bpe, item(root, "pre_tokenizer"), err)))
		return s;
	if (fast == NULL && (s = vocab_from_tree(&tree, item(model, "vocab"), err)) == NN_OK)
		s = merges_from_tree(&tree, item(model, "merges"), err);
	if (s == NN_OK)
		s = parse_vocab(bpe, fast ? fast : &tree, cJSON_IsArray(added) ? added : NULL, err);
	if (s == NN_OK)
		s = parse_merges(bpe, fast ? fast : &tree, err);
	if (s == NN_OK)
		s = parse_added(bpe, cJSON_IsArray(added) ? added : NULL, err);
	lists_free(&tree);
	if (s != NN_OK)
		return s;
	for (int b = 0; b < 256; b++)
	{
		char		u[4];
		int			n = (int) utf8proc_encode_char((utf8proc_int32_t) byte_char(b),
												   (utf8proc_uint8_t *) u);

		bpe->byte_id[b] = token_find(bpe, u, (size_t) n);
	}
	return NN_OK;
}

/* The tokenizer of json; fast says whether the vocab and merges may skip cJSON's tree. */
static NnStatus
from_json(Bpe **out, const char *json, size_t len, bool fast, NnError *err)
{
	cJSON	   *root;
	Bpe		   *bpe;
	NnStatus	s;
	BpeLists	lists;
	TokJsonSpan spans[2];
	char	   *blank = NULL;

	*out = NULL;
	fast = fast && lists_from_text(&lists, json, len, spans);
	if (fast && (blank = tok_json_blanked(json, len, spans, 2)) == NULL)
	{
		lists_free(&lists);
		fast = false;
	}
	root = cJSON_ParseWithLength(fast ? blank : json, len);
	free(blank);
	if (!cJSON_IsObject(root))
		s = nn_fail(err, NN_ERR_FORMAT, "tokenizer.json is not a JSON object");
	else if ((bpe = calloc(1, sizeof(Bpe))) == NULL)
		s = nn_fail(err, NN_ERR_NOMEM, "tokenizer: out of memory");
	else if ((s = parse_root(bpe, root, fast ? &lists : NULL, err)) != NN_OK)
		bpe_free(bpe);
	else
		*out = bpe;
	cJSON_Delete(root);
	if (fast)
		lists_free(&lists);
	return s;
}

NnStatus
bpe_from_json(Bpe **out, const char *json, size_t len, NnError *err)
{
	return from_json(out, json, len, true, err);
}

NnStatus
bpe_from_json_tree(Bpe **out, const char *json, size_t len, NnError *err)
{
	return from_json(out, json, len, false, err);
}

NnStatus
bpe_load(Bpe **out, const char *path, NnError *err)
{
	size_t		len;
	char	   *json = hf_read_file(path, BPE_MAX_FILE, &len);
	NnStatus	s;

	*out = NULL;
	if (json == NULL)
		return nn_fail(err, NN_ERR_IO, "cannot read \"%s\"", path);
	s = bpe_from_json(out, json, len, err);
	free(json);
	return s;
}

void
bpe_free(Bpe *bpe)
{
	if (bpe == NULL)
		return;
	for (int i = 0; bpe->token != NULL && i < bpe->n_ids; i++)
		free(bpe->token[i]);
	for (int i = 0; i < bpe->n_added; i++)
		free(bpe->added[i].content);
	free(bpe->token);
	free(bpe->slots);
	free(bpe->merges);
	free(bpe->added);
	free(bpe);
}

int
bpe_vocab_size(const Bpe *bpe)
{
	return bpe->n_ids;
}

const char *
bpe_token(const Bpe *bpe, int32_t id)
{
	return id >= 0 && id < bpe->n_ids ? bpe->token[id] : NULL;
}

int32_t
bpe_token_id(const Bpe *bpe, const char *token)
{
	return token_find(bpe, token, strlen(token));
}

/* ---- encoding ----------------------------------------------------------------- */

/* Work buffers of one encode call, sized for the longest stretch. */
typedef struct BpeEnc
{
	const Bpe  *bpe;
	int32_t    *ids;
	int			n,
				cap;
	bool		oom;
	uint32_t   *cp;				/* code points of the stretch (with the prefix space) */
	/* one piece, grown to the longest seen (piece_cap bytes) */
	int			piece_cap;
	uint8_t    *bytes;			/* its UTF-8 */
	int32_t    *sym;			/* per symbol: token id, -2 once merged away */
	int		   *next,
			   *prev;
	uint64_t   *heap;			/* rank << 32 | position */
	int			heap_n;
} BpeEnc;

/* Room for a piece of n bytes; false when out of memory. */
static bool
piece_room(BpeEnc *e, int n)
{
	void	   *p[5];
	int			cap = e->piece_cap;

	if (n <= cap)
		return true;
	while (cap < n)
		cap = cap < 64 ? 64 : 2 * cap;
	p[0] = realloc(e->bytes, (size_t) cap);
	if (p[0] != NULL)
		e->bytes = p[0];
	p[1] = realloc(e->sym, sizeof(int32_t) * (size_t) cap);
	if (p[1] != NULL)
		e->sym = p[1];
	p[2] = realloc(e->next, sizeof(int) * (size_t) cap);
	if (p[2] != NULL)
		e->next = p[2];
	p[3] = realloc(e->prev, sizeof(int) * (size_t) cap);
	if (p[3] != NULL)
		e->prev = p[3];
	/* each merge pushes at most two entries: 3 per byte bounds the heap */
	p[4] = realloc(e->heap, sizeof(uint64_t) * 3 * (size_t) cap);
	if (p[4] != NULL)
		e->heap = p[4];
	if (!p[0] || !p[1] || !p[2] || !p[3] || !p[4])
		return false;
	e->piece_cap = cap;
	return true;
}

static void
emit(BpeEnc *e, int32_t id)
{
	if (e->n < e->cap)
		e->ids[e->n++] = id;
}

static void
heap_push(BpeEnc *e, uint64_t v)
{
	int			i = e->heap_n++;

	while (i > 0 && e->heap[(i - 1) / 2] > v)
	{
		e->heap[i] = e->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	e->heap[i] = v;
}

static uint64_t
heap_pop(BpeEnc *e)
{
	uint64_t	top = e->heap[0],
				last = e->heap[--e->heap_n];
	int			i = 0;

	for (;;)
	{
		int			c = 2 * i + 1;

		if (c >= e->heap_n)
			break;
		if (c + 1 < e->heap_n && e->heap[c + 1] < e->heap[c])
			c++;
		if (e->heap[c] >= last)
			break;
		e->heap[i] = e->heap[c];
		i = c;
	}
	if (e->heap_n > 0)
		e->heap[i] = last;
	return top;
}

/* The merge of symbols i and next[i], or NULL. */
static const BpeMerge *
pair_merge(const BpeEnc *e, int i)
{
	const BpeMerge *m;
	int			j = e->next[i];

	if (j < 0 || e->sym[i] < 0 || e->sym[j] < 0)
		return NULL;
	m = merge_slot(e->bpe, pair_key(e->sym[i], e->sym[j]));
	return m->key == BPE_NO_PAIR ? NULL : m;
}

static void
push_pair(BpeEnc *e, int i)
{
	const BpeMerge *m = i >= 0 ? pair_merge(e, i) : NULL;

	if (m != NULL)
		heap_push(e, (uint64_t) (uint32_t) m->rank << 32 | (uint32_t) i);
}

/* BPE over the n bytes of one piece, emitting its tokens. */
static void
bpe_piece(BpeEnc *e, int n)
{
	e->heap_n = 0;
	for (int i = 0; i < n; i++)
	{
		e->sym[i] = e->bpe->byte_id[e->bytes[i]];
		e->next[i] = i + 1 < n ? i + 1 : -1;
		e->prev[i] = i - 1;
	}
	for (int i = 0; i + 1 < n; i++)
		push_pair(e, i);
	while (e->heap_n > 0)
	{
		uint64_t	top = heap_pop(e);
		int			i = (int) (uint32_t) top,
					j;
		const BpeMerge *m = e->sym[i] == -2 ? NULL : pair_merge(e, i);

		/* stale: i or its neighbour changed since the entry was pushed */
		if (m == NULL || (uint32_t) m->rank != (uint32_t) (top >> 32))
			continue;
		j = e->next[i];
		e->sym[i] = m->id;
		e->sym[j] = -2;
		e->next[i] = e->next[j];
		if (e->next[j] >= 0)
			e->prev[e->next[j]] = i;
		push_pair(e, e->prev[i]);
		push_pair(e, i);
	}
	for (int i = 0; i >= 0 && i < n; i = e->next[i])
		if (e->sym[i] >= 0)
			emit(e, e->sym[i]);
}

static bool
is_space(uint32_t c)
{
	return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
		(c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
		c == 0x205F || c == 0x3000;
}

/* 'L' letter, 'N' number, 'S' white space, 'O' anything else. */
static char
char_class(uint32_t c)
{
	utf8proc_category_t cat;

	if (is_space(c))
		return 'S';
	cat = utf8proc_category((utf8proc_int32_t) c);
	if (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO)
		return 'L';
	if (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO)
		return 'N';
	return 'O';
}

/* The end of GPT-2's pattern match at cp[i] (i < n). */
static int
gpt2_match(const uint32_t *cp, int n, int i)
{
	char		k;
	int			j;

	if (cp[i] == '\'' && i + 1 < n)
	{
		uint32_t	a = cp[i + 1],
					b = i + 2 < n ? cp[i + 2] : 0;

		if (a == 's' || a == 't' || a == 'm' || a == 'd')
			return i + 2;
		if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
			return i + 3;
	}
	k = char_class(cp[i]);
	if (k == 'S')
	{
		/* ' ?X+' takes the space along when a letter, number or other follows it */
		if (cp[i] == ' ' && i + 1 < n && char_class(cp[i + 1]) != 'S')
			k = char_class(cp[i + 1]), i++;
		else
		{
			/* \s+(?!\S): the run, less its last space when something follows; else \s+ */
			for (j = i; j < n && char_class(cp[j]) == 'S'; j++)
				;
			return j == n || j - i < 2 ? j : j - 1;
		}
	}
	for (j = i + 1; j < n && char_class(cp[j]) == k; j++)
		;
	return j;
}

/* Pre-tokenize and encode the n code points in e->cp. */
static void
encode_stretch(BpeEnc *e, int n)
{
	for (int i = 0; i < n && e->n < e->cap && !e->oom;)
	{
		int			j = gpt2_match(e->cp, n, i),
					nb = 0;

		if (!piece_room(e, 4 * (j - i)))
		{
			e->oom = true;
			return;
		}
		for (int k = i; k < j; k++)
			nb += (int) utf8proc_encode_char((utf8proc_int32_t) e->cp[k], e->bytes + nb);
		bpe_piece(e, nb);
		i = j;
	}
}

/* Decode s[0..len) into e->cp (with the prefix space) and encode it. */
static void
encode_text(BpeEnc *e, const uint8_t *s, size_t len)
{
	size_t		pos = 0;
	int			n = 0;

	if (len == 0)
		return;
	while (pos < len)
	{
		bool		valid;

		e->cp[n++] = utf8_decode_next(s, len, &pos, &valid);
	}
	if (e->bpe->add_prefix_space && e->cp[0] != ' ')
	{
		memmove(e->cp + 1, e->cp, sizeof(uint32_t) * (size_t) n);
		e->cp[0] = ' ';
		n++;
	}
	encode_stretch(e, n);
}

/* The longest added token at s[pos] (-1: none). */
static int
match_added(const Bpe *bpe, const uint8_t *s, size_t len, size_t pos)
{
	int			best = -1;

	for (int k = 0; k < bpe->n_added; k++)
	{
		const BpeAdded *a = &bpe->added[k];

		if (a->len <= len - pos && memcmp(s + pos, a->content, a->len) == 0 &&
			(best < 0 || bpe->added[best].len < a->len))
			best = k;
	}
	return best;
}

/* Whether the byte at s[i] is ASCII white space (what lstrip/rstrip swallow here). */
static bool
ascii_space(uint8_t c)
{
	return c == ' ' || (c >= 0x09 && c <= 0x0D);
}


int
bpe_encode(const Bpe *bpe, const char *text, size_t len, int32_t *ids, int max_ids)
{
	const uint8_t *s = (const uint8_t *) text;
	BpeEnc		e = {.bpe = bpe, .ids = ids, .cap = max_ids};
	size_t		start = 0,
				pos = 0;
	int			n = -1;

	if (max_ids <= 0)
		return 0;
	/* a stretch of len bytes has at most len + 1 code points (with the prefix space) */
	if (len > (size_t) 1 << 28 || (e.cp = malloc(sizeof(uint32_t) * (len + 2))) == NULL)
		goto done;
	while (pos < len && e.n < e.cap && !e.oom)
	{
		int			k = bpe->added_first[s[pos]] ? match_added(bpe, s, len, pos) : -1;
		size_t		end,
					after;

		if (k < 0)
		{
			pos++;
			continue;
		}
		end = pos;
		after = pos + bpe->added[k].len;
		if (bpe->added[k].lstrip)
			while (end > start && ascii_space(s[end - 1]))
				end--;
		if (bpe->added[k].rstrip)
			while (after < len && ascii_space(s[after]))
				after++;
		encode_text(&e, s + start, end - start);
		emit(&e, bpe->added[k].id);
		start = pos = after;
	}
	if (e.n < e.cap)
		encode_text(&e, s + start, len - start);
	n = e.oom ? -1 : e.n;
done:
	free(e.cp);
	free(e.bytes);
	free(e.sym);
	free(e.next);
	free(e.prev);
	free(e.heap);
	return n;
}
