-- Regression (issue 15, item 2): a numeric label trains a one-output
-- linear head on standardised targets.  A double precision column is
-- inferred as a regression, an integer one needs {"task": "regression"};
-- predictions are numbers that follow the label; dept_predict_value,
-- dept_predict, dept_predict_proba and dept_evaluate on regression and
-- classifier adapters, with their SQLSTATEs; "if_better" compares
-- validation MSE (lower is better); on T5's text-to-text head the
-- scores become 0.2-step bins.  The label is a clear function of the
-- text: how many of six words are "great" rather than "awful".  Training
-- reads committed tables, so the data is set up outside the transaction.
\set ON_ERROR_STOP 1
\set QUIET 1
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS dept;
DROP TABLE IF EXISTS tap_reg, tap_reg_test, tap_reg_int, tap_reg_words;
-- k of six words are "great", in an order fixed by the row number
CREATE FUNCTION pg_temp.review(k int, g int) RETURNS text LANGUAGE sql AS $$
	SELECT array_to_string(ARRAY(
		SELECT w FROM unnest(array_fill('great'::text, ARRAY[k]) || array_fill('awful'::text, ARRAY[6 - k]))
			WITH ORDINALITY AS u(w, i)
		ORDER BY md5(i::text || '/' || g::text)), ' ')
		|| ' ' || (ARRAY['film', 'meal', 'book', 'show'])[1 + g % 4]
$$;
CREATE TABLE tap_reg AS
	SELECT pg_temp.review(g % 7, g) AS body, (g % 7)::double precision AS score,
		   (g % 7 * 10 + g % 10)::int AS points, (g % 7)::numeric(4, 1) AS grade,
		   CASE WHEN g % 7 >= 3 THEN 'up' ELSE 'down' END AS label
	FROM generate_series(1, 280) g;
CREATE TABLE tap_reg_test AS
	SELECT pg_temp.review(g % 7, g) AS body, (g % 7)::double precision AS score,
		   CASE WHEN g % 7 >= 3 THEN 'up' ELSE 'down' END AS label
	FROM generate_series(1001, 1070) g;
