#!/usr/bin/env bash
# The SQL figures of bench/run, as JSON lines on stdout: dept_predict and
# dept_embed over a table of TSV's texts (serial, two parallel workers, the
# text[] form), single-row latency from pgbench, the first call of a new
# backend, and a backend's memory after loading.  Starts its own server on
# port $BENCH_PORT, without the environment's OPENBLAS_CORETYPE (docs/design.md
# section 6): the extension loads OpenBLAS with the kernels the CPU calls
# for (src/nn/ops/blas.h).
#   bench/sql_bench.sh TSV TRAIN_TSV SENTENCE [PREDICT_ROWS]     (after make install)
# SENTENCE is the text of the latency test; PREDICT_ROWS (1000) the number of
# leading texts dept-bench predict timed, which a serial dept_predict also
# runs over, for a like-for-like comparison.  Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
tsv=$1
train_tsv=$2
sentence=$3
predict_rows=${4:-1000}
port=${BENCH_PORT:-5494}
dir=$(mktemp -d /tmp/dept-bench-sql.XXXXXX)
chmod 755 "$dir"
trap 'scripts/pg-cluster.sh stop "$dir"; rm -rf "$dir"' EXIT
say() { echo "sql_bench: $*" >&2; }

DEPT_PG_EXTRA_CONF="max_parallel_workers_per_gather = 2
max_parallel_workers = 4
jit = off" env -u OPENBLAS_CORETYPE \
	scripts/pg-cluster.sh start "$dir" "$port"
export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
q() { psql -X -qAt -v ON_ERROR_STOP=1 "$@"; }

