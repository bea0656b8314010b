/*
 * test_pairs.c: sentence pairs on the training path (train/batch.c), the
 * pair encodings of adapter.h (AdapterPair) and their storage (adapter_io.h
 * version 6).
 *
 * Accepted:
 *   native tokens   every case of tokenizer_pair_cases.jsonl and
 *                   tokenizer_pair_truncation_cases.jsonl (transformers'
 *                   ids and token type ids, fixtures of bert-tiny-random
 *                   and roberta-tiny-random) equal the token cache
 *                   batch_tokenize_all builds from a Dataset of pairs; a
 *                   forward with m prompt rows gets those types shifted by m
 *                   (prompt rows and padding type 0)
 *   native forward  the pooled (mean) output of the batch path for the
 *                   fixture's two pairs equals the mean of the reference
 *                   pair_last_hidden_state over its mask within 1e-4
 *                   relative (roberta and xlm-roberta have one, bert-tiny
 *                   has none); on bert-tiny the types change the output and
 *                   the batch path equals a direct forward with them
 *   siamese head    siamese_backward equals central differences of
 *                   siamese_features (double, 1e-6); and through the
 *                   backbone: the gradients batch_backward_rows gives the
 *                   prompt, the low-rank pair and the head of a siamese DePT
 *                   adapter on bert-tiny equal central finite differences of
 *                   the training loss within 2% along a random direction and
 *                   on the largest coordinates
 *   defaults        train_default_pair: native on BERT, joined on T5,
 *                   siamese on use-lite
 *   storage         native and siamese adapters are written as version 6
 *                   (header 108) and read back equal; a joined one keeps
 *                   its older version; a bad pair field is refused;
 *                   classify_pairs gives the same probabilities in batches of
 *                   any size and refuses a joined adapter
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/adapter_io.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "hf_reference.h"
#include "models/bert/bert.h"
#include "train/batch.h"
#include "unit.h"

static char *
fixture(const char *model, const char *name)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s/%s/%s", UNIT_HF_DIR(), model, name);
	return path;
}

static Backbone *
open_model(const char *model)
{
	Backbone   *bb = NULL;
	NnError		err;

	CHECK(backbone_open(&bb, fixture(model, ""), &err) == NN_OK, "%s: %s", model, err.msg);
	return bb;
}

/* A pair dataset of the cases of a jsonl file; want_ids/want_types (n, 1024), counts. */
static Dataset *
read_pair_cases(const char *model, const char *name, int32_t **want_ids, uint8_t **want_types,
				int **want_n, int **max_length)
{
	size_t		len;
	char	   *all = hf_read_file(fixture(model, name), (size_t) 64 << 20, &len);
	char	   *cursor = all;
	cJSON	   *c;
	Dataset    *ds = dataset_new();
	NnError		err;
	int			cap = 4096;

	*want_ids = malloc(sizeof(int32_t) * cap * 1024);
	*want_types = malloc((size_t) cap * 1024);
	*want_n = malloc(sizeof(int) * cap);
	*max_length = malloc(sizeof(int) * cap);
	CHECK(all != NULL, "cannot read %s of %s", name, model);
	while (ds->n_rows < cap && (c = ef_next_case(&cursor, NULL)) != NULL)
	{
		const char *a = cJSON_GetObjectItem(c, "text_a")->valuestring;
		const char *b = cJSON_GetObjectItem(c, "text_b")->valuestring;
		const cJSON *ids = cJSON_GetObjectItem(c, "ids");
		const cJSON *types = cJSON_GetObjectItem(c, "type_ids");
		const cJSON *maxl = cJSON_GetObjectItem(c, "max_length");
		int			i = ds->n_rows;

		CHECK(dataset_add_pair(ds, a, strlen(a), b, strlen(b), "x", 1, &err) == NN_OK, "%s",
			  err.msg);
		(*want_n)[i] = cJSON_GetArraySize(ids);
		(*max_length)[i] = cJSON_IsNumber(maxl) ? maxl->valueint : 0;
		for (int k = 0; k < (*want_n)[i] && k < 1024; k++)
		{
			(*want_ids)[(size_t) i * 1024 + k] = cJSON_GetArrayItem(ids, k)->valueint;
			(*want_types)[(size_t) i * 1024 + k] = (uint8_t) cJSON_GetArrayItem(types, k)->valueint;
		}
		cJSON_Delete(c);
	}
	free(all);
	return ds;
}

