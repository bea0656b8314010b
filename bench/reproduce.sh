#!/usr/bin/env bash
# Reproduce the DePT / PT / EPT / linear-probe comparison on use-lite (CPU)
# and print the tables (bench/README.md has the results and the analysis).
#
#   bench/reproduce.sh              full run, ~35 min on 2 idle cores (44 min measured
#                                   on a shared machine, waits and re-runs included)
#   QUICK=1 bench/reproduce.sh      smoke run, ~1-2 min: 1 data set, 8 steps
#
# Steps: build ./dept-train, write subsampled TSVs (bench/prepare_data.py),
# then, one dept-train process at a time on 1 OpenBLAS thread:
#   main   every data set in DATASETS x {probe, PT l=100, DePT m=60, EPT m=60}
#          (DePT/EPT rank from the budget of PT with 100 vectors), seed SEED
#   sweep  DePT with m in SWEEP_M on SWEEP_DATASET, same budget and seed
#          (m=60 is the main run's; PT l=100 is the m=100, r=0 end point)
#   seeds  the four methods again with EXTRA_SEED on EXTRA_SEED_DATASETS
# Every report lands in $OUT/runs/<data set>/<method>-m<m>-seed<seed>.json, one
# JSON line per attempt (exit status, wall and CPU seconds, the share of a core
# the run got, how many cores other processes kept busy meanwhile) in
# $OUT/manifest.jsonl, the machine in $OUT/machine.json; finally
# bench/summarize.py prints the markdown tables (also saved to
# $OUT/summary.md).
#
# The machine is shared: a run that got less than CPU_SHARE_MIN of a core
# (other processes took turns on its core) measured a contended machine, so
# it is queued and run again after the schedule, up to RETRIES more times
# within RETRY_BUDGET seconds (and before each run the script waits a little
# for a quiet machine).  The summary uses each run's least contended attempt,
# and reports CPU seconds (wall x CPU share) next to wall seconds: with one
# OpenBLAS thread they equal wall time on an idle machine and stay comparable
# when other jobs take turns on the cores.
#
# Environment (defaults for the full run):
#   DATASETS="sst2_glue trec agnews"  MAX_TRAIN=2000  MAX_TEST=1000
#   EPOCHS=3  MAX_STEPS=0 (0 = epochs decide)  BATCH=32  MAX_LENGTH=128
#   SEED=42  EXTRA_SEED=43  EXTRA_SEED_DATASETS="sst2_glue" ("" = none)
#   SWEEP_DATASET=sst2_glue  SWEEP_M="0 20 40 80" ("" = no sweep)
#   THREADS=1  JOBS=1 (2 runs two processes at once: faster, but the time and
#   memory columns then measure a contended machine; the summary says so)
#   CPU_SHARE_MIN=0.90  RETRIES=2 (JOBS=1 only; RETRIES=0 never re-runs)
#   RETRY_BUDGET=900: seconds the retries may take in all
#   QUIET_WAIT=60: before each run, wait up to this many seconds for the other
#   processes to use less than half a core, QUIET_WAIT_TOTAL=300 in all (0 = never)
#   OUT=build/bench  RESUME=1 (keep the manifest, skip runs whose report exists)
#   DEPT_MODEL_DIR=build/model/use-lite
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${QUICK:-0}" = 1 ]; then
	: "${DATASETS:=sst2_glue}" "${MAX_TRAIN:=300}" "${MAX_TEST:=200}" "${MAX_STEPS:=8}"
	: "${EXTRA_SEED_DATASETS=sst2_glue}" "${SWEEP_M=0 20 40 80}" "${OUT:=build/bench-quick}"
	: "${RETRIES:=0}" "${QUIET_WAIT:=0}"
