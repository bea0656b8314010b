#!/usr/bin/env bash
# Few-shot transfer (issue 15, item 3; the DePT paper's few-shot setting on
# our data): a DePT adapter trained on SST-2 (sentences) starts MR and CR
# classifiers from k = 16, 32, 64 examples per class, against the same
# from scratch, over 5 seeds.  Both arms use the same rows, options and
# step count; the SST-2 adapter's head comes along (the labels are 0/1 in
# all three sets).  Validation: k rows per class from the set's validation
# split; test: the set's test split, read once per run.
#   bench/transfer.sh [SEEDS]        (default "1 2 3 4 5"; after make)
# Needs bench/accuracy's splits (it makes them: bench/accuracy --tier small
# --sets sst2_sentence,mr,cr --configs probe --no-test --no-baseline).
# Prints a markdown table (mean and standard deviation of test accuracy)
# and writes build/bench/transfer/results.tsv.  Resumes: a (set, k, seed,
# init) already in results.tsv is not run again, so more seeds can be added
# to an earlier run (remove results.tsv to start over).
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-1 2 3 4 5}
splits=build/bench/accuracy/splits/small
out=build/bench/transfer
mkdir -p "$out"
[ -f "$splits/cr/test.tsv" ] || bench/accuracy --tier small --sets sst2_sentence,mr,cr \
	--configs probe --no-test --no-baseline >/dev/null
make -s dept-train
model=build/model/use-lite
common=(--model "$model" --method dept --prompt-length 20 --max-length 64 --threads 1 --quiet)

# the source adapter: DePT on the SST-2 training split, validated on its validation split
if [ ! -f "$out/sst2.adapter" ]; then
	cat "$splits/sst2_sentence/train.tsv" <(tail -n +2 "$splits/sst2_sentence/valid.tsv") >"$out/sst2_trainvalid.tsv"
	./dept-train --train "$out/sst2_trainvalid.tsv" --valid-rows $(($(wc -l <"$splits/sst2_sentence/valid.tsv") - 1)) \
		"${common[@]}" --epochs 3 --save "$out/sst2.adapter" --report "$out/sst2.json"
fi

# k rows per class of FILE, drawn with SEED (header kept)
sample_k() {    # sample_k FILE K SEED
	/usr/bin/python3 - "$1" "$2" "$3" <<'PY'
import random, sys
path, k, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lines = open(path, encoding="utf-8").read().splitlines()
by = {}
for line in lines[1:]:
    by.setdefault(line.split("\t", 1)[0], []).append(line)
rng = random.Random(seed)
print(lines[0])
for label in sorted(by):
    rows = by[label][:]
    rng.shuffle(rows)
    print("\n".join(rows[:k]))
PY
}

done_run() {    # done_run SET K SEED INIT: is the run already in results.tsv?
	grep -q "^$1	$2	$3	$4	" "$out/results.tsv"
}

[ -f "$out/results.tsv" ] || printf "set\tk\tseed\tinit\taccuracy\n" >"$out/results.tsv"
for set in mr cr; do
	for k in 16 32 64; do
		for seed in $seeds; do
			done_run "$set" "$k" "$seed" scratch && done_run "$set" "$k" "$seed" sst2 && continue
			sample_k "$splits/$set/train.tsv" "$k" "$seed" >"$out/train.tsv"
			sample_k "$splits/$set/valid.tsv" "$k" "$seed" | tail -n +2 >"$out/valid.tsv"
			cat "$out/train.tsv" "$out/valid.tsv" >"$out/trainvalid.tsv"
			for init in scratch sst2; do
				done_run "$set" "$k" "$seed" "$init" && continue
				extra=()
				[ "$init" = sst2 ] && extra=(--init-from "$out/sst2.adapter")
				./dept-train --train "$out/trainvalid.tsv" --valid-rows $((2 * k)) --test "$splits/$set/test.tsv" \
					"${common[@]}" --epochs 20 --seed "$seed" "${extra[@]}" --report "$out/run.json"
				acc=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["test"]["accuracy"])' "$out/run.json")
				printf "%s\t%s\t%s\t%s\t%s\n" "$set" "$k" "$seed" "$init" "$acc" >>"$out/results.tsv"
			done
		done
	done
done

/usr/bin/python3 - "$out/results.tsv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("| set | k per class | from scratch | from the SST-2 adapter |")
print("| --- | --- | --- | --- |")
for s in ("mr", "cr"):
    for k in ("16", "32", "64"):
        cell = {}
        for init in ("scratch", "sst2"):
            a = [float(r["accuracy"]) for r in rows if r["set"] == s and r["k"] == k and r["init"] == init]
            cell[init] = f"{100 * statistics.mean(a):.1f} ± {100 * statistics.stdev(a):.1f}" if len(a) > 1 else "-"
        print(f"| {s.upper()} | {k} | {cell['scratch']} | {cell['sst2']} |")
PY
