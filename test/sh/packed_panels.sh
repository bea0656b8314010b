#!/usr/bin/env bash
# The float32 panels of a registered model (ops/gemm_packed.h,
# dept.packed_weights) when the file that shares them cannot be written.
# The bert-tiny fixture is registered and a probe trained on it; with its
# private copy's directory read-only, a backend's predictions pack the
# weights, fail to write dept-packed-f32.bin, and then drop their private
# panels (dept_model_info's float32_panels_private_bytes 0) and predict
# exactly what they predict without panels.  Once the directory is
# writable again, a new backend writes the file and keeps no private copy.
# Needs root (to make the server's directory read-only) and AVX-512 (the
# panels); otherwise it says so and checks nothing else.
set -uo pipefail
. "$(dirname "$0")/tap.bash"
root=$(cd "$(dirname "$0")/../.." && pwd)
hf=${DEPT_HF_FIXTURES:-$root/test/fixtures/hf}/bert-tiny-random
dir=$(mktemp -d /tmp/dept-panels.XXXXXX)
entry=
cleanup() {
	[ -n "$entry" ] && chmod 0700 "$entry"
	rm -rf "$dir"
}
trap cleanup EXIT
db=postgres
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"

mkdir -p "$dir/m"
cp "$hf"/{config.json,model.safetensors,tokenizer.json,vocab.txt} "$dir/m/"
chmod -R a+rX "$dir"
sql $db "CREATE EXTENSION IF NOT EXISTS dept" >/dev/null
sql $db "DELETE FROM dept.adapters WHERE name = 'panels_probe'; DELETE FROM dept.jobs WHERE adapter = 'panels_probe';
	DELETE FROM dept.models WHERE name = 'panels-bert'" >/dev/null
sql $db "DROP TABLE IF EXISTS panels_rows; CREATE TABLE panels_rows AS
	SELECT CASE WHEN i % 2 = 0 THEN 'positive' ELSE 'negative' END AS label,
	       CASE WHEN i % 2 = 0 THEN 'a wonderful and moving film number ' ELSE 'a dull and boring film number ' END || i AS body
	FROM generate_series(1, 40) i" >/dev/null
sql $db "SELECT dept_register_model('panels-bert', '$dir/m')" >/dev/null
ok $? "the bert-tiny fixture registers"
is "$(sql $db "SELECT dept_train('panels_rows', 'label', 'body', adapter => 'panels_probe', method => 'probe',
	options => '{\"model\": \"panels-bert\", \"epochs\": 2}')")" "panels_probe" "a probe trains on it"

data=$(sql $db "SHOW data_directory")
entry=$(grep -lx "$dir/m" "$data"/pgsql_tmp_dept_models/*/source 2>/dev/null | head -1 | xargs -r dirname)
panels=$(sql $db "SELECT (dept_model_info()->>'float32_panels')::bool")
if [ "$(id -u)" -ne 0 ] || [ -z "$entry" ] || [ "$panels" != t ]; then
	echo "# skip: needs root, the model's private copy and AVX-512 (root $(id -u), copy '${entry}', panels $panels)"
	finish
	exit $?
fi
rm -f "$entry"/dept-packed-f32.bin
chmod 0555 "$entry"    # the server cannot write beside its copy

# one backend: 5 predictions with panels (the second tries to write the file), then without
predict="SELECT string_agg(dept_predict_proba('panels_probe', body)::text, ';' ORDER BY body) FROM panels_rows"
out=$(psql -X -qAt -v ON_ERROR_STOP=1 -d $db <<SQL
$predict;
$predict;
$predict;
SELECT dept_model_info()->>'float32_panels_private_bytes';
SET dept.packed_weights = off;
$predict;
SQL
)
ok $? "a backend predicts with the directory read-only"
mapfile -t lines <<<"$out"
is "${lines[3]}" "0" "after the failed write the backend holds no private panels"
is "${lines[2]}" "${lines[4]}" "and predicts exactly what it predicts without panels"
is "${lines[0]}" "${lines[4]}" "as it did while it held them"
[ ! -e "$entry/dept-packed-f32.bin" ]
ok $? "no file was written"

chmod 0700 "$entry"
out=$(psql -X -qAt -v ON_ERROR_STOP=1 -d $db <<SQL
$predict;
$predict;
SELECT dept_model_info()->>'float32_panels_private_bytes';
SQL
)
mapfile -t lines <<<"$out"
[ -s "$entry/dept-packed-f32.bin" ]
ok $? "with the directory writable a new backend writes dept-packed-f32.bin"
is "${lines[2]}" "0" "and maps it instead of keeping its own copy"
is "${lines[1]}" "${lines[0]}" "predictions through the file's panels are the same"

sql $db "DELETE FROM dept.adapters WHERE name = 'panels_probe'; DELETE FROM dept.jobs WHERE adapter = 'panels_probe';
	DELETE FROM dept.models WHERE name = 'panels-bert'; DROP TABLE panels_rows" >/dev/null
finish
