#!/usr/bin/python3
"""
use_lite_ref.py: an independent numpy reference for the use-lite backbone.

This is the executable specification that src/nn/models/use_lite/use_lite.c is checked
against.  It re-implements, op by op, the TF.js graph in model.json (node
names are quoted in the comments) in float32, reading the weights straight
from the weights manifest, so it shares no code with the C port.  It was
validated against the original runtime (@energetic-ai/embeddings@0.2.0, TF.js
WASM backend): see --check.

What the graph does (module_apply_default/Encoder_en/KonaTransformer/...):

  input      SparseTensor: indices (N x 2: row, column), values (N ids); the
             JS runtime passes every id of every text, untruncated
  ClipToMaxLength  keep entries whose column < 128 (Less/y), i.e. the first
             128 ids of each text (counted after the tokenizer has merged
             runs of unknowns); dense shape = max(indices) + 1
  SparseToDense    ids (B x T), absent entries = default_value = -1
  Greater    mask = ids > -1: every id given, including the unknown piece 0,
             is a real token; only absent (padding) positions are masked
  embedding_lookup + Scatter: x[b, t] = Embeddings_en[ids[b, t]] at valid
             positions, 0 elsewhere
  AddTimingSignal  s[b, t] = x[b, t] + [sin(t * inv), cos(t * inv)] at valid
             positions (0 elsewhere), t = column index, inv = the constant
             ExpandDims_1 (1 x 128)
  Layer_0/add  x = x + s = 2 E[id] + signal: the embedding counts twice,
             because AddTimingSignal returns x + signal and the stack adds
             that to x again
  Layer_0 (pre-norm, d_model 256 -> 512):
     a   = LN(x)                           layer_prepostprocess/layer_norm
     qkv = a @ Wqkv (256 x 768) + b        qkv_transform_single (1x1 Conv2D)
     q, k, v split 256 each, 4 heads x 64; q *= mul/y (0.125)
     att = softmax(q k^T + (-1e9) * !mask[key]) v
     o   = concat heads @ Wo (256 x 512) + bo    output_transform_single
     h   = o + (x @ Wd (256 x 512) + bd)   AdjustResidualInput/dense (valid
                                           positions, 0 at padding)
     h   = h + FFN(LN(h))                  FFN: relu(. @ W1 + b1) @ W2 + b2,
                                           512-1536-512, valid positions only
  Layer_1 (pre-norm, 512): h = h + MHA(LN(h)) (4 heads x 128, q *= 0.0884),
                           h = h + FFN(LN(h))
  (no final layer norm)
  pool       SequenceMask(count): sum of the first count rows / max(count, 1),
             count = number of valid positions (they are a prefix here)
  hidden_layers/tanh_layer_0: tanh(pool @ Wt + bt)
  l2_normalize: y * rsqrt(max(sum(y^2), Maximum/y = 1e-12))

  An empty text therefore gives l2_normalize(tanh(bt)) (the runtime accepts
  it inside a batch; a batch of only empty texts makes SparseToDense fail).

  LN(z) = (z - mean) * rsqrt(var + eps) * scale + bias, eps = Cast/x (1e-6),
  var the biased variance over the last axis.

Usage:
  use_lite_ref.py [--model DIR] --check REF.json   compare with a reference
      file {"texts": [...], ("ids": [[...]...],) "embeddings": [[...]...]};
      ids come from the file, else from the tokenizer port below
  use_lite_ref.py [--model DIR] --ids 2002,102,311 print one embedding
  use_lite_ref.py [--model DIR] --text "hello world"

The tokenizer here is a test-only port of @energetic-ai/embeddings'
tokenizer.ts (NFKC, U+2581 prefix and spaces, Viterbi over the pieces with
its quirks: ties go to the later candidate, consecutive unknowns merged), used
only to get ids for reference files that carry none.
"""
import argparse
import json
import os
import sys
import unicodedata

import numpy as np

P = "module_apply_default/Encoder_en/KonaTransformer/Encode/"
TS = P + "TransformerStack/"
F32 = np.float32


