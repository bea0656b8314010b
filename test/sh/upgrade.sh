#!/usr/bin/env bash
# Release 1.0 to 1.1 on a database that holds adapters, and the life cycle
# around it (issue 12, sections 1 and 3; issue 17, item 4):
#  - ALTER EXTENSION dept UPDATE keeps predictions, grants and the stored
#    pg_cron command working (the command is qualified by the upgrade);
#  - a 1.0 export imports into 1.1 and predicts the same;
#  - a caller terminated while waiting cancels its job (nothing stored);
#  - the training worker names itself in application_name;
#  - DROP EXTENSION warns with the number of adapters, or refuses when
#    dept.on_drop_extension = 'error'; pg_dump / pg_restore --clean keep
#    the adapters, and a restore into a new database predicts the same.
# Uses its own cluster (pg_cron in database postgres).
set -uo pipefail
. "$(dirname "$0")/tap.bash"
root=$(cd "$(dirname "$0")/../.." && pwd)
fixtures=${DEPT_FIXTURE_DIR:-$root/test/fixtures}
dir=$(mktemp -d /tmp/dept-upgrade.XXXXXX)
port=$(( ${PGPORT:-5499} + 15 ))
trap '"$root/scripts/pg-cluster.sh" stop "$dir"; rm -rf "$dir"' EXIT
"$root/scripts/pg-cluster.sh" start "$dir" "$port"
export PGHOST=$dir PGPORT=$port PGUSER=postgres
chmod a+rx "$dir"
db=postgres
texts="ARRAY['a wonderful, moving film', 'a dull and lifeless mess', 'fine', 'not bad at all']"

load_reviews() {   # load_reviews DB TABLE
	sql "$1" "CREATE TABLE $2 (label text, body text)" >/dev/null
	tail -n +2 "$fixtures/sst2_train_600.tsv" |
		psql -X -q -d "$1" -c "\copy $2 FROM STDIN WITH (FORMAT csv, DELIMITER E'\t', QUOTE E'\x01')"
}

# --- 1.0 with an adapter, a grant and a schedule ----------------------------
sql $db "CREATE EXTENSION pg_cron; CREATE EXTENSION dept VERSION '1.0';
	CREATE ROLE up_user LOGIN;
	GRANT EXECUTE ON FUNCTION dept_train(regclass, text, text, text, text, jsonb, boolean, text),
		dept_schedule(text, text) TO up_user;
	GRANT USAGE ON SCHEMA cron TO up_user" >/dev/null
load_reviews $db up_reviews
sql $db "ALTER TABLE up_reviews OWNER TO up_user" >/dev/null
PGUSER=up_user sql $db "SELECT dept_train('up_reviews', 'label', method => 'probe',
	options => '{\"epochs\": 3}')" >/dev/null
ok $? "1.0: up_user trains an adapter"
PGUSER=up_user sql $db "SELECT dept_schedule('up_reviews_label', '0 3 * * *')" >/dev/null
ok $? "1.0: and schedules its retraining"
before=$(sql $db "SELECT dept_predict_proba('up_reviews_label', $texts)::text")
export10=$(sql $db "SELECT encode(dept_export('up_reviews_label'), 'hex')")

# --- the upgrade --------------------------------------------------------------
sql $db "ALTER EXTENSION dept UPDATE" >/dev/null
ok $? "ALTER EXTENSION dept UPDATE runs"
is "$(sql $db "SELECT extversion FROM pg_extension WHERE extname = 'dept'")" "1.1" "the extension is at 1.1"
is "$(sql $db "SELECT dept_predict_proba('up_reviews_label', $texts)::text")" "$before" \
	"predictions are unchanged"
is "$(sql $db "SELECT has_function_privilege('up_user', 'dept_train(regclass, text, text, text, text, jsonb, boolean, text)', 'EXECUTE')
	AND NOT has_function_privilege('public', 'dept_train(regclass, text, text, text, text, jsonb, boolean, text)', 'EXECUTE')")" \
	"t" "the grant of dept_train survives, and PUBLIC still has none"
is "$(sql $db "SELECT 'search_path=pg_catalog, pg_temp' = ANY (proconfig) FROM pg_proc WHERE proname = 'dept_schedule'")" \
	"t" "dept_schedule pins its search_path"
