#!/usr/bin/env bash
# The first call and the memory of new backends on a model stored in F16 or
# BF16 (issue 16, item 2: converted weights stored once, mapped shared).
#
#   bench/converted_weights.sh MODEL_DIR [N]      (after make install)
#
# On a server of its own (port $BENCH_PORT, default 5497, started without
# OPENBLAS_CORETYPE): dept_register_model(MODEL_DIR) in a new backend (the
# first load: the private copy, the float32 sidecar, the open), a probe
# trained on 16 rows, then the first dept_predict in each of N (default 2)
# new backends one at a time, and in two new backends kept open together
# (after a sync: the cluster runs with fsync = off, and the private copy's
# pages not yet written back would count as Private_Dirty in every backend
# that maps them).  For each of those statements: psql's \timing (ms), and
# the backend's /proc/PID/smaps_rollup read while its session is still open
# (kB: Rss, Pss, Shared_Clean, Private_Clean, Private_Dirty, Anonymous), one
# JSON line each; then the files of the private copy and the load average.
set -euo pipefail
cd "$(dirname "$0")/.."
model=$(readlink -f "$1")
n=${2:-2}
port=${BENCH_PORT:-5497}
dir=$(mktemp -d /tmp/dept-bench-converted.XXXXXX)
chmod 755 "$dir"
trap 'scripts/pg-cluster.sh stop "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
DEPT_PG_EXTRA_CONF="jit = off" env -u OPENBLAS_CORETYPE scripts/pg-cluster.sh start "$dir" "$port" >/dev/null
export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
q() { psql -X -qAt -v ON_ERROR_STOP=1 "$@"; }
echo "# load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
q -c "CREATE EXTENSION dept" -c "CREATE TABLE conv (label text, body text)" \
	-c "INSERT INTO conv SELECT CASE WHEN i % 2 = 0 THEN 'positive' ELSE 'negative' END,
		CASE WHEN i % 2 = 0 THEN 'a wonderful and moving film ' ELSE 'a dull and boring film ' END || i
		FROM generate_series(1, 16) i"

# start K SQL: a new backend running SQL as its first statement, kept open (session K)
start() {
	mkfifo "$dir/in.$1"
	psql -X -qAt -v ON_ERROR_STOP=1 <"$dir/in.$1" >"$dir/out.$1" 2>&1 &
	eval "psql_$1=$!"
	eval "exec {w_$1}>\"\$dir/in.$1\""
	local w=w_$1
	printf '%s\n' '\timing on' "$2;" '\timing off' 'SELECT pg_backend_pid();' >&${!w}
	for _ in $(seq 1 6000); do
		[ "$(grep -c . "$dir/out.$1")" -ge 3 ] && break
		sleep 0.1
	done
}
# report K LABEL: session K's statement time and its backend's memory, one JSON line
report() {
	local out=$dir/out.$1 pid ms
	pid=$(tail -1 "$out")
	ms=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' "$out" | head -1)
	awk -v label="$2" -v ms="$ms" '
		/^(Rss|Pss|Shared_Clean|Private_Clean|Private_Dirty|Anonymous):/ { sub(":", "", $1); kb[$1] = $2 }
		END { printf "{\"statement\": \"%s\", \"ms\": %s, \"rss_kb\": %d, \"pss_kb\": %d, \"shared_clean_kb\": %d, \"private_clean_kb\": %d, \"private_dirty_kb\": %d, \"anonymous_kb\": %d}\n",
			label, ms, kb["Rss"], kb["Pss"], kb["Shared_Clean"], kb["Private_Clean"], kb["Private_Dirty"], kb["Anonymous"] }' \
		"/proc/$pid/smaps_rollup"
}
# finish K: end session K
finish() {
	local p=psql_$1 w=w_$1
	# \q, not EOF: a session started later holds this fifo open too
	printf '%s\n' '\q' >&${!w}
	eval "exec {w_$1}>&-"
	wait "${!p}" || true
	rm -f "$dir/in.$1" "$dir/out.$1"
}
# measure LABEL SQL: SQL as the first statement of a new backend, its time and memory
measure() {
	start m "$2"
	report m "$1"
	finish m
}

measure "dept_register_model (first load)" "SELECT dept_register_model('m', '$model') IS NOT NULL"
q -c "SET client_min_messages = warning" -c "SELECT dept_train('conv', 'label', 'body', adapter => 'conv',
	method => 'probe', options => '{\"model\": \"m\", \"epochs\": 2}')" >/dev/null
# the cluster runs with fsync = off: write the private copy back, or its pages count as Private_Dirty
sync
for i in $(seq 1 "$n"); do
	measure "first dept_predict, new backend $i" "SELECT dept_predict('conv', 'a gripping and moving film')"
done
# two backends holding the model at once: the mapped pages are shared between them
start a "SELECT dept_predict('conv', 'a gripping and moving film')"
start b "SELECT dept_predict('conv', 'a gripping and moving film')"
report a "first dept_predict, two backends at once: a"
report b "first dept_predict, two backends at once: b"
finish a
finish b
echo "# the private copy:"
ls -l "$dir"/data/pgsql_tmp_dept_models/*/ | grep -v '^total' | sed 's/^/#   /'
echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
