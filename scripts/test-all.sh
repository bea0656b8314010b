#!/usr/bin/env bash
# Run every test of dept on this machine: install dependencies, build,
# install, C unit tests (plain and under ASan/UBSan), then start a
# throw-away PostgreSQL cluster and run pg_regress, pgTAP and the shell TAP
# tests (training worker killed, pg_cron) against it.
# Ends with one line "N passed, N failed" and a non-zero exit on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# everything the tests read is in the checkout (nothing beside it); the tiny
# Hugging Face models for the unit tests, the fuzzers and the server tests:
export DEPT_HF_FIXTURES=${DEPT_HF_FIXTURES:-$root/test/fixtures/hf}

scripts/install-deps.sh
make -s -j"$(nproc)"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo make -s install >/dev/null

passed=0
failed=0
tally() {    # tally NAME PASSED FAILED
	echo "== $1: $2 passed, $3 failed"
	passed=$((passed + $2))
	failed=$((failed + $3))
}
count_unit() {    # reads run-unit.sh output on stdin
	sed -n 's/^unit: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' | tail -1
}

# --- the layers of src/ stay one-way (docs/architecture.md) -------------------
if scripts/check-layers.sh; then tally "layers" 1 0; else tally "layers" 0 1; fi

# --- C unit tests of src/nn -------------------------------------------------
set +e
make -s unittest >build/unit.log 2>&1; rc=$?
set -e
cat build/unit.log
read -r p f < <(count_unit <build/unit.log || true)
[ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ] && f=1
tally "unit" "${p:-0}" "${f:-1}"

set +e
make -s unittest SANITIZE=1 >build/unit-asan.log 2>&1; rc=$?
set -e
cat build/unit-asan.log
read -r p f < <(count_unit <build/unit-asan.log || true)
[ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ] && f=1
tally "unit (ASan+UBSan)" "${p:-0}" "${f:-1}"

# --- fuzzing: each libFuzzer harness for a short fixed time ---------------------
set +e
test/fuzz/run.sh "${DEPT_FUZZ_SECONDS:-10}" >build/fuzz.log 2>&1; rc=$?
set -e
cat build/fuzz.log
read -r p f < <(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' build/fuzz.log | tail -1 || true)
[ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ] && f=1
tally "fuzz" "${p:-0}" "${f:-1}"

# --- a throw-away cluster ---------------------------------------------------
pgdir=$(mktemp -d /tmp/dept-test.XXXXXX)
port=${DEPT_TEST_PORT:-5499}
cleanup() { scripts/pg-cluster.sh stop "$pgdir" || true; rm -rf "$pgdir"; }
trap cleanup EXIT
scripts/pg-cluster.sh start "$pgdir" "$port"
export PGHOST=$pgdir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
export DEPT_FIXTURE_DIR=$root/test/fixtures
# the tiny Hugging Face models of test/fixtures/hf, where the server (another OS user) can read them
hf=$DEPT_HF_FIXTURES
mkdir -p "$pgdir/models/bert-tiny" "$pgdir/models/t5-tiny"
cp "$hf"/bert-tiny-random/{config.json,model.safetensors,tokenizer.json,vocab.txt} \
	"$pgdir/models/bert-tiny/"
cp "$hf"/t5-tiny-random/{config.json,model.safetensors,tokenizer.json} \
	"$pgdir/models/t5-tiny/"
for family in roberta xlm-roberta distilbert deberta-v3 modernbert; do
	mkdir -p "$pgdir/models/$family-tiny"
	for f in config.json model.safetensors tokenizer.json vocab.txt; do
		if [ -f "$hf/$family-tiny-random/$f" ]; then cp "$hf/$family-tiny-random/$f" "$pgdir/models/$family-tiny/"; fi
	done
done
chmod -R a+rX "$pgdir/models"
export DEPT_BERT_DIR=$pgdir/models/bert-tiny DEPT_T5_DIR=$pgdir/models/t5-tiny DEPT_HF_MODELS=$pgdir/models

# --- pg_regress -------------------------------------------------------------
set +e
make -s installcheck >build/regress.log 2>&1; rc=$?
set -e
cat build/regress.log
[ -f regression.diffs ] && cat regression.diffs
total=$(grep -cE '^(not )?ok [0-9]+|^test [a-z0-9_]+ +\.\.\. ' build/regress.log || true)
bad=$(grep -cE '^not ok |\.\.\. FAILED' build/regress.log || true)
[ "$rc" -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
tally "pg_regress" "$((total - bad > 0 ? total - bad : 0))" "$bad"

# --- pgTAP ------------------------------------------------------------------
psql -q -X -c 'CREATE DATABASE dept_tap' >/dev/null
set +e
PGDATABASE=dept_tap pg_prove --ext .sql -r test/pgtap >build/pgtap.log 2>&1; rc=$?
set -e
cat build/pgtap.log
tests=$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' build/pgtap.log | tail -1)
bad=$(sed -n 's/^.*Failed \([0-9]*\)\/[0-9]* subtests.*/\1/p' build/pgtap.log | awk '{s+=$1} END {print s+0}')
[ "$rc" -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
tally "pgTAP" "$(( ${tests:-0} - bad > 0 ? ${tests:-0} - bad : 0))" "$bad"

# --- shell TAP tests: worker crash, pg_cron --------------------------------
set +e
prove test/sh/*.sh >build/sh.log 2>&1; rc=$?
set -e
cat build/sh.log
tests=$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' build/sh.log | tail -1)
bad=$(sed -n 's/^.*Failed \([0-9]*\)\/[0-9]* subtests.*/\1/p' build/sh.log | awk '{s+=$1} END {print s+0}')
[ "$rc" -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
tally "shell TAP" "$(( ${tests:-0} - bad > 0 ? ${tests:-0} - bad : 0))" "$bad"

# --- load: 16 clients during training and version flips (reduced to 20 s) ---
set +e
prove -v test/stress/load.sh :: "${DEPT_STRESS_SECONDS:-20}" >build/stress.log 2>&1; rc=$?
set -e
cat build/stress.log
tests=$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' build/stress.log | tail -1)
bad=$(grep -c '^not ok' build/stress.log || true)
[ "$rc" -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
tally "load" "$(( ${tests:-0} - bad > 0 ? ${tests:-0} - bad : 0))" "$bad"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
