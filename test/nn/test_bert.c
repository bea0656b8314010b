/*
 * test_bert.c: the BERT backbone, its WordPiece tokenizer and the
 * safetensors / config.json readers, against the golden fixture
 * UNIT_HF_DIR()/bert-tiny-random (made with transformers
 * 5.17, PyTorch float32, eager attention; see its README).
 *
 * Accepted:
 *   tokenizer  every case of tokenizer_cases.jsonl equal (ids and token
 *              strings), from tokenizer.json and from the vocab.txt fallback
 *   forward    last_hidden_state (valid positions) and pooler_output within
 *              1e-4 relative (max |diff| / max |ref|), the loss within 1e-4
 *   backward   grad_word_embeddings and the DePT gradients dept_grad_P/A/B
 *              within 1e-3 relative; padded positions of dx exactly 0
 * Plus: finite differences of the float forward for the pooling modes the
 * fixture does not cover (mean, CLS), truncation and hostile bytes in the
 * tokenizer, and malformed safetensors / config.json / model directories
 * failing with NN_ERR_FORMAT or NN_ERR_IO rather than crashing.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "adapters/adapter.h"
#include "models/backbone.h"
#include "models/bert/bert.h"
#include "formats/hf_config.h"
#include "base/rng.h"
#include "formats/safetensors.h"
#include "unit.h"
#include "hf_reference.h"
#include "tokenizers/wordpiece.h"

#define H 32
#define NB 4					/* reference texts */
#define NT 20					/* their padded length */
#define M_PROMPT 5
#define S_MAX 64
#define RANK 3

/* ---- tokenizer ---------------------------------------------------------------- */

/* Run every case of tokenizer_cases.jsonl through wp; returns the number equal. */
static int
run_cases(const WordPiece *wp, int *total)
{
	size_t		len;
	char	   *all = hf_read_file(ef_path("tokenizer_cases.jsonl"), (size_t) 64 << 20, &len);
	char	   *cursor = all;
	cJSON	   *c;
	int			equal = 0;

	*total = 0;
	CHECK(all != NULL, "cannot read tokenizer_cases.jsonl");
	while ((c = ef_next_case(&cursor, NULL)) != NULL)
	{
		const cJSON *text = cJSON_GetObjectItem(c, "text");
		const cJSON *ids = cJSON_GetObjectItem(c, "ids");
		const cJSON *toks = cJSON_GetObjectItem(c, "tokens");
		int32_t		out[512];
		int			n = wordpiece_encode(wp, text->valuestring, strlen(text->valuestring), out, 512);
		bool		eq = n == cJSON_GetArraySize(ids);

		for (int i = 0; eq && i < n; i++)
		{
			const char *tok = wordpiece_token(wp, out[i]);

			eq = out[i] == cJSON_GetArrayItem(ids, i)->valueint && tok != NULL &&
				strcmp(tok, cJSON_GetArrayItem(toks, i)->valuestring) == 0;
		}
		CHECK(eq, "case %d: \"%.60s\" (%d ids, expected %d)", *total, text->valuestring, n,
			  cJSON_GetArraySize(ids));
		equal += eq;
		(*total)++;
		cJSON_Delete(c);
	}
	free(all);
	return equal;
}

static void
test_tokenizer_cases(void)
{
	WordPiece  *wp = NULL;
	NnError		err;
	size_t		len;
	char	   *txt;
	int			total,
				equal;

	CHECK(wordpiece_load(&wp, ef_fixture, &err) == NN_OK, "tokenizer.json: %s", err.msg);
	if (wp != NULL)
	{
		equal = run_cases(wp, &total);
		printf("# tokenizer.json: %d of %d cases equal\n", equal, total);
		CHECK(total >= 2000, "only %d cases", total);
		wordpiece_free(wp);
		wp = NULL;
	}
	txt = hf_read_file(ef_path("vocab.txt"), (size_t) 64 << 20, &len);
	CHECK(txt != NULL && wordpiece_from_vocab(&wp, txt, len, NULL, &err) == NN_OK,
		  "vocab.txt: %s", err.msg);
	if (wp != NULL)
	{
		equal = run_cases(wp, &total);
		printf("# vocab.txt fallback: %d of %d cases equal\n", equal, total);
		wordpiece_free(wp);
	}
	free(txt);
}

/* Encode a C string with max_ids. */
static int
enc(const WordPiece *wp, const char *s, int32_t *ids, int max_ids)
{
	return wordpiece_encode(wp, s, strlen(s), ids, max_ids);
}

static void
test_tokenizer_edges(void)
{
	WordPiece  *wp = NULL;
	NnError		err;
	int32_t		full[256],
				ids[256];
	int			nf,
				n;
	const char *text = "the movie was absolutely wonderful , a joy from start to finish !";
	Rng			rng;

	if (wordpiece_load(&wp, ef_fixture, &err) != NN_OK)
	{
		CHECK(0, "%s", err.msg);
		return;
	}
	/* truncation keeps [CLS] ... [SEP] around the first pieces */
	nf = enc(wp, text, full, 256);
	CHECK(nf == 15 && full[0] == 101 && full[nf - 1] == 102, "full: %d ids", nf);
	for (int max = 0; max <= nf + 2; max++)
	{
		bool		ok;

		for (int i = 0; i < 256; i++)
			ids[i] = -7;
		n = enc(wp, text, ids, max);
		ok = n == (max < nf ? max : nf) && ids[n] == -7;
		if (max >= 2 && max < nf)
		{
			ok = ok && ids[n - 1] == 102 && memcmp(ids, full, sizeof(int32_t) * (n - 1)) == 0;
		}
		else if (max == 1)
			ok = ok && ids[0] == 101;
		CHECK(ok, "max_ids %d: %d ids", max, n);
	}
	/* added (special) tokens in the text are matched before normalization */
	n = enc(wp, "hello [MASK] world[SEP]x", ids, 256);
	CHECK(n == 7 && ids[1] == 7592 && ids[2] == 103 && ids[3] == 2088 && ids[4] == 102 &&
		  ids[5] == wordpiece_token_id(wp, "x"), "specials: %d ids, %d %d %d", n, ids[1], ids[2], ids[3]);
	n = enc(wp, "[mask]", ids, 256);
	CHECK(n == 5 && ids[1] == wordpiece_token_id(wp, "["), "lowercase [mask] is text: %d", n);
	/* invalid UTF-8 decodes to U+FFFD, which clean_text drops (as from Python's "replace") */
	n = wordpiece_encode(wp, "\xff\xfehel\xc3lo \xe2\x82", 12, ids, 256);
	CHECK(n == 3 && ids[1] == wordpiece_token_id(wp, "hello"), "invalid UTF-8: %d ids", n);
	/* İ lowercases to i + U+0307, and the accent goes with strip_accents */
	n = enc(wp, "\xc4\xb0stanbul", ids, 256);
	CHECK(n == 3 && ids[1] == wordpiece_token_id(wp, "istanbul"), "Istanbul: %d", n);
	/* a 101-character word is [UNK]; 100 characters are not */
	{
		char		w[128];

		memset(w, 'a', sizeof(w));
		w[101] = '\0';
		n = enc(wp, w, ids, 256);
		CHECK(n == 3 && ids[1] == wordpiece_unk_id(wp), "101 chars: %d", n);
		w[100] = '\0';
		n = enc(wp, w, ids, 256);
		CHECK(n > 3 && ids[1] != wordpiece_unk_id(wp), "100 chars: %d", n);
	}
	/* a long text stops being read once the ids are out */
	{
		size_t		big = (size_t) 8 << 20;
		char	   *s = malloc(big);

		for (size_t i = 0; i < big; i++)
			s[i] = "ab c."[i % 5];
		n = wordpiece_encode(wp, s, big, ids, 16);
		CHECK(n == 16 && ids[15] == 102, "long text: %d", n);
		free(s);
	}
	/* random bytes: never more than max_ids, every id a token */
	rng_seed(&rng, 42);
	for (int k = 0; k < 3000; k++)
	{
		char		buf[200];
		size_t		len = (size_t) (rng_uniform(&rng) * sizeof(buf));
		int			max = (int) (rng_uniform(&rng) * 40);
		bool		ok;

		for (size_t i = 0; i < len; i++)
		{
			double		u = rng_uniform(&rng);

			/* mix ASCII, UTF-8 lead/continuation bytes and specials' bytes */
			buf[i] = u < 0.4 ? "a [CLS]\t\xcc\x81\xe4\xb8\x80 ,"[(int) (u * 40) % 16]
				: (char) (int) (rng_uniform(&rng) * 256);
		}
		n = wordpiece_encode(wp, buf, len, ids, max);
		ok = n >= 0 && n <= max && (max < 2 || n >= 2);
		for (int i = 0; ok && i < n; i++)
			ok = wordpiece_token(wp, ids[i]) != NULL;
		CHECK(ok, "random bytes %d: %d ids (max %d)", k, n, max);
	}
	wordpiece_free(wp);
}

