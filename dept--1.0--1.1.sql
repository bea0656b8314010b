/* dept--1.0--1.1.sql: the one upgrade script of release 1.1 (docs/dba.md, "Upgrades"). */

\echo Use "ALTER EXTENSION dept UPDATE TO '1.1'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- search_path: every SQL-language or plpgsql function pins it, qualifies its
-- calls, and reaches the extension's own functions through its schema.
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION @extschema@.dept_schedule(adapter text, schedule text) RETURNS bigint
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	last dept.jobs;
	command text;
BEGIN
	IF pg_catalog.to_regnamespace('cron') IS NULL THEN
		RAISE EXCEPTION 'pg_cron is not installed'
			USING ERRCODE = 'undefined_object',
				  HINT = 'Add pg_cron to shared_preload_libraries and run CREATE EXTENSION pg_cron.';
	END IF;
	SELECT * INTO last FROM dept.jobs j
	 WHERE j.adapter OPERATOR(pg_catalog.=) dept_schedule.adapter
	   AND j.status OPERATOR(pg_catalog.=) 'succeeded'
	 ORDER BY j.id DESC LIMIT 1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'adapter "%" has no successful training job to repeat', adapter
			USING ERRCODE = 'undefined_object',
				  HINT = 'Train it once with dept_train first.';
	END IF;
	-- pg_cron runs the command as this role under its own search_path:
	-- the function is reached through the extension's schema and every
	-- argument has an explicit pg_catalog type, so nothing resolves there.
	command := pg_catalog.format(
		'SELECT %I.dept_train(%L::pg_catalog.regclass, %L::pg_catalog.text, %L::pg_catalog.text, '
		'%L::pg_catalog.text, %L::pg_catalog.text, %L::pg_catalog.jsonb, true, %L::pg_catalog.text)',
		'@extschema@', last.relation, last.label_column, last.text_column, last.adapter,
		last.method, last.options, last.activate);
	RETURN cron.schedule(pg_catalog.concat('dept:', adapter), schedule, command);
END $$;

CREATE OR REPLACE FUNCTION @extschema@.dept_unschedule(adapter text) RETURNS boolean
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF pg_catalog.to_regnamespace('cron') IS NULL THEN
		RAISE EXCEPTION 'pg_cron is not installed'
			USING ERRCODE = 'undefined_object',
				  HINT = 'Add pg_cron to shared_preload_libraries and run CREATE EXTENSION pg_cron.';
	END IF;
	RETURN cron.unschedule(pg_catalog.concat('dept:', adapter));
END $$;

-- Commands 1.0 stored with pg_cron call dept_train unqualified, which fails
-- when the extension is not on the scheduling role's path: qualify them.
DO $$
BEGIN
	IF pg_catalog.to_regclass('cron.job') IS NOT NULL THEN
		UPDATE cron.job
		   SET command = pg_catalog.concat('SELECT ', pg_catalog.quote_ident('@extschema@'),
										   '.dept_train(',
										   pg_catalog.substr(command, pg_catalog.length('SELECT dept_train(') + 1))
		 WHERE jobname OPERATOR(pg_catalog.~~) 'dept:%'
		   AND command OPERATOR(pg_catalog.~~) 'SELECT dept_train(%';
	END IF;
END $$;

-- ---------------------------------------------------------------------------
-- Roles and adapters (ownership.c)
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.dept_reassign_owned(old_role regrole, new_role regrole) RETURNS bigint
	AS 'MODULE_PATHNAME', 'dept_reassign_owned'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.dept_reassign_owned(regrole, regrole) IS
	'give every adapter (and job) of old_role to new_role, as REASSIGN OWNED; run it before DROP ROLE, or as a superuser with the dropped role''s OID';

CREATE FUNCTION @extschema@.dept_drop_owned(role regrole) RETURNS bigint
	AS 'MODULE_PATHNAME', 'dept_drop_owned'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.dept_drop_owned(regrole) IS
	'delete every adapter version (and finished job) of role, as DROP OWNED; returns the versions deleted';

