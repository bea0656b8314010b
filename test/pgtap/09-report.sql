-- The held-out test split and its stored report: dept_train's
-- "test_fraction" option, dept_is_test_row and dept_report.  Training reads
-- committed tables, so the data is set up outside the test transaction and
-- dropped at the end.
\set ON_ERROR_STOP 1
\set QUIET 1
\getenv fixtures DEPT_FIXTURE_DIR
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS dept;
\ir helpers.psql
DROP TABLE IF EXISTS tap_big, tap_small, tap_marked;
DROP VIEW IF EXISTS tap_big_test;
-- 1,200 usable rows (the 600 + 200 fixture rows and 400 more), and 2 unusable ones
CREATE TABLE tap_big (label text, body text);
\set train_data `cat :fixtures/sst2_train_600.tsv`
\set test_data `cat :fixtures/sst2_test_200.tsv`
INSERT INTO tap_big SELECT * FROM pg_temp.tsv_rows(:'train_data');
INSERT INTO tap_big SELECT * FROM pg_temp.tsv_rows(:'test_data');
INSERT INTO tap_big SELECT label, body || ' (seen again)' FROM pg_temp.tsv_rows(:'train_data') LIMIT 400;
INSERT INTO tap_big VALUES (NULL, 'a row without a label'), ('positive', NULL);
-- the test rows by the documented rule, computed in SQL
CREATE VIEW tap_big_test AS
	SELECT * FROM tap_big WHERE dept_is_test_row(body, label, 0.1);
-- 600 usable rows: under 1,000, no test rows by default
CREATE TABLE tap_small AS SELECT * FROM pg_temp.tsv_rows(:'train_data');
-- rows whose label is 'held' are all test rows by the rule (their hash is
-- taken with the label 'held'): a version that trained or validated on one
-- of them would have 'held' among its labels
CREATE TABLE tap_marked AS
	SELECT CASE WHEN dept_is_test_row(body, 'held', 0.2) THEN 'held' ELSE label END AS label, body
	  FROM tap_big WHERE label IS NOT NULL AND body IS NOT NULL;
DELETE FROM dept.adapters WHERE name LIKE 'tap\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'tap\_%';
DROP ROLE IF EXISTS tap_outsider;
CREATE ROLE tap_outsider LOGIN;

BEGIN;
SELECT plan(37);

-- The rule in SQL.
SELECT is(dept_is_test_row('some text', 'label', 0), false, 'fraction 0 holds nothing out');
SELECT is(dept_is_test_row('some text', '', 0.4), false, 'an empty label (an unusable row) is never a test row');
SELECT is(dept_is_test_row('some text', 'label', 0.3), dept_is_test_row('some text', 'label', 0.3),
		  'the rule is deterministic');
SELECT ok((SELECT count(*) FROM tap_big_test) BETWEEN 80 AND 160,
		  'about a tenth of the rows are test rows at 0.1');
SELECT ok((SELECT bool_and(dept_is_test_row(body, label, 0.3)) FROM tap_big
			WHERE dept_is_test_row(body, label, 0.1)),
		  'a test row at 0.1 is a test row at 0.3 (the rule is a threshold on one hash)');
SELECT throws_ok($$SELECT dept_is_test_row('x', 'y', 0.5)$$, '22023', NULL,
				 'dept_is_test_row refuses a fraction of 0.5');

-- Default: 0.1 on a table of 1,000 usable rows or more.
SELECT is(dept_train('tap_big', 'label', adapter => 'tap_report', method => 'probe',
					 options => '{"epochs": 10, "seed": 1}'),
		  'tap_report', 'a probe trains on the large table');
SELECT is((SELECT (hyperparameters ->> 'test_fraction')::float8 FROM dept.adapters
			WHERE name = 'tap_report' AND version = 1), 0.1::float8,
		  'the default test_fraction is 0.1 on 1,200 usable rows, and is stored');
SELECT is((dept_report('tap_report') ->> 'rows')::bigint, (SELECT count(*) FROM tap_big_test),
		  'the report counts exactly the test rows the SQL rule selects');
