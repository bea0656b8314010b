/*
 * t5.h: T5 encoder-decoders (v1.0 as t5-base, v1.1 / Flan-T5, mT5) from a
 * Hugging Face model directory -- the DePT paper's backbone.
 *
 * A directory holds config.json (model_type "t5" or "mt5"), model.safetensors
 * (T5ForConditionalGeneration's tensors) and tokenizer.json (a Unigram
 * tokenizer, hf_unigram.h).  The model is transformers' T5 in float32,
 * eager attention:
 *
 *   RMS(x) = w * x / sqrt(mean(x^2) + eps)            (T5LayerNorm)
 *   Attn(x, m) = softmax(q k^T + bias[bucket(key - query)], mask) v Wo^T
 *                with q = x Wq^T, k, v from m: NO 1/sqrt(d_kv) scaling;
 *                bias (num_buckets x heads) from the first block of each
 *                stack, shared by its other blocks; none in cross-attention
 *   FF(x) = act(x Wi^T) Wo^T                         v1.0: act = ReLU
 *         | (act(x Wi0^T) * (x Wi1^T)) Wo^T          v1.1: act = gelu_new
 *   encoder:  h = X; per block h += Attn(RMS h, RMS h); h += FF(RMS h);
 *             H = RMS_final(h)                        (bidirectional buckets)
 *   decoder:  g = shared[y]; per block g += Attn(RMS g) (causal buckets,
 *             causal mask); g += Attn(RMS g, H) (cross); g += FF(RMS g);
 *             logits = (RMS_final(g) * s) W_head^T
 *   W_head = lm_head.weight when the checkpoint has it, else shared.weight;
 *   s = d_model^-0.5 when config.json's scale_decoder_outputs is true, or,
 *   without that field (configs before transformers 5.17), when
 *   tie_word_embeddings is (true by default): t5-base scales, Flan-T5
 *   does not.
 *
 * Classification as text-to-text (DePT): the decoder is teacher-forced on
 * a label string y_1..y_k (its tokens, then "</s>"), reading
 * [decoder_start, y_1, .., y_{k-1}]; t5_label_loglik scores each candidate
 * label by sum_t log p(y_t | y_<t, X) (rank classification) and
 * t5_loss_forward / t5_loss_backward give the mean cross-entropy over the
 * target tokens and its gradient with respect to the ENCODER INPUT
 * embeddings X, through the decoder, every cross-attention and the
 * encoder: what DePT's prompt and low-rank matrices need.  The decoder's
 * own inputs are frozen token embeddings: no gradient flows to them.
 *
 * Backbone interface (backbone.h): tokenize appends "</s>" as T5's
 * tokenizer does; embed_tokens returns rows of shared.weight (no scaling,
 * no positions: T5 has none); forward runs the encoder alone on the given
 * embeddings and returns the mean of H over the valid rows (d_out =
 * d_model) -- T5's sentence vector as sentence-T5 defines it; backward is
 * its input-backward.  d_embed = d_out = d_model; max_tokens = 512 (T5's
 * model_max_length), max_positions = 4096 (relative positions have no
 * hard limit; this bounds buffers).
 *
 * Masking: only rows with mask 1 are computed (packed, kernels.h), each at
 * its column as position, so the relative positions are HF's for any mask;
 * HF's additive mask gives those rows exactly the same values (a masked
 * key's probability is 0).  HF also computes masked rows, which are never
 * returned here (t5_encoder_hidden writes zeros) and whose gradient is 0
 * in both.
 *
 * Buffers: run_new(bb, max_batch, max_seq) sizes the encoder's for
 * max_batch rows of max_seq positions; the decoder's grow on the first
 * call that needs more (labels longer, more candidates) and are reused
 * after, so a training loop allocates only in its first step.
 */
#ifndef DEPT_NN_T5_H
#define DEPT_NN_T5_H

#include "models/backbone.h"

#define T5_MAX_TOKENS 512
#define T5_MAX_POSITIONS 4096

/* Methods */
NnStatus	t5_open(Backbone **out, const char *dir, NnError *err);

/* True when bb was opened by t5_open. */
bool		t5_is(const Backbone *bb);

/* The ids of "</s>" and of padding (also the decoder start). */
int32_t		t5_eos_id(const Backbone *bb);
int32_t		t5_pad_id(const Backbone *bb);

/*
 * The encoder's last hidden state H of the last forward on run (either
 * entry point) into hidden (batch, seq_len, d_model), zeros at masked
 * positions.
 */
void		t5_encoder_hidden(const Backbone *bb, const BackboneRun *run, float *hidden);

/*
 * Teacher-forced forward on labels (batch, label_len), each row the target
 * token ids (label tokens then "</s>") padded with negative values (HF's
 * -100) -- padding only after the last target.  Writes the mean
 * cross-entropy over all targets into *loss (NULL: skipped), and, when
 * logits is not NULL, the logits (batch, label_len, vocab) at every
 * position as HF computes them (a padded position reads the pad id); the
 * decoder then runs every row to label_len, else only to its last target.
 */
NnStatus	t5_loss_forward(const Backbone *bb, BackboneRun *run, const float *x,
							const uint8_t *mask, int batch, int seq_len,
							const int32_t *labels, int label_len, float *loss,
							float *logits, NnError *err);

/*
 * dx (batch, seq_len, d_model) = d(loss)/dx of the last t5_loss_forward on
 * run, overwritten, 0 at masked positions.
 */
NnStatus	t5_loss_backward(const Backbone *bb, BackboneRun *run, float *dx, NnError *err);

/*
 * Rank classification: scores (batch, n_cand) = sum over the tokens of
 * candidate c of log p(token), teacher-forced on input row b.  cands
 * (n_cand, cand_len) holds each candidate's ids (label tokens then
 * "</s>", e.g. from tokenize) padded with negative values.  One encoder
 * pass; the decoder runs batch * n_cand sequences.
 */
NnStatus	t5_label_loglik(const Backbone *bb, BackboneRun *run, const float *x,
							const uint8_t *mask, int batch, int seq_len,
							const int32_t *cands, int n_cand, int cand_len,
							float *scores, NnError *err);

#endif							/* DEPT_NN_T5_H */