CREATE FUNCTION @extschema@.dept_orphaned_adapters()
	RETURNS TABLE (adapter text, versions bigint, owner_oid oid)
	LANGUAGE sql STABLE PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp AS $$
	SELECT a.name, pg_catalog.count(*), a.owner::pg_catalog.oid
	  FROM dept.adapters a
	 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
					   WHERE r.oid OPERATOR(pg_catalog.=) a.owner::pg_catalog.oid)
	 GROUP BY a.name, a.owner::pg_catalog.oid
	 ORDER BY a.name USING OPERATOR(pg_catalog.<)
$$;
COMMENT ON FUNCTION @extschema@.dept_orphaned_adapters() IS
	'adapters whose owner role was dropped (visible to superusers); reclaim them with dept_reassign_owned or dept_drop_owned';

REVOKE ALL ON FUNCTION @extschema@.dept_reassign_owned(regrole, regrole) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.dept_drop_owned(regrole) FROM PUBLIC;

-- DROP EXTENSION dept deletes every adapter: say how many, or refuse
-- (dept.on_drop_extension).  Members of the extension, dropped with it.
CREATE FUNCTION @extschema@.dept_guard_drop_extension() RETURNS event_trigger
	AS 'MODULE_PATHNAME', 'dept_guard_drop_extension'
	LANGUAGE C;
CREATE EVENT TRIGGER dept_guard_drop_extension ON ddl_command_start
	WHEN TAG IN ('DROP EXTENSION')
	EXECUTE FUNCTION @extschema@.dept_guard_drop_extension();

-- ---------------------------------------------------------------------------
-- Bulk scoring as a job (score.c)
-- ---------------------------------------------------------------------------
ALTER TABLE dept.jobs ADD COLUMN kind text NOT NULL DEFAULT 'train'
	CHECK (kind IN ('train', 'score'));
COMMENT ON COLUMN dept.jobs.kind IS
	'train (dept_train) or score (dept_score: label_column holds the key column, step the rows scored)';

CREATE FUNCTION @extschema@.dept_score(adapter text, relation regclass, key_column text,
									   text_column text, output_table text DEFAULT NULL,
									   keep_current boolean DEFAULT false)
	RETURNS bigint
	AS 'MODULE_PATHNAME', 'dept_score'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION @extschema@.dept_score(text, regclass, text, text, text, boolean) IS
	'score every row of relation in a background job, upserting (key, label, probability, version) into output_table (default <relation>_<adapter>) a batch per transaction; resumes after the largest key already there; keep_current adds a trigger that queues inserted, changed and deleted keys, which every later run scores first; returns the job id';
REVOKE ALL ON FUNCTION @extschema@.dept_score(text, regclass, text, text, text, boolean) FROM PUBLIC;

-- The trigger of keep_current: queue the key of an inserted, changed or
-- deleted row (TG_ARGV: the queue table, quoted and qualified, and the key
-- column).  Runs as the writing role, which needs INSERT on the queue.
CREATE FUNCTION @extschema@.dept_score_enqueue() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF TG_OP OPERATOR(pg_catalog.<>) 'INSERT' THEN
		EXECUTE pg_catalog.format('INSERT INTO %s VALUES (($1).%I) ON CONFLICT DO NOTHING',
								  TG_ARGV[0], TG_ARGV[1]) USING OLD;
	END IF;
	IF TG_OP OPERATOR(pg_catalog.<>) 'DELETE' THEN
		EXECUTE pg_catalog.format('INSERT INTO %s VALUES (($1).%I) ON CONFLICT DO NOTHING',
								  TG_ARGV[0], TG_ARGV[1]) USING NEW;
	END IF;
	RETURN NULL;
END $$;

