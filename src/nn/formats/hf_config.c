/*
 * hf_config.c: config.json reading (fields and defaults in hf_config.h).
 */
#include "formats/hf_config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* config.json is a few kilobytes; anything this big is not one. */
#define HF_MAX_CONFIG_BYTES ((size_t) 16 << 20)

char *
hf_read_file(const char *path, size_t max_bytes, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	char	   *buf = NULL;
	long		n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && (size_t) n <= max_bytes &&
		fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t) n + 1)) != NULL)
	{
		if (fread(buf, 1, (size_t) n, f) != (size_t) n)
		{
			free(buf);
			buf = NULL;
		}
		else
		{
			buf[n] = '\0';
			*len = (size_t) n;
		}
	}
	fclose(f);
	return buf;
}

/* Integer field name in lo..hi into *out; absent: def (or an error if required). */
static NnStatus
get_int(const cJSON *root, const char *name, bool required, int def, int lo, int hi,
		int *out, NnError *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
	double		d;

	if (v == NULL || cJSON_IsNull(v))
	{
		if (required)
			return nn_fail(err, NN_ERR_FORMAT, "config.json: \"%s\" is missing", name);
		*out = def;
		return NN_OK;
	}
	d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
	if (!(d >= lo && d <= hi) || d != floor(d))
		return nn_fail(err, NN_ERR_FORMAT, "config.json: \"%s\" must be an integer in %d..%d",
					   name, lo, hi);
	*out = (int) d;
	return NN_OK;
}

/* String field name (shorter than HF_NAME_LEN) into out; absent: def. */
static NnStatus
get_str(const cJSON *root, const char *name, const char *def, char out[HF_NAME_LEN],
		NnError *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
	const char *s = def;

	if (v != NULL && !cJSON_IsNull(v))
	{
		if (!cJSON_IsString(v) || strlen(v->valuestring) >= HF_NAME_LEN)
			return nn_fail(err, NN_ERR_FORMAT, "config.json: \"%s\" must be a short string", name);
		s = v->valuestring;
	}
	snprintf(out, HF_NAME_LEN, "%s", s);
	return NN_OK;
}

/* model_type, or the family named by architectures[0] ("BertModel" -> "bert"). */
static void
model_type_of(const cJSON *root, char type[HF_NAME_LEN])
{
	const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
	const cJSON *arch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "architectures"), 0);

	type[0] = '\0';
	if (cJSON_IsString(mt) && strlen(mt->valuestring) < HF_NAME_LEN)
		snprintf(type, HF_NAME_LEN, "%s", mt->valuestring);
	else if (cJSON_IsString(arch) && strncmp(arch->valuestring, "Bert", 4) == 0)
		snprintf(type, HF_NAME_LEN, "bert");
}

/* The names of the shape fields: BertConfig's, or DistilBertConfig's own. */
typedef struct HfFieldNames
{
	const char *hidden,
			   *layers,
			   *heads,
			   *ffn,
			   *act;
	int			type_vocab_default;
	double		eps_default;
} HfFieldNames;

static const HfFieldNames bert_names = {"hidden_size", "num_hidden_layers",
"num_attention_heads", "intermediate_size", "hidden_act", 2, 1e-12};
static const HfFieldNames distilbert_names = {"dim", "n_layers", "n_heads", "hidden_dim",
"activation", 0, 1e-12};
static const HfFieldNames modernbert_names = {"hidden_size", "num_hidden_layers",
"num_attention_heads", "intermediate_size", "hidden_activation", 0, 1e-5};
static const HfFieldNames deberta_names = {"hidden_size", "num_hidden_layers",
"num_attention_heads", "intermediate_size", "hidden_act", 0, 1e-7};