fi
DATASETS=${DATASETS-sst2_glue trec agnews}
MAX_TRAIN=${MAX_TRAIN:-2000}
MAX_TEST=${MAX_TEST:-1000}
EPOCHS=${EPOCHS:-3}
MAX_STEPS=${MAX_STEPS:-0}
BATCH=${BATCH:-32}
MAX_LENGTH=${MAX_LENGTH:-128}
SEED=${SEED:-42}
EXTRA_SEED=${EXTRA_SEED:-43}
EXTRA_SEED_DATASETS=${EXTRA_SEED_DATASETS-sst2_glue}
SWEEP_DATASET=${SWEEP_DATASET:-sst2_glue}
SWEEP_M=${SWEEP_M-0 20 40 80}
THREADS=${THREADS:-1}
JOBS=${JOBS:-1}
CPU_SHARE_MIN=${CPU_SHARE_MIN:-0.90}
RETRIES=${RETRIES:-2}
RETRY_BUDGET=${RETRY_BUDGET:-900}
QUIET_WAIT=${QUIET_WAIT:-60}
QUIET_WAIT_TOTAL=${QUIET_WAIT_TOTAL:-300}
QUIET_WAITED=0
OUT=${OUT:-build/bench}
RESUME=${RESUME:-0}
MODEL=${DEPT_MODEL_DIR:-build/model/use-lite}
DATA=$OUT/data
PT_LENGTH=100       # l: PT's prompt and the budget every DePT/EPT run matches
DEPT_M=60           # the paper's default short prompt

# OpenBLAS picks its kernels when it loads: OPENBLAS_CORETYPE=Haswell (set in
# this environment) halves sgemm speed, so every run goes without it.
RUN_ENV=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE -u OPENBLAS_NUM_THREADS -u OMP_NUM_THREADS)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

make -s dept-train
[ -f "$MODEL/model.json" ] || make -s model
mkdir -p "$OUT/runs" "$OUT/bin" "$DATA"
# a private copy, so that a rebuild of ./dept-train during the schedule changes nothing
BIN=$OUT/bin/dept-train
cp dept-train "$BIN"
MANIFEST=$OUT/manifest.jsonl
[ "$RESUME" = 1 ] || : >"$MANIFEST"
T_START=$(date +%s)

