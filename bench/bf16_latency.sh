#!/usr/bin/env bash
# bench/bf16_latency.sh [MODEL ...]: a probe's dept_predict latency and a
# backend's private memory at real shapes, float32 against bfloat16 (issue
# 16: "a BERT-base-sized probe dept_predict p50 under 15 ms for a 20-token
# text, 1 thread, bfloat16; private memory per backend after loading
# BERT-base under 50 MB").  JSON lines on stdout, progress on stderr.
#
# For each model directory build/bench/models/MODEL (bench/run --models
# writes them; default bert-base), on a server of its own (port
# $BENCH_PORT, default 5497, without OPENBLAS_CORETYPE): register it, train
# a probe on 200 SST-2 sentences, then for each precision 3 new backends in
# turn, each: the first dept_predict (model, adapter, packing), then 200
# calls on a 20-token text timed one by one (p50, p99), then the backend's
# memory (smaps_rollup: private anonymous and dirty pages, the shared file
# pages).  In bfloat16 the first backend packs the weights and writes them
# beside the model copy (ops/packed_file.h); the later ones map that file.
set -euo pipefail
cd "$(dirname "$0")/.."
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(bert-base)
out=build/bench/models
port=${BENCH_PORT:-5497}
dir=$(mktemp -d /tmp/dept-bench-bf16.XXXXXX)
chmod 755 "$dir"
trap 'scripts/pg-cluster.sh stop "$dir" || true; rm -rf "$dir"' EXIT
say() { echo "bench/bf16_latency: $*" >&2; }
make -s install >/dev/null
DEPT_PG_EXTRA_CONF="jit = off" scripts/pg-cluster.sh start "$dir" "$port" >&2
export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
q() { psql -X -qAt -v ON_ERROR_STOP=1 "$@"; }
q -c "CREATE EXTENSION dept"
gzip -dc bench/data/sst2_glue/train.tsv.gz | awk -F'\t' 'NR > 1 && NR <= 201 {
	sub(/\r$/, "", $2); print ($1 == 1 ? "positive" : "negative") "\t" $2 }' >"$dir/train.tsv"
chmod 644 "$dir/train.tsv"
q -c "CREATE TABLE sst2 (label text, body text)" -c "COPY sst2 FROM '$dir/train.tsv'"
printf '{"bench": "machine", "cpu": "%s", "loadavg_start": "%s", "date": "%s", "commit": "%s"}\n' \
	"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" "$(cut -d' ' -f1-3 /proc/loadavg)" \
	"$(date -u +%Y-%m-%dT%H:%MZ)" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

for m in "${models[@]}"; do
	[ -f "$out/$m/config.json" ] || { say "no $out/$m: run bench/run --models first"; exit 1; }
	say "$m: register, train a probe"
	q -c "SELECT dept_register_model('$m', '$(readlink -f "$out/$m")') IS NOT NULL" >/dev/null
	q -c "SET client_min_messages = warning" -c "SELECT dept_train('sst2', 'label', 'body', adapter => 'probe_${m//-/_}',
		method => 'probe', options => '{\"model\": \"$m\", \"max_length\": 64}')" >/dev/null
	# the cluster runs with fsync = off: without this the model copy's unwritten
	# pages would count as the backends' Private_Dirty
	sync
	text=$(awk -F'\t' 'NR == 2 { print $2 }' "$out/$m/texts20.tsv" 2>/dev/null || head -n 2 "$dir/train.tsv" | tail -1 | cut -f2)
	text=${text//\'/\'\'}
	for prec in float32 bfloat16; do
		for backend in 1 2 3; do
			say "$m: $prec, backend $backend"
			q <<SQL | python3 -c '
import json, sys
first, times, mem = sys.stdin.read().strip().split("\n", 2)
t = sorted(float(x) for x in times.split(","))
kv = mem.split()
m = {k.rstrip(":").lower(): int(v) for k, v in zip(kv[0::2], kv[1::2])}
print(json.dumps({"bench": "probe_latency", "model": sys.argv[1], "precision": sys.argv[2],
                  "backend": int(sys.argv[3]), "first_ms": float(first), "calls": len(t),
                  "p50_ms": t[len(t) // 2], "p99_ms": t[int(len(t) * 0.99)],
                  **{"backend_" + k + "_kb": v for k, v in m.items()}}))' "$m" "$prec" "$backend"
SET dept.matmul_precision = $prec;
SELECT clock_timestamp() AS t0 \gset
SELECT dept_predict('probe_${m//-/_}', '$text') IS NOT NULL AS ok \gset
SELECT round(extract(epoch FROM clock_timestamp() - :'t0')::numeric * 1000, 2);
CREATE TEMP TABLE times (ms float8);
DO \$\$
DECLARE t0 timestamptz; r text;
BEGIN
	FOR i IN 1..200 LOOP
		t0 := clock_timestamp();
		r := dept_predict('probe_${m//-/_}', '$text');
		INSERT INTO times VALUES (extract(epoch FROM clock_timestamp() - t0) * 1000);
	END LOOP;
END \$\$;
SELECT string_agg(round(ms::numeric, 3)::text, ',') FROM times;
SELECT pg_backend_pid() AS pid \gset
\setenv DEPT_BENCH_PID :pid
\! awk '/^(Rss|Pss|Shared_Clean|Private_Clean|Private_Dirty|Anonymous):/ { printf "%s %s ", \$1, \$2 } END { print "" }' /proc/\$DEPT_BENCH_PID/smaps_rollup
SQL
		done
	done
done
printf '{"bench": "machine_end", "loadavg_end": "%s", "date": "%s"}\n' "$(cut -d' ' -f1-3 /proc/loadavg)" \
	"$(date -u +%Y-%m-%dT%H:%MZ)"
