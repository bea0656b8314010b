#!/usr/bin/env python3
"""Print the markdown tables of a bench/reproduce.sh run (standard library only).

    python3 bench/summarize.py [OUT_DIR]        (default build/bench)
    python3 bench/summarize.py --record MANIFEST key=value...   (used by reproduce.sh)

Reads OUT_DIR/manifest.jsonl (one line per dept-train attempt: role, data set,
method, m, seed, exit status, wall and CPU seconds, the share of a core the
process got, how many cores other processes kept busy) and the JSON reports it
names; of several attempts of one run it uses the least contended one.
Without a manifest it falls back to OUT_DIR/runs/<data set>/<method>-m<m>-seed<s>.json.
Prints:
  (a) per data set: linear probe vs PT (l=100) vs DePT (m=60) vs EPT (m=60),
      the last two with the rank that fits PT's budget
  (b) DePT with m in {0, 20, 40, 60, 80} at the same budget, PT as m=100
  (c) the papers' claims checked against the measurements
  (d) seed variance where a data set ran with two seeds
Accuracy and macro-F1 are on the held-out (test) split; "valid" is the 10%
split the training loop used to keep its best checkpoint.
"""
import glob
import json
import math
import os
import re
import sys

METHOD_ORDER = {"probe": 0, "pt": 1, "dept": 2, "ept": 3}
METHOD_LABEL = {"probe": "linear probe", "pt": "PT", "dept": "DePT", "ept": "EPT"}
TASKS = {
    "sst2_glue": "sentiment", "sst2_sentence": "sentiment", "mr": "sentiment",
    "cr": "sentiment", "mpqa": "opinion polarity", "subj": "subjectivity",
    "trec": "question type", "agnews": "news topic", "emotion_dair": "emotion",
    "sms_spam": "spam", "mrpc": "paraphrase (pair)", "rte_superglue": "entailment (pair)",
    "cb": "entailment (pair)", "cola_glue": "acceptability",
}


def record(argv):
    """Append one attempt to the manifest; print a one-line verdict for the log."""
    manifest, kv = argv[0], dict(a.split("=", 1) for a in argv[1:])
    wall = float(kv["t1"]) - float(kv["t0"])
    cpu = None
    try:
        with open(kv["timefile"]) as f:
            _, user, sys_, _ = f.read().split()[-4:]
        cpu = float(user) + float(sys_)
    except (OSError, ValueError):
        pass
    err = ""
    if kv["rc"] != "0":
        try:
            with open(kv["logfile"], errors="replace") as f:
                err = f.read().strip().splitlines()[-1][-300:]
        except (OSError, IndexError):
            err = "no output"
    share = cpu / wall if cpu is not None and wall > 0 else None
    others = (max(0.0, (int(kv["j1"]) - int(kv["j0"])) / float(kv["hz"]) - (cpu or 0.0)) / wall
              if wall > 0 else None)
    contended = share is not None and share < float(kv["share_min"])
    entry = {"role": kv["role"], "dataset": kv["dataset"], "method": kv["method"],
             "m": int(kv["m"]), "seed": int(kv["seed"]), "attempt": int(kv["attempt"]),
             "rc": int(kv["rc"]), "wall_seconds": round(wall, 2),
             "cpu_seconds": None if cpu is None else round(cpu, 2),
             "cpu_share": None if share is None else round(share, 3),
             "other_cores_busy": None if others is None else round(others, 2),
             "contended": contended, "load_before": float(kv["load0"]),
             "load_after": float(kv["load1"]), "jobs": int(kv["jobs"]),
             "report": kv["report"] if kv["rc"] == "0" else None, "error": err,
             "command": kv["command"]}
    with open(manifest, "a") as f:
        f.write(json.dumps(entry) + "\n")
    if kv["rc"] != "0":
        print("failed")
        return
    with open(kv["report"]) as f:
        r = json.load(f)
    print(f"test acc {r['test']['accuracy']:.4f}, r={r['rank']}, {r['trainable_params']} params, "
          f"{r['seconds_per_epoch']:.1f} s/epoch, {r['peak_rss_mb']:.0f} MB, "
          f"{share if share is not None else float('nan'):.2f} of a core, other processes "
          f"{others if others is not None else float('nan'):.2f} cores" + (" [contended]" if contended else ""))