# ---- machine ------------------------------------------------------------------
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
blas_core=$("${RUN_ENV[@]}" python3 -c '
import ctypes, ctypes.util
lib = ctypes.CDLL(ctypes.util.find_library("openblas") or "libopenblas.so.0")
lib.openblas_get_corename.restype = ctypes.c_char_p
print(lib.openblas_get_corename().decode())' 2>/dev/null || echo unknown)
cat >"$OUT/machine.json" <<EOF
{"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "host_cores": $(nproc), "cpu_model": "$cpu_model",
 "cpu_flags_avx512f": $(grep -qw avx512f /proc/cpuinfo && echo true || echo false),
 "mem_total_mb": $(awk '/MemTotal/ {printf "%d", $2 / 1024}' /proc/meminfo),
 "openblas_core_without_env": "$blas_core", "env_OPENBLAS_CORETYPE": "${OPENBLAS_CORETYPE:-}",
 "git_commit": "$(git rev-parse --short HEAD 2>/dev/null || echo none)",
 "git_dirty_files_in_src": $(git status --porcelain -- src 2>/dev/null | wc -l),
 "dept_train_sha256": "$(sha256sum "$BIN" | cut -c1-16)",
 "model": "$MODEL", "datasets": "$DATASETS", "max_train": $MAX_TRAIN, "max_test": $MAX_TEST,
 "epochs": $EPOCHS, "max_steps": $MAX_STEPS, "batch_size": $BATCH, "max_length": $MAX_LENGTH,
 "seed": $SEED, "extra_seed": $EXTRA_SEED, "extra_seed_datasets": "$EXTRA_SEED_DATASETS",
 "sweep_dataset": "$SWEEP_DATASET", "sweep_m": "$SWEEP_M", "threads": $THREADS, "jobs": $JOBS,
 "cpu_share_min": $CPU_SHARE_MIN, "retries": $RETRIES, "quick": ${QUICK:-0}}
EOF
log "machine: $(nproc) cores, $cpu_model, OpenBLAS core $blas_core (env had OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset})"

# ---- data ---------------------------------------------------------------------
needed=$(printf '%s\n' $DATASETS $EXTRA_SEED_DATASETS ${SWEEP_M:+$SWEEP_DATASET} | sort -u | tr '\n' ' ')
log "data: $needed(--max-train $MAX_TRAIN --max-test $MAX_TEST) -> $DATA"
python3 bench/prepare_data.py $needed --out "$DATA" --max-train "$MAX_TRAIN" --max-test "$MAX_TEST"
# a set prepare_data.py skipped (MRPC when ../shared/data/mrpc is absent) leaves the schedule
prepared() { local d out=(); for d in "$@"; do [ -s "$DATA/$d/train.tsv" ] && out+=("$d"); done; echo "${out[*]}"; }
DATASETS=$(prepared $DATASETS)
EXTRA_SEED_DATASETS=$(prepared $EXTRA_SEED_DATASETS)
[ -n "$(prepared "$SWEEP_DATASET")" ] || SWEEP_M=""

# ---- runs ---------------------------------------------------------------------
busy_jiffies() {   # jiffies all CPUs spent busy since boot
	awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat
}

RETRY_QUEUE=()     # "ROLE DATASET METHOD M SEED" of contended runs (JOBS=1)

# Wait up to QUIET_WAIT s (QUIET_WAIT_TOTAL s over the whole schedule) until
# other processes keep less than half a core busy (sampled over 3 s while
# none of our runs is going).
wait_for_quiet() {
	[ "$QUIET_WAIT" -gt 0 ] && [ "$JOBS" -le 1 ] && [ "$QUIET_WAITED" -lt "$QUIET_WAIT_TOTAL" ] ||
		return 0
	local waited=0 j0 j1 busy hz
	hz=$(getconf CLK_TCK)
	while :; do
		j0=$(busy_jiffies)
		sleep 3
		j1=$(busy_jiffies)
		busy=$(((j1 - j0) * 100 / (3 * hz)))   # percent of one core
		[ "$busy" -lt 50 ] && break
		if [ "$waited" -ge "$QUIET_WAIT" ] || [ "$QUIET_WAITED" -ge "$QUIET_WAIT_TOTAL" ]; then
			log "machine still busy (others use ${busy}% of a core); starting anyway"
			break
		fi
		[ "$waited" -eq 0 ] && log "waiting for a quiet machine (others use ${busy}% of a core)"
		sleep 12
		waited=$((waited + 15))
		QUIET_WAITED=$((QUIET_WAITED + 15))
	done
}

# run ROLE DATASET METHOD M SEED [ATTEMPT]: one dept-train process, its report
# and a manifest line.  Returns 3 when the run was contended, else 0 (a failed
# run is a result: the manifest and the summary report it).
run() {
	local role=$1 ds=$2 method=$3 m=$4 seed=$5 attempt=${6:-1}
	local dir=$OUT/runs/$ds
	local base=$dir/$method-m$m-seed$seed
	local args=(--train "$DATA/$ds/train.tsv" --test "$DATA/$ds/test.tsv" --model "$MODEL"
		--method "$method" --max-length "$MAX_LENGTH" --batch-size "$BATCH" --seed "$seed"
		--threads "$THREADS" --epochs "$EPOCHS" --quiet)
	[ "$MAX_STEPS" -gt 0 ] && args+=(--max-steps "$MAX_STEPS")
	case $method in
		pt) args+=(--prompt-length "$m") ;;
		dept | ept) args+=(--prompt-length "$m" --budget "$PT_LENGTH") ;;
	esac
	mkdir -p "$dir"
	if [ "$RESUME" = 1 ] && [ "$attempt" = 1 ] && [ -s "$base.json" ]; then
		log "skip $role $ds $method m=$m seed=$seed (report exists)"
		return 0
	fi
	local report=$base.json     # every attempt keeps its report
	[ "$attempt" = 1 ] || report=$base.attempt$attempt.json
	local j0 t0 rc=0 j1 t1 load0 load1 verdict
	wait_for_quiet
	load0=$(cut -d' ' -f1 /proc/loadavg)
	j0=$(busy_jiffies)
	t0=$(date +%s.%N)
	/usr/bin/time -f '%e %U %S %M' -o "$base.time" \
		"${RUN_ENV[@]}" "$BIN" "${args[@]}" --report "$report" 2>"$base.log" || rc=$?
	t1=$(date +%s.%N)
	j1=$(busy_jiffies)
	load1=$(cut -d' ' -f1 /proc/loadavg)
	[ "$rc" -eq 0 ] || rm -f "$report"
	verdict=$(python3 bench/summarize.py --record "$MANIFEST" role="$role" dataset="$ds" \
		method="$method" m="$m" seed="$seed" attempt="$attempt" rc="$rc" t0="$t0" t1="$t1" \
		load0="$load0" load1="$load1" jobs="$JOBS" j0="$j0" j1="$j1" hz="$(getconf CLK_TCK)" \
		timefile="$base.time" logfile="$base.log" report="$report" share_min="$CPU_SHARE_MIN" \
		command="$BIN ${args[*]} --report $report")
	if [ "$rc" -eq 0 ]; then
		log "$role $ds $method m=$m seed=$seed (attempt $attempt): $verdict"
	else
		log "$role $ds $method m=$m seed=$seed FAILED (exit $rc): $(tail -1 "$base.log")"
	fi
	case $verdict in *contended*) return 3 ;; esac
	return 0
}