NnStatus
hf_config_parse(HfConfig *cfg, const char *json, size_t len, NnError *err)
{
	cJSON	   *root = cJSON_ParseWithLength(json, len);
	const cJSON *eps;
	const HfFieldNames *f;
	NnStatus	s;

	memset(cfg, 0, sizeof(*cfg));
	if (!cJSON_IsObject(root))
	{
		cJSON_Delete(root);
		return nn_fail(err, NN_ERR_FORMAT, "config.json is not a JSON object");
	}
	model_type_of(root, cfg->model_type);
	f = strcmp(cfg->model_type, "distilbert") == 0 ? &distilbert_names :
		strcmp(cfg->model_type, "deberta-v2") == 0 ? &deberta_names :
		strcmp(cfg->model_type, "modernbert") == 0 ? &modernbert_names : &bert_names;
	if ((s = get_int(root, f->hidden, true, 0, 1, HF_MAX_HIDDEN, &cfg->hidden_size, err)) ||
		(s = get_int(root, f->layers, true, 0, 1, HF_MAX_LAYERS,
					 &cfg->num_hidden_layers, err)) ||
		(s = get_int(root, f->heads, true, 0, 1, HF_MAX_HIDDEN,
					 &cfg->num_attention_heads, err)) ||
		(s = get_int(root, f->ffn, true, 0, 1, 16 * HF_MAX_HIDDEN,
					 &cfg->intermediate_size, err)) ||
		(s = get_int(root, "vocab_size", true, 0, 1, HF_MAX_VOCAB, &cfg->vocab_size, err)) ||
		(s = get_int(root, "max_position_embeddings", false, f == &modernbert_names ? 8192 : 512,
					 1, HF_MAX_POSITIONS,
					 &cfg->max_position_embeddings, err)) ||
		(s = get_int(root, "type_vocab_size", false, f->type_vocab_default, 0, HF_MAX_VOCAB,
					 &cfg->type_vocab_size, err)) ||
		(s = get_int(root, "pad_token_id", false, 0, -1, HF_MAX_VOCAB, &cfg->pad_token_id, err)) ||
		(s = get_str(root, f->act, "gelu", cfg->hidden_act, err)) ||
		(s = get_str(root, "position_embedding_type", "absolute",
					 cfg->position_embedding_type, err)))
		goto done;
	if (cfg->hidden_size % cfg->num_attention_heads != 0)
	{
		s = nn_fail(err, NN_ERR_FORMAT,
					"config.json: %d attention heads do not divide hidden_size %d",
					cfg->num_attention_heads, cfg->hidden_size);
		goto done;
	}
	eps = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_eps");
	cfg->layer_norm_eps = f->eps_default;
	if (eps != NULL && !cJSON_IsNull(eps))
	{
		if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0.0 && eps->valuedouble < 1.0))
		{
			s = nn_fail(err, NN_ERR_FORMAT, "config.json: \"layer_norm_eps\" must be in (0, 1)");
			goto done;
		}
		cfg->layer_norm_eps = eps->valuedouble;
	}
done:
	cJSON_Delete(root);
	return s;
}

NnStatus
hf_config_load(HfConfig *cfg, const char *path, NnError *err)
{
	size_t		len = 0;
	char	   *json = hf_read_file(path, HF_MAX_CONFIG_BYTES, &len);
	NnStatus	s;

	if (json == NULL)
		return nn_fail(err, NN_ERR_IO, "cannot read \"%s\"", path);
	s = hf_config_parse(cfg, json, len, err);
	free(json);
	return s;
}

NnStatus
hf_config_model_type_from_json(const char *json, size_t len, char type[HF_NAME_LEN],
							   NnError *err)
{
	cJSON	   *root = cJSON_ParseWithLength(json, len);

	type[0] = '\0';
	if (!cJSON_IsObject(root))
	{
		cJSON_Delete(root);
		return nn_fail(err, NN_ERR_FORMAT, "config.json is not a JSON object");
	}
	model_type_of(root, type);
	cJSON_Delete(root);
	return NN_OK;
}

