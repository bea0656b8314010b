#!/usr/bin/env bash
# The SQL figures of bench/run --models, JSON lines on stdout (progress on
# stderr): for each model directory OUT/NAME (bench/models/run.sh writes
# them), on a server of its own (port $BENCH_PORT, default 5498, without
# OPENBLAS_CORETYPE):
#   - dept_register_model's time (it opens and checks the model);
#   - dept_train of a DePT adapter on 64 texts of at least 128 tokens
#     (max_length 128 is filled, so the run buffers are touched in full),
#     batch_size 16, 1 step: the estimate the worker logs (what
#     dept.max_training_memory is checked against) beside the worker's peak
#     resident memory, VmHWM, read from /proc while it runs;
#   - the first dept_predict in each of 3 new backends (library, model and
#     adapter load plus one 20-token prediction), and a second call;
#   - a backend's memory after that first call (smaps_rollup: Rss, Pss, the
#     shared file pages of the mapped weights, private anonymous memory).
#   bench/models/sql.sh OUT NAME...      (after make install)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1
shift
port=${BENCH_PORT:-5498}
dir=$(mktemp -d /tmp/dept-bench-models.XXXXXX)
chmod 755 "$dir"
trap 'scripts/pg-cluster.sh stop "$dir" || true; rm -rf "$dir"' EXIT
say() { echo "bench --models (SQL): $*" >&2; }
make -s install >/dev/null
DEPT_PG_EXTRA_CONF="jit = off
log_min_messages = log" env -u OPENBLAS_CORETYPE scripts/pg-cluster.sh start "$dir" "$port"
export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
q() { psql -X -qAt -v ON_ERROR_STOP=1 "$@"; }
q -c "CREATE EXTENSION dept"

for m in "$@"; do
	path=$(readlink -f "$out/$m")
	say "$m: register"
	ms=$(q <<SQL
SELECT clock_timestamp() AS t0 \gset
SELECT dept_register_model('$m', '$path') IS NOT NULL AS ok \gset
SELECT round(extract(epoch FROM clock_timestamp() - :'t0')::numeric * 1000, 1);
SQL
)
	echo "{\"bench\": \"sql_register\", \"impl\": \"ours\", \"model\": \"$m\", \"ms\": $ms}"

	# training rows: runs of SST-2 sentences long enough to fill max_length 128
	tbl="train_${m//-/_}"
	awk -F'\t' 'NR > 1 { run = run " " $2; i++ } i == 20 { if (k++ < 64) print $1 "\t" run; run = ""; i = 0 }' \
		"$out/pool.tsv" >"$dir/$tbl.tsv"
	chmod 644 "$dir/$tbl.tsv"
	q -c "CREATE TABLE $tbl (label text, body text)" -c "COPY $tbl FROM '$dir/$tbl.tsv'"
	say "$m: dept_train (batch 16, 1 step), the worker's peak memory"
	log_before=$(wc -c <"$dir/server.log")
	q -c "SET client_min_messages = warning" -c "SET dept.max_training_memory = -1" -c "SELECT dept_train('$tbl', 'label', 'body', adapter => '$tbl',
		options => '{\"model\": \"$m\", \"batch_size\": 16, \"max_length\": 128, \"max_steps\": 1, \"epochs\": 1,
		             \"test_fraction\": 0, \"valid_fraction\": 0.125}')" >"$dir/train.out" 2>&1 &
	caller=$!
	peak_kb=0 rss_file_kb=0
	while kill -0 $caller 2>/dev/null; do
		pid=$(q -c "SELECT worker_pid FROM dept.jobs WHERE adapter = '$tbl' AND status = 'running'" 2>/dev/null || true)
		if [ -n "$pid" ] && [ -r "/proc/$pid/status" ]; then
			kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
			[ -n "$kb" ] && [ "$kb" -gt "$peak_kb" ] && peak_kb=$kb
			kb=$(awk '/^RssFile:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
			[ -n "$kb" ] && [ "$kb" -gt "$rss_file_kb" ] && rss_file_kb=$kb
		fi
		sleep 0.1
	done
	wait $caller || { say "dept_train failed: $(cat "$dir/train.out")"; continue; }
	estimate=$(tail -c +$((log_before + 1)) "$dir/server.log" |
		sed -n 's/.*estimated at \([0-9]*\) bytes (activations \([0-9]*\), batch \([0-9]*\), adapter \([0-9]*\), rows \([0-9]*\), model \([0-9]*\), process \([0-9]*\)).*/\1 \2 \3 \4 \5 \6 \7/p' | tail -1)
	read -r e_total e_act e_batch e_adapter e_rows e_model e_process <<<"${estimate:-0 0 0 0 0 0 0}"
	echo "{\"bench\": \"sql_train_memory\", \"impl\": \"ours\", \"model\": \"$m\", \"batch_size\": 16, \"max_length\": 128, \"prompt_rows\": 60, \"estimate_bytes\": $e_total, \"estimate_activations\": $e_act, \"estimate_batch\": $e_batch, \"estimate_adapter\": $e_adapter, \"estimate_rows\": $e_rows, \"estimate_model\": $e_model, \"estimate_process\": $e_process, \"worker_peak_kb\": $peak_kb, \"worker_rss_file_kb\": $rss_file_kb}"

	say "$m: first call in 3 new backends"
	# a 20-token text of this model when run.sh picked them, else an SST-2 sentence
	text=$(awk -F'\t' 'NR == 2 { print $2 }' "$out/$m/texts20.tsv" 2>/dev/null || head -n 1 "$out/sst2.tsv" | cut -f2)
	text=${text//\'/\'\'}
	for _ in 1 2 3; do
		q <<SQL
SELECT clock_timestamp() AS t0 \gset
SELECT dept_predict('$tbl', '$text') IS NOT NULL AS ok \gset
SELECT round(extract(epoch FROM clock_timestamp() - :'t0')::numeric * 1000, 2) AS first \gset
SELECT clock_timestamp() AS t1 \gset
SELECT dept_predict('$tbl', '$text') IS NOT NULL AS ok \gset
SELECT :first || ' ' || round(extract(epoch FROM clock_timestamp() - :'t1')::numeric * 1000, 2);
SELECT pg_backend_pid() AS pid \gset
\setenv DEPT_BENCH_PID :pid
\! awk '/^(Rss|Pss|Shared_Clean|Private_Clean|Private_Dirty|Anonymous):/ { printf "%s %s ", \$1, \$2 } END { print "" }' /proc/\$DEPT_BENCH_PID/smaps_rollup
SQL
	done | python3 -c '
import json, sys
lines = [l.split() for l in sys.stdin if l.strip()]
calls = [list(map(float, l)) for l in lines[0::2]]
mem = [dict(zip([k.rstrip(":").lower() for k in l[0::2]], map(int, l[1::2]))) for l in lines[1::2]]
first = sorted(c[0] for c in calls); second = sorted(c[1] for c in calls)
out = {"bench": "sql_first_call", "impl": "ours", "model": sys.argv[1], "backends": len(calls),
       "first_ms_median": first[len(first) // 2], "first_ms_max": first[-1],
       "second_ms_median": second[len(second) // 2]}
out.update({"backend_" + k + "_kb": v for k, v in mem[-1].items()})
print(json.dumps(out))' "$m"
done
