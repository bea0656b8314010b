/*
 * test_modernbert_variants.c: the ModernBERT configurations the fixture
 * does not exercise (test_modernbert.c checks that one against
 * transformers), built from its weights in a temporary directory:
 *
 *   biased  norm_bias, attention_bias and mlp_bias true (random bias
 *           tensors), local_attention 4 (window 2), the older config
 *           naming (no layer_types: global_attn_every_n_layers 2; no
 *           rope_parameters: global_rope_theta / local_rope_theta), Wqkv
 *           scaled by 8 so that attention is far from uniform, 1024
 *           positions (texts still cut at 512 tokens; 100000 positions
 *           are taken as 8192)
 *
 * Its input gradient, through a mean pooling that skips the first rows
 * (run_pool_skip) and a weighted hidden-state term, is checked against
 * central finite differences of its own forward (float32, step 1e-3,
 * tolerance 0.3% of the largest gradient; the noise is about 0.07%, and
 * un-rotating the keys' gradient the wrong way gives 1.6%, where the
 * fixture's near-uniform attention moves grad_word_embeddings by only
 * 2.9e-5 relative, inside test_modernbert's 1e-3); that the options take
 * effect is checked by the output differing from the fixture model's.  Also: the
 * config fields' parsing and defaults, and the configurations refused.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "models/backbone.h"
#include "models/modernbert/modernbert.h"
#include "unit.h"
#include "variant_fixture.h"

/* The fixture's tensors (Wqkv x 8) plus a random bias for every Linear and LayerNorm. */
static int
write_biased_weights(Rng *rng, VfTensor *t)
{
	Safetensors *src = NULL;
	NnError		err;
	char		path[4200];
	int			count = 0;

	snprintf(path, sizeof(path), "%s/model.safetensors", vf_src_dir);
	CHECK(safetensors_open(&src, path, &err) == NN_OK, "%s", err.msg);
	for (int i = 0; src != NULL && i < safetensors_count(src) && count < 120; i++)
	{
		const StTensor *s = safetensors_tensor(src, i);
		size_t		n = s->nbytes / 4;
		size_t		len = strlen(s->name);
		float	   *w;

		snprintf(t[count].name, sizeof(t[count].name), "%s", s->name);
		t[count].ndim = s->ndim;
		t[count].shape[0] = s->shape[0];
		t[count].shape[1] = s->ndim > 1 ? s->shape[1] : 0;
		t[count].data = w = malloc(4 * n);
		memcpy(w, safetensors_raw(src, s), 4 * n);
		if (strstr(s->name, "Wqkv") != NULL)
			for (size_t j = 0; j < n; j++)
				w[j] *= 8.0f;
		t[count++].n = n;
		if (len > 7 && strcmp(s->name + len - 7, ".weight") == 0 &&
			strstr(s->name, "tok_embeddings") == NULL)
		{
			snprintf(t[count].name, sizeof(t[count].name), "%.*s.bias", (int) (len - 7), s->name);
			t[count].ndim = 1;
			t[count].shape[0] = s->shape[0];
			t[count].shape[1] = 0;
			t[count].n = (size_t) s->shape[0];
			t[count].data = w = unit_random_floats(rng, t[count].n);
			for (size_t j = 0; j < t[count].n; j++)
				w[j] *= 0.2f;
			count++;
		}
	}
	safetensors_close(src);
	vf_write_safetensors(t, count);
	return count;
}

static const char *biased_config =
"{\"model_type\": \"modernbert\", \"hidden_size\": 32, \"num_hidden_layers\": 3,"
" \"num_attention_heads\": 4, \"intermediate_size\": 64, \"vocab_size\": 1000,"
" \"max_position_embeddings\": 1024, \"norm_bias\": true, \"attention_bias\": true,"
" \"mlp_bias\": true, \"local_attention\": 4, \"global_attn_every_n_layers\": 2,"
" \"global_rope_theta\": 20000.0, \"local_rope_theta\": 500.0}";

/* Set up vf_tmp_dir as a model directory with config text and the fixture's tokenizer. */
static void
write_dir(const char *config)
{
	vf_write_file("config.json", config, strlen(config));
	CHECK(vf_link_file("tokenizer.json"), "symlink tokenizer.json");
}

/*
 * The input gradient of vf_loss (through a pool skip of 2 rows) against
 * central differences at every input; the pooled output vs base's.
 */
