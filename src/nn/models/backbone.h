/*
 * backbone.h: the interface every frozen transformer family implements.
 *
 * A backbone turns text into a pooled sentence vector in three steps, each
 * exposed separately so that adapters can act between them (docs/design.md 1):
 *
 *   tokenize      bytes        -> token ids              (n <= max_tokens)
 *   embed_tokens  token ids    -> frozen embeddings E    (n x d_embed) + mask
 *   forward       embeddings X -> pooled vectors h       (batch x d_out)
 *
 * PT/DePT/EPT build X from E (prepend prompt rows, add the low-rank offset)
 * before calling forward; positional information is added *inside* forward,
 * so prompt rows get positions too, as in HF PEFT.  Callers only see
 * Backbone and BackboneOps: a new family (Hugging Face BERT, T5) adds an
 * open function and an ops table, nothing else changes.
 *
 * Activation buffers live in a BackboneRun, allocated once for a maximum
 * batch shape (llama2.c's RunState), so forward never allocates.
 */
#ifndef DEPT_NN_BACKBONE_H
#define DEPT_NN_BACKBONE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/nn_common.h"

typedef struct Backbone Backbone;
typedef struct BackboneRun BackboneRun;

typedef struct BackboneOps
{
	const char *family;			/* "use-lite", later "bert", "t5" */

	/*
	 * Tokenize len bytes (need not be valid UTF-8) into at most max_ids ids.
	 * Returns the number of ids written; text beyond max_ids is truncated.
	 */
	int			(*tokenize) (const Backbone *bb, const char *text, size_t len,
							 int32_t *ids, int max_ids);

	/*
	 * Optional (encoders): tokenize a sentence pair with the family's
	 * template (BERT [CLS] A [SEP] B [SEP], RoBERTa <s> A </s></s> B </s>)
	 * into at most max_ids ids and their token type ids, truncating the
	 * longer text first as transformers' truncation=True does
	 * (tokenizers/template.h).  Returns the count, -1 when out of memory.
	 */
	int			(*tokenize_pair) (const Backbone *bb, const char *a, size_t alen,
								  const char *b, size_t blen, int32_t *ids,
								  uint8_t *type_ids, int max_ids);

	/*
	 * Look up the frozen embeddings of n ids into x (n x d_embed) and set
	 * mask[i] = 1 for ids that take part in attention and pooling (every
	 * real id; use-lite's graph marks only its padding value -1 as absent,
	 * the unknown piece 0 is a real token).
	 */
	void		(*embed_tokens) (const Backbone *bb, const int32_t *ids, int n,
								 float *x, uint8_t *mask);

	/*
	 * The tokenizer's piece (vocabulary string) of id, NUL-terminated and
	 * owned by the backbone; NULL when id names none.  Optional: NULL for a
	 * family without one (use backbone_token_piece).
	 */
	const char *(*token_piece) (const Backbone *bb, int32_t id);

	/* Activation buffers for up to max_batch rows of max_seq positions. */
	BackboneRun *(*run_new) (const Backbone *bb, int max_batch, int max_seq);
	void		(*run_free) (BackboneRun *run);

	/*
	 * Bytes of heap a run for this shape holds at its largest, without
	 * allocating it: what run_new(bb, max_batch, max_seq) allocates (every
	 * allocation rounded up by backbone_alloc_bytes), plus, for an
	 * encoder-decoder, the decoder buffers it grows to for dec_seqs
	 * sequences of dec_len tokens (0: encoder only; families without a
	 * decoder ignore both): a T5 label loss runs one decoder sequence per
	 * row, rank classification over C labels C per row.  SIZE_MAX when
	 * run_new would refuse the shape.  Callers check it against a memory
	 * budget before training (dept.max_training_memory).
	 */
	size_t		(*run_bytes) (const Backbone *bb, int max_batch, int max_seq, int dec_seqs,
							  int dec_len);

	/*
	 * x: (batch, seq_len, d_embed) input embeddings, mask: (batch, seq_len),
	 * out: (batch, d_out) sentence vectors.  seq_len <= max_positions.
	 */
	NnStatus	(*forward) (const Backbone *bb, BackboneRun *run, const float *x,
							const uint8_t *mask, int batch, int seq_len,
							float *out, NnError *err);

	/*
	 * Input-backward of the last forward on run: dx (batch, seq_len,
	 * d_embed) = d(loss)/dx from dout (batch, d_out) = d(loss)/d(out).  The
	 * backbone is frozen: no weight gradient is computed.  NULL for a family
	 * that cannot train yet.
	 */
	NnStatus	(*backward) (const Backbone *bb, BackboneRun *run, const float *dout,
							 float *dx, NnError *err);

	/*
	 * Run the weight products of run's forwards and input-backwards in
	 * bfloat16 (gemm_bf16.h: AMX or AVX512-BF16) when on and the CPU has
	 * an engine; returns whether they will.  NULL for a family whose
	 * products are always float.  Runs start in float: inference turns it
	 * on under dept.matmul_precision = 'bfloat16', training with
	 * "precision": "bfloat16" (attention and norms stay float).
	 */
	bool		(*run_use_bf16) (BackboneRun *run, bool on);

	/*
	 * Pool (mean) each sequence of the following forwards on run over its
	 * valid rows from the skip-th on: the adapter's prompt rows come first,
	 * and a linear head trained on the text rows alone pools past them
	 * (AdapterConfig.pool_text).  The backward differentiates the pooling
	 * of the forward it follows.  Runs start at 0 (every valid row).
	 * Returns whether the family honours it; NULL for a family whose
	 * pooling cannot skip rows (then every valid row is pooled).
	 */
	bool		(*run_pool_skip) (BackboneRun *run, int skip);

	/*
	 * Optional: token type ids (batch, seq_len) for the next forward on run
	 * only (the forward after it is back to all 0), one per row the forward
	 * gets: prompt rows an adapter prepends included (give them 0, as HF
	 * PEFT does), so pass the pair's types shifted by the prompt length.
	 * type_ids must stay valid until that forward, which fails with
	 * NN_ERR_ARG on an id past the model's types.  Returns whether the
	 * family uses them (false: ignored, e.g. DistilBERT has no types).
	 */
	bool		(*run_token_types) (BackboneRun *run, const uint8_t *type_ids);

	/*
	 * Text-to-text: optional, set by a family with a decoder (T5); NULL
	 * elsewhere.  A label is a token sequence (padded with the family's
	 * padding id to label_len); docs/design.md 2.
	 *  - label_loglik: rank classification, scores (batch, n_cand) = sum over
	 *    the tokens of candidate c of log p(token | X of row b), teacher-forced;
	 *  - label_loss_forward: the mean cross-entropy over the target tokens of
	 *    each row's label (labels: batch x label_len); logits may be NULL;
	 *  - label_loss_backward: dx (batch, seq_len, d_embed) = d(loss)/dx of
	 *    the last label_loss_forward on run, through the decoder and encoder.
	 */
	NnStatus	(*label_loglik) (const Backbone *bb, BackboneRun *run, const float *x,
								 const uint8_t *mask, int batch, int seq_len,
								 const int32_t *cands, int n_cand, int cand_len,
								 float *scores, NnError *err);
	NnStatus	(*label_loss_forward) (const Backbone *bb, BackboneRun *run, const float *x,
									   const uint8_t *mask, int batch, int seq_len,
									   const int32_t *labels, int label_len, float *loss,
									   float *logits, NnError *err);
	NnStatus	(*label_loss_backward) (const Backbone *bb, BackboneRun *run, float *dx,
										NnError *err);

	/*
	 * Optional: write dir's compiled file (formats/compiled.h) from what
	 * open derived, so the next open in another process maps it; NN_OK
	 * without writing when bb was opened from a usable one.  dir must be
	 * the directory bb was opened from.
	 */
	NnStatus	(*write_compiled) (const Backbone *bb, const char *dir, NnError *err);

	void		(*close) (Backbone *bb);
} BackboneOps;

