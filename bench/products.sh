#!/usr/bin/env bash
# bench/products.sh: each weight product the backbones run, ours (the kernel
# kernels.c picks for the shape: gemm_rows / gemm_rows_nt, else OpenBLAS)
# beside OpenBLAS's sgemm on the same data, GFLOP/s, 1 thread, at the row
# counts of the calls (1-32: a sentence; 80: DePT's 60 prompt rows and a
# sentence; 640: a batch).  Both layouts: Hugging Face's (out, in)
# (linear_forward) and use-lite's (in, out) (matmul_forward).  Twice: with
# "warm" weights (one copy, in the cache after the first call) and "cold"
# ones (16 copies taken in turn, read from memory as a real model's are).
# Each figure is the best of 5 timings; the load average is printed, since
# other jobs on the machine lower both columns.  The (out, in) layout also
# gets the packed float32 panels (gemm_packed.h, what inference runs from
# 3 rows), beside the better of the other two.  About 50 s.  Writes
# build/bench/products.jsonl and prints markdown tables.
#
#   bench/products.sh [REPEAT [THREADS]]   the best of REPEAT runs per figure (default 1),
#                                          on THREADS threads (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
repeat=${1:-1}
threads=${2:-1}
mkdir -p build/bench
make -s dept-bench >/dev/null
out=build/bench/products.jsonl
: >"$out"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for ((i = 0; i < repeat; i++)); do ./dept-bench products --threads "$threads" >>"$out"; done
python3 - "$out" "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(git rev-parse --short HEAD)" "$threads" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
best = {}
for r in rows:
    k = (r["weights"], r["layout"], r["c"], r["oc"], r["rows"])
    o, b = best.get(k, (0, 0))
    best[k] = (max(o, r["ours_gflops"]), max(b, r["openblas_gflops"]))
counts = sorted({k[4] for k in best})
print(f"Commit {sys.argv[4]}, OpenBLAS kernels {rows[0]['blas_core']}, {sys.argv[5]} thread(s); "
      f"load average {sys.argv[2]} before, {sys.argv[3]} after.\n")
print("ours / OpenBLAS (ours GFLOP/s) by rows:\n")
print("| weights | layout | C x OC | " + " | ".join(str(n) for n in counts) + " |")
print("| --- | --- | --- | " + " | ".join("---:" for _ in counts) + " |")
for weights in ("cold", "warm"):
    for layout in ("out_in", "in_out"):
        for c, oc in sorted({(k[2], k[3]) for k in best if k[:2] == (weights, layout)}):
            cells = []
            for n in counts:
                o, b = best[(weights, layout, c, oc, n)]
                cells.append(f"{o / b:.2f}x ({o:.0f})")
            print(f"| {weights} | {layout.replace('_', ', ')} | {c} x {oc} | " + " | ".join(cells) + " |")
packed = {}
for r in rows:
    if "packed_gflops" in r:
        k = (r["weights"], r["c"], r["oc"], r["rows"])
        packed[k] = max(packed.get(k, 0), r["packed_gflops"])
if packed:
    pcounts = sorted({k[3] for k in packed})
    print("\nPacked float32 panels, (out, in) layout: packed / the better of the above two "
          "(packed GFLOP/s) by rows:\n")
    print("| weights | C x OC | " + " | ".join(str(n) for n in pcounts) + " |")
    print("| --- | --- | " + " | ".join("---:" for _ in pcounts) + " |")
    for weights in ("cold", "warm"):
        for c, oc in sorted({(k[1], k[2]) for k in packed if k[0] == weights}):
            cells = []
            for n in pcounts:
                p = packed[(weights, c, oc, n)]
                o, b = best[(weights, "out_in", c, oc, n)]
                cells.append(f"{p / max(o, b):.2f}x ({p:.0f})")
            print(f"| {weights} | {c} x {oc} | " + " | ".join(cells) + " |")
PY
