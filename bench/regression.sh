#!/usr/bin/env bash
# Regression on STS-B (issue 15, item 2): dev Pearson and Spearman of a
# probe-style regression and of a DePT regression on use-lite.
#
# STS-B is a sentence-pair task; until pairs land, each row's text is
# "sentence1 [SEP] sentence2" (one string; "[SEP]" is plain text to
# use-lite's tokenizer), its label the 0-5 similarity score.  The training
# file (3,749 rows, bench/data/stsb) is shuffled with a fixed seed; the
# last VALID rows of it validate (checkpoint selection: lowest MSE), the
# rows before train; STS-B dev (1,000 rows) is read once per run, as the
# test set.  The probe trains on every other row; DePT, whose steps cost a
# backbone forward and backward, on a subsample of DEPT_ROWS of them, so
# the whole script runs in a few minutes on 2 cores.  DePT's settings
# (prompt 20, head learning rate 0.03, 3 epochs) were chosen on the
# validation rows among the defaults (prompt 60, 0.01, 2 epochs), prompt
# 60 at 0.03 for 3 epochs, and prompt 20 at 0.03 for 3 and 6 epochs
# (bench/README.md); the probe keeps the defaults, 20 epochs.
#   bench/regression.sh [DEPT_ROWS] [DEPT_EPOCHS]    (default 1000, 3; after make)
# Prints a markdown table; reports in build/bench/regression/.
set -euo pipefail
cd "$(dirname "$0")/.."
dept_rows=${1:-1000}
dept_epochs=${2:-3}
valid=375
out=build/bench/regression
mkdir -p "$out"
[ -x dept-train ] || make -s dept-train
model=build/model/use-lite

# text<TAB>label; quotes dropped (the TSV reader does not unquote)
to_tsv() {
	echo -e "text\tlabel"
	zcat "$1" | awk -F'\t' 'BEGIN { OFS = "\t" } { gsub(/"/, "", $6); gsub(/"/, "", $7); print $6 " [SEP] " $7, $5 }'
}
to_tsv bench/data/stsb/sts-dev.csv.gz >"$out/dev.tsv"
to_tsv bench/data/stsb/sts-train.csv.gz | tail -n +2 |
	awk 'BEGIN { srand(15) } { print rand() "\t" $0 }' | sort -k1,1 | cut -f2- >"$out/shuffled.tsv"
n=$(wc -l <"$out/shuffled.tsv")
{ echo -e "text\tlabel"; cat "$out/shuffled.tsv"; } >"$out/probe_train.tsv"
{ echo -e "text\tlabel"; head -n "$dept_rows" "$out/shuffled.tsv"; tail -n "$valid" "$out/shuffled.tsv"; } >"$out/dept_train.tsv"

common=(--model "$model" --task regression --test "$out/dev.tsv" --valid-rows "$valid" --threads 1 --quiet)
./dept-train --train "$out/probe_train.tsv" --method probe --epochs 20 "${common[@]}" \
	--report "$out/probe.json"
./dept-train --train "$out/dept_train.tsv" --method dept --epochs "$dept_epochs" --max-length 64 \
	--prompt-length 20 --head-lr 0.03 \
	"${common[@]}" --report "$out/dept.json"

echo "| method | train rows | epochs | valid Pearson | dev Pearson | dev Spearman | dev MSE | train s |"
echo "|---|---|---|---|---|---|---|---|"
for m in probe dept; do
	python3 - "$out/$m.json" "$m" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("| %s | %d | %d | %.3f | %.3f | %.3f | %.3f | %.0f |" % (
	sys.argv[2], r["train_rows"], r["epochs"], r["valid"]["pearson"], r["test"]["pearson"],
	r["test"]["spearman"], r["test"]["mse"], r["seconds"]))
PY
done
