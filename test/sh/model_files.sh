#!/usr/bin/env bash
# Model files removed or truncated under running backends.  Backends map a
# private copy of the model (model_cache.c), so a running backend keeps
# serving the same answers when the source files go away or are truncated
# to 0 bytes in place (which, on a mapped file, would raise SIGBUS and make
# the postmaster restart the server); a new backend gives the loader's
# clear error (58P01 for a missing file, XX001 for a truncated one), and
# serves again once the files are back.  The server never restarts.
# Uses its own cluster with dept.model_path on a copy of the installed
# model it can damage.
set -uo pipefail
. "$(dirname "$0")/tap.bash"
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/dept-modelfiles.XXXXXX)
port=$(( ${PGPORT:-5499} + 8 ))
model=$dir/model
installed=$(pg_config --sharedir)/dept/models/use-lite
cleanup() {
	kill $(jobs -p) 2>/dev/null
	"$root/scripts/pg-cluster.sh" stop "$dir"
	rm -rf "$dir"
}
trap cleanup EXIT
mkdir -p "$model" && cp "$installed"/* "$model/"
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$model"
DEPT_PG_EXTRA_CONF="dept.model_path = '$model'" "$root/scripts/pg-cluster.sh" start "$dir" "$port"
export PGHOST=$dir PGPORT=$port PGUSER=postgres
fixtures=${DEPT_FIXTURE_DIR:-$root/test/fixtures}
sql postgres "CREATE EXTENSION dept; CREATE TABLE reviews (label text, body text)" >/dev/null
tail -n +2 "$fixtures/sst2_train_600.tsv" | psql -X -q -c "\copy reviews FROM STDIN WITH (FORMAT csv, DELIMITER E'\t', QUOTE E'\x01')"
is "$(sql postgres "SELECT dept_train('reviews', 'label', adapter => 'files', method => 'probe', options => '{\"epochs\": 3}')" 2>/dev/null)" \
	"files" "a probe trains on the model copy"
started=$(sql postgres "SELECT pg_postmaster_start_time()")
# the answers, and a digest of embeddings (every weight takes part), in one session
check="SELECT md5(string_agg(dept_predict('files', body) || ':' || (SELECT round(sum(abs(x))::numeric, 3) FROM unnest(dept_embed(body)) x), ',' ORDER BY body)) FROM (SELECT body FROM reviews ORDER BY body LIMIT 40) s;"
want=$(sql postgres "$check")
# the first backend left the compiled tokenizer in the private copy (formats/compiled.h)
compiled=$(ls "$dir"/data/pgsql_tmp_dept_models/*/dept-compiled.bin 2>/dev/null | head -1)
ok $([ -n "$compiled" ]; echo $?) "the private copy holds the compiled file"
is "$(sql postgres "$check")" "$want" "a new backend reading the compiled file answers the same"
truncate -s 100 "$compiled"
is "$(sql postgres "$check")" "$want" "a new backend past a damaged compiled file answers the same"
ok $([ "$(stat -c %s "$compiled")" -gt 100000 ]; echo $?) "and writes the compiled file again"

# A long-lived session (one backend) behind two FIFOs: session NAME; ask NAME QUERY.
session() {
	mkfifo "$dir/$1.in" "$dir/$1.out"
	psql -X -qAt -d postgres <"$dir/$1.in" >"$dir/$1.out" 2>&1 &
	eval "exec {${1}_w}>\"\$dir/$1.in\" {${1}_r}<\"\$dir/$1.out\""
}
ask() {
	local w=${1}_w r=${1}_r line
	echo "$2" >&"${!w}"
	read -t 60 -r line <&"${!r}"
	echo "$line"
}
ask_p() { ask P "$1"; }
ask_q() { ask Q "$1"; }
# Two backends with the model loaded: P from the start, Q after the files are restored.
session P
is "$(ask_p "$check")" "$want" "a running backend loads the model and answers"

# 1. A shard removed.
rm "$model/group1-shard3of7"
is "$(ask_p "$check")" "$want" "the running backend still answers the same after a shard is removed"
out=$(psql -X -q -c '\set VERBOSITY verbose' -c "SELECT dept_predict('files', 'a new backend')" 2>&1)
grep -q "58P01" <<<"$out"
ok $? "a new backend gives 58P01 for the missing shard"
grep -q "group1-shard3of7" <<<"$out" && grep -q "$model" <<<"$out"
ok $? "naming the shard in the source directory"

# 2. The files back: new backends serve again (from a new private copy).
cp "$installed/group1-shard3of7" "$model/" && [ "$(id -u)" -eq 0 ] && chown postgres: "$model/group1-shard3of7"
is "$(sql postgres "$check")" "$want" "a new backend serves again once the shard is back"
session Q
is "$(ask_q "$check")" "$want" "a second running backend loads the restored model"
is "$(ls "$dir/data/pgsql_tmp_dept_models" | wc -l)" "1" "one private copy is left: the older one was pruned"

# 3. Every shard truncated to 0 bytes in place.
truncate -s 0 "$model"/group1-shard*
is "$(ask_p "$check")" "$want" "the first backend (older copy) still answers the same after truncation"
is "$(ask_q "$check")" "$want" "the second backend (newer copy) still answers the same after truncation"
out=$(psql -X -q -c '\set VERBOSITY verbose' -c "SELECT dept_predict('files', 'a new backend')" 2>&1)
grep -q "XX001" <<<"$out"
ok $? "a new backend gives XX001 for the truncated shards"

# 4. The whole directory removed.
rm -rf "$model"
is "$(ask_p "$check")" "$want" "the running backend still answers after the model directory is removed"
out=$(psql -X -q -c '\set VERBOSITY verbose' -c "SELECT dept_predict('files', 'a new backend')" 2>&1)
grep -q "58P01" <<<"$out"
ok $? "a new backend gives 58P01 for the missing directory"

is "$(sql postgres "SELECT pg_postmaster_start_time()")" "$started" "the server never restarted"
grep -q "terminated by signal" "$dir/server.log"
ok $(( ! $? )) "no backend was killed by a signal"
echo '\q' >&"$P_w"
echo '\q' >&"$Q_w"
finish
