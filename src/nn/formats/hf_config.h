/*
 * hf_config.h: the parts of a Hugging Face config.json an encoder needs.
 *
 * config.json is a flat JSON object written by transformers'
 * PretrainedConfig.  Read here (BERT naming):
 *
 *   model_type               "bert"; older files (MiniLM, early BERT ports)
 *                            omit it: then "architectures": ["Bert..."]
 *                            gives "bert"
 *   hidden_size              H          required
 *   num_hidden_layers        L          required
 *   num_attention_heads      NH         required, divides H
 *   intermediate_size        FFN width  required
 *   vocab_size                          required
 *   hidden_act               "gelu"     (default; erf GELU, as "gelu_python")
 *   layer_norm_eps           1e-12      (default, absent from MiniLM configs)
 *   max_position_embeddings  512        (default)
 *   type_vocab_size          2          (default)
 *   pad_token_id             0          (default)
 *   position_embedding_type  "absolute" (default)
 *
 * DistilBertConfig's own names stand in for the first five when model_type
 * is "distilbert": dim, n_layers, n_heads, hidden_dim, activation (and
 * type_vocab_size defaults to 0: DistilBERT has no token types).  For
 * "deberta-v2" the defaults are DebertaV2Config's: type_vocab_size 0,
 * layer_norm_eps 1e-7; its relative-attention fields are HfDebertaConfig's.
 * For "modernbert" the activation is ModernBertConfig's hidden_activation,
 * max_position_embeddings defaults to 8192, type_vocab_size to 0, and the
 * rest of its fields are HfModernBertConfig's.
 *
 * Defaults are those of transformers' BertConfig.  Every integer must be a
 * whole JSON number in its range (HF_MAX_* below), so that products of them
 * cannot overflow later; a wrong type or range is NN_ERR_FORMAT naming the
 * field.  Which hidden_act and position_embedding_type values a family
 * supports is the family's decision (bert.c), not the parser's.
 */
#ifndef DEPT_NN_HF_CONFIG_H
#define DEPT_NN_HF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "base/nn_common.h"

#define HF_MAX_HIDDEN 65536
#define HF_MAX_LAYERS 1024
#define HF_MAX_VOCAB (1 << 24)
#define HF_MAX_POSITIONS (1 << 20)
#define HF_NAME_LEN 64

typedef struct HfConfig
{
	char		model_type[HF_NAME_LEN];
	int			hidden_size;
	int			num_hidden_layers;
	int			num_attention_heads;
	int			intermediate_size;
	int			vocab_size;
	char		hidden_act[HF_NAME_LEN];
	double		layer_norm_eps;
	int			max_position_embeddings;
	int			type_vocab_size;
	int			pad_token_id;
	char		position_embedding_type[HF_NAME_LEN];
} HfConfig;

/*
 * DebertaV2Config's own fields (model_type "deberta-v2", DeBERTa v2 and v3),
 * defaults as transformers reads them with getattr:
 *
 *   relative_attention      false
 *   max_relative_positions  -1 (then max_position_embeddings)
 *   position_buckets        -1 (no log buckets)
 *   pos_att_type            [] ; a list of "c2p" / "p2c", or the older
 *                           string "p2c|c2p"; anything else is refused
 *   share_att_key           false
 *   norm_rel_ebd            "none"; "layer_norm" (of "|"-separated names)
 *                           layer-normalizes the relative embeddings
 *   position_biased_input   true (absolute positions added to the input)
 *   conv_kernel_size        0
 *   embedding_size          hidden_size
 *   attention_head_size     hidden_size / num_attention_heads
 *
 * Integers are checked against the same ranges as HfConfig's.
 */
typedef struct HfDebertaConfig
{
	bool		relative_attention;
	int			max_relative_positions;
	int			position_buckets;
	bool		c2p;			/* "c2p" in pos_att_type */
	bool		p2c;			/* "p2c" in pos_att_type */
	bool		share_att_key;
	bool		norm_rel_layer_norm;
	bool		position_biased_input;
	int			conv_kernel_size;
	int			embedding_size;
	int			attention_head_size;
} HfDebertaConfig;

/*
 * ModernBertConfig's own fields (model_type "modernbert"), defaults as in
 * transformers:
 *
 *   norm_eps                    1e-5
 *   norm_bias                   false  (LayerNorms without bias)
 *   attention_bias, mlp_bias    false  (Wqkv/Wo, Wi/Wo without bias)
 *   local_attention             128    (window: |i - j| <= local_attention / 2)
 *   global_attn_every_n_layers  3      (layer l is global when l % n == 0)
 *   layer_types                 from the above; when present, a list of
 *                               "full_attention" / "sliding_attention" per
 *                               layer (it wins)
 *   rope_parameters             {"full_attention": {"rope_theta", "rope_type"},
 *                               "sliding_attention": {...}}; else the older
 *                               global_rope_theta / local_rope_theta;
 *                               defaults 160000 and 10000; rope_type must be
 *                               "default" (no scaled RoPE)
 */
#define HF_MAX_MODERNBERT_LAYERS HF_MAX_LAYERS

typedef struct HfModernBertConfig
{
	double		norm_eps;
	bool		norm_bias;
	bool		attention_bias;
	bool		mlp_bias;
	int			local_attention;
	int			global_attn_every_n_layers;
	bool		sliding[HF_MAX_MODERNBERT_LAYERS];	/* per layer: local attention */
	double		global_rope_theta;
	double		local_rope_theta;
} HfModernBertConfig;

/* Methods */

/* Parse len bytes of config.json text into cfg. */
NnStatus	hf_config_parse(HfConfig *cfg, const char *json, size_t len, NnError *err);

/* Read and parse the file at path (NN_ERR_IO when it cannot be read). */
NnStatus	hf_config_load(HfConfig *cfg, const char *path, NnError *err);

/*
 * Just the model type of the config.json at path (for backbone_open's
 * dispatch): "bert" etc., "" when neither model_type nor a known
 * architecture says.  Fails only when the file is unreadable or not JSON.
 */
NnStatus	hf_config_model_type(const char *path, char type[HF_NAME_LEN], NnError *err);

/* The same from len bytes of config.json text (what the path version reads). */
NnStatus	hf_config_model_type_from_json(const char *json, size_t len, char type[HF_NAME_LEN],
										   NnError *err);

/*
 * The DeBERTa fields of len bytes of config.json text into d; cfg is the
 * same text's hf_config_parse result (for the defaults that depend on it).
 */
NnStatus	hf_deberta_config_parse(HfDebertaConfig *d, const HfConfig *cfg, const char *json,
									size_t len, NnError *err);

/* Read the config.json at path into both cfg and d. */
NnStatus	hf_deberta_config_load(HfConfig *cfg, HfDebertaConfig *d, const char *path,
								   NnError *err);

/* The ModernBERT fields of len bytes of config.json text into mb (cfg: its hf_config_parse). */
NnStatus	hf_modernbert_config_parse(HfModernBertConfig *mb, const HfConfig *cfg,
									   const char *json, size_t len, NnError *err);

/* Read the config.json at path into both cfg and mb. */
NnStatus	hf_modernbert_config_load(HfConfig *cfg, HfModernBertConfig *mb, const char *path,
									  NnError *err);

/* Read a whole small file into a NUL-terminated malloc'ed buffer (NULL on failure). */
char	   *hf_read_file(const char *path, size_t max_bytes, size_t *len);

#endif							/* DEPT_NN_HF_CONFIG_H */
