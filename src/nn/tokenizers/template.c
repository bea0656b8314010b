/*
 * template.c: special tokens around one text or a pair, and transformers'
 * truncation (template.h).
 */
#include "tokenizers/template.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizers/tok_json.h"

#define TOK_MAX_ID ((1 << 24) - 1)
#define TOK_MAX_PROBE (1 << 28)		/* longest text length measured exactly, in ids */

static const cJSON *
item(const cJSON *obj, const char *name)
{
	return cJSON_GetObjectItemCaseSensitive(obj, name);
}

static bool
add_item(TokItem *list, int *n, int32_t id, int type_id)
{
	if (*n >= TOK_TEMPLATE_MAX)
		return false;
	list[*n].id = id;
	list[*n].type_id = (uint8_t) type_id;
	(*n)++;
	return true;
}

/* One TemplateProcessing template ("single" or "pair") into list. */
static NnStatus
parse_items(TokItem *list, int *n, const cJSON *items, const cJSON *specials, bool pair,
			NnError *err)
{
	const cJSON *it;
	int			seen = 0;

	*n = 0;
	if (!cJSON_IsArray(items))
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: template is not an array");
	cJSON_ArrayForEach(it, items)
	{
		const cJSON *sp = item(it, "SpecialToken");
		const cJSON *seq = item(it, "Sequence");
		const cJSON *body = sp ? sp : seq;
		const cJSON *name = item(body, "id");
		const cJSON *type = item(body, "type_id");
		int			type_id = cJSON_IsNumber(type) ? type->valueint : 0;

		if (!cJSON_IsString(name) || type_id < 0 || type_id > 255 ||
			(type != NULL && !cJSON_IsNumber(type)))
			return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: malformed template item");
		if (seq != NULL)
		{
			int			which = strcmp(name->valuestring, "A") == 0 ? 1 :
				strcmp(name->valuestring, "B") == 0 && pair ? 2 : 0;

			if (which == 0 || (seen & which) || !add_item(list, n, which == 1 ? TOK_SEQ_A : TOK_SEQ_B, type_id))
				return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: template sequence \"%.20s\" "
							   "is unknown, repeated or too late", name->valuestring);
			seen |= which;
			continue;
		}
		{
			const cJSON *ids = item(item(specials, name->valuestring), "ids");
			const cJSON *id;

			if (!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) == 0)
				return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: template special \"%.40s\" has no ids",
							   name->valuestring);
			cJSON_ArrayForEach(id, ids)
				if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > TOK_MAX_ID ||
					!add_item(list, n, id->valueint, type_id))
				return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: template special \"%.40s\" "
							   "has a bad id or the template is too long", name->valuestring);
		}
	}
	if (seen != (pair ? 3 : 1))
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: template lacks a sequence");
	return NN_OK;
}

/* [token, id] of BertProcessing / RobertaProcessing. */
static bool
pair_id(const cJSON *pair, int32_t *id)
{
	const cJSON *v = cJSON_GetArrayItem(pair, 1);

	if (!cJSON_IsArray(pair) || !cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > TOK_MAX_ID)
		return false;
	*id = v->valueint;
	return true;
}