static void
check_gradient(Backbone *bb, Rng *rng, const float *base_pooled)
{
	size_t		n = (size_t) V_B * V_T * V_H;
	float	   *x = unit_random_floats(rng, n),
			   *wp = unit_random_floats(rng, V_B * V_H),
			   *wh = unit_random_floats(rng, n),
			   *dx = calloc(n, sizeof(float)),
			   *dh = calloc(n, sizeof(float));
	float		pooled[V_B * V_H];
	uint8_t		mask[V_B * V_T];
	BackboneRun *run = bb->ops->run_new(bb, V_B, V_T);
	VfLoss		loss = {bb, run, modernbert_last_hidden, mask, NULL, wp, wh};
	static int	idx[V_B * V_T * V_H];
	NnError		err;
	double		worst,
				top,
				moved = 0.0;

	for (int i = 0; i < V_B * V_T; i++)
		mask[i] = i < V_T || i % V_T < 6;
	for (size_t i = 0; i < n; i++)
		dh[i] = mask[i / V_H] ? wh[i] : 0.0f;
	CHECK(run != NULL && backbone_run_pool_skip(bb, run, 2), "run with pool skip");
	CHECK(bb->ops->forward(bb, run, x, mask, V_B, V_T, pooled, &err) == NN_OK, "%s", err.msg);
	for (int i = 0; base_pooled != NULL && i < V_B * V_H; i++)
		moved = fmax(moved, fabs((double) pooled[i] - base_pooled[i]));
	CHECK(base_pooled == NULL || moved > 1e-2, "the options change the output (%.2e)", moved);
	CHECK(modernbert_backward_full(bb, run, wp, dh, dx, &err) == NN_OK, "%s", err.msg);
	for (size_t i = 0; i < n; i++)
		idx[i] = (int) i;
	vf_fd_gap(&loss, x, dx, idx, (int) n, &worst, &top);
	printf("# input gradient vs central differences: max |diff| %.2e of max |grad| %.2e\n",
		   worst, top);
	CHECK(top > 0 && worst <= 3e-3 * top, "gradient off by %.3e of %.3e", worst, top);
	bb->ops->run_free(run);
	free(x);
	free(wp);
	free(wh);
	free(dx);
	free(dh);
}

/* Pooled output of the fixture model for the inputs check_gradient draws from seed. */
static void
fixture_pooled(uint64_t seed, float *pooled)
{
	Backbone   *bb = NULL;
	Rng			rng;
	float	   *x;
	uint8_t		mask[V_B * V_T];
	BackboneRun *run;
	NnError		err;

	rng_seed(&rng, seed);
	x = unit_random_floats(&rng, (size_t) V_B * V_T * V_H);
	for (int i = 0; i < V_B * V_T; i++)
		mask[i] = i < V_T || i % V_T < 6;
	CHECK(backbone_open(&bb, vf_src_dir, &err) == NN_OK, "%s", err.msg);
	if (bb != NULL && (run = bb->ops->run_new(bb, V_B, V_T)) != NULL)
	{
		backbone_run_pool_skip(bb, run, 2);
		CHECK(bb->ops->forward(bb, run, x, mask, V_B, V_T, pooled, &err) == NN_OK, "%s", err.msg);
		bb->ops->run_free(run);
	}
	backbone_close(bb);
	free(x);
}

static void
test_biased_variant(void)
{
	static VfTensor t[128];
	float		base[V_B * V_H] = {0};
	Backbone   *bb = NULL;
	Rng			rng;
	NnError		err;
	int			count;

	rng_seed(&rng, 7);
	count = write_biased_weights(&rng, t);
	write_dir(biased_config);
	fixture_pooled(11, base);
	CHECK(backbone_open(&bb, vf_tmp_dir, &err) == NN_OK, "%s", err.msg);
	if (bb != NULL)
	{
		CHECK(bb->max_positions == 1024 && bb->max_tokens == 512, "positions %d, tokens %d",
			  bb->max_positions, bb->max_tokens);
		rng_seed(&rng, 11);
		check_gradient(bb, &rng, base);
	}
	backbone_close(bb);
	bb = NULL;
	/* positions past 8192 are not tabled: forward accepts 8192 */
	{
		char		big[1024];
		const char *at = strstr(biased_config, "1024");

		snprintf(big, sizeof(big), "%.*s100000%s", (int) (at - biased_config), biased_config,
				 at + 4);
		write_dir(big);
		CHECK(backbone_open(&bb, vf_tmp_dir, &err) == NN_OK && bb->max_positions == 8192 &&
			  bb->max_tokens == 512, "100000 positions: %s", bb ? "limits" : err.msg);
		backbone_close(bb);
	}
	for (int i = 0; i < count; i++)
		free((void *) t[i].data);
}

/* The fixture model itself through the same finite differences. */
static void
test_fixture_gradient(void)
{
	Backbone   *bb = NULL;
	Rng			rng;
	NnError		err;

	CHECK(backbone_open(&bb, vf_src_dir, &err) == NN_OK, "%s", err.msg);
	if (bb != NULL)
	{
		rng_seed(&rng, 11);
		check_gradient(bb, &rng, NULL);
	}
	backbone_close(bb);
}

