-- dept_embed inside the server: shape, reference values, volatility, parallel query.
\set ON_ERROR_STOP 1
\set QUIET 1
\getenv fixtures DEPT_FIXTURE_DIR
\set reference `cat :fixtures/reference_embeddings.json`
\set user_core ''
\getenv user_core OPENBLAS_CORETYPE
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS dept;
\ir helpers.psql
SELECT plan(22);

SELECT has_function('dept_embed', ARRAY['text']);
SELECT has_function('dept_tokenize', ARRAY['text']);
SELECT function_returns('dept_embed', ARRAY['text'], 'real[]');
SELECT volatility_is('dept_embed', ARRAY['text'], 'stable');
SELECT is_strict('dept_embed', ARRAY['text']);
SELECT is((SELECT proparallel FROM pg_proc WHERE proname = 'dept_embed'), 's',
		  'dept_embed is PARALLEL SAFE');

-- The TF.js runtime's outputs for four texts, to 1e-5 per component.
CREATE TEMP TABLE reference AS
SELECT t.text, e.embedding
FROM jsonb_array_elements_text((:'reference'::jsonb) -> 'texts') WITH ORDINALITY AS t(text, i)
JOIN LATERAL (SELECT array_agg(v::real ORDER BY j) AS embedding
			  FROM jsonb_array_elements_text((:'reference'::jsonb) -> 'embeddings' -> (t.i::int - 1))
				   WITH ORDINALITY AS x(v, j)) e ON true;
SELECT is((SELECT count(*) FROM reference), 4::bigint, 'four reference texts');
SELECT cmp_ok((SELECT max(abs(a - b))
			   FROM reference r,
					LATERAL unnest(dept_embed(r.text), r.embedding) AS u(a, b)),
			  '<', 1e-5::real, 'embeddings match the TF.js runtime within 1e-5');
SELECT is((SELECT bool_and(array_length(dept_embed(text), 1) = 512) FROM reference), true,
		  'every embedding has 512 components');

-- Parallel query gives the same vectors as a serial scan.
CREATE TABLE parallel_texts AS
SELECT i, 'sentence number ' || i || ' about ' || (ARRAY['films', 'banks', 'sport', 'rain'])[1 + i % 4] AS body
FROM generate_series(1, 400) i;
ANALYZE parallel_texts;
CREATE TEMP TABLE serial_result AS SELECT i, dept_embed(body) AS e FROM parallel_texts;

-- With the planner's default costs, the functions' COST makes a parallel plan
-- pay off on a table that allows workers (it is below min_parallel_table_scan_size).
CREATE FUNCTION pg_temp.plan_of(query text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	line text;
	plan text := '';
BEGIN
	FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
		plan := plan || line || E'\n';
	END LOOP;
	RETURN plan;
END $$;
SELECT doesnt_match(pg_temp.plan_of('SELECT i, dept_embed(body) FROM parallel_texts'), 'Gather',
					'a table without parallel_workers is scanned serially');
ALTER TABLE parallel_texts SET (parallel_workers = 2);
SELECT matches(pg_temp.plan_of('SELECT i, dept_embed(body) FROM parallel_texts'),
			   'Workers Planned: 2', 'the planner chooses 2 workers for dept_embed at default costs');
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
SET LOCAL max_parallel_workers_per_gather = 2;
SELECT matches(pg_temp.explain_analyze('SELECT i, dept_embed(body) FROM parallel_texts'),
			   'Workers Launched: [12]', 'parallel workers run dept_embed');
SELECT is((SELECT count(*) FROM parallel_texts p JOIN serial_result s USING (i)
		   WHERE dept_embed(p.body) = s.e), 400::bigint,
		  'parallel workers compute the same vectors as the leader');

-- OpenBLAS is loaded with the kernels the CPU's features call for, not the
-- SSE3 ones its model table gives a CPU it does not know (src/nn/blas.h);
-- an OPENBLAS_CORETYPE in the server's environment (the one the tests run in) wins.
SELECT ok(CASE
			  WHEN :'user_core' <> '' THEN lower(core) = lower(:'user_core')
			  WHEN cpu ~ '\savx512f\s' THEN core IN ('SkylakeX', 'Cooperlake', 'SapphireRapids')
			  WHEN cpu ~ '\savx2\s' THEN core NOT IN ('Prescott', 'Nehalem', 'Core2')
			  ELSE true END,
		  format('OpenBLAS runs the kernels the CPU calls for (%s)', core))
FROM (SELECT dept_model_info()->>'blas_core' AS core, pg_read_file('/proc/cpuinfo') AS cpu) k;

-- dept.matmul_precision: float32 by default; bfloat16 runs the products on
-- AMX, else AVX512-BF16, where the CPU has it and stays within cosine 0.9995
-- of the TF.js vectors; back to float32, the vectors are float's again, bit
-- for bit.
SELECT is(current_setting('dept.matmul_precision'), 'float32', 'products are float32 by default');
CREATE TEMP TABLE float_vectors AS SELECT text, dept_embed(text) AS e FROM reference;
SET LOCAL dept.matmul_precision = bfloat16;
SELECT ok(CASE WHEN cpu ~ '\savx512_bf16\s' THEN engine IN ('amx', 'avx512-bf16')
			 ELSE engine = 'none' END,
		  format('a bfloat16 engine (%s) where the CPU has AVX512-BF16, none elsewhere', engine))
FROM (SELECT pg_read_file('/proc/cpuinfo') AS cpu,
			 dept_model_info()->>'bfloat16_engine' AS engine) c;
SELECT is(dept_model_info()->>'matmul_precision',
		  CASE WHEN dept_model_info()->>'bfloat16_engine' = 'none' THEN 'float32' ELSE 'bfloat16' END,
		  'bfloat16 products where the CPU has an engine for them');
SELECT cmp_ok((SELECT min(dot)
			   FROM reference r,
					LATERAL (SELECT sum(a * b) AS dot
							 FROM unnest(dept_embed(r.text), r.embedding) AS u(a, b)) d),
			  '>=', 0.9995::real, 'bfloat16 vectors within cosine 0.9995 of TF.js''s');
RESET dept.matmul_precision;
SELECT is((SELECT count(*) FROM float_vectors WHERE dept_embed(text) = e), 4::bigint,
		  'float32 again gives the float vectors exactly');

SELECT is(array_length(dept_tokenize(repeat('longer text ', 300)), 1), 128,
		  'tokenization truncates at 128 tokens');
SELECT is(dept_tokenize(''), '{}'::int[], 'empty text has no tokens');
SELECT ok(dept_embed('') IS NOT NULL, 'empty text still has an embedding');

SELECT * FROM finish();
ROLLBACK;
