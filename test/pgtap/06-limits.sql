-- The training memory limit: dept.max_training_memory against the estimate
-- of a run's peak (activations for batch x (prompt + max_length), batch
-- buffers, adapter and AdamW state, rows, model files), checked by
-- dept_train before the worker starts and by the worker while it reads.
-- Training reads committed tables, so the data is set up outside the test
-- transaction and dropped at the end.
\set ON_ERROR_STOP 1
\set QUIET 1
\getenv fixtures DEPT_FIXTURE_DIR
\getenv t5_dir DEPT_T5_DIR
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS dept;
LOAD 'dept';  -- defines the dept.* settings in this session
\ir helpers.psql
DROP TABLE IF EXISTS tap_lim_reviews, tap_lim_big;
CREATE TABLE tap_lim_reviews (label text, body text);
\set train_data `cat :fixtures/sst2_train_600.tsv`
INSERT INTO tap_lim_reviews SELECT * FROM pg_temp.tsv_rows(:'train_data');
-- 120 texts of 1 MB each (they compress to almost nothing on disk)
CREATE TABLE tap_lim_big AS
	SELECT CASE WHEN i % 2 = 0 THEN 'even' ELSE 'odd' END AS label, repeat('word ', 200000) AS body
	FROM generate_series(1, 120) i;
DELETE FROM dept.adapters WHERE name LIKE 'tap\_lim%';
DELETE FROM dept.jobs WHERE adapter LIKE 'tap\_lim%';
DROP ROLE IF EXISTS tap_lim_user;
CREATE ROLE tap_lim_user LOGIN;

-- The SQLSTATE, message, detail and hint of the error a statement raises ('' if none).
CREATE FUNCTION pg_temp.error_of(query text) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
	st text;
	msg text;
	detail text;
	hint text;
BEGIN
	EXECUTE query;
	RETURN ARRAY['', '', '', ''];
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
		hint = PG_EXCEPTION_HINT;
	RETURN ARRAY[st, msg, detail, hint];
END $$;

BEGIN;
SELECT plan(18);

SELECT is(current_setting('dept.max_training_memory'), '2GB', 'the default limit is 2 GB');

-- The run the hostile tests found peaking at 3.0 GB is refused before a worker starts.
CREATE TEMP TABLE jobs_before AS SELECT count(*) AS n FROM dept.jobs;
CREATE TEMP TABLE refused AS SELECT pg_temp.error_of($$
	SELECT dept_train('tap_lim_reviews', 'label', adapter => 'tap_lim_big_batch', method => 'pt',
					  options => '{"batch_size": 256, "prompt_length": 128, "max_length": 128}')$$) AS e;
SELECT is((SELECT e[1] FROM refused), '54000', 'batch 256 x (128 + 128) positions: program_limit_exceeded');
SELECT matches((SELECT e[2] FROM refused),
			   '^training would need about 3\.[0-9] GB of memory, more than dept\.max_training_memory \(2\.0 GB\)$',
			   'the message gives the estimate (about 3 GB) and the limit');
SELECT matches((SELECT e[3] FROM refused),
			   'batch_size 256 x \(128 prompt rows \+ max_length 128\) positions.*the limit is 2\.0 GB\.$',
			   'the detail breaks the estimate down and repeats the limit');
SELECT matches((SELECT e[4] FROM refused), 'batch_size.*max_length.*prompt_length.*dept\.max_training_memory',
			   'the hint names the options to lower and the setting');
SELECT is((SELECT count(*) FROM dept.jobs), (SELECT n FROM jobs_before),
		  'the refused run never became a job');

-- A small run still trains at the default limit.
SELECT is(dept_train('tap_lim_reviews', 'label', adapter => 'tap_lim_small', method => 'dept',
					 options => '{"prompt_length": 8, "max_length": 32, "batch_size": 16, "max_steps": 2}'),
		  'tap_lim_small', 'a small DePT run trains at the default limit');
SELECT is(dept_predict('tap_lim_small', 'a wonderful film') IN ('negative', 'positive'), true,
		  'and predicts');

