-- A Hugging Face T5 directory (the tiny random v1.0 fixture): registered, a
-- DePT adapter trained on its encoder's mean-pooled output, predictions.
SET client_min_messages = warning;
\getenv t5_dir DEPT_T5_DIR
SELECT info ->> 'family' AS family, info ->> 'd_embed' AS d_embed, info ->> 'trainable' AS trainable
FROM dept_register_model('t5-tiny', :'t5_dir') AS info;
CREATE TABLE t5_reviews (label text, body text);
INSERT INTO t5_reviews
SELECT CASE WHEN i % 2 = 0 THEN 'positive' ELSE 'negative' END,
	   CASE WHEN i % 2 = 0 THEN 'a wonderful and moving film number ' ELSE 'a dull and boring film number ' END || i
FROM generate_series(1, 40) i;
SELECT dept_train('t5_reviews', 'label', adapter => 't5_dept', method => 'dept',
				  options => '{"model": "t5-tiny", "prompt_length": 5, "max_length": 32, "max_steps": 3, "batch_size": 8}');
SELECT name, backbone, method, hyperparameters ->> 'family' AS family
FROM dept.adapters WHERE name = 't5_dept';
SELECT dept_predict('t5_dept', 'a fine film') IN ('negative', 'positive') AS predicts;
DELETE FROM dept.adapters WHERE name = 't5_dept';
DELETE FROM dept.jobs WHERE adapter = 't5_dept';
DELETE FROM dept.models;
DROP TABLE t5_reviews;
