-- Explanations (issue 15, item 4): dept_explain returns the tokens of a
-- text with their attribution to the log-probability of a label.  The
-- prediction it reports is dept_predict's; integrated gradients is complete
-- (the attributions sum to log p(text) - log p(baseline)) within the
-- refinement SQL allows; gradient x input differs from it; a chosen label
-- is explained; bad arguments are errors with their SQLSTATE.
-- The math is checked against finite differences in test/nn/test_explain.c.
\set ON_ERROR_STOP 1
\set QUIET 1
\getenv fixtures DEPT_FIXTURE_DIR
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS dept;
\ir helpers.psql
DROP TABLE IF EXISTS ex_reviews;
\set train_data `cat :fixtures/sst2_train_600.tsv`
CREATE TABLE ex_reviews (label text, body text);
INSERT INTO ex_reviews SELECT * FROM pg_temp.tsv_rows(:'train_data');
DELETE FROM dept.adapters WHERE name LIKE 'ex\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'ex\_%';
SELECT dept_train('ex_reviews', 'label', 'body', adapter => 'ex_dept',
				  options => '{"epochs": 1, "max_steps": 8, "seed": 3}') IS NOT NULL AS trained \gset
SELECT dept_train('ex_reviews', 'label', 'body', adapter => 'ex_probe', method => 'probe',
				  options => '{"epochs": 2, "seed": 3}') IS NOT NULL AS trained \gset

SELECT plan(15);

CREATE TEMP TABLE ex_cases AS
SELECT a.adapter, t.input,
	   dept_explain(a.adapter, t.input) AS ig,
	   dept_explain(a.adapter, t.input, 'gradient_x_input') AS gxi,
	   dept_predict(a.adapter, t.input) AS predicted,
	   dept_predict_proba(a.adapter, t.input) AS proba
FROM (VALUES ('ex_dept'), ('ex_probe')) a(adapter),
	 (VALUES ('a gorgeous , witty , seductive movie .'),
			 ('the plot is dull and the acting is lifeless'),
			 ('it is a film')) t(input);

SELECT is((SELECT count(*) FROM ex_cases WHERE ig ->> 'label' = predicted), 6::bigint,
		  'the label dept_explain reports is dept_predict''s');
SELECT is((SELECT count(*) FROM ex_cases
		   WHERE abs((ig ->> 'probability')::float8 - (proba ->> predicted)::float8) < 1e-5), 6::bigint,
		  'and its probability is dept_predict_proba''s');
SELECT is((SELECT count(*) FROM ex_cases WHERE ig ->> 'explained_label' = predicted), 6::bigint,
		  'by default the predicted label is explained');
SELECT is((SELECT count(*) FROM ex_cases
		   WHERE jsonb_array_length(ig -> 'tokens') > 0
			 AND jsonb_array_length(ig -> 'tokens') = jsonb_array_length(gxi -> 'tokens')), 6::bigint,
		  'both methods attribute the same tokens');
SELECT is((SELECT string_agg(tok ->> 'token', '' ORDER BY n) FROM ex_cases,
				  jsonb_array_elements(ig -> 'tokens') WITH ORDINALITY AS e(tok, n)
		   WHERE adapter = 'ex_dept' AND input = 'it is a film'),
		  E'\u2581it\u2581is\u2581a\u2581film', 'the tokens are the tokenizer''s pieces, in order');
SELECT is((SELECT count(*) FROM ex_cases
		   WHERE (ig ->> 'steps')::int BETWEEN 32 AND 64
			 AND (abs((ig ->> 'attribution_sum')::float8 - ((ig ->> 'log_probability')::float8
				 - (ig ->> 'baseline_log_probability')::float8))
				  <= 0.01 * abs((ig ->> 'log_probability')::float8 - (ig ->> 'baseline_log_probability')::float8) + 1e-6
				  OR (ig ->> 'steps')::int = 64)), 6::bigint,
		  'integrated gradients is complete within 1% or used the 64 intervals SQL allows');
SELECT is((SELECT count(*) FROM ex_cases
		   WHERE abs((ig ->> 'attribution_sum')::float8 - ((ig ->> 'log_probability')::float8
			   - (ig ->> 'baseline_log_probability')::float8))
				 <= 0.1 * abs((ig ->> 'log_probability')::float8 - (ig ->> 'baseline_log_probability')::float8) + 0.005),
		  6::bigint, 'and within 10% (or 0.005) in every case');
SELECT is((SELECT count(*) FROM ex_cases WHERE gxi ? 'steps' OR gxi ->> 'method' <> 'gradient_x_input'),
		  0::bigint, 'gradient x input says so and has no path intervals');
SELECT ok((SELECT bool_or(ig -> 'tokens' <> gxi -> 'tokens') FROM ex_cases),
		  'the two methods give different attributions');
SELECT is((SELECT (dept_explain('ex_dept', input, 'integrated_gradients', other) ->> 'explained_label')
		   FROM (SELECT input, CASE predicted WHEN 'positive' THEN 'negative' ELSE 'positive' END AS other
				 FROM ex_cases WHERE adapter = 'ex_dept' LIMIT 1) c),
		  (SELECT CASE predicted WHEN 'positive' THEN 'negative' ELSE 'positive' END
		   FROM ex_cases WHERE adapter = 'ex_dept' LIMIT 1),
		  'a chosen label is explained');
SELECT is(dept_explain('ex_dept', NULL), NULL, 'a null input gives null');
SELECT throws_ok($$SELECT dept_explain('ex_dept', 'x', 'shap')$$, '22023',
				 'unknown explanation method "shap"', 'an unknown method is 22023');
SELECT throws_ok($$SELECT dept_explain('ex_dept', 'x', 'gradient_x_input', 'neutral')$$, '22023',
				 'adapter has no label "neutral"', 'a label the adapter lacks is 22023');
SELECT throws_ok($$SELECT dept_explain('ex_missing', 'x')$$, '42704', NULL,
				 'an unknown adapter is 42704');
SELECT is((SELECT dept_explain('ex_probe', '') -> 'tokens'), '[]'::jsonb,
		  'an empty text has no tokens to explain');

SELECT * FROM finish();
DROP TABLE ex_reviews;
DELETE FROM dept.adapters WHERE name LIKE 'ex\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'ex\_%';
