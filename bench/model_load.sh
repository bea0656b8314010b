#!/usr/bin/env bash
# First call in a new backend: how long loading the model takes (the
# load_ms dept_model_info reports: open model.json, mmap the shards, map the
# compiled tokenizer), the whole first dept_embed call, and the whole first
# dept_predict of a probe adapter, over N fresh connections each.  Starts its own server without OPENBLAS_CORETYPE (docs/design.md
# section 6) on port 5497 and prints the BLAS core in use.
#   bench/model_load.sh [N]        (after `make install`)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
dir=$(mktemp -d /tmp/dept-bench-load.XXXXXX)
trap 'scripts/pg-cluster.sh stop "$dir"; rm -rf "$dir"' EXIT
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE scripts/pg-cluster.sh start "$dir" 5497
export PGHOST=$dir PGPORT=5497 PGUSER=postgres PGDATABASE=postgres
psql -X -q -c 'CREATE EXTENSION IF NOT EXISTS dept'
psql -X -qAt -c "SELECT 'BLAS core: ' || (dept_model_info() ->> 'blas_core')"
# a probe adapter on 200 labelled reviews of the test fixtures
psql -X -q <<SQL >/dev/null
CREATE TABLE IF NOT EXISTS load_reviews (body text, label text);
TRUNCATE load_reviews;
\copy load_reviews (label, body) FROM '$PWD/test/fixtures/sst2_test_200.tsv' WITH (FORMAT text, HEADER true)
SELECT dept_train('load_reviews', 'label', 'body', adapter => 'load_probe', method => 'probe');
SQL
results=$(for _ in $(seq 1 "$n"); do
	psql -X -qAt <<'SQL'
SELECT clock_timestamp() AS t0 \gset
SELECT dept_embed('the first call of a new backend loads the model') IS NOT NULL AS ok \gset
SELECT round(extract(epoch FROM clock_timestamp() - :'t0')::numeric * 1000, 3) || ' ' || (dept_model_info() ->> 'load_ms');
SQL
done)
predict=$(for _ in $(seq 1 "$n"); do
	psql -X -qAt <<'SQL'
SELECT clock_timestamp() AS t0 \gset
SELECT dept_predict('load_probe', 'the first prediction of a new backend') IS NOT NULL AS ok \gset
SELECT round(extract(epoch FROM clock_timestamp() - :'t0')::numeric * 1000, 3);
SQL
done)
stat() {    # stat COLUMN LABEL [DATA]: median, p90, max of one column
	sort -n <<<"$(cut -d' ' -f"$1" <<<"${3:-$results}")" | awk -v label="$2" '
		{ v[NR] = $1 }
		END { printf "%s median %.2f, p90 %.2f, max %.2f\n", label, v[int((NR + 1) / 2)], v[int(NR * 0.9)], v[NR] }'
}
echo "new backends: $n"
stat 1 "first dept_embed call (ms):"
stat 2 "model load alone (ms):     "
stat 1 "first dept_predict, probe (ms):" "$predict"
