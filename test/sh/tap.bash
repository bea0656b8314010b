# test/sh/tap.bash: TAP helpers for the shell tests (run by prove).
# Expects PGHOST, PGPORT, PGUSER and DEPT_TEST_PGDIR (the cluster's directory).
n=0
failed=0
ok() {       # ok CONDITION-EXIT-STATUS DESCRIPTION
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=$((failed + 1)); fi
}
is() {       # is HAVE WANT DESCRIPTION
	n=$((n + 1))
	if [ "$1" = "$2" ]; then echo "ok $n - $3"; else
		echo "not ok $n - $3"; echo "#   have: '$1'"; echo "#   want: '$2'"; failed=$((failed + 1)); fi
}
sql() {      # sql DB QUERY: one value, unaligned
	psql -X -qAt -v ON_ERROR_STOP=1 -d "$1" -c "$2"
}
wait_for_server() {   # up to 60 s
	for _ in $(seq 1 600); do
		pg_isready -q && psql -X -qAt -d postgres -c 'SELECT 1' >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}
poll() {     # poll DB QUERY SECONDS: until QUERY returns t
	local deadline=$(( $(date +%s) + $3 ))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		[ "$(sql "$1" "$2" 2>/dev/null)" = "t" ] && return 0
		sleep 0.2
	done
	return 1
}
finish() {
	echo "1..$n"
	[ "$failed" -eq 0 ]
}