/*
 * Every line of a tokenizer_pair*.jsonl through backbone_tokenize_pair (ids
 * and type ids; max_length when the line has one); returns how many lines.
 */
static int
run_pair_cases(const Backbone *bb, const char *name)
{
	size_t		len;
	char	   *all = hf_read_file(ef_path(name), (size_t) 64 << 20, &len);
	char	   *cursor = all;
	cJSON	   *c;
	int			total = 0;

	CHECK(all != NULL, "cannot read %s", name);
	while ((c = ef_next_case(&cursor, NULL)) != NULL)
	{
		const char *a = cJSON_GetObjectItem(c, "text_a")->valuestring;
		const char *b = cJSON_GetObjectItem(c, "text_b")->valuestring;
		const cJSON *ids = cJSON_GetObjectItem(c, "ids");
		const cJSON *types = cJSON_GetObjectItem(c, "type_ids");
		const cJSON *maxl = cJSON_GetObjectItem(c, "max_length");
		int32_t		out[1024];
		uint8_t		tt[1024];
		int			n = backbone_tokenize_pair(bb, a, strlen(a), b, strlen(b), out, tt,
											   cJSON_IsNumber(maxl) ? maxl->valueint : 1024);
		bool		eq = n == cJSON_GetArraySize(ids);

		for (int i = 0; eq && i < n; i++)
			eq = out[i] == cJSON_GetArrayItem(ids, i)->valueint &&
				tt[i] == cJSON_GetArrayItem(types, i)->valueint;
		CHECK(eq, "%s line %d: %d ids, expected %d", name, total + 1, n,
			  cJSON_GetArraySize(ids));
		total++;
		cJSON_Delete(c);
	}
	free(all);
	return total;
}

/* Sentence pairs: [CLS] A [SEP] B [SEP], types 0 then 1, longest-first truncation. */
static void
test_tokenizer_pairs(void)
{
	int32_t		ids[64];
	uint8_t		types[64];
	int			n;

	CHECK(run_pair_cases(ef_model, "tokenizer_pair_cases.jsonl") >= 300, "too few pair cases");
	CHECK(run_pair_cases(ef_model, "tokenizer_pair_truncation_cases.jsonl") >= 100,
		  "too few truncation cases");
	/* below the template's three specials, its first ids */
	n = backbone_tokenize_pair(ef_model, "a b c", 5, "d e", 3, ids, types, 2);
	CHECK(n == 2 && ids[0] == 101 && ids[1] == 102 && types[1] == 0, "max 2: %d ids", n);
	n = backbone_tokenize_pair(ef_model, "a b c", 5, "d e", 3, ids, types, 0);
	CHECK(n == 0, "max 0: %d ids", n);
	/* room 3 of "a b c" and "d e": shorter keeps 2 > 3/2 -> halves 1 and 2, the longer gets 2 */
	n = backbone_tokenize_pair(ef_model, "a b c", 5, "d e", 3, ids, types, 6);
	CHECK(n == 6 && ids[1] == 1037 && ids[2] == 1038 && ids[3] == 102 && ids[4] == 1040 &&
		  types[4] == 1 && types[5] == 1, "max 6: %d ids (%d %d %d %d)", n, ids[1], ids[2],
		  ids[3], ids[4]);
}

/* ---- model ------------------------------------------------------------------ */

static void
test_open(void)
{
	NnError		err;

	CHECK(backbone_open(&ef_model, ef_fixture, &err) == NN_OK, "%s", err.msg);
	if (ef_model == NULL)
		return;
	CHECK(strcmp(ef_model->ops->family, "bert") == 0, "family %s", ef_model->ops->family);
	CHECK(ef_model->d_embed == H && ef_model->d_out == H && ef_model->vocab_size == 30522 &&
		  ef_model->max_tokens == 128 && ef_model->max_positions == 128, "dims %d %d %d %d %d",
		  ef_model->d_embed, ef_model->d_out, ef_model->vocab_size, ef_model->max_tokens,
		  ef_model->max_positions);
	CHECK(strlen(ef_model->fingerprint) == 64, "fingerprint %s", ef_model->fingerprint);
	CHECK(bert_get_pooling(ef_model) == BERT_POOL_POOLER, "default pooling %d",
		  (int) bert_get_pooling(ef_model));
	CHECK(ef_model->ops->run_new(ef_model, 1, 129) == NULL, "run longer than the positions");
	printf("# fingerprint %s\n", ef_model->fingerprint);
}