def attempt_rank(e):
    """Prefer runs that worked, then the largest share of a core (unknown counts as 1)."""
    share = e.get("cpu_share")
    return (e.get("rc", 0) == 0, 1.0 if share is None else min(share, 1.0), e.get("attempt", 1))


def load_runs(out):
    runs = []
    manifest = os.path.join(out, "manifest.jsonl")
    if os.path.exists(manifest):
        best = {}
        with open(manifest) as f:
            for line in f:
                if line.strip():
                    e = json.loads(line)
                    key = (e["role"], e["dataset"], e["method"], e["m"], e["seed"])
                    e["attempts"] = best[key]["attempts"] + 1 if key in best else 1
                    if key not in best or attempt_rank(e) >= attempt_rank(best[key]):
                        best[key] = e
                    else:
                        best[key]["attempts"] = e["attempts"]
        entries = list(best.values())
    else:
        entries = []
        for path in sorted(glob.glob(os.path.join(out, "runs", "*", "*.json"))):
            mt = re.match(r"(\w+)-m(\d+)-seed(\d+)\.json$", os.path.basename(path))
            if mt:
                entries.append({"role": "main", "dataset": os.path.basename(os.path.dirname(path)),
                                "method": mt.group(1), "m": int(mt.group(2)),
                                "seed": int(mt.group(3)), "rc": 0, "report": path})
    for e in entries:
        e["r"] = None
        if e.get("rc", 0) == 0 and e.get("report"):
            try:
                with open(e["report"]) as f:
                    e["r"] = json.load(f)
            except (OSError, ValueError) as exc:
                e["rc"], e["error"] = -1, f"unreadable report: {exc}"
        runs.append(e)
    return runs


def find(runs, ds, method, m=None, seed=None):
    """The run of (ds, method, m, seed) with a report, whatever its role."""
    for e in runs:
        if (e["dataset"] == ds and e["method"] == method and e["r"] is not None
                and (m is None or e["m"] == m) and (seed is None or e["seed"] == seed)):
            return e
    return None


def pct(x):
    return "-" if x is None else f"{100 * x:.1f}"


def se_acc(p, n):
    """Standard error of an accuracy p measured on n rows."""
    return math.sqrt(max(p * (1 - p), 1e-12) / max(n, 1))


def fmt_int(x):
    return f"{x:,}"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def n_classes(r):
    return len(r["test"]["per_class"]) if r.get("test") else len(r["valid"]["per_class"])


def share(e):
    """Share of a core the run got (1 thread); 1 when unknown."""
    v = e.get("cpu_share")
    return min(v, 1.0) if v else 1.0


def cpu_epoch(e):
    """CPU seconds per epoch: wall x share (equal on an idle machine)."""
    return e["r"]["seconds_per_epoch"] * share(e)


def cpu_tps(e):
    return e["r"]["tokens_per_second"] / share(e)


def cpu_infer(e):
    return e["r"]["inference_ms_per_1000_rows"] * share(e)


