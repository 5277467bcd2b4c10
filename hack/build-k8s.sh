#!/usr/bin/env bash
# Builds the one-node control plane of the cluster end-to-end suite
# (test/e2e/cluster) and `make cluster`, at the versions pinned in
# hack/tools/go.mod, into one cache directory per component and version, and
# reuses what is there:
#
#   hack/build-k8s.sh                 # all of them; prints "<component> <path>" lines
#   hack/build-k8s.sh kubectl etcd    # only these
#   K8S_CACHE_ROOT=/some/dir ...      # another cache root (default /var/cache/accel-cri)
#
# Components: etcd (go.etcd.io/etcd/server/v3 at the version k8s.io/kubernetes
# requires), kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
# (k8s.io/kubernetes/cmd/... with the k8s.io staging modules at the matching
# v0.x versions, see the replace block of hack/tools/go.mod), and kubelet,
# which hack/build-kubelet.sh builds into its own cache as before.
# Each lands in $K8S_CACHE_ROOT/<component>-<version>/<component>.
# Cached ones are instant. Cold ones, measured under nice -n 19 on 2 busy cores
# with an empty Go build cache (modules already downloaded), in this order:
# etcd 96s, kube-apiserver 620s, kube-controller-manager 308s, kube-scheduler
# 22s, kubectl 67s (each reuses what the ones before it compiled).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
mod=$here/tools/go.mod
k8s=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$mod")
etcd=$(awk '($1 == "require" && $2 == "go.etcd.io/etcd/server/v3") {print $3}' "$mod")
[ -n "$k8s" ] || { echo "build-k8s: no k8s.io/kubernetes in $mod" >&2; exit 1; }
[ -n "$etcd" ] || { echo "build-k8s: no go.etcd.io/etcd/server/v3 in $mod" >&2; exit 1; }
root=${K8S_CACHE_ROOT:-/var/cache/accel-cri}
export PATH=$PATH:/usr/local/go/bin

# version prints the version of component $1.
version() {
	case $1 in
	etcd) echo "$etcd" ;;
	*) echo "$k8s" ;;
	esac
}

# current succeeds when $2 is a built $1 of the wanted version.
current() {
	local c=$1 bin=$2 v out
	v=$(version "$c")
	[ -x "$bin" ] || return 1
	# Read all of the output first: grep -q stops reading at its match,
	# and the version command's SIGPIPE would fail the pipeline.
	case $c in
	etcd) out=$("$bin" --version 2>/dev/null) && grep -qx "etcd Version: ${v#v}" <<<"$out" ;;
	kubectl) out=$("$bin" version --client 2>/dev/null) && grep -qx "Client Version: $v" <<<"$out" ;;
	*) out=$("$bin" --version 2>/dev/null) && grep -qx "Kubernetes $v" <<<"$out" ;;
	esac
}

build() {
	local c=$1 v dir bin tmp pkg start major minor
	v=$(version "$c")
	dir=$root/$c-$v
	bin=$dir/$c
	if current "$c" "$bin"; then
		echo "$c $bin"
		return
	fi
	case $c in
	etcd) pkg=go.etcd.io/etcd/server/v3 ;;
	kube-apiserver | kube-controller-manager | kube-scheduler | kubectl) pkg=k8s.io/kubernetes/cmd/$c ;;
	*) echo "build-k8s: unknown component $c" >&2; return 1 ;;
	esac
	mkdir -p "$dir"
	tmp=$(mktemp "$dir/.$c.XXXXXX")
	trap 'rm -f "$tmp"' EXIT
	echo "build-k8s: building $c $v into $dir (takes minutes when cold)" >&2
	start=$(date +%s)
	major=${k8s#v}
	major=${major%%.*}
	minor=${k8s#v*.}
	minor=${minor%%.*}
	# The version variables the Kubernetes build sets (hack/lib/version.sh);
	# etcd's version is a constant of its api module.
	local x="-X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=$major"
	x+=" -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
	x+=" -X k8s.io/client-go/pkg/version.gitVersion=$k8s -X k8s.io/client-go/pkg/version.gitMajor=$major"
	x+=" -X k8s.io/client-go/pkg/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitTreeState=clean"
	(
		cd "$here/tools"
		CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off go build -trimpath -o "$tmp" -ldflags "-s -w $x" "$pkg"
	)
	mv -f "$tmp" "$bin"
	trap - EXIT
	echo "build-k8s: built $c in $(($(date +%s) - start))s" >&2
	current "$c" "$bin" || { echo "build-k8s: $bin does not report version $v" >&2; return 1; }
	echo "$c $bin"
}

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)
for c in "${components[@]}"; do
	if [ "$c" = kubelet ]; then
		echo "kubelet $(bash "$here/build-kubelet.sh")"
		continue
	fi
	build "$c"
done
