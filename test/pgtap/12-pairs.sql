-- Sentence pairs (issue 15, item 1): options => '{"text_columns": [a, b]}'
-- with "pair_encoding": "joined" trains on the pair formatted as
-- "a: <text> b: <text2>" (the DePT code's format); dept_predict / dept_predict_proba take the two texts, scalar and
-- array; dept_evaluate takes the two columns (named otherwise in another
-- table); one-text and two-text calls are refused on the wrong adapter;
-- the stored hyperparameters name the columns and the pair encoding.  The
-- siamese encoding (each text through the same adapter and backbone, the
-- head on [u; v; |u - v|; u * v]), use-lite's default for pairs, trains a
-- probe and DePT and predicts and evaluates like the joined one; encodings
-- a model cannot have are refused.
\set ON_ERROR_STOP 1
\set QUIET 1
\getenv fixtures DEPT_FIXTURE_DIR
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS dept;
DROP TABLE IF EXISTS pr_train, pr_val, pr_renamed, pr_test;
CREATE TABLE pr_train (label text, premise text, hypothesis text);
CREATE TABLE pr_val (label text, premise text, hypothesis text);
\set train_file :fixtures/rte_train_400.tsv
\set val_file :fixtures/rte_val_100.tsv
COPY pr_train FROM :'train_file' WITH (FORMAT text, HEADER true);
COPY pr_val FROM :'val_file' WITH (FORMAT text, HEADER true);
INSERT INTO pr_train VALUES ('entailment', NULL, 'a null premise is skipped');
CREATE TABLE pr_renamed AS SELECT label AS y, premise AS p, hypothesis AS h FROM pr_val;
DELETE FROM dept.adapters WHERE name LIKE 'pr\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'pr\_%';
SELECT dept_train('pr_train', 'label', adapter => 'pr_probe', method => 'probe',
				  options => '{"text_columns": ["premise", "hypothesis"], "pair_encoding": "joined",
							   "epochs": 3, "seed": 1}') AS trained \gset
SELECT dept_train('pr_train', 'label', adapter => 'pr_single', method => 'probe',
				  text_column => 'premise', options => '{"epochs": 1}') AS single \gset

SELECT dept_train('pr_train', 'label', adapter => 'pr_siamese', method => 'probe',
				  options => '{"text_columns": ["premise", "hypothesis"], "epochs": 3, "seed": 1}') AS siamese \gset
SELECT dept_train('pr_train', 'label', adapter => 'pr_siamese_dept', method => 'dept',
				  options => '{"text_columns": ["premise", "hypothesis"], "pair_encoding": "siamese",
							   "prompt_length": 4, "max_length": 32, "max_steps": 4, "batch_size": 8,
							   "test_fraction": 0.2, "seed": 2}') AS siamese_dept \gset
CREATE TABLE pr_test AS SELECT * FROM pr_train
	WHERE premise IS NOT NULL
	  AND dept_is_test_row(format('%s: %s %s: %s', 'premise', premise, 'hypothesis', hypothesis), label, 0.2);

SELECT plan(30);

SELECT is(:'trained'::text, 'pr_probe', 'a pair adapter trains on two text columns');
SELECT is((SELECT hyperparameters -> 'text_columns' FROM dept.adapters WHERE name = 'pr_probe' AND active),
		  '["premise", "hypothesis"]'::jsonb, 'its hyperparameters name the pair');
SELECT is((SELECT train_rows + valid_rows FROM dept.adapters WHERE name = 'pr_probe' AND active),
		  400::bigint, 'the row with a null premise is not used');
SELECT ok(dept_predict('pr_probe', 'A cat sat on the mat.', 'A cat sat.') IN ('entailment', 'not_entailment'),
		  'dept_predict(adapter, text, text) gives one of the labels');
SELECT ok(abs((SELECT sum(value::float8) FROM jsonb_each_text(
			dept_predict_proba('pr_probe', 'A cat sat on the mat.', 'A cat sat.')))) - 1 < 1e-4,
		  'dept_predict_proba(adapter, text, text) sums to 1');
SELECT is((SELECT count(*) FROM pr_val
		   WHERE dept_predict('pr_probe', premise, hypothesis)
				 = (dept_predict('pr_probe', ARRAY[premise], ARRAY[hypothesis]))[1]), 100::bigint,
		  'the array form agrees with the scalar form');
SELECT is(dept_predict('pr_probe', ARRAY['a', NULL, 'c'], ARRAY['b', 'x', NULL])::text,
		  (SELECT ARRAY[dept_predict('pr_probe', 'a', 'b'), NULL, NULL]::text),
		  'a pair with a null side is null in the array result');
SELECT is((SELECT count(*) FROM pr_val
		   WHERE ((dept_predict_proba('pr_probe', ARRAY[premise], ARRAY[hypothesis]))[1]
				 ->> dept_predict('pr_probe', premise, hypothesis))::float8
				 = (dept_predict_proba('pr_probe', premise, hypothesis)
				 ->> dept_predict('pr_probe', premise, hypothesis))::float8), 100::bigint,
		  'the array proba form agrees with the scalar form');
SELECT is((dept_evaluate('pr_probe', 'pr_val', 'label', ARRAY['premise', 'hypothesis']) ->> 'accuracy')::float8,
		  (SELECT avg((dept_predict('pr_probe', premise, hypothesis) = label)::int)::float8 FROM pr_val),
		  'dept_evaluate with two columns counts what dept_predict gets right');
SELECT is(dept_evaluate('pr_probe', 'pr_renamed', 'y', ARRAY['p', 'h']) ->> 'accuracy',
		  dept_evaluate('pr_probe', 'pr_val', 'label', ARRAY['premise', 'hypothesis']) ->> 'accuracy',
		  'an evaluation table may name the columns otherwise');
SELECT throws_ok($$SELECT dept_predict('pr_probe', 'only one text')$$, '22023', NULL,
				 'one text on a pair adapter is 22023');
SELECT throws_ok($$SELECT dept_predict('pr_single', 'a', 'b')$$, '22023',
				 'adapter "pr_single" reads one text, not a pair', 'two texts on a one-text adapter is 22023');
SELECT throws_ok($$SELECT dept_evaluate('pr_probe', 'pr_val', 'label', ARRAY['premise'])$$, '22023',
				 'text_columns must name two columns', 'dept_evaluate needs both columns');
SELECT throws_ok($$SELECT dept_train('pr_train', 'label', options => '{"text_columns": ["premise"]}')$$,
				 '22023', NULL, 'text_columns must hold two names');
SELECT throws_ok($$SELECT dept_train('pr_train', 'label', options => '{"text_columns": ["premise", "premise"]}')$$,
				 '22023', 'the two text columns must differ', 'the two columns must differ');
SELECT throws_ok($$SELECT dept_train('pr_train', 'label', text_column => 'hypothesis',
							options => '{"text_columns": ["premise", "hypothesis"]}')$$,
				 '22023', NULL, 'a text_column other than the first of text_columns is refused');

CREATE TABLE pr_keyed AS SELECT row_number() OVER () AS id, premise FROM pr_val;
ALTER TABLE pr_keyed ADD PRIMARY KEY (id);
SELECT throws_ok($$SELECT dept_score('pr_probe', 'pr_keyed', 'id', 'premise')$$, '0A000',
				 'dept_score does not score sentence-pair adapters yet', 'dept_score refuses a pair adapter');

SELECT is((SELECT hyperparameters ->> 'pair_encoding' FROM dept.adapters WHERE name = 'pr_probe' AND active),
		  'joined', 'pair_encoding joined reads a pair joined into one text, and says so');
SELECT is(:'siamese'::text, 'pr_siamese', 'a probe trains on use-lite pairs without pair_encoding');
SELECT is((SELECT hyperparameters ->> 'pair_encoding' FROM dept.adapters WHERE name = 'pr_siamese' AND active),
		  'siamese', 'use-lite reads pairs siamese by default, and says so');
SELECT is((SELECT count(*) FROM pr_val
		   WHERE dept_predict('pr_siamese', premise, hypothesis)
				 = (dept_predict('pr_siamese', ARRAY[premise], ARRAY[hypothesis]))[1]), 100::bigint,
		  'siamese: the array form agrees with the scalar form');
SELECT ok(abs((SELECT sum(value::float8) FROM jsonb_each_text(
			dept_predict_proba('pr_siamese', 'A cat sat on the mat.', 'A cat sat.')))) - 1 < 1e-4,
		  'siamese: dept_predict_proba sums to 1');
SELECT isnt(dept_predict_proba('pr_siamese', 'A cat sat on the mat.', 'A cat sat.'),
			dept_predict_proba('pr_siamese', 'A cat sat.', 'A cat sat on the mat.'),
			'siamese: the order of the two texts matters ([u; v; ...] is not symmetric)');
SELECT is((dept_evaluate('pr_siamese', 'pr_val', 'label', ARRAY['premise', 'hypothesis']) ->> 'accuracy')::float8,
		  (SELECT avg((dept_predict('pr_siamese', premise, hypothesis) = label)::int)::float8 FROM pr_val),
		  'siamese: dept_evaluate counts what dept_predict gets right');
SELECT is(:'siamese_dept'::text, 'pr_siamese_dept', 'a siamese DePT adapter trains on use-lite');
SELECT is(dept_report('pr_siamese_dept') -> 'confusion',
		  dept_evaluate('pr_siamese_dept', 'pr_test', 'label', ARRAY['premise', 'hypothesis']) -> 'confusion',
		  'siamese DePT: the job''s test report equals dept_evaluate on the same test rows');
SELECT throws_ok($$SELECT dept_train('pr_train', 'label', options => '{"text_columns": ["premise", "hypothesis"],
							"pair_encoding": "native"}')$$, '22023',
				 'model "use-lite" (use-lite) has no sentence-pair template', 'native pairs on use-lite are 22023');
SELECT throws_ok($$SELECT dept_train('pr_train', 'label', text_column => 'premise',
							options => '{"pair_encoding": "siamese"}')$$, '22023',
				 'option "pair_encoding" reads a sentence pair', 'pair_encoding without a pair is 22023');
SELECT throws_ok($$SELECT dept_train('pr_train', 'label', options => '{"text_columns": ["premise", "hypothesis"],
							"pair_encoding": "both"}')$$, '22023', NULL, 'an unknown pair_encoding is 22023');
SELECT throws_ok($$SELECT dept_explain('pr_siamese', 'a', 'gradient_x_input')$$, '22023', NULL,
				 'explanations of a pair adapter are refused');

SELECT * FROM finish();
DROP TABLE pr_keyed, pr_test;
DROP TABLE pr_train, pr_val, pr_renamed;
DELETE FROM dept.adapters WHERE name LIKE 'pr\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'pr\_%';
