#!/usr/bin/env bash
# bench/peers/onnx_agreement.sh OUT_DIR MODEL_DIR TSV IDS N: the ONNX Runtime
# peer's outputs against ours, one JSON line.  max_abs_diff: the embed
# graph's first N sentence vectors (one padded batch) against dept-bench's
# on the same texts; predict_max_abs_diff: the predict graph's encoder
# output on [P; E + AB] against onnx_export.py's float64 numpy reference
# with the same adapter (ours and the PyTorch peer draw their own A).
# Both should be float-rounding small (< 1e-4; 1e-6 is typical).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1 model=$2 tsv=$3 ids=$4 n=$5
./dept-bench vectors --texts "$tsv" --limit "$n" >"$out/vectors_ours.json"
node bench/peers/onnx_peer.mjs vectors "$out/onnx" "$ids" "$n" 1 >"$out/vectors_onnx.json"
node bench/peers/onnx_peer.mjs vectors-predict "$out/onnx" "$ids" "$n" 1 >"$out/vectors_onnx_predict.json"
/usr/bin/python3 bench/peers/onnx_export.py reference predict "$model" "$out/onnx" "$ids" "$n" \
	>"$out/vectors_numpy_predict.json"
python3 -c '
import json, sys
a, b, c, d = (json.load(open(p)) for p in sys.argv[1:5])
diff = lambda u, v: max(abs(x - y) for r, s in zip(u, v) for x, y in zip(r, s))
assert len(a) == len(b) and len(c) == len(d)
print(json.dumps({"bench": "onnx_agreement", "peer": "onnxruntime", "texts": len(a),
                  "max_abs_diff": diff(a, b), "predict_max_abs_diff": diff(c, d)}))' \
	"$out/vectors_ours.json" "$out/vectors_onnx.json" "$out/vectors_numpy_predict.json" \
	"$out/vectors_onnx_predict.json"
