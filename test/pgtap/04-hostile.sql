-- Hostile input: identifiers built for SQL injection, odd relation kinds,
-- empty, one-class and 2,000-class tables, labels of other types, NULLs,
-- 1 MB texts, options of the wrong type or absurd size, NULL arguments,
-- empty and oversized adapter names, and adapters whose bytea was
-- corrupted in place.  Each gives a clear SQLSTATE or the right result, and
-- the server stays up.  Training reads committed tables, so the data is set
-- up outside the test transaction and dropped at the end; every training
-- is a probe or a tiny DePT so the file runs in about 15 s.
\set ON_ERROR_STOP 1
\set QUIET 1
\getenv fixtures DEPT_FIXTURE_DIR
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS dept;
\ir helpers.psql
SELECT pg_postmaster_start_time() AS pm_start, pg_backend_pid() AS backend_pid \gset

DELETE FROM dept.adapters WHERE name LIKE 'hostile\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'hostile\_%';
DROP SCHEMA IF EXISTS "hostile s""; DROP TABLE hostile_victim; --" CASCADE;
DROP TABLE IF EXISTS hostile_all, hostile_small, hostile_victim,
	"hostile_x""; DROP TABLE hostile_victim; --", hostile_part, hostile_empty, hostile_one,
	hostile_many, hostile_too_many, hostile_typed, hostile_null_text, hostile_empty_label,
	hostile_long_label, hostile_bigtext CASCADE;
DROP TYPE IF EXISTS hostile_mood;

\set train_data `cat :fixtures/sst2_train_600.tsv`
CREATE TABLE hostile_all (label text, body text);
INSERT INTO hostile_all SELECT * FROM pg_temp.tsv_rows(:'train_data');
-- 60 balanced rows: enough for a probe, fast to embed
CREATE TABLE hostile_small AS
	(SELECT * FROM hostile_all WHERE label = 'negative' LIMIT 30)
	UNION ALL (SELECT * FROM hostile_all WHERE label = 'positive' LIMIT 30);
CREATE TABLE hostile_victim (x int);
INSERT INTO hostile_victim VALUES (42);

-- Identifiers with quotes, spaces and semicolons, in a schema of the same kind.
CREATE TABLE "hostile_x""; DROP TABLE hostile_victim; --" ("label; SELECT 1" text, "body "" text" text);
INSERT INTO "hostile_x""; DROP TABLE hostile_victim; --" SELECT * FROM hostile_small;
CREATE SCHEMA "hostile s""; DROP TABLE hostile_victim; --";
CREATE TABLE "hostile s""; DROP TABLE hostile_victim; --"."t'; DELETE FROM hostile_victim; --"
	("lab"")--" text, "txt'); DROP TABLE hostile_victim; --" text);
INSERT INTO "hostile s""; DROP TABLE hostile_victim; --"."t'; DELETE FROM hostile_victim; --"
	SELECT * FROM hostile_small;

-- Other relation kinds.
CREATE VIEW "hostile s""; DROP TABLE hostile_victim; --".v AS
	SELECT upper(label) AS label, body FROM hostile_small WHERE body <> '';
CREATE TABLE hostile_part (label text, body text) PARTITION BY LIST (label);
CREATE TABLE hostile_part_neg PARTITION OF hostile_part FOR VALUES IN ('negative');
CREATE TABLE hostile_part_pos PARTITION OF hostile_part FOR VALUES IN ('positive');
INSERT INTO hostile_part SELECT * FROM hostile_small;

-- Degenerate label sets.
CREATE TABLE hostile_empty (label text, body text);
CREATE TABLE hostile_one AS SELECT 'same'::text AS label, body FROM hostile_small;
CREATE TABLE hostile_many AS
	SELECT 'class ' || (g % 2000) AS label, 'review number ' || g AS body
	FROM generate_series(0, 3999) g;
CREATE TABLE hostile_too_many AS
	SELECT 'class ' || g AS label, 'review number ' || g AS body FROM generate_series(0, 10000) g;
-- labels of other types
CREATE TYPE hostile_mood AS ENUM ('sad', 'happy');
CREATE TABLE hostile_typed (i int, b boolean, m hostile_mood, body text);
INSERT INTO hostile_typed
	SELECT (label = 'positive')::int, label = 'positive',
		   CASE WHEN label = 'positive' THEN 'happy' ELSE 'sad' END::hostile_mood, body
	FROM hostile_small;
