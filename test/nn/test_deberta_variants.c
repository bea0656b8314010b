/*
 * test_deberta_variants.c: the DeBERTa configurations the deberta-v3 fixture
 * does not exercise (test_deberta.c checks that one against transformers),
 * built from its weights in a temporary directory:
 *
 *   own    share_att_key false (pos_key_proj / pos_query_proj tensors), no
 *          log buckets (max_relative_positions 16: raw distances, clamped),
 *          absolute positions added (position_biased_input), two token
 *          types, pos_att_type as the older "p2c|c2p" string, no layer norm
 *          of the relative embeddings
 *   c2p    pos_att_type ["c2p"] only (scale 1 / sqrt(2 d)), ReLU FFN
 *   plain  relative_attention false (content attention, scale 1 / sqrt(3 d))
 *
 * The added tensors are random.  Each variant's input gradient is checked
 * against central finite differences of its own forward (float32, step
 * 1e-3, tolerance 0.3% of the largest gradient: the noise is about 0.1%,
 * and reading the p2c or c2p gradient from the wrong row of the window
 * gives 0.5%); "own" scales the query and key weights up and draws unit
 * relative embeddings so that attention and its position terms matter.
 * That the options take effect is checked by the outputs differing from
 * the fixture model's.  Also: the log buckets' properties, the config
 * fields' parsing, and the configurations refused at open.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "models/backbone.h"
#include "models/deberta/deberta.h"
#include "unit.h"
#include "variant_fixture.h"

/*
 * The fixture's tensors, and with extra random position projections,
 * absolute positions, token types and relative embeddings (owned[] frees them).
 */
static void
write_weights(bool extra, Rng *rng, float **owned)
{
	static VfTensor t[128];
	Safetensors *src = NULL;
	NnError		err;
	char		path[4200];
	int			count = 0,
				scaled = 11;	/* owned[11..14]: the scaled query/key weights */

	snprintf(path, sizeof(path), "%s/model.safetensors", vf_src_dir);
	CHECK(safetensors_open(&src, path, &err) == NN_OK, "%s", err.msg);
	for (int i = 0; src != NULL && i < safetensors_count(src) && count < 100; i++)
	{
		const StTensor *s = safetensors_tensor(src, i);

		snprintf(t[count].name, sizeof(t[count].name), "%s", s->name);
		t[count].ndim = s->ndim;
		t[count].shape[0] = s->shape[0];
		t[count].shape[1] = s->ndim > 1 ? s->shape[1] : 0;
		t[count].data = safetensors_raw(src, s);
		t[count++].n = s->nbytes / 4;
		/* relative embeddings of unit size: the position terms then vary by table row */
		if (extra && strcmp(s->name, "encoder.rel_embeddings.weight") == 0)
			t[count - 1].data = owned[15] = unit_random_floats(rng, t[count - 1].n);
		/* query and key 10 times the fixture's: logits of order 1, attention far from uniform */
		if (extra && (strstr(s->name, "query_proj.weight") || strstr(s->name, "key_proj.weight")) &&
			scaled < 15)
		{
			float	   *w = owned[scaled++] = malloc(s->nbytes);

			for (size_t j = 0; j < s->nbytes / 4; j++)
				w[j] = 10.0f * ((const float *) safetensors_raw(src, s))[j];
			t[count - 1].data = w;
		}
	}
	if (extra)
	{
		static const char *const names[] = {"encoder.layer.0.attention.self.pos_key_proj",
			"encoder.layer.0.attention.self.pos_query_proj",
			"encoder.layer.1.attention.self.pos_key_proj",
		"encoder.layer.1.attention.self.pos_query_proj"};
		int			k = 0;

		for (int i = 0; i < 4; i++)
			for (int wb = 0; wb < 2; wb++, count++)
			{
				snprintf(t[count].name, sizeof(t[count].name), "%s.%s", names[i],
						 wb ? "bias" : "weight");
				t[count].ndim = wb ? 1 : 2;
				t[count].shape[0] = V_H;
				t[count].shape[1] = wb ? 0 : V_H;
				t[count].n = wb ? V_H : V_H * V_H;
				t[count].data = owned[k] = unit_random_floats(rng, t[count].n);
				for (size_t j = 0; wb && j < t[count].n; j++)
					owned[k][j] *= 0.01f;	/* small biases, as trained ones are */
				k++;
			}
		snprintf(t[count].name, sizeof(t[count].name), "embeddings.position_embeddings.weight");
		t[count].ndim = 2, t[count].shape[0] = 128, t[count].shape[1] = V_H, t[count].n = 128 * V_H;
		t[count++].data = owned[k++] = unit_random_floats(rng, 128 * V_H);
		snprintf(t[count].name, sizeof(t[count].name), "embeddings.token_type_embeddings.weight");
		t[count].ndim = 2, t[count].shape[0] = 2, t[count].shape[1] = V_H, t[count].n = 2 * V_H;
		t[count++].data = owned[k++] = unit_random_floats(rng, 2 * V_H);
	}
	vf_write_safetensors(t, count);
	safetensors_close(src);
}