-- The defaults (about 0.35 GB on use-lite) are refused below their estimate, and pass above it.
SET dept.max_training_memory = '256MB';
SELECT is((pg_temp.error_of($$SELECT dept_train('tap_lim_reviews', 'label', adapter => 'tap_lim_defaults')$$))[1],
		  '54000', 'the default DePT run does not fit in 256 MB');
SET dept.max_training_memory = '512MB';
SELECT is(dept_train('tap_lim_reviews', 'label', adapter => 'tap_lim_defaults', options => '{"max_steps": 1}'),
		  'tap_lim_defaults', 'it fits in 512 MB');

-- Texts count too: 120 MB of text cannot be read under a 128 MB limit; the worker stops reading.
SET dept.max_training_memory = '128MB';
CREATE TEMP TABLE refused_rows AS SELECT pg_temp.error_of($$
	SELECT dept_train('tap_lim_big', 'label', adapter => 'tap_lim_texts', method => 'probe',
					  options => '{"batch_size": 1, "max_length": 8, "max_steps": 1}')$$) AS e;
SELECT is((SELECT e[1] FROM refused_rows), '54000', 'the worker refuses rows beyond the limit');
SELECT results_eq($$SELECT status, error ~ 'more than dept\.max_training_memory \(128\.0 MB\)'
					FROM dept.jobs WHERE adapter = 'tap_lim_texts'$$,
				  $$VALUES ('failed', true)$$, 'the job is failed with the reason recorded');
SELECT is((SELECT count(*) FROM dept.adapters WHERE name = 'tap_lim_texts'), 0::bigint,
		  'and nothing was stored');
RESET dept.max_training_memory;

-- T5's text-to-text head: the decoder for the label strings is part of the estimate.
\if :{?t5_dir}
SELECT dept_register_model('tap_lim_t5', :'t5_dir') IS NOT NULL AS registered \gset
SET dept.max_training_memory = '1MB';
CREATE TEMP TABLE t5_refused AS
	SELECT h, pg_temp.error_of(format($$SELECT dept_train('tap_lim_reviews', 'label', adapter => 'tap_lim_t5_%s',
		options => '{"model": "tap_lim_t5", "head": "%s"}')$$, h, h)) AS e
	FROM unnest(ARRAY['text', 'linear']) h;
SELECT is((SELECT array_agg(e[1] ORDER BY h) FROM t5_refused), ARRAY['54000', '54000'],
		  'T5 runs over the limit are refused with either head');
SELECT cmp_ok((SELECT pg_size_bytes(substring(e[3] from ': ([0-9.]+ [kMG]B) of model activations')) FROM t5_refused WHERE h = 'text'),
			  '>', (SELECT pg_size_bytes(substring(e[3] from ': ([0-9.]+ [kMG]B) of model activations')) FROM t5_refused WHERE h = 'linear'),
			  'the text head''s activations include its decoder');
RESET dept.max_training_memory;
\else
SELECT skip('DEPT_T5_DIR is not set: no T5 model to estimate', 2);
\endif

-- Only a superuser changes the budget; -1 lifts it.
SET ROLE tap_lim_user;
SELECT throws_ok($$SET dept.max_training_memory = '100GB'$$, '42501', NULL,
				 'an ordinary role cannot raise the limit');
RESET ROLE;
SET dept.max_training_memory = -1;
SELECT is(current_setting('dept.max_training_memory'), '-1', 'a superuser can lift it');
RESET dept.max_training_memory;
SELECT is(dept_predict('tap_lim_small', 'still serving') IN ('negative', 'positive'), true,
		  'the backend is still usable');

SELECT * FROM finish();
ROLLBACK;

DELETE FROM dept.adapters WHERE name LIKE 'tap\_lim%';
DELETE FROM dept.jobs WHERE adapter LIKE 'tap\_lim%';
DELETE FROM dept.models WHERE name = 'tap_lim_t5';
DROP TABLE tap_lim_reviews, tap_lim_big;
DROP ROLE tap_lim_user;
