#!/usr/bin/env bash
# The disk full while a training job saves its adapter: the job ends failed
# with the storage error recorded, the catalog is consistent (one active
# version, every stored tensor readable), the previous version still
# serves, the server stays up, and once space is freed the next job stores
# its version.
#
# How the disk is made full.  When this script may mount (root with
# CAP_SYS_ADMIN, as in the CI container), dept.adapters and its TOAST table
# move to a tablespace on a 2 MB tmpfs: a real ENOSPC (53100 disk_full)
# from the kernel, exactly what a full volume gives.  Otherwise (an
# unprivileged container; or DEPT_DISKFULL_MODE=fsize) the server runs
# under RLIMIT_FSIZE (ulimit -f 24 MB, above the 16 MB WAL segments):
# PostgreSQL ignores SIGXFSZ, so growing a file past the limit fails with
# EFBIG, the same write path and error handling with another errno (and
# SQLSTATE XX000 instead of 53100).  In
# both cases the space is used up by updating version 1's tensors with
# random (incompressible) bytes inside a transaction that is rolled back:
# the TOAST file keeps its size (a rollback never shrinks a file;
# autovacuum is off), so the catalog holds nothing extra, and the next
# adapter stored must extend the file and fails.  Then the volume grows
# (remount) or the limit is lifted (prlimit on the postmaster, inherited by
# new backends), and the next job succeeds.  Uses its own cluster.
set -uo pipefail
. "$(dirname "$0")/tap.bash"
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/dept-diskfull.XXXXXX)
port=$(( ${PGPORT:-5499} + 10 ))
tiny=$dir/tiny
mode=${DEPT_DISKFULL_MODE:-}
mkdir -p "$tiny"
if [ -z "$mode" ]; then
	if mount -t tmpfs -o size=2m,mode=0700 tmpfs "$tiny" 2>/dev/null; then mode=tmpfs; else mode=fsize; fi
elif [ "$mode" = tmpfs ]; then
	mount -t tmpfs -o size=2m,mode=0700 tmpfs "$tiny" || exit 1
fi
cleanup() {
	"$root/scripts/pg-cluster.sh" stop "$dir"
	[ "$mode" = tmpfs ] && umount "$tiny"
	rm -rf "$dir"
}
trap cleanup EXIT
[ "$(id -u)" -eq 0 ] && chown postgres: "$tiny"
conf=$'autovacuum = off\nshared_preload_libraries = \'\''
as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
DEPT_PG_EXTRA_CONF=$conf "$root/scripts/pg-cluster.sh" start "$dir" "$port"
if [ "$mode" = fsize ]; then
	# restarted under a soft limit set after runuser (whose PAM session resets limits); the
	# server's own user may lift a soft limit again (prlimit below)
	bindir=$(pg_config --bindir)
	as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
	as_owner bash -c "ulimit -S -f $((24 * 1024)) && exec '$bindir/pg_ctl' -D '$dir/data' -l '$dir/server.log' -w -t 60 start" >/dev/null
fi
export PGHOST=$dir PGPORT=$port PGUSER=postgres
echo "# mode: $mode"
fixtures=${DEPT_FIXTURE_DIR:-$root/test/fixtures}
sql postgres "CREATE EXTENSION dept; CREATE TABLE reviews (label text, body text)" >/dev/null
tail -n +2 "$fixtures/sst2_train_600.tsv" | psql -X -q -c "\copy reviews FROM STDIN WITH (FORMAT csv, DELIMITER E'\t', QUOTE E'\x01')"
if [ "$mode" = tmpfs ]; then
	sql postgres "CREATE TABLESPACE tiny LOCATION '$tiny'"
	sql postgres "ALTER TABLE dept.adapters SET TABLESPACE tiny"
	is "$(sql postgres "SELECT count(*) FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace
		WHERE t.spcname = 'tiny' AND c.oid IN ('dept.adapters'::regclass, (SELECT reltoastrelid FROM pg_class WHERE oid = 'dept.adapters'::regclass))")" \
		"2" "dept.adapters and its TOAST table live on the 2 MB tmpfs"
fi

is "$(sql postgres "SELECT dept_train('reviews', 'label', adapter => 'full', method => 'probe', options => '{\"epochs\": 3}')" 2>/dev/null)" \
	"full" "version 1 trains and is stored"
want=$(sql postgres "SELECT string_agg(dept_predict('full', body), ',' ORDER BY body) FROM (SELECT body FROM reviews ORDER BY body LIMIT 50) s")
started=$(sql postgres "SELECT pg_postmaster_start_time()")