def load_weights(model_dir):
    """Map manifest name -> ndarray (float32 or int32), shards concatenated."""
    with open(os.path.join(model_dir, "model.json"), "rb") as f:
        manifest = json.load(f)["weightsManifest"]
    out = {}
    for group in manifest:
        buf = b"".join(open(os.path.join(model_dir, p), "rb").read() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            dt = {"float32": np.float32, "int32": np.int32}[w["dtype"]]
            out[w["name"]] = np.frombuffer(buf, dt, n, off).reshape(w["shape"])
            off += n * 4
        assert off == len(buf), "manifest does not cover the shards exactly"
    return out


def scalar(w, name):
    return w[name].reshape(()).item()


def layer_norm(z, scale, bias, eps):
    # layer_prepostprocess/layer_norm: Mean, sub_1, Square, Mean_1, add, Rsqrt, mul, mul_1, add_1
    mean = z.mean(-1, keepdims=True, dtype=F32)
    d = z - mean
    var = (d * d).mean(-1, keepdims=True, dtype=F32)
    r = F32(1) / np.sqrt(var + F32(eps))
    return (scale * r) * d + bias


def mha(a, mask, w, layer, d, heads):
    """MultiheadAttention of one layer on a (B, T, d); returns (B, T, 512)."""
    L = P + f"Layer_{layer}/TransformerLayer/MultiheadAttention/"
    B, T, _ = a.shape
    dh = d // heads
    if T == 0:
        return np.zeros((B, 0, 512), F32)
    wqkv = w["module/Encoder_en/KonaTransformer/Encode/" +
             f"Layer_{layer}/TransformerLayer/MultiheadAttention/qkv_transform_single/kernel/part_0"][0, 0]
    wo = w["module/Encoder_en/KonaTransformer/Encode/" +
           f"Layer_{layer}/TransformerLayer/MultiheadAttention/output_transform_single/kernel/part_0"][0, 0]
    qkv = a @ wqkv + w[L + "qkv_transform_single/bias/ConcatPartitions/concat"]
    q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]

    def split(t):  # split_heads: (B, T, d) -> (B, H, T, dh)
        return t.reshape(B, T, heads, dh).transpose(0, 2, 1, 3)
    scale = scalar(w, TS + f"Layer_{layer}/TransformerLayer/MultiheadAttention/mul/y")
    q, k, v = split(q) * F32(scale), split(k), split(v)
    neg = scalar(w, TS + "Layer_1/TransformerLayer/MultiheadAttention/DotProductAttention/"
                 "attention_bias_ignore_padding/mul/y")
    bias = ((~mask).astype(F32) * F32(neg))[:, None, None, :]
    logits = q @ k.transpose(0, 1, 3, 2) + bias
    logits = logits - logits.max(-1, keepdims=True)
    p = np.exp(logits)
    p = p / p.sum(-1, keepdims=True)
    o = (p @ v).transpose(0, 2, 1, 3).reshape(B, T, d)  # combine_heads
    return o @ wo + w[L + "output_transform_single/bias/ConcatPartitions/concat"]


def ffn(h, mask, w, layer):
    """FFN of one layer: pre-norm, applied to valid positions, 0 elsewhere."""
    L = P + f"Layer_{layer}/TransformerLayer/FFN/"
    eps = scalar(w, TS + "Layer_1/TransformerLayer/FFN/layer_prepostprocess/layer_norm/Cast/x")
    a = layer_norm(h, w[L + "layer_prepostprocess/layer_norm/layer_norm_scale/ConcatPartitions/concat"],
                   w[L + "layer_prepostprocess/layer_norm/layer_norm_bias/ConcatPartitions/concat"], eps)
    S = TS + f"Layer_{layer}/TransformerLayer/FFN/"
    g = a[mask]                                                  # Gather/GatherNd
    u = np.maximum(g @ w[S + "conv1/Tensordot/Reshape_1"] + w[L + "conv1/bias/ConcatPartitions/concat"], F32(0))
    y = u @ w[S + "conv2/Tensordot/Reshape_1"] + w[L + "conv2/bias/ConcatPartitions/concat"]
    out = np.zeros_like(h)
    out[mask] = y                                                # Scatter/ScatterNd
    return h + out                                               # layer_postprocess/add


def forward(w, id_lists):
    """Run the graph on a batch of id lists (the JS runtime's SparseTensor)."""
    max_len = int(scalar(w, "module_apply_default/Encoder_en/KonaTransformer/ClipToMaxLength/Less/y"))
    rows = [list(ids)[:max_len] for ids in id_lists]             # ClipToMaxLength
    B = len(rows)
    T = max([len(r) for r in rows] + [0])
    dense = np.full((B, T), -1, np.int64)                        # SparseToDense
    for b, r in enumerate(rows):
        dense[b, :len(r)] = r
    mask = dense > -1                                            # Greater
    emb = w["module/Embeddings_en"]
    x = np.zeros((B, T, emb.shape[1]), F32)
    x[mask] = emb[dense[mask]]                                   # embedding_lookup + Scatter
    # AddTimingSignal: positions are the column index of each valid entry
    inv = w[TS + "Layer_0/AddTimingSignal/TimingSignal/ExpandDims_1"]
    pos = np.nonzero(mask)[1].astype(F32)[:, None]
    st = pos * inv
    sig = np.zeros_like(x)                                       # AddTimingSignal/Scatter
    sig[mask] = x[mask] + np.concatenate([np.sin(st), np.cos(st)], axis=1).astype(F32)
    x = x + sig                                                  # Layer_0/add: 2 E + signal

    eps = scalar(w, TS + "Layer_1/TransformerLayer/FFN/layer_prepostprocess/layer_norm/Cast/x")
    h = x
    for layer, d in ((0, 256), (1, 512)):
        L = P + f"Layer_{layer}/TransformerLayer/"
        a = layer_norm(h, w[L + "layer_prepostprocess/layer_norm/layer_norm_scale/ConcatPartitions/concat"],
                       w[L + "layer_prepostprocess/layer_norm/layer_norm_bias/ConcatPartitions/concat"], eps)
        o = mha(a, mask, w, layer, d, 4)
        if layer == 0:  # AdjustResidualInput: dense 256 -> 512 on valid positions
            res = np.zeros((B, T, 512), F32)
            res[mask] = h[mask] @ w[L + "dense/kernel/ConcatPartitions/concat"] + \
                w[L + "dense/bias/ConcatPartitions/concat"]
        else:
            res = h
        h = o + res
        h = ffn(h, mask, w, layer)

    count = mask.sum(1)                                          # MaskLength/Sum
    seq = (np.arange(T)[None, :] < count[:, None]).astype(F32)   # SequenceMask
    pooled = (h * seq[:, :, None]).sum(1) / np.maximum(count, 1).astype(F32)[:, None]
    y = np.tanh(pooled @ w["module/Encoder_en/hidden_layers/tanh_layer_0/weights"] +
                w["module/Encoder_en/hidden_layers/tanh_layer_0/bias"])
    l2eps = scalar(w, "module_apply_default/Encoder_en/hidden_layers/l2_normalize/Maximum/y")
    ss = np.maximum((y * y).sum(1, keepdims=True), F32(l2eps))
    return (y / np.sqrt(ss)).astype(F32)


