/* dept--1.0.sql: SQL surface of the dept extension (DESIGN.md section 4). */

\echo Use "CREATE EXTENSION dept" to load this file. \quit

-- Catalog objects (adapters, jobs) live in schema dept; functions in the
-- schema the extension is created in, so they are called unqualified.
CREATE SCHEMA dept;
COMMENT ON SCHEMA dept IS 'catalog of the dept extension: adapters and training jobs';

CREATE FUNCTION dept_embed(input text) RETURNS real[]
	AS 'MODULE_PATHNAME', 'dept_embed'
	LANGUAGE C STRICT STABLE PARALLEL SAFE COST 10000;
-- COST: see the inference functions below.
COMMENT ON FUNCTION dept_embed(text) IS
	'sentence vector of the text from the backbone (use-lite: 512 floats, L2-normalised); text beyond 128 tokens is truncated';

CREATE FUNCTION dept_tokenize(input text) RETURNS integer[]
	AS 'MODULE_PATHNAME', 'dept_tokenize'
	LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dept_tokenize(text) IS
	'token ids of the text as the backbone sees them (at most 128)';

CREATE FUNCTION dept_model_info() RETURNS jsonb
	AS 'MODULE_PATHNAME', 'dept_model_info'
	LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dept_model_info() IS
	'the backbone this backend has loaded: family, path, fingerprint, dimensions, load time';

CREATE FUNCTION dept_cosine(a real[], b real[]) RETURNS double precision
	AS 'MODULE_PATHNAME', 'dept_cosine'
	LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION dept_cosine(real[], real[]) IS
	'cosine similarity of two vectors of equal length';

