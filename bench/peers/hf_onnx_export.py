#!/usr/bin/python3
"""
hf_onnx_export.py: the BERT-family encoders of bench/run --models (BERT,
MiniLM, DistilBERT, RoBERTa) as ONNX graphs, from the same Hugging Face
directory (config.json, model.safetensors) as ours and the PyTorch peer,
for the ONNX Runtime peer (hf_onnx_peer.mjs).  Needs only Debian's
python3-onnx and numpy.

  hf_onnx_export.py MODEL_DIR OUT_DIR [N_CLASSES] [--opset N]

writes OUT_DIR/embed.onnx, OUT_DIR/predict.onnx and OUT_DIR/dept_adapter.npz
(float32; opset 17 by default; --opset 12 writes layer norms as torch.onnx did
before 17 and axes as attributes, the form ONNX Runtime's C++ attention
fusion was written for -- it fused no more of these graphs in onnxruntime-node
1.30.0 than at 17: BiasGelu and FusedMatMul (the score scale), no Attention,
no SkipLayerNormalization), both graphs with

  inputs   input_ids      (batch, seq) int64  token ids, padded (any id) past the text
           attention_mask (batch, seq) int64  1 at the text's tokens, 0 at padding
  outputs  embed:   vectors (batch, H)          what `dept-bench embed` returns
           predict: probs (batch, N_CLASSES)    softmax of the DePT adapter's head
                    vectors (batch, H)          the pooled encoder output on [P; E + AB]

with dynamic batch and sequence axes.  The math is hf_torch_peer.py's Encoder
(the transformers modeling files'): E = word[ids]; h = LN(E + type[0] +
pos[offset + t]) (RoBERTa's positions start at pad_token_id + 1; DistilBERT
has no type embedding); post-LN layers: q, k, v dense, heads, scores / sqrt(head
size) + (1 - mask) * -10000 at padded keys, softmax, dense, residual, LN;
dense, GELU (erf, written as transformers' torch export writes it), dense,
residual, LN.  Pooling as ours (bert.c default_pooling): the pooler
(tanh(dense) of the first row) where the checkpoint has one and no
1_Pooling/config.json asks for the mean, else the mean of the valid rows.

The predict graph is dept-bench's `predict --method dept` (dept_train's
default DePT on an encoder): X = [P; E + scale (A B)[0:n]] with its mask
[1...1; mask], the same encoder and pooling over all of X's rows (BERT
encoders pool every row: bert.c has no text-row pooling), a linear head,
softmax.  P: m = 60 vocabulary rows 6 + 37 i mod 5000 (as dept-bench and
hf_torch_peer.py take them); r from the budget of PT l = 100 at s = 128;
scale = 8 / sqrt(r); A uniform(+-1/sqrt(r)) from numpy's seed 42; B the
pattern of dept-bench's make_adapter; the head W from numpy's seed 43 (ours
and the PyTorch peer draw their own A, and the peer's head is zero: the
values differ, the work is the same).  scale A B is folded at export into
one s x H constant of which the graph slices the first n rows, as an exported
trained adapter would be (n r H multiply-adds a text, under 0.1% of the
encoder's).  dept_adapter.npz keeps P, A, B, scale, W, b for
hf_onnx_agreement.py.

Only standard ops (Gather, Slice, MatMul, Add, Mul, Div, Sub, Erf,
LayerNormalization, Softmax, Tanh, Reshape, Transpose, Unsqueeze, Cast,
ReduceSum, Concat, Expand), in the layout of transformers' torch exports
(separate q/k/v MatMul + Add, Reshape to (0, 0, N, h), Transpose, scores
Div by sqrt(h), mask Add, Softmax on the last axis), so that ONNX Runtime's
graph optimisations fuse what they can, as they would for a user's export.
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from safetensors_np import read_safetensors

M_PROMPT, BUDGET, S_MAX, ALPHA = 60, 100, 128, 8.0


class Weights:
    """An encoder's shapes and float32 weights; dense weights laid out (in, out) for x @ W."""

    def __init__(self, model_dir):
        cfg = json.load(open(os.path.join(model_dir, "config.json")))
        t = read_safetensors(os.path.join(model_dir, "model.safetensors"))
        self.family = cfg["model_type"]
        if self.family not in ("bert", "roberta", "xlm-roberta", "distilbert"):
            raise SystemExit(f"{model_dir}: model_type {self.family} is not a BERT-family encoder")
        distil = self.family == "distilbert"
        self.H = cfg["dim"] if distil else cfg["hidden_size"]
        self.heads = cfg["n_heads"] if distil else cfg["num_attention_heads"]
        self.eps = 1e-12 if distil else cfg["layer_norm_eps"]
        act = cfg.get("activation" if distil else "hidden_act", "gelu")
        if act not in ("gelu", "gelu_python", "relu"):
            raise SystemExit(f"{model_dir}: activation {act} (gelu, relu)")
        self.act = "relu" if act == "relu" else "gelu"
        L = cfg["n_layers"] if distil else cfg["num_hidden_layers"]
        c = lambda a: np.ascontiguousarray(a, dtype=np.float32)
        self.word = c(t["embeddings.word_embeddings.weight"])
        self.pos = c(t["embeddings.position_embeddings.weight"])
        self.type0 = None if distil else c(t["embeddings.token_type_embeddings.weight"][0])
        self.pos_offset = cfg["pad_token_id"] + 1 if self.family in ("roberta", "xlm-roberta") else 0
        self.emb_ln = (c(t["embeddings.LayerNorm.weight"]), c(t["embeddings.LayerNorm.bias"]))
        self.layers = []
        for l in range(L):
            if distil:
                p = f"transformer.layer.{l}."
                names = {"q": "attention.q_lin", "k": "attention.k_lin", "v": "attention.v_lin",
                         "o": "attention.out_lin", "ln1": "sa_layer_norm", "fc1": "ffn.lin1",
                         "fc2": "ffn.lin2", "ln2": "output_layer_norm"}
            else:
                p = f"encoder.layer.{l}."
                names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                         "o": "attention.output.dense", "ln1": "attention.output.LayerNorm",
                         "fc1": "intermediate.dense", "fc2": "output.dense", "ln2": "output.LayerNorm"}
            Ly = {}
            for k, n in names.items():
                w, b = t[p + n + ".weight"], t[p + n + ".bias"]
                Ly[k] = (c(w), c(b)) if k.startswith("ln") else (c(w.T), c(b))
            self.layers.append(Ly)
        pooling = os.path.join(model_dir, "1_Pooling", "config.json")
        cfg_pool = json.load(open(pooling)) if os.path.exists(pooling) else {}
        self.pooling = "pooler" if "pooler.dense.weight" in t else "mean"
        if cfg_pool.get("pooling_mode_mean_tokens"):
            self.pooling = "mean"
        elif cfg_pool.get("pooling_mode_cls_token"):
            self.pooling = "cls"
        self.pooler = (c(t["pooler.dense.weight"].T), c(t["pooler.dense.bias"])) \
            if self.pooling == "pooler" else None


