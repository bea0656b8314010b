-- demo/embed.sql: sentence embeddings and nearest neighbours inside PostgreSQL.
\set ON_ERROR_STOP 1
\pset footer off
CREATE EXTENSION IF NOT EXISTS dept;
DROP TABLE IF EXISTS demo_sentences;
CREATE TABLE demo_sentences (id serial PRIMARY KEY, body text NOT NULL, embedding real[]);
INSERT INTO demo_sentences (body) VALUES
	('The movie was absolutely wonderful, I loved every minute.'),
	('A dull, lifeless film that I could not finish.'),
	('The acting was superb and the story moving.'),
	('Stock markets fell sharply after the interest rate decision.'),
	('The central bank raised rates by half a point.'),
	('The team won the championship in overtime.'),
	('The striker scored twice in the second half.'),
	('How do I reset my password?'),
	('I forgot my login credentials, can you help?'),
	('Heavy rain and strong winds are expected tomorrow.'),
	('The forecast says it will be sunny all weekend.'),
	('This recipe needs two cups of flour and three eggs.');
UPDATE demo_sentences SET embedding = dept_embed(body);

\echo
\echo 'model loaded by this backend:'
SELECT dept_model_info() ->> 'family' AS family,
	   dept_model_info() ->> 'd_out' AS dimensions,
	   dept_model_info() ->> 'load_ms' AS load_ms;

\echo 'tokens of one sentence:'
SELECT dept_tokenize('The movie was absolutely wonderful!') AS token_ids;

\echo 'nearest neighbour of each sentence by cosine similarity:'
SELECT a.body AS sentence, nn.body AS nearest, round(nn.cosine::numeric, 3) AS cosine
FROM demo_sentences a
CROSS JOIN LATERAL (
	SELECT b.body, dept_cosine(a.embedding, b.embedding) AS cosine
	FROM demo_sentences b WHERE b.id <> a.id
	ORDER BY cosine DESC LIMIT 1) nn
ORDER BY a.id;

\echo 'free-text query: "banking and finance news"'
SELECT body, round(dept_cosine(embedding, dept_embed('banking and finance news'))::numeric, 3) AS cosine
FROM demo_sentences ORDER BY cosine DESC LIMIT 3;
