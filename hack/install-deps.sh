#!/usr/bin/env bash
# Installs what accel-cri needs to build and run on Debian bookworm, as root;
# with --test, also what its tests need.
#
#   hack/install-deps.sh          # running: hack/run.sh
#   hack/install-deps.sh --test   # every test: hack/test.sh
#
# Idempotent: it only does what is missing. A second run changes nothing and
# takes a second or two.
#
#   - Debian packages (apt-get update only when one is missing):
#     crun, runsc (gVisor), CNI plugins, docker-registry, busybox-static, iptables, iproute2, ...
#   - runc $RUNC_VERSION, built from the Go module proxy (cgo, libseccomp, tag
#     seccomp) into $RUNC_BINARY, the OCI runtime accel-cri's default config
#     names. Debian's runc (1.1) may stay installed; pods do not run on it.
#   - containerd + containerd-shim-runc-v2 $CONTAINERD_VERSION (go install),
#     the same version as accel-cri's containerd Go client (go.mod)
#   - crictl $CRI_TOOLS_VERSION (go install)
#   - CRIU 4.1.1 for checkpoint/restore (hack/build-criu.sh: the upstream
#     tarball of Debian trixie's source package through a private apt source
#     list, checked against its signed index, built and cached per version in
#     /var/cache/accel-cri, installed as /usr/local/sbin/criu)
#   - --test only: critest $CRI_TOOLS_VERSION (the CRI conformance suite that
#     test/e2e/critest runs; built with go test -c as cri-tools' Makefile does),
#     the busybox of Debian's busybox package for critest's stand-in images
#     (hack/testimages/critest.go), and kubelet (hack/build-kubelet.sh:
#     hack/tools/go.mod's version, cached in /var/cache/accel-cri) for the
#     kubelet end-to-end suite (test/e2e/kubelet), and etcd, kube-apiserver,
#     kube-controller-manager, kube-scheduler and kubectl (hack/build-k8s.sh,
#     cached the same way) for the cluster suite (test/e2e/cluster) and
#     `make cluster`
#
# Go >= 1.26 must already be installed (/usr/local/go/bin is added to PATH).
#
# Debian's docker-registry package ships a system service on :5000. The tests
# and the demo run their own registries (test/e2e/framework.StartRegistry,
# hack/testimages), so the service is kept from starting and disabled.
set -euo pipefail

CONTAINERD_VERSION=2.4.2 # keep equal to github.com/containerd/containerd/v2 in go.mod
CRI_TOOLS_VERSION=1.37.0 # crictl and critest
RUNC_VERSION=1.5.3
RUNC_BINARY=/usr/local/sbin/runc # config.DefaultRuncBinary
GO_MIN_MINOR=26                  # Go 1.26
BIN_DIR=/usr/local/bin

with_tests=false
case ${1:-} in
--test) with_tests=true ;;
"") ;;
*)
	echo "usage: $0 [--test]" >&2
	exit 2
	;;
esac

APT_PACKAGES=(
	libseccomp-dev # runc's seccomp support (cgo)
	pkg-config     # finds libseccomp for runc's build
	crun  # second OCI runtime handler (e2e: handler routing)
	runsc # gVisor, a sandboxed runtime handler (e2e); no containerd-shim-runsc-v1 in Debian
	containernetworking-plugins
	docker-registry
	busybox-static
	iptables
	iproute2
	util-linux # nsenter, unshare
	ca-certificates
	curl # hack/demo.sh waits for the registry with it
	make # the Makefile shortcuts
	git
	gcc
	libc6-dev
	ffmpeg # the media job e2e test: ffmpeg and its ldd closure become a test image; ffprobe checks the result
)

log() { echo "install-deps: $*" >&2; }
die() {
	echo "install-deps: error: $*" >&2
	exit 1
}

[[ $(id -u) -eq 0 ]] || die "run as root"
[[ -r /etc/debian_version ]] || die "this script is for Debian (bookworm)"

export PATH="/usr/local/go/bin:$BIN_DIR:$PATH"
export DEBIAN_FRONTEND=noninteractive

# --- Go ----------------------------------------------------------------------
command -v go >/dev/null || die "Go >= 1.$GO_MIN_MINOR not found (expected in /usr/local/go/bin); install it first"
gov=$(go env GOVERSION) # e.g. go1.26.8
if [[ ! $gov =~ ^go1\.([0-9]+) ]] || ((BASH_REMATCH[1] < GO_MIN_MINOR)); then
	die "Go >= 1.$GO_MIN_MINOR needed, found $gov"
fi
log "go: $gov"

# --- Debian packages -----------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
	if [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null) != "ii "* ]]; then
		missing+=("$p")
	fi