class Graph:
    """A small builder: nodes, initializers (each constant once), fresh names; the
    ops whose form changed with the opset (axes as attributes before 13, Shape's
    start/end from 15, LayerNormalization from 17) written for self.opset."""

    def __init__(self, opset):
        self.nodes, self.inits, self.n, self.names, self.opset = [], [], 0, set(), opset

    def const(self, name, arr):
        if name not in self.names:
            self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
            self.names.add(name)
        return name

    def op(self, op_type, inputs, out=None, **attrs):
        self.n += 1
        out = out or f"{op_type.lower()}_{self.n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def f(self, name, v):
        return self.const(name, np.array(v, dtype=np.float32))

    def ints(self, name, v):
        return self.const(name, np.array(v, dtype=np.int64))

    def unsqueeze(self, x, axis):
        if self.opset < 13:
            return self.op("Unsqueeze", [x], axes=[axis])
        return self.op("Unsqueeze", [x, self.ints(f"axes_{axis}", [axis])])

    def reduce_sum(self, x, axis, keepdims):
        if self.opset < 13:
            return self.op("ReduceSum", [x], axes=[axis], keepdims=keepdims)
        return self.op("ReduceSum", [x, self.ints(f"axes_{axis}", [axis])], keepdims=keepdims)

    def dim(self, x, i):
        """x's dimension i as a 1-element int64 tensor."""
        if self.opset >= 15:
            return self.op("Shape", [x], start=i, end=i + 1)
        return self.op("Slice", [self.op("Shape", [x]), self.ints(f"dim{i}", [i]), self.ints(f"dim{i + 1}", [i + 1])])


def dense(g, x, wb, name):
    return g.op("Add", [g.op("MatMul", [x, g.const(name + ".weight", wb[0])]), g.const(name + ".bias", wb[1])])