/* The reference texts tokenize to the reference input_ids. */
static void
test_reference_tokens(void)
{
	size_t		len;
	char	   *json = hf_read_file(ef_path("reference.json"), 1 << 20, &len);
	cJSON	   *root = json ? cJSON_Parse(json) : NULL;
	const cJSON *texts = cJSON_GetObjectItem(root, "texts");
	const int32_t *ids = ef_i32("input_ids", NB, NT);
	const int32_t *am = ef_i32("attention_mask", NB, NT);

	CHECK(cJSON_GetArraySize(texts) == NB, "reference.json texts");
	for (int b = 0; ef_model && ids && am && b < cJSON_GetArraySize(texts) && b < NB; b++)
	{
		const char *t = cJSON_GetArrayItem(texts, b)->valuestring;
		int32_t		out[128];
		int			n = ef_model->ops->tokenize(ef_model, t, strlen(t), out, 128);
		bool		eq = true;

		for (int i = 0; i < NT; i++)
			eq = eq && (i < n ? am[b * NT + i] == 1 && out[i] == ids[b * NT + i] : am[b * NT + i] == 0);
		CHECK(eq, "text %d tokenizes differently (%d ids)", b, n);
	}
	cJSON_Delete(root);
	free(json);
}

static void
test_forward_reference(void)
{
	static float x[NB * NT * H],
				hidden[NB * NT * H];
	float		pooled[NB * H];
	uint8_t		mask[NB * NT];
	const float *r_hidden = ef_f32("last_hidden_state", 3, NB, NT, H);
	const float *r_pooled = ef_f32("pooler_output", 2, NB, H, 0);
	const float *wh = ef_f32("loss_weights_hidden", 3, NB, NT, H);
	const float *wp = ef_f32("loss_weights_pooled", 2, NB, H, 0);
	const float *r_loss = ef_f32("loss", 1, 1, 0, 0);
	BackboneRun *run;
	NnError		err;
	double		dh,
				dp,
				L;

	if (!ef_inputs("input_ids", "attention_mask", NB, NT, x, mask) || !r_hidden || !r_pooled ||
		!wh || !wp || !r_loss)
		return;
	run = ef_model->ops->run_new(ef_model, NB, NT);
	CHECK(ef_model->ops->forward(ef_model, run, x, mask, NB, NT, pooled, &err) == NN_OK, "%s", err.msg);
	bert_last_hidden(ef_model, run, hidden);
	dh = ef_rel_diff(hidden, r_hidden, NB * NT * H, mask, H);
	dp = ef_rel_diff(pooled, r_pooled, NB * H, NULL, 1);
	L = ef_loss(hidden, wh, mask, pooled, wp, NB, NT);
	printf("# forward vs transformers: last_hidden_state rel %.2e, pooler_output rel %.2e, "
		   "loss %.7f vs %.7f\n", dh, dp, L, r_loss[0]);
	CHECK(dh <= 1e-4, "last_hidden_state rel diff %.3e", dh);
	CHECK(dp <= 1e-4, "pooler_output rel diff %.3e", dp);
	CHECK(fabs(L - r_loss[0]) <= 1e-4 * fabs(r_loss[0]), "loss %.7f vs %.7f", L, r_loss[0]);
	for (int i = 0; i < NB * NT * H; i++)
		if (!mask[i / H] && hidden[i] != 0.0f)
		{
			CHECK(0, "masked hidden row not zero");
			break;
		}

	/* the same from text, through backbone_embed_texts */
	{
		size_t		len;
		char	   *json = hf_read_file(ef_path("reference.json"), 1 << 20, &len);
		cJSON	   *root = json ? cJSON_Parse(json) : NULL;
		const char *texts[NB];
		size_t		lens[NB];
		float		out[NB * H];
		BackboneRun *r128 = ef_model->ops->run_new(ef_model, NB, ef_model->max_tokens);

		for (int b = 0; b < NB; b++)
		{
			texts[b] = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "texts"), b)->valuestring;
			lens[b] = strlen(texts[b]);
		}
		CHECK(backbone_embed_texts(ef_model, r128, texts, lens, NB, out, &err) == NN_OK, "%s", err.msg);
		dp = ef_rel_diff(out, r_pooled, NB * H, NULL, 1);
		CHECK(dp <= 1e-4, "from text: pooler_output rel diff %.3e", dp);
		ef_model->ops->run_free(r128);
		cJSON_Delete(root);
		free(json);
	}
	ef_model->ops->run_free(run);
}

static void
test_backward_reference(void)
{
	static float x[NB * NT * H],
				dx[NB * NT * H],
				dx2[NB * NT * H],
				dhid[NB * NT * H];
	float		pooled[NB * H];
	uint8_t		mask[NB * NT];
	const float *wh = ef_f32("loss_weights_hidden", 3, NB, NT, H);
	const float *wp = ef_f32("loss_weights_pooled", 2, NB, H, 0);
	const float *r_dx = ef_f32("grad_word_embeddings", 3, NB, NT, H);
	BackboneRun *run;
	NnError		err;
	double		d,
				pad = 0.0;

	if (!ef_inputs("input_ids", "attention_mask", NB, NT, x, mask) || !wh || !wp || !r_dx)
		return;
	run = ef_model->ops->run_new(ef_model, NB, NT);
	for (int i = 0; i < NB * NT * H; i++)
		dhid[i] = mask[i / H] ? wh[i] : 0.0f;
	CHECK(ef_model->ops->forward(ef_model, run, x, mask, NB, NT, pooled, &err) == NN_OK, "%s", err.msg);
	for (int i = 0; i < NB * NT * H; i++)
		dx[i] = NAN;
	CHECK(bert_backward_full(ef_model, run, wp, dhid, dx, &err) == NN_OK, "%s", err.msg);
	d = ef_rel_diff(dx, r_dx, NB * NT * H, NULL, 1);
	for (int i = 0; i < NB * NT * H; i++)
		if (!mask[i / H])
		{
			pad = fmax(pad, fabs(r_dx[i]));
			CHECK(dx[i] == 0.0f, "dx at padding %d is %g", i, dx[i]);
		}
	printf("# backward vs transformers: grad_word_embeddings rel %.2e (reference max |grad| at "
		   "padding %.1e)\n", d, pad);
	CHECK(d <= 1e-3, "grad_word_embeddings rel diff %.3e", d);

	/* repeatable: the backward only reads the forward's caches */
	CHECK(bert_backward_full(ef_model, run, wp, dhid, dx2, &err) == NN_OK &&
		  memcmp(dx, dx2, sizeof(dx)) == 0, "second backward differs");
	/*
	 * The first backward recomputed the layers (the forward of a fresh run
	 * keeps one layer's activations); from then on the run's forwards keep
	 * every layer, and the backward reads them: the same numbers.
	 */
	CHECK(ef_model->ops->forward(ef_model, run, x, mask, NB, NT, pooled, &err) == NN_OK &&
		  bert_backward_full(ef_model, run, wp, dhid, dx2, &err) == NN_OK &&
		  memcmp(dx, dx2, sizeof(dx)) == 0, "backward after a kept forward differs");
	/* the interface op is the pooled-only special case */
	CHECK(bert_backward_full(ef_model, run, wp, NULL, dx, &err) == NN_OK &&
		  ef_model->ops->backward(ef_model, run, wp, dx2, &err) == NN_OK &&
		  memcmp(dx, dx2, sizeof(dx)) == 0, "ops->backward differs");
	ef_model->ops->run_free(run);
}

