/*
 * encoder_fixture.h: the fixture tests every encoder family of bert.c runs
 * against its UNIT_HF_DIR()/<name>-tiny-random directory (transformers
 * 5.17, float32, eager attention; test/fixtures/hf/README.md).
 *
 * Accepted, as test_bert.c does for BERT:
 *   tokenizer  every case of tokenizer_cases.jsonl, tokenizer_pair_cases.jsonl
 *              and tokenizer_pair_truncation_cases.jsonl equal (ids, and type
 *              ids for pairs)
 *   forward    last_hidden_state (valid positions), pooler_output where the
 *              model has a pooler, last_hidden_state_from_ids and
 *              pair_last_hidden_state (with the pair's token type ids) within
 *              1e-4 relative (max |diff| / max |ref|), the loss within 1e-4
 *   backward   grad_word_embeddings and the DePT gradients dept_grad_P/A/B
 *              within 1e-3 relative; padded positions of dx exactly 0
 *   bfloat16   with run_use_bf16 (gemm_bf16.h; skipped, saying so, on a CPU
 *              without an engine) last_hidden_state within 1e-3 relative of
 *              the reference and grad_word_embeddings within 2e-3, yet
 *              above 1e-6 (float32 stays below 1e-6: so the products did
 *              run in bfloat16; measured figures printed); back in float32
 *              the forward is bit-identical to a run that never used it
 * A test file defines its main as: encoder_fixture_main("roberta", "roberta"),
 * or for a family outside bert.c encoder_fixture_main_ops(name, family, &ops)
 * with the family's last-hidden-state and full-backward functions.  The
 * readers of the fixture's reference tensors (ef_f32, ef_inputs, ...) are
 * in hf_reference.h, which test_bert.c and test_t5.c use too.
 */
#ifndef DEPT_TEST_ENCODER_FIXTURE_H
#define DEPT_TEST_ENCODER_FIXTURE_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/adapter.h"
#include "ops/gemm_bf16.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "models/backbone.h"
#include "models/bert/bert.h"
#include "hf_reference.h"
#include "unit.h"

#define EF_M_PROMPT 5
#define EF_S_MAX 64
#define EF_RANK 3

/* A family's access to the last hidden state and the backward from it. */
typedef struct EfFamilyOps
{
	void		(*last_hidden) (const Backbone *bb, const BackboneRun *run, float *hidden);
	NnStatus	(*backward_full) (const Backbone *bb, BackboneRun *run, const float *dpooled,
								  const float *dhidden, float *dx, NnError *err);
	bool		bert_pooling;	/* bert_get_pooling applies (bert.c's families) */
	/*
	 * Lines of tokenizer_pair_truncation_cases.jsonl known to split the
	 * pair differently from the reference (0-terminated; the test file says
	 * why): they must still give max_length ids, A's part first.
	 */
	const int  *truncation_known;
} EfFamilyOps;

/* A family's own test, run after the shared ones while the model is open (or NULL). */
static void (*ef_extra_test) (void);

static const EfFamilyOps ef_bert_ops = {bert_last_hidden, bert_backward_full, true, NULL};
static const EfFamilyOps *ef_ops = &ef_bert_ops;

static int	ef_NB,
			ef_NT;			/* reference batch: NB texts padded to NT */
static bool ef_pooler;		/* reference.json's has_pooler */

/* ---- tokenizer ---------------------------------------------------------------- */

static bool
ef_ids_equal(const cJSON *want, const int32_t *ids, int n)
{
	if (!cJSON_IsArray(want) || cJSON_GetArraySize(want) != n)
		return false;
	for (int i = 0; i < n; i++)
		if (cJSON_GetArrayItem(want, i)->valueint != ids[i])
			return false;
	return true;
}

