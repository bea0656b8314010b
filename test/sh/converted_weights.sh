#!/usr/bin/env bash
# BF16 weights converted once per model copy and mapped by every backend
# (formats/f32_sidecar.h, model_cache.c).  A BF16 copy of the bert-tiny
# fixture and an F32 copy holding the same values are registered; the
# first backend to load the BF16 one leaves model.safetensors.dept-f32 in
# its private copy ($PGDATA/pgsql_tmp_dept_models/<key>/), a new backend
# maps it (seen in /proc/PID/maps), and two new backends predict exactly
# what the F32 model predicts.  With the copy's directory read-only (no
# sidecar can be written) and the sidecar removed, a new backend converts
# in private memory and still predicts the same; a truncated sidecar is
# ignored and written again; the temporary files of a writer that died
# are removed.  The user's model directory gets no file.  The training
# memory estimate counts the sidecar with the model's files.
set -uo pipefail
. "$(dirname "$0")/tap.bash"
root=$(cd "$(dirname "$0")/../.." && pwd)
hf=${DEPT_HF_FIXTURES:-$root/test/fixtures/hf}/bert-tiny-random
dir=$(mktemp -d /tmp/dept-converted.XXXXXX)
trap 'rm -rf "$dir"' EXIT
db=postgres
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"

# the fixture's F32 weights rounded to BF16 (bf16/), and those values back in F32 (f32/)
mkdir -p "$dir/bf16" "$dir/f32"
python3 - "$hf/model.safetensors" "$dir" <<'PY'
import array, json, struct, sys
src, out = sys.argv[1], sys.argv[2]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
data = raw[8 + n:]
def write(path, dtype, pieces):
    hdr, off = {}, 0
    for name, shape, blob in pieces:
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(blob)]}
        off += len(blob)
    text = json.dumps(hdr, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(p[2] for p in pieces))
bf16, f32 = [], []
for name, e in header.items():
    if name == "__metadata__":
        continue
    assert e["dtype"] == "F32"
    bits = array.array("I", data[e["data_offsets"][0]:e["data_offsets"][1]])
    half = array.array("H", [(b + 0x7FFF + ((b >> 16) & 1)) >> 16 for b in bits])
    bf16.append((name, e["shape"], half.tobytes()))
    f32.append((name, e["shape"], array.array("I", [h << 16 for h in half]).tobytes()))
write(out + "/bf16/model.safetensors", "BF16", bf16)
write(out + "/f32/model.safetensors", "F32", f32)
PY
ok $? "BF16 and F32 copies of the bert-tiny fixture written"
for d in bf16 f32; do cp "$hf"/{config.json,tokenizer.json,vocab.txt} "$dir/$d/"; done
chmod -R a+rX "$dir"

