#!/usr/bin/python3
"""
torch_peer.py: the PyTorch peer of bench/run -- the use-lite encoder and the
DePT training step written the way a competent PyTorch user would, in
float32 on the CPU, from the same weight files.

  torch_peer.py embed   MODEL_DIR IDS BATCH THREADS     sentence vectors
  torch_peer.py predict MODEL_DIR IDS BATCH THREADS     DePT adapter + head
  torch_peer.py train   MODEL_DIR IDS BATCH THREADS STEPS [METHOD]

IDS is `dept-bench tokenize`'s output (label, then the token ids of one
text per line), so both implementations read the very same tokens; the
tokenizer is not part of this peer's timing (ours includes it: 6.5 M
tokens/s, under 1% of a forward).  Each batch is padded to its longest
row, as a PyTorch user feeds a transformer; padded keys are masked and
pooling averages the real rows, which makes the output identical to the
graph's (checked against dept-bench's own vectors: bench/run prints the
largest difference).  Inference runs under torch.inference_mode; in
training only the adapter (P, A, B) and the head require gradients, the
frozen weights are plain tensors, and the step is forward, cross-entropy,
backward, gradient clipping and AdamW with one parameter group per
learning rate -- the step of src/nn/train/train.c, at the sizes dept_train uses
by default (DePT m = 60, r = 26 from the budget of PT l = 100, s = 128).

With PEER_PRECISION=bfloat16 in the environment, the dense layers'
products run in bfloat16 as ours do with dept.matmul_precision = bfloat16
(and dept_train's "precision": "bfloat16"): weights cast to bfloat16 once
at load, inputs cast per call, float32 outputs and biases, attention and
the rest in float32; autograd takes the input-gradient through the same
bfloat16 linears (on this CPU PyTorch's oneDNN runs them on AMX).

Prints one JSON line.  Weights are read with the manifest reader of
tools/ref/use_lite_torch.py (the float64 golden model); everything else
here is independent of it and of src/nn.
"""
import importlib.util
import json
import math
import os
import resource
import sys
import time

# Debian's torch does its products in OpenBLAS, which starts a thread per core
# whatever torch.set_num_threads says (hf_torch_peer.py): give it the thread
# count asked for before torch loads it.
if "OPENBLAS_NUM_THREADS" not in os.environ:
    os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[5] if len(sys.argv) > 5 else "1"

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.path.join(HERE, "..", "..", "tools", "ref", "use_lite_torch.py")