def share_cell(e):
    share = e.get("cpu_share")
    cell = "?" if share is None else f"{share:.2f}"
    if e.get("attempts", 1) > 1:
        cell += f" (try {e.get('attempt', 1)}/{e['attempts']})"
    return cell


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--record":
        record(sys.argv[2:])
        return
    out = sys.argv[1] if len(sys.argv) > 1 else "build/bench"
    runs = load_runs(out)
    if not runs:
        sys.exit(f"summarize: no runs under {out}")
    machine = {}
    if os.path.exists(os.path.join(out, "machine.json")):
        with open(os.path.join(out, "machine.json")) as f:
            machine = json.load(f)
    seed = machine.get("seed") or min(e["seed"] for e in runs)
    any_report = next(e["r"] for e in runs if e["r"] is not None)
    datasets = []
    for e in runs:
        if e["role"] == "main" and e["dataset"] not in datasets:
            datasets.append(e["dataset"])

    print(f"# DePT reproduction on {any_report['backbone']} (CPU, OpenBLAS)\n")
    cores = {e["r"]["blas_core"] for e in runs if e["r"]}
    threads = {e["r"]["threads"] for e in runs if e["r"]}
    loads = [e.get("load_before", 0) for e in runs] + [e.get("load_after", 0) for e in runs]
    print(f"Machine: {machine.get('host_cores', '?')} cores ({machine.get('cpu_model', '?')}), "
          f"OpenBLAS core {', '.join(sorted(cores))}, {', '.join(map(str, sorted(threads)))} "
          f"thread(s) per run, {machine.get('jobs', 1)} run(s) at a time; 1-min load average "
          f"during the runs {min(loads):.2f}-{max(loads):.2f}.")
    if machine:
        steps = (f"max {machine['max_steps']} steps" if machine.get("max_steps")
                 else f"{machine.get('epochs')} epochs")
        print(f"Training: {steps}, batch {machine.get('batch_size')}, max length "
              f"{machine.get('max_length')}, seed {seed}, training sets subsampled to "
              f"{machine.get('max_train')} rows (stratified), test sets to {machine.get('max_test')}.")
    shared = [e for e in runs if (e.get("other_cores_busy") or 0) > 0.5 and e["r"] is not None]
    low = [e for e in runs if e.get("contended") and e["r"] is not None]
    if low:
        print("\n**Contended runs kept** (no attempt got >= the minimum share of a core; their "
              "time columns are inflated): " + ", ".join(
                  f"{e['dataset']} {e['method']} m={e['m']} seed {e['seed']} ({e['cpu_share']:.2f})"
                  for e in low) + ".")
    if shared:
        print(f"\n{len(shared)} of {len(runs)} runs had other processes keeping > 0.5 of the "
              "other core busy on average (shared caches and memory bandwidth; typically a few "
              "percent slower): " + ", ".join(
                  f"{e['dataset']} {e['method']} m={e['m']} s{e['seed']} ({e['other_cores_busy']:.1f})"
                  for e in shared) + ".")
    if any(e.get("jobs", 1) > 1 for e in runs):
        print("\n**Warning:** runs overlapped (JOBS > 1): time and memory columns are contended.")
    if any(e["r"] and e["r"]["blas_core"] not in ("Cooperlake", "SkylakeX") for e in runs):
        print("\n**Warning:** some runs used a slower OpenBLAS core than the machine's AVX-512 one.")

    # ---- (a) ----------------------------------------------------------------
    print("\n## (a) Methods per data set (held-out test split)\n")
    print("PT uses l = 100 prompt vectors; DePT and EPT use m = 60 and the largest rank r whose "
          "parameters fit PT's budget (m*d + r*(s+d) [+ EPT's K(2dq+d+1)] <= l*d, d = 256, "
          "s = max length). Params include the head (C x 512 + C). s/epoch is wall time of the "
          "training loop (tokenization and the per-epoch validation included) per epoch, as "
          "dept-train reports it; CPU share is the process's CPU time over its wall time (one "
          "OpenBLAS thread: 1.00 = it never waited for a core); the CPU columns are the wall "
          "figures x that share, i.e. what the run costs on a core of its own, comparable "
          "across runs when other jobs shared the machine. tokens counts prompt rows + padded "
          "token positions through forward and backward; peak RSS is the whole process; "
          "inference is the test pass per 1,000 rows.\n")
    header = ["method", "m / l", "r", "params", "test acc %", "test macro-F1 %", "valid acc %",
              "wall s/epoch", "CPU s/epoch", "tokens/CPU-s", "peak RSS MB", "infer CPU-ms/1k rows",
              "CPU share"]
    for ds in datasets:
        rows = []
        info = None
        for method in ("probe", "pt", "dept", "ept"):
            e = next((x for x in runs if x["role"] == "main" and x["dataset"] == ds
                      and x["method"] == method and x["seed"] == seed), None)
            if e is None:
                continue
            if e["r"] is None:
                rows.append([METHOD_LABEL[method], e["m"], "-", "-", f"FAILED: {e.get('error', '')}"]
                            + ["-"] * 8)
                continue
            r = e["r"]
            info = info or r
            rows.append([METHOD_LABEL[method], r["prompt_length"], r["rank"] or "-",
                         fmt_int(r["trainable_params"]), pct(r["test"]["accuracy"]),
                         pct(r["test"]["macro_f1"]), pct(r["valid"]["accuracy"] if r["valid"] else None),
                         f"{r['seconds_per_epoch']:.1f}", f"{cpu_epoch(e):.1f}",
                         f"{cpu_tps(e):.0f}" if r["tokens_per_second"] else "-",
                         f"{r['peak_rss_mb']:.0f}", f"{cpu_infer(e):.0f}", share_cell(e)])
        if info:
            print(f"### {ds} ({TASKS.get(ds, '?')}, {n_classes(info)} classes; "
                  f"{info['train_rows']} train + {info['valid_rows']} valid rows, "
                  f"{info['test']['rows']} test rows, seed {seed})\n")
        else:
            print(f"### {ds}\n")
        print(table(header, rows) + "\n")

    # ---- (b) ----------------------------------------------------------------
    sweep = [e for e in runs if e["role"] == "sweep"]
    if sweep:
        sds = sweep[0]["dataset"]
        print(f"\n## (b) DePT prompt length m at the budget of PT l = 100 ({sds}, seed {seed})\n")
        print("m = 0 is the low-rank update alone, m = 100 (r = 0) is PT itself. "
              "Time and memory relative to PT l = 100.\n")
        pt = find(runs, sds, "pt", 100, seed)
        cands = {}
        for e in sweep + [x for x in runs if x["dataset"] == sds and x["seed"] == seed
                          and x["method"] == "dept"]:
            cands.setdefault(e["m"], e)
            if cands[e["m"]]["r"] is None and e["r"] is not None:
                cands[e["m"]] = e
        rows = []
        pts = []   # (prompt rows, s/epoch, rss) for the fits
        for m in sorted(cands):
            e = cands[m]
            if e["r"] is None:
                rows.append([m, "-", "-", f"FAILED (exit {e['rc']}): {e.get('error', '')}"] + ["-"] * 10)
                continue
            r = e["r"]
            pts.append((r["prompt_length"], cpu_epoch(e), r["peak_rss_mb"], r))
            rows.append(row_b(e, pt) + [share_cell(e)])
        if pt:
            rows.append(row_b(pt, pt, label="100 (PT)") + [share_cell(pt)])
            pts.append((100, cpu_epoch(pt), pt["r"]["peak_rss_mb"], pt["r"]))
        print(table(["m", "r", "params", "test acc %", "test macro-F1 %", "valid acc %", "wall s/epoch",
                     "CPU s/epoch", "CPU time vs PT", "tokens/CPU-s", "peak RSS MB", "RSS vs PT",
                     "infer CPU-ms/1k", "CPU share"],
                    rows) + "\n")
        if len(pts) >= 3:
            a_t, b_t, r2_t = linfit([p[0] for p in pts], [p[1] for p in pts])
            a_m, b_m, r2_m = linfit([p[0] for p in pts], [p[2] for p in pts])
            print(f"Least-squares fits over these {len(pts)} runs: CPU seconds/epoch = {a_t:.1f} + "
                  f"{b_t:.3f} x (prompt rows) (R^2 {r2_t:.3f}); peak RSS MB = {a_m:.0f} + "
                  f"{b_m:.2f} x (prompt rows) (R^2 {r2_m:.3f}). The sequence is prompt rows + "
                  f"tokens, so time is affine in m; the backbone's run buffers are allocated for "
                  f"batch x (prompt rows + max length) positions, so memory is too.\n")

    # ---- (c) ----------------------------------------------------------------
    print("\n## (c) The papers' claims against these measurements\n")
    print("An accuracy difference counts as noise when it is within 2 standard errors of the "
          "difference of two independent accuracies on the same number of test rows "
          "(2 x sqrt(2 p (1-p) / n)); with two seeds the mean over seeds is used.\n")
    rows = []
    for ds in datasets:
        rows += claims_for(runs, ds, seed)
    print(table(["claim", "data set", "measured", "verdict"], rows) + "\n")
    analysis(runs, datasets, seed, int(machine.get("batch_size") or 32))

    # ---- (d) ----------------------------------------------------------------
    seeds_by_ds = {}
    for e in runs:
        if e["r"] is not None:
            seeds_by_ds.setdefault(e["dataset"], set()).add(e["seed"])
    multi = [ds for ds in datasets if len(seeds_by_ds.get(ds, ())) > 1]
    if multi:
        print("\n## (d) Seed variance (test accuracy %, and macro-F1 %)\n")
        rows = []
        for ds in multi:
            for method in ("probe", "pt", "dept", "ept"):
                accs, f1s, cells = [], [], []
                for s in sorted(seeds_by_ds[ds]):
                    e = find(runs, ds, method, None if method == "probe" else main_m(method), s)
                    if e:
                        accs.append(e["r"]["test"]["accuracy"])
                        f1s.append(e["r"]["test"]["macro_f1"])
                        cells.append(f"{pct(accs[-1])} / {pct(f1s[-1])}")
                    else:
                        cells.append("-")
                if accs:
                    rows.append([ds, METHOD_LABEL[method]] + cells +
                                [f"{pct(sum(accs) / len(accs))}",
                                 f"{100 * (max(accs) - min(accs)):.1f}"])
        seeds = sorted(set().union(*(seeds_by_ds[ds] for ds in multi)))
        print(table(["data set", "method"] + [f"seed {s}" for s in seeds] +
                    ["mean acc", "spread (pp)"], rows) + "\n")