/* The cases of one file through batch_tokenize_all (NATIVE); returns how many matched. */
static int
check_pair_cases(const Backbone *bb, const char *model, const char *name)
{
	int32_t    *want_ids;
	uint8_t    *want_types;
	int		   *want_n,
			   *max_length,
				matched = 0,
				max_len;
	Dataset    *ds = read_pair_cases(model, name, &want_ids, &want_types, &want_n, &max_length);
	TokenCache	tc;
	NnError		err;

	/* the truncation cases share one max_length: the training path's max_len */
	max_len = ds->n_rows > 0 && max_length[0] > 0 ? max_length[0] : bb->max_tokens;
	CHECK(batch_tokenize_all(bb, ds, max_len, ADAPTER_PAIR_NATIVE, &tc, &err) == NN_OK, "%s", err.msg);
	for (int i = 0; tc.ids && i < ds->n_rows; i++)
	{
		bool		eq = tc.count[i] == want_n[i] && (max_length[i] == 0 || max_length[i] == max_len);

		/* a case longer than the model (without max_length) is truncated on this path */
		if (want_n[i] > max_len)
			continue;

		for (int k = 0; eq && k < want_n[i]; k++)
			eq = tc.ids[(size_t) i * max_len + k] == want_ids[(size_t) i * 1024 + k] &&
				tc.types[(size_t) i * max_len + k] == want_types[(size_t) i * 1024 + k];
		CHECK(eq, "%s %s case %d: %d ids, expected %d", model, name, i + 1, tc.count[i], want_n[i]);
		matched += eq;
	}
	batch_token_cache_free(&tc);
	dataset_free(ds);
	free(want_ids);
	free(want_types);
	free(want_n);
	free(max_length);
	return matched;
}

static void
test_native_tokens(void)
{
	const char *models[] = {"bert-tiny-random", "roberta-tiny-random"};

	for (int m = 0; m < 2; m++)
	{
		Backbone   *bb = open_model(models[m]);
		int			n;

		if (bb == NULL)
			continue;
		n = check_pair_cases(bb, models[m], "tokenizer_pair_cases.jsonl");
		printf("# %s: %d pair cases equal on the batch path\n", models[m], n);
		CHECK(n >= 300, "%s: only %d pair cases", models[m], n);
		n = check_pair_cases(bb, models[m], "tokenizer_pair_truncation_cases.jsonl");
		printf("# %s: %d truncation cases equal on the batch path\n", models[m], n);
		CHECK(n >= 100, "%s: only %d truncation cases", models[m], n);
		backbone_close(bb);
	}
}

/* A linear adapter for bb reading pairs with pair (probe when P == 0, else DePT). */
static Adapter *
new_adapter(const Backbone *bb, int pair, int P, int rank, int C, int max_batch, uint64_t seed)
{
	AdapterConfig cfg = {0};
	Adapter    *a = NULL;
	NnError		err;
	Rng			rng;

	cfg.method = P > 0 ? ADAPTER_DEPT : ADAPTER_PROBE;
	cfg.d = bb->d_embed;
	cfg.h_dim = bb->d_out * (pair == ADAPTER_PAIR_SIAMESE ? 4 : 1);
	cfg.n_classes = C;
	cfg.prompt_len = P;
	cfg.max_len = 64;
	cfg.rank = rank;
	cfg.alpha = 8.0f;
	cfg.pair = pair;
	CHECK(adapter_new(&a, &cfg, max_batch, seed, &err) == NN_OK, "%s", err.msg);
	if (a == NULL)
		return NULL;
	rng_seed(&rng, seed);
	{
		AdapterParam *all[] = {&a->prompt, &a->lora_a, &a->lora_b, &a->head_w, &a->head_b};

		for (int i = 0; i < 5; i++)
			for (size_t k = 0; k < all[i]->n; k++)
				all[i]->w[k] = (float) (rng_uniform(&rng) - 0.5);
	}
	return a;
}

