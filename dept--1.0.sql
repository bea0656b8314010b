/* dept--1.0.sql: SQL surface of the dept extension (DESIGN.md section 4). */

\echo Use "CREATE EXTENSION dept" to load this file. \quit

-- Catalog objects (adapters, jobs) live in schema dept; functions in the
-- schema the extension is created in, so they are called unqualified.
CREATE SCHEMA dept;
COMMENT ON SCHEMA dept IS 'catalog of the dept extension: adapters and training jobs';

CREATE FUNCTION dept_embed(input text) RETURNS real[]
	AS 'MODULE_PATHNAME', 'dept_embed'
	LANGUAGE C STRICT STABLE PARALLEL SAFE;
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
