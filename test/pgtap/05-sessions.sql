-- Inference across sessions and workers: a version activated in another
-- session is used from this session's next statement; dept_predict runs in
-- parallel workers; a caller cancelled while waiting cancels its job;
-- membership in the owner's role grants use of its adapters.
\set ON_ERROR_STOP 1
\set QUIET 1
\getenv fixtures DEPT_FIXTURE_DIR
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS dept;
\ir helpers.psql
CREATE EXTENSION IF NOT EXISTS dblink;
DROP TABLE IF EXISTS ses_reviews, ses_flipped, ses_many;
\set train_data `cat :fixtures/sst2_train_600.tsv`
CREATE TABLE ses_reviews (label text, body text);
INSERT INTO ses_reviews SELECT * FROM pg_temp.tsv_rows(:'train_data');
-- the same texts with the labels swapped: an adapter that predicts the opposite
CREATE TABLE ses_flipped AS
SELECT CASE label WHEN 'positive' THEN 'negative' ELSE 'positive' END AS label, body FROM ses_reviews;
CREATE TABLE ses_many AS SELECT i, 'review number ' || i || ': ' || body AS body
FROM ses_reviews, generate_series(1, 1) i;
ANALYZE ses_many;
DELETE FROM dept.adapters WHERE name LIKE 'ses\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'ses\_%';
DROP ROLE IF EXISTS ses_owner, ses_member, ses_stranger;
CREATE ROLE ses_owner LOGIN;
CREATE ROLE ses_member LOGIN IN ROLE ses_owner;
CREATE ROLE ses_stranger LOGIN;
GRANT SELECT ON ses_reviews, ses_flipped TO ses_owner;
GRANT EXECUTE ON FUNCTION dept_train(regclass, text, text, text, text, jsonb, boolean, text) TO ses_owner;
GRANT EXECUTE ON FUNCTION dept_activate(text, integer) TO ses_owner;
-- version 1 learns the labels, version 2 the swapped labels
SET ROLE ses_owner;
SELECT dept_train('ses_reviews', 'label', adapter => 'ses_model', method => 'probe',
				  options => '{"epochs": 20, "head_lr": 0.01}') IS NOT NULL AS trained \gset
SELECT dept_train('ses_flipped', 'label', adapter => 'ses_model', method => 'probe',
				  options => '{"epochs": 20, "head_lr": 0.01}', activate => 'never') IS NOT NULL AS trained \gset
RESET ROLE;
SELECT format('dbname=%s user=ses_owner host=%s port=%s', current_database(),
			  current_setting('unix_socket_directories'), current_setting('port')) AS other_session \gset

BEGIN;
SELECT plan(11);

SELECT is(dept_predict('ses_model', 'a wonderful, moving, beautifully acted film'), 'positive',
		  'version 1 is active and cached in this session');
SELECT is((SELECT count(*) FROM dblink(:'other_session', $$SELECT dept_activate('ses_model', 2)::text$$) AS t(x text)),
		  1::bigint,
		  'another session activates version 2 and commits');
SELECT is(dept_predict('ses_model', 'a wonderful, moving, beautifully acted film'), 'negative',
		  'this session uses version 2 from its next statement on');
SELECT is((SELECT count(*) FROM dblink(:'other_session', $$SELECT dept_activate('ses_model', 1)::text$$) AS t(x text)),
		  1::bigint,
		  'and back to version 1');
SELECT is(dept_predict('ses_model', 'a wonderful, moving, beautifully acted film'), 'positive',
		  'the rollback is seen too');

-- Parallel query: workers load the backbone and adapter themselves.
CREATE TEMP TABLE serial_labels AS SELECT i, body, dept_predict('ses_model', body) AS label FROM ses_many;
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
SET LOCAL max_parallel_workers_per_gather = 2;
SELECT matches(pg_temp.explain_analyze($$SELECT dept_predict('ses_model', body) FROM ses_many$$),
			   'Workers Launched: [12]', 'parallel workers run dept_predict');
SELECT is((SELECT count(*) FROM ses_many m JOIN serial_labels s USING (i, body)
		   WHERE dept_predict('ses_model', m.body) = s.label), 600::bigint,
		  'parallel workers give the same labels as a serial scan');
RESET max_parallel_workers_per_gather;

-- Membership in the owner's role grants use; other roles see nothing.
SET LOCAL ROLE ses_member;
SELECT ok(dept_predict('ses_model', 'fine') IN ('positive', 'negative'), 'a member of the owner role may use the adapter');
RESET ROLE;
SET LOCAL ROLE ses_stranger;
SELECT throws_ok($$SELECT dept_predict('ses_model', 'fine')$$, '42704', NULL, 'a stranger may not');
RESET ROLE;

-- A caller cancelled while waiting (here by statement_timeout) cancels its job.
CREATE FUNCTION pg_temp.train_until_cancelled() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	PERFORM dept_train('ses_reviews', 'label', adapter => 'ses_timeout', options => '{"epochs": 50}');
	RETURN 'finished';
EXCEPTION WHEN query_canceled THEN
	RETURN 'cancelled';
END $$;
SET LOCAL statement_timeout = '3s';
SELECT is(pg_temp.train_until_cancelled(), 'cancelled', 'a waiting dept_train gives up at statement_timeout');
SET LOCAL statement_timeout = 0;
SELECT is(dept_wait((SELECT max(id) FROM dept.jobs WHERE adapter = 'ses_timeout')), 'cancelled',
		  'and its job is cancelled, not left running');

SELECT * FROM finish();
ROLLBACK;

DELETE FROM dept.adapters WHERE name LIKE 'ses\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'ses\_%';
DROP TABLE ses_reviews, ses_flipped, ses_many;
DROP ROLE ses_member, ses_stranger;
REVOKE ALL ON FUNCTION dept_train(regclass, text, text, text, text, jsonb, boolean, text) FROM ses_owner;
REVOKE ALL ON FUNCTION dept_activate(text, integer) FROM ses_owner;
DROP ROLE ses_owner;
