/*
 * bert.h: BERT-family encoders from a Hugging Face model directory: BERT,
 * RoBERTa, XLM-RoBERTa and DistilBERT, which differ only in what the
 * table in bert.c says:
 *
 *   model_type   tensors (under an optional      positions   tokenizer
 *                *For* head prefix)
 *   bert         embeddings.*, encoder.layer.N.* 0..T-1      WordPiece
 *   roberta      as bert ("roberta.")            p+1..p+T    byte-level BPE
 *   xlm-roberta  as bert ("roberta.")            p+1..p+T    Unigram
 *   distilbert   embeddings.*, transformer.      0..T-1      WordPiece
 *                layer.N.{attention.q_lin, ...,
 *                sa_layer_norm, ffn.lin1, ...}
 *
 * (p = pad_token_id: RoBERTa's position ids start after the padding index,
 * so max_positions = max_position_embeddings - p - 1.)  DistilBERT has no
 * token types and no pooler, so it pools the mean, as BERT does without a
 * pooler.  Every family tokenizes pairs with its tokenizer.json template.
 *
 * A directory holds config.json (model_type "bert", see hf_config.h),
 * model.safetensors (BertModel's tensors, optionally under a "bert." prefix
 * as in BertFor* checkpoints; LayerNorm "weight"/"bias" or the older
 * "gamma"/"beta") and tokenizer.json or vocab.txt (wordpiece.h).  The
 * forward pass is transformers' BertModel (eager attention), for the n
 * valid rows of one sequence at column positions t = 0..T-1:
 *
 *   x0 = LN((X + type[0]) + pos[t])         X = word embeddings, or prompt
 *                                           rows prepended to them (PEFT)
 *   per layer (post-LN):
 *     a  = LN(h + (softmax(q k^T / sqrt(hs) + mask) v) Wo^T + bo)
 *     h' = LN(a + act(a W1^T + b1) W2^T + b2)      act = exact-erf GELU
 *                                                  ("gelu") or ReLU
 *   pooled = tanh(h[first row] Wp^T + bp)   the pooler (default when the
 *                                           checkpoint has one)
 *          | mean over the valid rows       (default without a pooler, and
 *                                           when 1_Pooling/config.json of
 *                                           sentence-transformers says mean)
 *          | h[first row]                   (sentence-transformers CLS)
 *
 * Interface choices (backbone.h): embed_tokens returns word embeddings
 * only; forward adds token type 0 (or the ids of run_token_types) and
 * positions 0..T-1 (RoBERTa: shifted, see above) to every one of the
 * T rows it is given, so prompt rows prepended by an adapter take the first
 * positions, as HF PEFT's inputs_embeds do.  d_embed = d_out = hidden_size;
 * max_positions = max_tokens = max_position_embeddings: no room is held
 * back for prompts, a caller prepending m rows keeps the text to
 * max_positions - m tokens (train.c and the worker check prompt + max_length
 * <= max_positions).
 *
 * Masking: rows with mask 0 are not computed at all (sequences are packed,
 * kernels.h), which equals HF's additive -inf key mask for every valid row:
 * a masked key's probability is exactly 0 there.  HF also computes outputs
 * at padded query positions; those are never pooled or returned here
 * (bert_last_hidden writes zeros there), and their input gradient is 0 in
 * both.  The "first row" is the first valid one (row 0 when, as always with
 * right padding and prepended prompts, the valid rows are a prefix).
 */
#ifndef DEPT_NN_BERT_H
#define DEPT_NN_BERT_H

#include "models/backbone.h"

typedef enum BertPooling
{
	BERT_POOL_POOLER = 0,		/* tanh dense on the first row (BertModel.pooler_output) */
	BERT_POOL_MEAN = 1,			/* mean of the valid rows */
	BERT_POOL_CLS = 2			/* the first row as it is */
} BertPooling;

/* Methods */

/* Whether model_type is one of this file's families (bert_open opens it). */
bool		bert_is_family(const char *model_type);

NnStatus	bert_open(Backbone **out, const char *dir, NnError *err);

/* Choose the pooled output; BERT_POOL_POOLER needs pooler weights. */
NnStatus	bert_set_pooling(Backbone *bb, BertPooling pooling, NnError *err);
BertPooling bert_get_pooling(const Backbone *bb);

/*
 * last_hidden_state of the last forward on run into hidden (batch, seq_len,
 * d_out), zeros at masked positions.
 */
void		bert_last_hidden(const Backbone *bb, const BackboneRun *run, float *hidden);

/*
 * Input-backward of the last forward from gradients of both outputs:
 * dpooled (batch, d_out) and dhidden (batch, seq_len, d_out), either may be
 * NULL.  dx (batch, seq_len, d_embed) is overwritten, 0 at masked rows.
 */
NnStatus	bert_backward_full(const Backbone *bb, BackboneRun *run, const float *dpooled,
							   const float *dhidden, float *dx, NnError *err);

#endif							/* DEPT_NN_BERT_H */