# Up to JOBS runs at once.
pending=0
launch() {
	if [ "$JOBS" -le 1 ]; then
		run "$@" || RETRY_QUEUE+=("$*")
		return
	fi
	run "$@" &
	pending=$((pending + 1))
	if [ "$pending" -ge "$JOBS" ]; then
		wait -n || true
		pending=$((pending - 1))
	fi
}

methods() {   # ROLE DATASET SEED: the four methods of table (a)
	launch "$1" "$2" probe 0 "$3"
	launch "$1" "$2" pt "$PT_LENGTH" "$3"
	launch "$1" "$2" dept "$DEPT_M" "$3"
	launch "$1" "$2" ept "$DEPT_M" "$3"
}

for ds in $DATASETS; do
	methods main "$ds" "$SEED"
done
for m in $SWEEP_M; do
	launch sweep "$SWEEP_DATASET" dept "$m" "$SEED"
done
# the sweep's m=60 and PT ends are main runs; run them if the sweep set is not in DATASETS
if [ -n "$SWEEP_M" ] && ! printf ' %s ' $DATASETS | grep -q " $SWEEP_DATASET "; then
	launch sweep "$SWEEP_DATASET" dept "$DEPT_M" "$SEED"
	launch sweep "$SWEEP_DATASET" pt "$PT_LENGTH" "$SEED"
fi
for ds in $EXTRA_SEED_DATASETS; do
	methods seeds "$ds" "$EXTRA_SEED"
done
wait

# contended runs again, once the rest of the schedule has given the machine time
T_RETRY=$(date +%s)
for ((pass = 2; pass <= RETRIES + 1 && ${#RETRY_QUEUE[@]} > 0; pass++)); do
	queue=("${RETRY_QUEUE[@]}")
	RETRY_QUEUE=()
	log "retry pass $((pass - 1)): ${#queue[@]} contended run(s)"
	for item in "${queue[@]}"; do
		if [ $(($(date +%s) - T_RETRY)) -ge "$RETRY_BUDGET" ]; then
			RETRY_QUEUE+=("$item")
			continue
		fi
		# shellcheck disable=SC2086  # item is "ROLE DATASET METHOD M SEED"
		run $item "$pass" || RETRY_QUEUE+=("$item")
	done
done
[ ${#RETRY_QUEUE[@]} -eq 0 ] ||
	log "still contended after the retries (or out of RETRY_BUDGET): ${RETRY_QUEUE[*]}"

log "all runs done in $(($(date +%s) - T_START)) s; summary in $OUT/summary.md"
python3 bench/summarize.py "$OUT" | tee "$OUT/summary.md"
