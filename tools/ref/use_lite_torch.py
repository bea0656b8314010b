#!/usr/bin/python3
"""
use_lite_torch.py: an independent PyTorch (float64, autograd) model of the
use-lite encoder, the golden source for the C input-backward.

It shares no code with src/nn or with use_lite_ref.py's encoder: it reads
model.json and the group1-shard* files itself, builds the forward pass from
the graph's semantics with torch ops in float64 (model summary in
src/nn/models/use_lite/use_lite.h; graph node names in use_lite_ref.py's docstring), and
lets autograd differentiate it.  Padding follows the graph, not the C
packing: the whole padded batch is computed, padded positions of the input
and of the timing signal are zeroed, padded keys get the graph's -1e9
attention bias, AdjustResidualInput and the FFN are applied at valid
positions only, and pooling averages the valid rows.  The timing signal's
argument position * inv_timescale is rounded to float32, as the graph
computes it (sin/cos then in float64).

  use_lite_torch.py check     forward against the TF.js runtime's embeddings
      (test/fixtures/reference_embeddings.json, ids from the test-only
      tokenizer port in use_lite_ref.py, and use_lite_embeddings.json, ids
      from the runtime); every component within 1e-5, batched and alone
  use_lite_torch.py fixture   write test/fixtures/use_lite_grad.{json,bin}:
      a batch of 3 rows of 8 prompt rows + 22, 11 and 3 token rows padded
      to 30 positions (garbage at the padded positions), a fixed random W
      (batch, 512), loss = sum(out * W) and dloss/dx by autograd

Fixture layout: use_lite_grad.json holds the shapes, the mask, the loss,
out (float64), and a table of the tensors in use_lite_grad.bin, each a
little-endian array at a byte offset: x (3, 30, 256) float32 -- exactly the
input the C test feeds --, W (3, 512) float32, dx (3, 30, 256) float64.
Needs torch (1.13 is what /usr/bin/python3 has) and numpy.
"""
import argparse
import importlib.util
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
ENC = "module_apply_default/Encoder_en/KonaTransformer/Encode/"
STACK = ENC + "TransformerStack/"
MOD = "module/Encoder_en/KonaTransformer/Encode/"
D64 = torch.float64


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
            count = 1
            for s in spec["shape"]:
                count *= s
            arr = np.frombuffer(bytes(blob[pos:pos + 4 * count]), dtype=dtype)
            tensors[spec["name"]] = arr.reshape(spec["shape"]).copy()
            pos += 4 * count
        if pos != len(blob):
            raise SystemExit("weightsManifest does not account for every shard byte")
    return tensors


