#!/usr/bin/env bash
# dept-train with a Hugging Face T5 directory (the tiny random fixture of
# test/fixtures/hf): text-to-text by default (the JSON report says "head": "text",
# and test rows are ranked over the label strings), --head linear for the
# mean-pool + linear head, and the refusals: an unknown --head, a
# text-to-text probe, text-to-text on use-lite.  --task regression on T5
# trains 0.2-step bins (format version 5) read back as the weighted mean
# or, with --bin-value argmax, the likeliest bin.  No server needed.
set -uo pipefail
. "$(dirname "$0")/tap.bash"
root=$(cd "$(dirname "$0")/../.." && pwd)
t5=${DEPT_HF_FIXTURES:-$root/test/fixtures/hf}/t5-tiny-random
bin=$root/dept-train
dir=$(mktemp -d /tmp/dept-cli-t5.XXXXXX)
trap 'rm -rf "$dir"' EXIT
printf 'text\tlabel\n' >"$dir/train.tsv"
printf 'text\tlabel\n' >"$dir/test.tsv"
for i in $(seq 1 24); do
	printf 'a wonderful and moving film number %d\tpositive\na dull and boring film number %d\tnegative\n' \
		"$i" "$i" >>"$dir/train.tsv"
done
printf 'a fine film\tpositive\nboring\tnegative\nmoving\tpositive\n' >>"$dir/test.tsv"
common=(--train "$dir/train.tsv" --test "$dir/test.tsv" --model "$t5" --prompt-length 5
	--max-length 16 --max-steps 4 --batch-size 8 --quiet)

out=$("$bin" "${common[@]}" 2>"$dir/err")
ok $? "dept-train --model <t5 dir> trains (stderr: $(head -c 200 "$dir/err"))"
grep -q '"backbone": "t5", "head": "text"' <<<"$out"
ok $? "text-to-text by default on T5"
grep -q '"test": {"rows": 3, "accuracy": ' <<<"$out"
ok $? "the 3 test rows are evaluated"
grep -q '"per_class": {"negative": {' <<<"$out" && grep -q '"positive": {' <<<"$out"
ok $? "per-class metrics name the label strings"

out=$("$bin" "${common[@]}" --head linear 2>/dev/null)
ok $? "--head linear trains"
grep -q '"head": "linear"' <<<"$out"
ok $? "--head linear keeps the mean-pool + linear head"

"$bin" "${common[@]}" --head seq2seq >/dev/null 2>"$dir/err"
is "$?" "2" "an unknown --head is a usage error"
grep -q 'must be text or linear' "$dir/err"
ok $? "and says what --head takes"

"$bin" "${common[@]}" --method probe --head text >/dev/null 2>"$dir/err"
is "$?" "1" "a text-to-text probe is refused"
grep -q 'probe trains only a linear head' "$dir/err"
ok $? "with the reason"

"$bin" --train "$dir/train.tsv" --model "$root/build/model/use-lite" --head text --max-steps 1 \
	--quiet >/dev/null 2>"$dir/err"
is "$?" "1" "text-to-text on use-lite is refused"
grep -q 'needs a T5 backbone' "$dir/err"
ok $? "with the reason"
# a regression: scores 1.0, 2.6 and 4.2 are 17 bins of 0.2
printf 'text\tlabel\n' >"$dir/reg.tsv"
for i in $(seq 1 16); do
	printf 'a wonderful film number %d\t4.2\na dull film number %d\t1.0\na plain film number %d\t2.6\n' \
		"$i" "$i" "$i" >>"$dir/reg.tsv"
done
out=$("$bin" --train "$dir/reg.tsv" --test "$dir/reg.tsv" --task regression --model "$t5" \
	--prompt-length 5 --max-length 16 --max-steps 4 --batch-size 8 --quiet --save "$dir/reg.adapter" 2>"$dir/err")
ok $? "--task regression trains on T5's text head (stderr: $(head -c 200 "$dir/err"))"
grep -q '"head": "text"' <<<"$out" && grep -q '"task": "regression", "classes": 17' <<<"$out"
ok $? "over 17 bins"
grep -q '"test": {"rows": 48, "pearson": ' <<<"$out"
ok $? "its test report has Pearson, Spearman and MSE"
is "$(od -An -tu1 -j4 -N1 "$dir/reg.adapter" | tr -d ' ')" "5" "saved as format version 5"
out=$("$bin" --load "$dir/reg.adapter" --test "$dir/reg.tsv" --task regression --model "$t5" \
	--bin-value argmax 2>/dev/null)
grep -q '"bin_value": "argmax"' <<<"$out" && grep -q '"rows": 48, "pearson": ' <<<"$out"
ok $? "--load --bin-value argmax evaluates the likeliest bin"
"$bin" --load "$dir/reg.adapter" --test "$dir/reg.tsv" --task regression --model "$t5" \
	--bin-value median >/dev/null 2>"$dir/err"
is "$?" "2" "an unknown --bin-value is a usage error"
finish
