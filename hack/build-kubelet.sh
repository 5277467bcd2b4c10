#!/usr/bin/env bash
# Builds the kubelet pinned in hack/tools/go.mod for the kubelet end-to-end
# suite (test/e2e/kubelet) into a cache directory, and reuses it when present.
#
#   hack/build-kubelet.sh            # builds (or reuses) and prints the path
#   KUBELET_CACHE_DIR=/some/dir ...  # another cache directory
#
# The kubelet comes from the Go module proxy (k8s.io/kubernetes plus its
# k8s.io staging modules at the matching v0.x versions, see hack/tools/go.mod).
# A cold build takes about 5 minutes on 2 cores; a cached one is instant.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/tools/go.mod")
[ -n "$version" ] || { echo "build-kubelet: no k8s.io/kubernetes in hack/tools/go.mod" >&2; exit 1; }
dir=${KUBELET_CACHE_DIR:-/var/cache/accel-cri/kubelet-$version}
bin=$dir/kubelet

if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "Kubernetes $version\$"; then
	echo "$bin"
	exit 0
fi

export PATH=$PATH:/usr/local/go/bin
mkdir -p "$dir"
tmp=$(mktemp "$dir/.kubelet.XXXXXX")
trap 'rm -f "$tmp"' EXIT
echo "build-kubelet: building kubelet $version into $dir (takes minutes when cold)" >&2
start=$(date +%s)
(
	cd "$here/tools"
	# kubelet --version prints gitVersion; set it as the kubernetes build does.
	CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off go build -trimpath -o "$tmp" \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/client-go/pkg/version.gitVersion=$version" \
		k8s.io/kubernetes/cmd/kubelet
)
mv -f "$tmp" "$bin"
trap - EXIT
echo "build-kubelet: built in $(($(date +%s) - start))s" >&2
echo "$bin"