static void
test_dept_reference(void)
{
	enum
	{
		T = M_PROMPT + NT
	};
	static float E[NB * NT * H],
				X[NB * T * H],
				dX[NB * T * H],
				hidden[NB * T * H],
				dhid[NB * T * H];
	float		pooled[NB * H];
	uint8_t		emask[NB * NT],
				xmask[NB * T];
	AdapterConfig cfg = {.method = ADAPTER_DEPT, .d = H, .h_dim = H, .n_classes = 2,
	.prompt_len = M_PROMPT, .max_len = S_MAX, .rank = RANK, .alpha = 8.0f};
	Adapter    *a = NULL;
	const float *P = ef_f32("dept_P", 2, M_PROMPT, H, 0);
	const float *A = ef_f32("dept_A", 2, S_MAX, RANK, 0);
	const float *Bm = ef_f32("dept_B", 2, RANK, H, 0);
	const float *r_hidden = ef_f32("dept_last_hidden_state", 3, NB, T, H);
	const float *r_pooled = ef_f32("dept_pooler_output", 2, NB, H, 0);
	const float *wh = ef_f32("dept_loss_weights_hidden", 3, NB, T, H);
	const float *wp = ef_f32("loss_weights_pooled", 2, NB, H, 0);
	const float *r_loss = ef_f32("dept_loss", 1, 1, 0, 0);
	const float *r_scale = ef_f32("dept_scale", 1, 1, 0, 0);
	const float *gP = ef_f32("dept_grad_P", 2, M_PROMPT, H, 0);
	const float *gA = ef_f32("dept_grad_A", 2, S_MAX, RANK, 0);
	const float *gB = ef_f32("dept_grad_B", 2, RANK, H, 0);
	BackboneRun *run;
	NnError		err;
	double		dh,
				dp,
				L;

	if (!ef_inputs("input_ids", "attention_mask", NB, NT, E, emask) || !P || !A || !Bm ||
		!r_hidden || !r_pooled || !wh || !wp || !r_loss || !r_scale || !gP || !gA || !gB)
		return;
	CHECK(adapter_new(&a, &cfg, NB, 1, &err) == NN_OK, "%s", err.msg);
	if (a == NULL)
		return;
	CHECK(fabsf(a->scale - r_scale[0]) <= 1e-6f, "scale %g vs %g", a->scale, r_scale[0]);
	memcpy(a->prompt.w, P, sizeof(float) * M_PROMPT * H);
	memcpy(a->lora_a.w, A, sizeof(float) * S_MAX * RANK);
	memcpy(a->lora_b.w, Bm, sizeof(float) * RANK * H);
	adapter_forward(a, E, emask, NB, NT, X, xmask);

	run = ef_model->ops->run_new(ef_model, NB, T);
	CHECK(ef_model->ops->forward(ef_model, run, X, xmask, NB, T, pooled, &err) == NN_OK, "%s", err.msg);
	bert_last_hidden(ef_model, run, hidden);
	dh = ef_rel_diff(hidden, r_hidden, NB * T * H, xmask, H);
	dp = ef_rel_diff(pooled, r_pooled, NB * H, NULL, 1);
	L = ef_loss(hidden, wh, xmask, pooled, wp, NB, T);
	printf("# DePT forward: last_hidden_state rel %.2e, pooler_output rel %.2e, loss %.7f vs %.7f\n",
		   dh, dp, L, r_loss[0]);
	CHECK(dh <= 1e-4 && dp <= 1e-4, "DePT forward rel diffs %.3e %.3e", dh, dp);
	CHECK(fabs(L - r_loss[0]) <= 1e-4 * fabs(r_loss[0]), "DePT loss %.7f vs %.7f", L, r_loss[0]);

	for (int i = 0; i < NB * T * H; i++)
		dhid[i] = xmask[i / H] ? wh[i] : 0.0f;
	CHECK(bert_backward_full(ef_model, run, wp, dhid, dX, &err) == NN_OK, "%s", err.msg);
	ef_check_dept_grads(a, dX, NB, NT, gP, gA, gB);
	ef_model->ops->run_free(run);
	adapter_free(a);
}

/*
 * Finite differences of the float forward along the gradient for the
 * pooling modes without a reference (loss <out, W>): central differences
 * with step h on a smooth function, accepted within 2%.
 */
static void
test_pooling_fd(void)
{
	static float x[NB * NT * H],
				dx[NB * NT * H],
				xp[NB * NT * H];
	float		out[NB * H],
				W[NB * H];
	uint8_t		mask[NB * NT];
	BertPooling modes[] = {BERT_POOL_MEAN, BERT_POOL_CLS, BERT_POOL_POOLER};
	BackboneRun *run;
	NnError		err;
	Rng			rng;

	if (!ef_inputs("input_ids", "attention_mask", NB, NT, x, mask))
		return;
	rng_seed(&rng, 3);
	for (int i = 0; i < NB * H; i++)
		W[i] = (float) (rng_uniform(&rng) * 2 - 1);
	run = ef_model->ops->run_new(ef_model, NB, NT);
	for (size_t k = 0; k < sizeof(modes) / sizeof(modes[0]); k++)
	{
		double		norm = 0.0,
					lp = 0.0,
					lm = 0.0,
					h = 1e-2;

		CHECK(bert_set_pooling(ef_model, modes[k], &err) == NN_OK, "%s", err.msg);
		ef_model->ops->forward(ef_model, run, x, mask, NB, NT, out, &err);
		ef_model->ops->backward(ef_model, run, W, dx, &err);
		for (int i = 0; i < NB * NT * H; i++)
			norm += (double) dx[i] * dx[i];
		norm = sqrt(norm);
		for (int sgn = -1; sgn <= 1; sgn += 2)
		{
			double		L = 0.0;

			for (int i = 0; i < NB * NT * H; i++)
				xp[i] = x[i] + (float) (sgn * h * dx[i] / norm);
			ef_model->ops->forward(ef_model, run, xp, mask, NB, NT, out, &err);
			for (int i = 0; i < NB * H; i++)
				L += (double) out[i] * W[i];
			*(sgn < 0 ? &lm : &lp) = L;
		}
		printf("# pooling %d: central difference %.5f, |dx| %.5f\n", (int) modes[k],
			   (lp - lm) / (2 * h), norm);
		CHECK(fabs((lp - lm) / (2 * h) - norm) <= 0.02 * norm, "pooling %d: fd %.5f vs %.5f",
			  (int) modes[k], (lp - lm) / (2 * h), norm);
	}
	CHECK(bert_set_pooling(ef_model, (BertPooling) 9, &err) == NN_ERR_ARG, "bad pooling accepted");
	bert_set_pooling(ef_model, BERT_POOL_POOLER, &err);

	/* empty sequences and a batch of them: defined outputs, zero gradients */
	memset(mask, 0, NT);
	CHECK(ef_model->ops->forward(ef_model, run, x, mask, NB, NT, out, &err) == NN_OK &&
		  ef_model->ops->backward(ef_model, run, W, dx, &err) == NN_OK, "%s", err.msg);
	for (int i = 0; i < NT * H; i++)
		if (dx[i] != 0.0f)
		{
			CHECK(0, "empty sequence has a gradient");
			break;
		}
	memset(mask, 0, sizeof(mask));
	CHECK(ef_model->ops->forward(ef_model, run, x, mask, NB, NT, out, &err) == NN_OK &&
		  ef_model->ops->backward(ef_model, run, W, dx, &err) == NN_OK, "all empty: %s", err.msg);
	CHECK(ef_model->ops->forward(ef_model, run, x, mask, NB + 1, NT, out, &err) == NN_ERR_ARG,
		  "oversized batch accepted");
	ef_model->ops->run_free(run);
}

