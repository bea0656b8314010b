-- dept_train(method => 'auto'): the probe, DePT (m = 60) and DePT (m = 20)
-- within budget_rows, the best by validation accuracy kept, every
-- candidate stored with the version.  Training reads committed tables, so
-- the data is set up outside the test transaction and dropped at the end.
\set ON_ERROR_STOP 1
\set QUIET 1
\getenv fixtures DEPT_FIXTURE_DIR
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS dept;
\ir helpers.psql
DROP TABLE IF EXISTS tap_auto_reviews;
CREATE TABLE tap_auto_reviews (label text, body text);
\set train_data `cat :fixtures/sst2_train_600.tsv`
INSERT INTO tap_auto_reviews SELECT * FROM pg_temp.tsv_rows(:'train_data');
DELETE FROM dept.adapters WHERE name LIKE 'tap\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'tap\_%';

BEGIN;
SELECT plan(12);

SELECT is(dept_train('tap_auto_reviews', 'label', adapter => 'tap_auto', method => 'auto',
					 options => '{"budget_rows": 384, "max_length": 16, "seed": 1}'),
		  'tap_auto', 'method auto trains');
CREATE TEMP TABLE auto_row AS
	SELECT method, hyperparameters -> 'auto' AS a, (metrics ->> 'valid_accuracy')::float8 AS acc,
		   (hyperparameters ->> 'prompt_length')::int AS prompt_length
	  FROM dept.adapters WHERE name = 'tap_auto';
CREATE TEMP TABLE candidates AS
	SELECT ord::int AS i, c ->> 'method' AS method, (c -> 'options' ->> 'prompt_length')::int AS prompt_length,
		   (c ->> 'valid_accuracy')::float8 AS acc, (c ->> 'steps')::int AS steps,
		   (c ->> 'rows_seen')::int AS rows_seen, (c ->> 'seconds')::float8 AS seconds
	  FROM auto_row, jsonb_array_elements(a -> 'candidates') WITH ORDINALITY AS e(c, ord);
SELECT results_eq($$SELECT method, prompt_length FROM candidates ORDER BY i$$,
				  $$VALUES ('probe', 0), ('dept', 60), ('dept', 20)$$,
				  'three candidates: the probe, DePT m = 60, DePT m = 20, in that order');
SELECT is((SELECT a ->> 'steps_each' FROM auto_row), '4', 'budget_rows 384 gives each of 3 candidates 4 steps of 32 rows');
SELECT ok((SELECT bool_and(steps <= 4) AND sum(rows_seen) <= 384 FROM candidates),
		  'the candidates see at most budget_rows rows together');
SELECT ok((SELECT bool_and(acc BETWEEN 0 AND 1 AND seconds > 0) FROM candidates),
		  'every candidate has a validation accuracy and its seconds');
SELECT is((SELECT (a ->> 'winner')::int FROM auto_row),
		  (SELECT i FROM candidates ORDER BY acc DESC, i LIMIT 1),
		  'the winner is the best by validation accuracy (the earlier on a tie)');
SELECT is((SELECT method FROM auto_row), (SELECT c.method FROM candidates c, auto_row r WHERE c.i = (r.a ->> 'winner')::int),
		  'the stored method is the winner''s');
SELECT is((SELECT acc FROM auto_row), (SELECT max(acc) FROM candidates),
		  'the stored validation accuracy is the winner''s');
SELECT is((SELECT method FROM dept.jobs WHERE adapter = 'tap_auto'), 'auto',
		  'the job records method auto (a scheduled retrain chooses again)');

SELECT throws_ok($$SELECT dept_train('tap_auto_reviews', 'label', options => '{"budget_rows": 100}')$$,
				 '22023', NULL, 'budget_rows without method auto is refused');
SELECT throws_ok($$SELECT dept_train('tap_auto_reviews', 'label', method => 'auto', options => '{"prompt_length": 5}')$$,
				 '22023', NULL, 'auto chooses prompt_length itself');
SELECT throws_ok($$SELECT dept_train('tap_auto_reviews', 'label', method => 'auto', options => '{"valid_fraction": 0}')$$,
				 '22023', NULL, 'auto needs validation rows');

SELECT * FROM finish();
ROLLBACK;

DELETE FROM dept.adapters WHERE name LIKE 'tap\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'tap\_%';
DROP TABLE tap_auto_reviews;