def layer_norm(g, x, sb, eps, name):
    w, b = g.const(name + ".weight", sb[0]), g.const(name + ".bias", sb[1])
    if g.opset >= 17:
        return g.op("LayerNormalization", [x, w, b], axis=-1, epsilon=eps)
    # as torch.onnx writes F.layer_norm before opset 17 (ONNX Runtime fuses it back)
    d = g.op("Sub", [x, g.op("ReduceMean", [x], axes=[-1])])
    var = g.op("ReduceMean", [g.op("Pow", [d, g.f("two", 2.0)])], axes=[-1])
    y = g.op("Div", [d, g.op("Sqrt", [g.op("Add", [var, g.f(f"eps_{eps:g}", eps)])])])
    return g.op("Add", [g.op("Mul", [y, w]), b])


def gelu(g, x):
    """x * 0.5 * (1 + erf(x / sqrt 2)), as torch.onnx writes F.gelu."""
    e = g.op("Erf", [g.op("Div", [x, g.f("sqrt2", 1.4142135381698608)])])
    return g.op("Mul", [g.op("Mul", [x, g.op("Add", [e, g.f("one", 1.0)])]), g.f("half", 0.5)])


def encoder(g, w, x, maskf):
    """x (B, T, H) input embeddings, maskf (B, T) float 0/1 -> (B, H) pooled vectors."""
    H, heads = w.H, w.heads
    hs = H // heads
    # positions pos_offset .. pos_offset + T - 1, token type 0
    T = g.dim(maskf, 1)
    start = g.ints("pos_start", [w.pos_offset])
    pos = g.op("Slice", [g.const("embeddings.position_embeddings", w.pos), start,
                         g.op("Add", [T, start]), g.ints("axis0", [0])])
    h = x
    if w.type0 is not None:
        h = g.op("Add", [h, g.const("embeddings.token_type_0", w.type0)])
    h = g.op("Add", [h, pos])
    h = layer_norm(g, h, w.emb_ln, w.eps, "embeddings.LayerNorm")
    # (B, 1, 1, T): (1 - mask) * -10000, BERT's extended attention mask
    km = g.unsqueeze(g.unsqueeze(maskf, 1), 2)
    key_bias = g.op("Mul", [g.op("Sub", [g.f("one", 1.0), km]), g.f("neg10000", -10000.0)])
    split = g.ints("heads_shape", [0, 0, heads, hs])
    merge = g.ints("merge_shape", [0, 0, H])
    sqrt_hs = g.f("sqrt_head", float(np.sqrt(hs)))
    for l, Ly in enumerate(w.layers):
        p = f"layer.{l}"
        heads_of = lambda name, perm: g.op("Transpose", [g.op("Reshape", [dense(g, h, Ly[name], f"{p}.{name}"),
                                                                           split])], perm=perm)
        q = heads_of("q", [0, 2, 1, 3])                         # (B, N, T, hs)
        k = heads_of("k", [0, 2, 3, 1])                         # (B, N, hs, T)
        v = heads_of("v", [0, 2, 1, 3])
        s = g.op("Add", [g.op("Div", [g.op("MatMul", [q, k]), sqrt_hs]), key_bias])
        y = g.op("MatMul", [g.op("Softmax", [s], axis=-1), v])
        y = g.op("Reshape", [g.op("Transpose", [y], perm=[0, 2, 1, 3]), merge])
        h = layer_norm(g, g.op("Add", [dense(g, y, Ly["o"], f"{p}.o"), h]), Ly["ln1"], w.eps, f"{p}.ln1")
        u = dense(g, h, Ly["fc1"], f"{p}.fc1")
        u = g.op("Relu", [u]) if w.act == "relu" else gelu(g, u)
        h = layer_norm(g, g.op("Add", [dense(g, u, Ly["fc2"], f"{p}.fc2"), h]), Ly["ln2"], w.eps, f"{p}.ln2")
    if w.pooling in ("pooler", "cls"):
        first = g.op("Gather", [h, g.const("row0", np.array(0, dtype=np.int64))], axis=1)    # (B, H)
        return g.op("Tanh", [dense(g, first, w.pooler, "pooler.dense")]) if w.pooler else first
    total = g.reduce_sum(g.op("Mul", [h, g.unsqueeze(maskf, -1)]), 1, 0)
    count = g.op("Max", [g.reduce_sum(maskf, 1, 1), g.f("one", 1.0)])
    return g.op("Div", [total, count])


