#!/usr/bin/env bash
# search_path (issue 12, section 1): nothing the extension runs resolves a
# name through the caller's search_path.  An unprivileged role "mallory"
# owns a schema "evil" holding, generated from the SQL the extension runs
# (test/sh/lib/sql-names.pl over src/pg/*.c and dept--*.sql, so new SQL is
# covered without editing this test), shadows of every function it calls
# (several overloads each, aggregates for aggregates), of every operator it
# uses (over common type pairs) and of every cast target (a domain with a
# CHECK).  Each shadow records its call (a row in evil.calls, a
# non-transactional sequence, a WARNING in the server log) and tries
# ALTER ROLE mallory SUPERUSER.  Every entry point is then called with evil
# first and last in the path, through the training worker (ALTER ROLE SET
# search_path), in a parallel plan, and by a superuser with evil in the
# path; no shadow may run and mallory must not become superuser.  Last, the
# extension in a non-default schema trains and its pg_cron command works.
# Uses its own cluster (pg_cron preloaded; restarted once to move
# cron.database_name to a fresh database for the schema case).
set -uo pipefail
. "$(dirname "$0")/tap.bash"
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/dept-search-path.XXXXXX)
port=$(( ${PGPORT:-5499} + 13 ))
trap '"$root/scripts/pg-cluster.sh" stop "$dir"; rm -rf "$dir"' EXIT
DEPT_PG_EXTRA_CONF=$'log_min_messages = warning\nlog_line_prefix = \'[%b] \'\nmax_parallel_workers = 8' \
	"$root/scripts/pg-cluster.sh" start "$dir" "$port"
export PGHOST=$dir PGPORT=$port PGUSER=postgres
unset PGOPTIONS
db=postgres
diag() { sed 's/^/# /'; }

