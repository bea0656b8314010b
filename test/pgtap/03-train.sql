-- Training in SQL: dept_train through a background worker, versions,
-- activation, prediction, evaluation, export/import, jobs, and every
-- validation error with its SQLSTATE.  Training reads committed tables, so
-- the data is set up outside the test transaction and dropped at the end.
\set ON_ERROR_STOP 1
\set QUIET 1
\getenv fixtures DEPT_FIXTURE_DIR
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS dept;
\ir helpers.psql
DROP TABLE IF EXISTS tap_reviews, tap_reviews_test, tap_one_label, tap_secret;
CREATE TABLE tap_reviews (label text, body text, stars int);
CREATE TABLE tap_reviews_test (label text, body text);
\set train_data `cat :fixtures/sst2_train_600.tsv`
\set test_data `cat :fixtures/sst2_test_200.tsv`
INSERT INTO tap_reviews (label, body) SELECT * FROM pg_temp.tsv_rows(:'train_data');
INSERT INTO tap_reviews_test SELECT * FROM pg_temp.tsv_rows(:'test_data');
INSERT INTO tap_reviews VALUES (NULL, 'a row without a label', 1), ('positive', NULL, 2);
CREATE TABLE tap_one_label AS SELECT 'same'::text AS label, body FROM tap_reviews_test;
CREATE TABLE tap_secret AS SELECT * FROM tap_reviews_test;
DELETE FROM dept.adapters WHERE name LIKE 'tap\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'tap\_%';
DROP ROLE IF EXISTS tap_outsider;
CREATE ROLE tap_outsider LOGIN;

BEGIN;
SELECT plan(45);

-- The first version: a linear probe, trained and activated.
SELECT is(dept_train('tap_reviews', 'label', adapter => 'tap_probe', method => 'probe',
					 options => '{"epochs": 30, "head_lr": 0.01, "seed": 1}'),
		  'tap_probe', 'dept_train returns the adapter name');
SELECT results_eq($$SELECT version, active, method, labels, train_rows + valid_rows, skipped_rows
					FROM dept.adapters WHERE name = 'tap_probe'$$,
				  $$VALUES (1, true, 'probe', ARRAY['negative', 'positive'], 600::bigint, 2::bigint)$$,
				  'version 1 is stored and active; the two rows with NULLs are skipped');
SELECT cmp_ok((SELECT (metrics ->> 'valid_accuracy')::float8 FROM dept.adapters WHERE name = 'tap_probe'),
			  '>', 0.6::float8, 'validation accuracy is well above chance');
SELECT results_eq($$SELECT status, step = total_steps FROM dept.jobs WHERE adapter = 'tap_probe'$$,
				  $$VALUES ('succeeded', true)$$, 'the job is recorded as succeeded');
SELECT ok(dept_predict('tap_probe', 'a wonderful, moving film') IN ('negative', 'positive'),
		  'dept_predict returns one of the labels');
SELECT is(dept_predict('tap_probe', 'a wonderful, moving, beautifully acted film'), 'positive',
		  'an obviously positive review is positive');
SELECT is(dept_predict('tap_probe', 'a dull, boring and painfully bad movie'), 'negative',
		  'an obviously negative review is negative');
SELECT cmp_ok((SELECT sum(value::float8) FROM jsonb_each_text(dept_predict_proba('tap_probe', 'fine'))),
			  '>', 0.9999::float8, 'probabilities sum to one');
SELECT is(dept_predict('tap_probe', ARRAY['a wonderful film', NULL, 'a dreadful film']),
		  ARRAY[dept_predict('tap_probe', 'a wonderful film'), NULL, dept_predict('tap_probe', 'a dreadful film')],
		  'the batch form agrees with the single form and keeps NULLs');
SELECT cmp_ok((dept_evaluate('tap_probe', 'tap_reviews_test', 'label', 'body') ->> 'accuracy')::float8,
			  '>', 0.65::float8, 'held-out accuracy from dept_evaluate is above chance');