static Dataset *
pairs_dataset(const char *const *a, const char *const *b, const char *const *labels, int n)
{
	Dataset    *ds = dataset_new();
	NnError		err;

	for (int i = 0; i < n; i++)
		CHECK(dataset_add_pair(ds, a[i], strlen(a[i]), b[i], strlen(b[i]), labels[i],
							   strlen(labels[i]), &err) == NN_OK, "%s", err.msg);
	CHECK(dataset_finish(ds, &err) == NN_OK, "%s", err.msg);
	return ds;
}

/* The fixture's two pairs: pooled (mean) output of the batch path against the reference. */
static void
check_pair_reference(const char *model)
{
	Backbone   *bb = open_model(model);
	Safetensors *ref = NULL;
	NnError		err;
	size_t		len;
	char	   *json = hf_read_file(fixture(model, "reference.json"), 1 << 20, &len);
	cJSON	   *root = json ? cJSON_Parse(json) : NULL;
	const cJSON *pairs = cJSON_GetObjectItem(root, "pairs");
	const StTensor *t;

	if (bb == NULL || pairs == NULL ||
		safetensors_open(&ref, fixture(model, "reference.safetensors"), &err) != NN_OK ||
		(t = safetensors_find(ref, "pair_last_hidden_state")) == NULL)
		CHECK(0, "%s: no pair reference", model);
	else
	{
		int			T = (int) t->shape[1],
					H = bb->d_out;
		int64_t		shape3[3] = {2, T, H},
					shape2[2] = {2, T};
		const float *hidden = NULL;
		const void *mask = NULL;
		const char *a[2],
				   *b[2],
				   *labels[2] = {"p", "q"};
		Dataset    *ds;
		Adapter    *ad = new_adapter(bb, ADAPTER_PAIR_NATIVE, 0, 0, 2, 2, 1);
		TokenCache	tc;
		Workspace	ws;
		int			rows[2] = {0, 1},
					n;
		double		worst = 0,
					scale = 0;

		for (int i = 0; i < 2; i++)
		{
			a[i] = cJSON_GetArrayItem(cJSON_GetArrayItem(pairs, i), 0)->valuestring;
			b[i] = cJSON_GetArrayItem(cJSON_GetArrayItem(pairs, i), 1)->valuestring;
		}
		ds = pairs_dataset(a, b, labels, 2);
		CHECK(safetensors_get_f32(ref, "pair_last_hidden_state", 3, shape3, &hidden, &err) == NN_OK &&
			  safetensors_get(ref, "pair_attention_mask", ST_I32, 2, shape2, &mask, &err) == NN_OK,
			  "%s", err.msg);
		CHECK(bert_set_pooling(bb, BERT_POOL_MEAN, &err) == NN_OK, "%s", err.msg);
		CHECK(batch_tokenize_all(bb, ds, bb->max_tokens, ADAPTER_PAIR_NATIVE, &tc, &err) == NN_OK &&
			  batch_workspace_init(bb, &ws, &ad->cfg, 2, bb->max_tokens, 2, false, false, NULL,
								   &err) == NN_OK &&
			  batch_forward_rows(bb, ad, &ws, &tc, rows, 2, &n, &err) == NN_OK, "%s", err.msg);
		for (int r = 0; hidden && mask && r < 2; r++)
			for (int j = 0; j < H; j++)
			{
				double		sum = 0;
				int			count = 0;

				for (int p = 0; p < T; p++)
					if (((const int32_t *) mask)[r * T + p])
					{
						sum += hidden[((size_t) r * T + p) * H + j];
						count++;
					}
				sum /= count;
				worst = fmax(worst, fabs(sum - ws.h[(size_t) r * H + j]));
				scale = fmax(scale, fabs(sum));
			}
		printf("# %s: pair pooled output on the batch path, rel diff %.2e\n", model, worst / scale);
		CHECK(worst <= 1e-4 * scale, "%s: pooled pair output rel diff %.3e", model, worst / scale);
		batch_token_cache_free(&tc);
		batch_workspace_free(bb, &ws);
		adapter_free(ad);
		dataset_free(ds);
	}
	safetensors_close(ref);
	cJSON_Delete(root);
	free(json);
	backbone_close(bb);
}