SELECT results_eq($$SELECT train_rows + valid_rows + (metrics -> 'test' ->> 'rows')::bigint,
						   (hyperparameters -> 'sample' ->> 'rows_test')::bigint,
						   (hyperparameters -> 'sample' ->> 'rows_used')::bigint
					  FROM dept.adapters WHERE name = 'tap_report' AND version = 1$$,
				  $$SELECT 1200::bigint, (SELECT count(*) FROM tap_big_test),
						   1200 - (SELECT count(*) FROM tap_big_test)$$,
				  'rows_train + rows_valid + rows_test = the usable rows; rows_used excludes the test rows');

-- The report is what dept_evaluate says on the same rows, without re-scoring.
CREATE TEMP TABLE eval_v1 AS SELECT dept_evaluate('tap_report', 'tap_big_test', 'label', 'body') AS e;
SELECT is(dept_report('tap_report') -> 'confusion', (SELECT e -> 'confusion' FROM eval_v1),
		  'active version: the confusion matrix equals dept_evaluate''s on the test rows');
SELECT is(dept_report('tap_report') -> 'accuracy', (SELECT e -> 'accuracy' FROM eval_v1),
		  'active version: accuracy equals dept_evaluate''s');
SELECT is(dept_report('tap_report') -> 'macro_f1', (SELECT e -> 'macro_f1' FROM eval_v1),
		  'active version: macro-F1 equals dept_evaluate''s');
SELECT is(dept_report('tap_report') -> 'per_class', (SELECT e -> 'per_class' FROM eval_v1),
		  'active version: per-class figures equal dept_evaluate''s');
SELECT results_eq($$SELECT dept_report('tap_report') ->> 'adapter', (dept_report('tap_report') ->> 'version')::int,
						   dept_report('tap_report') ->> 'positive_label'$$,
				  $$VALUES ('tap_report', 1, 'positive')$$, 'the report names the adapter, version and positive label');
-- ROC AUC recomputed in SQL (Mann-Whitney, ties at their mean rank) from dept_predict_proba
SELECT ok(abs((dept_report('tap_report') ->> 'roc_auc')::float8 - (
		WITH s AS (SELECT (dept_predict_proba('tap_report', body) ->> 'positive')::float8 AS p,
						  label = 'positive' AS pos FROM tap_big_test),
			 r AS (SELECT pos, rank() OVER (ORDER BY p) + (count(*) OVER (PARTITION BY p) - 1) / 2.0 AS rk FROM s)
		SELECT (sum(rk) FILTER (WHERE pos) - count(*) FILTER (WHERE pos) * (count(*) FILTER (WHERE pos) + 1) / 2.0)
			   / (count(*) FILTER (WHERE pos) * count(*) FILTER (WHERE NOT pos))
		  FROM r)) < 1e-4, 'the ROC AUC is the one recomputed in SQL from dept_predict_proba');

-- A retrain holds out the same rows; an explicit version's report.
SELECT is(dept_train('tap_big', 'label', adapter => 'tap_report', method => 'probe',
					 options => '{"epochs": 3, "seed": 2}', activate => 'always'),
		  'tap_report', 'a retrain of the same table');
SELECT is((dept_report('tap_report', 2) ->> 'rows')::bigint, (SELECT count(*) FROM tap_big_test),
		  'the retrain holds out the same number of rows, the SQL rule''s');
CREATE TEMP TABLE eval_v2 AS SELECT dept_evaluate('tap_report', 'tap_big_test', 'label', 'body') AS e;
SELECT is(dept_report('tap_report', 2) -> 'confusion', (SELECT e -> 'confusion' FROM eval_v2),
		  'explicit version 2: the confusion matrix equals dept_evaluate''s on the SQL rule''s rows');
SELECT is(dept_report('tap_report'), dept_report('tap_report', 2), 'DEFAULT NULL is the active version');
SELECT is(dept_report('tap_report', 1) -> 'confusion', (SELECT e -> 'confusion' FROM eval_v1),
		  'explicit version 1 (not active) still returns its own stored report');

-- Test rows are never trained or validated on.
SELECT is(dept_train('tap_marked', 'label', adapter => 'tap_marked', method => 'probe',
					 options => '{"epochs": 3, "seed": 1, "test_fraction": 0.2}'),
		  'tap_marked', 'training on a table whose test rows carry their own label');
SELECT is((SELECT labels FROM dept.adapters WHERE name = 'tap_marked'), ARRAY['negative', 'positive'],
		  'the label only test rows have is not among the adapter''s labels');