struct Backbone
{
	const BackboneOps *ops;
	int			vocab_size;
	int			d_embed;		/* width of token embeddings fed to forward */
	int			d_out;			/* width of the pooled sentence vector */
	int			max_tokens;		/* tokenize truncates to this many ids */
	int			max_positions;	/* longest sequence forward accepts (with prompts) */
	char		fingerprint[65];	/* hex SHA-256 identifying the weights */
	/*
	 * The mapped region holding the float32 weights (a single mapped
	 * model.safetensors), or NULL: the key of a shared file of packed
	 * bfloat16 weights (gemm_bf16_map_shared).
	 */
	const void *weights;
	size_t		weights_len;
	void	   *impl;			/* family-specific state */
};

/*
 * Open the model stored in directory dir, choosing the family from the
 * files present: model.json + vocab.json is use-lite (TF.js); config.json
 * is a Hugging Face directory whose model_type picks the family (bert,
 * roberta, xlm-roberta, distilbert, deberta-v2, modernbert, t5).
 */
NnStatus	backbone_open(Backbone **out, const char *dir, NnError *err);
void		backbone_close(Backbone *bb);

/*
 * Whether backbone_open(dir) may read dir/name, for callers that copy a
 * model directory (the server's private model cache): every file of a
 * TF.js directory (model.json; its manifest names the shards), the
 * config, tokenizer and model.safetensors files of a Hugging Face
 * directory (config.json; not its other checkpoint formats), nothing in
 * any other directory.
 */