/* One jsonl case: single text ("text") or pair ("text_a", "text_b", "max_length"). */
static bool
ef_case(const cJSON *c, bool known)
{
	const cJSON *text = cJSON_GetObjectItem(c, "text");
	const cJSON *ta = cJSON_GetObjectItem(c, "text_a");
	const cJSON *tb = cJSON_GetObjectItem(c, "text_b");
	const cJSON *maxl = cJSON_GetObjectItem(c, "max_length");
	static int32_t ids[EF_MAX_IDS];
	static uint8_t types[EF_MAX_IDS];
	int			max = cJSON_IsNumber(maxl) ? maxl->valueint : EF_MAX_IDS;
	int			n;

	if (cJSON_IsString(text))
		return (n = ef_model->ops->tokenize(ef_model, text->valuestring, strlen(text->valuestring),
											ids, max)) >= 0 &&
			ef_ids_equal(cJSON_GetObjectItem(c, "ids"), ids, n);
	if (!cJSON_IsString(ta) || !cJSON_IsString(tb))
		return false;
	n = backbone_tokenize_pair(ef_model, ta->valuestring, strlen(ta->valuestring),
							   tb->valuestring, strlen(tb->valuestring), ids, types, max);
	if (known)
		return n == max && types[0] == 0 && types[n - 1] == 1;
	if (n < 0 || !ef_ids_equal(cJSON_GetObjectItem(c, "ids"), ids, n))
		return false;
	for (int i = 0; i < n; i++)
		ids[i] = types[i];
	return ef_ids_equal(cJSON_GetObjectItem(c, "type_ids"), ids, n);
}

/* Whether line (1-based) of name is one of the family's known truncation differences. */
static bool
ef_known_line(const char *name, int line)
{
	if (ef_ops->truncation_known == NULL ||
		strcmp(name, "tokenizer_pair_truncation_cases.jsonl") != 0)
		return false;
	for (const int *k = ef_ops->truncation_known; *k; k++)
		if (*k == line)
			return true;
	return false;
}

/* Every line of the jsonl file name; returns how many there were. */
static int
ef_run_cases(const char *name)
{
	size_t		len;
	char	   *all = hf_read_file(ef_path(name), (size_t) 64 << 20, &len);
	char	   *cursor = all,
			   *line;
	cJSON	   *c;
	int			total = 0,
				equal = 0,
				known = 0;

	CHECK(all != NULL, "cannot read %s", name);
	while ((c = ef_next_case(&cursor, &line)) != NULL)
	{
		bool		k = ef_known_line(name, total + 1);
		bool		eq = ef_case(c, k);

		CHECK(eq, "%s line %d: \"%.60s\"", name, total + 1, line);
		equal += eq && !k;
		known += eq && k;
		total++;
		cJSON_Delete(c);
	}
	free(all);
	printf("# %s: %d of %d cases equal", name, equal, total);
	if (known > 0)
		printf(" (%d known to split differently)", known);
	printf("\n");
	return total;
}

static void
test_tokenizer_cases(void)
{
	CHECK(ef_run_cases("tokenizer_cases.jsonl") >= 1000, "too few single cases");
}

static void
test_tokenizer_pair_cases(void)
{
	CHECK(ef_run_cases("tokenizer_pair_cases.jsonl") >= 300, "too few pair cases");
	CHECK(ef_run_cases("tokenizer_pair_truncation_cases.jsonl") >= 100, "too few truncation cases");
}

/* The reference texts tokenize to input_ids, the pairs to pair_input_ids / types. */
static void
test_reference_tokens(void)
{
	size_t		len;
	char	   *json = hf_read_file(ef_path("reference.json"), 1 << 20, &len);
	cJSON	   *root = json ? cJSON_Parse(json) : NULL;
	const cJSON *texts = cJSON_GetObjectItem(root, "texts");
	const cJSON *pairs = cJSON_GetObjectItem(root, "pairs");
	const int32_t *ids = ef_i32("input_ids", ef_NB, ef_NT);
	const StTensor *pt = safetensors_find(ef_ref, "pair_input_ids");
	int			PT = pt ? (int) pt->shape[1] : 0;
	const int32_t *pids = ef_i32("pair_input_ids", 2, PT);
	const int32_t *ptypes = ef_i32("pair_token_type_ids", 2, PT);
	int32_t		out[EF_MAX_IDS];
	uint8_t		types[EF_MAX_IDS];

	CHECK(cJSON_GetArraySize(texts) == ef_NB && cJSON_GetArraySize(pairs) == 2, "reference.json");
	for (int b = 0; ids && b < cJSON_GetArraySize(texts) && b < ef_NB; b++)
	{
		const char *t = cJSON_GetArrayItem(texts, b)->valuestring;
		int			n = ef_model->ops->tokenize(ef_model, t, strlen(t), out, EF_MAX_IDS);

		CHECK(n <= ef_NT && memcmp(out, ids + b * ef_NT, sizeof(int32_t) * (size_t) n) == 0,
			  "text %d tokenizes differently (%d ids)", b, n);
	}
	for (int b = 0; pids && ptypes && b < 2 && b < cJSON_GetArraySize(pairs); b++)
	{
		const char *a = cJSON_GetArrayItem(cJSON_GetArrayItem(pairs, b), 0)->valuestring;
		const char *c = cJSON_GetArrayItem(cJSON_GetArrayItem(pairs, b), 1)->valuestring;
		int			n = backbone_tokenize_pair(ef_model, a, strlen(a), c, strlen(c), out, types,
											   EF_MAX_IDS);
		bool		eq = n > 0 && n <= PT;

		for (int i = 0; eq && i < n; i++)
			eq = out[i] == pids[b * PT + i] && types[i] == ptypes[b * PT + i];
		CHECK(eq, "pair %d tokenizes differently (%d ids)", b, n);
	}
	cJSON_Delete(root);
	free(json);
}