class Tokenizer:
    """Test-only port of @energetic-ai/embeddings@0.2.0 lib/tokenizer.ts."""

    def __init__(self, vocab_path, reserved=6):
        with open(vocab_path, encoding="utf-8") as f:
            self.vocab = json.load(f)
        self.pieces = {}
        for i in range(reserved, len(self.vocab)):
            # a few pieces (":", "://", "▁:)", ...) have a null score; JS adds
            # null as 0
            self.pieces[self.vocab[i][0]] = (self.vocab[i][1] or 0.0, i)
        self.maxlen = max(len(p) for p in self.pieces)

    def encode(self, text):
        s = unicodedata.normalize("NFKC", text)
        s = "\u2581" + s.replace(" ", "\u2581") if s else s
        n = len(s)
        nodes = [dict() for _ in range(n + 1)]   # end -> {start: [(len, score, id)]}
        for i in range(n):
            found = False
            for ln in range(1, min(self.maxlen, n - i) + 1):
                hit = self.pieces.get(s[i:i + ln])
                if hit is not None:
                    nodes[i + ln].setdefault(i, []).append((ln, hit[0], hit[1]))
                    found = True
            if not found:
                nodes[i + 1].setdefault(i, []).append((1, 0.0, 0))
        best = [0.0] * (n + 1)
        words = [0] * (n + 1)
        for end in range(n + 1):
            for start in sorted(nodes[end]):
                for ln, score, idx in nodes[end][start]:
                    sc = score + best[end - ln]
                    if best[end] == 0 or sc >= best[end]:
                        best[end] = sc
                        words[end] = idx
        out = []
        it = n
        while it > 0:
            out.append(words[it])
            it -= len(self.vocab[words[it]][0])
        merged = []
        prev_unk = False
        for i in out:
            if not (prev_unk and i == 0):
                merged.append(i)
            prev_unk = i == 0
        return merged[::-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--model", default="build/model/use-lite")
    ap.add_argument("--check")
    ap.add_argument("--ids")
    ap.add_argument("--text")
    args = ap.parse_args()
    w = load_weights(args.model)
    if args.check:
        with open(args.check, encoding="utf-8") as f:
            ref = json.load(f)
        ids = ref.get("ids")
        if ids is None:
            tok = Tokenizer(os.path.join(args.model, "vocab.json"))
            ids = [tok.encode(t) for t in ref["texts"]]
        worst = 0.0
        for i, (row, want) in enumerate(zip(ids, ref["embeddings"])):
            got = forward(w, [row])[0]
            diff = float(np.abs(got - np.asarray(want, np.float64)).max())
            worst = max(worst, diff)
            if diff > 1e-5:
                print(f"case {i} {ref['texts'][i][:40]!r}: max abs diff {diff:.3g}")
        # the whole file as one padded batch must give the same answers
        got = forward(w, ids)
        bdiff = float(np.abs(got - np.asarray(ref["embeddings"], np.float64)).max())
        print(f"{len(ids)} cases, max abs diff {worst:.3g} one at a time, {bdiff:.3g} batched")
        sys.exit(0 if max(worst, bdiff) <= 1e-5 else 1)
    if args.text is not None:
        tok = Tokenizer(os.path.join(args.model, "vocab.json"))
        ids = tok.encode(args.text)
    else:
        ids = [int(t) for t in args.ids.split(",") if t]
    print(json.dumps({"ids": ids, "embedding": [float(v) for v in forward(w, [ids])[0]]}))


if __name__ == "__main__":
    main()