-- ---------------------------------------------------------------------------
-- Catalog: adapters and training jobs (DESIGN.md sections 4, 5).
-- Only the extension writes them (through its functions); roles read the
-- rows they own, or whose owner role they are members of (row security).
-- ---------------------------------------------------------------------------
CREATE TABLE dept.adapters (
	name text NOT NULL,
	version integer NOT NULL,
	owner regrole NOT NULL,
	active boolean NOT NULL DEFAULT false,
	method text NOT NULL,
	backbone text NOT NULL,
	backbone_fingerprint text NOT NULL,
	labels text[] NOT NULL,
	hyperparameters jsonb NOT NULL DEFAULT '{}',
	metrics jsonb NOT NULL DEFAULT '{}',
	training_relation text,
	label_column text,
	text_column text,
	train_rows bigint,
	valid_rows bigint,
	skipped_rows bigint,
	job_id bigint,
	created_at timestamptz NOT NULL DEFAULT now(),
	tensors bytea NOT NULL,
	PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX adapters_one_active ON dept.adapters (name) WHERE active;
COMMENT ON TABLE dept.adapters IS
	'trained adapters: one row per version, tensors in the versioned DEPT binary format; at most one active version per name';

CREATE TABLE dept.jobs (
	id bigint PRIMARY KEY,
	adapter text NOT NULL,
	owner regrole NOT NULL,
	status text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
	relation text NOT NULL,
	label_column text NOT NULL,
	text_column text NOT NULL,
	method text NOT NULL,
	options jsonb NOT NULL DEFAULT '{}',
	activate text NOT NULL DEFAULT 'if_better',
	step bigint NOT NULL DEFAULT 0,
	total_steps bigint NOT NULL DEFAULT 0,
	epoch integer NOT NULL DEFAULT 0,
	loss double precision,
	valid_accuracy double precision,
	rows_per_second double precision,
	eta_seconds double precision,
	rows_read bigint,
	rows_skipped bigint,
	adapter_version integer,
	error text,
	worker_pid integer,
	created_at timestamptz NOT NULL DEFAULT now(),
	started_at timestamptz,
	finished_at timestamptz
);
CREATE SEQUENCE dept.job_ids OWNED BY dept.jobs.id;

CREATE TABLE dept.models (
	name text PRIMARY KEY,
	path text NOT NULL,
	family text NOT NULL,
	fingerprint text NOT NULL,
	registered_by regrole NOT NULL,
	registered_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE dept.models IS
	'backbone models registered with dept_register_model; "use-lite" (the default) needs no row';
COMMENT ON TABLE dept.jobs IS 'training jobs with their status and progress';

ALTER TABLE dept.adapters ENABLE ROW LEVEL SECURITY;
ALTER TABLE dept.jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY adapters_readable ON dept.adapters FOR SELECT
	USING (pg_has_role(current_user, owner, 'USAGE'));
CREATE POLICY jobs_readable ON dept.jobs FOR SELECT
	USING (pg_has_role(current_user, owner, 'USAGE'));
REVOKE ALL ON dept.adapters, dept.jobs, dept.models FROM PUBLIC;
GRANT USAGE ON SCHEMA dept TO PUBLIC;
GRANT SELECT ON dept.adapters, dept.jobs, dept.models TO PUBLIC;
REVOKE ALL ON SEQUENCE dept.job_ids FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('dept.adapters', '');
SELECT pg_catalog.pg_extension_config_dump('dept.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('dept.job_ids', '');
SELECT pg_catalog.pg_extension_config_dump('dept.models', '');

CREATE FUNCTION dept_register_model(name text, path text) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'dept_register_model'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION dept_register_model(text, text) IS
	'load a model directory (Hugging Face BERT: config.json + model.safetensors + tokenizer.json) and register it under a name for dept_train''s "model" option; superuser or pg_read_server_files';

-- ---------------------------------------------------------------------------
-- Training
-- ---------------------------------------------------------------------------
CREATE FUNCTION dept_train(relation regclass, label_column text, text_column text DEFAULT NULL,
						   adapter text DEFAULT NULL, method text DEFAULT 'dept',
						   options jsonb DEFAULT '{}', wait boolean DEFAULT true,
						   activate text DEFAULT 'if_better') RETURNS text
	AS 'MODULE_PATHNAME', 'dept_train'
	LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION dept_train(regclass, text, text, text, text, jsonb, boolean, text) IS
	'train an adapter on relation in a background worker running as the calling role; returns the adapter name (wait) or the job id (wait => false)';

CREATE FUNCTION dept_wait(job bigint) RETURNS text
	AS 'MODULE_PATHNAME', 'dept_wait'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION dept_wait(bigint) IS 'wait for a training job to end; returns its final status';

CREATE FUNCTION dept_cancel(job bigint) RETURNS boolean
	AS 'MODULE_PATHNAME', 'dept_cancel'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION dept_cancel(bigint) IS 'ask a queued or running job to stop; it stores nothing';

CREATE FUNCTION dept_activate(adapter text, version integer) RETURNS void
	AS 'MODULE_PATHNAME', 'dept_activate'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION dept_activate(text, integer) IS 'make a stored version the active one (roll back or forward)';

CREATE FUNCTION dept_export(adapter text) RETURNS bytea
	AS 'MODULE_PATHNAME', 'dept_export'
	LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dept_export(text) IS 'the active version of an adapter as a self-contained bytea';

CREATE FUNCTION dept_import(adapter text, data bytea, activate boolean DEFAULT true) RETURNS integer
	AS 'MODULE_PATHNAME', 'dept_import'
	LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION dept_import(text, bytea, boolean) IS 'store an exported adapter as a new version; returns the version';

-- ---------------------------------------------------------------------------
-- Inference: read-only, parallel safe.  COST 10000 (25 planner units, about
-- what a forward pass of milliseconds is worth against a page read) lets the
-- planner choose a parallel plan for a large table without hand-set costs.
-- ---------------------------------------------------------------------------
CREATE FUNCTION dept_predict(adapter text, input text) RETURNS text
	AS 'MODULE_PATHNAME', 'dept_predict'
	LANGUAGE C STRICT STABLE PARALLEL SAFE COST 10000;
COMMENT ON FUNCTION dept_predict(text, text) IS 'the most probable label of the text under the active adapter version';

CREATE FUNCTION dept_predict_proba(adapter text, input text) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'dept_predict_proba'
	LANGUAGE C STRICT STABLE PARALLEL SAFE COST 10000;
COMMENT ON FUNCTION dept_predict_proba(text, text) IS 'label -> probability for the text';

CREATE FUNCTION dept_predict(adapter text, inputs text[]) RETURNS text[]
	AS 'MODULE_PATHNAME', 'dept_predict_batch'
	LANGUAGE C STRICT STABLE PARALLEL SAFE COST 10000;
COMMENT ON FUNCTION dept_predict(text, text[]) IS 'labels of many texts in one batched forward pass';

CREATE FUNCTION dept_predict_proba(adapter text, inputs text[]) RETURNS jsonb[]
	AS 'MODULE_PATHNAME', 'dept_predict_proba_batch'
	LANGUAGE C STRICT STABLE PARALLEL SAFE COST 10000;
COMMENT ON FUNCTION dept_predict_proba(text, text[]) IS 'label -> probability for many texts';

CREATE FUNCTION dept_evaluate(adapter text, relation regclass, label_column text,
							  text_column text) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'dept_evaluate'
	LANGUAGE C STRICT STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION dept_evaluate(text, regclass, text, text) IS
	'accuracy, macro-F1, per-class precision/recall and confusion matrix of the adapter on labelled rows';

-- ---------------------------------------------------------------------------
-- Scheduling through pg_cron
-- ---------------------------------------------------------------------------
CREATE FUNCTION dept_schedule(adapter text, schedule text) RETURNS bigint
	LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	last dept.jobs;
	command text;
BEGIN
	IF to_regnamespace('cron') IS NULL THEN
		RAISE EXCEPTION 'pg_cron is not installed'
			USING ERRCODE = 'undefined_object',
				  HINT = 'Add pg_cron to shared_preload_libraries and run CREATE EXTENSION pg_cron.';
	END IF;
	SELECT * INTO last FROM dept.jobs j
	 WHERE j.adapter = dept_schedule.adapter AND j.status = 'succeeded'
	 ORDER BY j.id DESC LIMIT 1;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'adapter "%" has no successful training job to repeat', adapter
			USING ERRCODE = 'undefined_object',
				  HINT = 'Train it once with dept_train first.';
	END IF;
	command := format('SELECT dept_train(%L::regclass, %L, %L, %L, %L, %L::jsonb, true, %L)',
					  last.relation, last.label_column, last.text_column, last.adapter,
					  last.method, last.options, last.activate);
	RETURN cron.schedule('dept:' || adapter, schedule, command);
END $$;
COMMENT ON FUNCTION dept_schedule(text, text) IS
	'retrain the adapter on a cron schedule (pg_cron) with the settings of its last successful job';

CREATE FUNCTION dept_unschedule(adapter text) RETURNS boolean
	LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	IF to_regnamespace('cron') IS NULL THEN
		RAISE EXCEPTION 'pg_cron is not installed'
			USING ERRCODE = 'undefined_object',
				  HINT = 'Add pg_cron to shared_preload_libraries and run CREATE EXTENSION pg_cron.';
	END IF;
	RETURN cron.unschedule('dept:' || adapter);
END $$;
COMMENT ON FUNCTION dept_unschedule(text) IS 'stop retraining the adapter on a schedule';

-- Administrative functions: granted explicitly, not to everyone.
REVOKE ALL ON FUNCTION dept_train(regclass, text, text, text, text, jsonb, boolean, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION dept_activate(text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION dept_import(text, bytea, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION dept_schedule(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION dept_unschedule(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION dept_cancel(bigint) FROM PUBLIC;