/* ---- model ------------------------------------------------------------------ */

static void
test_forward_reference(void)
{
	size_t		n = (size_t) ef_NB * ef_NT * ef_H;
	float	   *x = malloc(sizeof(float) * n),
			   *hidden = malloc(sizeof(float) * n),
			   *pooled = malloc(sizeof(float) * ef_NB * ef_H);
	uint8_t    *mask = malloc((size_t) ef_NB * ef_NT);
	const float *r_hidden = ef_f32("last_hidden_state", 3, ef_NB, ef_NT, ef_H);
	const float *r_ids = ef_f32("last_hidden_state_from_ids", 3, ef_NB, ef_NT, ef_H);
	const float *r_pooled = ef_pooler ? ef_f32("pooler_output", 2, ef_NB, ef_H, 0) : NULL;
	const float *wh = ef_f32("loss_weights_hidden", 3, ef_NB, ef_NT, ef_H);
	const float *wp = ef_pooler ? ef_f32("loss_weights_pooled", 2, ef_NB, ef_H, 0) : NULL;
	const float *r_loss = ef_f32("loss", 1, 1, 0, 0);
	BackboneRun *run = ef_model->ops->run_new(ef_model, ef_NB, ef_NT);
	NnError		err;

	if (ef_inputs("input_ids", "attention_mask", ef_NB, ef_NT, x, mask) && r_hidden && r_ids &&
		wh && r_loss && (!ef_pooler || (r_pooled && wp)) && run != NULL)
	{
		double		dh,
					di,
					dp = 0.0,
					L;

		CHECK(ef_model->ops->forward(ef_model, run, x, mask, ef_NB, ef_NT, pooled, &err) == NN_OK,
			  "%s", err.msg);
		ef_ops->last_hidden(ef_model, run, hidden);
		dh = ef_rel_diff(hidden, r_hidden, n, mask, ef_H);
		di = ef_rel_diff(hidden, r_ids, n, mask, ef_H);
		if (ef_pooler)
			dp = ef_rel_diff(pooled, r_pooled, (size_t) ef_NB * ef_H, NULL, 1);
		L = ef_loss(hidden, wh, mask, ef_pooler ? pooled : NULL, wp, ef_NB, ef_NT);
		printf("# forward vs transformers: last_hidden_state rel %.2e (from ids %.2e), "
			   "pooler_output rel %.2e, loss %.7f vs %.7f\n", dh, di, dp, L, r_loss[0]);
		CHECK(dh <= 1e-4 && di <= 1e-4, "last_hidden_state rel diffs %.3e %.3e", dh, di);
		CHECK(dp <= 1e-4, "pooler_output rel diff %.3e", dp);
		CHECK(fabs(L - r_loss[0]) <= 1e-4 * fabs(r_loss[0]), "loss %.7f vs %.7f", L, r_loss[0]);
		for (size_t i = 0; i < n; i++)
			if (!mask[i / ef_H] && hidden[i] != 0.0f)
			{
				CHECK(0, "masked hidden row not zero");
				break;
			}
	}
	ef_model->ops->run_free(run);
	free(x);
	free(hidden);
	free(pooled);
	free(mask);
}

