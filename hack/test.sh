#!/usr/bin/env bash
# The test command (README; .ci/run calls exactly this): installs what the
# tests need, checks formatting and vet, then runs every test: unit,
# integration against a real containerd, end-to-end over the CRI socket, and
# the CRI conformance suite critest (test/e2e/critest, docs/conformance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:$PATH

bash hack/install-deps.sh --test

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './vendor/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
go vet -tags bench ./test/bench
go vet -tags chaos ./test/chaos
go vet -tags soak ./test/chaos
go vet -tags cluster ./test/e2e/cluster

# The kubelet suite appends its time-to-running figures (accel-cri and
# containerd's own CRI) here; they are printed after the test run.
report=$(mktemp)
# The CRI conformance suite appends its counts and failed specs here.
critest_report=$(mktemp)
trap 'rm -f "$report" "$critest_report"' EXIT
export KUBELET_E2E_REPORT=$report CRITEST_E2E_REPORT=$critest_report
status=0
go test -count=1 -timeout 60m "$@" ./... || status=$?

# A one-node Kubernetes cluster on accel-cri (docs/kubelet.md): Deployments,
# Jobs, kubectl streaming, RuntimeClass, device Jobs and bad input through
# the API server (make cluster-e2e).
go test -tags cluster -count=1 -timeout 40m "$@" ./test/e2e/cluster || status=$?

# Benchmarks are not timed tests: a small A/B run against containerd's own
# CRI proves the benchmark works (make bench measures; docs/benchmarks.md).
go test -count=1 -timeout 10m -tags bench ./test/bench \
  -args -pods 4 -concurrency 1,8 -rounds 1 -list-pods 10 -list-iterations 20 || status=$?

# The chaos suite at CI size: >= 20 SIGKILLs of accel-cri and its containerd
# during pod churn, state checked after each restart, leftovers counted.
make chaos-ci || status=$?

# Every fuzz target for a few seconds, from its committed seed corpus on.
FUZZTIME=${FUZZTIME:-4s} bash hack/fuzz.sh || status=$?
if [ -s "$critest_report" ]; then
  echo "== critest: CRI conformance (docs/conformance.md)"
  cat "$critest_report"
fi
if [ -s "$report" ]; then
  echo "== kubelet e2e: time from manifest written to all containers running"
  cat "$report"
fi
exit $status
