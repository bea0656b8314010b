#!/usr/bin/python3
"""
report.py: the markdown tables of bench/run --models from its results.jsonl.

  report.py RESULTS.jsonl                     print them
  report.py RESULTS.jsonl --write FILE ...    also replace the text between
                                              <!-- models-table:begin --> and
                                              <!-- models-table:end --> in FILE
                                              (README.md gets --short tables); the
                                              results of run.sh --onnx-only go between
                                              <!-- models-onnx-table:begin --> and
                                              <!-- models-onnx-table:end --> instead
"""
import json
import os
import statistics
import sys

ORDER = ["minilm-l6", "bert-base", "distilbert-base", "roberta-base", "multilingual-e5-small", "t5-small", "t5-base",
         "bert-base-bf16"]


def load(path):
    return [json.loads(l) for l in open(path) if l.strip().startswith("{")]


def find(rows, **kw):
    out = [r for r in rows if all(r.get(k) == v for k, v in kw.items())]
    return out


def one(rows, key, **kw):
    hits = find(rows, **kw)
    return hits[-1][key] if hits else None


def best(rows, key):
    """The best of repeated runs of one figure (bench/models/run.sh BENCH_REPEAT): the largest key."""
    return max(rows, key=lambda r: float(r[key])) if rows else None


def fmt(v, nd=1):
    if v is None:
        return "–"
    if isinstance(v, float) and v >= 100:
        return f"{v:,.0f}"
    return f"{v:,.{nd}f}" if isinstance(v, float) else f"{v:,}"


def ratio(a, b):
    return "–" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def models_in(rows):
    seen = {r["model"] for r in rows if "model" in r}
    return [m for m in ORDER if m in seen]


def throughput(rows, short=False):
    names = [m for m in models_in(rows) if m != "bert-base-bf16"]
    threads = sorted({r["threads"] for r in rows if r.get("bench") in ("embed", "predict", "train")
                      and r.get("impl") == "ours" and not r.get("no_avx512")})
    metrics = [("embed", 1, 20), ("embed", 32, 20), ("embed", 1, 64), ("embed", 32, 64),
               ("predict", 1, 20), ("predict", 32, 20), ("predict", 1, 64), ("predict", 32, 64),
               ("train", None, 20)]
    if short:
        metrics = [("embed", 1, 20), ("embed", 32, 64), ("predict", 1, 20), ("train", None, 20)]
        threads = threads[:1]
    has_ort = bool(find(rows, impl="onnxruntime"))
    head = "| model | figure (float32) |"
    sep = "| --- | --- |"
    for t in threads:
        head += f" ours, {t} thr | PyTorch, {t} thr | ours / PyTorch | same, by CPU time |"
        sep += " ---: | ---: | ---: | ---: |"
        if has_ort:
            head += f" ONNX Runtime, {t} thr | ours / ORT |"
            sep += " ---: | ---: |"
    lines = [head, sep]
    for m in names:
        for bench, batch, tok in metrics:
            kw0 = dict(bench=bench, model=m, text_tokens=tok, precision="float32")
            if batch:
                kw0["batch"] = batch
            if not find(rows, impl="ours", **kw0):
                continue
            if bench == "train":
                tb = one(rows, "batch", bench="train", model=m, impl="ours")
                label = f"DePT train step, batch {tb}, {tok}-token texts: tokens/s"
                key = "tokens_per_second"
            else:
                label = f"{'embed' if bench == 'embed' else 'DePT predict'}, batch {batch}, {tok} tokens: texts/s"
                key = "texts_per_second"
            line = f"| {m} | {label} |"
            for t in threads:
                kw = dict(bench=bench, model=m, threads=t, text_tokens=tok, precision="float32")
                if batch:
                    kw["batch"] = batch
                a = best([r for r in find(rows, impl="ours", **kw) if not r.get("no_avx512")], key)
                b = best([r for r in find(rows, impl="pytorch", **kw) if not r.get("no_avx512")], key)
                x = best(find(rows, impl="onnxruntime", **kw), key)
                # the CPU-time ratio: (work / ours' CPU s) / (work / PyTorch's CPU s)
                per_cpu = lambda r: float(r[key]) * r["seconds"] / r["cpu_seconds"] if r.get("cpu_seconds") else None
                cr = None
                if a and b and per_cpu(a) and per_cpu(b):
                    cr = per_cpu(a) / per_cpu(b)
                a = float(a[key]) if a else None
                b = float(b[key]) if b else None
                x = float(x[key]) if x else None
                line += f" {fmt(a)} | {fmt(b)} | {ratio(a, b)} | {'–' if cr is None else f'{cr:.2f}x'} |"
                if has_ort:
                    line += f" {fmt(x)} | {ratio(a, x)} |"
            lines.append(line)
    return "\n".join(lines)


