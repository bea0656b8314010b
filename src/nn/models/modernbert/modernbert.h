/*
 * modernbert.h: ModernBERT encoders (config.json model_type "modernbert")
 * from a Hugging Face model directory: transformers' ModernBertModel,
 * eager attention.
 *
 * A directory holds config.json (hf_config.h: HfConfig and
 * HfModernBertConfig), model.safetensors or a sharded index (ModernBertModel's
 * tensors, or ModernBertFor*'s under the "model." prefix) and a byte-level
 * BPE tokenizer.json (bpe.h) with its post-processor template
 * ([CLS] A [SEP] B [SEP]).
 *
 * The forward pass over the n valid rows of one sequence at column
 * positions t = 0..T-1 (docs/design.md 1), every LayerNorm without bias
 * unless norm_bias, every Linear without bias unless attention_bias /
 * mlp_bias:
 *
 *   h = LN_emb(X)                      X = word embeddings, or prompt rows
 *                                      prepended to them; no absolute
 *                                      positions, no token types
 *   per layer l (pre-norm):
 *     a  = (l == 0 ? h : LN_attn(h))   the first layer's attn_norm is Identity
 *     h  = h + Attn_l(a Wqkv^T) Wo^T   modernbert_attention.h: RoPE with
 *                                      global_rope_theta on global layers,
 *                                      local_rope_theta on sliding ones, whose
 *                                      rows see |t_i - t_j| <= local_attention/2
 *     [u, g] = LN_mlp(h) Wi^T          u, g: (F) each (Wi's output halves)
 *     h  = h + (GELU(u) * g) Wo2^T     GeGLU, erf GELU (hidden_activation
 *                                      "gelu")
 *   out = LN_final(h)
 *   pooled = mean over the valid rows of out
 *
 * Interface choices (backbone.h), as in deberta.h: embed_tokens returns word
 * embeddings only; forward gives every one of the T rows it gets its column
 * t as position, so prompt rows an adapter prepends take RoPE positions
 * 0..m-1 and the text m..m+n-1 -- what transformers does with the same rows
 * as inputs_embeds -- and a sliding layer's window counts prompt rows like
 * text rows (the first text rows see the last prompt rows, later ones none).
 * max_positions = min(max_position_embeddings, 8192) (the hub's checkpoints
 * have 8192; the RoPE tables are computed for that many positions at open),
 * but tokenize truncates a text to max_tokens = min(512, that): a run keeps
 * every layer's attention probabilities for the backward (NH S^2 floats per
 * layer and sequence) and dept_embed and the probe's cache size their runs
 * by max_tokens, which at 8192 would ask for tens of gigabytes; 512 is the
 * other families' limit.  Masked rows are not
 * computed (packed sequences), which equals transformers' additive mask for
 * every valid row.  The pooled output is the mean of the valid rows (the
 * checkpoint's classifier_pooling, a task-head choice, is not used).
 *
 * Not supported (NN_ERR_FORMAT naming the field): hidden_activation other
 * than gelu, a rope_type other than default, an odd head size.
 */
#ifndef DEPT_NN_MODERNBERT_H
#define DEPT_NN_MODERNBERT_H

#include "models/backbone.h"

/* Methods */

NnStatus	modernbert_open(Backbone **out, const char *dir, NnError *err);

/*
 * last_hidden_state of the last forward on run into hidden (batch,
 * seq_len, d_out), zeros at masked positions.
 */
void		modernbert_last_hidden(const Backbone *bb, const BackboneRun *run, float *hidden);

/*
 * Input-backward of the last forward from the gradients of both outputs,
 * dpooled (batch, d_out) and dhidden (batch, seq_len, d_out), either may be
 * NULL.  dx (batch, seq_len, d_embed) is overwritten, 0 at masked rows.
 */
NnStatus	modernbert_backward_full(const Backbone *bb, BackboneRun *run, const float *dpooled,
									 const float *dhidden, float *dx, NnError *err);

#endif							/* DEPT_NN_MODERNBERT_H */