def main_m(method):
    return {"pt": 100, "dept": 60, "ept": 60}.get(method)


def row_b(e, pt, label=None):
    r = e["r"]
    prt = pt["r"] if pt else None
    rel_t = f"{cpu_epoch(e) / cpu_epoch(pt) - 1:+.0%}" if prt else "-"
    rel_m = f"{r['peak_rss_mb'] / prt['peak_rss_mb'] - 1:+.0%}" if prt else "-"
    return [label or r["prompt_length"], r["rank"] or "-", fmt_int(r["trainable_params"]),
            pct(r["test"]["accuracy"]), pct(r["test"]["macro_f1"]),
            pct(r["valid"]["accuracy"] if r["valid"] else None), f"{r['seconds_per_epoch']:.1f}",
            f"{cpu_epoch(e):.1f}", rel_t, f"{cpu_tps(e):.0f}", f"{r['peak_rss_mb']:.0f}", rel_m,
            f"{cpu_infer(e):.0f}"]


def linfit(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    b = sxy / sxx if sxx else 0.0
    a = my - b * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys))
    return a, b, (1 - ss_res / ss_tot) if ss_tot else 1.0


def mean_acc(runs, ds, method):
    """Mean test accuracy over every seed of (ds, method at its main m), the seed count, rows."""
    accs, rows = [], 0
    for e in runs:
        if (e["dataset"] == ds and e["method"] == method and e["r"] is not None
                and (method == "probe" or e["m"] == main_m(method))
                and e["role"] in ("main", "seeds")):
            accs.append(e["r"]["test"]["accuracy"])
            rows = e["r"]["test"]["rows"]
    if not accs:
        return None, 0, 0
    return sum(accs) / len(accs), len(accs), rows


