#!/usr/bin/env python3
"""
report.py: the table of bench/run from its JSON lines, beside the goals of
issue 5; writes the same rows as JSON.

  report.py RESULTS.jsonl OUT.json

Standard library only.  A figure that a run did not produce prints as "-".
"""
import json
import sys


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def pick(rows, **want):
    """The first row whose fields equal every keyword (peer=None means ours)."""
    for r in rows:
        if all(r.get(k) == v for k, v in want.items()):
            return r
    return None


def fmt(x, digits=1):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return f"{x:,}"


def ratio(a, b):
    return a / b if a is not None and b else None


def main():
    rows = load(sys.argv[1])
    machine = pick(rows, bench="machine") or {}
    table = []   # (figure, ours, peers, goal, met)

    def add(figure, ours, peers, goal, met):
        table.append({"figure": figure, "ours": ours, "peers": peers, "goal": goal,
                      "met": None if met is None else bool(met)})

    def field(r, k):
        return r.get(k) if r else None

    threads = sorted({r["threads"] for r in rows if r.get("bench") == "peak"})
    for t in threads:
        for b in (1, 32):
            ours = field(pick(rows, bench="embed", peer=None, precision="float32", threads=t, batch=b), "texts_per_second")
            if ours is None:
                continue
            node = field(pick(rows, bench="embed", peer="node", threads_requested=t, batch=b),
                         "texts_per_second")
            torch = field(pick(rows, bench="embed", peer="pytorch", precision="float32", threads=t, batch=b),
                          "texts_per_second")
            onnx = field(pick(rows, bench="embed", peer="onnxruntime", threads=t, batch=b),
                         "texts_per_second")
            vn, vt, vo = ratio(ours, node), ratio(ours, torch), ratio(ours, onnx)
            add(f"embed texts/s, batch {b}, {t} thread(s)", fmt(ours),
                f"node {fmt(node)} ({fmt(vn, 2)}x), PyTorch {fmt(torch)} ({fmt(vt, 2)}x), "
                f"ONNX Runtime {fmt(onnx)} ({fmt(vo, 2)}x)",
                ">= 3x node, >= 1.5x PyTorch, >= 1x ONNX Runtime",
                (vn is None or vn >= 3) and vt is not None and vt >= 1.5 and (vo is None or vo >= 1))
            ours = field(pick(rows, bench="predict", peer=None, precision="float32", threads=t, batch=b), "texts_per_second")
            if ours is None:
                continue
            torch = field(pick(rows, bench="predict", peer="pytorch", precision="float32", threads=t, batch=b),
                          "texts_per_second")
            onnx = field(pick(rows, bench="predict", peer="onnxruntime", threads=t, batch=b),
                         "texts_per_second")
            vt, vo = ratio(ours, torch), ratio(ours, onnx)
            add(f"DePT predict texts/s, batch {b}, {t} thread(s)", fmt(ours),
                f"PyTorch {fmt(torch)} ({fmt(vt, 2)}x), ONNX Runtime {fmt(onnx)} ({fmt(vo, 2)}x)",
                ">= 1.5x PyTorch, >= 1x ONNX Runtime",
                vt is not None and vt >= 1.5 and (vo is None or vo >= 1))

    # SQL against the standalone C path, on the same texts
    c_embed = pick(rows, bench="embed", peer=None, precision="float32", threads=1, batch=1)
    sql_embed = pick(rows, bench="sql_embed", mode="serial")
    if sql_embed and c_embed:
        v = ratio(c_embed["texts_per_second"], sql_embed["texts_per_second"])
        add("SQL dept_embed over the table, serial (texts/s)", fmt(sql_embed["texts_per_second"]),
            f"C batch 1: {fmt(c_embed['texts_per_second'])} (C/SQL {fmt(v, 2)})",
            "within 1.3x of C", v is not None and v <= 1.3)
    c_pred = pick(rows, bench="predict", peer=None, precision="float32", threads=1, batch=1)
    serial = pick(rows, bench="sql_predict", mode="serial")
    # the same texts in C and SQL: a DePT text of up to 4 tokens has at most 64 rows and takes
    # the few-row product, so the mix of lengths matters and tokens/s do not compare across sets
    same = c_pred and pick(rows, bench="sql_predict", mode=f"serial_first_{c_pred['texts']}")
    if serial:
        add("SQL dept_predict over the table, serial (texts/s)", fmt(serial["texts_per_second"]),
            f"{serial['texts']:,} texts", "-", None)
    if same:
        v = ratio(c_pred["texts_per_second"], same["texts_per_second"])
        add(f"SQL dept_predict over the first {same['texts']:,} texts, serial (texts/s)",
            fmt(same["texts_per_second"]),
            f"C batch 1, the same texts: {fmt(c_pred['texts_per_second'])} (C/SQL {fmt(v, 2)})",
            "within 1.3x of C", v is not None and v <= 1.3)
    par = pick(rows, bench="sql_predict", mode="parallel2")
    if par and serial:
        v = ratio(par["texts_per_second"], serial["texts_per_second"])
        add("SQL dept_predict, 2 parallel workers (texts/s)", fmt(par["texts_per_second"]),
            f"{par['workers']} workers launched, {fmt(v, 2)}x serial", ">= 1.8x serial",
            v is not None and v >= 1.8)
    arr = pick(rows, bench="sql_predict", mode="array")
    if arr and serial:
        add("SQL dept_predict(text[]) over the table (texts/s)", fmt(arr["texts_per_second"]),
            f"{fmt(ratio(arr['texts_per_second'], serial['texts_per_second']), 2)}x per-row", "-", None)
    for call, t in [(c, t) for t in (1, 2)
                    for c in ("dept_predict_dept", "dept_predict_probe", "dept_embed")]:
        lat = pick(rows, bench="sql_latency", call=call, dept_threads=t, precision="float32")
        if lat:
            add(f"latency of {call}, {lat['tokens']}-token text, dept.threads {t} (ms)",
                f"p50 {fmt(lat['p50_ms'], 2)}, p99 {fmt(lat['p99_ms'], 2)}",
                f"{lat['calls']} calls", "p50 <= 2 ms", lat["p50_ms"] <= 2.0)
    # bfloat16 products (dept.matmul_precision), 1 thread, beside PyTorch's bfloat16
    for b in (1, 32):
        for bench, name in (("embed", "embed"), ("predict", "DePT predict")):
            ours = field(pick(rows, bench=bench, peer=None, precision="bfloat16", threads=1, batch=b),
                         "texts_per_second")
            if ours is None:
                continue
            torch = field(pick(rows, bench=bench, peer="pytorch", precision="bfloat16", threads=1,
                               batch=b), "texts_per_second")
            node = field(pick(rows, bench="embed", peer="node", threads_requested=1, batch=b),
                         "texts_per_second") if bench == "embed" else None
            f32 = field(pick(rows, bench=bench, peer=None, precision="float32", threads=1, batch=b),
                        "texts_per_second")
            vt = ratio(ours, torch)
            peers = f"PyTorch bfloat16 {fmt(torch)} ({fmt(vt, 2)}x)"
            if node is not None:
                peers = f"node {fmt(node)} ({fmt(ratio(ours, node), 2)}x), " + peers
            add(f"{name} texts/s, batch {b}, 1 thread, bfloat16", fmt(ours),
                f"{peers}; ours in float32 {fmt(f32)} ({fmt(ratio(ours, f32), 2)}x)",
                ">= 1.5x PyTorch", vt is not None and vt >= 1.5)
    for call in ("dept_predict_dept", "dept_predict_probe", "dept_embed"):
        lat = pick(rows, bench="sql_latency", call=call, dept_threads=1, precision="bfloat16")
        if lat:
            add(f"latency of {call}, {lat['tokens']}-token text, dept.threads 1, bfloat16 (ms)",
                f"p50 {fmt(lat['p50_ms'], 2)}, p99 {fmt(lat['p99_ms'], 2)}",
                f"{lat['calls']} calls", "p50 <= 2 ms", lat["p50_ms"] <= 2.0)
    acc = pick(rows, bench="sql_accuracy")
    agree16 = pick(rows, bench="bf16_agreement")
    if acc:
        detail = (f"float32 {acc['accuracy_float32']:.4f}; {acc['predictions_changed']} of "
                  f"{acc['texts']:,} predictions changed; probabilities within "
                  f"{acc['max_proba_diff']:.2e}")
        if agree16:
            detail += (f"; sentence vectors: min cosine {agree16['min_cosine']:.6f} over "
                       f"{agree16['texts']:,} texts")
        add("accuracy of a trained DePT adapter in bfloat16 (SST-2, 2,000 texts)",
            f"{acc['accuracy_bfloat16']:.4f}", detail, "accuracy holds", None)
    for mode in ("installed", "preloaded"):
        first = pick(rows, bench="sql_first_call", mode=mode)
        if first:
            add(f"first dept_predict in a new backend, library {mode} (ms)",
                fmt(first["median_ms"], 2),
                f"max {fmt(first['max_ms'], 2)}; model load alone "
                f"{fmt(first['model_load_median_ms'], 2)}", "<= 20 ms", first["median_ms"] <= 20)
    for t in threads:
        ours = pick(rows, bench="train", peer=None, method="dept", precision="float32", threads=t)
        torch = pick(rows, bench="train", peer="pytorch", method="dept", precision="float32",
                     threads=t)
        v = ratio(field(ours, "tokens_per_second"), field(torch, "tokens_per_second"))
        add(f"DePT training tokens/s, batch 32, {t} thread(s)", fmt(field(ours, "tokens_per_second")),
            f"PyTorch {fmt(field(torch, 'tokens_per_second'))} ({fmt(v, 2)}x)", ">= 1.5x PyTorch",
            v is not None and v >= 1.5)
    ours = pick(rows, bench="train", peer=None, method="dept", precision="bfloat16", threads=1)
    torch = pick(rows, bench="train", peer="pytorch", method="dept", precision="bfloat16", threads=1)
    f32 = pick(rows, bench="train", peer=None, method="dept", precision="float32", threads=1)
    if ours:
        v = ratio(field(ours, "tokens_per_second"), field(torch, "tokens_per_second"))
        add("DePT training tokens/s, batch 32, 1 thread, bfloat16", fmt(ours["tokens_per_second"]),
            f"PyTorch bfloat16 {fmt(field(torch, 'tokens_per_second'))} ({fmt(v, 2)}x); ours in "
            f"float32 {fmt(field(f32, 'tokens_per_second'))} "
            f"({fmt(ratio(ours['tokens_per_second'], field(f32, 'tokens_per_second')), 2)}x)",
            ">= 1.5x PyTorch", v is not None and v >= 1.5)
    tf, tb = (pick(rows, bench="train_precision", precision=p) for p in ("float32", "bfloat16"))
    if tf and tb:
        add("DePT trained in bfloat16 (the demo's 600 rows, 3 epochs): SST-2 dev accuracy",
            f"{tb['test_accuracy']:.4f} ({fmt(tb['seconds_per_epoch'], 2)} s/epoch)",
            f"float32 {tf['test_accuracy']:.4f} ({fmt(tf['seconds_per_epoch'], 2)} s/epoch), "
            f"{tb['test_rows']} dev rows", "accuracy holds", None)
    ed, ep = pick(rows, bench="epoch", method="dept"), pick(rows, bench="epoch", method="pt")
    if ed and ep:
        dt = 1 - ed["seconds_per_epoch"] / ep["seconds_per_epoch"]
        dm = 1 - ed["peak_rss_mb"] / ep["peak_rss_mb"]
        add("DePT vs PT epoch (2,000 rows), equal parameters",
            f"{fmt(ed['seconds_per_epoch'], 2)} s, {fmt(ed['peak_rss_mb'])} MB",
            f"PT {fmt(ep['seconds_per_epoch'], 2)} s, {fmt(ep['peak_rss_mb'])} MB: "
            f"{dt:.0%} less time, {dm:.0%} less memory ({ed['trainable_params']:,} vs "
            f"{ep['trainable_params']:,} parameters)", ">= 25% less time, >= 20% less memory",
            dt >= 0.25 and dm >= 0.20)
    for t in threads:
        peak = pick(rows, bench="peak", threads=t)
        emb = pick(rows, bench="embed", peer=None, precision="float32", threads=t, batch=32)
        if peak and emb:
            share = emb["gflops"] / peak["sgemm_gflops"]
            add(f"forward GFLOP/s, batch 32, {t} thread(s)", fmt(emb["gflops"]),
                f"sgemm peak {fmt(peak['sgemm_gflops'])} ({share:.0%})", ">= 50% of peak",
                share >= 0.5)
    mem = pick(rows, bench="sql_memory")
    if mem and "after_rss_kb" in mem:
        add("backend memory after load and 200 predictions (MB)",
            f"RSS {mem['after_rss_kb'] / 1024:.1f}, PSS {mem['after_pss_kb'] / 1024:.1f}",
            f"before load: RSS {mem['before_rss_kb'] / 1024:.1f}; shared clean "
            f"{mem['after_shared_clean_kb'] / 1024:.1f}, private dirty "
            f"{mem['after_private_dirty_kb'] / 1024:.1f}", "weights shared (mmap)", None)

    agree = pick(rows, bench="agreement")
    agree_onnx = pick(rows, bench="onnx_agreement")
    print(f"machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, BLAS core "
          f"{machine.get('blas_core', '?')}, OpenBLAS {machine.get('openblas', '?')}, "
          f"torch {machine.get('torch', '?')}, node {machine.get('node', '?')}, onnxruntime-node "
          f"{machine.get('onnxruntime', '-')}, load average {machine.get('loadavg', '?')}, "
          f"{machine.get('date', '')}")
    if agree:
        print(f"PyTorch peer vs ours: max |difference| {agree['max_abs_diff']:.2e} over "
              f"{agree['texts']} sentence vectors")
    if agree_onnx:
        print(f"ONNX Runtime peer vs ours: max |difference| {agree_onnx['max_abs_diff']:.2e} over "
              f"{agree_onnx['texts']} sentence vectors; its predict graph vs float64 numpy "
              f"{agree_onnx['predict_max_abs_diff']:.2e}")
    print()
    print("| figure | ours | peers / detail | goal | met |")
    print("| --- | --- | --- | --- | --- |")
    for r in table:
        met = "-" if r["met"] is None else ("yes" if r["met"] else "no")
        print(f"| {r['figure']} | {r['ours']} | {r['peers']} | {r['goal']} | {met} |")
    with open(sys.argv[2], "w") as f:
        json.dump({"machine": machine, "agreement": agree, "onnx_agreement": agree_onnx, "table": table, "raw": rows}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