/* Per-token forward cost (informational): batch 32 x 64 tokens. */
static void
test_speed(void)
{
	enum
	{
		B = 32, T = 64
	};
	static float x[B * T * H];
	static uint8_t mask[B * T];
	float		out[B * H];
	BackboneRun *run = ef_model->ops->run_new(ef_model, B, T);
	NnError		err;
	struct timespec t0,
				t1;
	int			reps = 20;

	memset(mask, 1, sizeof(mask));
	for (int i = 0; i < B * T * H; i++)
		x[i] = 0.01f * (float) (i % 97);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int r = 0; r < reps; r++)
		ef_model->ops->forward(ef_model, run, x, mask, B, T, out, &err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("# forward %d x %d tokens: %.2f us/token\n", B, T,
		   ((t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3) / (reps * B * T));
	ef_model->ops->run_free(run);
}

/* ---- safetensors --------------------------------------------------------------- */

/* A file from a header string and data bytes; N is strlen(header) + pad. */
static size_t
make_file(uint8_t *buf, const char *header, int pad, const void *data, size_t data_len)
{
	uint64_t	n = strlen(header) + (size_t) pad;

	memcpy(buf, &n, 8);
	memcpy(buf + 8, header, strlen(header));
	memset(buf + 8 + strlen(header), ' ', (size_t) pad);
	memcpy(buf + 8 + n, data, data_len);
	return 8 + n + data_len;
}

static NnStatus
open_buf(const char *header, int pad, const void *data, size_t data_len, Safetensors **st,
		 NnError *err)
{
	static uint8_t buf[8192];
	size_t		len = make_file(buf, header, pad, data, data_len);

	return safetensors_from_buffer(st, buf, len, err);
}

static void
test_safetensors_good(void)
{
	/* F16: 1, -2, 65504, smallest subnormal, inf, 0.5; BF16: 1.5, -3 */
	uint16_t	h16[6] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00, 0x3800};
	uint16_t	b16[2] = {0x3FC0, 0xC040};
	uint8_t		data[64];
	float		f[2] = {3.25f, -1.0f};
	int64_t		s6[1] = {6},
				s2[1] = {2},
				s23[2] = {2, 3};
	Safetensors *st = NULL;
	const float *p;
	const void *raw;
	NnError		err;

	memcpy(data, h16, 12);
	memcpy(data + 12, b16, 4);
	memcpy(data + 16, f, 8);
	const char *header = "{\"__metadata__\":{\"format\":\"pt\"},"
		"\"h\":{\"dtype\":\"F16\",\"shape\":[6],\"data_offsets\":[0,12]},"
		"\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[12,16]},"
		"\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]},"
		"\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[24,32]},"
		"\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[32,32]},"
		"\"u\":{\"dtype\":\"BOOL\",\"shape\":[2,3],\"data_offsets\":[32,38]}}";
	/* pad the header so that the data (and the F32 tensor) start 1 byte off alignment */
	int			pad = (int) ((4 - (8 + strlen(header)) % 4) % 4) + 1;

	memset(data + 24, 7, 8);
	CHECK(open_buf(header, pad, data, 38, &st, &err) == NN_OK, "%s", err.msg);
	if (st == NULL)
		return;
	CHECK(safetensors_count(st) == 6, "count %d", safetensors_count(st));
	CHECK(safetensors_get_f32(st, "h", 1, s6, &p, &err) == NN_OK && p[0] == 1.0f && p[1] == -2.0f &&
		  p[2] == 65504.0f && p[3] == 0x1p-24f && isinf(p[4]) && p[5] == 0.5f, "F16 %s", err.msg);
	CHECK(safetensors_get_f32(st, "b", 1, s2, &p, &err) == NN_OK && p[0] == 1.5f && p[1] == -3.0f,
		  "BF16 %s", err.msg);
	/* the F32 tensor is misaligned in the file: it is copied, aligned */
	CHECK(safetensors_get_f32(st, "f", 1, s2, &p, &err) == NN_OK && p[0] == 3.25f &&
		  ((uintptr_t) p % 4) == 0, "misaligned F32 %s", err.msg);
	CHECK(safetensors_get(st, "i", ST_I64, 1, (int64_t[]) {1}, &raw, &err) == NN_OK,
		  "I64 %s", err.msg);
	CHECK(safetensors_get_f32(st, "i", 1, (int64_t[]) {1}, &p, &err) == NN_ERR_FORMAT,
		  "I64 read as float");
	CHECK(safetensors_get_f32(st, "f", 2, s23, &p, &err) == NN_ERR_FORMAT, "wrong shape accepted");
	printf("# wrong shape -> %s\n", err.msg);
	CHECK(safetensors_get_f32(st, "nope", 1, s2, &p, &err) == NN_ERR_FORMAT, "missing tensor");
	printf("# missing tensor -> %s\n", err.msg);
	CHECK(safetensors_find(st, "__metadata__") == NULL, "metadata is a tensor");
	safetensors_close(st);

	/* the real file is mapped, its F32 tensors used in place */
	CHECK(safetensors_open(&st, ef_path("model.safetensors"), &err) == NN_OK &&
		  safetensors_mapped(st) && safetensors_count(st) == 39, "%s", err.msg);
	safetensors_close(st);
}