/* The fixture's config.json with the members of patch (a JSON object) replaced. */
static void
write_config(const char *patch)
{
	char		path[4200];
	size_t		len;
	char	   *json,
			   *text;
	cJSON	   *root,
			   *p,
			   *item;

	snprintf(path, sizeof(path), "%s/config.json", vf_src_dir);
	json = hf_read_file(path, 1 << 20, &len);
	root = json ? cJSON_Parse(json) : NULL;
	p = cJSON_Parse(patch);
	cJSON_ArrayForEach(item, p)
	{
		cJSON_DeleteItemFromObjectCaseSensitive(root, item->string);
		cJSON_AddItemToObject(root, item->string, cJSON_Duplicate(item, 1));
	}
	text = cJSON_Print(root);
	vf_write_file("config.json", text, strlen(text));
	free(text);
	free(json);
	cJSON_Delete(root);
	cJSON_Delete(p);
}

/* A batch of two texts of 9 and 6 ids (the second padded): x, mask and types. */
static void
batch_inputs(const Backbone *bb, float *x, uint8_t *mask, uint8_t *types)
{
	int32_t		ids[V_B * V_T] = {1, 5, 46, 97, 8, 286, 833, 92, 2,
	1, 9, 45, 222, 44, 2, -1, -1, -1};

	bb->ops->embed_tokens(bb, ids, V_B * V_T, x, mask);
	for (int i = 0; i < V_B * V_T; i++)
		types[i] = (uint8_t) ((i % V_T) >= 5);
}

/*
 * The variant's input gradient against central differences at 40 random
 * inputs; returns its pooled output.
 */
static void
check_gradient(const char *what, const Backbone *bb, Rng *rng, float *pooled_out)
{
	float		x[V_B * V_T * V_H],
				dx[V_B * V_T * V_H];
	uint8_t		mask[V_B * V_T],
				types[V_B * V_T];
	float	   *wp = unit_random_floats(rng, V_B * V_H),
			   *wh = unit_random_floats(rng, V_B * V_T * V_H);
	BackboneRun *run = bb->ops->run_new(bb, V_B, V_T);
	VfLoss		loss = {bb, run, deberta_last_hidden, mask, types, wp, wh};
	int			idx[40];
	double		worst,
				top,
				gmax = 0.0;
	NnError		err;

	batch_inputs(bb, x, mask, types);
	for (int i = 0; i < V_B * V_T * V_H; i++)
		wh[i] = mask[i / V_H] ? wh[i] : 0.0f;
	CHECK(!isnan(vf_loss(&loss, x)), "%s forward", what);
	CHECK(deberta_backward_full(bb, run, wp, wh, dx, &err) == NN_OK, "%s", err.msg);
	for (int i = 0; i < V_B * V_T * V_H; i++)
		gmax = fmax(gmax, fabs(dx[i]));
	for (int k = 0; k < 40; k++)
		idx[k] = (int) (rng_uniform(rng) * (V_B * V_T * V_H - 1));
	vf_fd_gap(&loss, x, dx, idx, 40, &worst, &top);
	printf("# %s: largest gradient %.3e, worst finite-difference gap %.3e\n", what, gmax, worst);
	/* float32 noise is ~0.1% of the largest gradient here; a misplaced position term ~0.5% */
	CHECK(gmax > 0.0 && worst <= 0.003 * gmax, "%s: gap %.3e of %.3e", what, worst, gmax);
	for (int i = 0; i < V_B * V_T * V_H; i++)
		if (!mask[i / V_H] && dx[i] != 0.0f)
		{
			CHECK(0, "%s: dx at padding", what);
			break;
		}
	backbone_run_token_types(bb, run, types);
	bb->ops->forward(bb, run, x, mask, V_B, V_T, pooled_out, &err);
	bb->ops->run_free(run);
	free(wp);
	free(wh);
}

