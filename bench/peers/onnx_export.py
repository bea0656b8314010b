#!/usr/bin/python3
"""
onnx_export.py: the use-lite encoder as ONNX graphs, from the same weight
files as ours and the PyTorch peer, for bench/run's ONNX Runtime peer
(onnx_peer.mjs).  Needs only Debian's python3-onnx and numpy.

  onnx_export.py MODEL_DIR OUT_DIR [N_CLASSES]
  onnx_export.py reference embed|predict MODEL_DIR OUT_DIR IDS N
      the first N sentence vectors in float64 numpy, one text at a time
      (predict: the encoder's output on [P; E + AB] with OUT_DIR's adapter),
      to check the graphs against (bench/run prints the largest difference)

writes OUT_DIR/use_lite_embed.onnx and OUT_DIR/use_lite_predict.onnx
(opset 17, float32), both with

  inputs   ids  (batch, seq) int64    token ids, padded (any id) past the text
           mask (batch, seq) float32  1 at the text's tokens, 0 at padding
  outputs  embed:   vectors (batch, 512)      the unit sentence vectors, as ours
           predict: probs (batch, N_CLASSES)  softmax of the head
                    vectors (batch, 512)      the encoder's output on [P; E + AB]

with dynamic batch and sequence axes.  The math is torch_peer.py's (read its
Encoder and DePT classes): x = emb[ids] * mask; h = 2 x + timing signal;
two pre-norm transformer layers (4 heads, padded keys get -1e9 before the
softmax; layer 0 maps its residual 256 -> 512 through a dense layer); the
mean of the real rows (in the predict graph the text's rows only, past the prompt, as
dept_train's adapters pool); tanh(dense); L2 normalisation with the graph's
epsilon.  Only standard ops: Gather, MatMul, Add, Mul, LayerNormalization,
Softmax, Relu, Tanh, ReduceSum, Reshape, Transpose, Slice, Concat, Expand.

The predict graph puts the DePT adapter of dept_train's defaults in front
of the encoder as constants, as an exported trained adapter would be: the
prompt P (m = 60 rows, the vocabulary rows 6 + 37 i mod 5000, as
dept-bench and torch_peer.py take them), the low-rank update
scale * A B (s = 128, r = 26 from the budget of PT l = 100, scale = 8 /
sqrt(r); folded at export into one s x 256 constant of which the graph
slices the first seq rows; A uniform(+-1/sqrt(r)) from numpy's seed 42,
B the non-zero pattern of dept-bench's make_adapter) and the head W, b.
The values of A and of the head differ from ours and the PyTorch peer's
(each draws its own random A); they cost the same.  The weights are read
as tools/ref/use_lite_torch.py's read_manifest reads them (copied here so
that no torch is needed).
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ENC = "module_apply_default/Encoder_en/KonaTransformer/Encode/"
STACK = ENC + "TransformerStack/"
MOD = "module/Encoder_en/KonaTransformer/Encode/"
OPSET = 17


def read_manifest(model_dir):
    """Every tensor of the weights manifest as a numpy array, by name."""
    with open(os.path.join(model_dir, "model.json"), "rb") as f:
        groups = json.load(f)["weightsManifest"]
    tensors = {}
    for g in groups:
        blob = bytearray()
        for shard in g["paths"]:
            with open(os.path.join(model_dir, shard), "rb") as f:
                blob += f.read()
        pos = 0
        for spec in g["weights"]:
            dtype = {"float32": "<f4", "int32": "<i4"}[spec["dtype"]]
            count = int(np.prod(spec["shape"])) if spec["shape"] else 1
            arr = np.frombuffer(bytes(blob[pos:pos + 4 * count]), dtype=dtype)
            tensors[spec["name"]] = arr.reshape(spec["shape"]).copy()
            pos += 4 * count
        if pos != len(blob):
            raise SystemExit("weightsManifest does not account for every shard byte")
    return tensors


class Weights:
    """The float32 weights, laid out for x @ W (in, out)."""

    def __init__(self, model_dir):
        t = read_manifest(model_dir)

        def f32(name):
            return np.ascontiguousarray(t[name], dtype=np.float32)

        def num(name):
            return float(t[name].reshape(-1)[0])

        self.emb = f32("module/Embeddings_en")
        inv = t[STACK + "Layer_0/AddTimingSignal/TimingSignal/ExpandDims_1"][0]
        pos = np.arange(256, dtype=np.float32)[:, None]
        arg = (pos * inv[None, :]).astype(np.float32)
        self.signal = np.concatenate([np.sin(arg), np.cos(arg)], 1).astype(np.float32)
        self.ln_eps = num(STACK + "Layer_1/TransformerLayer/FFN/layer_prepostprocess/layer_norm/Cast/x")
        self.l2_eps = num("module_apply_default/Encoder_en/hidden_layers/l2_normalize/Maximum/y")
        self.heads = 4
        self.layers = []
        for l in range(2):
            E = ENC + f"Layer_{l}/TransformerLayer/"
            M = MOD + f"Layer_{l}/TransformerLayer/MultiheadAttention/"
            S = STACK + f"Layer_{l}/TransformerLayer/"
            lp = "layer_prepostprocess/layer_norm/"
            L = {
                "ln1": (f32(E + lp + "layer_norm_scale/ConcatPartitions/concat"),
                        f32(E + lp + "layer_norm_bias/ConcatPartitions/concat")),
                "qkv": (f32(M + "qkv_transform_single/kernel/part_0")[0, 0],
                        f32(E + "MultiheadAttention/qkv_transform_single/bias/ConcatPartitions/concat")),
                "o": (f32(M + "output_transform_single/kernel/part_0")[0, 0],
                      f32(E + "MultiheadAttention/output_transform_single/bias/ConcatPartitions/concat")),
                "ln2": (f32(E + "FFN/" + lp + "layer_norm_scale/ConcatPartitions/concat"),
                        f32(E + "FFN/" + lp + "layer_norm_bias/ConcatPartitions/concat")),
                "fc1": (f32(S + "FFN/conv1/Tensordot/Reshape_1"),
                        f32(E + "FFN/conv1/bias/ConcatPartitions/concat")),
                "fc2": (f32(S + "FFN/conv2/Tensordot/Reshape_1"),
                        f32(E + "FFN/conv2/bias/ConcatPartitions/concat")),
                "scale": num(S + "MultiheadAttention/mul/y"),
            }
            if l == 0:
                L["res"] = (f32(E + "dense/kernel/ConcatPartitions/concat"),
                            f32(E + "dense/bias/ConcatPartitions/concat"))
            self.layers.append(L)
        self.tanh = (f32("module/Encoder_en/hidden_layers/tanh_layer_0/weights"),
                     f32("module/Encoder_en/hidden_layers/tanh_layer_0/bias"))


class Graph:
    """A small builder: nodes, initializers, fresh names."""

    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(self, op_type, inputs, **attrs):
        self.n += 1
        out = f"{op_type.lower()}_{self.n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def scalar(self, name, v):
        return self.const(name, np.array(v, dtype=np.float32))

    def ints(self, name, v):
        return self.const(name, np.array(v, dtype=np.int64))


def dense(g, x, wb, name):
    return g.op("Add", [g.op("MatMul", [x, g.const(name + ".w", wb[0])]), g.const(name + ".b", wb[1])])


def layer_norm(g, x, sb, eps, name):
    return g.op("LayerNormalization", [x, g.const(name + ".scale", sb[0]), g.const(name + ".bias", sb[1])],
                axis=-1, epsilon=eps)


def encoder(g, w, x, mask, pool_mask=None):
    """x (B, T, 256) embeddings (zero at padding), mask (B, T) -> (B, 512) unit vectors;
    the mean is over pool_mask's rows (default: mask's)."""
    pool_mask = pool_mask or mask
    heads = w.heads
    # key bias (B, 1, 1, T): -1e9 at padded keys
    key_bias = g.op("Unsqueeze", [g.op("Mul", [g.op("Sub", [g.scalar("one", 1.0), mask]),
                                               g.scalar("neg", -1e9)]), g.ints("axes_1_2", [1, 2])])
    seq = g.op("Shape", [mask], start=1, end=2)
    signal = g.op("Slice", [g.const("timing_signal", w.signal), g.ints("zero1", [0]), seq,
                            g.ints("axis0", [0])])
    h = g.op("Add", [g.op("Mul", [x, g.scalar("two", 2.0)]), signal])
    for l, L in enumerate(w.layers):
        p = f"layer{l}"
        a = layer_norm(g, h, L["ln1"], w.ln_eps, p + ".ln1")
        d = L["qkv"][0].shape[1] // 3
        hs = d // heads
        qkv = dense(g, a, L["qkv"], p + ".qkv")                                  # (B, T, 3d)
        qkv = g.op("Transpose", [g.op("Reshape", [qkv, g.ints(p + ".qkv_shape", [0, 0, 3, heads, hs])])],
                   perm=[2, 0, 3, 1, 4])                                         # (3, B, H, T, hs)
        q, k, v = (g.op("Gather", [qkv, g.const(f"{p}.pick{i}", np.array(i, dtype=np.int64))], axis=0)
                   for i in range(3))
        s = g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])])      # (B, H, T, T)
        s = g.op("Add", [g.op("Mul", [s, g.scalar(p + ".att_scale", L["scale"])]), key_bias])
        y = g.op("MatMul", [g.op("Softmax", [s], axis=-1), v])                   # (B, H, T, hs)
        y = g.op("Reshape", [g.op("Transpose", [y], perm=[0, 2, 1, 3]), g.ints(p + ".merge", [0, 0, d])])
        att = dense(g, y, L["o"], p + ".o")
        res = dense(g, h, L["res"], p + ".res") if "res" in L else h
        h = g.op("Add", [att, res])
        u = g.op("Relu", [dense(g, layer_norm(g, h, L["ln2"], w.ln_eps, p + ".ln2"), L["fc1"], p + ".fc1")])
        h = g.op("Add", [h, dense(g, u, L["fc2"], p + ".fc2")])
    m3 = g.op("Unsqueeze", [pool_mask, g.ints("axis_m1", [-1])])                 # (B, T, 1)
    axis1 = g.ints("axis1", [1])
    total = g.op("ReduceSum", [g.op("Mul", [h, m3]), axis1], keepdims=0)       # (B, 512)
    count = g.op("Max", [g.op("ReduceSum", [pool_mask, axis1], keepdims=1), g.scalar("one_b", 1.0)])
    y = g.op("Tanh", [dense(g, g.op("Div", [total, count]), w.tanh, "tanh_layer")])
    norm = g.op("Sqrt", [g.op("Max", [g.op("ReduceSum", [g.op("Mul", [y, y]), axis1], keepdims=1),
                                      g.scalar("l2_eps", w.l2_eps)])])
    return g.op("Div", [y, norm])


def embeddings(g, w, ids, mask):
    """emb[ids] * mask (B, T, 256)."""
    e = g.op("Gather", [g.const("embeddings", w.emb), ids], axis=0)
    return g.op("Mul", [e, g.op("Unsqueeze", [mask, g.ints("axis_m1_e", [-1])])])


def adapter_tensors(w, n_classes, m=60, budget=100, s=128, alpha=8.0):
    d = w.emb.shape[1]
    r = min((budget * d - m * d) // (s + d), s, d)
    P = w.emb[[6 + (i * 37) % 5000 for i in range(m)]]
    rng = np.random.default_rng(42)
    bound = 1.0 / np.sqrt(r)
    A = rng.uniform(-bound, bound, (s, r)).astype(np.float32)
    B = (1e-3 * (np.arange(r * d) % 13 - 6)).astype(np.float32).reshape(r, d)
    AB = (alpha / np.sqrt(r) * (A @ B)).astype(np.float32)
    W = (1e-2 * rng.standard_normal((512, n_classes))).astype(np.float32)
    b = np.zeros(n_classes, dtype=np.float32)
    return {"m": m, "r": r, "s": s, "P": P, "AB": AB, "W": W, "b": b}


def model_of(g, inputs, outputs, name):
    graph = helper.make_graph(g.nodes, name, inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="dept bench/peers/onnx_export.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def reference(w, rows, ad=None):
    """The same math in float64 numpy, one text at a time (no padding): the
    check of the predict graph, whose adapter ours and the PyTorch peer do
    not share."""
    f = lambda a: np.asarray(a, dtype=np.float64)

    def ln(x, sb):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + w.ln_eps) * f(sb[0]) + f(sb[1])

    def dn(x, wb):
        return x @ f(wb[0]) + f(wb[1])

    out = []
    for r in rows:
        x = f(w.emb[r])
        if ad is not None:
            x = np.concatenate([f(ad["P"]), x + f(ad["AB"][:len(r)])], 0)
        T = x.shape[0]
        h = 2.0 * x + f(w.signal[:T])
        for L in w.layers:
            a = ln(h, L["ln1"])
            qkv = dn(a, L["qkv"])
            d = qkv.shape[1] // 3
            hs = d // w.heads
            q, k, v = (qkv[:, i * d:(i + 1) * d].reshape(T, w.heads, hs).transpose(1, 0, 2) for i in range(3))
            s = q @ k.transpose(0, 2, 1) * L["scale"]
            p = np.exp(s - s.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            y = (p @ v).transpose(1, 0, 2).reshape(T, d)
            h = dn(y, L["o"]) + (dn(h, L["res"]) if "res" in L else h)
            h = h + dn(np.maximum(dn(ln(h, L["ln2"]), L["fc1"]), 0.0), L["fc2"])
        y = np.tanh(dn(h[T - len(r):].mean(0) if ad is not None else h.mean(0), w.tanh))
        out.append((y / np.sqrt(max((y * y).sum(), w.l2_eps))).tolist())
    return out


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "reference":
        # onnx_export.py reference embed|predict MODEL_DIR ONNX_DIR IDS N
        kind, model_dir, onnx_dir, ids_path, n = sys.argv[2:7]
        with open(ids_path) as f:
            rows = [[int(t) for t in line.split()[1:]] for line in f if line.strip()][:int(n)]
        ad = dict(np.load(os.path.join(onnx_dir, "dept_adapter.npz"))) if kind == "predict" else None
        print(json.dumps(reference(Weights(model_dir), rows, ad)))
        return
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    model_dir, out_dir = sys.argv[1:3]
    n_classes = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    os.makedirs(out_dir, exist_ok=True)
    w = Weights(model_dir)
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])
    mask = helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "seq"])

    g = Graph()
    vec = encoder(g, w, embeddings(g, w, "ids", "mask"), "mask")
    g.nodes.append(helper.make_node("Identity", [vec], ["vectors"]))
    out = helper.make_tensor_value_info("vectors", TensorProto.FLOAT, ["batch", 512])
    onnx.save(model_of(g, [ids, mask], [out], "use_lite_embed"), os.path.join(out_dir, "use_lite_embed.onnx"))

    # predict: X = [P; E + (scale A B)[0:seq]], its mask [1; mask], head, softmax
    ad = adapter_tensors(w, n_classes)
    g = Graph()
    e = embeddings(g, w, "ids", "mask")
    seq = g.op("Shape", ["mask"], start=1, end=2)
    batch = g.op("Shape", ["mask"], start=0, end=1)
    ab = g.op("Slice", [g.const("dept.AB", ad["AB"]), g.ints("p_zero", [0]), seq, g.ints("p_axis0", [0])])
    e = g.op("Add", [e, ab])
    d = w.emb.shape[1]
    prompt = g.op("Expand", [g.const("dept.P", ad["P"][None]),
                             g.op("Concat", [batch, g.ints("p_md", [ad["m"], d])], axis=0)])
    x = g.op("Concat", [prompt, e], axis=1)
    ones = g.op("Expand", [g.const("p_ones", np.ones((1, ad["m"]), dtype=np.float32)),
                           g.op("Concat", [batch, g.ints("p_m", [ad["m"]])], axis=0)])
    xm = g.op("Concat", [ones, "mask"], axis=1)
    # the mean over the text rows only, as dept_train's adapters pool (text-row pooling)
    pm = g.op("Concat", [g.op("Sub", [ones, ones]), "mask"], axis=1)
    vec = encoder(g, w, x, xm, pm)
    g.nodes.append(helper.make_node("Identity", [vec], ["vectors"]))
    logits = dense(g, vec, (ad["W"], ad["b"]), "head")
    g.nodes.append(helper.make_node("Softmax", [logits], ["probs"], axis=-1))
    outs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", n_classes]),
            helper.make_tensor_value_info("vectors", TensorProto.FLOAT, ["batch", 512])]
    onnx.save(model_of(g, [ids, mask], outs, "use_lite_dept_predict"),
              os.path.join(out_dir, "use_lite_predict.onnx"))
    np.savez(os.path.join(out_dir, "dept_adapter.npz"), **{k: v for k, v in ad.items()})
    print(json.dumps({"onnx": onnx.__version__, "opset": OPSET, "out": out_dir,
                      "prompt_rows": ad["m"], "rank": ad["r"], "classes": n_classes}))


if __name__ == "__main__":
    main()
