#!/usr/bin/env bash
# Runs every Go fuzz target of the module (func FuzzXxx in *_test.go) for
# FUZZTIME each (default 5s), one after the other, and fails if any fails.
# Targets are found with grep, so new ones are picked up without editing
# this file. A failing input is written to the package's
# testdata/fuzz/FuzzXxx/ by go test: fix the bug, then commit it as a seed
# under a descriptive name.
#
#   FUZZTIME=1m bash hack/fuzz.sh          # longer runs
#   bash hack/fuzz.sh FuzzCDINames         # only targets matching a regexp
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
FUZZTIME=${FUZZTIME:-5s}
filter=${1:-.}

failed=()
n=0
# file:func pairs, sorted for a stable order.
while IFS=: read -r file target; do
	[[ $target =~ $filter ]] || continue
	pkg=./$(dirname "$file")
	n=$((n + 1))
	echo "=== fuzz $pkg $target ($FUZZTIME)"
	out=$(mktemp)
	set +e
	go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1 | tee "$out"
	status=${PIPESTATUS[0]}
	set -e
	if ((status != 0)) && grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written' "$out"; then
		# Go's fuzzing coordinator can report its own -fuzztime deadline
		# as a failure when it ends during a worker's call (no input is
		# at fault and none is written): run the target once more.
		echo "=== fuzz $pkg $target: the fuzzer's own deadline, not a crasher; once more"
		status=0
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" || status=$?
	fi
	if ((status != 0)); then
		failed+=("$pkg $target")
	fi
	rm -f "$out"
done < <(grep -rHoE --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)\(' --exclude-dir=hack . |
	sed -E 's#^\./##; s#:func (Fuzz[A-Za-z0-9_]+)\($#:\1#' | sort)

if ((n == 0)); then
	echo "no fuzz targets match $filter" >&2
	exit 1
fi
if ((${#failed[@]})); then
	printf 'FAIL: %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "ok: $n fuzz targets, $FUZZTIME each"
