#!/usr/bin/python3
"""
hf_torch_peer.py: the PyTorch peer of bench/run --models -- BERT, RoBERTa,
DistilBERT (MiniLM is a BERT) and T5 written in plain torch ops the way the
transformers modeling files compute them (post-LN encoders with erf GELU;
T5 with RMS norms, relative position buckets, ReLU FFN, a tied, rescaled
output layer), reading the same Hugging Face directory as ours.  transformers
itself is not installed here (Debian ships python3-torch 1.13, no
transformers), so this mirrors its math; it is the code a user would run
through transformers minus its Python overhead per module.

  hf_torch_peer.py load    MODEL_DIR                       open the weights (numpy mmap)
  hf_torch_peer.py embed   MODEL_DIR IDS BATCH THREADS     sentence vectors
  hf_torch_peer.py predict MODEL_DIR IDS BATCH THREADS LABEL_IDS
  hf_torch_peer.py train   MODEL_DIR IDS BATCH THREADS STEPS LABEL_IDS
  hf_torch_peer.py vectors MODEL_DIR IDS N 1               the first N sentence vectors (JSON)

IDS is `dept-bench tokenize --model MODEL_DIR` output (label, then the token
ids of one text, a line each: the same tokens as ours, tokenization outside
the timing; PEER_WARMUP texts, default one batch, run untimed first);
LABEL_IDS the same for the class names (T5's label strings,
"</s>" included), ignored for the encoders.  Each batch is padded to its
longest row and padded keys are masked.  The sentence vector is what ours
returns: the pooler (tanh) on the first row where the checkpoint has one and
no sentence-transformers pooling file says otherwise, else the mean over the
valid rows; T5's is the mean of the encoder output.

The adapter is dept_train's default DePT: m = 60 prompt rows, rank r from the
budget of PT l = 100 at s = 128, X = [P; E + alpha/sqrt(r) (A B)[0:n]]; prompt
rows take positions as the text does (BERT's absolute positions, T5's
relative buckets).  Encoders: a linear head on the pooled vector, softmax.
T5 (the DePT paper's setting): text-to-text, prediction ranks the label
strings by their teacher-forced log-likelihood (one decoder sequence per
text and label), training takes the mean cross-entropy of each row's label
string.  Training: only P, A, B (and the encoders' head) require gradients;
forward, loss, backward, clipping, AdamW.  Under torch.inference_mode for
prediction.  PEER_PRECISION=bfloat16: the dense layers in bfloat16 (weights
cast once, inputs per call), the rest float32, as bench/peers/torch_peer.py.

Prints one JSON line; cpu_seconds is the process's CPU time over the timed part.
"""
import json
import math
import os
import resource
import sys
import time

# Debian's torch does its products in OpenBLAS, which starts a thread per core
# whatever torch.set_num_threads says: at "1 thread" the peer's sgemm ran on
# both cores (its second thread at 18% of a core, ps -L).  Give OpenBLAS the
# thread count asked for, as ours does, before torch loads it.
if "OPENBLAS_NUM_THREADS" not in os.environ:
    os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[5] if len(sys.argv) > 5 else "1"

import numpy as np
import torch
import torch.nn.functional as F

from safetensors_np import read_safetensors as read_safetensors_np

M_PROMPT, BUDGET, S_MAX, ALPHA = 60, 100, 128, 8.0


def rss_kb():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[k.lower() + "_kb"] = int(v.split()[0])
    return out


def read_safetensors(path):
    """name -> float32 tensor over safetensors_np's arrays (F32 ones without a copy)."""
    import warnings
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # torch warns that the memory map is read-only
        for name, arr in read_safetensors_np(path).items():
            out[name] = torch.from_numpy(arr)
    return out


class Dense:
    bf16 = False

    def __init__(self, w, b=None):
        self.w = w.bfloat16() if Dense.bf16 else w
        self.b = b

    def __call__(self, x):
        if Dense.bf16:
            y = F.linear(x.bfloat16(), self.w).float()
            return y + self.b if self.b is not None else y
        return F.linear(x, self.w, self.b)