def no_avx(rows):
    lines = ["| model | figure, 1 thread | ours | ours, DEPT_NO_AVX512=1 | PyTorch | PyTorch, AVX2 only | PyTorch, bfloat16 linears |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for m in [m for m in models_in(rows) if m != "bert-base-bf16"]:
        for bench, batch, tok, key, label in (("embed", 32, 64, "texts_per_second", "embed, batch 32, 64 tokens: texts/s"),
                                              ("train", None, 20, "tokens_per_second", "DePT train step: tokens/s")):
            kw = dict(bench=bench, model=m, threads=1, text_tokens=tok)
            if batch:
                kw["batch"] = batch

            def pick(impl, noavx, prec="float32"):
                h = [r for r in find(rows, impl=impl, precision=prec, **kw) if bool(r.get("no_avx512")) == noavx]
                return float(h[-1][key]) if h else None
            lines.append(f"| {m} | {label} | {fmt(pick('ours', False))} | {fmt(pick('ours', True))} | "
                         f"{fmt(pick('pytorch', False))} | {fmt(pick('pytorch', True))} | "
                         f"{fmt(pick('pytorch', False, 'bfloat16'))} |")
    return "\n".join(lines)


def onnx_table(rows):
    """Ours beside ONNX Runtime (and PyTorch) on every embed/predict figure ORT ran, best of the repeats."""
    lines = ["| model | figure (float32), texts/s | threads | ours | ONNX Runtime | PyTorch | ours / ORT | "
             "same, by CPU time | ours / PyTorch | CPU ms a text: ours | ORT |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    keys = sorted({(r["model"], r["bench"], r["threads"], r["batch"], r["text_tokens"])
                   for r in find(rows, impl="onnxruntime") if r.get("bench") in ("embed", "predict")},
                  key=lambda k: (ORDER.index(k[0]) if k[0] in ORDER else 99, k[1], k[2], k[3], k[4]))
    per_cpu = lambda r: r["texts"] / r["cpu_seconds"] if r and r.get("cpu_seconds") else None
    for m, bench, t, b, tok in keys:
        kw = dict(bench=bench, model=m, threads=t, batch=b, text_tokens=tok, precision="float32")
        o, x, p = (best([r for r in find(rows, impl=i, **kw) if not r.get("no_avx512")], "texts_per_second")
                   for i in ("ours", "onnxruntime", "pytorch"))
        v = lambda r: float(r["texts_per_second"]) if r else None
        cr = per_cpu(o) / per_cpu(x) if per_cpu(o) and per_cpu(x) else None
        what = f"{'embed' if bench == 'embed' else 'DePT predict'}, batch {b}, {tok} tokens"
        ms = lambda r: f"{1e3 / per_cpu(r):.1f}" if per_cpu(r) else "–"
        lines.append(f"| {m} | {what} | {t} | {fmt(v(o))} | {fmt(v(x))} | {fmt(v(p))} | {ratio(v(o), v(x))} | "
                     f"{'–' if cr is None else f'{cr:.2f}x'} | {ratio(v(o), v(p))} | {ms(o)} | {ms(x)} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def onnx_notes(rows):
    out = []
    x = find(rows, impl="onnxruntime")
    if x:
        st = x[-1].get("settings", {})
        out.append(f"ONNX Runtime: {x[-1].get('runtime')}, session settings intraOpNumThreads = ours' threads (" +
                   " or ".join(str(t) for t in sorted({r["threads"] for r in x})) + "), " +
                   ", ".join(f"{k} {v}" for k, v in st.items() if k != "intraOpNumThreads") + ".")
    last = lambda rs: list({r["model"]: r for r in rs}.values())    # one a model: its last
    a = last(find(rows, bench="onnx_agreement"))
    if a:
        out.append("ONNX Runtime's outputs (8 texts of 20 and 64 tokens, one padded batch), max |difference|: " +
                   "; ".join(f"{r['model']}: sentence vectors vs ours {r['embed_vs_ours_max_abs_diff']:.1e}, "
                             f"DePT-predict pooled vectors vs PyTorch peer (same adapter) "
                             f"{r['predict_vectors_vs_pytorch_max_abs_diff']:.1e}, probabilities "
                             f"{r['predict_probs_vs_pytorch_max_abs_diff']:.1e}" for r in a) + ".")
    g = last(find(rows, bench="onnx_graph"))
    if g:
        out.append("ONNX Runtime's optimised embed graph (node counts): " + "; ".join(
            f"{r['model']}: " + ", ".join(f"{k} {v}" for k, v in r["ops"].items()) for r in g) + ".")
    return "\n\n".join(out)


def run_list(rows):
    """Each run of a results file built with BENCH_APPEND=1: its models, date, commit and load averages."""
    out, cur = [], None
    for r in rows:
        if r.get("bench") == "machine":
            cur = {"m": r, "models": [], "threads": set()}
            out.append(cur)
        elif cur is not None and r.get("bench") == "machine_end":
            cur["end"] = r
        elif cur is not None and r.get("impl") == "onnxruntime":
            if r["model"] not in cur["models"]:
                cur["models"].append(r["model"])
            cur["threads"].add(r["threads"])
    if len(out) < 2:
        return ""
    return "Runs: " + "; ".join(
        f"{', '.join(c['models'])} at {' and '.join(str(t) for t in sorted(c['threads']))} thread(s), "
        f"{c['m']['date']}, commit {c['m']['commit']}, load average {c['m']['loadavg_start']} -> "
        f"{c.get('end', {}).get('loadavg_end', '?')}" for c in out) + "."


def bf16_table(rows):
    lines = ["| model | figure, 1 thread | ours, bfloat16 | PyTorch, bfloat16 linears | ours / PyTorch | "
             "same, by CPU time | ours, float32 | bfloat16 / float32 (ours) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for m in [m for m in models_in(rows) if m != "bert-base-bf16"]:
        for bench, batch, tok, key, label in (
                ("embed", 32, 64, "texts_per_second", "embed, batch 32, 64 tokens: texts/s"),
                ("predict", 1, 20, "texts_per_second", "DePT predict, batch 1, 20 tokens: texts/s"),
                ("train", None, 20, "tokens_per_second", "DePT train step: tokens/s")):
            kw = dict(bench=bench, model=m, threads=1, text_tokens=tok)
            if batch:
                kw["batch"] = batch

            def pick(impl, prec):
                h = [r for r in find(rows, impl=impl, precision=prec, **kw) if not r.get("no_avx512")]
                return h[-1] if h else None
            o, p, f = pick("ours", "bfloat16"), pick("pytorch", "bfloat16"), pick("ours", "float32")
            if o is None and p is None:
                continue
            val = lambda r: float(r[key]) if r else None
            per_cpu = lambda r: float(r[key]) * r["seconds"] / r["cpu_seconds"] if r.get("cpu_seconds") else None
            cr = per_cpu(o) / per_cpu(p) if o and p and per_cpu(o) and per_cpu(p) else None
            lines.append(f"| {m} | {label} | {fmt(val(o))} | {fmt(val(p))} | {ratio(val(o), val(p))} | "
                         f"{'–' if cr is None else f'{cr:.2f}x'} | {fmt(val(f))} | {ratio(val(o), val(f))} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def med(rows, key, **kw):
    v = [r[key] for r in find(rows, **kw) if key in r]
    return statistics.median(v) if v else None


def load_table(rows):
    lines = ["| model | safetensors MB | ours: open ms | RSS after open MB (anon + file) | first embed ms | "
             "PyTorch peer: open ms | its RSS MB (anon + file) | SQL: register ms | first dept_predict ms (median of 3 backends) | "
             "second call ms | backend Rss MB | anonymous MB | file pages, clean (mapped weights) MB | file pages, dirty MB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for m in models_in(rows):
        size = one(rows, "safetensors_bytes", bench="load", model=m, impl="ours")
        o = find(rows, bench="load", model=m, impl="ours")
        p = find(rows, bench="load", model=m, impl="pytorch")
        s = find(rows, bench="sql_first_call", model=m)
        reg = one(rows, "ms", bench="sql_register", model=m)
        mb = lambda kb: None if kb is None else kb / 1024.0
        anon_file = lambda r, pre: "–" if not r else \
            f"{mb(r[-1][pre + 'rssanon_kb']):.0f} + {mb(r[-1][pre + 'rssfile_kb']):.0f}"
        sl = s[-1] if s else {}
        lines.append(
            f"| {m} | {fmt(size / 1e6 if size else None)} | {fmt(med(rows, 'open_ms', bench='load', model=m, impl='ours'))} | "
            f"{anon_file(o, 'open_')} | {fmt(med(rows, 'first_embed_ms', bench='load', model=m, impl='ours'))} | "
            f"{fmt(med(rows, 'open_ms', bench='load', model=m, impl='pytorch'))} | {anon_file(p, 'open_')} | "
            f"{fmt(reg)} | {fmt(sl.get('first_ms_median'))} | {fmt(sl.get('second_ms_median'))} | "
            f"{fmt(mb(sl.get('backend_rss_kb')))} | {fmt(mb(sl.get('backend_anonymous_kb')))} | "
            f"{fmt(mb(sl['backend_shared_clean_kb'] + sl['backend_private_clean_kb']) if sl else None)} | "
            f"{fmt(mb(max(sl['backend_private_dirty_kb'] - sl['backend_anonymous_kb'], 0)) if sl else None)} |")
    return "\n".join(lines)


def memory_table(rows):
    lines = ["| model | estimate MB | of which activations | batch buffers | adapter | rows | model files | process | "
             "worker peak (VmHWM) MB | of which mapped file pages | estimate / peak |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in find(rows, bench="sql_train_memory"):
        mb = lambda b: b / 1048576.0
        peak = r["worker_peak_kb"] / 1024.0
        lines.append(f"| {r['model']} | {fmt(mb(r['estimate_bytes']))} | {fmt(mb(r['estimate_activations']))} | "
                     f"{fmt(mb(r['estimate_batch']))} | {fmt(mb(r['estimate_adapter']))} | {fmt(mb(r['estimate_rows']))} | "
                     f"{fmt(mb(r['estimate_model']))} | {fmt(mb(r['estimate_process']))} | {fmt(peak)} | "
                     f"{fmt(r['worker_rss_file_kb'] / 1024.0)} | {ratio(mb(r['estimate_bytes']), peak)} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def machine(rows):
    m = find(rows, bench="machine")
    e = find(rows, bench="machine_end")
    if not m:
        return ""
    m = m[-1]
    ort = f", onnxruntime-node {m['onnxruntime']}" if m.get("onnxruntime") not in (None, "none") else ""
    return (f"Machine: {m['cpu']}, {m['cores']} cores, OpenBLAS {m['openblas']} ({m['blas_core']} kernels), "
            f"PyTorch {m['torch']}{ort}; {m['date']}, commit {m['commit']}; load average (1/5/15 min) "
            f"{m['loadavg_start']} at the start, {e[-1]['loadavg_end'] if e else '?'} at the end.")


def agreement(rows):
    a = list({r["model"]: r for r in find(rows, bench="agreement")}.values())
    return "Sentence vectors of the PyTorch peer against ours (8 texts, max |difference|): " + \
        ", ".join(f"{r['model']} {r['max_abs_diff']:.1e}" for r in a) + "." if a else ""


def full(rows):
    if onnx_only(rows):    # run.sh --onnx-only
        return "\n\n".join(p for p in [machine(rows), run_list(rows), agreement(rows), onnx_notes(rows),
                                         "#### Ours beside ONNX Runtime and PyTorch", onnx_table(rows)] if p)
    parts = [machine(rows), agreement(rows), onnx_notes(rows), "#### Throughput, ours beside PyTorch", throughput(rows),
             "#### bfloat16 products, ours beside PyTorch's (1 thread)", bf16_table(rows),
             "#### Without AVX-512, and PyTorch's bfloat16 (1 thread)", no_avx(rows),
             "#### Load, first call and memory", load_table(rows)]
    mt = memory_table(rows)
    if mt:
        parts += ["#### dept.max_training_memory's estimate against the measured peak (dept_train, batch 16, "
                  "60 prompt rows + 128 tokens, 1 step)", mt]
    return "\n\n".join(p for p in parts if p)


def short(rows):
    parts = [machine(rows), throughput(rows, short=True)]
    bt = bf16_table(rows)
    if bt:
        parts += ["bfloat16 weight products (ours: AMX, else AVX512-BF16), 1 thread:", bt]
    return "\n\n".join(parts)


def onnx_only(rows):
    return not find(rows, bench="train") and bool(find(rows, impl="onnxruntime"))


def write(path, text, tag="models-table"):
    s = open(path).read()
    b, e = f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"
    if b not in s or e not in s:
        raise SystemExit(f"{path}: no {b} ... {e} markers")
    head, rest = s.split(b, 1)
    _, tail = rest.split(e, 1)
    open(path, "w").write(head + b + "\n" + text + "\n" + e + tail)


def main():
    rows = load(sys.argv[1])
    print(full(rows))
    args = sys.argv[2:]
    if args and args[0] == "--write":
        for path in args[1:]:
            if onnx_only(rows):
                write(path, full(rows), "models-onnx-table")
                continue
            top = os.path.basename(path) == "README.md" and \
                os.path.basename(os.path.dirname(os.path.abspath(path))) != "bench"
            write(path, short(rows) if top else full(rows))


if __name__ == "__main__":
    main()