bool		backbone_uses_file(const char *dir, const char *name);

/*
 * Write, beside each .safetensors file backbone_open(dir) would map, the
 * float32 conversion of its F16/BF16 tensors (formats/f32_sidecar.h)
 * unless a valid one is there: every later open, in any process, maps it
 * shared instead of converting into private memory.  NN_OK without
 * writing for a directory without such tensors (use-lite, F32 weights).
 * Only for a directory the caller owns -- the server's private model
 * copy; the CLI tools never write into a user's directory.
 */
NnStatus	backbone_write_converted(const char *dir, NnError *err);

/*
 * An upper bound of the heap bytes one malloc/posix_memalign(64) of n bytes
 * takes: n plus the chunk header and alignment, rounded up to a page (large
 * chunks are mmap'ed whole pages).
 */
size_t		backbone_alloc_bytes(size_t n);

/* bb->ops->run_bytes, or SIZE_MAX for a family that does not estimate. */
size_t		backbone_run_bytes(const Backbone *bb, int max_batch, int max_seq, int dec_seqs,
							   int dec_len);

/* bb->ops->run_use_bf16(run, on), or false for a family whose products are always float. */
bool		backbone_run_use_bf16(const Backbone *bb, BackboneRun *run, bool on);

/*
 * bb->ops->run_pool_skip(run, skip), or false (nothing changed) for a
 * family that always pools every valid row; skip 0 always succeeds in
 * meaning.  backbone_pool_skips(bb): whether the family can skip rows.
 */
bool		backbone_run_pool_skip(const Backbone *bb, BackboneRun *run, int skip);
bool		backbone_pool_skips(const Backbone *bb);

/* bb->ops->write_compiled(bb, dir), or NN_OK for a family that compiles nothing. */
NnStatus	backbone_write_compiled(const Backbone *bb, const char *dir, NnError *err);

/*
 * The piece of id (bb->ops->token_piece), or, for a family without one or
 * an id it does not name, "#<id>" written into buf (buf_len bytes).
 */
const char *backbone_token_piece(const Backbone *bb, int32_t id, char *buf, size_t buf_len);

/*
 * bb->ops->tokenize_pair, or -1 for a family without a pair template
 * (use-lite, T5: join the texts and tokenize them as one instead).
 */
int			backbone_tokenize_pair(const Backbone *bb, const char *a, size_t alen,
								   const char *b, size_t blen, int32_t *ids,
								   uint8_t *type_ids, int max_ids);

/* Whether the family has a pair template (bb->ops->tokenize_pair). */
bool		backbone_has_pair_template(const Backbone *bb);

/* bb->ops->run_token_types(run, type_ids), or false for a family without token types. */
bool		backbone_run_token_types(const Backbone *bb, BackboneRun *run,
									 const uint8_t *type_ids);

/* Whether the family scores and trains label strings (text-to-text, the label_* ops). */
bool		backbone_has_text_head(const Backbone *bb);

/*
 * Convenience for inference: tokenize, embed and run n texts in one batch
 * padded to the longest; out is (n, d_out).  run must hold n rows of
 * bb->max_tokens positions.  Every token is pooled (the run's pool skip is
 * reset to 0).
 */
NnStatus	backbone_embed_texts(const Backbone *bb, BackboneRun *run,
								 const char *const *texts, const size_t *lens,
								 int n, float *out, NnError *err);

#endif							/* DEPT_NN_BACKBONE_H */
