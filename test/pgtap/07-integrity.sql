-- Integrity of what is stored and reported (issue 12, sections 2 and 4):
-- one owner per adapter name even when two roles race for it; adapters of a
-- dropped role are listed and reclaimable; dept_evaluate counts labels the
-- adapter never saw as errors; quantities are refused as labels; a version
-- without validation rows neither claims validation metrics nor displaces
-- an active version; dept.adapters.job_id names the job.
\set ON_ERROR_STOP 1
\set QUIET 1
\getenv fixtures DEPT_FIXTURE_DIR
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS dept;
CREATE EXTENSION IF NOT EXISTS dblink;
\ir helpers.psql
DROP TABLE IF EXISTS int_reviews, int_three, int_empty, int_floats, int_many, int_small;
\set train_data `cat :fixtures/sst2_train_600.tsv`
CREATE TABLE int_reviews (label text, body text);
INSERT INTO int_reviews SELECT * FROM pg_temp.tsv_rows(:'train_data');
-- one row with a known label, two with labels no adapter has seen
CREATE TABLE int_three (label text, body text);
INSERT INTO int_three VALUES ('positive', 'a wonderful, moving, beautifully acted film'),
	('neutral', 'a film'), ('mixed', 'a long film');
CREATE TABLE int_empty (label text, body text);
CREATE TABLE int_floats AS SELECT (row_number() OVER () % 199)::float8 / 3 AS label, body FROM int_reviews;
CREATE TABLE int_many AS SELECT (row_number() OVER () % 60)::int AS label, body FROM int_reviews;
CREATE TABLE int_small AS SELECT (row_number() OVER () % 2)::int AS label, body FROM int_reviews;
DELETE FROM dept.adapters WHERE name LIKE 'int\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'int\_%';
DO $$
DECLARE r text;
BEGIN
	FOR r IN SELECT rolname FROM pg_roles WHERE rolname IN ('int_alice', 'int_bob', 'int_gone') LOOP
		EXECUTE format('DROP OWNED BY %I; DROP ROLE %I', r, r);
	END LOOP;
END $$;
CREATE ROLE int_alice LOGIN;
CREATE ROLE int_bob LOGIN;
CREATE ROLE int_gone LOGIN;
GRANT SELECT ON int_reviews TO int_alice, int_bob, int_gone;
GRANT EXECUTE ON FUNCTION dept_train(regclass, text, text, text, text, jsonb, boolean, text),
	dept_import(text, bytea, boolean) TO int_alice, int_bob, int_gone;

-- The source of an adapter to import, and a version without validation rows.
SELECT dept_train('int_reviews', 'label', adapter => 'int_src', method => 'probe',
				  options => '{"epochs": 5, "seed": 1}') IS NOT NULL AS trained \gset
SELECT dept_train('int_reviews', 'label', adapter => 'int_noval', method => 'probe',
				  options => '{"epochs": 5, "seed": 1}') IS NOT NULL AS trained \gset
SELECT dept_train('int_reviews', 'label', adapter => 'int_noval', method => 'probe',
				  options => '{"epochs": 5, "seed": 2, "valid_fraction": 0}') IS NOT NULL AS trained \gset
SELECT dept_train('int_reviews', 'label', adapter => 'int_noval_first', method => 'probe',
				  options => '{"epochs": 5, "valid_fraction": 0}') IS NOT NULL AS trained \gset
SELECT dept_export('int_src') AS src_bytes \gset

-- The race: alice starts training a new name; while she trains, bob stores
-- a version under it; alice's job must fail when it stores, not split the
-- versions between two owners.
SET ROLE int_alice;
SELECT dept_train('int_reviews', 'label', adapter => 'int_race', method => 'dept',
				  options => '{"epochs": 2, "prompt_length": 4, "max_length": 32}',
				  wait => false) AS race_job \gset
RESET ROLE;
SELECT format('dbname=%s user=int_bob host=%s port=%s', current_database(),
			  current_setting('unix_socket_directories'), current_setting('port')) AS bob_session \gset
SELECT * FROM dblink(:'bob_session', format('SELECT dept_import(%L, %L::bytea)::text', 'int_race', :'src_bytes'))
	AS t(version text) \gset
SELECT dept_wait(:race_job) AS race_status \gset

-- A role that owns an adapter is dropped without cleaning up first.
SET ROLE int_gone;
SELECT dept_import('int_orphan', :'src_bytes') AS v \gset
RESET ROLE;
SELECT 'int_gone'::regrole::oid AS gone_oid \gset
REVOKE ALL ON int_reviews FROM int_gone;
REVOKE ALL ON FUNCTION dept_train(regclass, text, text, text, text, jsonb, boolean, text),
	dept_import(text, bytea, boolean) FROM int_gone;
DROP ROLE int_gone;

BEGIN;
SELECT plan(24);

-- 4. Metrics that tell the truth
SELECT results_eq($$SELECT (e ->> 'rows')::int, (e ->> 'unknown_label')::int,
						   (e ->> 'accuracy')::float8 <= 1.0 / 3
					FROM dept_evaluate('int_src', 'int_three', 'label', 'body') e$$,
				  $$VALUES (3, 2, true)$$,
				  'dept_evaluate counts rows with unseen labels as errors and reports their number');
