#!/usr/bin/env bash
# A training worker killed with SIGKILL (which makes the postmaster restart
# every backend) leaves its job marked failed after the restart, no partial
# adapter, and the previously active version still served.
set -uo pipefail
. "$(dirname "$0")/tap.bash"
db=dept_crash
fixtures=${DEPT_FIXTURE_DIR:-$(dirname "$0")/../fixtures}
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
sql $db "CREATE EXTENSION dept; CREATE TABLE reviews (label text, body text)" >/dev/null
tail -n +2 "$fixtures/sst2_train_600.tsv" | psql -X -q -d $db -c "\copy reviews FROM STDIN WITH (FORMAT csv, DELIMITER E'\t', QUOTE E'\x01')"

is "$(sql $db "SELECT dept_train('reviews', 'label', adapter => 'crashy', method => 'probe', options => '{\"epochs\": 3}')" 2>/dev/null)" \
	"crashy" "version 1 trains"
job=$(sql $db "SELECT dept_train('reviews', 'label', adapter => 'crashy', options => '{\"epochs\": 50}', wait => false, activate => 'always')")
poll $db "SELECT status = 'running' AND step > 0 FROM dept.jobs WHERE id = $job" 60
ok $? "the second job is training"
pid=$(sql $db "SELECT worker_pid FROM dept.jobs WHERE id = $job")
kill -9 "$pid"
ok $? "SIGKILL sent to the training worker (pid $pid)"
sleep 1
wait_for_server
ok $? "the server is back after crash recovery"
is "$(sql $db "SELECT dept_wait($job)")" "failed" "the killed job is reported failed"
is "$(sql $db "SELECT error LIKE '%exited before finishing%' FROM dept.jobs WHERE id = $job")" "t" \
	"with an error that says why"
is "$(sql $db "SELECT string_agg(version::text || ':' || active::text, ',') FROM dept.adapters WHERE name = 'crashy'")" \
	"1:true" "no partial adapter was stored; version 1 is still active"
is "$(sql $db "SELECT dept_predict('crashy', 'a wonderful film') IN ('positive', 'negative')")" "t" \
	"version 1 still serves predictions"
psql -X -q -d postgres -c "DROP DATABASE $db"
finish
