#!/usr/bin/env bash
# bench/onnx.sh: the short ONNX Runtime subset of bench/run (issue 16 item 4)
# -- ours (dept-bench) beside ONNX Runtime (bench/peers/onnx_peer.mjs) and
# PyTorch (bench/peers/torch_peer.py, when python3-torch is installed) on
# the same weights and token ids: sentence embedding and DePT prediction,
# float32, at batch 1 and 32.  Checks the ONNX graphs' outputs first
# (max |difference| against ours, and of the predict graph against a
# float64 numpy reference), then prints a table; every figure goes to
# build/bench/onnx_results.jsonl.  Rerunnable; builds dept-bench but
# installs nothing of the extension and starts no server.
#
#   bench/onnx.sh          (also: bench/run --onnx-only)
#
# Knobs: BENCH_TEXTS (1000 texts to embed), BENCH_PREDICT_TEXTS (300),
# BENCH_THREADS ("1"; "1 2" for both), BENCH_BATCHES ("1 32"),
# BENCH_REPEAT (1: each figure is the best of this many runs, engines
# interleaved -- raise it on a loaded machine), BENCH_DATA as bench/run.
set -euo pipefail
cd "$(dirname "$0")/.."
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
texts=${BENCH_TEXTS:-1000}
predict_texts=${BENCH_PREDICT_TEXTS:-300}
threads_list=${BENCH_THREADS:-1}
batches=${BENCH_BATCHES:-"1 32"}
repeat=${BENCH_REPEAT:-1}
out=build/bench
model=build/model/use-lite
mkdir -p "$out"
results=$out/onnx_results.jsonl
: >"$results"
say() { echo "bench: $*" >&2; }
record() { tee -a "$results" >&2; }

make -s dept-bench >/dev/null
[ -f "$model/model.json" ] || { say "no $model (make model)"; exit 1; }
bench/peers/onnx_setup.sh "$out" "$model" || exit 1
torch=1
/usr/bin/python3 -c 'import torch' 2>/dev/null || { torch=0; say "PyTorch peer skipped: no python3-torch"; }

data=${BENCH_DATA:-bench/data/sst2_glue/train.tsv.gz}
gzip -dcf "$data" | awk -F'\t' -v n="$texts" 'NR == 1 { print "label\ttext"; next }
	NR <= n + 1 { sub(/\r$/, "", $2); print $1 "\t" $2 }' >"$out/onnx_texts.tsv"
./dept-bench tokenize --texts "$out/onnx_texts.tsv" >"$out/onnx_texts.ids"
head -n $((predict_texts + 1)) "$out/onnx_texts.tsv" >"$out/onnx_texts_predict.tsv"
head -n "$predict_texts" "$out/onnx_texts.ids" >"$out/onnx_texts_predict.ids"

core=$(./dept-bench peak | python3 -c 'import json,sys; print(json.load(sys.stdin)["blas_core"])')
peer_env=(env OPENBLAS_CORETYPE="$core")
printf '{"bench": "machine", "cpu": "%s", "cores": %d, "blas_core": "%s", "onnxruntime": "%s", "torch": "%s", "node": "%s", "loadavg": "%s", "date": "%s"}\n' \
	"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" "$(nproc)" "$core" \
	"$(node -p 'require("./bench/peers/node_modules/onnxruntime-node/package.json").version')" \
	"$( [ $torch = 1 ] && /usr/bin/python3 -c 'import torch; print(torch.__version__)' || echo none)" \
	"$(node --version)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(date -u +%Y-%m-%dT%H:%MZ)" | record

bench/peers/onnx_agreement.sh "$out" "$model" "$out/onnx_texts.tsv" "$out/onnx_texts.ids" 64 | record

for t in $threads_list; do
	for b in $batches; do
		for ((i = 0; i < repeat; i++)); do
			say "embed, $t thread(s), batch $b"
			./dept-bench embed --texts "$out/onnx_texts.tsv" --batch "$b" --threads "$t" | record
			node bench/peers/onnx_peer.mjs embed "$out/onnx" "$out/onnx_texts.ids" "$b" "$t" | record
			[ $torch = 0 ] || "${peer_env[@]}" /usr/bin/python3 bench/peers/torch_peer.py embed "$model" \
				"$out/onnx_texts.ids" "$b" "$t" | record
			say "predict (DePT), $t thread(s), batch $b"
			./dept-bench predict --method dept --texts "$out/onnx_texts_predict.tsv" --batch "$b" \
				--threads "$t" | record
			node bench/peers/onnx_peer.mjs predict "$out/onnx" "$out/onnx_texts_predict.ids" "$b" "$t" | record
			[ $torch = 0 ] || "${peer_env[@]}" /usr/bin/python3 bench/peers/torch_peer.py predict "$model" \
				"$out/onnx_texts_predict.ids" "$b" "$t" | record
		done
	done
done

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
m = next(r for r in rows if r["bench"] == "machine")
a = next(r for r in rows if r["bench"] == "onnx_agreement")
print(f"machine: {m['cpu']}, {m['cores']} cores, load average {m['loadavg']} at the start, "
      f"onnxruntime-node {m['onnxruntime']}, torch {m['torch']}, node {m['node']}, {m['date']}")
print(f"ONNX Runtime vs ours: max |difference| {a['max_abs_diff']:.2e} over {a['texts']} sentence "
      f"vectors; predict graph vs float64 numpy {a['predict_max_abs_diff']:.2e}")
best = {}
for r in rows:
    if r["bench"] in ("embed", "predict"):
        k = (r["bench"], r["threads"], r["batch"], r.get("peer", "ours"))
        best[k] = max(best.get(k, 0), r["texts_per_second"])
print()
print("| float32, texts/s | ours | ONNX Runtime | PyTorch | ours / ORT | ours / PyTorch |")
print("| --- | --- | --- | --- | --- | --- |")
f = lambda x: "-" if x is None else f"{x:,.1f}"
q = lambda a, b: "-" if a is None or not b else f"{a / b:.2f}x"
for bench, t, b in sorted({k[:3] for k in best}):
    o, x, p = (best.get((bench, t, b, s)) for s in ("ours", "onnxruntime", "pytorch"))
    name = "embed" if bench == "embed" else "DePT predict"
    print(f"| {name}, batch {b}, {t} thread(s) | {f(o)} | {f(x)} | {f(p)} | {q(o, x)} | {q(o, p)} |")
PY