NnStatus
hf_config_model_type(const char *path, char type[HF_NAME_LEN], NnError *err)
{
	size_t		len = 0;
	char	   *json = hf_read_file(path, HF_MAX_CONFIG_BYTES, &len);
	NnStatus	s;

	type[0] = '\0';
	if (json == NULL)
		return nn_fail(err, NN_ERR_IO, "cannot read \"%s\"", path);
	s = hf_config_model_type_from_json(json, len, type, err);
	free(json);
	if (s == NN_ERR_FORMAT)
		return nn_fail(err, NN_ERR_FORMAT, "\"%s\" is not a JSON object", path);
	return s;
}

/* Boolean field name into *out; absent or null: def. */
static NnStatus
get_bool(const cJSON *root, const char *name, bool def, bool *out, NnError *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);

	*out = def;
	if (v == NULL || cJSON_IsNull(v))
		return NN_OK;
	if (!cJSON_IsBool(v))
		return nn_fail(err, NN_ERR_FORMAT, "config.json: \"%s\" must be true or false", name);
	*out = cJSON_IsTrue(v);
	return NN_OK;
}

/* One pos_att_type entry (trimmed, case-insensitive as DebertaV2Config lowers it). */
static NnStatus
pos_att_entry(HfDebertaConfig *d, const char *s, size_t n, NnError *err)
{
	while (n > 0 && (*s == ' ' || *s == '\t'))
		s++, n--;
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n == 3 && strncasecmp(s, "c2p", 3) == 0)
		d->c2p = true;
	else if (n == 3 && strncasecmp(s, "p2c", 3) == 0)
		d->p2c = true;
	else
		return nn_fail(err, NN_ERR_FORMAT,
					   "config.json: pos_att_type \"%.*s\" is not supported (c2p, p2c)",
					   (int) (n < 32 ? n : 32), s);
	return NN_OK;
}

/* pos_att_type: a list of names, or one string of names separated by '|'. */
static NnStatus
get_pos_att_type(const cJSON *root, HfDebertaConfig *d, NnError *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "pos_att_type");
	const cJSON *item;
	NnStatus	s;

	if (v == NULL || cJSON_IsNull(v))
		return NN_OK;
	if (cJSON_IsString(v))
	{
		const char *p = v->valuestring;

		for (;;)
		{
			const char *bar = strchr(p, '|');
			size_t		n = bar ? (size_t) (bar - p) : strlen(p);

			if ((s = pos_att_entry(d, p, n, err)) != NN_OK)
				return s;
			if (bar == NULL)
				return NN_OK;
			p = bar + 1;
		}
	}
	if (!cJSON_IsArray(v))
		return nn_fail(err, NN_ERR_FORMAT, "config.json: \"pos_att_type\" must be a list or a string");
	cJSON_ArrayForEach(item, v)
	{
		if (!cJSON_IsString(item))
			return nn_fail(err, NN_ERR_FORMAT, "config.json: \"pos_att_type\" holds a non-string");
		if ((s = pos_att_entry(d, item->valuestring, strlen(item->valuestring), err)) != NN_OK)
			return s;
	}
	return NN_OK;
}

/* norm_rel_ebd: "none", "layer_norm", or such names joined by '|'. */
static NnStatus
get_norm_rel_ebd(const cJSON *root, HfDebertaConfig *d, NnError *err)
{
	char		buf[HF_NAME_LEN];
	char	   *p,
			   *save = NULL;
	NnStatus	s;

	if ((s = get_str(root, "norm_rel_ebd", "none", buf, err)) != NN_OK)
		return s;
	for (p = strtok_r(buf, "|", &save); p != NULL; p = strtok_r(NULL, "|", &save))
	{
		while (*p == ' ')
			p++;
		for (size_t n = strlen(p); n > 0 && p[n - 1] == ' '; n--)
			p[n - 1] = '\0';
		if (strcasecmp(p, "layer_norm") == 0)
			d->norm_rel_layer_norm = true;
		else if (strcasecmp(p, "none") != 0)
			return nn_fail(err, NN_ERR_FORMAT,
						   "config.json: norm_rel_ebd \"%s\" is not supported (none, layer_norm)", p);
	}
	return NN_OK;
}