/* Parse config text; returns the status. */
static NnStatus
parse(const char *json, HfConfig *cfg, HfModernBertConfig *mb)
{
	NnError		err;
	NnStatus	s = hf_config_parse(cfg, json, strlen(json), &err);

	return s != NN_OK ? s : hf_modernbert_config_parse(mb, cfg, json, strlen(json), &err);
}

#define MB_SHAPE "\"model_type\": \"modernbert\", \"hidden_size\": 32, \"num_hidden_layers\": 4, " \
	"\"num_attention_heads\": 4, \"intermediate_size\": 64, \"vocab_size\": 1000"

static void
test_config_fields(void)
{
	HfConfig	cfg;
	HfModernBertConfig mb;

	CHECK(parse("{" MB_SHAPE "}", &cfg, &mb) == NN_OK, "defaults parse");
	CHECK(strcmp(cfg.hidden_act, "gelu") == 0 && cfg.max_position_embeddings == 8192 &&
		  cfg.type_vocab_size == 0 && mb.norm_eps == 1e-5 && !mb.norm_bias &&
		  !mb.attention_bias && !mb.mlp_bias && mb.local_attention == 128 &&
		  mb.global_attn_every_n_layers == 3 && mb.global_rope_theta == 160000.0 &&
		  mb.local_rope_theta == 10000.0, "ModernBertConfig's defaults");
	CHECK(!mb.sliding[0] && mb.sliding[1] && mb.sliding[2] && !mb.sliding[3],
		  "every third layer global from layer 0");
	CHECK(parse("{" MB_SHAPE ", \"global_rope_theta\": 5.0, \"rope_parameters\": "
				"{\"full_attention\": {\"rope_theta\": 7.0, \"rope_type\": \"default\"}}, "
				"\"layer_types\": [\"sliding_attention\", \"full_attention\", "
				"\"full_attention\", \"sliding_attention\"], \"hidden_activation\": \"gelu\"}",
				&cfg, &mb) == NN_OK, "rope_parameters and layer_types parse");
	CHECK(mb.global_rope_theta == 7.0 && mb.local_rope_theta == 10000.0,
		  "rope_parameters' theta wins over global_rope_theta");
	CHECK(mb.sliding[0] && !mb.sliding[1] && !mb.sliding[2] && mb.sliding[3],
		  "layer_types win over global_attn_every_n_layers");
	CHECK(parse("{" MB_SHAPE ", \"rope_parameters\": {\"sliding_attention\": "
				"{\"rope_theta\": 7.0, \"rope_type\": \"linear\"}}}", &cfg, &mb) == NN_ERR_FORMAT,
		  "scaled RoPE refused");
	CHECK(parse("{" MB_SHAPE ", \"layer_types\": [\"full_attention\"]}", &cfg, &mb) ==
		  NN_ERR_FORMAT, "layer_types of the wrong length refused");
	CHECK(parse("{" MB_SHAPE ", \"layer_types\": [\"full_attention\", \"chunked\", "
				"\"full_attention\", \"full_attention\"]}", &cfg, &mb) == NN_ERR_FORMAT,
		  "an unknown layer type refused");
	CHECK(parse("{" MB_SHAPE ", \"norm_eps\": -1}", &cfg, &mb) == NN_ERR_FORMAT,
		  "a negative norm_eps refused");
}

/* Configurations open refuses, each naming its field. */
static void
test_refused(void)
{
	static const char *const configs[][2] = {
		{"{" MB_SHAPE ", \"hidden_activation\": \"silu\"}", "hidden_activation"},
		{"{\"model_type\": \"modernbert\", \"hidden_size\": 24, \"num_hidden_layers\": 3, "
		"\"num_attention_heads\": 8, \"intermediate_size\": 64, \"vocab_size\": 1000}", "odd"},
	};
	Backbone   *bb = NULL;
	NnError		err;

	for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++)
	{
		write_dir(configs[i][0]);
		CHECK(backbone_open(&bb, vf_tmp_dir, &err) == NN_ERR_FORMAT &&
			  strstr(err.msg, configs[i][1]) != NULL, "config %zu: %s", i, err.msg);
		backbone_close(bb);
		bb = NULL;
	}
}

int
main(void)
{
	if (!vf_setup("modernbert-tiny-random", "/tmp/dept-modernbert-XXXXXX"))
	{
		CHECK(0, "mkdtemp or the fixture");
		return unit_finish();
	}
	RUN_TEST(test_config_fields);
	RUN_TEST(test_fixture_gradient);
	RUN_TEST(test_biased_variant);
	RUN_TEST(test_refused);
	vf_remove_tmp(NULL);
	return unit_finish();
}