static const char *const PAIR_A[] = {"the cat sat on the mat", "a fine film", "stocks fell sharply",
"it rained all day long in the city", "nobody came", "the report was late"};
static const char *const PAIR_B[] = {"a cat is sitting", "the film was bad",
"markets dropped", "the weather was dry", "everyone came to the party", "it was on time"};
static const char *const PAIR_LABELS[] = {"yes", "no", "yes", "no", "no", "no"};

/* bert-tiny: types reach the forward (shifted past the prompt) and change it. */
static void
test_native_types(void)
{
	Backbone   *bb = open_model("bert-tiny-random");
	Dataset    *ds;
	Adapter    *ad;
	TokenCache	tc;
	Workspace	ws;
	NnError		err;
	int			rows[3] = {0, 3, 5},
				n,
				P = 3;
	float	   *direct;
	bool		shifted = true;
	double		diff_types = 0,
				diff_direct = 0;

	if (bb == NULL)
		return;
	ds = pairs_dataset(PAIR_A, PAIR_B, PAIR_LABELS, 6);
	ad = new_adapter(bb, ADAPTER_PAIR_NATIVE, P, 2, 2, 3, 7);
	CHECK(batch_tokenize_all(bb, ds, 64, ADAPTER_PAIR_NATIVE, &tc, &err) == NN_OK &&
		  batch_workspace_init(bb, &ws, &ad->cfg, 3, 64, 2, false, false, NULL, &err) == NN_OK &&
		  batch_forward_rows(bb, ad, &ws, &tc, rows, 3, &n, &err) == NN_OK, "%s", err.msg);
	for (int b = 0; b < 3; b++)
		for (int p = 0; p < P + n; p++)
		{
			int			k = p - P;
			uint8_t		want = k >= 0 && k < tc.count[rows[b]] ? tc.types[(size_t) rows[b] * 64 + k] : 0;

			shifted = shifted && ws.types[(size_t) b * (P + n) + p] == want;
		}
	CHECK(shifted, "token types are not the pair's shifted past %d prompt rows", P);
	direct = malloc(sizeof(float) * 3 * bb->d_out);
	memcpy(direct, ws.h, sizeof(float) * 3 * bb->d_out);
	/* the same X without types: the output moves */
	CHECK(bb->ops->forward(bb, ws.run, ws.X, ws.x_mask, 3, P + n, ws.hp ? ws.hp : ws.dh, &err) == NN_OK,
		  "%s", err.msg);
	for (size_t i = 0; i < (size_t) 3 * bb->d_out; i++)
		diff_types = fmax(diff_types, fabs(direct[i] - ws.dh[i]));
	CHECK(diff_types > 1e-6, "token types change nothing (%.3g)", diff_types);
	/* and with them set by hand, a direct forward is the batch path's */
	backbone_run_token_types(bb, ws.run, ws.types);
	CHECK(bb->ops->forward(bb, ws.run, ws.X, ws.x_mask, 3, P + n, ws.dh, &err) == NN_OK, "%s", err.msg);
	for (size_t i = 0; i < (size_t) 3 * bb->d_out; i++)
		diff_direct = fmax(diff_direct, fabs(direct[i] - ws.dh[i]));
	CHECK(diff_direct == 0, "batch path vs direct forward: %.3g", diff_direct);
	printf("# bert-tiny pair: types move the pooled output by %.3g\n", diff_types);
	free(direct);
	batch_token_cache_free(&tc);
	batch_workspace_free(bb, &ws);
	adapter_free(ad);
	dataset_free(ds);
	backbone_close(bb);
}