SELECT is(dept_evaluate('int_src', 'int_empty', 'label', 'body') -> 'accuracy', 'null'::jsonb,
		  'no rows give accuracy null, not 0');
SELECT dept_train('int_floats', 'label', method => 'probe', options => '{"epochs": 1}') AS floats \gset
SELECT is((SELECT hyperparameters ->> 'task' FROM dept.adapters WHERE name = :'floats' AND active),
		  'regression', 'a double precision label column trains a regression, not classes');
SELECT throws_ok($$SELECT dept_train('int_many', 'label', method => 'probe')$$, '22023', NULL,
				 'an integer label column with 60 distinct values is refused');
SELECT is(dept_train('int_small', 'label', adapter => 'int_small', method => 'probe',
					 options => '{"epochs": 2}'), 'int_small',
		  'an integer label column with two values trains');
SELECT is((SELECT metrics ? 'valid_accuracy' FROM dept.adapters WHERE name = 'int_noval' AND version = 2),
		  false, 'a version trained without validation rows stores no validation metrics');
SELECT results_eq($$SELECT version, active FROM dept.adapters WHERE name = 'int_noval' ORDER BY version$$,
				  $$VALUES (1, true), (2, false)$$,
				  'if_better keeps the active version over one without validation rows');
SELECT results_eq($$SELECT version, active FROM dept.adapters WHERE name = 'int_noval_first'$$,
				  $$VALUES (1, true)$$,
				  'with no active version, a version without validation rows is activated');
SELECT is((SELECT valid_accuracy FROM dept.jobs WHERE adapter = 'int_noval_first'), NULL,
		  'its job records no validation accuracy');
SELECT is((SELECT count(*) FROM dept.adapters a JOIN dept.jobs j ON j.id = a.job_id AND j.adapter = a.name
		   WHERE a.name LIKE 'int\_%'), 6::bigint,
		  'every trained version names its job in dept.adapters.job_id');
SELECT is((SELECT job_id FROM dept.adapters WHERE name = 'int_orphan'), NULL,
		  'an imported version has no job');

-- 2. One owner per adapter name
SELECT is(:'race_status'::text, 'failed', 'the job that lost the race for a new name fails');
SELECT matches((SELECT error FROM dept.jobs WHERE id = :race_job), 'belongs to role "int_bob"',
			   'its error names the owner that stored first');
SELECT results_eq($$SELECT owner::text, count(*) FROM dept.adapters WHERE name = 'int_race' GROUP BY 1$$,
				  $$VALUES ('int_bob', 1::bigint)$$,
				  'every version of the name has one owner');

-- 2. Roles dropped with adapters
SELECT results_eq($$SELECT adapter, versions, owner_oid FROM dept_orphaned_adapters()$$,
				  format($$VALUES ('int_orphan', 1::bigint, %s::oid)$$, :gone_oid),
				  'dept_orphaned_adapters lists the adapter of the dropped role');
SET LOCAL ROLE int_bob;
SELECT throws_matching($$SELECT dept_import('int_orphan', '\x00'::bytea)$$, 'not a valid dept adapter',
					   'a corrupt import fails before any ownership question');
SELECT throws_matching(format($$SELECT dept_import('int_orphan', %L::bytea)$$, :'src_bytes'),
					   'belongs to a dropped role',
					   'the orphan''s name is not taken over, and the error says why');
SELECT is((SELECT count(*) FROM dept_orphaned_adapters()), 0::bigint,
		  'ordinary roles do not see orphans');
SELECT throws_ok(format($$SELECT dept_reassign_owned(%s::oid::regrole, 'int_bob')$$, :gone_oid), '42501', NULL,
				 'an ordinary role cannot reclaim an orphan');
RESET ROLE;
SELECT is(dept_reassign_owned(:gone_oid::oid::regrole, 'int_bob'), 1::bigint,
		  'a superuser reassigns the orphan to another role');
SELECT is((SELECT owner::text FROM dept.adapters WHERE name = 'int_orphan'), 'int_bob',
		  'which now owns it');
SET LOCAL ROLE int_bob;
SELECT ok(dept_predict('int_orphan', 'a fine film') IN ('negative', 'positive'),
		  'and predicts with it');
RESET ROLE;
SELECT is(dept_drop_owned('int_bob'), 2::bigint, 'dept_drop_owned deletes the role''s adapter versions');
SET LOCAL ROLE int_alice;
SELECT is(dept_import('int_orphan', :'src_bytes'), 1,
		  'after reclaiming, the name can be reused by another role');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;

DELETE FROM dept.adapters WHERE name LIKE 'int\_%';
DELETE FROM dept.jobs WHERE adapter LIKE 'int\_%';
REVOKE ALL ON FUNCTION dept_train(regclass, text, text, text, text, jsonb, boolean, text),
	dept_import(text, bytea, boolean) FROM int_alice, int_bob;
REVOKE ALL ON int_reviews FROM int_alice, int_bob;
DROP ROLE int_alice, int_bob;
DROP TABLE int_reviews, int_three, int_empty, int_floats, int_many, int_small;