data=$(sql $db "SHOW data_directory")
cache=$data/pgsql_tmp_dept_models
# the private copy of a source directory
entry_of() { grep -lx "$1" "$cache"/*/source 2>/dev/null | head -1 | xargs -r dirname; }

sql $db "CREATE EXTENSION IF NOT EXISTS dept" >/dev/null
sql $db "DELETE FROM dept.adapters WHERE name LIKE 'conv\_%'; DELETE FROM dept.jobs WHERE adapter LIKE 'conv\_%';
	DELETE FROM dept.models WHERE name LIKE 'conv-%';
	DROP TABLE IF EXISTS conv_reviews;
	CREATE TABLE conv_reviews AS SELECT CASE WHEN i % 2 = 0 THEN 'positive' ELSE 'negative' END AS label,
		CASE WHEN i % 2 = 0 THEN 'a wonderful and moving film number ' ELSE 'a dull and boring film number ' END || i AS body
		FROM generate_series(1, 40) i" >/dev/null
is "$(sql $db "SELECT dept_register_model('conv-bf16', '$dir/bf16') ->> 'family'")" "bert" "the BF16 copy registers"
is "$(sql $db "SELECT dept_register_model('conv-f32', '$dir/f32') ->> 'family'")" "bert" "the F32 copy registers"
bf16_entry=$(entry_of "$dir/bf16")
f32_entry=$(entry_of "$dir/f32")
ok $([ -n "$bf16_entry" ] && [ -f "$bf16_entry/model.safetensors.dept-f32" ]; echo $?) \
	"the BF16 model's private copy holds its float32 sidecar"
ok $([ -n "$f32_entry" ] && [ ! -e "$f32_entry/model.safetensors.dept-f32" ]; echo $?) \
	"the F32 model's copy has none"
is "$(ls "$dir/bf16" | grep -c dept-f32)" "0" "nothing is written into the source directory"

# dept.max_training_memory counts what the worker maps: a model's files, and for the BF16
# one its float32 sidecar too; bfloat16 training adds the float32 weights once more
model_files() {   # model_files MODEL PRECISION: "N MB of model files" of a refused run
	psql -X -qAt -d $db -c "SET dept.max_training_memory = '1MB'" -c "SELECT dept_train('conv_reviews',
		'label', 'body', adapter => 'conv_refused', method => 'probe',
		options => '{\"model\": \"$1\", \"precision\": \"$2\"}')" 2>&1 |
		grep -o '[0-9.]* [kMG]B of model files'
}
bytes_of() { stat -c %s "$@" | awk '{s += $1} END {print s}'; }
as_estimate() {   # bytes as the estimate prints them, then " of model files"
	python3 -c "import math, sys; b = float(sys.argv[1]);
print(('%.1f MB' % (b / 1048576) if b >= 1048576 else '%.0f kB' % math.ceil(b / 1024)) + ' of model files')" "$1"
}
files=(config.json model.safetensors tokenizer.json vocab.txt)
f32_files=$(cd "$dir/f32" && bytes_of "${files[@]}")
bf16_files=$(cd "$dir/bf16" && bytes_of "${files[@]}")
sidecar=$(bytes_of "$bf16_entry/model.safetensors.dept-f32")
bf16_rest=$((bf16_files - $(bytes_of "$dir/bf16/model.safetensors")))
is "$(model_files conv-f32 float32)" "$(as_estimate "$f32_files")" "an F32 model: its files"
is "$(model_files conv-bf16 float32)" "$(as_estimate $((bf16_files + sidecar)))" \
	"a BF16 model: its files and the float32 sidecar the worker maps ($sidecar bytes)"
is "$(model_files conv-f32 bfloat16)" "$(as_estimate $((2 * f32_files)))" \
	"an F32 model trained in bfloat16: its files twice"
is "$(model_files conv-bf16 bfloat16)" "$(as_estimate $((bf16_files + 2 * sidecar + bf16_rest)))" \
	"a BF16 model trained in bfloat16: its files, the sidecar, and the float32 weights again"

for m in bf16 f32; do
	sql $db "SELECT dept_train('conv_reviews', 'label', 'body', adapter => 'conv_$m', method => 'probe',
		options => '{\"model\": \"conv-$m\", \"epochs\": 3}')" >/dev/null
done
is "$(sql $db "SELECT count(*) FROM dept.adapters WHERE name IN ('conv_bf16', 'conv_f32') AND active")" "2" \
	"a probe trains on each"
# each call a new backend: the BF16 model loaded from the sidecar
check="SELECT md5(string_agg(dept_predict_proba('conv_\$m', body)::text, ',' ORDER BY body)) FROM conv_reviews"
want=$(sql $db "${check//\$m/f32}")
is "$(sql $db "${check//\$m/bf16}")" "$want" "a new backend mapping the sidecar predicts what the F32 model does"
is "$(sql $db "${check//\$m/bf16}")" "$want" "and a second new backend too"
# a session that stays, to read its maps
mkfifo "$dir/in"
psql -X -qAt -d $db <"$dir/in" >"$dir/out" 2>&1 &
exec {w}>"$dir/in"
echo "SELECT dept_predict('conv_bf16', 'a film') IS NOT NULL; SELECT pg_backend_pid();" >&$w
for _ in $(seq 1 100); do [ "$(wc -l <"$dir/out")" -ge 2 ] && break; sleep 0.1; done
pid=$(sed -n 2p "$dir/out")
grep -q "model.safetensors.dept-f32" "/proc/$pid/maps" 2>/dev/null
ok $? "a backend with the BF16 model loaded maps the sidecar"
exec {w}>&-
wait

# the converting path: no sidecar and none can be written (the copy read-only)
rm -f "$bf16_entry/model.safetensors.dept-f32"
chmod 500 "$bf16_entry"
is "$(sql $db "${check//\$m/bf16}")" "$want" "without a sidecar a new backend converts and predicts the same"
ok $([ ! -e "$bf16_entry/model.safetensors.dept-f32" ]; echo $?) "(no sidecar could be written)"
chmod 700 "$bf16_entry"
is "$(sql $db "${check//\$m/bf16}")" "$want" "the next new backend writes it again and predicts the same"
ok $([ -f "$bf16_entry/model.safetensors.dept-f32" ]; echo $?) "the sidecar is back"
size=$(stat -c %s "$bf16_entry/model.safetensors.dept-f32")
truncate -s 4096 "$bf16_entry/model.safetensors.dept-f32"
is "$(sql $db "${check//\$m/bf16}")" "$want" "a new backend past a truncated sidecar predicts the same"
is "$(stat -c %s "$bf16_entry/model.safetensors.dept-f32")" "$size" "and writes it again whole"

# what a backend that died while writing left is removed by the next one; other files stay
sleep 0 & dead=$!
wait $dead
touch "$bf16_entry/model.safetensors.dept-f32.tmp.$dead" "$bf16_entry/dept-compiled.bin.tmp.$dead" \
	"$bf16_entry/model.safetensors.tmp.$dead"
is "$(sql $db "${check//\$m/bf16}")" "$want" "a new backend predicts the same"
is "$(cd "$bf16_entry" && ls | grep "\.tmp\.$dead" | tr '\n' ' ')" "model.safetensors.tmp.$dead " \
	"and removes the temporary files of a dead writer, only those"

sql $db "DELETE FROM dept.adapters WHERE name LIKE 'conv\_%'; DELETE FROM dept.jobs WHERE adapter LIKE 'conv\_%';
	DELETE FROM dept.models WHERE name LIKE 'conv-%'; DROP TABLE conv_reviews" >/dev/null
rm -rf "$bf16_entry" "$f32_entry"   # their sources go with $dir
finish
