#!/usr/bin/env bash
# The test command (README; .ci/run calls exactly this): installs what the
# tests need, checks formatting and vet, then runs every test: unit,
# integration against a real containerd, and end-to-end over the CRI socket.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:/usr/local/bin:$PATH

bash hack/install-deps.sh

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './vendor/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...

# The kubelet suite appends its time-to-running figures (accel-cri and
# containerd's own CRI) here; they are printed after the test run.
report=$(mktemp)
trap 'rm -f "$report"' EXIT
export KUBELET_E2E_REPORT=$report
status=0
go test -count=1 -timeout 60m "$@" ./... || status=$?
if [ -s "$report" ]; then
  echo "== kubelet e2e: time from manifest written to all containers running"
  cat "$report"
fi
exit $status