static NnStatus
parse_processor(TokTemplate *t, const cJSON *pp, NnError *err)
{
	const cJSON *type = item(pp, "type");
	int32_t		cls,
				sep;
	NnStatus	s;

	if (pp == NULL || cJSON_IsNull(pp))
	{
		memset(t, 0, sizeof(*t));
		add_item(t->single, &t->n_single, TOK_SEQ_A, 0);
		add_item(t->pair, &t->n_pair, TOK_SEQ_A, 0);
		add_item(t->pair, &t->n_pair, TOK_SEQ_B, 1);
		return NN_OK;
	}
	if (!cJSON_IsString(type))
		return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: post_processor has no type");
	if (strcmp(type->valuestring, "TemplateProcessing") == 0)
	{
		if ((s = parse_items(t->single, &t->n_single, item(pp, "single"),
							 item(pp, "special_tokens"), false, err)))
			return s;
		return parse_items(t->pair, &t->n_pair, item(pp, "pair"), item(pp, "special_tokens"),
						   true, err);
	}
	if (strcmp(type->valuestring, "BertProcessing") == 0 ||
		strcmp(type->valuestring, "RobertaProcessing") == 0)
	{
		if (!pair_id(item(pp, "cls"), &cls) || !pair_id(item(pp, "sep"), &sep))
			return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: %s without cls and sep",
						   type->valuestring);
		if (type->valuestring[0] == 'B')
			tok_template_bert(t, cls, sep);
		else
			tok_template_roberta(t, cls, sep);
		return NN_OK;
	}
	if (strcmp(type->valuestring, "Sequence") == 0)
	{
		const cJSON *p,
				   *found = NULL;

		cJSON_ArrayForEach(p, item(pp, "processors"))
		{
			const cJSON *pt = item(p, "type");

			if (cJSON_IsString(pt) && strcmp(pt->valuestring, "ByteLevel") == 0)
				continue;		/* offsets only */
			if (found != NULL)
				return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: two post-processors in a Sequence");
			found = p;
		}
		return parse_processor(t, found, err);
	}
	return nn_fail(err, NN_ERR_FORMAT, "tokenizer.json: post_processor \"%.40s\" is not supported",
				   type->valuestring);
}

/*
 * cJSON's tree of json without the value of its "model" member when that
 * is plain JSON (tok_json.h): the template never reads it, and a BPE or
 * Unigram model is most of the file (50k pieces, a node or three each).
 */
static cJSON *
parse_without_model(const char *json, size_t len)
{
	TokJsonSpan root,
				model;
	char	   *blank;
	cJSON	   *tree;

	if (!tok_json_root(json, len, &root) || !tok_json_find(json, root, "model", "{[", &model) ||
		(blank = tok_json_blanked(json, len, &model, 1)) == NULL)
		return cJSON_ParseWithLength(json, len);
	tree = cJSON_ParseWithLength(blank, len);
	free(blank);
	return tree;
}

NnStatus
tok_template_from_json(TokTemplate *t, const char *json, size_t len, NnError *err)
{
	cJSON	   *root = parse_without_model(json, len);
	NnStatus	s;

	memset(t, 0, sizeof(*t));
	if (!cJSON_IsObject(root))
		s = nn_fail(err, NN_ERR_FORMAT, "tokenizer.json is not a JSON object");
	else
		s = parse_processor(t, item(root, "post_processor"), err);
	cJSON_Delete(root);
	return s;
}

void
tok_template_bert(TokTemplate *t, int32_t cls, int32_t sep)
{
	memset(t, 0, sizeof(*t));
	add_item(t->single, &t->n_single, cls, 0);
	add_item(t->single, &t->n_single, TOK_SEQ_A, 0);
	add_item(t->single, &t->n_single, sep, 0);
	add_item(t->pair, &t->n_pair, cls, 0);
	add_item(t->pair, &t->n_pair, TOK_SEQ_A, 0);
	add_item(t->pair, &t->n_pair, sep, 0);
	add_item(t->pair, &t->n_pair, TOK_SEQ_B, 1);
	add_item(t->pair, &t->n_pair, sep, 1);
}

void
tok_template_roberta(TokTemplate *t, int32_t cls, int32_t sep)
{
	const int32_t pair[] = {cls, TOK_SEQ_A, sep, sep, TOK_SEQ_B, sep};

	memset(t, 0, sizeof(*t));
	add_item(t->single, &t->n_single, cls, 0);
	add_item(t->single, &t->n_single, TOK_SEQ_A, 0);
	add_item(t->single, &t->n_single, sep, 0);
	for (int i = 0; i < 6; i++)
		add_item(t->pair, &t->n_pair, pair[i], 0);
}