-- ---------------------------------------------------------------------------
-- Explanations (issue 15): token attributions of a prediction
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.dept_explain(adapter text, input text,
										 method text DEFAULT 'integrated_gradients',
										 label text DEFAULT NULL)
	RETURNS jsonb
	AS 'MODULE_PATHNAME', 'dept_explain'
	LANGUAGE C STABLE PARALLEL SAFE COST 1000000;
COMMENT ON FUNCTION @extschema@.dept_explain(text, text, text, text) IS
	'the tokens of input with their attribution to the log-probability of label (default: the predicted label): integrated gradients from zero embeddings (default, at most 64 path intervals; attribution_sum against log_probability - baseline_log_probability shows how complete) or gradient_x_input';

-- ---------------------------------------------------------------------------
-- Sentence pairs (issue 15): an adapter trained with
-- options => '{"text_columns": ["a", "b"]}' reads "a: <text> b: <text2>"
-- (the DePT code's format); these forms pass the two texts.
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.dept_predict(adapter text, input text, input2 text) RETURNS text
	AS 'MODULE_PATHNAME', 'dept_predict_pair'
	LANGUAGE C STRICT STABLE PARALLEL SAFE COST 10000;
COMMENT ON FUNCTION @extschema@.dept_predict(text, text, text) IS
	'the most probable label of a sentence pair under a pair adapter (trained with the option text_columns)';
CREATE FUNCTION @extschema@.dept_predict_proba(adapter text, input text, input2 text) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'dept_predict_proba_pair'
	LANGUAGE C STRICT STABLE PARALLEL SAFE COST 10000;
COMMENT ON FUNCTION @extschema@.dept_predict_proba(text, text, text) IS
	'label -> probability for a sentence pair';
CREATE FUNCTION @extschema@.dept_predict(adapter text, inputs text[], inputs2 text[]) RETURNS text[]
	AS 'MODULE_PATHNAME', 'dept_predict_pair_batch'
	LANGUAGE C STRICT STABLE PARALLEL SAFE COST 10000;
COMMENT ON FUNCTION @extschema@.dept_predict(text, text[], text[]) IS
	'labels of many sentence pairs (element i of each array) in one batched forward pass';
CREATE FUNCTION @extschema@.dept_predict_proba(adapter text, inputs text[], inputs2 text[]) RETURNS jsonb[]
	AS 'MODULE_PATHNAME', 'dept_predict_proba_pair_batch'
	LANGUAGE C STRICT STABLE PARALLEL SAFE COST 10000;
COMMENT ON FUNCTION @extschema@.dept_predict_proba(text, text[], text[]) IS
	'label -> probability for many sentence pairs';
CREATE FUNCTION @extschema@.dept_evaluate(adapter text, relation regclass, label_column text,
										  text_columns text[]) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'dept_evaluate_pair'
	LANGUAGE C STRICT STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION @extschema@.dept_evaluate(text, regclass, text, text[]) IS
	'metrics of a pair adapter over the rows of relation, the pair read from the two text_columns';

-- ---------------------------------------------------------------------------
-- Held-out test split and stored report (train_test.c; docs/user-guide.md,
-- "Test report"): dept_train's "test_fraction" option holds rows out of
-- training and validation by a hash of their content; the worker stores
-- their metrics in metrics -> 'test', which dept_report returns.
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.dept_is_test_row(text text, label text, test_fraction double precision)
	RETURNS boolean
	AS 'MODULE_PATHNAME', 'dept_is_test_row'
	LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.dept_is_test_row(text, text, double precision) IS
	'whether dept_train holds the row (text, label) out for the test report at this test_fraction: fmix64(FNV-1a-64(text, 0x00, label)) / 2^64 < test_fraction; false for an empty label';

CREATE FUNCTION @extschema@.dept_report(adapter text, version integer DEFAULT NULL) RETURNS jsonb
	LANGUAGE plpgsql STABLE PARALLEL SAFE
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	found_version integer;
	test jsonb;
BEGIN
	-- as the calling role: row security hides the adapters it may not read
	SELECT a.version, a.metrics OPERATOR(pg_catalog.->) 'test'
	  INTO found_version, test
	  FROM dept.adapters a
	 WHERE a.name OPERATOR(pg_catalog.=) dept_report.adapter
	   AND CASE WHEN dept_report.version IS NULL THEN a.active
				ELSE a.version OPERATOR(pg_catalog.=) dept_report.version END;
	IF NOT FOUND THEN
		IF dept_report.version IS NULL THEN
			RAISE EXCEPTION 'adapter "%" does not exist or has no active version', adapter
				USING ERRCODE = 'undefined_object',
					  HINT = 'See dept.adapters for the adapters you may use.';
		END IF;
		RAISE EXCEPTION 'adapter "%" does not exist or has no version %', adapter, dept_report.version
			USING ERRCODE = 'undefined_object',
				  HINT = 'See dept.adapters for the adapters you may use.';
	END IF;
	-- a version trained without test rows (test_fraction 0) has no report
	IF test IS NULL THEN
		RETURN NULL;
	END IF;
	RETURN pg_catalog.jsonb_build_object('adapter', adapter, 'version', found_version)
		OPERATOR(pg_catalog.||) test;
END $$;
COMMENT ON FUNCTION @extschema@.dept_report(text, integer) IS
	'the test report stored with a version (default the active one): accuracy, macro-F1, per class, confusion, ROC AUC for two classes, on the rows dept_train held out by test_fraction; NULL when the version has no test rows';

-- ---------------------------------------------------------------------------
-- Regression (predict.c): adapters trained on a numeric label (options
-- {"task": "regression"}, inferred for numeric/real/double labels) predict
-- a number.  dept_predict returns it as text; dept_predict_proba refuses
-- such an adapter and dept_predict_value refuses a classifier (22023).
-- Read-only and parallel safe, as dept_predict.
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.dept_predict_value(adapter text, input text) RETURNS double precision
	AS 'MODULE_PATHNAME', 'dept_predict_value'
	LANGUAGE C STRICT STABLE PARALLEL SAFE COST 10000;
COMMENT ON FUNCTION @extschema@.dept_predict_value(text, text) IS
	'the number a regression adapter (active version) predicts for the text';

CREATE FUNCTION @extschema@.dept_predict_value(adapter text, inputs text[]) RETURNS double precision[]
	AS 'MODULE_PATHNAME', 'dept_predict_value_batch'
	LANGUAGE C STRICT STABLE PARALLEL SAFE COST 10000;
COMMENT ON FUNCTION @extschema@.dept_predict_value(text, text[]) IS
	'the numbers a regression adapter predicts for many texts in one batched forward pass';
CREATE FUNCTION @extschema@.dept_predict_value(adapter text, input text, input2 text)
	RETURNS double precision
	AS 'MODULE_PATHNAME', 'dept_predict_value_pair'
	LANGUAGE C STRICT STABLE PARALLEL SAFE COST 10000;
COMMENT ON FUNCTION @extschema@.dept_predict_value(text, text, text) IS
	'the number a sentence-pair regression adapter predicts for the pair';

-- ---------------------------------------------------------------------------
-- dept_train's default method (issue 14; docs/user-guide.md, "Which method"):
-- method NULL, now the default, trains 'auto' (the linear probe with its L2
-- search, then DePT m = 20 from the probe's head within budget_rows, the
-- better on validation kept), or 'dept' as 1.0 did when the options shape
-- a prompt (prompt_length, rank, budget, lr, lowrank_lr, ept_lr,
-- subspaces, subspace_rank, init_text, init_from, init_from_version).
-- CREATE OR REPLACE keeps the function's owner, grants and comment.
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION @extschema@.dept_train(relation regclass, label_column text,
						   text_column text DEFAULT NULL, adapter text DEFAULT NULL,
						   method text DEFAULT NULL, options jsonb DEFAULT '{}',
						   wait boolean DEFAULT true, activate text DEFAULT 'if_better') RETURNS text
	AS 'MODULE_PATHNAME', 'dept_train'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