command=$(sql $db "SELECT command FROM cron.job WHERE jobname = 'dept:up_reviews_label'")
case "$command" in "SELECT public.dept_train("*) r=0 ;; *) r=1 ;; esac
ok $r "the stored cron command now calls public.dept_train"
PGUSER=up_user psql -X -qAt -v ON_ERROR_STOP=1 -d $db -c "SET search_path = ''" -c "$command" >/dev/null 2>&1
ok $? "the stored command runs as its role with an empty search_path"
is "$(sql $db "SELECT count(*) FROM dept.adapters WHERE name = 'up_reviews_label'")" "2" \
	"and trains a new version"
is "$(PGUSER=up_user sql $db "SELECT dept_report('up_reviews_label', 1) IS NULL AND NOT dept_is_test_row('a', 'b', 0)")" "t" \
	"dept_report reads a version trained in 1.0: no test report (NULL)"
sql $db "SELECT dept_import('up_from_10', decode('$export10', 'hex'))" >/dev/null
ok $? "a 1.0 export imports into 1.1"
is "$(sql $db "SELECT dept_predict_proba('up_from_10', $texts)::text")" "$before" \
	"and predicts as it did in 1.0"

# --- a terminated caller cancels its job --------------------------------------
PGUSER=up_user psql -X -qAt -d $db -c "SELECT dept_train('up_reviews', 'label', adapter => 'up_killed',
	options => '{\"epochs\": 20, \"max_length\": 32}')" >/dev/null 2>&1 &
caller=$!
poll $db "SELECT EXISTS (SELECT 1 FROM dept.jobs WHERE adapter = 'up_killed' AND status = 'running')" 60
ok $? "a waiting caller's job is running"
is "$(sql $db "SELECT a.application_name = 'dept training job ' || j.id FROM pg_stat_activity a
	JOIN dept.jobs j ON j.worker_pid = a.pid WHERE j.adapter = 'up_killed'")" "t" \
	"the worker's application_name names its job"
sql $db "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	WHERE backend_type = 'client backend' AND query LIKE '%up_killed%' AND pid <> pg_backend_pid()" >/dev/null
wait $caller
poll $db "SELECT status = 'cancelled' FROM dept.jobs WHERE adapter = 'up_killed'" 60
ok $? "terminating the caller cancels the job"
is "$(sql $db "SELECT count(*) FROM dept.adapters WHERE name = 'up_killed'")" "0" "and nothing is stored"

# --- DROP EXTENSION, pg_dump and pg_restore ---------------------------------------
sql $db "CREATE DATABASE up_drop" >/dev/null
sql up_drop "CREATE EXTENSION dept" >/dev/null
load_reviews up_drop up_reviews
sql up_drop "SELECT dept_train('up_reviews', 'label', method => 'probe', options => '{\"epochs\": 3}')" >/dev/null
dropped=$(sql up_drop "SELECT dept_predict_proba('up_reviews_label', $texts)::text")
out=$(psql -X -qAt -d up_drop -c "SET dept.on_drop_extension = 'error'" -c "DROP EXTENSION dept" 2>&1)
grep -q "deletes 1 stored adapter version" <<<"$out"
ok $? "with dept.on_drop_extension = 'error', DROP EXTENSION is refused, naming the adapters"
is "$(sql up_drop "SELECT count(*) FROM dept.adapters")" "1" "and the adapter is still there"
"$(pg_config --bindir)/pg_dump" -Fc -d up_drop -f "$dir/up_drop.dump"
ok $? "pg_dump of a database with adapters"
out=$("$(pg_config --bindir)/pg_restore" --verbose --clean -d up_drop "$dir/up_drop.dump" 2>&1)
ok $? "pg_restore --clean into the same database succeeds"
grep -q "WARNING:  dropping extension dept deletes 1 stored adapter version" <<<"$out"
ok $? "with the warning of DROP EXTENSION"
is "$(sql up_drop "SELECT dept_predict_proba('up_reviews_label', $texts)::text")" "$dropped" \
	"the restored adapter predicts the same"
sql $db "CREATE DATABASE up_restored" >/dev/null
"$(pg_config --bindir)/pg_restore" -d up_restored "$dir/up_drop.dump" >/dev/null 2>&1
ok $? "pg_restore into a new database"
is "$(sql up_restored "SELECT dept_predict_proba('up_reviews_label', $texts)::text")" "$dropped" \
	"which predicts the same"
out=$(psql -X -qAt -d up_drop -c "DROP EXTENSION dept" 2>&1)
grep -q "WARNING:  dropping extension dept deletes 1 stored adapter version" <<<"$out"
ok $? "DROP EXTENSION warns with the number of adapters it deletes"
is "$(sql up_drop "SELECT to_regclass('dept.adapters') IS NULL")" "t" "and drops them by default"
finish