def load_reference_module():
    spec = importlib.util.spec_from_file_location("use_lite_torch", REF)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Encoder:
    """The use-lite forward in float32 torch ops (model summary: src/nn/models/use_lite/use_lite.h)."""

    def __init__(self, model_dir, bf16=False):
        ref = load_reference_module()
        self.bf16 = bf16
        t = ref.read_manifest(model_dir)

        def f32(name):
            return torch.from_numpy(np.ascontiguousarray(t[name], dtype=np.float32))

        def num(name):
            return float(t[name].reshape(-1)[0])

        self.emb = f32("module/Embeddings_en")
        inv = t[ref.STACK + "Layer_0/AddTimingSignal/TimingSignal/ExpandDims_1"][0]
        pos = np.arange(256, dtype=np.float32)[:, None]
        arg = (pos * inv[None, :]).astype(np.float32)
        self.signal = torch.from_numpy(np.concatenate([np.sin(arg), np.cos(arg)], 1))
        self.ln_eps = num(ref.STACK + "Layer_1/TransformerLayer/FFN/layer_prepostprocess/layer_norm/Cast/x")
        self.l2_eps = num("module_apply_default/Encoder_en/hidden_layers/l2_normalize/Maximum/y")
        self.heads = 4
        self.layers = []
        for l in range(2):
            E = ref.ENC + f"Layer_{l}/TransformerLayer/"
            M = ref.MOD + f"Layer_{l}/TransformerLayer/MultiheadAttention/"
            S = ref.STACK + f"Layer_{l}/TransformerLayer/"
            lp = "layer_prepostprocess/layer_norm/"
            L = {
                "ln1": (f32(E + lp + "layer_norm_scale/ConcatPartitions/concat"),
                        f32(E + lp + "layer_norm_bias/ConcatPartitions/concat")),
                # F.linear wants (out, in): transpose once at load
                "qkv": (f32(M + "qkv_transform_single/kernel/part_0")[0, 0].t().contiguous(),
                        f32(E + "MultiheadAttention/qkv_transform_single/bias/ConcatPartitions/concat")),
                "o": (f32(M + "output_transform_single/kernel/part_0")[0, 0].t().contiguous(),
                      f32(E + "MultiheadAttention/output_transform_single/bias/ConcatPartitions/concat")),
                "ln2": (f32(E + "FFN/" + lp + "layer_norm_scale/ConcatPartitions/concat"),
                        f32(E + "FFN/" + lp + "layer_norm_bias/ConcatPartitions/concat")),
                "fc1": (f32(S + "FFN/conv1/Tensordot/Reshape_1").t().contiguous(),
                        f32(E + "FFN/conv1/bias/ConcatPartitions/concat")),
                "fc2": (f32(S + "FFN/conv2/Tensordot/Reshape_1").t().contiguous(),
                        f32(E + "FFN/conv2/bias/ConcatPartitions/concat")),
                "scale": num(S + "MultiheadAttention/mul/y"),
            }
            if l == 0:
                L["res"] = (f32(E + "dense/kernel/ConcatPartitions/concat").t().contiguous(),
                            f32(E + "dense/bias/ConcatPartitions/concat"))
            self.layers.append(L)
        self.tanh = (f32("module/Encoder_en/hidden_layers/tanh_layer_0/weights").t().contiguous(),
                     f32("module/Encoder_en/hidden_layers/tanh_layer_0/bias"))
        if bf16:
            for L in self.layers:
                for key in ("qkv", "o", "fc1", "fc2", "res"):
                    if key in L:
                        L[key] = (L[key][0].bfloat16(), L[key][1])
            self.tanh = (self.tanh[0].bfloat16(), self.tanh[1])

    def dense(self, x, wb):
        if self.bf16:
            return F.linear(x.bfloat16(), wb[0]).float() + wb[1]
        return F.linear(x, *wb)

    def attention(self, a, key_bias, L):
        B, T, d = a.shape
        hs = d // self.heads
        q, k, v = self.dense(a, L["qkv"]).view(B, T, 3, self.heads, hs).permute(2, 0, 3, 1, 4)
        p = torch.softmax(torch.baddbmm(key_bias.expand(B * self.heads, T, T),
                                        q.reshape(-1, T, hs), k.reshape(-1, T, hs).transpose(1, 2),
                                        alpha=L["scale"]), dim=-1)
        y = torch.bmm(p, v.reshape(-1, T, hs)).view(B, self.heads, T, hs).transpose(1, 2)
        return self.dense(y.reshape(B, T, d), L["o"])

    def forward(self, x, mask, pool_mask=None):
        """x (B, T, 256), mask (B, T) float 0/1 -> (B, 512) unit vectors."""
        B, T, _ = x.shape
        key_bias = ((1.0 - mask) * -1e9).repeat_interleave(self.heads, 0)[:, None, :]
        h = 2.0 * x + self.signal[:T]
        for L in self.layers:
            att = self.attention(F.layer_norm(h, (h.shape[-1],), *L["ln1"], self.ln_eps), key_bias, L)
            h = att + (self.dense(h, L["res"]) if "res" in L else h)
            u = F.relu(self.dense(F.layer_norm(h, (512,), *L["ln2"], self.ln_eps), L["fc1"]))
            h = h + self.dense(u, L["fc2"])
        pm = mask if pool_mask is None else pool_mask
        pooled = (h * pm[..., None]).sum(1) / pm.sum(1, keepdim=True).clamp(min=1.0)
        y = torch.tanh(self.dense(pooled, self.tanh))
        return y / torch.sqrt((y * y).sum(1, keepdim=True).clamp(min=self.l2_eps))


