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
go test -count=1 -timeout 60m "$@" ./...
