package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/sandbox/spec"
)

// This file prepares the host side of a container's bind mounts, which
// sandbox/spec plans without touching the host: the host paths of CRI
// mounts (created when missing) and of the pod files. Image volumes get
// their sources when they are mounted (imagevolume.go).

// lookupMount finds the mount a host path is on (its propagation decides
// whether HOST_TO_CONTAINER and BIDIRECTIONAL mounts can work). Tests
// replace it.
var lookupMount = mount.Lookup

// resolveMountSources prepares the host side of the bind mounts: a missing
// CRI host path is created as a directory (0755, as containerd and Docker
// do), symlinks are resolved, and the propagation a mount asks for is
// checked against the host mount its source is on. accel-cri does not
// change the propagation of host mounts: BIDIRECTIONAL needs the source on a
// shared mount and HOST_TO_CONTAINER on a shared or slave mount (systemd
// makes / rshared at boot; elsewhere run `mount --make-rshared /`), else
// the error says so.
//
// Everything that can be refused is checked before the first directory is
// created, so a rejected container leaves the host as it was: a host path
// that is a dangling symlink (creating it would follow the link anywhere on
// the host) and, unless privileged, a writable mount whose resolved source
// is the host's / or /proc.
func resolveMountSources(binds []*spec.Bind, privileged bool) error {
	missing := make([]bool, len(binds))
	for i := range binds {
		b := binds[i]
		if b.ImageVolume {
			continue // inside an image: mountImageVolumes resolves it
		}
		if _, err := os.Stat(b.HostPath); err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("%s: host path %q: %w", b.Field, b.HostPath, err)
			}
			if b.PodFile {
				return fmt.Errorf("%w: pod file %q for %s: %v", errdefs.ErrFailedPrecondition, b.HostPath, b.Destination, err)
			}
			if dangling, target := danglingSymlink(b.HostPath); dangling {
				return fmt.Errorf("%w: %s: host path %q is a symlink to %q, which does not exist", errdefs.ErrInvalidArgument, b.Field, b.HostPath, target)
			}
			missing[i] = true
			continue
		}
		src, err := filepath.EvalSymlinks(b.HostPath)
		if err != nil {
			return fmt.Errorf("%s: resolve host path %q: %w", b.Field, b.HostPath, err)
		}
		if !privileged && !b.Readonly && !b.PodFile && spec.IsSensitiveHostPath(src) {
			return fmt.Errorf("%w: %s: host path %q (resolved %q) may only be mounted read-only into an unprivileged container", errdefs.ErrInvalidArgument, b.Field, b.HostPath, src)
		}
		b.Source = src
	}
	for i := range binds {
		b := binds[i]
		if b.ImageVolume {
			continue
		}
		if missing[i] {
			if err := os.MkdirAll(b.HostPath, 0o755); err != nil {
				return fmt.Errorf("%s: create host path %q: %w", b.Field, b.HostPath, err)
			}
			src, err := filepath.EvalSymlinks(b.HostPath)
			if err != nil {
				return fmt.Errorf("%s: resolve host path %q: %w", b.Field, b.HostPath, err)
			}
			b.Source = src
		}
		switch b.Propagation {
		case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			if err := checkPropagation(b.Source, true); err != nil {
				return fmt.Errorf("%s: %w", b.Field, err)
			}
		case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			if err := checkPropagation(b.Source, false); err != nil {
				return fmt.Errorf("%s: %w", b.Field, err)
			}
		}
	}
	return nil
}

// danglingSymlink reports whether p, or one of its existing parents, is a
// symlink whose target does not exist: MkdirAll would then create
// directories wherever the link points.
func danglingSymlink(p string) (bool, string) {
	for q := p; q != "/" && q != "."; q = filepath.Dir(q) {
		fi, err := os.Lstat(q)
		if err != nil {
			continue // not there yet: MkdirAll creates it
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return false, ""
		}
		if _, err := os.Stat(q); err != nil {
			target, _ := os.Readlink(q)
			return true, target
		}
		return false, ""
	}
	return false, ""
}

// checkPropagation checks that the host mount src is on is shared (or, when
// !sharedOnly, a slave).
func checkPropagation(src string, sharedOnly bool) error {
	info, err := lookupMount(src)
	if err != nil {
		return fmt.Errorf("find the host mount of %q: %w", src, err)
	}
	for _, opt := range strings.Fields(info.Optional) {
		if strings.HasPrefix(opt, "shared:") || (!sharedOnly && strings.HasPrefix(opt, "master:")) {
			return nil
		}
	}
	want := "shared"
	if !sharedOnly {
		want = "shared or slave"
	}
	return fmt.Errorf("%w: host path %q is on mount %q, which is not %s (make it so with `mount --make-rshared %s`)",
		errdefs.ErrFailedPrecondition, src, info.Mountpoint, want, info.Mountpoint)
}

// withBindMounts replaces the default mounts that the binds cover (all of
// /dev's when /dev itself is bound), adds the cgroup filesystem (read-only;
// privileged containers get it writable) and appends the binds in order.
// binds must have been through resolveMountSources.
