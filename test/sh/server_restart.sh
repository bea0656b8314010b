#!/usr/bin/env bash
# The server restarted (pg_ctl restart -m fast) in the middle of a training
# job: the worker is told to terminate at its next step, the shutdown
# completes, and after the restart the job is reaped to failed with a
# reason, no partial version exists, and the previously active version
# still serves.  Uses its own cluster, since it restarts it.
set -uo pipefail
. "$(dirname "$0")/tap.bash"
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/dept-restart.XXXXXX)
port=$(( ${PGPORT:-5499} + 9 ))
trap '"$root/scripts/pg-cluster.sh" stop "$dir"; rm -rf "$dir"' EXIT
DEPT_PG_EXTRA_CONF="shared_preload_libraries = ''" "$root/scripts/pg-cluster.sh" start "$dir" "$port"
export PGHOST=$dir PGPORT=$port PGUSER=postgres
fixtures=${DEPT_FIXTURE_DIR:-$root/test/fixtures}
as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
sql postgres "CREATE EXTENSION dept; CREATE TABLE reviews (label text, body text)" >/dev/null
tail -n +2 "$fixtures/sst2_train_600.tsv" | psql -X -q -c "\copy reviews FROM STDIN WITH (FORMAT csv, DELIMITER E'\t', QUOTE E'\x01')"

is "$(sql postgres "SELECT dept_train('reviews', 'label', adapter => 'restarted', method => 'probe', options => '{\"epochs\": 3}')" 2>/dev/null)" \
	"restarted" "version 1 trains"
want=$(sql postgres "SELECT string_agg(dept_predict('restarted', body), ',' ORDER BY body) FROM (SELECT body FROM reviews ORDER BY body LIMIT 50) s")
job=$(sql postgres "SELECT dept_train('reviews', 'label', adapter => 'restarted', options => '{\"epochs\": 50}', wait => false, activate => 'always')")
poll postgres "SELECT status = 'running' AND step > 0 FROM dept.jobs WHERE id = $job" 60
ok $? "the second job is training"
pid=$(sql postgres "SELECT worker_pid FROM dept.jobs WHERE id = $job")
started=$(sql postgres "SELECT pg_postmaster_start_time()")

t0=$(date +%s.%N)
as_owner "$(pg_config --bindir)/pg_ctl" -D "$dir/data" -m fast -w -t 60 restart >/dev/null
ok $? "pg_ctl restart -m fast completes while the job runs"
t1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "# restart took %.2f s\n", b - a }'
wait_for_server
ok $? "the server is back"
isnt_same=$(sql postgres "SELECT pg_postmaster_start_time() <> '$started'::timestamptz")
is "$isnt_same" "t" "it is a new postmaster"
kill -0 "$pid" 2>/dev/null
ok $(( ! $? )) "the training worker (pid $pid) is gone"
is "$(sql postgres "SELECT dept_wait($job)")" "failed" "the interrupted job is reported failed"
is "$(sql postgres "SELECT error LIKE '%exited before finishing%' AND finished_at IS NOT NULL FROM dept.jobs WHERE id = $job")" "t" \
	"with a reason and an end time"
is "$(sql postgres "SELECT string_agg(version::text || ':' || active::text, ',') FROM dept.adapters WHERE name = 'restarted'")" \
	"1:true" "no partial adapter was stored; version 1 is still active"
is "$(sql postgres "SELECT string_agg(dept_predict('restarted', body), ',' ORDER BY body) FROM (SELECT body FROM reviews ORDER BY body LIMIT 50) s")" \
	"$want" "version 1 serves the same predictions as before the restart"
is "$(sql postgres "SELECT count(*) FROM dept.jobs WHERE status IN ('queued', 'running')")" "0" \
	"no job is left running"
finish
