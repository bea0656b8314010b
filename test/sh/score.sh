#!/usr/bin/env bash
# Bulk scoring as a job (issue 17, item 3): dept_score scores every row of a
# table in a background worker into an output table, with the labels
# dept_predict gives; progress is in dept.jobs; a cancelled job keeps the
# rows it scored and the next dept_score resumes after them; NULL texts get
# NULL labels; a key without a unique index is refused.
set -uo pipefail
. "$(dirname "$0")/tap.bash"
root=$(cd "$(dirname "$0")/../.." && pwd)
fixtures=${DEPT_FIXTURE_DIR:-$root/test/fixtures}
db=dept_score
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null 2>&1
sql $db "CREATE EXTENSION dept; CREATE TABLE reviews (label text, body text)" >/dev/null
tail -n +2 "$fixtures/sst2_train_600.tsv" |
	psql -X -q -d $db -c "\copy reviews FROM STDIN WITH (FORMAT csv, DELIMITER E'\t', QUOTE E'\x01')"
sql $db "SELECT dept_train('reviews', 'label', method => 'probe', options => '{\"epochs\": 3}');
	CREATE TABLE docs (id bigint PRIMARY KEY, body text);
	INSERT INTO docs SELECT i, (SELECT body FROM reviews OFFSET i % 600 LIMIT 1) || ' #' || i
		FROM generate_series(1, 1500) i;
	UPDATE docs SET body = NULL WHERE id % 500 = 0;
	CREATE TABLE nokey AS SELECT * FROM docs" >/dev/null

job=$(sql $db "SELECT dept_score('reviews_label', 'docs', 'id', 'body')")
ok $? "dept_score starts a job ($job)"
is "$(sql $db "SELECT kind, status FROM dept.jobs WHERE id = $job" | tr '|' ' ')" "score running" \
	"the job is recorded as a running scoring job when dept_score returns"
is "$(sql $db "SELECT dept_wait($job)")" "succeeded" "it succeeds"
is "$(sql $db "SELECT step, total_steps FROM dept.jobs WHERE id = $job" | tr '|' ' ')" "1500 1500" \
	"its progress counts every row"
is "$(sql $db "SELECT count(*) FROM docs_reviews_label")" "1500" "every row is in the output table"
is "$(sql $db "SELECT count(*) FROM docs d JOIN docs_reviews_label s ON s.key = d.id
	WHERE d.body IS NOT NULL AND (s.label IS DISTINCT FROM dept_predict('reviews_label', d.body)
	OR abs(s.probability - (dept_predict_proba('reviews_label', d.body) ->> s.label)::real) > 1e-6)")" "0" \
	"labels and probabilities are those of dept_predict"
is "$(sql $db "SELECT count(*) FROM docs_reviews_label WHERE label IS NULL AND probability IS NULL")" "3" \
	"NULL texts get NULL labels"

# cancel a job into a fresh table while it runs, then resume
job=$(sql $db "SELECT dept_score('reviews_label', 'docs', 'id', 'body', 'resumed')")
poll $db "SELECT step >= 256 FROM dept.jobs WHERE id = $job" 60
sql $db "SELECT dept_cancel($job)" >/dev/null
is "$(sql $db "SELECT dept_wait($job)")" "cancelled" "dept_cancel stops a scoring job"
partial=$(sql $db "SELECT count(*) FROM resumed")
[ "$partial" -gt 0 ] && [ "$partial" -lt 1500 ]
ok $? "the cancelled job keeps the $partial rows it scored"
first=$(sql $db "SELECT max(scored_at) FROM resumed")
job=$(sql $db "SELECT dept_score('reviews_label', 'docs', 'id', 'body', 'resumed')")
is "$(sql $db "SELECT dept_wait($job)")" "succeeded" "a second dept_score into the same table succeeds"
is "$(sql $db "SELECT count(*), count(*) FILTER (WHERE scored_at <= '$first') FROM resumed" | tr '|' ' ')" \
	"1500 $partial" "it resumes after the rows already scored, without scoring them again"

# keep_current: a trigger queues inserted, changed and deleted keys; the next run scores them
job=$(sql $db "SELECT dept_score('reviews_label', 'docs', 'id', 'body', 'kept', keep_current => true)")
is "$(sql $db "SELECT dept_wait($job)")" "succeeded" "keep_current: the first run scores the table"
is "$(sql $db "SELECT step FROM dept.jobs WHERE id = $job")" "1500" "and counts 1,500 rows"
sql $db "INSERT INTO docs VALUES (0, 'an awful, dull mess'), (5000, 'a wonderful, moving film');
	UPDATE docs SET body = 'a boring and painfully bad movie' WHERE id = 10;
	DELETE FROM docs WHERE id = 20" >/dev/null
is "$(sql $db "SELECT array_agg(key ORDER BY key) FROM kept_queue")" "{0,10,20,5000}" \
	"the trigger queued the inserted, changed and deleted keys"
job=$(sql $db "SELECT dept_score('reviews_label', 'docs', 'id', 'body', 'kept', keep_current => true)")
is "$(sql $db "SELECT dept_wait($job)")" "succeeded" "the next run succeeds"
is "$(sql $db "SELECT count(*), bool_or(key = 20), count(*) FILTER (WHERE key IN (0, 5000)) FROM kept" | tr '|' ' ')" \
	"1501 f 2" "new rows are scored and the deleted row's result is gone"
is "$(sql $db "SELECT bool_and(k.label = dept_predict('reviews_label', d.body)) FROM kept k JOIN docs d ON d.id = k.key
	WHERE k.key IN (0, 10, 5000)")" "t" "the changed row carries the label of its new text"
is "$(sql $db "SELECT count(*) FROM kept_queue")" "0" "and the queue is empty"

out=$(psql -X -qAt -d $db -c "SELECT dept_score('reviews_label', 'nokey', 'id', 'body')" 2>&1)
grep -q "has no unique index" <<<"$out"
ok $? "a key without a unique index is refused"
psql -X -q -d postgres -c "DROP DATABASE $db" >/dev/null 2>&1
finish
