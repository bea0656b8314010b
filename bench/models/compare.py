#!/usr/bin/python3
"""
compare.py BEFORE.jsonl AFTER.jsonl: two runs of bench/models/run.sh (two
commits of ours, each beside the PyTorch peer in the same run), case by
case: ours' CPU milliseconds per text (per 1,000 tokens for the training
step) in each run, and ours / PyTorch by CPU time in each run (the
"same, by CPU time" column of report.py: work per CPU second of ours over
the peer's).  Only cases both runs hold; float32, AVX-512 on.
"""
import json
import sys


def load(path):
    rows = [json.loads(l) for l in open(path) if l.startswith("{")]
    return rows, next((r for r in rows if r.get("bench") == "machine"), {})


def cases(rows):
    out = {}
    for r in rows:
        if r.get("bench") not in ("embed", "predict", "train") or r.get("no_avx512") or \
                r.get("precision", "float32") != "float32" or not r.get("cpu_seconds"):
            continue
        key = (r["model"], r["bench"], r.get("batch"), r.get("text_tokens"), r["threads"])
        work = r["tokens"] / 1000.0 if r["bench"] == "train" else r["texts"]
        out.setdefault(key, {})[r["impl"]] = r["cpu_seconds"] * 1e3 / work
    return out


def main():
    (before, mb), (after, ma) = load(sys.argv[1]), load(sys.argv[2])
    b, a = cases(before), cases(after)
    print(f"Before: commit {mb.get('commit')}, {mb.get('date')}, load {mb.get('loadavg_start')}; "
          f"after: commit {ma.get('commit')}, {ma.get('date')}, load {ma.get('loadavg_start')}.\n")
    print("| model | figure | threads | ours before, CPU ms | ours after, CPU ms | after / before | "
          "ours / PyTorch by CPU, before | after |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key in sorted(set(b) & set(a), key=lambda k: (k[0], k[1], k[4], k[2] or 0, k[3] or 0)):
        m, bench, batch, tok, t = key
        ob, oa = b[key].get("ours"), a[key].get("ours")
        if ob is None or oa is None:
            continue
        what = (f"DePT train step, batch {batch}, {tok}-token texts (per 1,000 tokens)" if bench == "train"
                else f"{'embed' if bench == 'embed' else 'DePT predict'}, batch {batch}, {tok} tokens (per text)")
        rb = b[key]["pytorch"] / ob if b[key].get("pytorch") else None
        ra = a[key]["pytorch"] / oa if a[key].get("pytorch") else None
        f = lambda x: "–" if x is None else f"{x:.2f}x"
        print(f"| {m} | {what} | {t} | {ob:,.1f} | {oa:,.1f} | {oa / ob:.2f} | {f(rb)} | {f(ra)} |")


if __name__ == "__main__":
    main()