done
if ((${#missing[@]})); then
	log "installing ${missing[*]}"
	# Keep package scripts from starting services (docker-registry on :5000)
	# during this install, unless the machine already has a policy.
	policy=/usr/sbin/policy-rc.d
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\n# accel-cri install-deps: no service starts during install\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		trap 'rm -f "$policy"' EXIT
	fi
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
else
	log "Debian packages: all installed"
fi

/bin/busybox --list 2>/dev/null | grep -qx sh || die "/bin/busybox is not a working busybox (package busybox-static)"

# Debian's docker-registry service: not used, keep it off.
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
	if systemctl is-enabled --quiet docker-registry.service 2>/dev/null ||
		systemctl is-active --quiet docker-registry.service 2>/dev/null; then
		log "disabling Debian's docker-registry service"
		systemctl disable --now docker-registry.service
	fi
elif [[ -x /etc/init.d/docker-registry ]] && /etc/init.d/docker-registry status >/dev/null 2>&1; then
	log "stopping Debian's docker-registry service"
	/etc/init.d/docker-registry stop
fi

# --- Go-built binaries ---------------------------------------------------------

# go_install MODULE VERSION PKG [LDFLAGS]: installs MODULE/PKG@VERSION into
# BIN_DIR. `go install pkg@version` also asks the module proxy for the module's
# version list (deprecation check); when that is refused, build the same
# version from its downloaded source instead.
go_install() {
	local module=$1 version=$2 pkg=$3 ldflags=${4:-}
	local args=()
	[[ -n $ldflags ]] && args=(-trimpath -ldflags "$ldflags")
	log "installing $module/$pkg@$version"
	if GOBIN=$BIN_DIR GOWORK=off go install "${args[@]}" "$module/$pkg@$version"; then
		return
	fi
	log "go install failed; building $module@$version from its module source"
	local dir
	dir=$(GOWORK=off go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[[ -n $dir && -f $dir/go.mod ]] || die "go mod download $module@$version failed"
	(cd "$dir" && GOWORK=off GOFLAGS=-mod=readonly go build "${args[@]}" -o "$BIN_DIR/${pkg##*/}" "./$pkg")
}

has_version() { # has_version CMD VERSION ARGS...: CMD ARGS prints VERSION
	local cmd=$1 want=$2 out
	shift 2
	command -v "$cmd" >/dev/null || return 1
	# The output is read whole first: with pipefail, grep -q quitting at the
	# first match would fail the pipe with the writer's SIGPIPE.
	out=$("$cmd" "$@" 2>/dev/null) || return 1
	grep -Eq "(^|[[:space:]v])${want//./\\.}([+[:space:]]|$)" <<<"$out"
}

if has_version containerd "$CONTAINERD_VERSION" --version; then
	log "containerd $CONTAINERD_VERSION: installed"
else
	go_install github.com/containerd/containerd/v2 "v$CONTAINERD_VERSION" cmd/containerd
fi
if has_version containerd-shim-runc-v2 "$CONTAINERD_VERSION" -v; then
	log "containerd-shim-runc-v2 $CONTAINERD_VERSION: installed"
else
	go_install github.com/containerd/containerd/v2 "v$CONTAINERD_VERSION" cmd/containerd-shim-runc-v2
fi
if has_version crictl "$CRI_TOOLS_VERSION" --version; then
	log "crictl $CRI_TOOLS_VERSION: installed"
else
	CGO_ENABLED=0 go_install sigs.k8s.io/cri-tools "v$CRI_TOOLS_VERSION" cmd/crictl \
		"-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION"
fi

# runc: built as runc's Makefile does (cgo, libseccomp, tags seccomp and
# urfave_cli_no_docs; libpathrs needs a Rust library Debian bookworm lacks),
# its version from the module's VERSION file. runc --version must also report
# the libseccomp it links: a runc built without seccomp would run every pod
# unconfined.
if has_version "$RUNC_BINARY" "$RUNC_VERSION" --version && "$RUNC_BINARY" --version | grep -q '^libseccomp:'; then
	log "runc $RUNC_VERSION: installed ($RUNC_BINARY)"
else
	log "building runc $RUNC_VERSION into $RUNC_BINARY"
	dir=$(GOWORK=off go mod download -json "github.com/opencontainers/runc@v$RUNC_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[[ -n $dir && -f $dir/go.mod ]] || die "go mod download github.com/opencontainers/runc@v$RUNC_VERSION failed"
	mkdir -p "$(dirname "$RUNC_BINARY")"
	tmp=$(mktemp "$RUNC_BINARY.XXXXXX")
	(cd "$dir" && CGO_ENABLED=1 GOWORK=off GOFLAGS=-mod=readonly go build -trimpath -buildmode=pie \
		-tags "seccomp urfave_cli_no_docs" -ldflags "-X main.gitCommit=v$RUNC_VERSION" -o "$tmp" .) ||
		{ rm -f "$tmp"; die "building runc $RUNC_VERSION failed"; }
	chmod 755 "$tmp"
	mv -f "$tmp" "$RUNC_BINARY"
fi

has_version containerd "$CONTAINERD_VERSION" --version || die "containerd --version does not report $CONTAINERD_VERSION"
has_version containerd-shim-runc-v2 "$CONTAINERD_VERSION" -v || die "containerd-shim-runc-v2 -v does not report $CONTAINERD_VERSION"
has_version crictl "$CRI_TOOLS_VERSION" --version || die "crictl --version does not report $CRI_TOOLS_VERSION"
has_version "$RUNC_BINARY" "$RUNC_VERSION" --version || die "$RUNC_BINARY --version does not report $RUNC_VERSION"
"$RUNC_BINARY" --version | grep -q '^libseccomp:' || die "$RUNC_BINARY was built without seccomp"

# CRIU for checkpoint/restore ([checkpoint] criu_path): 4.1.1 built from the
# upstream tarball of Debian trixie's source package (bookworm's 3.17 fails
# on kernels from 6.13 on), cached per version: about a minute cold.
criu=$(bash "$(dirname "$0")/build-criu.sh") || die "hack/build-criu.sh failed"
log "criu: $criu ($("$criu" --version | head -1))"

if ! $with_tests; then
	log "done"
	exit 0
fi

# --- What only the tests need ----------------------------------------------------
# critest, the CRI conformance suite (test/e2e/critest runs it). Its main
# package is a test (cmd/critest/cri_test.go), so `go install` cannot build
# it: it is compiled with `go test -c` from its module source, as cri-tools'
# Makefile does.
if has_version critest "$CRI_TOOLS_VERSION" --version; then
	log "critest $CRI_TOOLS_VERSION: installed"
else
	log "building critest $CRI_TOOLS_VERSION into $BIN_DIR/critest"
	dir=$(GOWORK=off go mod download -json "sigs.k8s.io/cri-tools@v$CRI_TOOLS_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[[ -n $dir && -f $dir/go.mod ]] || die "go mod download sigs.k8s.io/cri-tools@v$CRI_TOOLS_VERSION failed"
	tmp=$(mktemp "$BIN_DIR/.critest.XXXXXX")
	(cd "$dir" && CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=readonly go test -c -trimpath \
		-ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" -o "$tmp" ./cmd/critest) ||
		{ rm -f "$tmp"; die "building critest $CRI_TOOLS_VERSION failed"; }
	chmod 755 "$tmp"
	mv -f "$tmp" "$BIN_DIR/critest"
fi
has_version critest "$CRI_TOOLS_VERSION" --version || die "critest --version does not report $CRI_TOOLS_VERSION"

# critest's busybox stand-in needs a shell that runs commands from PATH.
# busybox-static (the host's /bin/busybox) runs its applets inside the shell;
# the busybox of Debian's busybox package does not, but the two packages
# conflict. So the package is only downloaded, and its binary unpacked here
# (hack/testimages.DefaultDynamicBusyboxPath).
BUSYBOX_DEB_DIR=/var/cache/accel-cri/busybox-deb
if [[ -x $BUSYBOX_DEB_DIR/busybox ]] && "$BUSYBOX_DEB_DIR/busybox" --list 2>/dev/null | grep -qx sh; then
	log "busybox for critest images: $BUSYBOX_DEB_DIR/busybox"
else
	log "unpacking Debian's busybox package into $BUSYBOX_DEB_DIR"
	tmp=$(mktemp -d)
	chown _apt "$tmp" 2>/dev/null || true # apt downloads as _apt where _apt can write
	if ! (cd "$tmp" && apt-get download -q busybox); then
		apt-get update -q
		(cd "$tmp" && apt-get download -q busybox) || { rm -rf "$tmp"; die "apt-get download busybox failed"; }
	fi
	dpkg-deb -x "$tmp"/busybox_*.deb "$tmp/root" || { rm -rf "$tmp"; die "dpkg-deb -x busybox failed"; }
	mkdir -p "$BUSYBOX_DEB_DIR"
	install -m 755 "$tmp/root/bin/busybox" "$BUSYBOX_DEB_DIR/busybox"
	rm -rf "$tmp"
	"$BUSYBOX_DEB_DIR/busybox" --list | grep -qx sh || die "$BUSYBOX_DEB_DIR/busybox is not a working busybox"
fi

# The kubelet of the kubelet end-to-end suite (test/e2e/kubelet): built from
# the Go module proxy into a cache dir; about 4-5 minutes cold, instant cached.
kubelet=$(bash "$(dirname "$0")/build-kubelet.sh") || die "hack/build-kubelet.sh failed"
log "kubelet: $kubelet"
# The control plane of the cluster suite and make cluster, cached per
# component and version: about 10-19 minutes cold, instant cached.
k8s=$(bash "$(dirname "$0")/build-k8s.sh" etcd kube-apiserver kube-controller-manager kube-scheduler kubectl) ||
	die "hack/build-k8s.sh failed"
log "control plane: $(echo $k8s)"
log "done"
