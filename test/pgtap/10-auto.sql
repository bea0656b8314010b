-- dept_train's default, method 'auto': the probe (with its L2 search), then
-- DePT (m = 20) from the probe's head within budget_rows, the best by
-- validation score kept, every candidate stored with the version; with a
-- prompt option and no method, DePT as in 1.0.  Training reads committed tables, so
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
SELECT plan(22);

SELECT is(dept_train('tap_auto_reviews', 'label', adapter => 'tap_auto',
					 options => '{"budget_rows": 384, "max_length": 16, "seed": 1, "test_fraction": 0.2}'),
		  'tap_auto', 'dept_train with no method trains method auto');
CREATE TEMP TABLE auto_row AS
	SELECT method, hyperparameters -> 'auto' AS a, (metrics ->> 'valid_accuracy')::float8 AS acc,
		   (hyperparameters ->> 'prompt_length')::int AS prompt_length,
		   (hyperparameters -> 'sample' ->> 'rows_read')::int AS rows_read,
		   (hyperparameters -> 'sample' ->> 'rows_used')::int AS rows_used,
		   (hyperparameters -> 'sample' ->> 'test_rows_found')::int AS rows_test
	  FROM dept.adapters WHERE name = 'tap_auto';
CREATE TEMP TABLE candidates AS
	SELECT ord::int AS i, c ->> 'method' AS method, (c -> 'options' ->> 'prompt_length')::int AS prompt_length,
		   (c -> 'options' ->> 'head_from_probe')::boolean AS warm, (c -> 'options' ->> 'l2')::float8 AS l2,
		   (c -> 'options' ->> 'C')::float8 AS c,
		   (c ->> 'valid_accuracy')::float8 AS acc, (c ->> 'valid_score')::float8 AS score,
		   (c ->> 'valid_rows')::int AS valid_rows, (c ->> 'steps')::int AS steps,
		   (c ->> 'rows_seen')::int AS rows_seen, (c ->> 'seconds')::float8 AS seconds
	  FROM auto_row, jsonb_array_elements(a -> 'candidates') WITH ORDINALITY AS e(c, ord);
SELECT results_eq($$SELECT method, prompt_length, warm FROM candidates ORDER BY i$$,
				  $$VALUES ('probe', 0, false), ('dept', 20, true)$$,
				  'two candidates: the probe, then DePT m = 20 whose head starts from the probe''s');
SELECT ok((SELECT c IN (0.01, 0.1, 1, 10, 100, 1000)
				   AND abs(l2 * c * (r.rows_used - valid_rows) - 1) < 1e-4
			  FROM candidates, auto_row r WHERE candidates.method = 'probe'),
		  'the probe records the C its cross-validation chose and lambda = 1 / (C n)');
SELECT is((SELECT a ->> 'steps_each' FROM auto_row), '12', 'budget_rows 384 gives DePT 12 steps of 32 rows');
SELECT ok((SELECT steps <= 12 AND rows_seen <= 384 FROM candidates WHERE method = 'dept'),
		  'DePT sees at most budget_rows rows');
SELECT ok((SELECT bool_and(acc BETWEEN 0 AND 1 AND seconds > 0) FROM candidates),
		  'every candidate has a validation accuracy and its seconds');
SELECT is((SELECT (a ->> 'winner')::int FROM auto_row),
		  (SELECT i FROM candidates ORDER BY score DESC, i LIMIT 1),
		  'the winner is the best by validation score (the earlier on a tie)');
SELECT is((SELECT method FROM auto_row), (SELECT c.method FROM candidates c, auto_row r WHERE c.i = (r.a ->> 'winner')::int),
		  'the stored method is the winner''s');
SELECT is((SELECT acc FROM auto_row), (SELECT c.acc FROM candidates c, auto_row r WHERE c.i = (r.a ->> 'winner')::int),
		  'the stored validation accuracy is the winner''s');
