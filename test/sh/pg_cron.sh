#!/usr/bin/env bash
# pg_cron (preloaded in the test cluster, cron.database_name = postgres)
# retrains an adapter on a schedule: a scheduled run produces a new version.
set -uo pipefail
. "$(dirname "$0")/tap.bash"
db=postgres
fixtures=${DEPT_FIXTURE_DIR:-$(dirname "$0")/../fixtures}
sql $db "CREATE EXTENSION IF NOT EXISTS pg_cron; CREATE EXTENSION IF NOT EXISTS dept;
	DROP TABLE IF EXISTS cron_reviews; CREATE TABLE cron_reviews (label text, body text);
	DELETE FROM dept.adapters WHERE name = 'cron_reviews_label'" >/dev/null
tail -n +2 "$fixtures/sst2_train_600.tsv" | psql -X -q -d $db -c "\copy cron_reviews FROM STDIN WITH (FORMAT csv, DELIMITER E'\t', QUOTE E'\x01')"

is "$(sql $db "SELECT dept_train('cron_reviews', 'label', method => 'probe', options => '{\"epochs\": 2}', activate => 'always')" 2>/dev/null)" \
	"cron_reviews_label" "version 1 trains"
jobid=$(sql $db "SELECT dept_schedule('cron_reviews_label', '* * * * *')")
ok $? "dept_schedule creates a pg_cron job ($jobid)"
is "$(sql $db "SELECT command LIKE 'SELECT public.dept_train(%' FROM cron.job WHERE jobname = 'dept:cron_reviews_label'")" "t" \
	"the cron job repeats the last training"
poll $db "SELECT count(*) >= 2 FROM dept.adapters WHERE name = 'cron_reviews_label'" 150
ok $? "within the next scheduled minute a new adapter version appears"
is "$(sql $db "SELECT dept_unschedule('cron_reviews_label')")" "t" "dept_unschedule removes the job"
is "$(sql $db "SELECT count(*) FROM cron.job WHERE jobname = 'dept:cron_reviews_label'")" "0" "no cron job is left"
sql $db "DROP TABLE cron_reviews; DELETE FROM dept.adapters WHERE name = 'cron_reviews_label'" >/dev/null
finish