# run ROLE PATH SQL...: one session as ROLE, search_path set to PATH first
# (unless PATH is empty), each SQL its own statement.  Leaves the output
# in $out; the call, its result and any error go out as TAP diagnostics.
# A statement may fail (the point is whether attacker code runs), but it
# must not hang.  A call after which mallory is superuser is recorded in
# $escalated and undone.
run() {
	local role=$1 path=$2 s super
	shift 2
	local args=()
	[ -n "$path" ] && args+=(-c "SET search_path = $path")
	for s in "$@"; do args+=(-c "$s"); done
	# then, in the same session: is mallory superuser now?
	args+=(-c "SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) 'mallory'")
	out=$(PGUSER=$role PGOPTIONS="-c statement_timeout=20s" \
		psql -X -qAt -d "${rundb:-$db}" "${args[@]}" 2>"$dir/err")
	super=${out##*$'\n'}
	[[ $out == *$'\n'* ]] && out=${out%$'\n'*} || out=""
	local what=${*: -1}
	mapfile -t -O "${#called[@]}" called < <(grep -oE 'dept_[a-z_]+\(' <<<"$what" | tr -d '(')
	echo "# $role [${path:-role default}]: ${what:0:150}"
	grep -q '^ERROR:' "$dir/err" || echo "#   => $(head -c 150 <<<"${out%%$'\n'*}")"
	# each distinct line once, with its count (a shadow may run once a row)
	awk '!/^NOTICE:/ { if (!($0 in c)) o[++k] = $0; c[$0]++ }
		END { for (i = 1; i <= k; i++) printf "#   %s%s\n", substr(o[i], 1, 300), (c[o[i]] > 1 ? " (" c[o[i]] " times)" : "") }' "$dir/err"
	if [ "$super" != "t" ] && [ "$super" != "f" ]; then
		echo "#   (the session ended early; waiting for the server)"
		wait_for_server
		super=$(sql $db "SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'")
	fi
	# a call that made mallory superuser is recorded, and undone so that
	# the next entry point is tried by an unprivileged mallory again
	if [ "$super" = "t" ]; then
		echo "#   !!! mallory is superuser now"
		escalated+=("$role [${path:-role default}]: ${what:0:100}")
		sql $db "ALTER ROLE mallory NOSUPERUSER" >/dev/null
	fi
	return 0
}
escalated=()
called=()
have() { [ "$(sql $db "SELECT to_regproc('public.$1') IS NOT NULL")" = "t" ]; }

# --- 1. the names the extension's SQL resolves ------------------------------
names=$(perl "$root/test/sh/lib/sql-names.pl" "$root"/src/pg/*.c "$root"/dept--*.sql)
ok $? "sql-names.pl reads the extension's SQL"
list() { awk -v k="$1" '$1 == k { print $2 }' <<<"$names"; }
found_funcs=$(list func | wc -l) found_ops=$(list op | wc -l) found_casts=$(list cast | wc -l)
echo "# found in the extension's SQL: $found_funcs functions: $(list func | tr '\n' ' ')"
echo "# $found_ops operators: $(list op | tr '\n' ' ')"
echo "# $found_casts cast targets: $(list cast | tr '\n' ' ')"
[ "$found_funcs" -ge 5 ] && [ "$found_ops" -ge 3 ] && [ "$found_casts" -ge 3 ]
ok $? "the generator finds functions (>= 5), operators (>= 3) and casts (>= 3) in the SQL"
# as a PostgreSQL array literal, with the names issue 12 names in any case
arr() { { list "$1"; printf '%s\n' "${@:2}"; } | sort -u | grep -E '^([A-Za-z_][A-Za-z0-9_$]*|[-+*/<>=~!@#%^&|`?]+)$' |
	sed 's/.*/"&"/' | paste -sd, | sed 's/.*/{&}/'; }
funcs=$(arr func nextval now format jsonb_build_object)
ops=$(arr op '=' '->>')
casts=$(arr cast text)

# --- 2. the attacker: mallory, schema evil, a trained adapter ----------------
bert=""
hf=${DEPT_HF_FIXTURES:-$root/test/fixtures/hf}
if [ -f "$hf/bert-tiny-random/model.safetensors" ]; then
	bert=$dir/models/bert-tiny
	mkdir -p "$bert"
	cp "$hf"/bert-tiny-random/{config.json,model.safetensors,tokenizer.json,vocab.txt} "$bert/" 2>/dev/null
	chmod -R a+rX "$dir/models"
fi
force_parallel=$(sql $db "SELECT name FROM pg_settings WHERE name IN ('debug_parallel_query', 'force_parallel_mode') ORDER BY name LIMIT 1")

sql $db "CREATE EXTENSION pg_cron; CREATE EXTENSION dept;
	CREATE ROLE mallory LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
	GRANT CREATE ON DATABASE $db TO mallory;
	GRANT USAGE ON SCHEMA cron TO mallory;
	CREATE ROLE sp_nobody NOLOGIN;
	DO \$\$ DECLARE f regprocedure; BEGIN
		FOR f IN SELECT d.objid::regprocedure FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
		          WHERE e.extname = 'dept' AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e' LOOP
			EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO mallory', f);
		END LOOP; END \$\$" >/dev/null
ok $? "role mallory (no superuser, CREATE on the database, EXECUTE on every dept function)"

PGUSER=mallory psql -X -qAt -v ON_ERROR_STOP=1 -d $db >/dev/null <<'SQL'
SET search_path = pg_catalog;
CREATE SCHEMA evil;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
CREATE TABLE evil.calls (name text, by_role text, at timestamptz DEFAULT clock_timestamp());
GRANT INSERT ON evil.calls TO PUBLIC;
-- survives the rollback of a failed call (and a crash)
CREATE SEQUENCE evil.call_count;
GRANT USAGE ON SEQUENCE evil.call_count TO PUBLIC;
-- what every shadow runs; everything in it qualified, no SET (it must run
-- in parallel workers too, where the WARNING still reaches the server log)
CREATE FUNCTION evil.log_call(what text) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
	RAISE WARNING 'dept-shadow-call: % by %', what, current_user;
	PERFORM pg_catalog.nextval('evil.call_count'::pg_catalog.regclass);
	INSERT INTO evil.calls (name, by_role) VALUES (what, current_user);
	BEGIN
		ALTER ROLE mallory SUPERUSER;
	EXCEPTION WHEN OTHERS THEN NULL;
	END;
	RETURN NULL;
END $f$;
CREATE TABLE evil.reviews (label text, body text, score double precision);
INSERT INTO evil.reviews
	SELECT CASE WHEN g % 2 = 0 THEN 'positive' ELSE 'negative' END,
	       CASE WHEN g % 2 = 0 THEN 'a good and great film, ' ELSE 'a bad and awful film, ' END || g,
	       g % 2 * 4.5
	FROM generate_series(1, 20) g;
CREATE TABLE evil.keyed (id integer PRIMARY KEY, body text);
INSERT INTO evil.keyed SELECT g, 'review number ' || g FROM generate_series(1, 50) g;
CREATE TABLE evil.many (body text);
INSERT INTO evil.many SELECT 'review number ' || g FROM generate_series(1, 300) g;
ANALYZE evil.many;
SQL
ok $? "mallory creates schema evil, the call log and her tables"
run mallory "pg_catalog" "SELECT public.dept_train('evil.reviews', 'label', adapter => 'm_sp', method => 'probe', options => '{\"epochs\": 1}')"
is "$out" "m_sp" "mallory trains adapter m_sp before any shadow exists"
run mallory "pg_catalog" "SELECT public.dept_train('evil.reviews', 'score', 'body', adapter => 'm_reg', method => 'probe', options => '{\"epochs\": 1, \"task\": \"regression\"}')"
is "$out" "m_reg" "mallory trains the regression adapter m_reg before any shadow exists"

# --- 3. the shadows -----------------------------------------------------------
PGUSER=mallory psql -X -qAt -v ON_ERROR_STOP=1 -d $db -v funcs="$funcs" -v ops="$ops" -v casts="$casts" \
	>/dev/null 2>"$dir/gen.err" <<'SQL'
SET search_path = pg_catalog;
SELECT set_config('dept_test.funcs', :'funcs', false), set_config('dept_test.ops', :'ops', false),
	set_config('dept_test.casts', :'casts', false);
DO $gen$
DECLARE
	fsigs text[] := ARRAY['', 'text', 'text, text', 'text, text, text', 'anyelement',
		'anyelement, anyelement', 'anyarray', 'anyelement, text', 'text, anyelement', 'bigint',
		'integer', 'integer, integer', 'bigint, bigint', 'integer, bigint', 'oid', 'regclass',
		'regclass, text', 'regrole', 'name', 'jsonb', 'jsonb, text', 'text, jsonb', 'text, integer',
		'boolean', 'double precision', 'timestamptz', 'bytea', 'text[]', 'VARIADIC text[]',
		'text, VARIADIC text[]', 'VARIADIC anyarray', 'text, VARIADIC anyarray'];
	asigs text[] := ARRAY['*', 'text', 'anyelement', 'integer', 'bigint', 'boolean',
		'double precision', 'text, text', 'anyarray'];
	pairs text[] := ARRAY['text|text', 'name|name', 'name|text', 'text|name', 'integer|integer',
		'bigint|bigint', 'smallint|smallint', 'integer|bigint', 'bigint|integer', 'oid|oid',
		'regrole|regrole', 'regclass|regclass', 'jsonb|text', 'jsonb|integer', 'jsonb|jsonb',
		'json|text', 'boolean|boolean', 'double precision|double precision', 'real|real',
		'numeric|numeric', 'integer|numeric', 'timestamptz|timestamptz', 'timestamptz|interval',
		'bytea|bytea', 'xid|xid', '"char"|"char"', 'text[]|text[]', 'anyelement|anyelement',
		'anyarray|anyarray', 'anyelement|anyarray', 'anyarray|anyelement', 'text|anyelement',
		'anyelement|text', 'anynonarray|text', 'text|anynonarray',
		'|integer', '|bigint', '|double precision', '|numeric', '|text', '|boolean', '|anyelement'];
	n int := 0;
	f text; s text; p text; l text; r text; o text; t text; rt text; poly boolean;
	sigs text[]; agg_name boolean; make_agg boolean; nargs int;
BEGIN
	-- functions and aggregates
	FOR f IN SELECT DISTINCT x FROM unnest(current_setting('dept_test.funcs')::text[]) x
	         WHERE x NOT IN (SELECT word FROM pg_get_keywords() WHERE catcode IN ('R', 'C')) LOOP
		agg_name := EXISTS (SELECT 1 FROM pg_proc WHERE proname = f AND prokind = 'a'
		                      AND pronamespace = 'pg_catalog'::regnamespace);
		sigs := CASE WHEN agg_name THEN asigs || fsigs ELSE fsigs END;
		FOR i IN 1 .. array_length(sigs, 1) LOOP
			s := sigs[i];
			make_agg := agg_name AND i <= array_length(asigs, 1);
			nargs := CASE WHEN s IN ('', '*') THEN 0 ELSE array_length(string_to_array(s, ','), 1) END;
			n := n + 1;
			BEGIN
				-- the result type of the function it shadows (same arguments, else as
				-- many, pg_catalog first) so that the query around the call still parses
				rt := NULL;
				SELECT format_type(pr.prorettype, NULL), ty.typtype = 'p' INTO rt, poly
				  FROM pg_proc pr JOIN pg_type ty ON ty.oid = pr.prorettype
				 WHERE pr.proname = f AND pr.pronamespace <> 'evil'::regnamespace
				 ORDER BY oidvectortypes(pr.proargtypes) = replace(replace(s, 'VARIADIC ', ''), '*', '') DESC,
				          pr.pronargs = nargs DESC, pr.pronamespace = 'pg_catalog'::regnamespace DESC
				 LIMIT 1;
				IF rt IS NULL THEN
					rt := 'text';
				ELSIF poly AND NOT (rt = 'void' AND NOT make_agg) THEN
					rt := CASE WHEN s LIKE '%anyelement%' OR s LIKE '%anyarray%' THEN 'anyelement'
					           WHEN nargs = 0 THEN 'text'
					           ELSE replace(split_part(s, ',', 1), 'VARIADIC ', '') END;
				END IF;
				IF make_agg THEN
					EXECUTE format('CREATE FUNCTION evil.%I(%s) RETURNS %s LANGUAGE plpgsql AS %L',
						'__agg_' || n, rt || CASE WHEN nargs = 0 THEN '' ELSE ', ' || s END, rt,
						format('BEGIN PERFORM evil.log_call(%L); RETURN NULL; END',
						       'aggregate ' || f || '(' || s || ')'));
					EXECUTE format('CREATE AGGREGATE evil.%I(%s) (SFUNC = evil.%I, STYPE = %s)',
						f, s, '__agg_' || n, rt);
				ELSE
					EXECUTE format('CREATE FUNCTION evil.%I(%s) RETURNS %s LANGUAGE plpgsql AS %L',
						f, s, rt, format('BEGIN PERFORM evil.log_call(%L); RETURN%s; END',
						                 f || '(' || s || ')', CASE WHEN rt = 'void' THEN '' ELSE ' NULL' END));
				END IF;
			EXCEPTION WHEN OTHERS THEN NULL;   -- cannot be created: skipped (counted below)
			END;
		END LOOP;
	END LOOP;

	-- operators
	FOR o IN SELECT DISTINCT x FROM unnest(current_setting('dept_test.ops')::text[]) x LOOP
		FOREACH p IN ARRAY pairs LOOP
			n := n + 1;
			l := nullif(split_part(p, '|', 1), '');
			r := split_part(p, '|', 2);
			-- no (T, T) where pg_catalog has "T op X" but not "T op T": for
			-- "T op 'literal'" it would win and make the literal a T, so the
			-- query would fail to parse instead of running the shadow
			CONTINUE WHEN l = r AND EXISTS (SELECT 1 FROM pg_operator WHERE oprname = o
			                 AND oprnamespace = 'pg_catalog'::regnamespace
			                 AND (oprleft = l::regtype::oid OR oprright = l::regtype::oid))
			             AND NOT EXISTS (SELECT 1 FROM pg_operator WHERE oprname = o
			                 AND oprnamespace = 'pg_catalog'::regnamespace
			                 AND oprleft = l::regtype::oid AND oprright = l::regtype::oid);
			BEGIN
				rt := NULL;
				SELECT format_type(op.oprresult, NULL) INTO rt FROM pg_operator op
				 WHERE op.oprname = o AND op.oprnamespace = 'pg_catalog'::regnamespace
				   AND op.oprleft = coalesce(l::regtype::oid, 0) AND op.oprright = r::regtype::oid;
				IF rt IS NULL OR rt LIKE 'any%' THEN
					SELECT format_type(op.oprresult, NULL) INTO rt FROM pg_operator op
					 WHERE op.oprname = o AND op.oprnamespace = 'pg_catalog'::regnamespace
					 GROUP BY op.oprresult ORDER BY count(*) DESC LIMIT 1;
				END IF;
				IF rt IS NULL OR rt LIKE 'any%' THEN
					rt := coalesce(l, r);
				END IF;
				EXECUTE format('CREATE FUNCTION evil.%I(%s) RETURNS %s LANGUAGE plpgsql AS %L',
					'__op_' || n, concat_ws(', ', l, r), rt,
					format('BEGIN PERFORM evil.log_call(%L); RETURN NULL; END',
					       'operator ' || o || ' (' || coalesce(l, 'none') || ', ' || r || ')'));
				EXECUTE format('CREATE OPERATOR evil.%s (%s RIGHTARG = %s, FUNCTION = evil.%I)',
					o, CASE WHEN l IS NULL THEN '' ELSE 'LEFTARG = ' || l || ',' END, r, '__op_' || n);
			EXCEPTION WHEN OTHERS THEN NULL;
			END;
		END LOOP;
	END LOOP;

	-- cast targets: a domain of the same name (and of the type's own name:
	-- "::bigint" is int8) whose CHECK runs attacker code
	FOR t IN SELECT DISTINCT y FROM unnest(current_setting('dept_test.casts')::text[]) x,
	           LATERAL (VALUES (x), ((SELECT typname::text FROM pg_type WHERE oid = to_regtype(x)))) v(y)
	         WHERE y IS NOT NULL LOOP
		BEGIN
			EXECUTE format('CREATE DOMAIN evil.%I AS %s CHECK (evil.log_call(%L))',
				t, format_type(to_regtype(t), NULL), 'cast ::' || t);
		EXCEPTION WHEN OTHERS THEN NULL;
		END;
	END LOOP;
END $gen$;
SQL
ok $? "the generator runs$( [ -s "$dir/gen.err" ] && echo ": $(head -c 300 "$dir/gen.err")")"
made_f=$(sql $db "SELECT count(*) FROM pg_proc WHERE pronamespace = 'evil'::regnamespace AND prokind = 'f' AND proname NOT LIKE '\_\_%' AND proname <> 'log_call'")
made_a=$(sql $db "SELECT count(*) FROM pg_proc WHERE pronamespace = 'evil'::regnamespace AND prokind = 'a'")
made_o=$(sql $db "SELECT count(*) FROM pg_operator WHERE oprnamespace = 'evil'::regnamespace")
made_d=$(sql $db "SELECT count(*) FROM pg_type WHERE typnamespace = 'evil'::regnamespace AND typtype = 'd'")
echo "# shadows created: $made_f functions, $made_a aggregates, $made_o operators, $made_d domains"
sql $db "SELECT 'function names: ' || string_agg(DISTINCT proname, ' ') FROM pg_proc WHERE pronamespace = 'evil'::regnamespace AND proname NOT LIKE '\_\_%'
	UNION ALL SELECT 'operators: ' || string_agg(DISTINCT oprname, ' ') FROM pg_operator WHERE oprnamespace = 'evil'::regnamespace
	UNION ALL SELECT 'domains: ' || string_agg(typname, ' ') FROM pg_type WHERE typnamespace = 'evil'::regnamespace AND typtype = 'd'" | diag
[ "$made_f" -ge 100 ]; ok $? "at least 100 shadow functions ($made_f)"
[ "$made_o" -ge 50 ]; ok $? "at least 50 shadow operators ($made_o)"
[ "$made_d" -ge 3 ]; ok $? "at least 3 shadow domains ($made_d)"

# The shadows win resolution where the issue saw them win, and record the
# call: mallory's own calls (the WARNINGs each shadow sends), then her log
# is emptied.
PGUSER=mallory psql -X -qAt -d $db >"$dir/control.out" 2>&1 <<'SQL'
SET search_path = public, pg_catalog, evil;
SELECT nextval('dept.job_ids');
SET search_path = evil, pg_catalog, public;
SELECT now();
SELECT 'a' = 'b';
SELECT '{"a": "1"}'::jsonb ->> 'a';
SELECT format('%s', 'x');
SELECT jsonb_build_object('a', 'b');
SELECT 'x'::text;
SET search_path = pg_catalog;
DELETE FROM evil.calls;
SQL
control=$(sed -n 's/^.*dept-shadow-call: \(.*\) by mallory$/\1/p' "$dir/control.out" | paste -sd';')
echo "# control: $control"
missing=""
for want in "nextval(text)" "operator = (text, text)" "now()" "operator ->> (jsonb, text)" "format(" "jsonb_build_object(" "cast ::text"; do
	[[ $control == *"$want"* ]] || missing="$missing [$want]"
done
[ -z "$missing" ]
ok $? "control: nextval (path last), =, now, ->>, format, jsonb_build_object and ::text shadows run when mallory calls them herself${missing:+; missing:$missing}"
[ -n "$missing" ] && grep -v 'dept-shadow-call' "$dir/control.out" | head -20 | diag
baseline=$(sql $db "SELECT last_value || '/' || is_called FROM evil.call_count")
logstart=$(stat -c %s "$dir/server.log")

# --- 4. every entry point, evil first and last in the path ---------------------
for path in "evil, pg_catalog, public" "public, pg_catalog, evil"; do
	M() { run mallory "$path" "$@"; }
	train="public.dept_train('evil.reviews', 'label', adapter => 'm_sp', method => 'probe', options => '{\"epochs\": 1}'"
	M "SELECT $train, wait => true)"
	M "SELECT $train, wait => false)"
	job=$out
	[[ $job =~ ^[0-9]+$ ]] || job=1
	M "SELECT public.dept_wait($job)"
	# a longer job, cancelled while it runs
	M "SELECT public.dept_train('evil.reviews', 'label', adapter => 'm_sp', options => '{\"epochs\": 200}', wait => false)"
	job=$out
	[[ $job =~ ^[0-9]+$ ]] || job=1
	poll $db "SELECT coalesce((SELECT status <> 'queued' FROM dept.jobs WHERE id = $job), true)" 10
	M "SELECT public.dept_cancel($job)"
	M "SELECT public.dept_wait($job)"
	M "SELECT public.dept_activate('m_sp', 1)"
	M "SELECT pg_catalog.length(public.dept_export('m_sp'))"
	M "SELECT public.dept_import('m_sp_copy', public.dept_export('m_sp'))"
	M "SELECT public.dept_import('m_sp_copy', public.dept_export('m_sp'), false)"
	M "SELECT public.dept_predict('m_sp', 'a good film')"
	M "SELECT public.dept_predict('m_sp', '{\"a good film\",\"a bad film\"}'::pg_catalog.text[])"
	M "SELECT public.dept_predict_proba('m_sp', 'a good film')"
	M "SELECT public.dept_predict_proba('m_sp', '{\"a good film\",\"a bad film\"}'::pg_catalog.text[])"
	M "SELECT public.dept_evaluate('m_sp', 'evil.reviews', 'label', 'body')"
	M "SELECT public.dept_predict_value('m_reg', 'a good film')"
	M "SELECT public.dept_predict_value('m_reg', '{\"a good film\",\"a bad film\"}'::pg_catalog.text[])"
	M "SELECT public.dept_evaluate('m_reg', 'evil.reviews', 'score', 'body')"
	M "SELECT pg_catalog.array_length(public.dept_embed('a good film'), 1)"
	M "SELECT public.dept_tokenize('a good film')"
	M "SELECT public.dept_model_info()"
	M "SELECT public.dept_cosine('{1,0}'::pg_catalog.float4[], '{1,0}'::pg_catalog.float4[])"
	M "SELECT public.dept_schedule('m_sp', '0 3 * * *')"
	M "SELECT public.dept_unschedule('m_sp')"
	M "SELECT public.dept_register_model('m_model', '${bert:-/nonexistent}')"
	# DBA functions of later versions, where installed (mallory has EXECUTE)
	have dept_orphaned_adapters && M "SELECT pg_catalog.count(*) FROM public.dept_orphaned_adapters()"
	have dept_reassign_owned && M "SELECT public.dept_reassign_owned('sp_nobody', 'mallory')"
	have dept_drop_owned && M "SELECT public.dept_drop_owned('sp_nobody')"
	have dept_score && M "SELECT public.dept_wait(public.dept_score('m_sp', 'evil.keyed', 'id', 'body'))"
	have dept_explain && M "SELECT public.dept_explain('m_sp', 'a good film', 'gradient_x_input')"
	# the test split and its report: a version with test rows, and one without
	have dept_report && M "SELECT public.dept_train('evil.reviews', 'label', adapter => 'm_rep', method => 'probe', options => '{\"epochs\": 1, \"test_fraction\": 0.3}')"
	have dept_report && M "SELECT public.dept_report('m_rep'), public.dept_report('m_rep', 1), public.dept_report('m_sp')"
	have dept_is_test_row && M "SELECT pg_catalog.count(*) FROM evil.reviews WHERE public.dept_is_test_row(body, label, 0.3)"
	parallel=("SET parallel_setup_cost = 0" "SET parallel_tuple_cost = 0" "SET min_parallel_table_scan_size = 0"
		"SET max_parallel_workers_per_gather = 2" "SET $force_parallel = on")
	M "${parallel[@]}" "EXPLAIN (COSTS OFF) SELECT public.dept_predict('m_sp', body) FROM evil.many"
	grep -q 'Gather' <<<"$out" && grep -qE 'Workers Planned: [1-9]' <<<"$out"
	ok $? "dept_predict gets a parallel plan (search_path = $path)"
	M "${parallel[@]}" "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT public.dept_predict('m_sp', body) FROM evil.many"
	grep 'Workers Launched' <<<"$out" | sed 's/^ */#   /'
done

# the training worker, with mallory's search_path set on the role
# (first with the session's own path clean, so only the worker sees evil)
sql $db "ALTER ROLE mallory SET search_path = evil, pg_catalog, public" >/dev/null
run mallory "pg_catalog, public" "SELECT $train, wait => true)"
run mallory "" "SHOW search_path"
run mallory "" "SELECT $train, wait => true)"
run mallory "" "SELECT $train, wait => false)"
job=$out
[[ $job =~ ^[0-9]+$ ]] && run mallory "" "SELECT public.dept_wait($job)"
sql $db "ALTER ROLE mallory RESET search_path" >/dev/null

# a superuser with mallory's schema in the path (after pg_catalog)
run postgres "public, evil" "SELECT public.dept_train('evil.reviews', 'label', adapter => 'su_sp', method => 'probe', options => '{\"epochs\": 1}')"
[ -n "$bert" ] && run postgres "public, evil" "SELECT public.dept_register_model('su_bert', '$bert')"
run postgres "public, evil" "SELECT public.dept_predict('su_sp', 'a good film')"
have dept_orphaned_adapters && run postgres "public, evil" "SELECT pg_catalog.count(*) FROM public.dept_orphaned_adapters()"
have dept_reassign_owned && run postgres "public, evil" "SELECT public.dept_reassign_owned('sp_nobody', 'postgres')"
have dept_drop_owned && run postgres "public, evil" "SELECT public.dept_drop_owned('sp_nobody')"
have dept_score && run postgres "public, evil" "SELECT public.dept_wait(public.dept_score('su_sp', 'evil.keyed', 'id', 'body', 'public.su_scored'))"
have dept_report && run postgres "public, evil" "SELECT public.dept_report('m_rep')"

# every function of the extension (but trigger functions) was called above
uncalled=$(sql $db "SELECT string_agg(DISTINCT p.proname, ' ') FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
	JOIN pg_proc p ON p.oid = d.objid WHERE e.extname = 'dept' AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
	AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
	AND p.proname <> ALL ('{$(printf '%s\n' "${called[@]}" | sort -u | paste -sd,)}'::name[])")
is "$uncalled" "" "every entry point of the extension was called"

poll $db "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type IN ('dept training', 'dept scoring'))" 20 ||
	echo "# some training workers are still running"
sql $db "SELECT 'jobs: ' || string_agg(id || ' ' || adapter || ' ' || status || coalesce(' (' || left(error, 80) || ')', ''), '; ' ORDER BY id) FROM dept.jobs" | diag

# --- 5. no shadow ran, nobody became superuser -------------------------------
calls=$(sql $db "SELECT count(*) FROM evil.calls")
is "$calls" "0" "no shadowing function, operator or domain ran (evil.calls is empty)"
[ "$calls" != "0" ] && sql $db "SELECT by_role || ': ' || string_agg(DISTINCT name, ', ') FROM evil.calls GROUP BY by_role" | diag
is "$(sql $db "SELECT last_value || '/' || is_called FROM evil.call_count")" "$baseline" \
	"no shadow ran in a statement that was rolled back either (call counter unchanged)"
shadowlog=$(tail -c +$((logstart + 1)) "$dir/server.log" |
	sed -n 's/^\[\([^]]*\)\] WARNING: *dept-shadow-call: \(.*\)$/in \1: \2/p' | sort | uniq -c | sort -rn)
is "$(grep -c . <<<"$shadowlog")" "0" "no shadow call in the server log (training workers, parallel workers)"
[ -n "$shadowlog" ] && head -40 <<<"$shadowlog" | diag
is "$(sql $db "SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'")/${#escalated[@]}" "f/0" \
	"mallory is not superuser, and no call made her one (rolsuper / calls that did)"
[ "${#escalated[@]}" -gt 0 ] && printf '%s\n' "${escalated[@]}" | sed 's/^/made mallory superuser: /' | diag
crashes=$(tail -c +$((logstart + 1)) "$dir/server.log" | grep -a -cE 'was terminated by signal|terminating any other active server processes')
[ "$crashes" -gt 0 ] && echo "# the server crashed $crashes time(s) during the calls"

# --- 6. the extension in a non-default schema, pg_cron included ----------------
sql $db "CREATE DATABASE dept_ext" >/dev/null
sql $db "ALTER SYSTEM SET cron.database_name = 'dept_ext'" >/dev/null
"$root/scripts/pg-cluster.sh" stop "$dir"
"$root/scripts/pg-cluster.sh" start "$dir" "$port"
wait_for_server
sql dept_ext "CREATE EXTENSION pg_cron; CREATE SCHEMA ext; CREATE EXTENSION dept SCHEMA ext;
	CREATE TABLE reviews AS SELECT * FROM (VALUES ('positive', 'a good and great film'),
		('negative', 'a bad and awful film')) v(label, body), generate_series(1, 10) g" >/dev/null
ok $? "CREATE EXTENSION dept SCHEMA ext in a fresh database (with pg_cron)"
rundb=dept_ext run postgres "" "SELECT ext.dept_train('reviews', 'label', method => 'probe', options => '{\"epochs\": 1}')"
is "$out" "reviews_label" "in schema ext: dept_train works"
rundb=dept_ext run postgres "" "SELECT ext.dept_schedule('reviews_label', '0 3 * * *')"
[[ $out =~ ^[0-9]+$ ]]
ok $? "in schema ext: dept_schedule creates a pg_cron job"
cmd=$(sql dept_ext "SELECT command FROM cron.job WHERE jobname = 'dept:reviews_label'")
echo "# cron command: $cmd"
[[ $cmd =~ (^|[^._[:alnum:]\"])\"?ext\"?\.\"?dept_train\"?[[:space:]]*\( ]]
ok $? "the cron command calls dept_train qualified with the extension's schema"
cmdout=$(psql -X -qAt -v ON_ERROR_STOP=1 -d dept_ext -c "$cmd" 2>&1)
ok $? "the cron command runs as its owner with the default search_path"
[ -n "$cmdout" ] && head -5 <<<"$cmdout" | diag
is "$(sql dept_ext "SELECT count(*) FROM dept.adapters WHERE name = 'reviews_label'")" "2" \
	"and stores a new version"
is "$(sql dept_ext "SELECT ext.dept_unschedule('reviews_label')")" "t" "in schema ext: dept_unschedule removes the job"
finish
