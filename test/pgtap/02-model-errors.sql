-- Broken or missing model files give clean errors with SQLSTATEs; the server stays up.
\set ON_ERROR_STOP 1
\set QUIET 1
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS dept;
SELECT plan(12);

-- Make broken copies of the installed model under a fresh directory.
SELECT set_config('dept_test.src', dept_model_info() ->> 'path', true);
SELECT set_config('dept_test.dir', '/tmp/dept-badmodels-' || pg_backend_pid(), true);
DO $$
DECLARE
	src text := current_setting('dept_test.src');
	dir text := current_setting('dept_test.dir');
	script text;
BEGIN
	script := format($sh$
set -e
src=%1$s; d=%2$s
rm -rf "$d"; mkdir -p "$d"
for v in missing_shard truncated_shard extra_bytes bad_json wrong_shape missing_vocab bad_vocab no_manifest; do
  mkdir "$d/$v"; cp "$src"/model.json "$src"/vocab.json "$src"/group1-shard* "$d/$v/"
done
rm "$d/missing_shard/group1-shard3of7"
truncate -s 1000 "$d/truncated_shard/group1-shard7of7"
printf 'xxxx' >> "$d/extra_bytes/group1-shard7of7"
printf '{"modelTopology": ' > "$d/bad_json/model.json"
perl -0pi -e 's/("module\/Embeddings_en",\s*"shape":\s*\[\s*)8002/${1}8003/' "$d/wrong_shape/model.json"
rm "$d/missing_vocab/vocab.json"
printf '[["a", "not a score"]' > "$d/bad_vocab/vocab.json"
rm "$d/no_manifest/model.json"
$sh$, quote_literal(src), quote_literal(dir));
	EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', script);
END $$;

CREATE FUNCTION pg_temp.embed_with(variant text) RETURNS real[] LANGUAGE plpgsql AS $$
BEGIN
	PERFORM set_config('dept.model_path',
					   CASE WHEN variant = '' THEN '' ELSE current_setting('dept_test.dir') || '/' || variant END,
					   true);
	RETURN dept_embed('some text');
END $$;

SELECT throws_ok($$SELECT pg_temp.embed_with('does_not_exist')$$, '58P01', NULL,
				 'a missing model directory is undefined_file');
SELECT throws_ok($$SELECT pg_temp.embed_with('no_manifest')$$, '58P01', NULL,
				 'a directory without model.json is undefined_file');
SELECT throws_ok($$SELECT pg_temp.embed_with('missing_shard')$$, '58P01', NULL,
				 'a missing weight shard is undefined_file');
SELECT throws_ok($$SELECT pg_temp.embed_with('missing_vocab')$$, '58P01', NULL,
				 'a missing vocab.json is undefined_file');
SELECT throws_ok($$SELECT pg_temp.embed_with('truncated_shard')$$, 'XX001', NULL,
				 'a truncated shard is data_corrupted');
SELECT throws_ok($$SELECT pg_temp.embed_with('extra_bytes')$$, 'XX001', NULL,
				 'a shard with extra bytes is data_corrupted');
SELECT throws_ok($$SELECT pg_temp.embed_with('bad_json')$$, 'XX001', NULL,
				 'malformed model.json is data_corrupted');
SELECT throws_ok($$SELECT pg_temp.embed_with('wrong_shape')$$, 'XX001', NULL,
				 'a tensor shape that disagrees with the shards is data_corrupted');
SELECT throws_ok($$SELECT pg_temp.embed_with('bad_vocab')$$, 'XX001', NULL,
				 'malformed vocab.json is data_corrupted');
SELECT is(array_length(pg_temp.embed_with(''), 1), 512,
		  'after all those errors the default model still loads in this backend');

-- Only superusers may point the extension at server files.
CREATE ROLE dept_tap_user;
SET LOCAL ROLE dept_tap_user;
SELECT throws_ok($$SET dept.model_path = '/tmp'$$, '42501', NULL,
				 'a plain role cannot set dept.model_path');
RESET ROLE;
SELECT lives_ok($$SET LOCAL dept.threads = 2$$, 'any role may set dept.threads');

DO $$
BEGIN
	EXECUTE format('COPY (SELECT 1) TO PROGRAM %L',
				   'rm -rf ' || quote_literal(current_setting('dept_test.dir')));
END $$;
SELECT * FROM finish();
ROLLBACK;