def attention(x, kv, q, k, v, o, heads, key_bias, scale, pos_bias=None):
    B, T, _ = x.shape
    Tk = kv.shape[1]
    qh = q(x).view(B, T, heads, -1).transpose(1, 2)
    kh = k(kv).view(B, Tk, heads, -1).transpose(1, 2)
    vh = v(kv).view(B, Tk, heads, -1).transpose(1, 2)
    s = torch.matmul(qh, kh.transpose(-1, -2))
    if scale != 1.0:
        s = s * scale
    s = s + key_bias
    if pos_bias is not None:
        s = s + pos_bias
    p = torch.softmax(s, -1)
    y = torch.matmul(p, vh).transpose(1, 2).reshape(B, T, -1)
    return o(y)


class Encoder:
    """BERT, RoBERTa, DistilBERT: word embeddings in, pooled vector out."""

    def __init__(self, model_dir, cfg, t):
        self.family = cfg["model_type"]
        distil = self.family == "distilbert"
        self.H = cfg["dim"] if distil else cfg["hidden_size"]
        self.heads = cfg["n_heads"] if distil else cfg["num_attention_heads"]
        self.eps = 1e-12 if distil else cfg["layer_norm_eps"]
        L = cfg["n_layers"] if distil else cfg["num_hidden_layers"]
        self.word = t["embeddings.word_embeddings.weight"]
        self.pos = t["embeddings.position_embeddings.weight"]
        self.type0 = None if distil else t["embeddings.token_type_embeddings.weight"][0]
        self.pos_offset = cfg["pad_token_id"] + 1 if self.family in ("roberta", "xlm-roberta") else 0
        self.emb_ln = (t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
        self.layers = []
        for l in range(L):
            if distil:
                p = f"transformer.layer.{l}."
                g = lambda n: (t[p + n + ".weight"], t[p + n + ".bias"])
                self.layers.append({"q": Dense(*g("attention.q_lin")), "k": Dense(*g("attention.k_lin")),
                                    "v": Dense(*g("attention.v_lin")), "o": Dense(*g("attention.out_lin")),
                                    "ln1": g("sa_layer_norm"), "fc1": Dense(*g("ffn.lin1")),
                                    "fc2": Dense(*g("ffn.lin2")), "ln2": g("output_layer_norm")})
            else:
                p = f"encoder.layer.{l}."
                g = lambda n: (t[p + n + ".weight"], t[p + n + ".bias"])
                self.layers.append({"q": Dense(*g("attention.self.query")), "k": Dense(*g("attention.self.key")),
                                    "v": Dense(*g("attention.self.value")),
                                    "o": Dense(*g("attention.output.dense")), "ln1": g("attention.output.LayerNorm"),
                                    "fc1": Dense(*g("intermediate.dense")), "fc2": Dense(*g("output.dense")),
                                    "ln2": g("output.LayerNorm")})
        pooling = os.path.join(model_dir, "1_Pooling", "config.json")
        mean = os.path.exists(pooling) and json.load(open(pooling)).get("pooling_mode_mean_tokens")
        self.pooler = None
        if "pooler.dense.weight" in t and not mean:
            self.pooler = Dense(t["pooler.dense.weight"], t["pooler.dense.bias"])
        self.d_out = self.H

    def embed(self, ids):
        return self.word[ids]

    def forward(self, x, mask):
        B, T, H = x.shape
        h = x + self.pos[self.pos_offset:self.pos_offset + T]
        if self.type0 is not None:
            h = h + self.type0
        h = F.layer_norm(h, (H,), *self.emb_ln, self.eps)
        key_bias = ((1.0 - mask) * torch.finfo(torch.float32).min)[:, None, None, :]
        scale = 1.0 / math.sqrt(H // self.heads)
        for L in self.layers:
            a = attention(h, h, L["q"], L["k"], L["v"], L["o"], self.heads, key_bias, scale)
            h = F.layer_norm(a + h, (H,), *L["ln1"], self.eps)
            f = L["fc2"](F.gelu(L["fc1"](h)))
            h = F.layer_norm(f + h, (H,), *L["ln2"], self.eps)
        if self.pooler is not None:
            return torch.tanh(self.pooler(h[:, 0]))
        return (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)


def t5_bucket(rel, bidirectional, num_buckets, max_distance):
    """transformers' T5Attention._relative_position_bucket."""
    buckets = torch.zeros_like(rel)
    if bidirectional:
        num_buckets //= 2
        buckets += (rel > 0).long() * num_buckets
        rel = rel.abs()
    else:
        rel = -torch.min(rel, torch.zeros_like(rel))
    max_exact = num_buckets // 2
    small = rel < max_exact
    large = max_exact + (torch.log(rel.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).long()
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return buckets + torch.where(small, rel, large)


class T5:
    def __init__(self, cfg, t):
        self.d, self.heads = cfg["d_model"], cfg["num_heads"]
        self.eps = cfg["layer_norm_epsilon"]
        self.nb, self.maxd = cfg["relative_attention_num_buckets"], cfg["relative_attention_max_distance"]
        self.shared = t["shared.weight"]
        self.lm = Dense(self.shared)
        self.blocks = {}
        for side, L in (("encoder", cfg["num_layers"]), ("decoder", cfg["num_decoder_layers"])):
            blocks = []
            for l in range(L):
                p = f"{side}.block.{l}.layer."
                b = {"sa": [Dense(t[p + f"0.SelfAttention.{x}.weight"]) for x in "qkvo"],
                     "ln0": t[p + "0.layer_norm.weight"]}
                ff = 1
                if side == "decoder":
                    b["ca"] = [Dense(t[p + f"1.EncDecAttention.{x}.weight"]) for x in "qkvo"]
                    b["ln1"] = t[p + "1.layer_norm.weight"]
                    ff = 2
                b["wi"] = Dense(t[p + f"{ff}.DenseReluDense.wi.weight"])
                b["wo"] = Dense(t[p + f"{ff}.DenseReluDense.wo.weight"])
                b["lnf"] = t[p + f"{ff}.layer_norm.weight"]
                blocks.append(b)
            self.blocks[side] = blocks
            setattr(self, side + "_rel", t[f"{side}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"])
            setattr(self, side + "_final", t[f"{side}.final_layer_norm.weight"])
        self.d_out = self.d

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def pos_bias(self, Tq, Tk, bidirectional, table):
        rel = torch.arange(Tk)[None, :] - torch.arange(Tq)[:, None]
        return table[t5_bucket(rel, bidirectional, self.nb, self.maxd)].permute(2, 0, 1)[None]

    def encode(self, x, mask):
        T = x.shape[1]
        key_bias = ((1.0 - mask) * torch.finfo(torch.float32).min)[:, None, None, :]
        pb = self.pos_bias(T, T, True, self.encoder_rel)
        h = x
        for b in self.blocks["encoder"]:
            n = self.rms(h, b["ln0"])
            h = h + attention(n, n, *b["sa"], self.heads, key_bias, 1.0, pb)
            h = h + b["wo"](F.relu(b["wi"](self.rms(h, b["lnf"]))))
        return self.rms(h, self.encoder_final)

    def embed(self, ids):
        return self.shared[ids]

    def forward(self, x, mask):
        e = self.encode(x, mask)
        return (e * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)

    def decode_logprobs(self, enc, enc_mask, labels):
        """log p(labels[t] | labels[<t], enc) for each sequence; labels (N, L) padded with -1."""
        N, L = labels.shape
        valid = labels >= 0
        lab = labels.clamp(min=0)
        dec_in = torch.cat([torch.zeros(N, 1, dtype=torch.long), lab[:, :-1]], 1)
        h = self.shared[dec_in]
        causal = torch.triu(torch.full((L, L), torch.finfo(torch.float32).min), 1)[None, None]
        pb = self.pos_bias(L, L, False, self.decoder_rel) + causal
        cross_bias = ((1.0 - enc_mask) * torch.finfo(torch.float32).min)[:, None, None, :]
        zero = torch.zeros(1, 1, 1, L)
        for b in self.blocks["decoder"]:
            n = self.rms(h, b["ln0"])
            h = h + attention(n, n, *b["sa"], self.heads, zero, 1.0, pb)
            n = self.rms(h, b["ln1"])
            h = h + attention(n, enc, *b["ca"], self.heads, cross_bias, 1.0)
            h = h + b["wo"](F.relu(b["wi"](self.rms(h, b["lnf"]))))
        h = self.rms(h, self.decoder_final) * (self.d ** -0.5)
        lp = torch.log_softmax(self.lm(h), -1).gather(-1, lab[..., None])[..., 0]
        return lp * valid, valid


class DePT:
    def __init__(self, model, d, n_classes, text_head):
        self.m = M_PROMPT
        self.r = min((BUDGET * d - self.m * d) // (S_MAX + d), S_MAX, d)
        g = torch.Generator().manual_seed(42)
        ids = torch.tensor([6 + (i * 37) % 5000 for i in range(self.m)])
        self.P = model.embed(ids).clone().requires_grad_(True)
        bound = 1.0 / math.sqrt(self.r)
        self.A = ((torch.rand(S_MAX, self.r, generator=g) * 2 - 1) * bound).requires_grad_(True)
        self.B = (1e-3 * (torch.arange(self.r * d) % 13 - 6).float().view(self.r, d)).requires_grad_(True)
        self.scale = ALPHA / math.sqrt(self.r)
        self.W = self.b = None
        if not text_head:
            self.W = torch.zeros(n_classes, model.d_out, requires_grad=True)
            self.b = torch.zeros(n_classes, requires_grad=True)

    def inputs(self, E, mask):
        Bsz, n, _ = E.shape
        E = E + self.scale * (self.A[:n] @ self.B)
        X = torch.cat([self.P.expand(Bsz, -1, -1), E], 1)
        return X, torch.cat([torch.ones(Bsz, self.m), mask], 1)

    def groups(self):
        g = [{"params": [self.P], "lr": 3e-2}, {"params": [self.A, self.B], "lr": 1e-3}]
        if self.W is not None:
            g.append({"params": [self.W, self.b], "lr": 1e-2})
        return g

    def params(self):
        return sum(p.numel() for g in self.groups() for p in g["params"])


def read_ids(path):
    labels, rows = [], []
    with open(path) as f:
        for line in f:
            v = [int(x) for x in line.split()]
            labels.append(v[0])
            rows.append(v[1:])
    return labels, rows


def padded(rows, fill=0):
    T = max(max(len(r) for r in rows), 1)
    ids = torch.full((len(rows), T), fill, dtype=torch.long)
    mask = torch.zeros(len(rows), T)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1.0
    return ids, mask


def text_scores(model, X, xm, cand):
    """(B, C) sums of label-token log-probabilities, one decoder sequence per row and label."""
    B, C = X.shape[0], cand.shape[0]
    enc = model.encode(X, xm)
    enc = enc.repeat_interleave(C, 0)
    em = xm.repeat_interleave(C, 0)
    lp, _ = model.decode_logprobs(enc, em, cand.repeat(B, 1))
    return lp.sum(1).view(B, C)


def run_infer(model, rows, batch, ad, cand, text_head, warmup):
    n_tokens = sum(len(r) for r in rows) + (ad.m * len(rows) if ad else 0)
    with torch.inference_mode():
        for warm in (True, False):
            t0, c0 = time.perf_counter(), time.process_time()
            n = min(warmup, len(rows)) if warm else len(rows)
            for i in range(0, n, batch):
                ids, mask = padded(rows[i:min(i + batch, n)])
                E = model.embed(ids) * mask[..., None]
                if ad is None:
                    model.forward(E, mask)
                    continue
                X, xm = ad.inputs(E, mask)
                scores = text_scores(model, X, xm, cand) if text_head else \
                    F.linear(model.forward(X, xm), ad.W, ad.b)
                torch.softmax(scores, -1)
            secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"bench": "predict" if ad else "embed", "method": "dept" if ad else "none", "batch": batch,
            "texts": len(rows), "tokens": n_tokens, "seconds": round(secs, 4), "cpu_seconds": round(cpu, 4),
            "warmup_texts": warmup,
            "texts_per_second": round(len(rows) / secs, 2), "tokens_per_second": round(n_tokens / secs)}


def run_train(model, labels, rows, batch, steps, ad, cand, text_head):
    opt = torch.optim.AdamW(ad.groups(), weight_decay=1e-5)
    trainable = [p for g in ad.groups() for p in g["params"]]
    tokens, loss = 0, None
    for step in range(steps + 2):
        if step == 2:
            t0, c0, tokens = time.perf_counter(), time.process_time(), 0
        first = (step * batch) % len(rows)
        idx = [(first + b) % len(rows) for b in range(batch)]
        ids, mask = padded([rows[i] for i in idx])
        y = torch.tensor([labels[i] for i in idx])
        tokens += int(mask.sum()) + ad.m * batch
        X, xm = ad.inputs(model.embed(ids) * mask[..., None], mask)
        if text_head:
            lp, valid = model.decode_logprobs(model.encode(X, xm), xm, cand[y])
            loss = -lp.sum() / valid.sum()
        else:
            loss = F.cross_entropy(F.linear(model.forward(X, xm), ad.W, ad.b), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"bench": "train", "method": "dept", "batch": batch, "steps": steps, "prompt_rows": ad.m,
            "rank": ad.r, "trainable_params": ad.params(), "tokens": tokens, "seconds": round(secs, 4),
            "cpu_seconds": round(cpu, 4),
            "ms_per_step": round(secs / steps * 1e3, 2), "tokens_per_second": round(tokens / secs),
            "last_loss": round(float(loss), 4)}


def open_model(model_dir):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    t = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    model = T5(cfg, t) if cfg["model_type"] == "t5" else Encoder(model_dir, cfg, t)
    return cfg, model


def main():
    cmd, model_dir = sys.argv[1:3]
    Dense.bf16 = os.environ.get("PEER_PRECISION") == "bfloat16"
    if cmd == "load":
        t0 = time.perf_counter()
        torch.set_num_threads(1)
        cfg, model = open_model(model_dir)
        out = {"bench": "load", "open_ms": round((time.perf_counter() - t0) * 1e3, 2)}
        out.update({"open_" + k: v for k, v in rss_kb().items()})
    else:
        ids_path, batch, threads = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        warmup = int(os.environ.get("PEER_WARMUP", batch))
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        cfg, model = open_model(model_dir)
        text_head = cfg["model_type"] == "t5"
        labels, rows = read_ids(ids_path)
        cand = None
        if cmd in ("predict", "train") and text_head:
            _, cand_rows = read_ids(sys.argv[7 if cmd == "train" else 6])
            cand, _ = padded(cand_rows, -1)
        d = model.d if text_head else model.H
        if cmd == "vectors":    # the first BATCH sentence vectors, for the agreement check
            with torch.inference_mode():
                ids, mask = padded(rows[:batch])
                print(json.dumps(model.forward(model.embed(ids) * mask[..., None], mask).tolist()))
            return
        if cmd == "embed":
            out = run_infer(model, rows, batch, None, None, False, warmup)
        elif cmd == "predict":
            out = run_infer(model, rows, batch, DePT(model, d, max(labels) + 1, text_head), cand, text_head,
                            warmup)
        elif cmd == "train":
            out = run_train(model, labels, rows, batch, int(sys.argv[6]),
                            DePT(model, d, max(labels) + 1, text_head), cand, text_head)
        else:
            raise SystemExit("unknown command " + cmd)
        out["head"] = "text" if text_head else "linear"
    out.update({"peer": "pytorch", "runtime": "torch " + torch.__version__, "family": cfg["model_type"],
                "precision": "bfloat16" if Dense.bf16 else "float32", "threads": torch.get_num_threads(),
                "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
