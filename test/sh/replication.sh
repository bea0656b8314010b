#!/usr/bin/env bash
# Train on one cluster, serve on another (issue 17, item 6): dept.adapters
# is published through logical replication to a second cluster on
# loopback, which predicts with the replicated adapter exactly as the
# primary does, and follows a retrain and a rollback.
# Uses two clusters of its own (the primary with wal_level = logical).
set -uo pipefail
. "$(dirname "$0")/tap.bash"
root=$(cd "$(dirname "$0")/../.." && pwd)
fixtures=${DEPT_FIXTURE_DIR:-$root/test/fixtures}
primary=$(mktemp -d /tmp/dept-primary.XXXXXX)
replica=$(mktemp -d /tmp/dept-replica.XXXXXX)
pport=$(( ${PGPORT:-5499} + 16 ))
rport=$(( ${PGPORT:-5499} + 17 ))
trap '"$root/scripts/pg-cluster.sh" stop "$primary"; "$root/scripts/pg-cluster.sh" stop "$replica";
	rm -rf "$primary" "$replica"' EXIT
DEPT_PG_EXTRA_CONF=$'wal_level = logical\nshared_preload_libraries = \'\'' \
	"$root/scripts/pg-cluster.sh" start "$primary" "$pport"
DEPT_PG_EXTRA_CONF="shared_preload_libraries = ''" "$root/scripts/pg-cluster.sh" start "$replica" "$rport"
export PGUSER=postgres
on_primary() { PGHOST=$primary PGPORT=$pport sql postgres "$1"; }
on_replica() { PGHOST=$replica PGPORT=$rport sql postgres "$1"; }
texts="ARRAY['a wonderful, moving film', 'a dull and lifeless mess', 'fine', 'not bad at all']"

on_primary "CREATE EXTENSION dept; CREATE TABLE reviews (label text, body text)" >/dev/null
tail -n +2 "$fixtures/sst2_train_600.tsv" | PGHOST=$primary PGPORT=$pport psql -X -q -d postgres \
	-c "\copy reviews FROM STDIN WITH (FORMAT csv, DELIMITER E'\t', QUOTE E'\x01')"
on_primary "SELECT dept_train('reviews', 'label', method => 'probe', options => '{\"epochs\": 3}')" >/dev/null
ok $? "the primary trains an adapter"
on_primary "CREATE PUBLICATION dept_adapters FOR TABLE dept.adapters" >/dev/null
ok $? "dept.adapters is published"
on_replica "CREATE EXTENSION dept" >/dev/null
on_replica "CREATE SUBSCRIPTION dept_adapters
	CONNECTION 'host=$primary port=$pport dbname=postgres user=postgres' PUBLICATION dept_adapters" >/dev/null
ok $? "the second cluster subscribes"
PGHOST=$replica PGPORT=$rport poll postgres "SELECT count(*) = 1 FROM dept.adapters" 60
ok $? "the adapter arrives on the second cluster"
want=$(on_primary "SELECT dept_predict_proba('reviews_label', $texts)::text")
is "$(on_replica "SELECT dept_predict_proba('reviews_label', $texts)::text")" "$want" \
	"the second cluster predicts exactly as the primary"

on_primary "UPDATE reviews SET label = CASE label WHEN 'positive' THEN 'negative' ELSE 'positive' END;
	SELECT dept_train('reviews', 'label', method => 'probe', options => '{\"epochs\": 3}', activate => 'always')" >/dev/null
PGHOST=$replica PGPORT=$rport poll postgres \
	"SELECT version = 2 FROM dept.adapters WHERE name = 'reviews_label' AND active" 60
ok $? "a retrained, activated version replicates"
is "$(on_replica "SELECT dept_predict('reviews_label', 'a wonderful, moving film')")" \
	"$(on_primary "SELECT dept_predict('reviews_label', 'a wonderful, moving film')")" \
	"and the second cluster serves it from its next statement"
on_primary "SELECT dept_activate('reviews_label', 1)" >/dev/null
PGHOST=$replica PGPORT=$rport poll postgres \
	"SELECT version = 1 FROM dept.adapters WHERE name = 'reviews_label' AND active" 60
ok $? "a rollback on the primary replicates"
is "$(on_replica "SELECT dept_predict_proba('reviews_label', $texts)::text")" "$want" \
	"and the second cluster predicts with version 1 again"
on_replica "DROP SUBSCRIPTION dept_adapters" >/dev/null
finish
