#!/usr/bin/env bash
# Training on a sample of a big table (issue 17, item 2): a 2,000,000-row
# table trains with max_rows => 20000 (a few steps here; the full run is a
# benchmark), the worker's peak memory stays bounded by the sample (read
# from /proc while it runs), the read phase reports progress as NOTICEs,
# the stratified sample keeps a rare label, and what was read and used is
# stored with the version.
set -uo pipefail
. "$(dirname "$0")/tap.bash"
db=dept_big
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
sql $db "CREATE EXTENSION dept;
	CREATE TABLE big AS SELECT
		CASE WHEN i % 1000 = 0 THEN 'rare' WHEN i % 2 = 0 THEN 'even' ELSE 'odd' END AS label,
		'review ' || i || CASE WHEN i % 2 = 0 THEN ': a wonderful, moving film' ELSE ': a dull, lifeless film' END AS body
	FROM generate_series(1, 2000000) i" >/dev/null
is "$(sql $db "SELECT count(*) FROM big")" "2000000" "a table of 2,000,000 rows"

log=$(mktemp)
psql -X -qAt -d $db -c "SET client_min_messages = notice" -c "SELECT dept_train('big', 'label',
	options => '{\"max_rows\": 20000, \"max_steps\": 3, \"max_length\": 16, \"prompt_length\": 4,
	             \"valid_fraction\": 0.05, \"seed\": 7}')" >"$log" 2>&1 &
caller=$!
peak_kb=0
while kill -0 $caller 2>/dev/null; do
	pid=$(sql $db "SELECT worker_pid FROM dept.jobs WHERE adapter = 'big_label' AND status = 'running'" 2>/dev/null)
	if [ -n "$pid" ] && [ -r "/proc/$pid/status" ]; then
		kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
		[ -n "$kb" ] && [ "$kb" -gt "$peak_kb" ] && peak_kb=$kb
	fi
	sleep 0.2
done
wait $caller
ok $? "dept_train with max_rows => 20000 succeeds"
grep -qE "2000000 rows read, 20000 used, [0-9]+ held out for the test report \(a sample of 20000 of them scored\); training about 3 steps" "$log"
ok $? "the read phase reports progress as NOTICEs"
grep -E "reading rows|rows read" "$log" | sed 's/^/# /'
is "$(sql $db "SELECT train_rows + valid_rows FROM dept.adapters WHERE name = 'big_label'")" "20000" \
	"20,000 rows are used"
is "$(sql $db "SELECT hyperparameters -> 'sample' ->> 'method', hyperparameters -> 'sample' ->> 'rows_read'
	FROM dept.adapters WHERE name = 'big_label'" | tr '|' ' ')" "stratified 2000000" \
	"the version stores the method and the 2,000,000 rows read"
is "$(sql $db "SELECT metrics -> 'test' ->> 'rows', (metrics -> 'test' ->> 'test_rows_found')::int > 150000
	FROM dept.adapters WHERE name = 'big_label'" | tr '|' ' ')" "20000 t" \
	"the default test split holds out about 10% of the rows and scores a sample of max_rows of them"
is "$(sql $db "SELECT labels FROM dept.adapters WHERE name = 'big_label'")" "{even,odd,rare}" \
	"the stratified sample keeps the rare label (0.1% of rows)"
echo "# worker peak resident memory: $((peak_kb / 1024)) MB"
# the model files are mapped (about 30 MB), the sample holds 20,000 short texts:
# a worker that held the 2,000,000 rows would pass 1 GB in texts and token ids
if [ "$peak_kb" -gt 0 ]; then
	[ "$peak_kb" -lt $((600 * 1024)) ]
	ok $? "the worker's peak memory stays under 600 MB"
else
	echo "ok $((n += 1)) - # SKIP /proc of the worker is not readable here"
fi
rm -f "$log"
psql -X -q -d postgres -c "DROP DATABASE $db" >/dev/null
finish