SELECT is((dept_report('tap_marked') ->> 'unknown_label')::bigint,
		  (SELECT count(*) FROM tap_marked WHERE label = 'held'),
		  'every held row was scored as a test row');

-- Sampling applies to the rows left after the test rows are taken out.
SELECT is(dept_train('tap_big', 'label', adapter => 'tap_sampled', method => 'probe',
					 options => '{"epochs": 2, "seed": 1, "max_rows": 500}'),
		  'tap_sampled', 'a sample of 500 rows');
SELECT results_eq($$SELECT train_rows + valid_rows, (metrics -> 'test' ->> 'rows')::bigint,
						   (hyperparameters -> 'sample' ->> 'rows_used')::bigint
					  FROM dept.adapters WHERE name = 'tap_sampled'$$,
				  $$SELECT 500::bigint, (SELECT count(*) FROM tap_big_test), 500::bigint$$,
				  'max_rows rows are trained and validated on, all the test rows are tested');

-- A run that samples holds a seeded sample of at most max_rows test rows.
SELECT is(dept_train('tap_big', 'label', adapter => 'tap_sampled_test', method => 'probe',
					 options => '{"epochs": 1, "seed": 1, "max_rows": 60}'),
		  'tap_sampled_test', 'a sample of 60 rows');
SELECT results_eq($$SELECT train_rows + valid_rows, (metrics -> 'test' ->> 'rows')::bigint,
						   (metrics -> 'test' ->> 'test_rows_found')::bigint,
						   (hyperparameters -> 'sample' ->> 'test_rows_found')::bigint
					  FROM dept.adapters WHERE name = 'tap_sampled_test'$$,
				  $$SELECT 60::bigint, 60::bigint, (SELECT count(*) FROM tap_big_test), (SELECT count(*) FROM tap_big_test)$$,
				  'max_rows 60: 60 rows trained and validated on, 60 of the test rows scored, all of them found');

-- No test rows: test_fraction 0, or the default on a small table.
SELECT is(dept_train('tap_big', 'label', adapter => 'tap_no_test', method => 'probe',
					 options => '{"epochs": 2, "test_fraction": 0}'),
		  'tap_no_test', 'test_fraction 0');
SELECT results_eq($$SELECT dept_report('tap_no_test') IS NULL, train_rows + valid_rows
					  FROM dept.adapters WHERE name = 'tap_no_test'$$,
				  $$VALUES (true, 1200::bigint)$$, 'test_fraction 0: every row is used and there is no report');
SELECT is(dept_train('tap_small', 'label', adapter => 'tap_small', method => 'probe',
					 options => '{"epochs": 2}'),
		  'tap_small', 'a table of 600 rows');
SELECT results_eq($$SELECT dept_report('tap_small') IS NULL, (hyperparameters ->> 'test_fraction')::float8
					  FROM dept.adapters WHERE name = 'tap_small'$$,
				  $$VALUES (true, 0::float8)$$, 'under 1,000 usable rows the default test_fraction is 0');

-- Errors.
SELECT throws_ok($$SELECT dept_train('tap_big', 'label', options => '{"test_fraction": -0.1}')$$,
				 '22023', NULL, 'a negative test_fraction is refused');
SELECT throws_ok($$SELECT dept_train('tap_big', 'label', options => '{"test_fraction": 0.5}')$$,
				 '22023', NULL, 'a test_fraction of 0.5 is refused');
SELECT throws_ok($$SELECT dept_report('tap_no_such')$$, '42704', NULL, 'an unknown adapter is 42704');
SELECT throws_ok($$SELECT dept_report('tap_report', 99)$$, '42704', NULL, 'an unknown version is 42704');

-- Row security: a role that cannot read the adapter cannot read its report.
SET LOCAL ROLE tap_outsider;
SELECT throws_ok($$SELECT dept_report('tap_report')$$, '42704', NULL,
				 'an outsider cannot read the report of an adapter it cannot read');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;

DELETE FROM dept.adapters WHERE name LIKE 'tap\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'tap\_%';
DROP VIEW tap_big_test;
DROP TABLE tap_big, tap_small, tap_marked;
DROP ROLE tap_outsider;
