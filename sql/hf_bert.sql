-- A Hugging Face BERT directory (the tiny random fixture, copied by the test
-- runner into a directory the server can read) registered, trained and used.
SET client_min_messages = warning;
\getenv bert_dir DEPT_BERT_DIR
SELECT info ->> 'family' AS family, info ->> 'd_out' AS d_out, info ->> 'trainable' AS trainable
FROM dept_register_model('bert-tiny', :'bert_dir') AS info;
SELECT name, family FROM dept.models;
CREATE TABLE hf_reviews (label text, body text);
INSERT INTO hf_reviews
SELECT CASE WHEN i % 2 = 0 THEN 'positive' ELSE 'negative' END,
	   CASE WHEN i % 2 = 0 THEN 'a wonderful and moving film number ' ELSE 'a dull and boring film number ' END || i
FROM generate_series(1, 40) i;
SELECT dept_train('hf_reviews', 'label', adapter => 'hf_probe', method => 'probe',
				  options => '{"model": "bert-tiny", "epochs": 2}');
SELECT dept_train('hf_reviews', 'label', adapter => 'hf_dept', method => 'dept',
				  options => '{"model": "bert-tiny", "prompt_length": 5, "max_length": 32, "max_steps": 3, "batch_size": 8}');
SELECT name, backbone, method, hyperparameters ->> 'family' AS family,
	   (hyperparameters ->> 'rank')::int AS rank
FROM dept.adapters WHERE name LIKE 'hf\_%' ORDER BY name;
SELECT dept_predict('hf_dept', 'a fine film') IN ('negative', 'positive') AS predicts,
	   dept_predict('hf_probe', 'a fine film') IN ('negative', 'positive') AS probe_predicts;
-- the default model keeps working beside it
SELECT array_length(dept_embed('still here'), 1) AS dims;
-- errors
SELECT dept_train('hf_reviews', 'label', options => '{"model": "no-such-model"}');
SELECT dept_train('hf_reviews', 'label', options => '{"model": "bert-tiny"}');
SELECT dept_register_model('use-lite', :'bert_dir');
SELECT dept_register_model('relative', 'models/bert');
SELECT dept_register_model('missing', '/nonexistent/model');
CREATE ROLE hf_plain;
SET ROLE hf_plain;
SELECT dept_register_model('mine', :'bert_dir');
RESET ROLE;
DROP ROLE hf_plain;
DELETE FROM dept.adapters WHERE name LIKE 'hf\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'hf\_%';
DELETE FROM dept.models;
DROP TABLE hf_reviews;