static void
test_backward_reference(void)
{
	size_t		n = (size_t) ef_NB * ef_NT * ef_H;
	float	   *x = malloc(sizeof(float) * n),
			   *dx = malloc(sizeof(float) * n),
			   *dhid = malloc(sizeof(float) * n),
			   *pooled = malloc(sizeof(float) * ef_NB * ef_H);
	uint8_t    *mask = malloc((size_t) ef_NB * ef_NT);
	const float *wh = ef_f32("loss_weights_hidden", 3, ef_NB, ef_NT, ef_H);
	const float *wp = ef_pooler ? ef_f32("loss_weights_pooled", 2, ef_NB, ef_H, 0) : NULL;
	const float *r_dx = ef_f32("grad_word_embeddings", 3, ef_NB, ef_NT, ef_H);
	BackboneRun *run = ef_model->ops->run_new(ef_model, ef_NB, ef_NT);
	NnError		err;

	if (ef_inputs("input_ids", "attention_mask", ef_NB, ef_NT, x, mask) && wh && r_dx &&
		(!ef_pooler || wp) && run != NULL)
	{
		double		d;

		for (size_t i = 0; i < n; i++)
			dhid[i] = mask[i / ef_H] ? wh[i] : 0.0f;
		CHECK(ef_model->ops->forward(ef_model, run, x, mask, ef_NB, ef_NT, pooled, &err) == NN_OK,
			  "%s", err.msg);
		CHECK(ef_ops->backward_full(ef_model, run, wp, dhid, dx, &err) == NN_OK, "%s", err.msg);
		d = ef_rel_diff(dx, r_dx, n, NULL, 1);
		for (size_t i = 0; i < n; i++)
			if (!mask[i / ef_H] && dx[i] != 0.0f)
			{
				CHECK(0, "dx at padding %zu is %g", i, dx[i]);
				break;
			}
		printf("# backward vs transformers: grad_word_embeddings rel %.2e\n", d);
		CHECK(d <= 1e-3, "grad_word_embeddings rel diff %.3e", d);
	}
	ef_model->ops->run_free(run);
	free(x);
	free(dx);
	free(dhid);
	free(pooled);
	free(mask);
}

/*
 * The forward and the input-backward with the weight products in bfloat16:
 * errors against the float32 reference, and float32 again afterwards.
 */
