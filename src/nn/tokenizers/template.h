/*
 * template.h: the post-processor of Hugging Face `tokenizers` -- special
 * tokens and token type ids around one text or a pair -- and the
 * truncation `transformers` applies with truncation=True.
 *
 * Read from tokenizer.json's "post_processor":
 *   TemplateProcessing  {"single": [...], "pair": [...], "special_tokens":
 *                        {name: {"ids": [...]}}}, items {"SpecialToken":
 *                        {"id": name, "type_id"}} or {"Sequence": {"id":
 *                        "A" | "B", "type_id"}}
 *   BertProcessing      {"cls": [tok, id], "sep": [tok, id]}:
 *                        [CLS] A [SEP] B [SEP], types 0 for A's part, 1 for B's
 *   RobertaProcessing   {"cls", "sep"}: <s> A </s></s> B </s>, all type 0
 *   Sequence            {"processors": [...]}: the one of the above it holds
 *                       (ByteLevel members only adjust offsets)
 *   null                no specials, every type 0
 *
 * Truncation of a pair (TruncationStrategy::LongestFirst of `tokenizers`,
 * what transformers' truncation=True uses): with room for r = max_ids -
 * specials ids, n1 <= n2 the shorter and longer lengths, nothing happens
 * when n1 + n2 <= r; the shorter keeps all its ids and the longer gets
 * r - n1 when n1 <= r / 2; otherwise the shorter keeps r / 2 and the
 * longer r / 2 + r % 2 (on equal lengths the second text counts as the
 * longer).  A single text keeps its first r ids.  When max_ids is below
 * the template's specials, the template's first max_ids ids are kept.
 */
#ifndef DEPT_NN_TEMPLATE_H
#define DEPT_NN_TEMPLATE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/nn_common.h"

#define TOK_TEMPLATE_MAX 16			/* items of one template, specials' ids counted */
#define TOK_SEQ_A (-1)				/* TokItem.id of the first text */
#define TOK_SEQ_B (-2)				/* and of the second */

typedef struct TokItem
{
	int32_t		id;				/* a special token's id, or TOK_SEQ_A / TOK_SEQ_B */
	uint8_t		type_id;
} TokItem;

typedef struct TokTemplate
{
	TokItem		single[TOK_TEMPLATE_MAX];
	int			n_single;
	TokItem		pair[TOK_TEMPLATE_MAX];
	int			n_pair;
} TokTemplate;

/*
 * Encode len bytes without special tokens into at most max_ids ids (the
 * first ones); returns the count or -1 (out of memory).
 */
typedef int (*TokEncodeFn) (const void *tok, const char *text, size_t len, int32_t *ids,
							int max_ids);

/* Methods */

/* From len bytes of tokenizer.json text (its "post_processor"). */
NnStatus	tok_template_from_json(TokTemplate *t, const char *json, size_t len, NnError *err);

/* BERT's [CLS] A [SEP] (B [SEP], type 1) and RoBERTa's <s> A </s></s> B </s>. */
void		tok_template_bert(TokTemplate *t, int32_t cls, int32_t sep);
void		tok_template_roberta(TokTemplate *t, int32_t cls, int32_t sep);

/* The largest special id of t, or -1 (for checks against the vocabulary). */
int32_t		tok_template_max_id(const TokTemplate *t);

/*
 * Tokenize one text (b NULL) or a pair with encode and apply t with
 * transformers' truncation to max_ids: ids and, when type_ids is not NULL,
 * their token type ids.  Returns the count, or -1 when out of memory.
 */
int			tok_template_encode(const TokTemplate *t, TokEncodeFn encode, const void *tok,
								const char *a, size_t alen, const char *b, size_t blen,
								int32_t *ids, uint8_t *type_ids, int max_ids);

#endif							/* DEPT_NN_TEMPLATE_H */