NnStatus
hf_deberta_config_parse(HfDebertaConfig *d, const HfConfig *cfg, const char *json, size_t len,
						NnError *err)
{
	cJSON	   *root = cJSON_ParseWithLength(json, len);
	NnStatus	s;

	memset(d, 0, sizeof(*d));
	if (!cJSON_IsObject(root))
	{
		cJSON_Delete(root);
		return nn_fail(err, NN_ERR_FORMAT, "config.json is not a JSON object");
	}
	if ((s = get_bool(root, "relative_attention", false, &d->relative_attention, err)) ||
		(s = get_int(root, "max_relative_positions", false, -1, -1, HF_MAX_POSITIONS,
					 &d->max_relative_positions, err)) ||
		(s = get_int(root, "position_buckets", false, -1, -1, HF_MAX_POSITIONS,
					 &d->position_buckets, err)) ||
		(s = get_pos_att_type(root, d, err)) ||
		(s = get_bool(root, "share_att_key", false, &d->share_att_key, err)) ||
		(s = get_norm_rel_ebd(root, d, err)) ||
		(s = get_bool(root, "position_biased_input", true, &d->position_biased_input, err)) ||
		(s = get_int(root, "conv_kernel_size", false, 0, 0, 1024, &d->conv_kernel_size, err)) ||
		(s = get_int(root, "embedding_size", false, cfg->hidden_size, 1, HF_MAX_HIDDEN,
					 &d->embedding_size, err)) ||
		(s = get_int(root, "attention_head_size", false,
					 cfg->hidden_size / cfg->num_attention_heads, 1, HF_MAX_HIDDEN,
					 &d->attention_head_size, err)))
	{
		cJSON_Delete(root);
		return s;
	}
	cJSON_Delete(root);
	return NN_OK;
}

NnStatus
hf_deberta_config_load(HfConfig *cfg, HfDebertaConfig *d, const char *path, NnError *err)
{
	size_t		len = 0;
	char	   *json = hf_read_file(path, HF_MAX_CONFIG_BYTES, &len);
	NnStatus	s;

	if (json == NULL)
		return nn_fail(err, NN_ERR_IO, "cannot read \"%s\"", path);
	s = hf_config_parse(cfg, json, len, err);
	if (s == NN_OK)
		s = hf_deberta_config_parse(d, cfg, json, len, err);
	free(json);
	return s;
}

/* A positive number field name into *out; absent or null: def. */
static NnStatus
get_positive(const cJSON *root, const char *name, double def, double *out, NnError *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);

	*out = def;
	if (v == NULL || cJSON_IsNull(v))
		return NN_OK;
	if (!cJSON_IsNumber(v) || !(v->valuedouble > 0.0 && v->valuedouble < 1e12))
		return nn_fail(err, NN_ERR_FORMAT, "config.json: \"%s\" must be a positive number", name);
	*out = v->valuedouble;
	return NN_OK;
}

/* rope_parameters[kind]: its rope_theta into *theta (kept when absent); rope_type "default". */
static NnStatus
get_rope(const cJSON *root, const char *kind, double *theta, NnError *err)
{
	const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(params, kind);
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "rope_type");
	if (p == NULL || cJSON_IsNull(p))
		return NN_OK;
	if (!cJSON_IsObject(p))
		return nn_fail(err, NN_ERR_FORMAT, "config.json: rope_parameters.%s must be an object", kind);
	if (type != NULL && !cJSON_IsNull(type) &&
		(!cJSON_IsString(type) || strcmp(type->valuestring, "default") != 0))
		return nn_fail(err, NN_ERR_FORMAT, "config.json: rope_parameters.%s.rope_type is not "
					   "supported (only \"default\")", kind);
	return get_positive(p, "rope_theta", *theta, theta, err);
}