CREATE TABLE tap_reg_words AS SELECT body, 'many'::text AS score FROM tap_reg_test;
-- the HINT of the error a statement raises
CREATE FUNCTION pg_temp.hint_of(statement text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	hint text;
BEGIN
	EXECUTE statement;
	RETURN NULL;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS hint = PG_EXCEPTION_HINT;
	RETURN hint;
END $$;
\getenv fixtures DEPT_FIXTURE_DIR
DELETE FROM dept.models WHERE name = 'tap_reg_t5';
SELECT dept_register_model('tap_reg_t5', :'fixtures' || '/hf/t5-tiny-random') IS NOT NULL AS t5 \gset
DELETE FROM dept.adapters WHERE name LIKE 'tap\_reg%';
DELETE FROM dept.jobs WHERE adapter LIKE 'tap\_reg%';

BEGIN;
SELECT plan(41);

-- A double precision label is a regression without being told (a NOTICE says so).
SELECT is(dept_train('tap_reg', 'score', 'body', adapter => 'tap_reg_probe', method => 'probe',
					 options => '{"epochs": 30, "seed": 1}'),
		  'tap_reg_probe', 'a double precision label trains (inferred: regression)');
SELECT results_eq($$SELECT hyperparameters ->> 'task', labels FROM dept.adapters WHERE name = 'tap_reg_probe'$$,
				  $$VALUES ('regression', ARRAY['score'])$$,
				  'the version is stored as a regression, its one output named after the column');
SELECT ok((SELECT (hyperparameters ->> 'target_mean')::float8 BETWEEN 2.5 AND 3.5
				  AND (hyperparameters ->> 'target_sd')::float8 BETWEEN 1.5 AND 2.5
			 FROM dept.adapters WHERE name = 'tap_reg_probe'),
		  'the target mean (about 3) and sd (about 2) of the training rows are stored');
SELECT cmp_ok((SELECT (metrics ->> 'valid_pearson')::float8 FROM dept.adapters WHERE name = 'tap_reg_probe'),
			  '>', 0.9::float8, 'validation Pearson is stored and high');
SELECT ok((SELECT metrics ? 'valid_spearman' AND metrics ? 'valid_mse' AND NOT metrics ? 'valid_accuracy'
			 FROM dept.adapters WHERE name = 'tap_reg_probe'),
		  'validation Spearman and MSE are stored, no accuracy');

-- DePT: the same loss through the prompt and the low-rank pair.
SELECT is(dept_train('tap_reg', 'score', 'body', adapter => 'tap_reg_dept', method => 'dept',
					 options => '{"epochs": 2, "seed": 1, "max_length": 16, "prompt_length": 8, "budget": 16}'),
		  'tap_reg_dept', 'a DePT regression trains');
SELECT cmp_ok((SELECT corr(dept_predict_value('tap_reg_dept', body), score) FROM tap_reg_test),
			  '>', 0.8::float8, 'its held-out predictions correlate with the labels');

-- Predictions are numbers that follow the label.
SELECT cmp_ok(dept_predict_value('tap_reg_probe', 'great great great great great great film'), '>',
			  dept_predict_value('tap_reg_probe', 'great great great awful awful awful film') + 1.5,
			  'six "great" predict well above three');
SELECT cmp_ok(dept_predict_value('tap_reg_probe', 'awful awful awful awful awful awful meal'), '<', 1.5::float8,
			  'no "great" predicts a value near 0');
SELECT cmp_ok((SELECT corr(dept_predict_value('tap_reg_probe', body), score) FROM tap_reg_test),
			  '>', 0.9::float8, 'held-out predictions correlate with the labels');
SELECT is(dept_predict_value('tap_reg_probe', ARRAY['great great great great great great film', NULL]),
		  ARRAY[dept_predict_value('tap_reg_probe', 'great great great great great great film'), NULL],
		  'the array form agrees with the single form and keeps NULLs');
SELECT ok(abs(dept_predict('tap_reg_probe', 'great great awful awful awful awful book')::float8
			 - dept_predict_value('tap_reg_probe', 'great great awful awful awful awful book')) < 1e-4,
		  'dept_predict returns the value as text (6 significant digits)');
SELECT is(dept_predict('tap_reg_probe', ARRAY['great film'])::float8[],
		  ARRAY[dept_predict('tap_reg_probe', 'great film')::float8], 'and so does its array form');
SELECT throws_ok($$SELECT dept_predict_proba('tap_reg_probe', 'great film')$$, '22023', NULL,
				 'dept_predict_proba on a regression: 22023');
SELECT throws_ok($$SELECT dept_predict_proba('tap_reg_probe', ARRAY['great film'])$$, '22023', NULL,
				 'its array form too');

-- dept_evaluate reports Pearson, Spearman and MSE instead of accuracy.
SELECT ok((SELECT r ->> 'task' = 'regression' AND (r ->> 'rows')::int = 70 AND NOT r ? 'accuracy'
				  AND (r ->> 'pearson')::float8 > 0.9 AND (r ->> 'spearman')::float8 > 0.9
				  AND (r ->> 'mse')::float8 < 1
			 FROM dept_evaluate('tap_reg_probe', 'tap_reg_test', 'score', 'body') r),
		  'dept_evaluate: Pearson and Spearman above 0.9, MSE below 1 on held-out rows');
SELECT throws_ok($$SELECT dept_evaluate('tap_reg_probe', 'tap_reg_words', 'score', 'body')$$, '22P02', NULL,
				 'dept_evaluate of a regression on labels that are not numbers: 22P02');

-- Integer labels: > 50 distinct values are refused with a pointer to task regression, which trains.
SELECT throws_ok($$SELECT dept_train('tap_reg', 'points', 'body', adapter => 'tap_reg_int', method => 'probe')$$,
				 '22023', 'integer label column "points" has more than 50 distinct values',
				 'an integer label with many values is refused');
SELECT ok((SELECT position('"task": "regression"' IN m) > 0 FROM (SELECT pg_temp.hint_of(
			  $$SELECT dept_train('tap_reg', 'points', 'body', adapter => 'tap_reg_int', method => 'probe')$$) m) s),
		  'its hint points to {"task": "regression"}');
SELECT is(dept_train('tap_reg', 'points', 'body', adapter => 'tap_reg_int', method => 'probe',
					 options => '{"epochs": 10, "task": "regression"}'),
		  'tap_reg_int', 'with {"task": "regression"} it trains');
SELECT is((SELECT hyperparameters ->> 'task' FROM dept.adapters WHERE name = 'tap_reg_int'), 'regression',
		  'as a regression');
SELECT throws_ok($$SELECT dept_train('tap_reg', 'grade', 'body', adapter => 'tap_reg_x', method => 'probe',
										 options => '{"task": "classification"}')$$,
				 '22023', NULL, 'a numeric label with {"task": "classification"} is refused');
SELECT throws_ok($$SELECT dept_train('tap_reg', 'label', 'body', adapter => 'tap_reg_x', method => 'probe',
										 options => '{"task": "regression"}')$$,
				 '22023', NULL, 'a text label with {"task": "regression"}: 22023');
SELECT throws_ok($$SELECT dept_train('tap_reg', 'score', 'body', adapter => 'tap_reg_x', method => 'probe',
										 options => '{"task": "ranking"}')$$,
				 '22023', NULL, 'an unknown task: 22023');

-- T5's text-to-text regression, as the DePT code trains STS-B: the scores
-- 0..6 become the 31 label strings "0.0", "0.2", ..., "6.0"; a prediction
-- is the probability-weighted mean of the bins.  The model is random and
-- tiny: what is checked is what is stored and computed, not accuracy.
SELECT is(dept_train('tap_reg', 'score', 'body', adapter => 'tap_reg_t5reg', method => 'dept',
					 options => '{"model": "tap_reg_t5", "epochs": 1, "seed": 1, "max_length": 16, "prompt_length": 4, "budget": 8}'),
		  'tap_reg_t5reg', 'a regression on T5''s text-to-text head trains');
SELECT results_eq($$SELECT hyperparameters ->> 'task', hyperparameters ->> 'head', hyperparameters ->> 'bins',
						   labels[1], labels[2], labels[31], cardinality(labels)
					  FROM dept.adapters WHERE name = 'tap_reg_t5reg'$$,
				  $$VALUES ('regression', 'text', '31', '0.0', '0.2', '6.0', 31)$$,
				  'stored as a text-to-text regression whose labels are the 31 bins 0.0 .. 6.0');
SELECT ok((SELECT metrics ? 'valid_pearson' AND metrics ? 'valid_spearman' AND metrics ? 'valid_mse'
				  AND NOT metrics ? 'valid_accuracy' AND NOT hyperparameters ? 'target_mean'
			 FROM dept.adapters WHERE name = 'tap_reg_t5reg'),
		  'its validation Pearson, Spearman and MSE are stored; no target mean');
SELECT ok((SELECT bool_and(v BETWEEN 0 AND 6) FROM (SELECT dept_predict_value('tap_reg_t5reg', body) v
													  FROM tap_reg_test LIMIT 8) s),
		  'dept_predict_value: values inside the bins'' range');
SELECT ok(abs(dept_predict('tap_reg_t5reg', 'great great awful awful awful awful book')::float8
			 - dept_predict_value('tap_reg_t5reg', 'great great awful awful awful awful book')) < 1e-4,
		  'dept_predict returns the value as text');
SELECT throws_ok($$SELECT dept_predict_proba('tap_reg_t5reg', 'great film')$$, '22023', NULL,
				 'dept_predict_proba on a text-to-text regression: 22023');
SELECT ok((SELECT r ->> 'task' = 'regression' AND (r ->> 'rows')::int = 70 AND r ? 'pearson'
				  AND r ? 'spearman' AND (r ->> 'mse')::float8 >= 0 AND NOT r ? 'accuracy'
			 FROM dept_evaluate('tap_reg_t5reg', 'tap_reg_test', 'score', 'body') r),
		  'dept_evaluate: Pearson, Spearman and MSE of the weighted means');
SELECT throws_ok($$SELECT dept_train('tap_reg', 'score', 'body', adapter => 'tap_reg_x', method => 'auto',
										 options => '{"model": "tap_reg_t5"}')$$,
				 '0A000', 'method "auto" does not train a text-to-text regression',
				 'method auto on T5''s text-to-text regression: 0A000');
SELECT is(dept_train('tap_reg', 'score', 'body', adapter => 'tap_reg_t5default',
					 options => '{"model": "tap_reg_t5", "epochs": 1, "seed": 1, "max_length": 16}'),
		  'tap_reg_t5default', 'with no method, a T5 text-to-text regression trains');
SELECT is((SELECT method FROM dept.adapters WHERE name = 'tap_reg_t5default'), 'dept',
		  'and it is DePT (auto cannot train one)');

-- A classifier has no value.
SELECT is(dept_train('tap_reg', 'label', 'body', adapter => 'tap_reg_class', method => 'probe',
					 options => '{"epochs": 5}'), 'tap_reg_class', 'a classifier on the same rows');
SELECT throws_ok($$SELECT dept_predict_value('tap_reg_class', 'great film')$$, '22023', NULL,
				 'dept_predict_value on a classifier: 22023');

-- if_better: a version of higher validation MSE stays inactive, a lower one is activated.
SELECT is(dept_train('tap_reg', 'score', 'body', adapter => 'tap_reg_probe', method => 'probe',
					 options => '{"epochs": 1, "head_lr": 0.0001, "seed": 1}', activate => 'if_better'),
		  'tap_reg_probe', 'a barely trained version (1 epoch, tiny learning rate)');
SELECT results_eq($$SELECT version, active FROM dept.adapters WHERE name = 'tap_reg_probe' ORDER BY version$$,
				  $$VALUES (1, true), (2, false)$$, 'if_better keeps version 1 (its validation MSE is lower)');
SELECT is(dept_train('tap_reg', 'score', 'body', adapter => 'tap_reg_probe', method => 'probe',
					 options => '{"epochs": 1, "head_lr": 0.0001, "seed": 1}', activate => 'always'),
		  'tap_reg_probe', 'the same poor version 3, activated (always)');
SELECT is(dept_train('tap_reg', 'score', 'body', adapter => 'tap_reg_probe', method => 'probe',
					 options => '{"epochs": 30, "seed": 2}', activate => 'if_better'),
		  'tap_reg_probe', 'a well trained version 4');
SELECT results_eq($$SELECT version, active FROM dept.adapters WHERE name = 'tap_reg_probe' ORDER BY version$$,
				  $$VALUES (1, false), (2, false), (3, false), (4, true)$$,
				  'if_better activates version 4: its validation MSE is below the active version 3''s');
SELECT * FROM finish();
ROLLBACK;
DELETE FROM dept.models WHERE name = 'tap_reg_t5';