SELECT is((SELECT count(*) FROM tap_reviews_test WHERE dept_predict('tap_probe', body) IS NULL),
		  0::bigint, 'every held-out row gets a label');

-- Versions: retrain (always activate), roll back, roll forward.
SELECT is(dept_train('tap_reviews', 'label', adapter => 'tap_probe', method => 'probe',
					 options => '{"epochs": 5, "seed": 2}', activate => 'always'),
		  'tap_probe', 'retraining adds a version');
SELECT results_eq($$SELECT version FROM dept.adapters WHERE name = 'tap_probe' AND active$$,
				  $$VALUES (2)$$, 'version 2 is active');
SELECT lives_ok($$SELECT dept_activate('tap_probe', 1)$$, 'dept_activate rolls back');
SELECT results_eq($$SELECT version FROM dept.adapters WHERE name = 'tap_probe' AND active$$,
				  $$VALUES (1)$$, 'version 1 is active again');
SELECT throws_ok($$SELECT dept_activate('tap_probe', 99)$$, '42704', NULL,
				 'activating a missing version fails');

-- Jobs without waiting.
SELECT ok(dept_wait(dept_train('tap_reviews', 'label', adapter => 'tap_async', method => 'probe',
							   options => '{"epochs": 2}', wait => false)::bigint) = 'succeeded',
		  'wait => false returns a job that dept_wait sees succeed');

-- Export and import.
SELECT is(dept_import('tap_imported', dept_export('tap_probe')), 1, 'an exported adapter imports as version 1');
SELECT is(dept_predict('tap_imported', 'a dreadful film'), dept_predict('tap_probe', 'a dreadful film'),
		  'the imported adapter predicts as the original');
SELECT throws_ok($$SELECT dept_import('tap_bad', '\x44455054deadbeef'::bytea)$$, 'XX001', NULL,
				 'a truncated adapter is data_corrupted');
SELECT throws_ok($$SELECT dept_import('tap_bad', substring(dept_export('tap_probe') from 1 for 200))$$,
				 'XX001', NULL, 'a cut adapter is data_corrupted');

-- DePT: a short prompt plus a low-rank update, trained through the backbone's backward.
SELECT is(dept_train('tap_reviews', 'label', adapter => 'tap_dept', method => 'dept',
					 options => '{"prompt_length": 8, "max_length": 32, "batch_size": 16, "max_steps": 12, "seed": 3}'),
		  'tap_dept', 'DePT trains in SQL');
SELECT results_eq($$SELECT method, (hyperparameters ->> 'prompt_length')::int,
						   (hyperparameters ->> 'rank')::int > 0
					FROM dept.adapters WHERE name = 'tap_dept'$$,
				  $$VALUES ('dept', 8, true)$$, 'its prompt length and a budget-derived rank are recorded');
SELECT ok(dept_predict('tap_dept', 'a wonderful film') IN ('negative', 'positive'),
		  'the DePT adapter predicts');

-- The same run with the encoder's products in bfloat16 (AMX where the CPU
-- has it, float32 elsewhere): recorded, and the adapter predicts like any other.
SELECT is(dept_train('tap_reviews', 'label', adapter => 'tap_dept_bf16', method => 'dept',
					 options => '{"prompt_length": 8, "max_length": 32, "batch_size": 16, "max_steps": 12, "seed": 3, "precision": "bfloat16"}'),
		  'tap_dept_bf16', 'DePT trains with bfloat16 products');
SELECT is((SELECT hyperparameters ->> 'precision' FROM dept.adapters WHERE name = 'tap_dept_bf16'),
		  'bfloat16', 'the precision is recorded');
SELECT ok(dept_predict('tap_dept_bf16', 'a wonderful film') IN ('negative', 'positive'),
		  'the adapter trained in bfloat16 predicts');

