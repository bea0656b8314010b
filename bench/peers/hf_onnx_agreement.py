#!/usr/bin/python3
"""
hf_onnx_agreement.py MODEL_DIR ONNX_DIR [N]: the ONNX Runtime peer's
outputs (hf_onnx_export.py's graphs run by hf_onnx_peer.mjs) against ours
and the PyTorch peer, on N texts (default 8: half of MODEL_DIR/texts20, half
of texts64, one padded batch, so that padding and masking are exercised).
Prints one JSON line and exits 1 (with a message on stderr) when a
difference is above BOUND relative to the largest |value| compared.

  embed:   ORT's sentence vectors against `dept-bench vectors` (ours), and
           against hf_torch_peer.py's;
  predict: the predict graph's pooled vectors and class probabilities
           against hf_torch_peer.py's Encoder and DePT.inputs with the
           graph's own adapter (dept_adapter.npz: P, A, B, scale, head),
           since ours and the peers draw their own A (dept-bench predict
           prints no outputs; the peer's embed is itself checked against ours
           here and by bench/run --models).

Run from the repository root (bench/models/run.sh does); needs ./dept-bench,
node with onnxruntime-node under bench/peers, python3-torch.
"""
import json
import os
import subprocess
import sys
import tempfile

BOUND = 1e-3    # max |difference| / max |value|

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np    # noqa: E402
import torch    # noqa: E402
import hf_torch_peer as peer    # noqa: E402


def run_json(cmd):
    return json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE).stdout)


def lines(path):
    with open(path) as f:
        return [l for l in f.read().split("\n") if l.strip()]


def diff(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max()), float(max(np.abs(a).max(), np.abs(b).max()))


def main():
    model_dir, onnx_dir = sys.argv[1:3]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    name = os.path.basename(os.path.normpath(model_dir))
    tsv20, tsv64 = lines(os.path.join(model_dir, "texts20.tsv")), lines(os.path.join(model_dir, "texts64.tsv"))
    ids20, ids64 = lines(os.path.join(model_dir, "texts20.ids")), lines(os.path.join(model_dir, "texts64.ids"))
    h = n // 2
    with tempfile.TemporaryDirectory() as tmp:
        tsv, ids = os.path.join(tmp, "texts.tsv"), os.path.join(tmp, "texts.ids")
        with open(tsv, "w") as f:
            f.write("\n".join([tsv20[0]] + tsv20[1:1 + h] + tsv64[1:1 + n - h]) + "\n")
        with open(ids, "w") as f:
            f.write("\n".join(ids20[:h] + ids64[:n - h]) + "\n")
        ours = run_json(["./dept-bench", "vectors", "--model", model_dir, "--texts", tsv, "--limit", str(n),
                         "--max-length", "128"])
        ort_vec = run_json(["node", "bench/peers/hf_onnx_peer.mjs", "vectors", onnx_dir, ids, str(n), "1"])
        ort_pred = run_json(["node", "bench/peers/hf_onnx_peer.mjs", "outputs-predict", onnx_dir, ids, str(n), "1"])
        _, rows = peer.read_ids(ids)

    torch.set_num_threads(1)
    cfg, model = peer.open_model(model_dir)
    ad_np = dict(np.load(os.path.join(onnx_dir, "dept_adapter.npz")))
    with torch.inference_mode():
        tid, mask = peer.padded(rows)
        E = model.embed(tid) * mask[..., None]
        torch_vec = model.forward(E, mask)
        ad = peer.DePT(model, model.H, 2, False)
        ad.P, ad.A, ad.B = (torch.from_numpy(ad_np[k]) for k in ("P", "A", "B"))
        ad.scale = float(ad_np["scale"])
        assert ad.m == int(ad_np["m"]) and ad.r == int(ad_np["r"]), "adapter shapes differ from the peer's"
        X, xm = ad.inputs(E, mask)
        pv = model.forward(X, xm)
        probs = torch.softmax(pv @ torch.from_numpy(ad_np["W"]).T + torch.from_numpy(ad_np["b"]), -1)

    checks = {
        "embed_vs_ours": diff(ort_vec, ours),
        "embed_vs_pytorch": diff(ort_vec, torch_vec.numpy()),
        "pytorch_embed_vs_ours": diff(torch_vec.numpy(), ours),
        "predict_vectors_vs_pytorch": diff(ort_pred["vectors"], pv.numpy()),
        "predict_probs_vs_pytorch": diff(ort_pred["probs"], probs.numpy()),
    }
    out = {"bench": "onnx_agreement", "model": name, "peer": "onnxruntime", "texts": n,
           "text_tokens": sorted({len(r) for r in rows}), "bound_relative": BOUND}
    bad = []
    for k, (d, scale) in checks.items():
        out[k + "_max_abs_diff"] = d
        out[k + "_max_abs_value"] = scale
        if d > BOUND * max(scale, 1e-30):
            bad.append(f"{k}: max |difference| {d:.3e} > {BOUND} x {scale:.3e}")
    out["ok"] = not bad
    print(json.dumps(out))
    if bad:
        print(f"hf_onnx_agreement.py: {name}: ONNX Runtime DISAGREES: " + "; ".join(bad), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