def compare(runs, ds, a, b):
    """'a >= b' accuracy verdict: (text, verdict)."""
    pa, na, rows = mean_acc(runs, ds, a)
    pb, nb, _ = mean_acc(runs, ds, b)
    if pa is None or pb is None:
        return None
    delta = pa - pb
    # the test rows are the same for every seed, so more seeds do not shrink this
    noise = 2 * math.sqrt(2) * se_acc((pa + pb) / 2, rows)
    seeds = f", mean of {min(na, nb)} seeds" if min(na, nb) > 1 else ""
    text = (f"{METHOD_LABEL[a]} {pct(pa)} vs {METHOD_LABEL[b]} {pct(pb)} "
            f"({100 * delta:+.1f} pp, noise +/-{100 * noise:.1f} pp{seeds})")
    if delta >= 0:
        verdict = "holds" if delta > noise else "holds, within noise"
    else:
        verdict = "fails, within noise" if -delta <= noise else "fails"
    return text, verdict


def claims_for(runs, ds, seed):
    rows = []
    pt, dept, ept, probe = (find(runs, ds, "pt", 100, seed), find(runs, ds, "dept", 60, seed),
                            find(runs, ds, "ept", 60, seed), find(runs, ds, "probe", None, seed))
    c = compare(runs, ds, "dept", "pt")
    if c and pt and dept:
        rows.append(["DePT >= PT accuracy at equal params", ds,
                     c[0] + f"; params {fmt_int(dept['r']['trainable_params'])} vs "
                     f"{fmt_int(pt['r']['trainable_params'])}", c[1]])
    if pt and dept:
        t = 1 - cpu_epoch(dept) / cpu_epoch(pt)
        tw = 1 - dept["r"]["seconds_per_epoch"] / pt["r"]["seconds_per_epoch"]
        rows.append(["DePT > 20% less training time than PT", ds,
                     f"{cpu_epoch(dept):.1f} vs {cpu_epoch(pt):.1f} CPU s/epoch: {t:.0%} less "
                     f"(wall: {tw:.0%}; positions trained {dept['r']['train_tokens'] / pt['r']['train_tokens']:.2f}x PT's)",
                     "holds" if t > 0.20 else "fails"])
        mem = 1 - dept["r"]["peak_rss_mb"] / pt["r"]["peak_rss_mb"]
        extra = ""
        if probe:
            base = probe["r"]["peak_rss_mb"]
            above = 1 - (dept["r"]["peak_rss_mb"] - base) / max(pt["r"]["peak_rss_mb"] - base, 1e-9)
            extra = f"; above the probe's {base:.0f} MB: {above:.0%} less"
        rows.append(["DePT > 20% less memory than PT", ds,
                     f"peak RSS {dept['r']['peak_rss_mb']:.0f} vs {pt['r']['peak_rss_mb']:.0f} MB: "
                     f"{mem:.0%} less{extra}", "holds" if mem > 0.20 else "fails"])
        inf = 1 - cpu_infer(dept) / cpu_infer(pt)
        rows.append(["(DePT faster inference than PT)", ds,
                     f"{cpu_infer(dept):.0f} vs {cpu_infer(pt):.0f} CPU-ms/1k rows: {inf:.0%} less",
                     "holds" if inf > 0 else "fails"])
    c = compare(runs, ds, "ept", "dept")
    if c and ept:
        rows.append(["EPT > DePT accuracy", ds, c[0] + f"; EPT r = {ept['r']['rank']}", c[1]])
    if ept and pt and dept:
        t_pt = 1 - cpu_epoch(ept) / cpu_epoch(pt)
        t_de = 1 - cpu_epoch(ept) / cpu_epoch(dept)
        rows.append(["EPT ~14% less training time than its baselines", ds,
                     f"{cpu_epoch(ept):.1f} CPU s/epoch: {t_pt:.0%} less than PT, "
                     f"{abs(t_de):.0%} {'less' if t_de >= 0 else 'more'} than DePT", "holds vs PT only" if t_pt >= 0.14 > t_de
                     else ("holds" if t_de >= 0.14 else "fails")])
    for method in ("pt", "dept", "ept"):
        c = compare(runs, ds, method, "probe")
        if c:
            rows.append([f"{METHOD_LABEL[method]} beats the linear probe", ds, c[0], c[1]])
    return rows