def adapter_tensors(w, n_classes):
    d, m = w.H, M_PROMPT
    r = min((BUDGET * d - m * d) // (S_MAX + d), S_MAX, d)
    P = w.word[[6 + (i * 37) % 5000 for i in range(m)]]
    rng = np.random.default_rng(42)
    bound = 1.0 / np.sqrt(r)
    A = rng.uniform(-bound, bound, (S_MAX, r)).astype(np.float32)
    B = (1e-3 * (np.arange(r * d) % 13 - 6)).astype(np.float32).reshape(r, d)
    scale = np.float32(ALPHA / np.sqrt(r))
    AB = (scale * (A @ B)).astype(np.float32)
    W = (0.05 * np.random.default_rng(43).standard_normal((n_classes, d))).astype(np.float32)
    b = np.zeros(n_classes, dtype=np.float32)
    return {"m": m, "r": r, "s": S_MAX, "scale": scale, "P": P, "A": A, "B": B, "AB": AB, "W": W, "b": b}


def model_of(g, inputs, outputs, name, opset):
    graph = helper.make_graph(g.nodes, name, inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="dept bench/peers/hf_onnx_export.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main():
    args = [a for a in sys.argv[1:]]
    opset = 17
    if "--opset" in args:
        i = args.index("--opset")
        opset = int(args[i + 1])
        del args[i:i + 2]
    if len(args) < 2:
        raise SystemExit(__doc__)
    model_dir, out_dir = args[:2]
    n_classes = int(args[2]) if len(args) > 2 else 2
    os.makedirs(out_dir, exist_ok=True)
    w = Weights(model_dir)
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])

    # embed: the pooled vector of the text
    g = Graph(opset)
    maskf = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    e = g.op("Gather", [g.const("embeddings.word_embeddings", w.word), "input_ids"], axis=0)
    g.op("Identity", [encoder(g, w, e, maskf)], out="vectors")
    out = helper.make_tensor_value_info("vectors", TensorProto.FLOAT, ["batch", w.H])
    onnx.save(model_of(g, [ids, mask], [out], f"{w.family}_embed", opset), os.path.join(out_dir, "embed.onnx"))

    # predict: X = [P; E + (scale A B)[0:n]], mask [1; mask], the encoder, head, softmax
    ad = adapter_tensors(w, n_classes)
    g = Graph(opset)
    maskf = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    e = g.op("Gather", [g.const("embeddings.word_embeddings", w.word), "input_ids"], axis=0)
    e = g.op("Mul", [e, g.unsqueeze(maskf, -1)])
    n = g.dim("attention_mask", 1)
    batch = g.dim("attention_mask", 0)
    e = g.op("Add", [e, g.op("Slice", [g.const("dept.AB", ad["AB"]), g.ints("zero1", [0]), n,
                                      g.ints("axis0", [0])])])
    prompt = g.op("Expand", [g.const("dept.P", ad["P"][None]),
                             g.op("Concat", [batch, g.ints("m_H", [ad["m"], w.H])], axis=0)])
    x = g.op("Concat", [prompt, e], axis=1)
    ones = g.op("Expand", [g.const("ones_m", np.ones((1, ad["m"]), dtype=np.float32)),
                           g.op("Concat", [batch, g.ints("m1", [ad["m"]])], axis=0)])
    vec = encoder(g, w, x, g.op("Concat", [ones, maskf], axis=1))
    g.op("Identity", [vec], out="vectors")
    logits = g.op("Add", [g.op("MatMul", [vec, g.const("head.weight", np.ascontiguousarray(ad["W"].T))]),
                          g.const("head.bias", ad["b"])])
    g.op("Softmax", [logits], out="probs", axis=-1)
    outs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", n_classes]),
            helper.make_tensor_value_info("vectors", TensorProto.FLOAT, ["batch", w.H])]
    onnx.save(model_of(g, [ids, mask], outs, f"{w.family}_dept_predict", opset),
              os.path.join(out_dir, "predict.onnx"))
    np.savez(os.path.join(out_dir, "dept_adapter.npz"), **{k: v for k, v in ad.items()})
    print(json.dumps({"onnx": onnx.__version__, "opset": opset, "out": out_dir, "family": w.family,
                      "hidden": w.H, "layers": len(w.layers), "heads": w.heads, "pooling": w.pooling,
                      "prompt_rows": ad["m"], "rank": int(ad["r"]), "classes": n_classes}))


if __name__ == "__main__":
    main()