-- NULLs everywhere: every labelled row lacks its text
CREATE TABLE hostile_null_text AS
	SELECT CASE WHEN g % 2 = 0 THEN NULL ELSE label END AS label,
		   CASE WHEN g % 2 = 0 THEN body END AS body
	FROM (SELECT row_number() OVER () AS g, * FROM hostile_small) s;
-- two distinct non-null labels, one of them the empty string (skipped by the worker)
CREATE TABLE hostile_empty_label AS
	SELECT CASE WHEN label = 'positive' THEN '' ELSE label END AS label, body FROM hostile_small;
-- a label longer than the adapter format's 1,024 bytes
CREATE TABLE hostile_long_label AS
	SELECT CASE WHEN label = 'positive' THEN repeat('L', 1025) ELSE label END AS label, body
	FROM hostile_small;
-- 1 MB texts among ordinary ones
CREATE TABLE hostile_bigtext AS SELECT * FROM hostile_small;
INSERT INTO hostile_bigtext VALUES ('positive', repeat('a wonderful film ', 62000)),
	('negative', repeat('x', 1048576));

BEGIN;
SELECT plan(130);

-- Outcome of a dept_train(..., wait => false) call: 'rejected <SQLSTATE>' if the
-- call itself failed; else how its job ended (within deadline seconds, after
-- which the job is cancelled).  'failed before training' means the worker
-- failed before its first step.
CREATE FUNCTION pg_temp.train_outcome(call text, deadline_s float8 DEFAULT 10) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	job bigint;
	j record;
	deadline timestamptz := clock_timestamp() + make_interval(secs => deadline_s);
BEGIN
	BEGIN
		EXECUTE call INTO job;
	EXCEPTION WHEN OTHERS THEN
		RETURN 'rejected ' || SQLSTATE;
	END;
	LOOP
		SELECT status, step, error INTO j FROM dept.jobs WHERE id = job;
		IF j.status = 'succeeded' THEN
			RETURN 'trained';
		ELSIF j.status IN ('failed', 'cancelled') THEN
			RETURN CASE WHEN j.step = 0 THEN 'failed before training: ' ELSE 'failed after training: ' END
				|| coalesce(j.error, j.status);
		ELSIF clock_timestamp() > deadline THEN
			PERFORM dept_cancel(job);
			PERFORM dept_wait(job);
			RETURN format('still training after %s s (cancelled)', deadline_s);
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;