def rows_trained(r, batch):
    """Rows through forward + backward: whole epochs, then full batches."""
    per_epoch = max(1, -(-r["train_rows"] // batch))
    full, rest = divmod(r["steps"], per_epoch)
    return max(1, full * r["train_rows"] + rest * batch)


def analysis(runs, datasets, seed, batch):
    """Numbers behind the verdicts: token counts, time per token, memory split."""
    print("Derived numbers:\n")
    for ds in datasets:
        pt, dept = find(runs, ds, "pt", 100, seed), find(runs, ds, "dept", 60, seed)
        probe = find(runs, ds, "probe", None, seed)
        if not (pt and dept):
            continue
        p, d = pt["r"], dept["r"]
        seq_pt = p["train_tokens"] / rows_trained(p, batch)
        seq_de = d["train_tokens"] / rows_trained(d, batch)
        line = (f"- {ds}: mean padded sequence per row {seq_pt:.0f} (PT) vs {seq_de:.0f} (DePT) "
                f"positions, {1 - seq_de / seq_pt:.0%} fewer; training CPU time {1 - cpu_epoch(dept) / cpu_epoch(pt):.0%} less; "
                f"tokens per CPU-s {cpu_tps(dept):.0f} vs {cpu_tps(pt):.0f}")
        if probe:
            line += (f"; peak RSS: probe {probe['r']['peak_rss_mb']:.0f} MB (model + forward "
                     f"buffers), DePT {d['peak_rss_mb']:.0f}, PT {p['peak_rss_mb']:.0f}")
        print(line + ".")
    print()


if __name__ == "__main__":
    main()