say "loading $(($(wc -l <"$tsv") - 1)) texts and training an adapter"
cp "$tsv" "$dir/texts.tsv"
cp "$train_tsv" "$dir/train.tsv"
chmod 644 "$dir"/*.tsv
q <<SQL
CREATE EXTENSION dept;
CREATE TABLE texts (label text, body text);
COPY texts FROM '$dir/texts.tsv' WITH (FORMAT text, HEADER true);
CREATE TABLE train (label text, body text);
COPY train FROM '$dir/train.tsv' WITH (FORMAT text, HEADER true);
ALTER TABLE texts SET (parallel_workers = 2);
ANALYZE texts;
SET client_min_messages = warning;
SELECT dept_train('train', 'label', adapter => 'bench', options => '{"epochs": 1, "max_steps": 4}');
SELECT dept_train('train', 'label', adapter => 'bench_probe', method => 'probe', options => '{"epochs": 1}');
SQL
rows=$(q -c "SELECT count(*) FROM texts")
q -c "SELECT json_build_object('bench', 'sql_table', 'rows', count(*), 'bytes', pg_relation_size('texts'))
	FROM texts"

# One query's execution time (ms) and workers launched, from EXPLAIN ANALYZE,
# after a warm-up run of the same query in the same session.
explain_ms() {    # explain_ms SETTINGS QUERY
	q <<SQL | python3 -c '
import json, sys
plan = json.loads(sys.stdin.read())[0]
def launched(node):
    return node.get("Workers Launched", 0) + sum(launched(c) for c in node.get("Plans", []))
print(plan["Execution Time"], launched(plan["Plan"]))'
$1
\\o /dev/null
$2;
\\o
EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) $2;
SQL
}
serial="SET max_parallel_workers_per_gather = 0;"
# parallel: the planner's own choice (the functions' COST makes it pay), on a
# table below min_parallel_table_scan_size that says it may use 2 workers;
# the leader only gathers, so 2 processes share the 2 cores
parallel="SET parallel_leader_participation = off;"
core=$(q -c "SELECT dept_embed('x') IS NOT NULL; SELECT dept_model_info() ->> 'blas_core'" | tail -1)

emit_query() {    # emit_query NAME MODE SETTINGS QUERY [TEXTS]
	local n=${5:-$rows}
	say "$1 ($2)"
	read -r ms workers < <(explain_ms "$3" "$4")
	printf '{"bench": "%s", "mode": "%s", "blas_core": "%s", "texts": %d, "workers": %d, "seconds": %.4f, "texts_per_second": %.1f}\n' \
		"$1" "$2" "$core" "$n" "$workers" "$(awk -v m="$ms" 'BEGIN {print m / 1000}')" \
		"$(awk -v m="$ms" -v n="$n" 'BEGIN {print n * 1000 / m}')"
}
emit_query sql_embed serial "$serial" "SELECT count(dept_embed(body)) FROM texts"
emit_query sql_predict serial "$serial" "SELECT count(dept_predict('bench', body)) FROM texts"
# the texts dept-bench predict timed: the table's first rows, in COPY order
emit_query sql_predict "serial_first_$predict_rows" "$serial" \
	"SELECT count(dept_predict('bench', body)) FROM (SELECT body FROM texts LIMIT $predict_rows) t" \
	"$predict_rows"
emit_query sql_predict parallel2 "$parallel" "SELECT count(dept_predict('bench', body)) FROM texts"
emit_query sql_predict array "$serial" \
	"SELECT cardinality(dept_predict('bench', (SELECT array_agg(body) FROM texts)))"

# Single-row latency in a warm backend, as a client on the socket sees it,
# for the DePT adapter, a linear probe (no prompt rows) and dept_embed.
tokens=$(q -c "SELECT cardinality(dept_tokenize('${sentence//\'/\'\'}'))")
latency() {    # latency NAME CALL [THREADS [PRECISION]]
	local threads=${3:-1} precision=${4:-float32}
	say "latency of $1, dept.threads $threads, $precision (pgbench, 10 s)"
	printf "SELECT %s;\n" "$2" >"$dir/one.sql"
	rm -f "$dir"/lat.*
	(cd "$dir" && PGOPTIONS="-c dept.threads=$threads -c dept.matmul_precision=$precision" \
		pgbench -n -c 1 -T 10 -f one.sql -l --log-prefix=lat >/dev/null 2>"$dir/pgbench.err")
	cat "$dir"/lat.* | python3 -c '
import json, sys
lat = [int(line.split()[2]) / 1000.0 for line in sys.stdin]
lat = sorted(lat[5:])   # the first call loads the model and adapter
pick = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(json.dumps({"bench": "sql_latency", "call": sys.argv[1], "tokens": int(sys.argv[2]),
                  "dept_threads": int(sys.argv[3]), "precision": sys.argv[4], "calls": len(lat),
                  "p50_ms": round(pick(0.50), 3), "p99_ms": round(pick(0.99), 3)}))' \
		"$1" "$tokens" "$threads" "$precision"
}
quoted="'${sentence//\'/\'\'}'"
latency dept_predict_dept "dept_predict('bench', $quoted)"
latency dept_predict_probe "dept_predict('bench_probe', $quoted)"
latency dept_embed "dept_embed($quoted)"
latency dept_predict_dept "dept_predict('bench', $quoted)" 2
latency dept_predict_probe "dept_predict('bench_probe', $quoted)" 2
latency dept_embed "dept_embed($quoted)" 2
latency dept_predict_dept "dept_predict('bench', $quoted)" 1 bfloat16
latency dept_predict_probe "dept_predict('bench_probe', $quoted)" 1 bfloat16
latency dept_embed "dept_embed($quoted)" 1 bfloat16

# What bfloat16 products change: accuracy on the first 2,000 texts (SST-2
# train, which may hold some of the 600 training rows) of an adapter trained
# as the demo trains it, in each precision, and how many predictions differ.
say "accuracy, float32 and bfloat16 (2,000 texts)"
q <<'SQL'
SET client_min_messages = warning;
SELECT dept_train('train', 'label', adapter => 'bench_acc', options => '{"epochs": 3, "seed": 7}');
-- the texts' labels are GLUE's 0/1, the training rows' names (1 is positive)
CREATE TABLE eval AS
	SELECT row_number() OVER () AS i, CASE label WHEN '1' THEN 'positive' ELSE 'negative' END AS label, body
	FROM texts LIMIT 2000;
SET dept.matmul_precision = float32;
CREATE TABLE eval_f32 AS
	SELECT i, label, dept_predict('bench_acc', body) AS p, dept_predict_proba('bench_acc', body) AS proba
	FROM eval;
SET dept.matmul_precision = bfloat16;
CREATE TABLE eval_b16 AS
	SELECT i, label, dept_predict('bench_acc', body) AS p, dept_predict_proba('bench_acc', body) AS proba
	FROM eval;
SQL
q -c "SET dept.matmul_precision = bfloat16" -c "SELECT json_build_object('bench', 'sql_accuracy',
	'texts', count(*), 'precision_in_use', (SELECT dept_model_info() ->> 'matmul_precision'),
	'accuracy_float32', avg((f.p = f.label)::int), 'accuracy_bfloat16', avg((b.p = b.label)::int),
	'predictions_changed', sum((f.p <> b.p)::int),
	'max_proba_diff', max((SELECT max(abs((f.proba ->> k)::float8 - (b.proba ->> k)::float8))
						   FROM jsonb_object_keys(f.proba) k)))
	FROM eval_f32 f JOIN eval_b16 b USING (i)"

# The first call of a new backend: library, model and adapter load plus one
# prediction, timed inside the backend; and what the model load alone took
# (dept_model_info).  Measured as installed, then with the library preloaded
# by the postmaster (shared_preload_libraries), which removes dlopen's share.
first_call() {    # first_call MODE
	say "first call in 20 new backends ($1)"
	for _ in $(seq 1 20); do
		q <<'SQL'
SELECT clock_timestamp() AS t0 \gset
SELECT dept_predict('bench', 'the first call of a new backend loads the model') IS NOT NULL AS ok \gset
SELECT round(extract(epoch FROM clock_timestamp() - :'t0')::numeric * 1000, 3) || ' ' || (dept_model_info() ->> 'load_ms');
SQL
	done | python3 -c '
import json, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
first = sorted(r[0] for r in rows); load = sorted(r[1] for r in rows)
med = lambda v: v[len(v) // 2]
print(json.dumps({"bench": "sql_first_call", "mode": sys.argv[1], "backends": len(rows),
                  "median_ms": med(first), "max_ms": first[-1],
                  "model_load_median_ms": med(load)}))' "$1"
}
first_call installed

# Memory of one backend before and after it loaded the model and adapter and
# predicted a batch; weights are mmap'ed, so they are shared (Pss < Rss).
say "backend memory"
q <<SQL | python3 -c '
import json, sys
vals = {}
for line in sys.stdin:
    if ":" in line and line.split(":")[0] in ("tag", "Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean"):
        k, v = line.split(":", 1)
        if k == "tag":
            tag = v.strip()
        else:
            vals[tag + "_" + k.lower()] = int(v.split()[0])
out = {"bench": "sql_memory"}
out.update({k + "_kb": v for k, v in vals.items()})
print(json.dumps(out))'
SELECT pg_backend_pid() AS pid \gset
\setenv DEPT_BENCH_PID :pid
\echo tag: before
\! cat /proc/\$DEPT_BENCH_PID/smaps_rollup
SELECT count(dept_predict('bench', body)) FROM (SELECT body FROM texts LIMIT 200) t;
\echo tag: after
\! cat /proc/\$DEPT_BENCH_PID/smaps_rollup
SQL

# The same first call with the library preloaded: restart with it in
# shared_preload_libraries.
sed -i "s/^shared_preload_libraries = 'pg_cron'$/shared_preload_libraries = 'pg_cron,dept'/" \
	"$dir/data/postgresql.conf"
scripts/pg-cluster.sh stop "$dir"
env -u OPENBLAS_CORETYPE \
	scripts/pg-cluster.sh start "$dir" "$port"
first_call preloaded