static void
test_bf16_forward_and_backward(void)
{
	size_t		n = (size_t) ef_NB * ef_NT * ef_H;
	float	   *x = malloc(sizeof(float) * n),
			   *dx = malloc(sizeof(float) * n),
			   *dhid = malloc(sizeof(float) * n),
			   *hidden = malloc(sizeof(float) * n),
			   *hidden_f32 = malloc(sizeof(float) * n),
			   *pooled = malloc(sizeof(float) * ef_NB * ef_H);
	uint8_t    *mask = malloc((size_t) ef_NB * ef_NT);
	const float *r_hidden = ef_f32("last_hidden_state", 3, ef_NB, ef_NT, ef_H);
	const float *wh = ef_f32("loss_weights_hidden", 3, ef_NB, ef_NT, ef_H);
	const float *wp = ef_pooler ? ef_f32("loss_weights_pooled", 2, ef_NB, ef_H, 0) : NULL;
	const float *r_dx = ef_f32("grad_word_embeddings", 3, ef_NB, ef_NT, ef_H);
	BackboneRun *run = ef_model->ops->run_new(ef_model, ef_NB, ef_NT),
			   *plain = ef_model->ops->run_new(ef_model, ef_NB, ef_NT);
	NnError		err;

	CHECK(ef_model->ops->run_use_bf16 != NULL, "the family has no bfloat16 products");
	if (!gemm_bf16_usable(32, 32))
		printf("# skip: this CPU runs neither AMX nor AVX512-BF16\n");
	else if (ef_inputs("input_ids", "attention_mask", ef_NB, ef_NT, x, mask) && r_hidden && wh &&
			 r_dx && (!ef_pooler || wp) && run && plain && ef_model->ops->run_use_bf16)
	{
		double		dh,
					dd;

		CHECK(ef_model->ops->run_use_bf16(run, true), "run_use_bf16 refused");
		CHECK(ef_model->ops->forward(ef_model, run, x, mask, ef_NB, ef_NT, pooled, &err) == NN_OK,
			  "%s", err.msg);
		ef_ops->last_hidden(ef_model, run, hidden);
		dh = ef_rel_diff(hidden, r_hidden, n, mask, ef_H);
		for (size_t i = 0; i < n; i++)
			dhid[i] = mask[i / ef_H] ? wh[i] : 0.0f;
		CHECK(ef_ops->backward_full(ef_model, run, wp, dhid, dx, &err) == NN_OK, "%s", err.msg);
		dd = ef_rel_diff(dx, r_dx, n, NULL, 1);
		printf("# bfloat16 (%s) vs transformers' float32: last_hidden_state rel %.2e, "
			   "grad_word_embeddings rel %.2e\n", gemm_bf16_engine(), dh, dd);
		CHECK(dh <= 1e-3 && dh > 1e-6, "last_hidden_state rel diff %.3e", dh);
		CHECK(dd <= 2e-3 && dd > 1e-6, "grad_word_embeddings rel diff %.3e", dd);

		CHECK(!ef_model->ops->run_use_bf16(run, false), "run_use_bf16 off");
		CHECK(ef_model->ops->forward(ef_model, run, x, mask, ef_NB, ef_NT, pooled, &err) == NN_OK,
			  "%s", err.msg);
		ef_ops->last_hidden(ef_model, run, hidden);
		CHECK(ef_model->ops->forward(ef_model, plain, x, mask, ef_NB, ef_NT, pooled, &err) == NN_OK,
			  "%s", err.msg);
		ef_ops->last_hidden(ef_model, plain, hidden_f32);
		CHECK(memcmp(hidden, hidden_f32, sizeof(float) * n) == 0,
			  "float32 after bfloat16 differs from float32");
	}
	ef_model->ops->run_free(run);
	ef_model->ops->run_free(plain);
	free(x);
	free(dx);
	free(dhid);
	free(hidden);
	free(hidden_f32);
	free(pooled);
	free(mask);
}

/* The DePT forward and gradients; adapter from the reference's P, A, B. */
static void
ef_dept_check(Adapter *a, const float *E, const uint8_t *emask, int T)
{
	size_t		n = (size_t) ef_NB * T * ef_H;
	float	   *X = malloc(sizeof(float) * n),
			   *dX = malloc(sizeof(float) * n),
			   *hidden = malloc(sizeof(float) * n),
			   *dhid = malloc(sizeof(float) * n),
			   *pooled = malloc(sizeof(float) * ef_NB * ef_H);
	uint8_t    *xmask = malloc((size_t) ef_NB * T);
	const float *r_hidden = ef_f32("dept_last_hidden_state", 3, ef_NB, T, ef_H);
	const float *r_pooled = ef_pooler ? ef_f32("dept_pooler_output", 2, ef_NB, ef_H, 0) : NULL;
	const float *wh = ef_f32("dept_loss_weights_hidden", 3, ef_NB, T, ef_H);
	const float *wp = ef_pooler ? ef_f32("loss_weights_pooled", 2, ef_NB, ef_H, 0) : NULL;
	const float *r_loss = ef_f32("dept_loss", 1, 1, 0, 0);
	const float *gP = ef_f32("dept_grad_P", 2, EF_M_PROMPT, ef_H, 0);
	const float *gA = ef_f32("dept_grad_A", 2, EF_S_MAX, EF_RANK, 0);
	const float *gB = ef_f32("dept_grad_B", 2, EF_RANK, ef_H, 0);
	BackboneRun *run = ef_model->ops->run_new(ef_model, ef_NB, T);
	NnError		err;

	if (r_hidden && wh && r_loss && gP && gA && gB && (!ef_pooler || (r_pooled && wp)) && run)
	{
		double		dh,
					dp = 0.0,
					L;

		adapter_forward(a, E, emask, ef_NB, ef_NT, X, xmask);
		CHECK(ef_model->ops->forward(ef_model, run, X, xmask, ef_NB, T, pooled, &err) == NN_OK,
			  "%s", err.msg);
		ef_ops->last_hidden(ef_model, run, hidden);
		dh = ef_rel_diff(hidden, r_hidden, n, xmask, ef_H);
		if (ef_pooler)
			dp = ef_rel_diff(pooled, r_pooled, (size_t) ef_NB * ef_H, NULL, 1);
		L = ef_loss(hidden, wh, xmask, ef_pooler ? pooled : NULL, wp, ef_NB, T);
		printf("# DePT forward: last_hidden_state rel %.2e, pooler_output rel %.2e, loss %.7f vs %.7f\n",
			   dh, dp, L, r_loss[0]);
		CHECK(dh <= 1e-4 && dp <= 1e-4, "DePT forward rel diffs %.3e %.3e", dh, dp);
		CHECK(fabs(L - r_loss[0]) <= 1e-4 * fabs(r_loss[0]), "DePT loss %.7f vs %.7f", L, r_loss[0]);
		for (size_t i = 0; i < n; i++)
			dhid[i] = xmask[i / ef_H] ? wh[i] : 0.0f;
		CHECK(ef_ops->backward_full(ef_model, run, wp, dhid, dX, &err) == NN_OK, "%s", err.msg);
		ef_check_dept_grads(a, dX, ef_NB, ef_NT, gP, gA, gB);
	}
	ef_model->ops->run_free(run);
	free(X);
	free(dX);
	free(hidden);
	free(dhid);
	free(pooled);
	free(xmask);
}

