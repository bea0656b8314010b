#!/usr/bin/env bash
# Load test (loopback only, bounded in time): 16 pgbench clients run
# dept_predict for DURATION seconds (default 60) while a DePT training job
# runs and another session flips the active adapter version every 2 s.
# Passes when no client errors or aborts, every answer is one of the two
# versions' answers for that text (computed beforehand in a single session),
# and backend memory stays bounded; prints throughput and RSS at start and
# end.  Starts its own cluster on port 5496.   test/stress/load.sh [DURATION]
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/test/sh/tap.bash"
duration=${1:-${DURATION:-60}}
dir=$(mktemp -d /tmp/dept-stress.XXXXXX)
port=5496
trap '"$root/scripts/pg-cluster.sh" stop "$dir"; rm -rf "$dir"' EXIT
DEPT_PG_EXTRA_CONF="max_connections = 40" "$root/scripts/pg-cluster.sh" start "$dir" "$port"
export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
fixtures=$root/test/fixtures

sql postgres "CREATE EXTENSION dept; CREATE TABLE reviews (label text, body text);
	CREATE TABLE holdout (label text, body text)" >/dev/null
tail -n +2 "$fixtures/sst2_train_600.tsv" | psql -X -q -c "\copy reviews FROM STDIN WITH (FORMAT csv, DELIMITER E'\t', QUOTE E'\x01')"
tail -n +2 "$fixtures/sst2_test_200.tsv" | psql -X -q -c "\copy holdout FROM STDIN WITH (FORMAT csv, DELIMITER E'\t', QUOTE E'\x01')"
sql postgres "CREATE TABLE flipped AS SELECT CASE label WHEN 'positive' THEN 'negative' ELSE 'positive' END AS label, body FROM reviews" >/dev/null
sql postgres "SELECT dept_train('reviews', 'label', adapter => 'stress', method => 'probe', options => '{\"epochs\": 10}')" >/dev/null 2>&1
sql postgres "SELECT dept_train('flipped', 'label', adapter => 'stress', method => 'probe', options => '{\"epochs\": 10}', activate => 'never')" >/dev/null 2>&1
# the answers of both versions, from a single session
sql postgres "CREATE TABLE answers AS SELECT row_number() OVER () AS id, body, NULL::text AS v1, NULL::text AS v2 FROM holdout" >/dev/null
sql postgres "UPDATE answers SET v1 = dept_predict('stress', body)" >/dev/null
sql postgres "SELECT dept_activate('stress', 2)" >/dev/null
sql postgres "UPDATE answers SET v2 = dept_predict('stress', body)" >/dev/null
sql postgres "SELECT dept_activate('stress', 1)" >/dev/null
is "$(sql postgres "SELECT count(*) FILTER (WHERE v1 <> v2) > 100 FROM answers")" "t" \
	"the two versions disagree on most texts, so a stale cache would show"

cat >"$dir/predict.sql" <<'SQL'
\set id random(1, 200)
SELECT CASE WHEN dept_predict('stress', a.body) IN (a.v1, a.v2) THEN 1 ELSE 1 / (a.id - a.id)::int END FROM answers a WHERE a.id = :id;
SQL
chmod a+r "$dir/predict.sql"

job=$(sql postgres "SELECT dept_train('reviews', 'label', adapter => 'stress_training', options => '{\"epochs\": 50}', wait => false)")
( end=$(( $(date +%s) + duration )); v=2
  while [ "$(date +%s)" -lt "$end" ]; do sql postgres "SELECT dept_activate('stress', $v)" >/dev/null; v=$((3 - v)); sleep 2; done ) &
flipper=$!
rss() { # total and max RSS (kB) of the pgbench client backends
	ps -o rss= -o args= -u postgres | awk '/postgres: postgres postgres .*(SELECT|idle)/ { t += $1; if ($1 > m) m = $1; n++ }
		END { printf "%d %d %d\n", n, t, m }'
}
pgbench -n -c 16 -j 2 -T "$duration" -f "$dir/predict.sql" postgres >"$dir/pgbench.out" 2>"$dir/pgbench.err" &
bench=$!
sleep 5
read -r n0 total0 max0 < <(rss)
sleep $(( duration > 10 ? duration - 8 : 1 ))
read -r n1 total1 max1 < <(rss)
wait $bench
rc=$?
wait $flipper
cat "$dir/pgbench.out" | grep -E "number of (transactions actually processed|failed)|tps|latency average"
[ "$rc" -eq 0 ] || sed "s/^/# /" "$dir/pgbench.err" | head -5
ok $rc "pgbench exits cleanly"
! grep -qiE "aborted|error" "$dir/pgbench.err"
ok $? "no client aborted and no query failed (a wrong answer would divide by zero)"
echo "# backends: $n0 at 5 s (total RSS $((total0 / 1024)) MB, max $((max0 / 1024)) MB), $n1 near the end (total $((total1 / 1024)) MB, max $((max1 / 1024)) MB)"
[ "$max1" -lt 400000 ]
ok $? "every backend stays under 400 MB"
[ "$max1" -le $(( max0 + max0 / 10 + 20000 )) ]
ok $? "no backend grew by more than 10% + 20 MB over the run"
is "$(sql postgres "SELECT status IN ('running', 'succeeded') FROM dept.jobs WHERE id = $job")" "t" \
	"the training job ran beside the load"
sql postgres "SELECT dept_cancel($job)" >/dev/null
finish
