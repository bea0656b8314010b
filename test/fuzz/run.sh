#!/usr/bin/env bash
# Build every libFuzzer harness in test/fuzz/ (fuzz_*.c) against src/nn/**/*.c
# with -fsanitize=fuzzer,address,undefined and run each for SECONDS
# (default 20), one after the other:
#
#   test/fuzz/run.sh [SECONDS] [NAME ...]     NAME: adapter_io, bpe, f32_sidecar, hf_config,
#                                             hf_unigram, packed_file, safetensors,
#                                             safetensors_index, tokenizer,
#                                             weights, wordpiece
#
# New corpus entries go to build/fuzz/corpus/<name>/, the committed seeds
# in test/fuzz/corpus/<name>/ are only read; a crash, leak, timeout or
# out-of-memory leaves build/fuzz/<name>-crash-<sha1> (or leak-, timeout-,
# oom-).  Prints one TAP line per harness with executions, coverage (cov =
# edges, ft = features) and corpus size, then "N passed, N failed"; exits
# non-zero if a harness failed to build or found anything.
#
# Environment: CC (default clang), DEPT_MODEL_DIR (vocab.json for the
# tokenizer harness, default build/model/use-lite: run make first),
# DEPT_HF_FIXTURES (the tiny Hugging Face models for the wordpiece,
# hf_unigram, bpe and safetensors_index harnesses, default test/fixtures/hf), FUZZ_FLAGS (extra
# libFuzzer flags, e.g. -jobs=2 -workers=2).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2

seconds=${1:-20}
[ $# -gt 0 ] && shift
cc=${CC:-clang}
out=build/fuzz
obj=$out/obj
mkdir -p "$obj"

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
	for f in test/fuzz/fuzz_*.c; do
		n=$(basename "$f" .c)
		names+=("${n#fuzz_}")
	done
fi

# Per-harness input size limit: the tokenizer needs more than one 512-code
# point block to reach its streaming paths; the tokenizer.json seeds of
# wordpiece, hf_unigram and bpe are up to 8 KB.
max_len_of() {
	case "$1" in
	tokenizer | wordpiece | hf_unigram | bpe) echo 8192 ;;
	*) echo 4096 ;;
	esac
}

read -ra blas_cflags <<<"$(pkg-config --cflags openblas 2>/dev/null || true)"
cflags=(-std=c11 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer -Isrc/nn "${blas_cflags[@]}")
libs=(-lutf8proc -lcjson -lm -ldl -lpthread)
san=address,undefined

# src/nn once, instrumented for coverage but without libFuzzer's main.
objs=()
for src in $(find src/nn -name "*.c" | sort); do
	o=$obj/$(basename "$src" .c).o
	if [ ! -f "$o" ] || [ "$src" -nt "$o" ] || [ -n "$(find src/nn -name '*.h' -newer "$o")" ]; then
		"$cc" "${cflags[@]}" -fsanitize=fuzzer-no-link,$san -fno-sanitize-recover=all \
			-c -o "$o" "$src" || {
			echo "Bail out! cannot compile $src"
			exit 1
		}
	fi
	objs+=("$o")
done

passed=0
failed=0
i=0
echo "1..${#names[@]}"
for name in "${names[@]}"; do
	i=$((i + 1))
	src=test/fuzz/fuzz_$name.c
	bin=$out/fuzz_$name
	log=$out/fuzz_$name.log
	if ! "$cc" "${cflags[@]}" -fsanitize=fuzzer,$san -fno-sanitize-recover=all -o "$bin" \
		"$src" "${objs[@]}" "${libs[@]}" 2>"$out/fuzz_$name.build.log"; then
		cat "$out/fuzz_$name.build.log"
		echo "not ok $i - fuzz_$name: does not build"
		failed=$((failed + 1))
		continue
	fi
	mkdir -p "$out/corpus/$name"
	seeds=()
	[ -d "test/fuzz/corpus/$name" ] && seeds=("test/fuzz/corpus/$name")
	dict=()
	[ -f "test/fuzz/$name.dict" ] && dict=("-dict=test/fuzz/$name.dict")
	# shellcheck disable=SC2086
	"$bin" -max_total_time="$seconds" -max_len="$(max_len_of "$name")" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/$name-" \
		"${dict[@]}" ${FUZZ_FLAGS:-} "$out/corpus/$name" "${seeds[@]}" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	last=$(grep -aE '^#[0-9]+' "$log" | tail -1)
	cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
	ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
	corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
	stats="cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}"
	if [ "$rc" -eq 0 ] && ! grep -aqE '^==[0-9]+==ERROR|^SUMMARY: |Test unit written' "$log"; then
		echo "ok $i - fuzz_$name: ${execs:-?} executions in $seconds s, $stats"
		passed=$((passed + 1))
	else
		echo "not ok $i - fuzz_$name: failed after ${execs:-?} executions (exit $rc), $stats"
		grep -aE 'ERROR|SUMMARY|fuzz_[a-z_]+: |Test unit written|artifact' "$log" | head -20 | sed 's/^/# /'
		echo "# full log: $log"
		failed=$((failed + 1))
	fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