-- CRC-32 (zlib's) and resealing, to corrupt an adapter so that only the
-- reader's structural checks can catch it.
CREATE FUNCTION pg_temp.crc32(b bytea) RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	crc bigint := 4294967295;
BEGIN
	FOR i IN 0 .. length(b) - 1 LOOP
		crc := crc # get_byte(b, i);
		FOR k IN 1 .. 8 LOOP
			crc := CASE WHEN crc & 1 = 1 THEN (crc >> 1) # 3988292384 ELSE crc >> 1 END;
		END LOOP;
	END LOOP;
	RETURN crc # 4294967295;
END $$;
CREATE FUNCTION pg_temp.reseal(b bytea) RETURNS bytea LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
	body bytea := substring(b FROM 1 FOR length(b) - 4);
	c bigint := pg_temp.crc32(body);
BEGIN
	RETURN body || set_byte(set_byte(set_byte(set_byte('\x00000000'::bytea,
		0, (c & 255)::int), 1, ((c >> 8) & 255)::int), 2, ((c >> 16) & 255)::int),
		3, ((c >> 24) & 255)::int);
END $$;

-- ---------------------------------------------------------------------------
-- SQL injection through identifiers: names are quoted, never spliced.
-- ---------------------------------------------------------------------------
SELECT is(dept_train('"hostile_x""; DROP TABLE hostile_victim; --"', 'label; SELECT 1',
					 method => 'probe', options => '{"epochs": 1}'),
		  'hostile_x"; DROP TABLE hostile_victim; --_label; SELECT 1',
		  'a table and columns named with quotes and semicolons train; the default adapter name keeps them');
SELECT results_eq($$SELECT training_relation, label_column, text_column, train_rows + valid_rows
					FROM dept.adapters WHERE name = 'hostile_x"; DROP TABLE hostile_victim; --_label; SELECT 1'$$,
				  $$VALUES ('public."hostile_x""; DROP TABLE hostile_victim; --"'::text, 'label; SELECT 1'::text,
							'body " text'::text, 60::bigint)$$,
				  'the catalog records the names verbatim and every row was read');
SELECT ok(dept_predict('hostile_x"; DROP TABLE hostile_victim; --_label; SELECT 1', 'a fine film')
		  IN ('negative', 'positive'), 'the adapter with the hostile name predicts');
SELECT is((dept_evaluate('hostile_x"; DROP TABLE hostile_victim; --_label; SELECT 1',
						 '"hostile_x""; DROP TABLE hostile_victim; --"', 'label; SELECT 1',
						 'body " text') ->> 'rows')::int, 60,
		  'dept_evaluate reads the hostile columns too');
SELECT is(dept_train('"hostile s""; DROP TABLE hostile_victim; --"."t''; DELETE FROM hostile_victim; --"',
					 'lab")--', 'txt''); DROP TABLE hostile_victim; --', adapter => 'hostile_schema',
					 method => 'probe', options => '{"epochs": 1}'),
		  'hostile_schema', 'a schema, table and columns with quotes of both kinds train');
SELECT is((SELECT training_relation FROM dept.adapters WHERE name = 'hostile_schema'),
		  '"hostile s""; DROP TABLE hostile_victim; --"."t''; DELETE FROM hostile_victim; --"',
		  'the relation is recorded schema-qualified and quoted');
SELECT results_eq('SELECT x FROM hostile_victim', 'VALUES (42)',
				  'the victim table still exists with its row');
SELECT throws_ok($$SELECT dept_train('hostile_small', 'label; DROP TABLE hostile_victim')$$, '42703', NULL,
				 'a column name that is an injection attempt is just an unknown column');
SELECT throws_ok($$SELECT dept_train('hostile_small'';DROP TABLE hostile_victim;--', 'label')$$, '42602', NULL,
				 'an injection attempt as the relation is not a valid regclass');

-- ---------------------------------------------------------------------------
-- Relation kinds
-- ---------------------------------------------------------------------------
SELECT is(dept_train('"hostile s""; DROP TABLE hostile_victim; --".v', 'label', adapter => 'hostile_view',
					 method => 'probe', options => '{"epochs": 1}'),
		  'hostile_view', 'a view trains');
SELECT is((SELECT labels FROM dept.adapters WHERE name = 'hostile_view'), ARRAY['NEGATIVE', 'POSITIVE'],
		  'the view''s computed labels are the classes');
SELECT is(dept_train('hostile_part', 'label', adapter => 'hostile_part', method => 'probe',
					 options => '{"epochs": 1}'),
		  'hostile_part', 'a partitioned table trains');
SELECT is((SELECT train_rows + valid_rows FROM dept.adapters WHERE name = 'hostile_part'), 60::bigint,
		  'rows of every partition are read');
SELECT throws_ok($$SELECT dept_train('hostile_part_neg', 'label')$$, '22023', NULL,
				 'a single partition holds one class only');
SELECT throws_ok($$SELECT dept_train('pg_class_oid_index', 'relname')$$, '42809', NULL,
				 'an index is not a relation to train on');
SELECT throws_ok($$SELECT dept_train('dept.job_ids', 'last_value')$$, '42809', NULL,
				 'a sequence is not a relation to train on');

-- ---------------------------------------------------------------------------
-- Degenerate label sets
-- ---------------------------------------------------------------------------
SELECT throws_ok($$SELECT dept_train('hostile_empty', 'label', method => 'probe')$$, '22023', NULL,
				 'an empty table is rejected');
SELECT throws_ok($$SELECT dept_train('hostile_one', 'label', method => 'probe')$$, '22023', NULL,
				 'a table with one class is rejected');
SELECT clock_timestamp() AS many_start \gset
-- (no test rows: a held-out split by hash would take every row of some classes)
SELECT is(dept_train('hostile_many', 'label', adapter => 'hostile_many', method => 'probe',
					 options => '{"epochs": 1, "test_fraction": 0}'),
		  'hostile_many', '2,000 classes on 4,000 rows train (probe, 1 epoch)');
SELECT diag(format('2,000 classes, 4,000 rows, probe, 1 epoch: %s s',
				   round(extract(epoch FROM clock_timestamp() - :'many_start'::timestamptz)::numeric, 1)));
SELECT results_eq($$SELECT cardinality(labels), train_rows, valid_rows FROM dept.adapters WHERE name = 'hostile_many'$$,
				  $$VALUES (2000, 2000::bigint, 2000::bigint)$$,
				  'all 2,000 classes are stored; each class gives one row to validation');
SELECT ok(dept_predict('hostile_many', 'review number 17') LIKE 'class %',
		  'the 2,000-class adapter predicts one of its classes');
SELECT results_eq($$SELECT count(*), round(sum(value::float8)::numeric, 3)
					FROM jsonb_each_text(dept_predict_proba('hostile_many', 'review number 17'))$$,
				  $$VALUES (2000::bigint, 1.000)$$,
				  'its probabilities cover 2,000 classes and sum to one');

-- 10,001 classes exceed the adapter format's 10,000: that must be found
-- before training, not after.  Counting distinct labels needs a full scan,
-- so the worker may do it right after reading the rows.
SELECT matches(pg_temp.train_outcome($$SELECT dept_train('hostile_too_many', 'label', adapter => 'hostile_too_many',
										   method => 'dept', options => '{"prompt_length": 1, "max_length": 8, "batch_size": 8, "test_fraction": 0}',
										   wait => false)$$, 5),
			   '^(rejected 22023|failed before training)',
			   '10,001 classes are refused before any training step');
SELECT matches(pg_temp.train_outcome($$SELECT dept_train('hostile_long_label', 'label', adapter => 'hostile_long_label',
										   method => 'probe', options => '{"epochs": 1}', wait => false)$$),
			   '^(rejected 22023|failed before training)',
			   'a label longer than 1,024 bytes is refused before any training step');
-- Cheap checks that DeptCheckLabels should make with its LIMIT 1 queries:
-- the worker skips empty labels and NULL texts.
SELECT is(pg_temp.train_outcome($$SELECT dept_train('hostile_empty_label', 'label', adapter => 'hostile_empty_label',
									  method => 'probe', wait => false)$$),
		  'rejected 22023', 'two labels of which one is the empty string are one class: rejected up front');
SELECT is(pg_temp.train_outcome($$SELECT dept_train('hostile_null_text', 'label', adapter => 'hostile_null_text',
									  method => 'probe', wait => false)$$),
		  'rejected 22023', 'a table whose labelled rows all lack a text is rejected up front');

-- ---------------------------------------------------------------------------
-- Labels of other types, NULL and 1 MB texts
-- ---------------------------------------------------------------------------
SELECT is(dept_train('hostile_typed', 'i', 'body', adapter => 'hostile_int', method => 'probe',
					 options => '{"epochs": 1}'), 'hostile_int', 'integer labels train');
SELECT is(dept_train('hostile_typed', 'b', 'body', adapter => 'hostile_bool', method => 'probe',
					 options => '{"epochs": 1}'), 'hostile_bool', 'boolean labels train');
SELECT is(dept_train('hostile_typed', 'm', adapter => 'hostile_enum', method => 'probe',
					 options => '{"epochs": 1}'), 'hostile_enum', 'enum labels train (text column inferred)');
SELECT results_eq($$SELECT name, labels FROM dept.adapters
					WHERE name IN ('hostile_int', 'hostile_bool', 'hostile_enum') ORDER BY name$$,
				  $$VALUES ('hostile_bool', ARRAY['false', 'true']), ('hostile_enum', ARRAY['happy', 'sad']),
						   ('hostile_int', ARRAY['0', '1'])$$,
				  'the classes are the labels'' text forms');
SELECT ok(dept_predict('hostile_bool', 'a fine film') IN ('false', 'true')
		  AND dept_predict('hostile_enum', 'a fine film') IN ('happy', 'sad')
		  AND dept_predict('hostile_int', 'a fine film') IN ('0', '1'),
		  'they predict their own labels as text');
SELECT throws_ok($$SELECT dept_train('hostile_typed', 'b', 'i')$$, '42804', NULL,
				 'an integer text column is a datatype mismatch');

SELECT is(dept_train('hostile_bigtext', 'label', adapter => 'hostile_bigtext', method => 'probe',
					 options => '{"epochs": 1}'), 'hostile_bigtext', 'a table with two 1 MB texts trains');
SELECT is((SELECT train_rows + valid_rows FROM dept.adapters WHERE name = 'hostile_bigtext'), 62::bigint,
		  'the 1 MB rows are used, not skipped');
SELECT ok(dept_predict('hostile_bigtext', repeat('a wonderful film ', 62000)) IN ('negative', 'positive'),
		  'dept_predict on a 1 MB text');
SELECT ok(dept_predict('hostile_bigtext', repeat('x', 1048576)) IN ('negative', 'positive'),
		  'dept_predict on 1 MB of one letter');
SELECT ok(dept_predict('hostile_bigtext', repeat(U&'\0301', 300000)) IN ('negative', 'positive'),
		  'dept_predict on 300,000 combining accents (the NFKC worst case)');
SELECT is(array_length(dept_tokenize(repeat('a wonderful film ', 62000)), 1), 128,
		  'a 1 MB text is cut at 128 tokens');
SELECT is(cardinality(dept_predict('hostile_bigtext', ARRAY[repeat('y', 1048576), NULL, '', ' '])), 4,
		  'the batch form takes 1 MB, NULL, empty and blank texts');
SELECT ok(dept_predict('hostile_bigtext', '') IN ('negative', 'positive'), 'an empty text gets a label');
SELECT throws_ok($$SELECT dept_predict('hostile_bigtext', ARRAY[['a', 'b'], ['c', 'd']])$$, '2202E', NULL,
				 'a two-dimensional batch is refused');
SELECT is(dept_predict('hostile_bigtext', ARRAY[]::text[]), ARRAY[]::text[], 'an empty batch gives an empty array');

-- ---------------------------------------------------------------------------
-- Options: wrong types and absurd values, all 22023 in the calling backend
-- ---------------------------------------------------------------------------
CREATE FUNCTION pg_temp.opt(method text, options text) RETURNS text LANGUAGE sql AS $$
	SELECT format('SELECT dept_train(''hostile_small'', ''label'', adapter => ''hostile_opt'', method => %L, options => %L)',
				  method, options)
$$;
SELECT throws_ok(pg_temp.opt('probe', '{"batch_size": 1000000}'), '22023', NULL, 'batch size 1,000,000');
SELECT throws_ok(pg_temp.opt('probe', '{"batch_size": 0}'), '22023', NULL, 'batch size 0');
SELECT throws_ok(pg_temp.opt('dept', '{"rank": 257}'), '22023', NULL, 'rank 257 > embedding width 256');
SELECT throws_ok(pg_temp.opt('dept', '{"rank": 4096}'), '22023', NULL, 'rank 4096');
SELECT throws_ok(pg_temp.opt('dept', '{"rank": 100000}'), '22023', NULL, 'rank 100000');
SELECT throws_ok(pg_temp.opt('probe', '{"lr": -0.1}'), '22023', NULL, 'negative learning rate');
SELECT throws_ok(pg_temp.opt('probe', '{"head_lr": 0}'), '22023', NULL, 'zero learning rate');
SELECT throws_ok(pg_temp.opt('dept', '{"lowrank_lr": -1e-9}'), '22023', NULL, 'tiny negative learning rate');
SELECT throws_ok(pg_temp.opt('dept', '{"prompt_length": 200, "max_length": 128}'), '22023', NULL,
				 'prompt_length + max_length beyond the 256 positions');
SELECT throws_ok(pg_temp.opt('dept', '{"prompt_length": 201}'), '22023', NULL, 'prompt_length 201');
SELECT throws_ok(pg_temp.opt('dept', '{"max_length": 129}'), '22023', NULL, 'max_length beyond 128 tokens');
SELECT throws_ok(pg_temp.opt('dept', '{"max_length": 0}'), '22023', NULL, 'max_length 0');
SELECT throws_ok(pg_temp.opt('probe', '{"epochs": 0}'), '22023', NULL, 'epochs 0');
SELECT throws_ok(pg_temp.opt('probe', '{"epochs": -3}'), '22023', NULL, 'negative epochs');
SELECT throws_ok(pg_temp.opt('probe', '{"epochs": 1.5}'), '22023', NULL, 'fractional epochs');
SELECT throws_ok(pg_temp.opt('probe', '{"epochs": "3"}'), '22023', NULL, 'epochs as a string');
SELECT throws_ok(pg_temp.opt('probe', '{"epochs": null}'), '22023', NULL, 'epochs null');
SELECT throws_ok(pg_temp.opt('probe', '{"epochs": true}'), '22023', NULL, 'epochs boolean');
SELECT throws_ok(pg_temp.opt('probe', '{"epochs": [1]}'), '22023', NULL, 'epochs array');
SELECT throws_ok(pg_temp.opt('probe', '{"epochs": {"n": 1}}'), '22023', NULL, 'epochs object');
SELECT throws_ok(pg_temp.opt('probe', '{"seed": -1}'), '22023', NULL, 'negative seed');
SELECT throws_ok(pg_temp.opt('probe', '{"seed": 1e20}'), '22023', NULL, 'seed beyond 2^53');
SELECT throws_ok(pg_temp.opt('probe', '{"valid_fraction": 0.9}'), '22023', NULL, 'valid_fraction 0.9');
SELECT throws_ok(pg_temp.opt('probe', '{"model": "gpt-4"}'), '42704', NULL, 'a model that is not registered');
SELECT throws_ok(pg_temp.opt('probe', format('{"model": "%s"}', repeat('m', 65))), '22023', NULL,
				 'a model name of 65 bytes');
SELECT throws_ok(pg_temp.opt('probe', '{"model": ""}'), '22023', NULL, 'an empty model name');
SELECT throws_ok(pg_temp.opt('pt', format('{"init_text": "%s"}', repeat('x', 1001))), '22023', NULL,
				 'init_text of 1,001 bytes');
SELECT throws_ok(pg_temp.opt('dept', '{"precision": "float16"}'), '22023', NULL, 'precision float16');
SELECT throws_ok(pg_temp.opt('dept', '{"precision": 16}'), '22023', NULL, 'precision as a number');
SELECT throws_ok(pg_temp.opt('probe', '{"": 1}'), '22023', NULL, 'an empty option name');
SELECT throws_ok(pg_temp.opt('probe', '[]'), '22023', NULL, 'options ''[]''');
SELECT throws_ok(pg_temp.opt('probe', '1'), '22023', NULL, 'options ''1''');
SELECT throws_ok(pg_temp.opt('probe', '"epochs"'), '22023', NULL, 'options as a string');
SELECT throws_ok(pg_temp.opt('probe', 'null'), '22023', NULL, 'options as JSON null');
SELECT throws_ok(pg_temp.opt('probe', '[{"epochs": 1}]'), '22023', NULL, 'options wrapped in an array');
SELECT throws_ok(pg_temp.opt('pt', '{"prompt_length": 0}'), '22023', NULL, 'prompt tuning without a prompt');
SELECT throws_ok(pg_temp.opt('PROBE', '{}'), '22023', NULL, 'a method name in capitals');
SELECT throws_ok(pg_temp.opt('probe', '{"batch_size": 1e400}'), '22023', NULL, 'batch size 1e400');
SELECT throws_ok(pg_temp.opt('probe', '{"head_lr": 1e-400}'), '22023', NULL, 'learning rate 1e-400');
SELECT is((SELECT count(*) FROM dept.jobs WHERE adapter = 'hostile_opt'), 0::bigint,
		  'none of those bad options started a job');

-- In-range options whose combination the backend does not check: they must
-- train or be refused before a job starts, not fail inside the worker.
-- (the rank budget 1000 implies, (1000 - 60) * 256 / (8 + 256) = 911, is capped at min(s, d))
SELECT matches(pg_temp.train_outcome($$SELECT dept_train('hostile_small', 'label', adapter => 'hostile_budget',
										   method => 'dept', options => '{"budget": 1000, "max_length": 8, "max_steps": 1, "batch_size": 4}',
										   wait => false)$$),
			   '^(rejected 22023|trained)$', 'budget 1000 (in range, rank derived above d) trains or is refused up front');
SELECT is(pg_temp.train_outcome($$SELECT dept_train('hostile_small', 'label', adapter => 'hostile_ept',
									  method => 'ept', options => '{"subspaces": 64, "subspace_rank": 256, "max_steps": 1}',
									  wait => false)$$),
		  'rejected 22023', 'EPT with 64 subspaces of rank 256 within the default budget is refused up front');

-- ---------------------------------------------------------------------------
-- NULL arguments and adapter names
-- ---------------------------------------------------------------------------
SELECT throws_ok($$SELECT dept_train(NULL, 'label')$$, '22004', NULL, 'NULL relation');
SELECT throws_ok($$SELECT dept_train('hostile_small', NULL)$$, '22004', NULL, 'NULL label column');
SELECT throws_ok($$SELECT dept_train('hostile_small', 'label', method => '')$$, '22023', NULL,
				 'an empty method (NULL is the default: auto)');
SELECT throws_ok($$SELECT dept_train('hostile_small', 'label', options => NULL)$$, '22004', NULL, 'NULL options');
SELECT throws_ok($$SELECT dept_train('hostile_small', 'label', wait => NULL)$$, '22004', NULL, 'NULL wait');
SELECT throws_ok($$SELECT dept_train('hostile_small', 'label', activate => NULL)$$, '22004', NULL, 'NULL activate');
SELECT throws_ok($$SELECT dept_train('hostile_small', 'label', activate => 'sometimes')$$, '22023', NULL,
				 'an unknown activate mode');
SELECT throws_ok($$SELECT dept_train('hostile_small', '')$$, '42703', NULL, 'an empty label column name');
SELECT throws_ok($$SELECT dept_train('hostile_small', 'label', 'label')$$, '22023', NULL,
				 'the same column as text and label');
SELECT results_eq($$VALUES (dept_predict(NULL, 'x'), dept_predict('hostile_bigtext', NULL::text),
							dept_predict_proba(NULL, 'x')::text, dept_wait(NULL)::text,
							dept_predict('hostile_bigtext', NULL::text[])::text)$$,
				  $$VALUES (NULL::text, NULL::text, NULL::text, NULL::text, NULL::text)$$,
				  'the STRICT functions return NULL for NULL arguments');
SELECT is(dept_evaluate('hostile_bigtext', NULL, 'label', 'body'), NULL, 'dept_evaluate with a NULL relation is NULL');
SELECT is(dept_import(NULL, '\x00'), NULL, 'dept_import with a NULL name is NULL');

SELECT throws_ok($$SELECT dept_train('hostile_small', 'label', adapter => '')$$, '42602', NULL,
				 'an empty adapter name is refused');
SELECT throws_ok($$SELECT dept_train('hostile_small', 'label', adapter => repeat('a', 1000))$$, '42602', NULL,
				 'a 1,000-byte adapter name is refused');
SELECT throws_ok($$SELECT dept_train('hostile_small', 'label', adapter => 'hostile_' || repeat('é', 124))$$,
				 '42602', NULL, 'a 256-byte name (124 two-byte letters) is refused: the limit is in bytes');
SELECT is(dept_train('hostile_small', 'label', adapter => 'hostile_' || repeat('é', 123), method => 'probe',
					 options => '{"epochs": 1}'),
		  'hostile_' || repeat('é', 123), 'a 254-byte multibyte name is accepted');
SELECT throws_ok($$SELECT dept_predict('', 'x')$$, '42704', NULL, 'dept_predict with an empty name');
SELECT throws_ok($$SELECT dept_predict(repeat('a', 1000), 'x')$$, '42704', NULL,
				 'dept_predict with a 1,000-byte name');
SELECT throws_ok($$SELECT dept_predict_proba(repeat('a', 1000), ARRAY['x'])$$, '42704', NULL,
				 'dept_predict_proba (batch) with a 1,000-byte name');
SELECT throws_ok($$SELECT dept_export('')$$, '42704', NULL, 'dept_export with an empty name');
SELECT throws_ok($$SELECT dept_activate(repeat('a', 1000), 1)$$, '42704', NULL, 'dept_activate with a 1,000-byte name');
SELECT throws_ok($$SELECT dept_import('', dept_export('hostile_bigtext'))$$, '42602', NULL,
				 'dept_import with an empty name');
SELECT throws_ok($$SELECT dept_import(repeat('a', 1000), dept_export('hostile_bigtext'))$$, '42602', NULL,
				 'dept_import with a 1,000-byte name');
SELECT throws_ok($$SELECT dept_import('hostile_imp', '')$$, 'XX001', NULL, 'dept_import of zero bytes');
SELECT throws_ok($$SELECT dept_wait(-1)$$, '42704', NULL, 'dept_wait on a job that does not exist');
SELECT throws_ok($$SELECT dept_cancel(-1)$$, '42704', NULL, 'dept_cancel on a job that does not exist');

-- ---------------------------------------------------------------------------
-- An adapter corrupted in place: XX001, and the backend keeps working
-- ---------------------------------------------------------------------------
SELECT is(dept_train('hostile_small', 'label', adapter => 'hostile_corrupt', method => 'probe',
					 options => '{"epochs": 1}'), 'hostile_corrupt', 'an adapter to corrupt');
SELECT dept_predict('hostile_corrupt', 'a dull film') AS before_corruption \gset
CREATE TEMP TABLE hostile_saved AS SELECT tensors FROM dept.adapters WHERE name = 'hostile_corrupt';
SELECT is(pg_temp.reseal(tensors), tensors, 'the test''s CRC-32 agrees with the stored adapter')
	FROM hostile_saved;

UPDATE dept.adapters SET tensors = overlay(tensors PLACING '\xdeadbeefdeadbeef'::bytea FROM 300)
	WHERE name = 'hostile_corrupt';
SELECT throws_ok($$SELECT dept_predict('hostile_corrupt', 'a dull film')$$, 'XX001', NULL,
				 'overwritten tensor bytes: dept_predict is data_corrupted (the cached copy is not used)');
SELECT throws_ok($$SELECT dept_predict_proba('hostile_corrupt', 'a dull film')$$, 'XX001', NULL,
				 'dept_predict_proba too');
SELECT throws_ok($$SELECT dept_predict('hostile_corrupt', ARRAY['a', 'b'])$$, 'XX001', NULL,
				 'the batch form too');
SELECT throws_ok($$SELECT dept_evaluate('hostile_corrupt', 'hostile_small', 'label', 'body')$$, 'XX001', NULL,
				 'dept_evaluate too');
SELECT throws_ok($$SELECT dept_import('hostile_reimported', dept_export('hostile_corrupt'))$$, 'XX001', NULL,
				 'its export does not import');
SELECT ok(dept_predict('hostile_bigtext', 'a dull film') IN ('negative', 'positive'),
		  'the same backend still predicts with another adapter');

UPDATE dept.adapters SET tensors = substring(tensors FROM 1 FOR 150) WHERE name = 'hostile_corrupt';
SELECT throws_ok($$SELECT dept_predict('hostile_corrupt', 'x')$$, 'XX001', NULL, 'a truncated adapter');
UPDATE dept.adapters SET tensors = '' WHERE name = 'hostile_corrupt';
SELECT throws_ok($$SELECT dept_predict('hostile_corrupt', 'x')$$, 'XX001', NULL, 'an empty adapter');
UPDATE dept.adapters SET tensors = (SELECT tensors FROM hostile_saved) || '\x00'::bytea
	WHERE name = 'hostile_corrupt';
SELECT throws_ok($$SELECT dept_predict('hostile_corrupt', 'x')$$, 'XX001', NULL, 'an adapter with a trailing byte');

-- Corruptions with a valid CRC: only the reader's structural checks catch them.
UPDATE dept.adapters SET tensors = pg_temp.reseal(overlay(s.tensors PLACING '\x0000c07f'::bytea
															  FROM length(s.tensors) - 7))
	FROM hostile_saved s WHERE name = 'hostile_corrupt';
SELECT throws_ok($$SELECT dept_predict('hostile_corrupt', 'x')$$, 'XX001', NULL,
				 'a NaN weight under a valid CRC');
UPDATE dept.adapters SET tensors = pg_temp.reseal(overlay(s.tensors PLACING '\x03000000'::bytea FROM 25))
	FROM hostile_saved s WHERE name = 'hostile_corrupt';
SELECT throws_ok($$SELECT dept_predict('hostile_corrupt', 'x')$$, 'XX001', NULL,
				 'a class count that disagrees with the names, under a valid CRC');
UPDATE dept.adapters SET tensors = pg_temp.reseal(overlay(s.tensors PLACING '\xffffffff'::bytea FROM 17))
	FROM hostile_saved s WHERE name = 'hostile_corrupt';
SELECT throws_ok($$SELECT dept_predict('hostile_corrupt', 'x')$$, 'XX001', NULL,
				 'an embedding width of 2^32 - 1, under a valid CRC');
UPDATE dept.adapters SET tensors = pg_temp.reseal(set_byte(s.tensors, 64, get_byte(s.tensors, 64) # 255))
	FROM hostile_saved s WHERE name = 'hostile_corrupt';
SELECT throws_ok($$SELECT dept_predict('hostile_corrupt', 'x')$$, '22023', NULL,
				 'another backbone''s fingerprint, under a valid CRC, is refused as such');

UPDATE dept.adapters SET tensors = s.tensors FROM hostile_saved s WHERE name = 'hostile_corrupt';
SELECT is(dept_predict('hostile_corrupt', 'a dull film'), :'before_corruption',
		  'restored bytes predict as before');

-- ---------------------------------------------------------------------------
-- The server is still up
-- ---------------------------------------------------------------------------
SELECT is(pg_backend_pid(), :backend_pid, 'this backend survived everything');
SELECT is(pg_postmaster_start_time(), :'pm_start'::timestamptz, 'the server did not restart');
SELECT is((SELECT count(*) FROM dept.jobs WHERE adapter LIKE 'hostile\_%' AND status IN ('queued', 'running')),
		  0::bigint, 'no job is left running');
SELECT results_eq('SELECT x FROM hostile_victim', 'VALUES (42)', 'the victim table is intact at the end');

SELECT * FROM finish();
ROLLBACK;

DELETE FROM dept.adapters WHERE name LIKE 'hostile\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'hostile\_%';
DROP SCHEMA "hostile s""; DROP TABLE hostile_victim; --" CASCADE;
DROP TABLE hostile_all, hostile_small, hostile_victim, "hostile_x""; DROP TABLE hostile_victim; --",
	hostile_part, hostile_empty, hostile_one, hostile_many, hostile_too_many, hostile_typed,
	hostile_null_text, hostile_empty_label, hostile_long_label, hostile_bigtext;
DROP TYPE hostile_mood;
