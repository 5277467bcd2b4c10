#!/usr/bin/env bash
# Builds CRIU (checkpoint/restore in userspace) for accel-cri's checkpoints
# and installs it as $CRIU_BINARY, the path accel-cri's config names
# ([checkpoint] criu_path). Prints that path.
#
#   hack/build-criu.sh                    # builds (or reuses the cache) and installs
#   CRIU_CACHE_DIR=/some/dir hack/build-criu.sh
#
# Why a build: Debian bookworm's criu 3.17 fails `criu check` on kernels from
# 6.13 on ("Unexpected rt vDSO area bounds"); CRIU 4.1.1 works. Its source is
# the upstream tarball that Debian trixie's source package ships, fetched with
# apt through a private source list (the machine's apt sources and state are
# not touched): apt checks the tarball against trixie's signed Sources index,
# and this script checks its SHA-256 against that index again before building.
# The .dsc and Debian's patches are not needed (the .dsc may 404 on mirrors
# that dropped it). `make criu` takes about a minute on 2 cores; the binary
# is cached per version in $CRIU_CACHE_DIR, so later runs only install it.
set -euo pipefail

CRIU_VERSION=${CRIU_VERSION:-4.1.1}
CRIU_DEB_VERSION=${CRIU_DEB_VERSION:-$CRIU_VERSION-1} # trixie's source package
CRIU_BINARY=${CRIU_BINARY:-/usr/local/sbin/criu}      # config.DefaultCRIUPath
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
dir=${CRIU_CACHE_DIR:-/var/cache/accel-cri/criu-$CRIU_VERSION}
# Build dependencies (bookworm packages); libprotobuf-dev brings
# google/protobuf/descriptor.proto, which CRIU's images compile against.
BUILD_DEPS=(build-essential pkg-config libprotobuf-c-dev libprotobuf-dev protobuf-c-compiler libnl-3-dev
	libnet1-dev libcap-dev libnftables-dev libbsd-dev libgnutls28-dev uuid-dev python3-protobuf xz-utils)

log() { echo "build-criu: $*" >&2; }
die() {
	log "$*"
	exit 1
}

# version BIN prints the version a criu binary reports ("" if none).
version() { "$1" --version 2>/dev/null | awk '$1 == "Version:" {print $2}'; }

install_bin() {
	install -D -m 755 "$1" "$CRIU_BINARY"
	log "installed CRIU $CRIU_VERSION as $CRIU_BINARY"
	echo "$CRIU_BINARY"
}

if [[ -x $CRIU_BINARY && $(version "$CRIU_BINARY") == "$CRIU_VERSION" ]]; then
	echo "$CRIU_BINARY"
	exit 0
fi
if [[ -x $dir/criu && $(version "$dir/criu") == "$CRIU_VERSION" ]]; then
	install_bin "$dir/criu"
	exit 0
fi

[[ $(id -u) == 0 ]] || die "run as root (installs build dependencies and $CRIU_BINARY)"
export DEBIAN_FRONTEND=noninteractive
missing=()
for p in "${BUILD_DEPS[@]}"; do
	if [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null) != "ii "* ]]; then
		missing+=("$p")
	fi
done
if ((${#missing[@]})); then
	log "installing build dependencies ${missing[*]}"
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

mkdir -p "$dir"
work=$(mktemp -d "$dir/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
apt_dir=$work/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$work/src"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $DEBIAN_MIRROR trixie main" >"$apt_dir/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
	-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root)
log "fetching trixie's source index (private apt lists in $apt_dir)"
apt-get "${apt_opts[@]}" -q update >&2
tarball=criu_$CRIU_VERSION.orig.tar.xz
# The .dsc or Debian's tarball may be gone from a mirror: only the upstream
# tarball is needed, so apt's overall status does not decide, the file does.
(cd "$work/src" && apt-get "${apt_opts[@]}" -q source --download-only "criu=$CRIU_DEB_VERSION" >&2) ||
	log "apt-get source reported errors (a missing .dsc is fine); checking the upstream tarball"
[[ -s $work/src/$tarball ]] || die "apt did not fetch $tarball of criu $CRIU_DEB_VERSION from $DEBIAN_MIRROR trixie"
# The SHA-256 of the tarball in the signed Sources index of that version.
# apt keeps its lists compressed (lz4 here); apt-helper reads any of them.
want=$(for f in "$apt_dir"/lists/*_Sources*; do /usr/lib/apt/apt-helper cat-file "$f"; done | awk -v v="$CRIU_DEB_VERSION" -v f="$tarball" '
	/^Package: / {pkg = $2}
	/^Version: / {ver = $2}
	/^Checksums-Sha256:/ {sums = 1; next}
	/^[^ ]/ {sums = 0}
	sums && pkg == "criu" && ver == v && $3 == f {print $1}
	/^$/ {pkg = ""; ver = ""}')
[[ -n $want ]] || die "no SHA-256 for $tarball of criu $CRIU_DEB_VERSION in trixie's Sources index"
got=$(sha256sum "$work/src/$tarball" | awk '{print $1}')
[[ $got == "$want" ]] || die "$tarball: SHA-256 $got, the Sources index says $want"
log "$tarball verified (sha256 $got)"

tar -C "$work" -xf "$work/src/$tarball"
src=$work/criu-$CRIU_VERSION
[[ -d $src ]] || die "$tarball has no criu-$CRIU_VERSION directory"
log "building CRIU $CRIU_VERSION (about a minute)"
start=$(date +%s)
make -C "$src" -j"$(nproc)" criu >"$work/make.log" 2>&1 || {
	tail -30 "$work/make.log" >&2
	die "make criu failed"
}
[[ $(version "$src/criu/criu") == "$CRIU_VERSION" ]] || die "the built criu does not report version $CRIU_VERSION"
install -m 755 "$src/criu/criu" "$dir/.criu.new"
mv -f "$dir/.criu.new" "$dir/criu"
log "built in $(($(date +%s) - start))s, cached in $dir"
install_bin "$dir/criu"