class UseLite:
    """Weights in float64 torch tensors and the forward pass."""

    def __init__(self, model_dir):
        t = read_manifest(model_dir)

        def f64(name):
            return torch.from_numpy(t[name].astype(np.float64))

        def num(name):
            return float(t[name].reshape(-1)[0])

        self.emb = t["module/Embeddings_en"]                    # float32, for test inputs
        # the timing signal's inverse timescales stay float32 (see timing())
        self.inv_timescales = t[STACK + "Layer_0/AddTimingSignal/TimingSignal/ExpandDims_1"][0]
        self.ln_eps = num(STACK + "Layer_1/TransformerLayer/FFN/layer_prepostprocess/layer_norm/Cast/x")
        self.l2_eps = num("module_apply_default/Encoder_en/hidden_layers/l2_normalize/Maximum/y")
        self.neg = num(STACK + "Layer_1/TransformerLayer/MultiheadAttention/DotProductAttention/"
                       "attention_bias_ignore_padding/mul/y")
        self.heads = int(num(STACK + "Layer_1/TransformerLayer/MultiheadAttention/"
                             "split_heads/split_last_dimension/Reshape/shape/2"))
        self.max_tokens = int(num("module_apply_default/Encoder_en/KonaTransformer/ClipToMaxLength/Less/y"))
        self.layers = []
        for l in range(2):
            E = ENC + f"Layer_{l}/TransformerLayer/"
            M = MOD + f"Layer_{l}/TransformerLayer/MultiheadAttention/"
            S = STACK + f"Layer_{l}/TransformerLayer/"
            lp = "layer_prepostprocess/layer_norm/"
            L = {
                "ln1": (f64(E + lp + "layer_norm_scale/ConcatPartitions/concat"),
                        f64(E + lp + "layer_norm_bias/ConcatPartitions/concat")),
                "qkv": (f64(M + "qkv_transform_single/kernel/part_0")[0, 0],
                        f64(E + "MultiheadAttention/qkv_transform_single/bias/ConcatPartitions/concat")),
                "o": (f64(M + "output_transform_single/kernel/part_0")[0, 0],
                      f64(E + "MultiheadAttention/output_transform_single/bias/ConcatPartitions/concat")),
                "ln2": (f64(E + "FFN/" + lp + "layer_norm_scale/ConcatPartitions/concat"),
                        f64(E + "FFN/" + lp + "layer_norm_bias/ConcatPartitions/concat")),
                "fc1": (f64(S + "FFN/conv1/Tensordot/Reshape_1"),
                        f64(E + "FFN/conv1/bias/ConcatPartitions/concat")),
                "fc2": (f64(S + "FFN/conv2/Tensordot/Reshape_1"),
                        f64(E + "FFN/conv2/bias/ConcatPartitions/concat")),
                "scale": num(S + "MultiheadAttention/mul/y"),
            }
            if l == 0:
                L["res"] = (f64(E + "dense/kernel/ConcatPartitions/concat"),
                            f64(E + "dense/bias/ConcatPartitions/concat"))
            self.layers.append(L)
        self.tanh = (f64("module/Encoder_en/hidden_layers/tanh_layer_0/weights"),
                     f64("module/Encoder_en/hidden_layers/tanh_layer_0/bias"))

    def timing(self, T):
        """(T, 256) sin/cos signal; the argument is rounded to float32 as in the graph."""
        pos = np.arange(T, dtype=np.float32)[:, None]
        arg = torch.from_numpy((pos * self.inv_timescales[None, :]).astype(np.float32)).to(D64)
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)

    def layer_norm(self, z, wb):
        mu = z.mean(-1, keepdim=True)
        var = ((z - mu) ** 2).mean(-1, keepdim=True)
        return (z - mu) / torch.sqrt(var + self.ln_eps) * wb[0] + wb[1]

    def attention(self, a, keep, L):
        """Multi-head self-attention with padded keys masked by the graph's bias."""
        B, T, d = a.shape
        hs = d // self.heads
        qkv = a @ L["qkv"][0] + L["qkv"][1]
        q, k, v = (qkv[..., i * d:(i + 1) * d].reshape(B, T, self.heads, hs).transpose(1, 2)
                   for i in range(3))
        logits = (q * L["scale"]) @ k.transpose(-1, -2)
        logits = logits + (1.0 - keep)[:, None, None, :] * self.neg
        p = torch.softmax(logits, dim=-1)
        y = (p @ v).transpose(1, 2).reshape(B, T, d)
        return y @ L["o"][0] + L["o"][1]

    def forward(self, x, mask):
        """x (B, T, 256) float64, mask (B, T) bool -> (B, 512) unit vectors."""
        B, T, _ = x.shape
        keep = mask.to(D64)
        m3 = keep[..., None]
        xv = x * m3                                       # padded positions are absent
        h = xv + (xv + self.timing(T)[None] * m3)         # Layer_0/add: 2 E + signal
        for L in self.layers:
            att = self.attention(self.layer_norm(h, L["ln1"]), keep, L)
            if "res" in L:                                # AdjustResidualInput, valid rows
                h = att + (h @ L["res"][0] + L["res"][1]) * m3
            else:
                h = att + h
            u = torch.relu(self.layer_norm(h, L["ln2"]) @ L["fc1"][0] + L["fc1"][1])
            h = h + (u @ L["fc2"][0] + L["fc2"][1]) * m3  # FFN at valid rows only
        count = keep.sum(1, keepdim=True)
        pooled = (h * m3).sum(1) / torch.clamp(count, min=1.0)
        y = torch.tanh(pooled @ self.tanh[0] + self.tanh[1])
        return y / torch.sqrt(torch.clamp((y * y).sum(1, keepdim=True), min=self.l2_eps))

    def embed_ids(self, id_lists):
        """Padded batch of embedding rows for id lists (clipped like the graph)."""
        rows = [list(r)[:self.max_tokens] for r in id_lists]
        T = max([len(r) for r in rows] + [1])
        x = np.zeros((len(rows), T, self.emb.shape[1]), np.float32)
        mask = np.zeros((len(rows), T), bool)
        for b, r in enumerate(rows):
            if r:
                x[b, :len(r)] = self.emb[r]
                mask[b, :len(r)] = True
        return torch.from_numpy(x).to(D64), torch.from_numpy(mask)


