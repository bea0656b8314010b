#!/usr/bin/env bash
# A physical streaming standby (loopback) serves dept_predict for an adapter
# trained on the primary, and follows when the primary activates another
# version: inference is read-only, so it runs on a hot standby.
set -uo pipefail
. "$(dirname "$0")/tap.bash"
root=$(cd "$(dirname "$0")/../.." && pwd)
fixtures=${DEPT_FIXTURE_DIR:-$root/test/fixtures}
primary_host=$PGHOST
primary_port=$PGPORT
dir=$(mktemp -d /tmp/dept-standby.XXXXXX)
port=$(( primary_port + 9 ))
bindir=$(pg_config --bindir)
as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
	as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1
	rm -rf "$dir"
}
trap cleanup EXIT
[ "$(id -u)" -eq 0 ] && chown postgres: "$dir"

db=dept_replica
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
sql $db "CREATE EXTENSION dept; CREATE TABLE reviews (label text, body text)" >/dev/null
tail -n +2 "$fixtures/sst2_train_600.tsv" | psql -X -q -d $db -c "\copy reviews FROM STDIN WITH (FORMAT csv, DELIMITER E'\t', QUOTE E'\x01')"
sql $db "SELECT dept_train('reviews', 'label', adapter => 'replicated', method => 'probe', options => '{\"epochs\": 10}')" >/dev/null 2>&1
sql $db "CREATE TABLE flipped AS SELECT CASE label WHEN 'positive' THEN 'negative' ELSE 'positive' END AS label, body FROM reviews" >/dev/null
sql $db "SELECT dept_train('flipped', 'label', adapter => 'replicated', method => 'probe', options => '{\"epochs\": 10}', activate => 'never')" >/dev/null 2>&1

as_owner "$bindir/pg_basebackup" -h "$primary_host" -p "$primary_port" -U postgres -D "$dir/data" -R -X stream -c fast
ok $? "pg_basebackup copies the primary"
cat >>"$dir/data/postgresql.conf" <<CONF
port = $port
unix_socket_directories = '$dir'
shared_preload_libraries = ''
hot_standby = on
CONF
as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/standby.log" -w -t 60 start >/dev/null
ok $? "the standby starts"
standby() { PGHOST=$dir PGPORT=$port sql $db "$1"; }
is "$(standby "SELECT pg_is_in_recovery()")" "t" "it is in recovery (read-only)"
text="a wonderful, moving, beautifully acted film"
want=$(sql $db "SELECT dept_predict('replicated', '$text')")
is "$(standby "SELECT dept_predict('replicated', '$text')")" "$want" "the standby predicts as the primary"
is "$(standby "SELECT (dept_predict_proba('replicated', '$text') ->> '$want')::real > 0.5")" "t" \
	"dept_predict_proba runs on the standby"
is "$(sql $db "SELECT count(*) FROM dept.adapters WHERE name = 'replicated'")" "2" "two versions exist on the primary"
sql $db "SELECT dept_activate('replicated', 2)" >/dev/null
PGHOST=$dir PGPORT=$port poll $db "SELECT dept_predict('replicated', '$text') <> '$want'" 30
ok $? "after the primary activates version 2, the standby serves it"
psql -X -q -d postgres -c "DROP DATABASE $db"
finish