/* Open vf_tmp_dir as configured by patch (extra: write the additional tensors too). */
static Backbone *
open_variant(const char *patch, bool extra, Rng *rng, float **owned)
{
	Backbone   *bb = NULL;
	NnError		err;

	write_config(patch);
	write_weights(extra, rng, owned);
	CHECK(backbone_open(&bb, vf_tmp_dir, &err) == NN_OK, "%s: %s", patch, err.msg);
	return bb;
}

static void
test_variants(void)
{
	static const char *const patches[] = {
		"{\"share_att_key\": false, \"position_buckets\": -1, \"max_relative_positions\": 16,"
		" \"position_biased_input\": true, \"type_vocab_size\": 2,"
		" \"pos_att_type\": \"p2c|c2p\", \"norm_rel_ebd\": \"none\"}",
		"{\"pos_att_type\": [\"c2p\"], \"hidden_act\": \"relu\"}",
		"{\"relative_attention\": false}",
		"{}"
	};
	const char *names[] = {"own", "c2p", "plain", "fixture"};
	float		pooled[4][V_B * V_H];
	float	   *owned[16] = {0};
	Rng			rng;

	rng_seed(&rng, 7);
	for (int v = 0; v < 4; v++)
	{
		Backbone   *bb = open_variant(patches[v], v == 0, &rng, owned);

		if (bb == NULL)
			continue;
		check_gradient(names[v], bb, &rng, pooled[v]);
		backbone_close(bb);
		for (int i = 0; i < 16; i++)
			free(owned[i]), owned[i] = NULL;
	}
	for (int v = 0; v < 3; v++)
		CHECK(memcmp(pooled[v], pooled[3], sizeof(pooled[3])) != 0,
			  "variant %s embeds as the fixture model does", names[v]);
}

/* Type ids change the "own" variant's output; one past its types is refused. */
static void
test_token_types(void)
{
	float	   *owned[16] = {0};
	float		x[V_B * V_T * V_H],
				a[V_B * V_H],
				b[V_B * V_H];
	uint8_t		mask[V_B * V_T],
				types[V_B * V_T];
	Rng			rng;
	Backbone   *bb;
	BackboneRun *run;
	NnError		err;

	rng_seed(&rng, 8);
	bb = open_variant("{\"type_vocab_size\": 2, \"share_att_key\": false, "
					  "\"position_biased_input\": true}", true, &rng, owned);
	if (bb != NULL && (run = bb->ops->run_new(bb, V_B, V_T)) != NULL)
	{
		batch_inputs(bb, x, mask, types);
		CHECK(bb->ops->forward(bb, run, x, mask, V_B, V_T, a, &err) == NN_OK, "%s", err.msg);
		CHECK(backbone_run_token_types(bb, run, types), "the variant has token types");
		CHECK(bb->ops->forward(bb, run, x, mask, V_B, V_T, b, &err) == NN_OK, "%s", err.msg);
		CHECK(memcmp(a, b, sizeof(a)) != 0, "type ids change nothing");
		types[3] = 2;
		backbone_run_token_types(bb, run, types);
		CHECK(bb->ops->forward(bb, run, x, mask, V_B, V_T, b, &err) == NN_ERR_ARG,
			  "type id 2 of 2 types accepted");
		bb->ops->run_free(run);
	}
	backbone_close(bb);
	for (int i = 0; i < 16; i++)
		free(owned[i]);
}

/* Unsupported configurations are refused at open with the field named. */
static void
test_refused(void)
{
	static const char *const patches[][2] = {
		{"{\"conv_kernel_size\": 3}", "conv_kernel_size"},
		{"{\"embedding_size\": 16}", "embedding_size"},
		{"{\"pos_att_type\": [\"p2p\"]}", "pos_att_type"},
		{"{\"hidden_act\": \"gelu_new\"}", "hidden_act"},
		{"{\"norm_rel_ebd\": \"batch_norm\"}", "norm_rel_ebd"},
		{"{\"position_buckets\": 16, \"max_relative_positions\": 9}", "max_relative_positions"},
		{"{\"relative_attention\": \"yes\"}", "relative_attention"},
	};
	Rng			rng;

	rng_seed(&rng, 9);
	for (size_t i = 0; i < sizeof(patches) / sizeof(patches[0]); i++)
	{
		Backbone   *bb = NULL;
		NnError		err;
		NnStatus	s;

		write_config(patches[i][0]);
		write_weights(false, &rng, NULL);
		s = backbone_open(&bb, vf_tmp_dir, &err);
		CHECK(s == NN_ERR_FORMAT && strstr(err.msg, patches[i][1]) != NULL,
			  "%s: status %d, %s", patches[i][0], (int) s, s ? err.msg : "opened");
		backbone_close(bb);
	}
}

