#!/usr/bin/env bash
# The run command (README): installs dependencies, builds accel-cri and runs
# it with a demo (hack/demo.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:$PATH

bash hack/install-deps.sh
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
commit=$(git rev-parse --verify -q HEAD 2>/dev/null || echo unknown)
pkg=github.com/accel-cri/accel-cri/internal/version
go build -trimpath -ldflags "-X $pkg.Version=$version -X $pkg.Commit=$commit" -o bin/accel-cri ./cmd/accel-cri
exec bash hack/demo.sh