static void
test_native_reference(void)
{
	check_pair_reference("roberta-tiny-random");
	check_pair_reference("xlm-roberta-tiny-random");
}

/* siamese_backward against central differences of siamese_features, in float on small values. */
static void
test_siamese_head_math(void)
{
	enum
	{
		B = 3, K = 5
	};
	Rng			rng;
	float		u[B * K],
				v[B * K],
				g[B * 4 * K],
				f[B * 4 * K],
				du[B * K],
				dv[B * K];
	double		worst = 0;

	rng_seed(&rng, 3);
	for (int i = 0; i < B * K; i++)
	{
		u[i] = (float) (rng_uniform(&rng) - 0.5);
		v[i] = (float) (rng_uniform(&rng) - 0.5);
		/* away from the kink of |u - v|, which a difference of step 1e-3 must not cross */
		if (fabsf(u[i] - v[i]) < 0.01f)
			v[i] += 0.02f;
	}
	for (int i = 0; i < B * 4 * K; i++)
		g[i] = (float) (rng_uniform(&rng) - 0.5);
	siamese_backward(u, v, g, B, K, du, dv);
	for (int side = 0; side < 2; side++)
		for (int i = 0; i < B * K; i++)
		{
			float	   *x = side ? v : u,
						keep = x[i];
			double		lp = 0,
						lm = 0,
						h = 1e-3;

			x[i] = keep + (float) h;
			siamese_features(u, v, B, K, f);
			for (int j = 0; j < B * 4 * K; j++)
				lp += (double) f[j] * g[j];
			x[i] = keep - (float) h;
			siamese_features(u, v, B, K, f);
			for (int j = 0; j < B * 4 * K; j++)
				lm += (double) f[j] * g[j];
			x[i] = keep;
			worst = fmax(worst, fabs((lp - lm) / (2 * h) - (side ? dv : du)[i]));
		}
	siamese_features(u, v, B, K, f);
	CHECK(f[0] == u[0] && f[K] == v[0] && f[2 * K] == fabsf(u[0] - v[0]) && f[3 * K] == u[0] * v[0],
		  "feature layout [u; v; |u - v|; u * v]");
	printf("# siamese head: backward vs central differences %.2e\n", worst);
	CHECK(worst < 1e-4, "siamese backward off by %.3g", worst);
}

static void
zero_grads(Adapter *a)
{
	AdapterParam *all[] = {&a->prompt, &a->lora_a, &a->lora_b, &a->head_w, &a->head_b};

	for (int i = 0; i < 5; i++)
		if (all[i]->n)
			memset(all[i]->g, 0, sizeof(float) * all[i]->n);
}

/* The training loss of rows (cross-entropy, mean) and, when backward, the gradients. */
static double
siamese_loss(const Backbone *bb, Adapter *a, Workspace *ws, const TokenCache *tc,
			 const Dataset *ds, const int *rows, int B, bool backward)
{
	int			n;
	double		loss = 0;
	NnError		err;

	for (int b = 0; b < B; b++)
		ws->labels[b] = ds->labels[rows[b]];
	CHECK(batch_forward_rows(bb, a, ws, tc, rows, B, &n, &err) == NN_OK, "%s", err.msg);
	CHECK(head_loss_backward(a, ws->h, ws->logits, ws->labels, B, ws->dh, &loss, &err) == NN_OK,
		  "%s", err.msg);
	if (backward)
		CHECK(batch_backward_rows(bb, a, ws, B, n, &err) == NN_OK, "%s", err.msg);
	return loss;
}

/*
 * Finite differences of the whole siamese step on bert-tiny (GELU: smooth):
 * along a random direction over every trainable tensor, and on the largest
 * gradient coordinates of each.
 */
