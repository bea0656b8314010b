#!/usr/bin/env bash
# Run the C unit test binaries given as arguments (TAP output), print each
# one's result and a closing "N passed, N failed" line counting test cases.
set -uo pipefail
passed=0
failed=0
for bin in "$@"; do
	out=$("$bin" 2>&1)
	rc=$?
	echo "$out" | sed "s|^|$(basename "$bin"): |"
	p=$(grep -c '^ok ' <<<"$out")
	f=$(grep -c '^not ok ' <<<"$out")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1    # crashed or exited early
		echo "$(basename "$bin"): exited with status $rc"
	fi
	passed=$((passed + p))
	failed=$((failed + f))
done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