# Use up the space: random tensors for version 1, ever smaller, until the file cannot grow; then roll back.
fill=$(psql -X -qAt -v ON_ERROR_STOP=1 2>&1 <<'SQL'
BEGIN;
CREATE FUNCTION pg_temp.random_bytes(n int) RETURNS bytea LANGUAGE sql AS
	$$ SELECT decode(string_agg(md5(random()::text), ''), 'hex') FROM generate_series(1, (n + 15) / 16) $$;
DO $$
DECLARE
	sz int;
	full_at text;
	written bigint := 0;
BEGIN
	FOREACH sz IN ARRAY ARRAY[262144, 16384, 2048] LOOP
		LOOP
			-- the limit is 2 MB (tmpfs) or 24 MB (RLIMIT_FSIZE): never write much more
			written := written + sz;
			IF written > 64 * 1024 * 1024 THEN
				RAISE EXCEPTION 'wrote 64 MB without filling the disk';
			END IF;
			BEGIN
				UPDATE dept.adapters SET tensors = pg_temp.random_bytes(sz) WHERE name = 'full' AND version = 1;
			EXCEPTION WHEN disk_full OR io_error OR internal_error THEN
				IF SQLERRM NOT LIKE 'could not extend file%' THEN RAISE; END IF;
				full_at := SQLERRM;
				EXIT;
			END;
		END LOOP;
	END LOOP;
	RAISE NOTICE 'full: %', full_at;
END $$;
ROLLBACK;
SQL
)
echo "# $fill"
grep -q "full: could not extend file" <<<"$fill"
ok $? "the space is used up (the filling transaction could not extend the TOAST file)"
is "$(sql postgres "SELECT count(*) FROM dept.adapters")" "1" "and was rolled back: the catalog holds version 1 only"

out=$(psql -X -q -c '\set VERBOSITY verbose' -c "SELECT dept_train('reviews', 'label', adapter => 'full', options => '{\"prompt_length\": 8, \"max_length\": 32, \"batch_size\": 16, \"max_steps\": 3}', activate => 'always')" 2>&1)
echo "$out" | grep -E "ERROR|DETAIL" | sed 's/^/# /'
# ENOSPC is disk_full; PostgreSQL 15 maps EFBIG to no SQLSTATE of its own (internal_error)
if [ "$mode" = tmpfs ]; then code=53100; reason="No space left on device"; else code=XX000; reason="File too large"; fi
grep -q "$code" <<<"$out"
ok $? "dept_train fails with SQLSTATE $code"
job=$(sql postgres "SELECT max(id) FROM dept.jobs")
is "$(sql postgres "SELECT status FROM dept.jobs WHERE id = $job")" "failed" "the job is marked failed"
is "$(sql postgres "SELECT error LIKE '%could not extend file%$reason%' FROM dept.jobs WHERE id = $job")" "t" \
	"with the storage error recorded"
is "$(sql postgres "SELECT string_agg(version::text || ':' || active::text, ',') FROM dept.adapters WHERE name = 'full'")" \
	"1:true" "no partial version: version 1 is the only one, and active"
is "$(sql postgres "SELECT bool_and(length(tensors) > 0 AND substr(tensors, 1, 4) = 'DEPT'::bytea) FROM dept.adapters")" "t" \
	"every stored tensor is readable"
is "$(sql postgres "SELECT length(dept_export('full')) > 0")" "t" "the active version exports"
is "$(sql postgres "SELECT string_agg(dept_predict('full', body), ',' ORDER BY body) FROM (SELECT body FROM reviews ORDER BY body LIMIT 50) s")" \
	"$want" "version 1 still serves the same predictions"
is "$(sql postgres "SELECT pg_postmaster_start_time()")" "$started" "the server stayed up (no restart)"

# Space for the next job: the volume grows (tmpfs) or the limit is lifted for new backends (fsize).
if [ "$mode" = tmpfs ]; then
	mount -o remount,size=16m "$tiny"
else
	as_owner prlimit --pid "$(head -1 "$dir/data/postmaster.pid")" --fsize=unlimited
fi
is "$(sql postgres "SELECT dept_train('reviews', 'label', adapter => 'full', options => '{\"prompt_length\": 8, \"max_length\": 32, \"batch_size\": 16, \"max_steps\": 3}', activate => 'always')" 2>/dev/null)" \
	"full" "once there is space again, the next job stores its version"
is "$(sql postgres "SELECT string_agg(version::text || ':' || active::text, ',' ORDER BY version) FROM dept.adapters WHERE name = 'full'")" \
	"1:false,2:true" "as version 2, active"
finish