static void
test_siamese_gradients(void)
{
	Backbone   *bb = open_model("bert-tiny-random");
	Dataset    *ds;
	Adapter    *a;
	TokenCache	tc;
	Workspace	ws;
	NnError		err;
	int			rows[4] = {0, 1, 2, 4};
	AdapterParam *all[5];
	float	   *grads[5];
	const char *names[] = {"prompt", "lora_a", "lora_b", "head_w", "head_b"};
	double		h = 1e-3,
				dot = 0,
				fd = 0;
	Rng			rng;

	if (bb == NULL)
		return;
	ds = pairs_dataset(PAIR_A, PAIR_B, PAIR_LABELS, 6);
	a = new_adapter(bb, ADAPTER_PAIR_SIAMESE, 4, 2, 2, 8, 11);
	all[0] = &a->prompt;
	all[1] = &a->lora_a;
	all[2] = &a->lora_b;
	all[3] = &a->head_w;
	all[4] = &a->head_b;
	CHECK(batch_tokenize_all(bb, ds, 64, ADAPTER_PAIR_SIAMESE, &tc, &err) == NN_OK &&
		  batch_workspace_init(bb, &ws, &a->cfg, 4, 64, 2, true, false, NULL, &err) == NN_OK,
		  "%s", err.msg);
	CHECK(tc.count[0] > 0 && tc.count[6] > 0 && tc.n_rows == 6, "siamese cache: a then b texts");
	zero_grads(a);
	siamese_loss(bb, a, &ws, &tc, ds, rows, 4, true);
	/* the head accumulates its gradients on every loss: keep the first ones */
	for (int t = 0; t < 5; t++)
	{
		grads[t] = malloc(sizeof(float) * all[t]->n);
		memcpy(grads[t], all[t]->g, sizeof(float) * all[t]->n);
	}

	/* along a random direction r: (L(w + h r) - L(w - h r)) / 2h = g . r */
	rng_seed(&rng, 5);
	{
		float	   *dir[5];

		for (int t = 0; t < 5; t++)
		{
			dir[t] = malloc(sizeof(float) * all[t]->n);
			for (size_t k = 0; k < all[t]->n; k++)
			{
				dir[t][k] = (float) (rng_uniform(&rng) - 0.5);
				dot += (double) dir[t][k] * grads[t][k];
			}
		}
		for (int sgn = 1; sgn >= -1; sgn -= 2)
		{
			double		l;

			for (int t = 0; t < 5; t++)
				for (size_t k = 0; k < all[t]->n; k++)
					all[t]->w[k] += (float) (sgn * h) * dir[t][k];
			l = siamese_loss(bb, a, &ws, &tc, ds, rows, 4, false);
			for (int t = 0; t < 5; t++)
				for (size_t k = 0; k < all[t]->n; k++)
					all[t]->w[k] -= (float) (sgn * h) * dir[t][k];
			fd = sgn > 0 ? l : (fd - l) / (2 * h);
		}
		printf("# siamese DePT step: directional derivative %.6f, finite differences %.6f\n", dot, fd);
		CHECK(fabs(fd - dot) <= 0.02 * fabs(dot) + 1e-6, "directional: %.6g vs %.6g", fd, dot);
		for (int t = 0; t < 5; t++)
			free(dir[t]);
	}
	/* the largest coordinate of each tensor */
	for (int t = 0; t < 5; t++)
	{
		size_t		best = 0;
		float		keep;
		double		lp,
					lm,
					want;

		for (size_t k = 1; k < all[t]->n; k++)
			if (fabsf(grads[t][k]) > fabsf(grads[t][best]))
				best = k;
		want = grads[t][best];
		keep = all[t]->w[best];
		all[t]->w[best] = keep + (float) h;
		lp = siamese_loss(bb, a, &ws, &tc, ds, rows, 4, false);
		all[t]->w[best] = keep - (float) h;
		lm = siamese_loss(bb, a, &ws, &tc, ds, rows, 4, false);
		all[t]->w[best] = keep;
		fd = (lp - lm) / (2 * h);
		printf("# %s[%zu]: gradient %.6f, finite differences %.6f\n", names[t], best, want, fd);
		CHECK(fabs(fd - want) <= 0.02 * fabs(want) + 1e-5, "%s[%zu]: %.6g vs %.6g", names[t], best,
			  fd, want);
		free(grads[t]);
	}
	batch_token_cache_free(&tc);
	batch_workspace_free(bb, &ws);
	adapter_free(a);
	dataset_free(ds);
	backbone_close(bb);
}

