#!/usr/bin/env bash
# T5 text-to-text regression (issue 15), as the DePT code trains STS-B:
# each score rounded to the nearest 0.2 becomes a label string ("3.4"),
# trained by the text head's cross-entropy (dept-train --task regression
# on a T5).  A prediction ranks the bins by label log-likelihood; this
# script compares the two readings of that ranking on the same trained
# adapters: the probability-weighted mean of the bins (the default) and
# the likeliest bin (--bin-value argmax), by Pearson, Spearman and MSE on
# the validation rows (where the choice is made) and on the test rows.
#
# Two data sets, three seeds each:
#  - words: the label of test/pgtap/10-regression.sql, how many of six
#    words are "great" rather than "awful" (0..6, so 31 bins of which 7
#    hold rows); 560 rows, the last 56 of which validate, 140 test
#    rows; DePT m = 8 in a budget of 16, max_length 16, 10 epochs.  A task
#    even the tiny random T5 learns something of.
#  - STS-B, as bench/regression.sh reads it: the training file
#    (bench/data/stsb) shuffled with a fixed seed, its last 375 rows
#    validate, TRAIN_ROWS rows before them train; dev (1,000 rows) is the
#    test set.  Each row is "sentence1: <s1> sentence2: <s2>" (the DePT
#    code's format), its 0-5 score one of 26 bins.  DePT m = 20 in the default budget, max_length 64, EPOCHS.
# The checkpoint is the one of lowest validation MSE of the weighted mean;
# the prompt learning rate is 0.3 (the paper's for T5); the test set is
# read by the two evaluations only.
#   bench/t5_regression.sh [MODEL_DIR] [TRAIN_ROWS] [EPOCHS] [SEEDS]
#   (default test/fixtures/hf/t5-tiny-random, 1000, 3, "1 2 3"; after make)
# Prints a markdown table (mean ± sd over seeds); reports in build/bench/t5_regression/.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-test/fixtures/hf/t5-tiny-random}
train_rows=${2:-1000}
epochs=${3:-3}
seeds=${4:-1 2 3}
valid=375
out=build/bench/t5_regression
mkdir -p "$out"
[ -x dept-train ] || make -s dept-train

# words: k of six words "great", in an order fixed by the row number g
/usr/bin/python3 - "$out" <<'PY'
import hashlib, sys
def review(k, g):
    words = ["great"] * k + ["awful"] * (6 - k)
    order = sorted(range(6), key=lambda i: hashlib.md5(f"{i + 1}/{g}".encode()).hexdigest())
    return " ".join(words[i] for i in order) + " " + ["film", "meal", "book", "show"][g % 4]
for name, rows in (("words_train", range(1, 561)), ("words_test", range(1001, 1141))):
    with open(f"{sys.argv[1]}/{name}.tsv", "w") as f:
        f.write("text\tlabel\n")
        for g in rows:
            f.write(f"{review(g % 7, g)}\t{g % 7}\n")
PY

# STS-B: text<TAB>label in the DePT code's format; quotes dropped (the TSV reader does not unquote)
to_tsv() {
	echo -e "text\tlabel"
	zcat "$1" | awk -F'\t' 'BEGIN { OFS = "\t" } { gsub(/"/, "", $6); gsub(/"/, "", $7); print "sentence1: " $6 " sentence2: " $7, $5 }'
}
to_tsv bench/data/stsb/sts-dev.csv.gz >"$out/stsb_test.tsv"
to_tsv bench/data/stsb/sts-train.csv.gz | tail -n +2 |
	awk 'BEGIN { srand(15) } { print rand() "\t" $0 }' | sort -k1,1 | cut -f2- >"$out/shuffled.tsv"
{ echo -e "text\tlabel"; head -n "$train_rows" "$out/shuffled.tsv"; tail -n "$valid" "$out/shuffled.tsv"; } >"$out/stsb_train.tsv"
{ echo -e "text\tlabel"; tail -n "$valid" "$out/shuffled.tsv"; } >"$out/stsb_valid.tsv"
{ echo -e "text\tlabel"; tail -n 56 "$out/words_train.tsv"; } >"$out/words_valid.tsv"

for seed in $seeds; do
	./dept-train --model "$model" --train "$out/words_train.tsv" --valid-rows 56 --task regression --method dept \
		--prompt-length 8 --budget 16 --max-length 16 --lr 0.3 --epochs 10 --seed "$seed" \
		--threads 1 --quiet --save "$out/words$seed.adapter" --report "$out/words$seed.train.json"
	./dept-train --model "$model" --train "$out/stsb_train.tsv" --valid-rows "$valid" --task regression \
		--method dept --prompt-length 20 --max-length 64 --lr 0.3 --epochs "$epochs" --seed "$seed" \
		--threads 1 --quiet --save "$out/stsb$seed.adapter" --report "$out/stsb$seed.train.json"
	for set in words stsb; do
		for value in mean argmax; do
			for split in valid test; do
				./dept-train --model "$model" --load "$out/$set$seed.adapter" --test "$out/${set}_$split.tsv" \
					--task regression --bin-value "$value" --threads 1 --report "$out/$set$seed.$value.$split.json"
			done
		done
	done
done

/usr/bin/python3 - "$out" $seeds <<'PY'
import json, statistics, sys
out, seeds = sys.argv[1], sys.argv[2:]
def cell(a):
    return f"{statistics.mean(a):.3f} ± {statistics.stdev(a) if len(a) > 1 else 0.0:.3f}"
print("| data | prediction | valid Pearson | valid MSE | test Pearson | test Spearman | test MSE |")
print("|---|---|---|---|---|---|---|")
for name, set in (("words (valid 56, test 140)", "words"), ("STS-B (valid 375, dev 1000)", "stsb")):
    for value in ("mean", "argmax"):
        v = [json.load(open(f"{out}/{set}{s}.{value}.valid.json"))["test"] for s in seeds]
        t = [json.load(open(f"{out}/{set}{s}.{value}.test.json"))["test"] for s in seeds]
        print(f"| {name} | {'weighted mean' if value == 'mean' else 'argmax bin'} | "
              + " | ".join([cell([r["pearson"] for r in v]), cell([r["mse"] for r in v])]
                           + [cell([r[k] for r in t]) for k in ("pearson", "spearman", "mse")]) + " |")
PY