static void
test_safetensors_malformed(void)
{
	static const struct
	{
		const char *what;
		const char *header;
		size_t		data_len;
	}			cases[] = {
		{"offsets past the data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4},
		{"size not dtype x shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8},
		{"begin after end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8},
		{"unknown dtype", "{\"a\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 8},
		{"no dtype", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8},
		{"negative dimension", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8},
		{"fractional dimension", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8},
		{"overflowing shape", "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],"
		"\"data_offsets\":[0,8]}}", 8},
		{"huge offsets", "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[1e300,1e300]}}", 8},
		{"overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		"\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8},
		{"overlap past an empty tensor", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
		"\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
		"\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12},
		{"duplicate name", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
		"\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 8},
		{"three offsets", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 8},
		{"too many dimensions", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
		"\"data_offsets\":[0,1]}}", 8},
		{"entry not an object", "{\"a\":[1,2]}", 8},
		{"header an array", "[{\"a\":1}]", 8},
		{"header not JSON", "{\"a\":{\"dtype\":\"F32\",", 8},
	};
	uint8_t		zeros[16] = {0};
	uint8_t		buf[256];
	Safetensors *st = NULL;
	NnError		err;
	uint64_t	n;
	char		path[] = "/tmp/dept_st_XXXXXX";
	int			fd;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		NnStatus	s = open_buf(cases[i].header, 0, zeros, cases[i].data_len, &st, &err);

		CHECK(s == NN_ERR_FORMAT && st == NULL, "%s: status %d", cases[i].what, (int) s);
		if (s == NN_ERR_FORMAT)
			printf("# %s -> %s\n", cases[i].what, err.msg);
		safetensors_close(st);
		st = NULL;
	}
	/* truncated: fewer than 8 bytes, a header length past the end, a zero length */
	CHECK(safetensors_from_buffer(&st, "\x10\0\0", 3, &err) == NN_ERR_FORMAT, "3 bytes");
	printf("# 3 bytes -> %s\n", err.msg);
	n = 1000;
	memcpy(buf, &n, 8);
	memcpy(buf + 8, "{}", 2);
	CHECK(safetensors_from_buffer(&st, buf, 10, &err) == NN_ERR_FORMAT, "header past EOF");
	printf("# header length past EOF -> %s\n", err.msg);
	n = UINT64_MAX;
	memcpy(buf, &n, 8);
	CHECK(safetensors_from_buffer(&st, buf, 10, &err) == NN_ERR_FORMAT, "header length 2^64-1");
	n = 0;
	memcpy(buf, &n, 8);
	CHECK(safetensors_from_buffer(&st, buf, 10, &err) == NN_ERR_FORMAT, "header length 0");
	/* an empty header object is a valid file without tensors */
	n = 2;
	memcpy(buf, &n, 8);
	CHECK(safetensors_from_buffer(&st, buf, 10, &err) == NN_OK && safetensors_count(st) == 0,
		  "empty file: %s", err.msg);
	safetensors_close(st);
	st = NULL;

	/* a truncated copy of the real model on disk, and a missing file */
	{
		size_t		len;
		char	   *all = hf_read_file(ef_path("model.safetensors"), (size_t) 64 << 20, &len);

		fd = mkstemp(path);
		CHECK(all != NULL && fd >= 0, "temp file");
		if (all != NULL && fd >= 0)
		{
			CHECK(write(fd, all, len - 100) == (ssize_t) (len - 100), "write");
			CHECK(safetensors_open(&st, path, &err) == NN_ERR_FORMAT, "truncated model opened");
			printf("# truncated model.safetensors -> %s\n", err.msg);
			CHECK(ftruncate(fd, 5000) == 0, "ftruncate");
			CHECK(safetensors_open(&st, path, &err) == NN_ERR_FORMAT, "header cut opened");
			printf("# cut inside the header -> %s\n", err.msg);
			close(fd);
			unlink(path);
		}
		free(all);
	}
	CHECK(safetensors_open(&st, "/nonexistent/model.safetensors", &err) == NN_ERR_IO, "missing file");
	CHECK(safetensors_open(&st, "/tmp", &err) == NN_ERR_IO, "directory");
}

/*
 * Random byte mutations of a small valid safetensors file and of a small
 * tokenizer.json: every outcome is a clean status (the sanitizers watch).
 */
static void
test_mutations(void)
{
	const char *header = "{\"__metadata__\":{\"format\":\"pt\"},"
		"\"h\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
		"\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]},"
		"\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[24,32]}}";
	const char *tok = "{\"added_tokens\":[{\"id\":0,\"content\":\"[UNK]\",\"special\":true,"
		"\"normalized\":false},{\"id\":1,\"content\":\"[CLS]\",\"special\":true,\"normalized\":false},"
		"{\"id\":2,\"content\":\"[SEP]\",\"special\":true,\"normalized\":false}],"
		"\"normalizer\":{\"type\":\"BertNormalizer\",\"clean_text\":true,\"handle_chinese_chars\":true,"
		"\"strip_accents\":null,\"lowercase\":true},\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},"
		"\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"[CLS]\"}},"
		"{\"Sequence\":{\"id\":\"A\"}},{\"SpecialToken\":{\"id\":\"[SEP]\"}}],\"special_tokens\":{"
		"\"[CLS]\":{\"id\":\"[CLS]\",\"ids\":[1]},\"[SEP]\":{\"id\":\"[SEP]\",\"ids\":[2]}}},"
		"\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"continuing_subword_prefix\":\"##\","
		"\"max_input_chars_per_word\":100,\"vocab\":{\"[UNK]\":0,\"[CLS]\":1,\"[SEP]\":2,\"a\":3,"
		"\"##b\":4,\"ab\":5,\"!\":6}}}";
	static const char alphabet[] = "{}[]\":,0123456789-e.#aZ\\ \x80";
	static uint8_t file[1024],
				mut[1024];
	char		jt[2048];
	uint8_t		data[32] = {0};
	size_t		len = make_file(file, header, 0, data, sizeof(data));
	size_t		tlen = strlen(tok);
	int			ok_st = 0,
				ok_tok = 0;
	Rng			rng;
	WordPiece  *wp = NULL;
	NnError		err;
	int32_t		ids[16];

	CHECK(wordpiece_from_json(&wp, tok, tlen, &err) == NN_OK &&
		  wordpiece_encode(wp, "AB a!", 5, ids, 16) == 5 && ids[1] == 5 && ids[2] == 3 && ids[3] == 6,
		  "small tokenizer: %s", err.msg);
	wordpiece_free(wp);
	rng_seed(&rng, 11);
	for (int k = 0; k < 4000; k++)
	{
		Safetensors *st = NULL;
		int			flips = 1 + (int) (rng_uniform(&rng) * 4);
		size_t		cut = rng_uniform(&rng) < 0.1 ? (size_t) (rng_uniform(&rng) * len) : len;
		NnStatus	s;

		memcpy(mut, file, len);
		for (int f = 0; f < flips; f++)
			mut[(size_t) (rng_uniform(&rng) * len)] = (uint8_t) (rng_uniform(&rng) * 256);
		s = safetensors_from_buffer(&st, mut, cut, &err);
		CHECK(s == NN_OK || s == NN_ERR_FORMAT, "safetensors mutation %d: status %d", k, (int) s);
		ok_st += s == NN_OK;
		safetensors_close(st);

		memcpy(jt, tok, tlen);
		for (int f = 0; f < flips; f++)
			jt[(size_t) (rng_uniform(&rng) * tlen)] = alphabet[(int) (rng_uniform(&rng) * (sizeof(alphabet) - 1))];
		s = wordpiece_from_json(&wp, jt, tlen, &err);
		CHECK(s == NN_OK || s == NN_ERR_FORMAT, "tokenizer mutation %d: status %d", k, (int) s);
		if (s == NN_OK)
		{
			int			n = wordpiece_encode(wp, "ab abab [CLS] a!b", 17, ids, 16);

			CHECK(n >= 0 && n <= 16, "mutated tokenizer gave %d ids", n);
			ok_tok++;
		}
		wordpiece_free(wp);
		wp = NULL;
	}
	printf("# mutations: %d of 4000 safetensors and %d of 4000 tokenizer.json still valid\n",
		   ok_st, ok_tok);
}

/* ---- config.json and model directories ---------------------------------------- */

static void
test_config(void)
{
	static const struct
	{
		const char *what;
		const char *json;
	}			bad[] = {
		{"not JSON", "{\"hidden_size\": 32,"},
		{"not an object", "[1]"},
		{"missing hidden_size", "{\"num_hidden_layers\":2,\"num_attention_heads\":4,"
		"\"intermediate_size\":64,\"vocab_size\":10}"},
		{"string hidden_size", "{\"hidden_size\":\"32\",\"num_hidden_layers\":2,\"num_attention_heads\":4,"
		"\"intermediate_size\":64,\"vocab_size\":10}"},
		{"heads do not divide", "{\"hidden_size\":30,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
		"\"intermediate_size\":64,\"vocab_size\":10}"},
		{"zero layers", "{\"hidden_size\":32,\"num_hidden_layers\":0,\"num_attention_heads\":4,"
		"\"intermediate_size\":64,\"vocab_size\":10}"},
		{"huge vocab", "{\"hidden_size\":32,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
		"\"intermediate_size\":64,\"vocab_size\":1e12}"},
		{"negative eps", "{\"hidden_size\":32,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
		"\"intermediate_size\":64,\"vocab_size\":10,\"layer_norm_eps\":-1}"},
		{"numeric hidden_act", "{\"hidden_size\":32,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
		"\"intermediate_size\":64,\"vocab_size\":10,\"hidden_act\":5}"},
	};
	/* nreimers/MiniLM-L6-H384-uncased: no model_type, no layer_norm_eps */
	const char *minilm = "{\"attention_probs_dropout_prob\":0.1,\"hidden_act\":\"gelu\","
		"\"hidden_dropout_prob\":0.1,\"hidden_size\":384,\"initializer_range\":0.02,"
		"\"intermediate_size\":1536,\"max_position_embeddings\":512,"
		"\"architectures\":[\"BertModel\"],\"num_attention_heads\":12,"
		"\"num_hidden_layers\":6,\"type_vocab_size\":2,\"vocab_size\":30522}";
	HfConfig	c;
	NnError		err;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		NnStatus	s = hf_config_parse(&c, bad[i].json, strlen(bad[i].json), &err);

		CHECK(s == NN_ERR_FORMAT, "%s: status %d", bad[i].what, (int) s);
		if (s == NN_ERR_FORMAT)
			printf("# config %s -> %s\n", bad[i].what, err.msg);
	}
	CHECK(hf_config_parse(&c, minilm, strlen(minilm), &err) == NN_OK, "MiniLM: %s", err.msg);
	CHECK(strcmp(c.model_type, "bert") == 0 && c.hidden_size == 384 && c.num_hidden_layers == 6 &&
		  c.num_attention_heads == 12 && c.intermediate_size == 1536 && c.layer_norm_eps == 1e-12 &&
		  c.max_position_embeddings == 512 && c.type_vocab_size == 2 &&
		  strcmp(c.hidden_act, "gelu") == 0, "MiniLM fields");
	CHECK(hf_config_load(&c, ef_path("config.json"), &err) == NN_OK &&
		  c.hidden_size == 32 && c.num_hidden_layers == 2 && c.layer_norm_eps == 1e-12 &&
		  c.vocab_size == 30522, "fixture config: %s", err.msg);
}

/* A temp directory with the fixture's files symlinked, except those in skip. */
static char *
model_dir_copy(const char *skip1, const char *skip2)
{
	static const char *files[] = {"config.json", "model.safetensors", "tokenizer.json",
	"vocab.txt", "special_tokens_map.json", "tokenizer_config.json"};
	static char dir[64];
	char		from[4096 + 64],
				to[128],
				abs[4096];

	snprintf(dir, sizeof(dir), "/tmp/dept_bert_XXXXXX");
	if (mkdtemp(dir) == NULL || realpath(ef_fixture, abs) == NULL)
		return NULL;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
	{
		if ((skip1 && strcmp(files[i], skip1) == 0) || (skip2 && strcmp(files[i], skip2) == 0))
			continue;
		snprintf(from, sizeof(from), "%s/%.32s", abs, files[i]);
		snprintf(to, sizeof(to), "%s/%.32s", dir, files[i]);
		if (symlink(from, to) != 0)
			return NULL;
	}
	return dir;
}

static void
remove_dir(const char *dir)
{
	static const char *files[] = {"config.json", "model.safetensors", "tokenizer.json",
	"vocab.txt", "special_tokens_map.json", "tokenizer_config.json"};
	char		p[4200];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
	{
		snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
		unlink(p);
	}
	rmdir(dir);
}

static void
write_file(const char *dir, const char *name, const void *data, size_t len)
{
	char		p[4200];
	FILE	   *f;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	unlink(p);
	f = fopen(p, "wb");
	if (f != NULL)
	{
		fwrite(data, 1, len, f);
		fclose(f);
	}
}

/* Without tokenizer.json, pairs take BERT's template from vocab.txt's [CLS] and [SEP]. */
static void
test_pairs_from_vocab_txt(void)
{
	char	   *dir = model_dir_copy("tokenizer.json", NULL);
	Backbone   *bb = NULL;
	NnError		err;

	CHECK(dir != NULL && backbone_open(&bb, dir, &err) == NN_OK, "vocab.txt dir: %s",
		  dir ? err.msg : "mkdtemp");
	if (bb != NULL)
	{
		CHECK(run_pair_cases(bb, "tokenizer_pair_cases.jsonl") >= 300, "too few pair cases");
		CHECK(run_pair_cases(bb, "tokenizer_pair_truncation_cases.jsonl") >= 100,
			  "too few truncation cases");
	}
	backbone_close(bb);
	if (dir != NULL)
		remove_dir(dir);
}

/* Open dir through backbone_open, expecting status want. */
static void
expect_open(const char *dir, NnStatus want, const char *what)
{
	Backbone   *bb = NULL;
	NnError		err;
	NnStatus	s = backbone_open(&bb, dir, &err);

	CHECK(s == want && (s != NN_OK) == (bb == NULL), "%s: status %d (%s)", what, (int) s,
		  s ? err.msg : "");
	if (s != NN_OK && s == want)
		printf("# %s -> %s\n", what, err.msg);
	backbone_close(bb);
}

static void
test_model_dirs(void)
{
	char	   *dir;
	static const char *configs[][2] = {
		{"bad config.json", "{\"model_type\": \"bert\", \"hidden_size\": "},
		{"unsupported model_type", "{\"model_type\": \"gpt2\"}"},
		{"config/weights mismatch", "{\"model_type\":\"bert\",\"hidden_size\":64,\"num_hidden_layers\":2,"
		"\"num_attention_heads\":4,\"intermediate_size\":64,\"vocab_size\":30522,"
		"\"max_position_embeddings\":128}"},
		{"more layers than weights", "{\"model_type\":\"bert\",\"hidden_size\":32,\"num_hidden_layers\":3,"
		"\"num_attention_heads\":4,\"intermediate_size\":64,\"vocab_size\":30522,"
		"\"max_position_embeddings\":128}"},
		{"unsupported hidden_act", "{\"model_type\":\"bert\",\"hidden_size\":32,\"num_hidden_layers\":2,"
		"\"num_attention_heads\":4,\"intermediate_size\":64,\"vocab_size\":30522,"
		"\"max_position_embeddings\":128,\"hidden_act\":\"swish\"}"},
		{"relative positions", "{\"model_type\":\"bert\",\"hidden_size\":32,\"num_hidden_layers\":2,"
		"\"num_attention_heads\":4,\"intermediate_size\":64,\"vocab_size\":30522,"
		"\"max_position_embeddings\":128,\"position_embedding_type\":\"relative_key\"}"},
		{"vocab_size other than the embedding rows", "{\"model_type\":\"bert\",\"hidden_size\":32,"
		"\"num_hidden_layers\":2,\"num_attention_heads\":4,\"intermediate_size\":64,"
		"\"vocab_size\":1000,\"max_position_embeddings\":128}"},
	};

	for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++)
	{
		if ((dir = model_dir_copy("config.json", NULL)) == NULL)
		{
			CHECK(0, "temp dir");
			return;
		}
		write_file(dir, "config.json", configs[i][1], strlen(configs[i][1]));
		expect_open(dir, NN_ERR_FORMAT, configs[i][0]);
		remove_dir(dir);
	}

	/* no weights; no tokenizer at all; vocab.txt only (opens, same answers) */
	dir = model_dir_copy("model.safetensors", NULL);
	expect_open(dir, NN_ERR_IO, "missing model.safetensors");
	remove_dir(dir);
	dir = model_dir_copy("tokenizer.json", "vocab.txt");
	expect_open(dir, NN_ERR_IO, "missing tokenizer");
	remove_dir(dir);
	dir = model_dir_copy("tokenizer.json", NULL);
	{
		Backbone   *bb = NULL;
		NnError		err;
		int32_t		a[64],
					b[64];
		const char *t = "Naïve café owners' résumés — 42 reasons";

		CHECK(backbone_open(&bb, dir, &err) == NN_OK, "vocab.txt only: %s", err.msg);
		if (bb != NULL && ef_model != NULL)
		{
			int			na = bb->ops->tokenize(bb, t, strlen(t), a, 64);
			int			nb = ef_model->ops->tokenize(ef_model, t, strlen(t), b, 64);

			CHECK(na == nb && memcmp(a, b, sizeof(int32_t) * na) == 0, "vocab.txt tokens differ");
			CHECK(strcmp(bb->fingerprint, ef_model->fingerprint) != 0, "same fingerprint");
		}
		backbone_close(bb);
	}
	remove_dir(dir);

	/* a malformed tokenizer.json and a truncated model.safetensors */
	dir = model_dir_copy("tokenizer.json", NULL);
	{
		const char *bpe = "{\"model\": {\"type\": \"BPE\"}, \"pre_tokenizer\": "
			"{\"type\": \"BertPreTokenizer\"}}";

		write_file(dir, "tokenizer.json", bpe, strlen(bpe));
	}
	expect_open(dir, NN_ERR_FORMAT, "BPE tokenizer.json");
	remove_dir(dir);
	dir = model_dir_copy("model.safetensors", NULL);
	{
		size_t		len;
		char	   *all = hf_read_file(ef_path("model.safetensors"), (size_t) 64 << 20, &len);

		if (all != NULL)
			write_file(dir, "model.safetensors", all, len / 2);
		free(all);
	}
	expect_open(dir, NN_ERR_FORMAT, "truncated model.safetensors");
	remove_dir(dir);
}

int
main(void)
{
	NnError		err;

	ef_H = H;
	snprintf(ef_fixture, sizeof(ef_fixture), "%s/bert-tiny-random", UNIT_HF_DIR());
	if (safetensors_open(&ef_ref, ef_path("reference.safetensors"), &err) != NN_OK)
		printf("# cannot read the reference: %s\n", err.msg);
	RUN_TEST(test_tokenizer_cases);
	RUN_TEST(test_tokenizer_edges);
	RUN_TEST(test_open);
	if (ef_model != NULL)
	{
		RUN_TEST(test_reference_tokens);
		RUN_TEST(test_tokenizer_pairs);
		RUN_TEST(test_pairs_from_vocab_txt);
		RUN_TEST(test_forward_reference);
		RUN_TEST(test_backward_reference);
		RUN_TEST(test_dept_reference);
		RUN_TEST(test_pooling_fd);
		RUN_TEST(test_speed);
	}
	RUN_TEST(test_safetensors_good);
	RUN_TEST(test_safetensors_malformed);
	RUN_TEST(test_mutations);
	RUN_TEST(test_config);
	RUN_TEST(test_model_dirs);
	backbone_close(ef_model);
	safetensors_close(ef_ref);
	return unit_finish();
}
