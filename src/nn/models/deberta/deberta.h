/*
 * deberta.h: DeBERTa-v2 and DeBERTa-v3 encoders (config.json model_type
 * "deberta-v2") from a Hugging Face model directory: transformers'
 * DebertaV2Model, eager attention.
 *
 * A directory holds config.json (hf_config.h: HfConfig and HfDebertaConfig),
 * model.safetensors or a sharded index (DebertaV2Model's tensors,
 * optionally under the "deberta." prefix of DebertaV2For* checkpoints) and
 * a Unigram tokenizer.json (unigram.h) with its post-processor template
 * ([CLS] A [SEP] B [SEP], type ids 0/1).  A hub directory with only
 * spm.model needs its tokenizer.json written once by transformers
 * (AutoTokenizer.from_pretrained(dir).save_pretrained(dir)).
 *
 * The forward pass over the n valid rows of one sequence at column
 * positions t = 0..T-1 (docs/design.md 1):
 *
 *   x0 = LN(X [+ pos[t]] [+ type])     X = word embeddings, or prompt rows
 *                                      prepended to them; pos only with
 *                                      position_biased_input (DeBERTa-v3:
 *                                      none), type only with type_vocab_size
 *   R  = LN_rel(rel_embeddings)        (2S, H); LN_rel with norm_rel_ebd
 *                                      "layer_norm", else R = the table
 *   per layer (post-LN):
 *     a  = LN(h + DisentangledAttn(h, R) Wo^T + bo)     deberta_attention.h
 *     h' = LN(a + act(a W1^T + b1) W2^T + b2)           act = erf GELU or ReLU
 *   pooled = mean over the valid rows
 *
 * Relative positions: the distance d = t_i - t_j of query i and key j
 * falls in table row clamp(bucket(d) + S, 0, 2S - 1), S = position_buckets
 * (or max_relative_positions when there are no buckets), with
 * transformers' make_log_bucket_position (mid = S / 2, M =
 * max_relative_positions, or max_position_embeddings when it is < 1):
 *
 *   bucket(d) = d                                          |d| <= mid
 *             = sign(d) (mid + ceil(log(|d| / mid)
 *                          / log((M - 1) / mid) (mid - 1)))  otherwise
 *
 * computed in float as PyTorch does.  The key and query projections of R
 * (with share_att_key the layer's own key_proj/query_proj, else its
 * pos_key_proj/pos_query_proj) are constants of the frozen model: open
 * computes them once per layer, (2S, H) each, for the terms pos_att_type
 * names.
 *
 * Interface choices (backbone.h), as in bert.h: embed_tokens returns word
 * embeddings only; forward gives every one of the T rows it gets its
 * column t as position, so prompt rows an adapter prepends take positions
 * 0..m-1 and the text m..m+n-1 -- what transformers does with the same
 * rows as inputs_embeds -- and the relative distances between prompt and
 * text rows are those of the prepended sequence.  max_positions =
 * max_tokens = max_position_embeddings (relative attention itself has no
 * limit; the checkpoints were trained to that length).  Masked rows are
 * not computed (packed sequences), which equals transformers' masked
 * softmax and its multiplication of the embeddings by the mask for every
 * valid row.  The pooled output is the mean of the valid rows (the
 * checkpoint's ContextPooler of DebertaV2ForSequenceClassification, a task
 * head, is not used).
 *
 * Not supported (NN_ERR_FORMAT naming the field): conv_kernel_size > 0
 * (the convolution of deberta-v2-xlarge/xxlarge), embedding_size !=
 * hidden_size, attention_head_size != hidden_size / num_attention_heads,
 * hidden_act other than gelu and relu.
 */
#ifndef DEPT_NN_DEBERTA_H
#define DEPT_NN_DEBERTA_H

#include "models/backbone.h"

/* Methods */

NnStatus	deberta_open(Backbone **out, const char *dir, NnError *err);

/*
 * last_hidden_state of the last forward on run into hidden (batch,
 * seq_len, d_out), zeros at masked positions.
 */
void		deberta_last_hidden(const Backbone *bb, const BackboneRun *run, float *hidden);

/*
 * Input-backward of the last forward from the gradients of both outputs,
 * dpooled (batch, d_out) and dhidden (batch, seq_len, d_out), either may be
 * NULL.  dx (batch, seq_len, d_embed) is overwritten, 0 at masked rows.
 */
NnStatus	deberta_backward_full(const Backbone *bb, BackboneRun *run, const float *dpooled,
								  const float *dhidden, float *dx, NnError *err);

/* bucket(d) above for S = buckets, M = max_position (buckets > 0, M > S / 2 + 1). */
int			deberta_log_bucket(int d, int buckets, int max_position);

#endif							/* DEPT_NN_DEBERTA_H */