/* bucket(d): the identity near 0, odd, monotone, S / 2 - 1 + S / 2 at M - 1. */
static void
test_log_buckets(void)
{
	static const int cfg[][2] = {{16, 128}, {256, 512}, {32, 128}};

	for (size_t c = 0; c < sizeof(cfg) / sizeof(cfg[0]); c++)
	{
		int			S = cfg[c][0],
					M = cfg[c][1],
					prev = -(1 << 30);

		for (int d = -2 * M; d <= 2 * M; d++)
		{
			int			r = deberta_log_bucket(d, S, M);

			CHECK(abs(d) > S / 2 || r == d, "S %d: bucket(%d) = %d", S, d, r);
			CHECK(r == -deberta_log_bucket(-d, S, M), "S %d: bucket(%d) not odd", S, d);
			CHECK(r >= prev, "S %d: bucket(%d) = %d < bucket(%d)", S, d, r, d - 1);
			prev = r;
		}
		CHECK(deberta_log_bucket(M - 1, S, M) == S - 1, "S %d M %d: bucket(M - 1) = %d", S, M,
			  deberta_log_bucket(M - 1, S, M));
		CHECK(deberta_log_bucket(S / 2 + 1, S, M) > S / 2, "the first log bucket");
	}
}

/* The DebertaV2Config fields and their defaults. */
static void
test_config_fields(void)
{
	const char *full = "{\"model_type\": \"deberta-v2\", \"hidden_size\": 32, "
		"\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"intermediate_size\": 64, "
		"\"vocab_size\": 100, \"relative_attention\": true, \"position_buckets\": 256, "
		"\"pos_att_type\": \"P2C | c2p\", \"share_att_key\": true, "
		"\"norm_rel_ebd\": \"layer_norm\", \"position_biased_input\": false}";
	const char *bare = "{\"model_type\": \"deberta-v2\", \"hidden_size\": 32, "
		"\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"intermediate_size\": 64, "
		"\"vocab_size\": 100}";
	HfConfig	cfg;
	HfDebertaConfig d;
	NnError		err;

	CHECK(hf_config_parse(&cfg, full, strlen(full), &err) == NN_OK &&
		  hf_deberta_config_parse(&d, &cfg, full, strlen(full), &err) == NN_OK, "%s", err.msg);
	CHECK(d.relative_attention && d.position_buckets == 256 && d.max_relative_positions == -1 &&
		  d.c2p && d.p2c && d.share_att_key && d.norm_rel_layer_norm && !d.position_biased_input,
		  "full config fields");
	CHECK(hf_config_parse(&cfg, bare, strlen(bare), &err) == NN_OK &&
		  hf_deberta_config_parse(&d, &cfg, bare, strlen(bare), &err) == NN_OK, "%s", err.msg);
	CHECK(!d.relative_attention && d.position_buckets == -1 && !d.c2p && !d.p2c &&
		  !d.share_att_key && !d.norm_rel_layer_norm && d.position_biased_input &&
		  d.conv_kernel_size == 0 && d.embedding_size == 32 && d.attention_head_size == 8,
		  "DebertaV2Config defaults");
	CHECK(cfg.type_vocab_size == 0 && fabs(cfg.layer_norm_eps - 1e-7) < 1e-12,
		  "deberta-v2 defaults of type_vocab_size %d and layer_norm_eps %g",
		  cfg.type_vocab_size, cfg.layer_norm_eps);
}

int
main(void)
{
	if (!vf_setup("deberta-v3-tiny-random", "/tmp/dept_deberta_XXXXXX"))
	{
		printf("not ok 1 - temporary directory or fixture\n");
		return 1;
	}
	if (!vf_link_file("tokenizer.json"))
		printf("# cannot link the tokenizer\n");
	RUN_TEST(test_log_buckets);
	RUN_TEST(test_config_fields);
	RUN_TEST(test_variants);
	RUN_TEST(test_token_types);
	RUN_TEST(test_refused);
	vf_remove_tmp(NULL);
	return unit_finish();
}
