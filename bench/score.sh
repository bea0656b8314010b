#!/usr/bin/env bash
# Bulk scoring: dept_score (a background job, batches of 256 rows, one
# transaction each) against CREATE TABLE ... AS SELECT dept_predict(...)
# with 2 parallel workers, on ROWS review texts (default 20,000) from
# bench/data/sst2_glue.  Prints one JSON line per method with rows/s.
# Starts its own server on $BENCH_PORT (5493), without OPENBLAS_CORETYPE.
#   bench/score.sh [ROWS]          (after make install)
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-20000}
port=${BENCH_PORT:-5493}
dir=$(mktemp -d /tmp/dept-bench-score.XXXXXX)
chmod 755 "$dir"
trap 'scripts/pg-cluster.sh stop "$dir"; rm -rf "$dir"' EXIT
DEPT_PG_EXTRA_CONF="max_parallel_workers_per_gather = 2
max_parallel_workers = 4
jit = off" env -u OPENBLAS_CORETYPE scripts/pg-cluster.sh start "$dir" "$port"
export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
q() { psql -X -qAt -v ON_ERROR_STOP=1 "$@"; }

zcat bench/data/sst2_glue/train.tsv.gz | tail -n +2 | tr -d "\r" >"$dir/texts.tsv"
chmod 644 "$dir/texts.tsv"
q <<SQL >/dev/null
CREATE EXTENSION dept;
CREATE TABLE src (label text, body text);
COPY src FROM '$dir/texts.tsv' WITH (FORMAT text);
CREATE TABLE docs (id bigint PRIMARY KEY, body text);
INSERT INTO docs SELECT row_number() OVER (), body FROM src LIMIT $rows;
ALTER TABLE docs SET (parallel_workers = 2);
ANALYZE docs;
SET client_min_messages = warning;
-- no test split: the adapter only feeds the scoring benchmark
SELECT dept_train('src', 'label', adapter => 'bench', options => '{"epochs": 1, "max_steps": 4, "test_fraction": 0}');
SQL

t0=$(date +%s.%N)
job=$(q -c "SELECT dept_score('bench', 'docs', 'id', 'body', 'scored')")
q -c "SELECT dept_wait($job)" >/dev/null
t1=$(date +%s.%N)
q -c "SELECT json_build_object('bench', 'dept_score', 'rows', $rows, 'seconds', round(($t1 - $t0)::numeric, 2),
	'rows_per_second', round($rows / ($t1 - $t0)::numeric, 1), 'status', status) FROM dept.jobs WHERE id = $job"

t0=$(date +%s.%N)
q -c "SET parallel_setup_cost = 0" -c "SET parallel_tuple_cost = 0" \
	-c "CREATE TABLE ctas AS SELECT id, dept_predict('bench', body) AS label FROM docs" >/dev/null
t1=$(date +%s.%N)
q -c "SELECT json_build_object('bench', 'ctas_parallel_2', 'rows', $rows, 'seconds', round(($t1 - $t0)::numeric, 2),
	'rows_per_second', round($rows / ($t1 - $t0)::numeric, 1))"
q -c "SELECT json_build_object('bench', 'agree', 'rows', count(*) FILTER (WHERE s.label = c.label), 'of', count(*))
	FROM scored s JOIN ctas c ON c.id = s.key"
