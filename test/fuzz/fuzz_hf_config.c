/*
 * fuzz_hf_config.c: libFuzzer harness for the Hugging Face config.json
 * reader (src/nn/formats/hf_config.h); build and run with test/fuzz/run.sh.
 *
 * Every input is read twice by hf_config_parse and by
 * hf_config_model_type_from_json (backbone_open's dispatch):
 *
 *   1. as given;
 *   2. "completed": the input as the members of an object, followed by the
 *      five required fields of a small valid BERT config, i.e.
 *      "{" INPUT "," BASE "}" (a leading '{' and trailing '}' of the input
 *      are dropped first).  cJSON finds the first of duplicated keys, so
 *      the input's members win and a mutated field is checked even when
 *      the mutation lost a required one.
 *
 * Properties checked beyond the sanitizers' own, abort() on a violation:
 *   - a rejection is NN_ERR_FORMAT with a message;
 *   - an accepted config has every integer in the range hf_config.h
 *     states, num_attention_heads dividing hidden_size, layer_norm_eps in
 *     (0, 1), and NUL-terminated names shorter than HF_NAME_LEN;
 *   - hf_config_model_type_from_json accepts whatever hf_config_parse
 *     accepts, and both name the same model type; it refuses only inputs
 *     hf_config_parse refuses too.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/hf_config.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char base[] =
"\"hidden_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
"\"intermediate_size\": 64, \"vocab_size\": 1000";

static void
fail(const char *what, size_t size)
{
	fprintf(stderr, "fuzz_hf_config: %s (input of %zu bytes)\n", what, size);
	abort();
}

static bool
name_ok(const char *s)
{
	return memchr(s, '\0', HF_NAME_LEN) != NULL;
}

static void
check_config(const char *json, size_t len, size_t size)
{
	HfConfig	cfg;
	NnError		err;
	NnStatus	st,
				mt_st;
	char		type[HF_NAME_LEN];

	nn_error_clear(&err);
	memset(type, 'x', sizeof(type));
	mt_st = hf_config_model_type_from_json(json, len, type, &err);
	if (mt_st != NN_OK && (mt_st != NN_ERR_FORMAT || err.msg[0] == '\0'))
		fail("a refused model type must be NN_ERR_FORMAT with a message", size);
	if (!name_ok(type))
		fail("the model type is not NUL-terminated", size);

	nn_error_clear(&err);
	memset(&cfg, 0x5A, sizeof(cfg));
	st = hf_config_parse(&cfg, json, len, &err);
	if (st != NN_OK)
	{
		if (st != NN_ERR_FORMAT || err.msg[0] == '\0')
			fail("a rejected config must be NN_ERR_FORMAT with a message", size);
		return;
	}
	if (mt_st != NN_OK)
		fail("hf_config_model_type_from_json refused a config hf_config_parse accepted", size);
	if (!name_ok(cfg.model_type) || !name_ok(cfg.hidden_act) ||
		!name_ok(cfg.position_embedding_type))
		fail("a name is not NUL-terminated within HF_NAME_LEN", size);
	if (strcmp(cfg.model_type, type) != 0)
		fail("hf_config_parse and hf_config_model_type_from_json disagree on the model type", size);
	if (cfg.hidden_size < 1 || cfg.hidden_size > HF_MAX_HIDDEN ||
		cfg.num_hidden_layers < 1 || cfg.num_hidden_layers > HF_MAX_LAYERS ||
		cfg.num_attention_heads < 1 || cfg.num_attention_heads > HF_MAX_HIDDEN ||
		cfg.intermediate_size < 1 || cfg.intermediate_size > 16 * HF_MAX_HIDDEN ||
		cfg.vocab_size < 1 || cfg.vocab_size > HF_MAX_VOCAB ||
		cfg.max_position_embeddings < 1 || cfg.max_position_embeddings > HF_MAX_POSITIONS ||
		cfg.type_vocab_size < 0 || cfg.type_vocab_size > HF_MAX_VOCAB ||
		cfg.pad_token_id < -1 || cfg.pad_token_id > HF_MAX_VOCAB)
		fail("an accepted integer is outside its range", size);
	if (cfg.hidden_size % cfg.num_attention_heads != 0)
		fail("the heads do not divide hidden_size", size);
	if (!(cfg.layer_norm_eps > 0.0 && cfg.layer_norm_eps < 1.0))
		fail("layer_norm_eps is outside (0, 1)", size);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *) data;
	size_t		a = 0,
				z = size;
	char	   *buf;
	size_t		n;

	check_config(s, size, size);

	/* completed: "{" input "," base "}" */
	if (z > 0 && s[0] == '{')
		a = 1;
	if (z > a && s[z - 1] == '}')
		z--;
	buf = malloc(z - a + sizeof(base) + 4);
	if (buf == NULL)
		return 0;
	n = 0;
	buf[n++] = '{';
	memcpy(buf + n, s + a, z - a);
	n += z - a;
	if (z > a)
		buf[n++] = ',';
	memcpy(buf + n, base, sizeof(base) - 1);
	n += sizeof(base) - 1;
	buf[n++] = '}';
	check_config(buf, n, size);
	free(buf);
	return 0;
}
