-- A Hugging Face T5 directory (the tiny random v1.0 fixture): registered, a
-- DePT adapter trained text-to-text (the default for T5: the label strings
-- as decoder targets, predictions by ranking them), the old mean-pool +
-- linear head on request, and the option's errors.  The weights are random:
-- only shapes and label sets are checked, never accuracy.
SET client_min_messages = warning;
\getenv t5_dir DEPT_T5_DIR
SELECT info ->> 'family' AS family, info ->> 'd_embed' AS d_embed, info ->> 'trainable' AS trainable
FROM dept_register_model('t5-tiny', :'t5_dir') AS info;
CREATE TABLE t5_reviews (label text, body text);
INSERT INTO t5_reviews
SELECT CASE WHEN i % 2 = 0 THEN 'positive' ELSE 'negative' END,
	   CASE WHEN i % 2 = 0 THEN 'a wonderful and moving film number ' ELSE 'a dull and boring film number ' END || i
FROM generate_series(1, 40) i;
-- text-to-text by default
SELECT dept_train('t5_reviews', 'label', adapter => 't5_dept', method => 'dept',
				  options => '{"model": "t5-tiny", "prompt_length": 5, "max_length": 32, "max_steps": 3, "batch_size": 8}');
SELECT name, backbone, method, hyperparameters ->> 'family' AS family,
	   hyperparameters ->> 'head' AS head, labels,
	   (hyperparameters ->> 'trainable_params')::int = 5 * 32 + (hyperparameters ->> 'rank')::int * (32 + 32)
		   AS no_head_params
FROM dept.adapters WHERE name = 't5_dept';
-- format version 2 (byte 4 of the DEPT header) records the text-to-text head
SELECT get_byte(dept_export('t5_dept'), 4) AS format_version;
SELECT dept_predict('t5_dept', 'a fine film') IN ('negative', 'positive') AS predicts;
SELECT array(SELECT jsonb_object_keys(p) ORDER BY 1) AS keys,
	   round(((p ->> 'negative')::numeric + (p ->> 'positive')::numeric), 4) AS total,
	   (p ->> 'positive')::float BETWEEN 0 AND 1 AS in_range
FROM dept_predict_proba('t5_dept', 'a fine film') AS p;
-- the prediction is the most probable label string (>=: probabilities are printed to 6 digits)
SELECT bool_and((p ->> pred)::float >= (p ->> CASE pred WHEN 'positive' THEN 'negative' ELSE 'positive' END)::float)
		   AS argmax_agrees
FROM (SELECT dept_predict('t5_dept', body) AS pred, dept_predict_proba('t5_dept', body) AS p
	  FROM t5_reviews) AS t;
SELECT array_length(p, 1) AS n, p[2] IS NULL AS null_kept,
	   p[1] IN ('negative', 'positive') AND p[3] IN ('negative', 'positive') AS labels
FROM dept_predict('t5_dept', ARRAY['a fine film', NULL, 'a dull film']) AS p;
SELECT array_length(p, 1) AS n, p[1] ? 'positive' AND p[1] ? 'negative' AS keys
FROM dept_predict_proba('t5_dept', ARRAY['a fine film', 'a dull film']) AS p;
SELECT e ->> 'rows' AS rows, e -> 'labels' AS labels, jsonb_array_length(e -> 'confusion') AS confusion_rows,
	   (e ->> 'accuracy')::float BETWEEN 0 AND 1 AS accuracy_in_range
FROM dept_evaluate('t5_dept', 't5_reviews', 'label', 'body') AS e;
-- exported and imported, it still ranks the label strings
SELECT dept_import('t5_copy', dept_export('t5_dept')) AS version;
SELECT bool_and(dept_predict('t5_copy', body) = dept_predict('t5_dept', body)) AS same_predictions
FROM t5_reviews;
-- PT text-to-text too
SELECT dept_train('t5_reviews', 'label', adapter => 't5_pt', method => 'pt',
				  options => '{"model": "t5-tiny", "prompt_length": 4, "max_length": 32, "max_steps": 2, "batch_size": 8, "head": "text"}');
SELECT hyperparameters ->> 'head' AS head, dept_predict('t5_pt', 'a fine film') IN ('negative', 'positive') AS predicts
FROM dept.adapters WHERE name = 't5_pt';
-- the mean-pooled encoder + linear head on request, and for a probe
SELECT dept_train('t5_reviews', 'label', adapter => 't5_linear', method => 'dept',
				  options => '{"model": "t5-tiny", "prompt_length": 5, "max_length": 32, "max_steps": 3, "batch_size": 8, "head": "linear"}');
SELECT dept_train('t5_reviews', 'label', adapter => 't5_probe', method => 'probe',
				  options => '{"model": "t5-tiny", "max_length": 32, "epochs": 1}');
SELECT name, hyperparameters ->> 'head' AS head, get_byte(dept_export(name), 4) AS format_version,
	   dept_predict(name, 'a fine film') IN ('negative', 'positive') AS predicts
FROM dept.adapters WHERE name IN ('t5_linear', 't5_probe') ORDER BY name;
-- errors: each is invalid_parameter_value (22023), raised before any worker starts
CREATE FUNCTION pg_temp.error_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT pg_temp.error_of(q) FROM (VALUES
	($q$SELECT dept_train('t5_reviews', 'label', options => '{"model": "t5-tiny", "head": "seq2seq"}')$q$),
	($q$SELECT dept_train('t5_reviews', 'label', options => '{"model": "t5-tiny", "head": 1}')$q$),
	($q$SELECT dept_train('t5_reviews', 'label', method => 'probe', options => '{"model": "t5-tiny", "head": "text"}')$q$),
	($q$SELECT dept_train('t5_reviews', 'label', options => '{"head": "text"}')$q$)) AS t(q);
SELECT dept_train('t5_reviews', 'label', options => '{"model": "t5-tiny", "head": "seq2seq"}');
SELECT dept_train('t5_reviews', 'label', method => 'probe', options => '{"model": "t5-tiny", "head": "text"}');
DELETE FROM dept.adapters WHERE name LIKE 't5\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 't5\_%';
DELETE FROM dept.models;
DROP TABLE t5_reviews;