static void
test_dept_reference(void)
{
	AdapterConfig cfg = {.method = ADAPTER_DEPT, .d = ef_H, .h_dim = ef_H, .n_classes = 2,
		.prompt_len = EF_M_PROMPT, .max_len = EF_S_MAX, .rank = EF_RANK, .alpha = 8.0f};
	const float *P = ef_f32("dept_P", 2, EF_M_PROMPT, ef_H, 0);
	const float *A = ef_f32("dept_A", 2, EF_S_MAX, EF_RANK, 0);
	const float *Bm = ef_f32("dept_B", 2, EF_RANK, ef_H, 0);
	const float *r_scale = ef_f32("dept_scale", 1, 1, 0, 0);
	float	   *E = malloc(sizeof(float) * (size_t) ef_NB * ef_NT * ef_H);
	uint8_t    *emask = malloc((size_t) ef_NB * ef_NT);
	Adapter    *a = NULL;
	NnError		err;

	if (ef_inputs("input_ids", "attention_mask", ef_NB, ef_NT, E, emask) && P && A && Bm &&
		r_scale && adapter_new(&a, &cfg, ef_NB, 1, &err) == NN_OK)
	{
		CHECK(fabsf(a->scale - r_scale[0]) <= 1e-6f, "scale %g vs %g", a->scale, r_scale[0]);
		memcpy(a->prompt.w, P, sizeof(float) * EF_M_PROMPT * ef_H);
		memcpy(a->lora_a.w, A, sizeof(float) * EF_S_MAX * EF_RANK);
		memcpy(a->lora_b.w, Bm, sizeof(float) * EF_RANK * ef_H);
		ef_dept_check(a, E, emask, EF_M_PROMPT + ef_NT);
	}
	else
		CHECK(0, "DePT inputs or adapter");
	adapter_free(a);
	free(E);
	free(emask);
}

/* The sentence-pair forward, with the pair's token type ids. */
static void
test_pair_forward(void)
{
	const StTensor *pt = safetensors_find(ef_ref, "pair_input_ids");
	int			PT = pt ? (int) pt->shape[1] : 1;
	size_t		n = (size_t) 2 * PT * ef_H;
	float	   *x = malloc(sizeof(float) * n),
			   *hidden = malloc(sizeof(float) * n),
			   *pooled = malloc(sizeof(float) * 2 * ef_H);
	uint8_t    *mask = malloc((size_t) 2 * PT),
			   *types = malloc((size_t) 2 * PT);
	const int32_t *r_types = ef_i32("pair_token_type_ids", 2, PT);
	const float *r_hidden = ef_f32("pair_last_hidden_state", 3, 2, PT, ef_H);
	BackboneRun *run = ef_model->ops->run_new(ef_model, 2, PT);
	NnError		err;

	if (ef_inputs("pair_input_ids", "pair_attention_mask", 2, PT, x, mask) && r_types &&
		r_hidden && run != NULL)
	{
		double		d;

		for (int i = 0; i < 2 * PT; i++)
			types[i] = (uint8_t) r_types[i];
		backbone_run_token_types(ef_model, run, types);
		CHECK(ef_model->ops->forward(ef_model, run, x, mask, 2, PT, pooled, &err) == NN_OK,
			  "%s", err.msg);
		ef_ops->last_hidden(ef_model, run, hidden);
		d = ef_rel_diff(hidden, r_hidden, n, mask, ef_H);
		printf("# pair forward: last_hidden_state rel %.2e\n", d);
		CHECK(d <= 1e-4, "pair last_hidden_state rel diff %.3e", d);
		/* a type id past the model's types is refused */
		memset(types, 255, (size_t) 2 * PT);
		CHECK(!backbone_run_token_types(ef_model, run, types) ||
			  ef_model->ops->forward(ef_model, run, x, mask, 2, PT, pooled, &err) == NN_ERR_ARG,
			  "type id 255 accepted");
	}
	ef_model->ops->run_free(run);
	free(x);
	free(hidden);
	free(pooled);
	free(mask);
	free(types);
}