/* Version 5 for native and siamese adapters, read back equal; joined keeps its version. */
static void
test_storage(void)
{
	Backbone   *bb = open_model("bert-tiny-random");
	const char *names[] = {"no", "yes"};
	NnError		err;

	if (bb == NULL)
		return;
	for (int pair = ADAPTER_PAIR_JOINED; pair <= ADAPTER_PAIR_SIAMESE; pair++)
	{
		Adapter    *a = new_adapter(bb, pair, 4, 2, 2, 8, 13),
				   *back = NULL;
		uint8_t    *bytes = NULL;
		size_t		len = 0;
		char		fp[65];
		char	  **back_names = NULL;

		CHECK(adapter_serialize(a, bb->fingerprint, names, &bytes, &len, &err) == NN_OK, "%s", err.msg);
		if (bytes == NULL)
			continue;
		CHECK((bytes[4] == ADAPTER_IO_VERSION_PAIR) == (pair != ADAPTER_PAIR_JOINED), "pair %d written as version %d", pair,
			  bytes[4]);
		CHECK(pair == ADAPTER_PAIR_JOINED ? bytes[8] == 104 : bytes[8] == 108 && bytes[104] == pair,
			  "pair %d: header size %d", pair, bytes[8]);
		CHECK(adapter_deserialize(bytes, len, 8, &back, fp, &back_names, &err) == NN_OK, "%s", err.msg);
		CHECK(back && memcmp(&back->cfg, &a->cfg, sizeof(a->cfg)) == 0 &&
			  memcmp(back->head_w.w, a->head_w.w, sizeof(float) * a->head_w.n) == 0,
			  "pair %d read back differs", pair);
		if (pair != ADAPTER_PAIR_JOINED)
		{
			bytes[104] = 3;		/* no such encoding, CRC fixed up: the pair field is checked */
			bytes[len - 4] = 0;
			{
				uint32_t	crc = adapter_io_crc32(bytes, len - 4);

				for (int i = 0; i < 4; i++)
					bytes[len - 4 + i] = (uint8_t) (crc >> (8 * i));
			}
			adapter_free(back);
			adapter_free_class_names(back_names, 2);
			back = NULL;
			back_names = NULL;
			CHECK(adapter_deserialize(bytes, len, 8, &back, fp, &back_names, &err) == NN_ERR_FORMAT,
				  "pair field 3 accepted");
		}
		adapter_free(back);
		adapter_free_class_names(back_names, 2);
		free(bytes);
		adapter_free(a);
	}
	backbone_close(bb);
}

