#!/usr/bin/env bash
# With no background worker slot free, dept_train fails cleanly with
# insufficient_resources (53000) and a hint about max_worker_processes.
# Uses its own small cluster (max_worker_processes = 0, no pg_cron).
set -uo pipefail
. "$(dirname "$0")/tap.bash"
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/dept-slots.XXXXXX)
port=$(( ${PGPORT:-5499} + 7 ))
trap '"$root/scripts/pg-cluster.sh" stop "$dir"; rm -rf "$dir"' EXIT
DEPT_PG_EXTRA_CONF=$'max_worker_processes = 0\nshared_preload_libraries = \'\'' \
	"$root/scripts/pg-cluster.sh" start "$dir" "$port"
export PGHOST=$dir PGPORT=$port PGUSER=postgres
sql postgres "CREATE EXTENSION dept; CREATE TABLE t (label text, body text);
	INSERT INTO t VALUES ('a', 'good'), ('b', 'bad'), ('a', 'fine'), ('b', 'awful')" >/dev/null
out=$(psql -X -q -d postgres -v ON_ERROR_STOP=1 -v VERBOSITY=verbose \
	-c "\set VERBOSITY verbose" -c "SELECT dept_train('t', 'label', method => 'probe')" 2>&1)
grep -q "53000" <<<"$out"
ok $? "no free worker slot gives SQLSTATE 53000"
grep -q "max_worker_processes" <<<"$out"
ok $? "with a hint about max_worker_processes"
is "$(sql postgres "SELECT 1")" "1" "the server is still up"
finish
