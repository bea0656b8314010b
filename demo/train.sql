-- demo/train.sql: train a sentiment classifier (the default, method auto) on 600 labelled reviews
-- (a sample of SST-2 shipped in test/fixtures) and use it inside queries.
\set ON_ERROR_STOP 1
\pset footer off
CREATE EXTENSION IF NOT EXISTS dept;
DROP TABLE IF EXISTS demo_reviews, demo_reviews_holdout, demo_new_reviews;
CREATE TABLE demo_reviews (label text, body text);
CREATE TABLE demo_reviews_holdout (label text, body text);
\copy demo_reviews FROM PROGRAM 'tail -n +2 test/fixtures/sst2_train_600.tsv' WITH (FORMAT csv, DELIMITER E'\t', QUOTE E'\x01')
\copy demo_reviews_holdout FROM PROGRAM 'tail -n +2 test/fixtures/sst2_test_200.tsv' WITH (FORMAT csv, DELIMITER E'\t', QUOTE E'\x01')
CREATE TABLE demo_new_reviews (body text);
INSERT INTO demo_new_reviews VALUES
	('A warm, funny and beautifully acted film.'),
	('Two hours of my life I will never get back.'),
	('The plot is thin but the performances carry it.'),
	('Dull, predictable and far too long.');

\echo 'training (a background worker; progress arrives as NOTICEs):'
DELETE FROM dept.adapters WHERE name = 'demo_reviews_label';
SELECT dept_train('demo_reviews', 'label', options => '{"seed": 7}', activate => 'always');

\echo 'the stored adapter:'
SELECT name, version, active, method, hyperparameters ->> 'prompt_length' AS m,
	   hyperparameters ->> 'rank' AS r, hyperparameters ->> 'trainable_params' AS params,
	   round((metrics ->> 'valid_accuracy')::numeric, 3) AS valid_accuracy, length(tensors) AS bytes
FROM dept.adapters WHERE name = 'demo_reviews_label';

\echo 'predictions on new rows:'
SELECT body, dept_predict('demo_reviews_label', body) AS label,
	   round((dept_predict_proba('demo_reviews_label', body) ->> 'positive')::numeric, 3) AS p_positive
FROM demo_new_reviews;

\echo 'accuracy on 200 held-out reviews:'
SELECT e ->> 'rows' AS rows, round((e ->> 'accuracy')::numeric, 3) AS accuracy,
	   round((e ->> 'macro_f1')::numeric, 3) AS macro_f1, e -> 'confusion' AS confusion
FROM dept_evaluate('demo_reviews_label', 'demo_reviews_holdout', 'label', 'body') AS e;