-- Cancelling a running job: it stops within about a second and stores nothing.
CREATE FUNCTION pg_temp.wait_until_training(job bigint) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
	LOOP
		IF EXISTS (SELECT 1 FROM dept.jobs WHERE id = job AND status = 'running' AND step > 0) THEN
			RETURN true;
		END IF;
		IF clock_timestamp() > deadline THEN
			RETURN false;
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT dept_train('tap_reviews', 'label', adapter => 'tap_cancelled', method => 'dept',
				  options => '{"epochs": 50}', wait => false) AS job \gset
SELECT ok(pg_temp.wait_until_training(:job), 'the long job is running');
SELECT clock_timestamp() AS cancel_at \gset
SELECT ok(dept_cancel(:job), 'dept_cancel accepts a running job');
SELECT is(dept_wait(:job), 'cancelled', 'the job ends as cancelled');
SELECT cmp_ok(extract(epoch FROM clock_timestamp() - :'cancel_at'::timestamptz)::float8,
			  '<', 3.0::float8, 'it stopped within about a second (at most one training step)');
SELECT is((SELECT count(*) FROM dept.adapters WHERE name = 'tap_cancelled'), 0::bigint,
		  'a cancelled job stores no adapter');

-- Validation errors, before any work starts.
SELECT throws_ok($$SELECT dept_train('no_such_table', 'label')$$, '42P01', NULL, 'unknown table');
SELECT throws_ok($$SELECT dept_train('tap_reviews', 'nope')$$, '42703', NULL, 'unknown label column');
SELECT throws_ok($$SELECT dept_train('tap_reviews', 'label', 'stars')$$, '42804', NULL,
				 'a text column that is not text');
SELECT throws_ok($$SELECT dept_train('tap_one_label', 'label')$$, '22023', NULL, 'one label only');
SELECT throws_ok($$SELECT dept_train('tap_reviews', 'label', method => 'magic')$$, '22023', NULL,
				 'unknown method');
SELECT throws_ok($$SELECT dept_train('tap_reviews', 'label', options => '{"colour": 1}')$$, '22023',
				 NULL, 'unknown option');
SELECT throws_ok($$SELECT dept_train('tap_reviews', 'label', options => '{"lr": -1}')$$, '22023',
				 NULL, 'negative learning rate');
SELECT throws_ok($$SELECT dept_train('tap_reviews', 'label', options => '{"batch_size": 100000}')$$,
				 '22023', NULL, 'absurd batch size');
SELECT throws_ok($$SELECT dept_train('tap_reviews', 'label', options => '{"epochs": "many"}')$$,
				 '22023', NULL, 'option of the wrong type');

-- Privileges: an outsider cannot train, read the data, or use the adapters.
GRANT EXECUTE ON FUNCTION dept_train(regclass, text, text, text, text, jsonb, boolean, text) TO tap_outsider;
SET LOCAL ROLE tap_outsider;
SELECT throws_ok($$SELECT dept_train('tap_secret', 'label')$$, '42501', NULL,
				 'a role without SELECT cannot train on a table');
SELECT throws_ok($$SELECT dept_predict('tap_probe', 'x')$$, '42704', NULL,
				 'another role''s adapter is invisible');
RESET ROLE;
SELECT throws_ok($$SET LOCAL ROLE tap_outsider; SELECT dept_activate('tap_probe', 2)$$, '42501', NULL,
				 'dept_activate is not granted to everyone');
CREATE ROLE tap_nologin NOLOGIN;
GRANT SELECT ON tap_reviews TO tap_nologin;
GRANT EXECUTE ON FUNCTION dept_train(regclass, text, text, text, text, jsonb, boolean, text) TO tap_nologin;
SET LOCAL ROLE tap_nologin;
SELECT throws_ok($$SELECT dept_train('tap_reviews', 'label')$$, '42501', NULL,
				 'a role without LOGIN is told why no worker can run as it');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;

DELETE FROM dept.adapters WHERE name LIKE 'tap\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'tap\_%';
DROP TABLE tap_reviews, tap_reviews_test, tap_one_label, tap_secret;
DROP ROLE tap_outsider;
