-- Transfer (issue 15, item 3): options => '{"init_from": "other"}' starts
-- the prompt, the low-rank pair (and the head when the labels match) from a
-- stored adapter.  Round trip: with learning rates of 1e-8 and one step the
-- new adapter predicts as the one it started from.  Refused: an adapter
-- that does not exist or that the role may not use, another method or
-- another shape.
\set ON_ERROR_STOP 1
\set QUIET 1
\getenv fixtures DEPT_FIXTURE_DIR
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS dept;
\ir helpers.psql
DROP TABLE IF EXISTS tr_reviews, tr_renamed;
\set train_data `cat :fixtures/sst2_train_600.tsv`
CREATE TABLE tr_reviews (label text, body text);
INSERT INTO tr_reviews SELECT * FROM pg_temp.tsv_rows(:'train_data');
CREATE TABLE tr_renamed AS SELECT CASE label WHEN 'positive' THEN 'good' ELSE 'bad' END AS label, body
	FROM tr_reviews;
DELETE FROM dept.adapters WHERE name LIKE 'tr\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'tr\_%';
DO $$
BEGIN
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tr_other') THEN
		DROP OWNED BY tr_other;
		DROP ROLE tr_other;
	END IF;
END $$;
CREATE ROLE tr_other LOGIN;
GRANT SELECT ON tr_reviews TO tr_other;
GRANT EXECUTE ON FUNCTION dept_train(regclass, text, text, text, text, jsonb, boolean, text) TO tr_other;

SELECT dept_train('tr_reviews', 'label', adapter => 'tr_src',
				  options => '{"epochs": 1, "prompt_length": 8, "max_length": 32, "seed": 3}') IS NOT NULL AS t \gset
SELECT dept_train('tr_reviews', 'label', adapter => 'tr_probe', method => 'probe',
				  options => '{"epochs": 2}') IS NOT NULL AS t \gset
SELECT dept_train('tr_reviews', 'label', adapter => 'tr_copy',
				  options => '{"init_from": "tr_src", "max_steps": 1, "lr": 1e-8, "lowrank_lr": 1e-8,
							   "head_lr": 1e-8, "prompt_length": 8, "max_length": 32}') IS NOT NULL AS t \gset
SELECT dept_train('tr_renamed', 'label', adapter => 'tr_renamed',
				  options => '{"init_from": "tr_src", "init_from_version": 1, "epochs": 1,
							   "prompt_length": 8, "max_length": 32}') IS NOT NULL AS t \gset
SELECT dept_train('tr_renamed', 'label', adapter => 'tr_fewshot',
				  options => '{"init_from": "tr_src", "max_rows_per_class": 16, "epochs": 2,
							   "prompt_length": 8, "max_length": 32}') IS NOT NULL AS t \gset

BEGIN;
SELECT plan(9);

SELECT is((SELECT count(*) FROM (VALUES ('a wonderful, moving film'), ('a dull and lifeless mess'),
		   ('fine'), ('not bad at all'), ('the plot is thin but the actors are great')) t(x)
		   WHERE abs((dept_predict_proba('tr_copy', x) ->> 'positive')::float8
					 - (dept_predict_proba('tr_src', x) ->> 'positive')::float8) > 1e-3),
		  0::bigint,
		  'started from tr_src with learning rates of 1e-8, the adapter predicts as tr_src');
SELECT results_eq($$SELECT hyperparameters ->> 'init_from', (hyperparameters ->> 'init_from_version')::int,
						   (hyperparameters ->> 'init_head')::bool
					FROM dept.adapters WHERE name = 'tr_copy'$$,
				  $$VALUES ('tr_src', 1, true)$$,
				  'the version records where it started, and that the head came along');
SELECT is((SELECT (hyperparameters ->> 'init_head')::bool FROM dept.adapters WHERE name = 'tr_renamed'),
		  false, 'with other labels the head starts fresh');
SELECT ok(dept_predict('tr_renamed', 'a wonderful, moving film') IN ('good', 'bad'),
		  'and the adapter predicts its own labels');
SELECT results_eq($$SELECT hyperparameters -> 'sample' ->> 'method', (hyperparameters -> 'sample' ->> 'rows_used')::int,
						   train_rows + valid_rows
					FROM dept.adapters WHERE name = 'tr_fewshot'$$,
				  $$VALUES ('per_class', 32, 32::bigint)$$,
				  'few-shot: max_rows_per_class 16 trains on 16 rows of each of the two labels');
SELECT throws_ok($$SELECT dept_train('tr_reviews', 'label', adapter => 'tr_x', options => '{"init_from": "tr_missing"}')$$,
				 '42704', NULL, 'an adapter that does not exist is refused before any worker starts');
SELECT throws_matching($$SELECT dept_train('tr_reviews', 'label', adapter => 'tr_x',
					   options => '{"init_from": "tr_src", "prompt_length": 12, "max_length": 32}')$$,
					   'another shape', 'another prompt length is refused');
SELECT throws_matching($$SELECT dept_train('tr_reviews', 'label', adapter => 'tr_x',
					   options => '{"init_from": "tr_probe", "max_length": 32}')$$,
					   'another method', 'a probe cannot start a DePT adapter');
SET LOCAL ROLE tr_other;
SELECT throws_ok($$SELECT dept_train('tr_reviews', 'label', adapter => 'tr_theirs',
				 options => '{"init_from": "tr_src"}')$$, '42704', NULL,
				 'another role cannot start from an adapter it may not use');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;

DELETE FROM dept.adapters WHERE name LIKE 'tr\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'tr\_%';
REVOKE ALL ON FUNCTION dept_train(regclass, text, text, text, text, jsonb, boolean, text) FROM tr_other;
REVOKE ALL ON tr_reviews FROM tr_other;
DROP ROLE tr_other;
DROP TABLE tr_reviews, tr_renamed;
