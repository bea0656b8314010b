#!/usr/bin/env bash
# The first call in a new backend (docs/design.md 6, "First call in a new
# backend"), over N fresh connections each, timing the statement only (not the
# connection):
#   - the first dept_embed, and the model load alone (dept_model_info's load_ms);
#   - the first dept_predict of a probe adapter and of a DePT adapter, each
#     with its breakdown (dept_model_info's first_call: the time before dept.so
#     was loaded (parse, plan, the dynamic loader), _PG_init, the catalog query,
#     the model load, the adapter, the activation buffers, the forward pass, and
#     "after": what they leave out), in ms and minor page faults.  A statement's
#     time runs from its start on the server to the function's return (its
#     clock_timestamp() - statement_timestamp()): no round trip, no connection.
# Prints median and min (and p90 of the totals) and the load average before and
# after: the figures are only worth something at a low load.  Starts its own
# server without OPENBLAS_CORETYPE (docs/design.md section 6) on $BENCH_PORT
# (5497) and prints the BLAS core in use.
#   bench/model_load.sh [N]        (after `make install`)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
port=${BENCH_PORT:-5497}
dir=$(mktemp -d /tmp/dept-bench-load.XXXXXX)
trap 'scripts/pg-cluster.sh stop "$dir"; rm -rf "$dir"' EXIT
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE scripts/pg-cluster.sh start "$dir" "$port"
export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
psql -X -q -c 'CREATE EXTENSION IF NOT EXISTS dept'
psql -X -qAt -c "SELECT 'BLAS core: ' || (dept_model_info() ->> 'blas_core')"
# a probe and a DePT adapter on 200 labelled reviews of the test fixtures
psql -X -q <<SQL >/dev/null 2>&1
CREATE TABLE IF NOT EXISTS load_reviews (body text, label text);
TRUNCATE load_reviews;
\copy load_reviews (label, body) FROM '$PWD/test/fixtures/sst2_test_200.tsv' WITH (FORMAT text, HEADER true)
SELECT dept_train('load_reviews', 'label', 'body', adapter => 'load_probe', method => 'probe');
SELECT dept_train('load_reviews', 'label', 'body', adapter => 'load_dept', method => 'dept',
                  options => '{"epochs": 1}');
SQL
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

parts="before_load init catalog model adapter buffers forward other"

# first STATEMENT in N new backends: "total part_ms... part_faults..." per line
first_calls() {
	local sql=$1
	for _ in $(seq 1 "$n"); do
		# the statement's time on the server: from its start to the function's return
		psql -X -qAt -v stmt="$sql" <<'SQL'
SELECT 1 AS connected \gset
:stmt, extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000 AS total \gset
SELECT :'total' || ' ' || (dept_model_info() ->> 'load_ms') || ' ' ||
       (dept_model_info() -> 'first_call')::text;
SQL
	done
}

# median and min of a column of numbers on stdin
median_min() {
	sort -g | awk '{ v[NR] = $1 } END { printf "median %7.2f  min %7.2f", v[int((NR + 1) / 2)], v[1] }'
}
p90_max() {
	sort -g | awk '{ v[NR] = $1 } END { printf "p90 %.2f, max %.2f", v[int(NR * 0.9)], v[NR] }'
}

# report LABEL LINES: the totals and the breakdown of first_calls' output
report() {
	local label=$1 lines=$2 json sum
	echo "$label (ms): $(cut -d' ' -f1 <<<"$lines" | median_min), $(cut -d' ' -f1 <<<"$lines" | p90_max)"
	json=$(cut -d' ' -f3- <<<"$lines")
	for p in $parts; do
		printf '    %-12s %s ms, faults %s\n' "$p" \
			"$(jq -r ".${p}_ms // 0" <<<"$json" | median_min)" \
			"$(jq -r ".${p}_faults // 0" <<<"$json" | median_min | sed 's/\.00//g')"
	done
	# what the parts do not cover (the function's own code between them, ~0)
	sum=$(paste -d' ' <(cut -d' ' -f1 <<<"$lines") \
		<(jq -r "[$(sed 's/\([a-z_]*\)/.\1_ms \/\/ 0/g; s/ \./, ./g' <<<"$parts")] | add" <<<"$json"))
	printf '    %-12s %s ms\n' after "$(awk '{ print $1 - $2 }' <<<"$sum" | median_min)"
}

embed=$(first_calls "SELECT dept_embed('the first call of a new backend loads the model') IS NOT NULL AS ok")
probe=$(first_calls "SELECT dept_predict('load_probe', 'the first prediction of a new backend') IS NOT NULL AS ok")
dept=$(first_calls "SELECT dept_predict('load_dept', 'the first prediction of a new backend') IS NOT NULL AS ok")

echo "new backends: $n each"
echo "model load alone (ms): $(cut -d' ' -f2 <<<"$embed" | median_min)"
report "first dept_embed" "$embed"
report "first dept_predict, probe adapter" "$probe"
report "first dept_predict, DePT adapter" "$dept"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