class DePT:
    """Prompt P (m x d), low-rank A (s x r), B (r x d), scale alpha / sqrt(r), and the head."""

    def __init__(self, enc, n_classes, m=60, budget=100, s=128, alpha=8.0, trained_like=True):
        d = enc.emb.shape[1]
        self.m = m
        self.r = min((budget * d - m * d) // (s + d), s, d) if m < budget else 0
        g = torch.Generator().manual_seed(42)
        ids = torch.tensor([6 + (i * 37) % 5000 for i in range(m)])
        self.P = enc.emb[ids].clone().requires_grad_(m > 0)
        bound = 1.0 / math.sqrt(max(self.r, 1))
        self.A = ((torch.rand(s, self.r, generator=g) * 2 - 1) * bound).requires_grad_(self.r > 0)
        B = torch.zeros(self.r, d)
        if trained_like:   # B = 0 at init; a trained B is not, and costs the same
            B = 1e-3 * (torch.arange(self.r * d) % 13 - 6).float().view(self.r, d)
        self.B = B.requires_grad_(self.r > 0)
        self.scale = alpha / math.sqrt(self.r) if self.r > 0 else 0.0
        self.W = torch.zeros(n_classes, 512, requires_grad=True)
        self.b = torch.zeros(n_classes, requires_grad=True)

    def params(self):
        return sum(t.numel() for t in (self.P, self.A, self.B, self.W, self.b) if t.requires_grad)

    def inputs(self, E, mask):
        """X = [P; E + scale (A B)[0:n]], its mask and the pooled rows' mask: the text's,
        as dept_train's adapters pool (docs/design.md section 1)."""
        Bsz, n, _ = E.shape
        if self.r > 0:
            E = E + self.scale * (self.A[:n] @ self.B)
        X = torch.cat([self.P.expand(Bsz, -1, -1), E], 1)
        return X, torch.cat([torch.ones(Bsz, self.m), mask], 1), \
            torch.cat([torch.zeros(Bsz, self.m), mask], 1)


def read_ids(path):
    labels, rows = [], []
    with open(path) as f:
        for line in f:
            v = [int(t) for t in line.split()]
            labels.append(v[0])
            rows.append(v[1:])
    return labels, rows


def batch_of(enc, rows):
    T = max(max(len(r) for r in rows), 1)
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    mask = torch.zeros(len(rows), T)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1.0
    return enc.emb[ids] * mask[..., None], mask


def peak_rss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_infer(enc, rows, batch, adapter):
    n_tokens = sum(len(r) for r in rows) + (adapter.m * len(rows) if adapter else 0)
    with torch.inference_mode():
        for warm in (True, False):
            t0 = time.perf_counter()
            for i in range(0, len(rows) if not warm else batch, batch):
                E, mask = batch_of(enc, rows[i:i + batch])
                if adapter:
                    X, xm, pm = adapter.inputs(E, mask)
                    logits = F.linear(enc.forward(X, xm, pm), adapter.W, adapter.b)
                    torch.softmax(logits, -1)
                else:
                    enc.forward(E, mask)
            secs = time.perf_counter() - t0
    return {"bench": "predict" if adapter else "embed", "method": "dept" if adapter else "none",
            "batch": batch, "texts": len(rows), "tokens": n_tokens, "seconds": round(secs, 4),
            "texts_per_second": round(len(rows) / secs, 1),
            "tokens_per_second": round(n_tokens / secs), "peak_rss_kb": peak_rss_kb()}


def run_train(enc, labels, rows, batch, steps, method):
    n_classes = max(labels) + 1
    ad = DePT(enc, n_classes, m=100, budget=100) if method == "pt" else DePT(enc, n_classes)
    groups = [{"params": [ad.P], "lr": 3e-2}, {"params": [ad.W, ad.b], "lr": 1e-2}]
    if ad.r > 0:
        groups.append({"params": [ad.A, ad.B], "lr": 1e-3})
    opt = torch.optim.AdamW(groups, weight_decay=1e-5)
    trainable = [p for g in groups for p in g["params"]]
    tokens, loss = 0, None
    for step in range(steps + 2):
        if step == 2:
            t0, tokens = time.perf_counter(), 0
        first = (step * batch) % len(rows)
        idx = [(first + b) % len(rows) for b in range(batch)]
        E, mask = batch_of(enc, [rows[i] for i in idx])
        y = torch.tensor([labels[i] for i in idx])
        tokens += int(mask.sum()) + ad.m * batch
        X, xm, pm = ad.inputs(E, mask)
        loss = F.cross_entropy(F.linear(enc.forward(X, xm, pm), ad.W, ad.b), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
    secs = time.perf_counter() - t0
    return {"bench": "train", "method": method, "batch": batch, "steps": steps,
            "precision": "bfloat16" if enc.bf16 else "float32",
            "prompt_rows": ad.m, "rank": ad.r, "trainable_params": ad.params(), "tokens": tokens,
            "seconds": round(secs, 4), "ms_per_step": round(secs / steps * 1e3, 2),
            "tokens_per_second": round(tokens / secs), "last_loss": round(float(loss), 4),
            "peak_rss_kb": peak_rss_kb()}


def main():
    cmd, model_dir, ids_path = sys.argv[1:4]
    batch, threads = int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    bf16 = os.environ.get("PEER_PRECISION") == "bfloat16"
    enc = Encoder(model_dir, bf16)
    labels, rows = read_ids(ids_path)
    if cmd == "embed":
        out = run_infer(enc, rows, batch, None)
    elif cmd == "predict":
        out = run_infer(enc, rows, batch, DePT(enc, max(labels) + 1))
    elif cmd == "train":
        out = run_train(enc, labels, rows, batch, int(sys.argv[6]),
                        sys.argv[7] if len(sys.argv) > 7 else "dept")
    elif cmd == "vectors":   # the first BATCH sentence vectors, for the agreement check
        with torch.inference_mode():
            E, mask = batch_of(enc, rows[:batch])
            print(json.dumps(enc.forward(E, mask).tolist()))
        return
    else:
        raise SystemExit("unknown command " + cmd)
    out.update({"peer": "pytorch", "runtime": "torch " + torch.__version__,
                "precision": "bfloat16" if bf16 else "float32",
                "threads": torch.get_num_threads()})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