SELECT is((SELECT method FROM dept.jobs WHERE adapter = 'tap_auto'), 'auto',
		  'the job records method auto (a scheduled retrain chooses again)');
SELECT ok((SELECT rows_test > 0 AND rows_used + rows_test = rows_read FROM auto_row),
		  'the test rows are held out of the rows the candidates train and validate on');
SELECT ok((SELECT bool_and(valid_rows > 0 AND valid_rows < r.rows_used) FROM candidates, auto_row r),
		  'the candidates are compared on validation rows taken from the rows used, not the test rows');
SELECT is((SELECT (dept_report('tap_auto') -> 'rows')::int), (SELECT rows_test FROM auto_row),
		  'the winner''s test report scores the held-out rows');

SELECT is(dept_train('tap_auto_reviews', 'label', adapter => 'tap_auto_e1',
					 options => '{"epochs": 1, "budget_rows": 64, "max_length": 16}'),
		  'tap_auto_e1', 'auto with an explicit epochs trains');
SELECT ok((SELECT (c ->> 'steps')::int = 31 AND c -> 'options' ? 'C' FROM dept.adapters,
				  jsonb_array_elements(hyperparameters -> 'auto' -> 'candidates') c
			WHERE name = 'tap_auto_e1' AND c ->> 'method' = 'probe'),
		  'epochs are DePT''s: auto''s probe keeps its solver (5 folds x 6 C + the final fit)');

SELECT is(dept_train('tap_auto_reviews', 'label', adapter => 'tap_auto_dept',
					 options => '{"prompt_length": 4, "max_steps": 2, "max_length": 16}'),
		  'tap_auto_dept', 'with no method, a prompt option trains DePT as 1.0 did');
SELECT results_eq($$SELECT method, hyperparameters ? 'auto' FROM dept.adapters WHERE name = 'tap_auto_dept'$$,
				  $$VALUES ('dept', false)$$, 'the adapter is DePT, not a choice of candidates');

SELECT throws_ok($$SELECT dept_train('tap_auto_reviews', 'label', method => 'dept', options => '{"budget_rows": 100}')$$,
				 '22023', NULL, 'budget_rows with another method than auto is refused');
SELECT throws_ok($$SELECT dept_train('tap_auto_reviews', 'label', method => 'auto', options => '{"prompt_length": 5}')$$,
				 '22023', NULL, 'auto chooses prompt_length itself');
SELECT throws_ok($$SELECT dept_train('tap_auto_reviews', 'label', options => '{"valid_fraction": 0}')$$,
				 '22023', NULL, 'auto (the default) needs validation rows');


-- method probe: the solver by default, passes of descent when epochs are given
SELECT dept_train('tap_auto_reviews', 'label', adapter => 'tap_probe_solved', method => 'probe',
				  options => '{"max_length": 16}');
SELECT dept_train('tap_auto_reviews', 'label', adapter => 'tap_probe_passes', method => 'probe',
				  options => '{"max_length": 16, "epochs": 2}');
SELECT results_eq($$SELECT name, hyperparameters ? 'C', hyperparameters ? 'l2' FROM dept.adapters
					 WHERE name IN ('tap_probe_solved', 'tap_probe_passes') ORDER BY name$$,
				  $$VALUES ('tap_probe_passes'::text, false, true), ('tap_probe_solved', true, true)$$,
				  'method probe solves for C by default; an explicit epochs trains passes (l2 only)');
SELECT is((SELECT (hyperparameters ->> 'C')::float8 * (hyperparameters ->> 'l2')::float8 * train_rows
			 FROM dept.adapters WHERE name = 'tap_probe_solved')::numeric(6, 3), 1.000,
		  'the solved probe stores lambda = 1 / (C n) for its n training rows');

SELECT * FROM finish();
ROLLBACK;

DELETE FROM dept.adapters WHERE name LIKE 'tap\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'tap\_%';
DROP TABLE tap_auto_reviews;