def ref_tokenizer(model_dir):
    """The test-only tokenizer port of use_lite_ref.py (ids only; not the encoder)."""
    spec = importlib.util.spec_from_file_location("use_lite_ref", os.path.join(HERE, "use_lite_ref.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Tokenizer(os.path.join(model_dir, "vocab.json"))


def check(model, model_dir, fixtures):
    worst_all = 0.0
    for name in ("reference_embeddings.json", "use_lite_embeddings.json"):
        with open(os.path.join(fixtures, name), encoding="utf-8") as f:
            ref = json.load(f)
        ids = ref.get("ids")
        if ids is None:
            tok = ref_tokenizer(model_dir)
            ids = [tok.encode(t) for t in ref["texts"]]
        want = np.asarray(ref["embeddings"], np.float64)
        with torch.no_grad():
            x, mask = model.embed_ids(ids)
            batched = model.forward(x, mask).numpy()
            alone = np.stack([model.forward(*model.embed_ids([r]))[0].numpy() for r in ids])
        d1 = float(np.abs(alone - want).max())
        db = float(np.abs(batched - want).max())
        worst_all = max(worst_all, d1, db)
        print(f"{name}: {len(ids)} cases, max abs diff vs TF.js {d1:.3g} alone, {db:.3g} batched")
    ok = worst_all <= 1e-5
    print("forward check", "passed" if ok else "FAILED", "(tolerance 1e-5)")
    return ok


def make_fixture(model, fixtures, seed):
    rng = np.random.default_rng(seed)
    P, lengths, d = 8, [22, 11, 3], 256
    T = P + max(lengths)
    B = len(lengths)
    emb_std = float(model.emb[6:].std())
    x = np.zeros((B, T, d), np.float32)
    mask = np.zeros((B, T), bool)
    for b, n in enumerate(lengths):
        # prompt rows: arbitrary floats at the embeddings' scale (a trained P)
        x[b, :P] = rng.normal(0.0, emb_std, (P, d))
        # token rows: real embedding rows plus a DePT-like low-rank offset
        ids = rng.integers(6, model.emb.shape[0], n)
        x[b, P:P + n] = model.emb[ids] + 0.1 * emb_std * rng.normal(size=(n, d))
        # padded positions carry garbage (DePT adds its offset there too): must not matter
        x[b, P + n:] = rng.normal(0.0, 3 * emb_std, (T - P - n, d))
        mask[b, :P + n] = True
    W = rng.normal(0.0, 1.0, (B, 512)).astype(np.float32)

    xt = torch.from_numpy(x).to(D64).requires_grad_(True)
    out = model.forward(xt, torch.from_numpy(mask))
    loss = (out * torch.from_numpy(W).to(D64)).sum()
    loss.backward()
    dx = xt.grad.numpy()
    assert np.all(dx[~mask] == 0.0), "padded positions got a gradient"

    # sanity: autograd against a float64 central difference along unit random
    # directions; the step is tiny because the ReLUs make the loss kinked at
    # the 1e-3 scale (single-coordinate differences with h = 1e-3 are off by
    # up to 2% for that reason alone)
    Wt = torch.from_numpy(W).to(D64)
    mt = torch.from_numpy(mask)
    with torch.no_grad():
        for i in range(3):
            v = torch.from_numpy(rng.normal(size=x.shape) * mask[..., None])
            v /= v.norm()
            eps = 1e-6
            lp = (model.forward(xt + eps * v, mt) * Wt).sum()
            lm = (model.forward(xt - eps * v, mt) * Wt).sum()
            fd = float((lp - lm) / (2 * eps))
            an = float((xt.grad * v).sum())
            print(f"direction {i}: autograd {an:.10g}, float64 central difference {fd:.10g}, "
                  f"rel diff {abs(fd - an) / abs(an):.2e}")

    base = "use_lite_grad"
    tensors = [("x", x.astype("<f4"), "float32"), ("W", W.astype("<f4"), "float32"),
               ("dx", dx.astype("<f8"), "float64")]
    table, off = [], 0
    with open(os.path.join(fixtures, base + ".bin"), "wb") as f:
        for name, arr, dt in tensors:
            f.write(arr.tobytes())
            table.append({"name": name, "dtype": dt, "shape": list(arr.shape), "offset": off})
            off += arr.nbytes
    header = {
        "generator": "tools/ref/use_lite_torch.py fixture (torch %s, float64 autograd), seed %d"
                     % (torch.__version__, seed),
        "batch": B, "seq_len": T, "d_embed": d, "d_out": 512, "prompt_rows": P,
        "token_lengths": lengths,
        "mask": mask.astype(int).tolist(),
        "loss": float(loss),
        "out": out.detach().numpy().tolist(),
        "max_abs_dx": float(np.abs(dx).max()),
        "bin": {"file": base + ".bin", "byte_order": "little", "size": off, "tensors": table},
    }
    with open(os.path.join(fixtures, base + ".json"), "w") as f:
        json.dump(header, f, indent=1)
        f.write("\n")
    print(f"wrote {base}.json and {base}.bin ({off} bytes): loss {float(loss):.10g}, "
          f"max |dx| {header['max_abs_dx']:.4g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("what", choices=["check", "fixture"])
    ap.add_argument("--model", default=os.path.join(ROOT, "build/model/use-lite"))
    ap.add_argument("--fixtures", default=os.path.join(ROOT, "test/fixtures"))
    ap.add_argument("--seed", type=int, default=20240611)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = UseLite(args.model)
    if args.what == "check":
        sys.exit(0 if check(model, args.model, args.fixtures) else 1)
    if not check(model, args.model, args.fixtures):
        sys.exit("forward disagrees with the TF.js runtime; no fixture written")
    make_fixture(model, args.fixtures, args.seed)


if __name__ == "__main__":
    main()