/* layer_types, else every global_attn_every_n_layers-th layer global. */
static NnStatus
get_layer_types(const cJSON *root, HfModernBertConfig *mb, int L, NnError *err)
{
	const cJSON *types = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
	int			i = 0;
	const cJSON *t;

	if (L > HF_MAX_MODERNBERT_LAYERS)
		return nn_fail(err, NN_ERR_FORMAT, "config.json: too many layers");
	for (int l = 0; l < L; l++)
		mb->sliding[l] = l % mb->global_attn_every_n_layers != 0;
	if (types == NULL || cJSON_IsNull(types))
		return NN_OK;
	if (!cJSON_IsArray(types) || cJSON_GetArraySize(types) != L)
		return nn_fail(err, NN_ERR_FORMAT, "config.json: \"layer_types\" must list the %d layers", L);
	cJSON_ArrayForEach(t, types)
	{
		if (cJSON_IsString(t) && strcmp(t->valuestring, "full_attention") == 0)
			mb->sliding[i++] = false;
		else if (cJSON_IsString(t) && strcmp(t->valuestring, "sliding_attention") == 0)
			mb->sliding[i++] = true;
		else
			return nn_fail(err, NN_ERR_FORMAT, "config.json: layer_types entry %d is not "
						   "full_attention or sliding_attention", i);
	}
	return NN_OK;
}

NnStatus
hf_modernbert_config_parse(HfModernBertConfig *mb, const HfConfig *cfg, const char *json,
						   size_t len, NnError *err)
{
	cJSON	   *root = cJSON_ParseWithLength(json, len);
	NnStatus	s;

	memset(mb, 0, sizeof(*mb));
	if (!cJSON_IsObject(root))
	{
		cJSON_Delete(root);
		return nn_fail(err, NN_ERR_FORMAT, "config.json is not a JSON object");
	}
	if ((s = get_positive(root, "norm_eps", 1e-5, &mb->norm_eps, err)) ||
		(s = get_bool(root, "norm_bias", false, &mb->norm_bias, err)) ||
		(s = get_bool(root, "attention_bias", false, &mb->attention_bias, err)) ||
		(s = get_bool(root, "mlp_bias", false, &mb->mlp_bias, err)) ||
		(s = get_int(root, "local_attention", false, 128, 0, HF_MAX_POSITIONS,
					 &mb->local_attention, err)) ||
		(s = get_int(root, "global_attn_every_n_layers", false, 3, 1, HF_MAX_LAYERS,
					 &mb->global_attn_every_n_layers, err)) ||
		(s = get_layer_types(root, mb, cfg->num_hidden_layers, err)) ||
		(s = get_positive(root, "global_rope_theta", 160000.0, &mb->global_rope_theta, err)) ||
		(s = get_positive(root, "local_rope_theta", 10000.0, &mb->local_rope_theta, err)) ||
		(s = get_rope(root, "full_attention", &mb->global_rope_theta, err)) ||
		(s = get_rope(root, "sliding_attention", &mb->local_rope_theta, err)))
	{
		cJSON_Delete(root);
		return s;
	}
	if (mb->norm_eps >= 1.0)
		s = nn_fail(err, NN_ERR_FORMAT, "config.json: \"norm_eps\" must be in (0, 1)");
	cJSON_Delete(root);
	return s;
}

NnStatus
hf_modernbert_config_load(HfConfig *cfg, HfModernBertConfig *mb, const char *path, NnError *err)
{
	size_t		len = 0;
	char	   *json = hf_read_file(path, HF_MAX_CONFIG_BYTES, &len);
	NnStatus	s;

	if (json == NULL)
		return nn_fail(err, NN_ERR_IO, "cannot read \"%s\"", path);
	s = hf_config_parse(cfg, json, len, err);
	if (s == NN_OK)
		s = hf_modernbert_config_parse(mb, cfg, json, len, err);
	free(json);
	return s;
}