int32_t
tok_template_max_id(const TokTemplate *t)
{
	int32_t		m = -1;

	for (int i = 0; i < t->n_single; i++)
		m = t->single[i].id > m ? t->single[i].id : m;
	for (int i = 0; i < t->n_pair; i++)
		m = t->pair[i].id > m ? t->pair[i].id : m;
	return m;
}

/*
 * Encode text into *buf, growing it until the count is below its capacity,
 * so that the count is the text's exact length in ids (up to TOK_MAX_PROBE),
 * beginning with more than want ids of room.  Returns the count or -1.
 */
static int
encode_measured(TokEncodeFn encode, const void *tok, const char *text, size_t len,
				int32_t **buf, int *cap, int want)
{
	/* start with some room to spare: each retry encodes the text again */
	for (int room = want < 1024 ? 1024 : want + 1;; room = room > TOK_MAX_PROBE / 2 ? TOK_MAX_PROBE : 2 * room)
	{
		int			n;

		if (room > *cap)
		{
			int32_t    *grown = realloc(*buf, sizeof(int32_t) * (size_t) room);

			if (grown == NULL)
				return -1;
			*buf = grown;
			*cap = room;
		}
		n = encode(tok, text, len, *buf, room);
		if (n < room || n < 0 || room >= TOK_MAX_PROBE)
			return n;
	}
}

/* LongestFirst of `tokenizers`: the kept lengths of a (na) and b (nb) in room ids. */
static void
truncate_pair(int na, int nb, int room, int *ka, int *kb)
{
	bool		swap = na > nb;
	int			n1 = swap ? nb : na,
				n2 = swap ? na : nb;

	if (n1 + n2 > room)
	{
		if (n1 <= room / 2)
			n2 = room - n1;
		else
		{
			n1 = room / 2;
			n2 = n1 + room % 2;
		}
	}
	*ka = swap ? n2 : n1;
	*kb = swap ? n1 : n2;
}

static int
count_specials(const TokItem *items, int n)
{
	int			k = 0;

	for (int i = 0; i < n; i++)
		k += items[i].id >= 0;
	return k;
}

int
tok_template_encode(const TokTemplate *t, TokEncodeFn encode, const void *tok,
					const char *a, size_t alen, const char *b, size_t blen,
					int32_t *ids, uint8_t *type_ids, int max_ids)
{
	const TokItem *items = b != NULL ? t->pair : t->single;
	int			n_items = b != NULL ? t->n_pair : t->n_single;
	int			room = max_ids - count_specials(items, n_items);
	int32_t    *ba = NULL,
			   *bb = NULL;
	int			cap_a = 0,
				cap_b = 0,
				na = 0,
				nb = 0,
				n = 0;

	if (max_ids <= 0)
		return 0;
	room = room > 0 ? room : 0;
	if (b == NULL)
	{
		/* one text: its first room ids are all that is needed */
		ba = malloc(sizeof(int32_t) * (size_t) (room > 0 ? room : 1));
		na = ba == NULL ? -1 : room > 0 ? encode(tok, a, alen, ba, room) : 0;
	}
	else
	{
		/* the exact lengths decide the split, so both are measured past the room */
		na = encode_measured(encode, tok, a, alen, &ba, &cap_a, room);
		nb = na < 0 ? -1 : encode_measured(encode, tok, b, blen, &bb, &cap_b, room);
	}
	if (na < 0 || nb < 0)
		n = -1;
	else
	{
		if (b == NULL)
			na = na < room ? na : room;
		else
			truncate_pair(na, nb, room, &na, &nb);
		for (int i = 0; i < n_items && n < max_ids; i++)
		{
			const int32_t *src = items[i].id == TOK_SEQ_A ? ba : items[i].id == TOK_SEQ_B ? bb : &items[i].id;
			int			count = items[i].id == TOK_SEQ_A ? na : items[i].id == TOK_SEQ_B ? nb : 1;

			for (int k = 0; k < count && n < max_ids; k++, n++)
			{
				ids[n] = src[k];
				if (type_ids != NULL)
					type_ids[n] = items[i].type_id;
			}
		}
	}
	free(ba);
	free(bb);
	return n;
}