static void
test_open(void)
{
	NnError		err;
	size_t		len;
	char	   *json;
	cJSON	   *root;

	CHECK(backbone_open(&ef_model, ef_fixture, &err) == NN_OK, "%s", err.msg);
	if (ef_model == NULL)
		return;
	json = hf_read_file(ef_path("reference.json"), 1 << 20, &len);
	root = json ? cJSON_Parse(json) : NULL;
	ef_pooler = cJSON_IsTrue(cJSON_GetObjectItem(root, "has_pooler"));
	cJSON_Delete(root);
	free(json);
	ef_H = ef_model->d_out;
	CHECK(ef_H == 32 && ef_model->d_embed == 32 && ef_model->max_positions == 128 &&
		  ef_model->max_tokens == 128, "dims %d %d %d", ef_H, ef_model->max_positions,
		  ef_model->max_tokens);
	CHECK(!ef_ops->bert_pooling ||
		  bert_get_pooling(ef_model) == (ef_pooler ? BERT_POOL_POOLER : BERT_POOL_MEAN),
		  "default pooling %d", (int) bert_get_pooling(ef_model));
	CHECK(ef_model->ops->run_new(ef_model, 1, ef_model->max_positions + 1) == NULL,
		  "run longer than the positions");
	printf("# family %s, fingerprint %s\n", ef_model->ops->family, ef_model->fingerprint);
}

static int
encoder_fixture_main(const char *name, const char *family)
{
	NnError		err;
	const StTensor *ids;

	snprintf(ef_fixture, sizeof(ef_fixture), "%s/%s-tiny-random", UNIT_HF_DIR(), name);
	if (safetensors_open(&ef_ref, ef_path("reference.safetensors"), &err) != NN_OK)
		printf("# cannot read the reference: %s\n", err.msg);
	ids = ef_ref ? safetensors_find(ef_ref, "input_ids") : NULL;
	ef_NB = ids ? (int) ids->shape[0] : 0;
	ef_NT = ids ? (int) ids->shape[1] : 0;
	RUN_TEST(test_open);
	if (ef_model != NULL)
	{
		CHECK(strcmp(ef_model->ops->family, family) == 0, "family %s", ef_model->ops->family);
		RUN_TEST(test_tokenizer_cases);
		RUN_TEST(test_tokenizer_pair_cases);
		if (ef_ref != NULL)
		{
			RUN_TEST(test_reference_tokens);
			RUN_TEST(test_forward_reference);
			RUN_TEST(test_backward_reference);
			RUN_TEST(test_dept_reference);
			RUN_TEST(test_pair_forward);
			RUN_TEST(test_bf16_forward_and_backward);
			if (ef_extra_test != NULL)
				RUN_TEST(ef_extra_test);
		}
	}
	backbone_close(ef_model);
	safetensors_close(ef_ref);
	return unit_finish();
}

/* The same for a family with its own last-hidden-state and backward functions. */
static inline int
encoder_fixture_main_ops(const char *name, const char *family, const EfFamilyOps *ops)
{
	ef_ops = ops;
	return encoder_fixture_main(name, family);
}

#endif							/* DEPT_TEST_ENCODER_FIXTURE_H */