/* classify_pairs: the same probabilities in batches of any size; evaluate_rows agrees. */
static void
test_classify_pairs(void)
{
	Backbone   *bb = open_model("bert-tiny-random");
	NnError		err;
	size_t		lens[6],
				lens_b[6];

	if (bb == NULL)
		return;
	for (int i = 0; i < 6; i++)
	{
		lens[i] = strlen(PAIR_A[i]);
		lens_b[i] = strlen(PAIR_B[i]);
	}
	for (int pair = ADAPTER_PAIR_NATIVE; pair <= ADAPTER_PAIR_SIAMESE; pair++)
	{
		Adapter    *a = new_adapter(bb, pair, 4, 2, 2, 8, 17);
		BackboneRun *run = bb->ops->run_new(bb, 8, 4 + 64);
		float		p8[12],
					p2[12];
		double		worst = 0;
		Dataset    *ds = pairs_dataset(PAIR_A, PAIR_B, PAIR_LABELS, 6);
		int			rows[6] = {0, 1, 2, 3, 4, 5},
					agree = 0;
		ClassMetrics *m = NULL;

		CHECK(classify_pairs(bb, run, a, PAIR_A, lens, PAIR_B, lens_b, 6, 8, p8, &err) == NN_OK &&
			  classify_pairs(bb, run, a, PAIR_A, lens, PAIR_B, lens_b, 6, 2, p2, &err) == NN_OK,
			  "%s", err.msg);
		for (int i = 0; i < 12; i++)
			worst = fmax(worst, fabs(p8[i] - p2[i]));
		CHECK(worst < 1e-5, "pair %d: batches of 8 and 2 rows differ by %.3g", pair, worst);
		CHECK(classify_texts(bb, run, a, PAIR_A, lens, 6, 8, p8, &err) == NN_ERR_ARG,
			  "a pair adapter classified one text");
		CHECK(evaluate_rows(bb, a, ds, rows, 6, 8, &m, &err) == NN_OK, "%s", err.msg);
		for (int i = 0; m && i < 6; i++)
			agree += ds->labels[i] == (p2[2 * i + 1] > p2[2 * i] ? 1 : 0);
		CHECK(m && fabs(m->accuracy - agree / 6.0) < 1e-9, "evaluate_rows %.4f, classify_pairs %.4f",
			  m ? m->accuracy : -1, agree / 6.0);
		metrics_free(m);
		dataset_free(ds);
		bb->ops->run_free(run);
		adapter_free(a);
	}
	backbone_close(bb);
}

/* Mixing pairs and single texts, and encodings that do not fit, are refused. */
static void
test_refusals(void)
{
	Dataset    *ds = dataset_new();
	NnError		err;
	Backbone   *bb = open_model("t5-tiny-random");

	CHECK(dataset_add_pair(ds, "a", 1, "b", 1, "x", 1, &err) == NN_OK, "%s", err.msg);
	CHECK(dataset_add(ds, "a", 1, "x", 1, &err) == NN_ERR_ARG, "one text added to pairs");
	if (bb)
	{
		TrainOptions opt;
		Backbone   *bert = open_model("bert-tiny-random"),
				   *lite = NULL;

		/* the defaults: the template where there is one, joined on T5, siamese on use-lite */
		train_options_default(&opt);
		CHECK(train_default_pair(bb, &opt) == ADAPTER_PAIR_JOINED, "T5 default pair encoding");
		CHECK(bert && train_default_pair(bert, &opt) == ADAPTER_PAIR_NATIVE, "BERT default pair encoding");
		if (backbone_open(&lite, UNIT_MODEL_DIR(), &err) == NN_OK)
			CHECK(train_default_pair(lite, &opt) == ADAPTER_PAIR_SIAMESE, "use-lite default pair encoding");
		backbone_close(lite);
		backbone_close(bert);
		CHECK(batch_check_pair(bb, ds, ADAPTER_PAIR_NATIVE, &err) == NN_ERR_ARG,
			  "native pairs on a family without a template");
		CHECK(batch_check_pair(bb, ds, ADAPTER_PAIR_JOINED, &err) == NN_ERR_ARG,
			  "pairs read as one text");
		CHECK(batch_check_pair(bb, ds, ADAPTER_PAIR_SIAMESE, &err) == NN_OK, "%s", err.msg);
		backbone_close(bb);
	}
	dataset_free(ds);
	ds = dataset_new();
	CHECK(dataset_add(ds, "a", 1, "x", 1, &err) == NN_OK, "%s", err.msg);
	CHECK(dataset_add_pair(ds, "a", 1, "b", 1, "x", 1, &err) == NN_ERR_ARG, "a pair added to texts");
	dataset_free(ds);
}

int
main(void)
{
	RUN_TEST(test_native_tokens);
	RUN_TEST(test_native_types);
	RUN_TEST(test_native_reference);
	RUN_TEST(test_siamese_head_math);
	RUN_TEST(test_siamese_gradients);
	RUN_TEST(test_storage);
	RUN_TEST(test_classify_pairs);
	RUN_TEST(test_refusals);
	return unit_finish();
}
