package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// This file builds an app container's mounts: the pod files (/etc/hostname,
// /etc/hosts, /etc/resolv.conf, /dev/shm) and the CRI mounts, as bind
// mounts over containerd's default mounts.

const (
	etcHostname = "/etc/hostname"
	etcHosts    = "/etc/hosts"
	resolvConf  = "/etc/resolv.conf"
	devShm      = "/dev/shm"
	sysFSCgroup = "/sys/fs/cgroup"
)

// bindMountOptions are the options a CRI mount may add to its bind mount
// (Mount.mount_options, CRI 1.37), exactly the ones Kubernetes' API
// validation admits for VolumeMount.bindMountOptions: each only takes away
// something the volume would otherwise allow. An option that widens it
// (dev, suid, exec, rw on a read-only mount), changes the mount's type or
// propagation (bind, shared, remount) or carries data ("mode=...") is not
// among them. cri validates requests against this list;
// planContainerMounts checks again.
var bindMountOptions = []string{"nodev", "noexec", "nosuid"}

// IsBindMountOption reports whether o may be in a CRI mount's
// mount_options.
func IsBindMountOption(o string) bool { return slices.Contains(bindMountOptions, o) }

// BindMountOptions lists the options IsBindMountOption accepts, for
// messages.
func BindMountOptions() []string { return slices.Clone(bindMountOptions) }

// lookupMount finds the mount a host path is on (its propagation decides
// whether HOST_TO_CONTAINER and BIDIRECTIONAL mounts can work). Tests
// replace it.
var lookupMount = mount.Lookup

// bindMount is one bind mount of a host path into the container.
type bindMount struct {
	field       string // the request field it comes from, for errors
	dst, src    string
	readonly    bool
	rro         bool // recursive read-only ("rro", runc >= 1.1, kernel >= 5.12)
	propagation runtimeapi.MountPropagation
	// podFile is a file accel-cri made for the pod: it must exist, is
	// never created and is mounted nosuid,nodev,noexec.
	podFile  bool
	uid, gid []runtimespec.LinuxIDMapping
	// options are the CRI mount's mount_options (some of
	// bindMountOptions, each once), added to the OCI mount's options.
	options    []string
	hostSource string // src after host symlinks are resolved
	// volume is the image volume (Mount.image) bound here instead of a
	// host path: its source is known once it is mounted, after the spec's
	// options are built and before they are applied.
	volume *imageVolume
}

// planContainerMounts checks the CRI mounts and lists the bind mounts of a
// container, without touching the host. A pod file is left out when a CRI
// mount targets its path. An image volume (Mount.image) binds the volume
// of p.ImageVolumes made for it (imagevolume.go).
func planContainerMounts(p containerSpecParams) ([]bindMount, error) {
	sc := p.Config.GetLinux().GetSecurityContext()
	podNS := p.PodConfig.GetLinux().GetSecurityContext().GetNamespaceOptions()
	uids, gids, err := usernsMappings(podNS.GetUsernsOptions())
	if err != nil {
		return nil, fmt.Errorf("pod %w", err)
	}
	var binds []bindMount
	taken := map[string]bool{}
	for i, m := range p.Config.GetMounts() {
		field := fmt.Sprintf("mounts[%d]", i)
		if m.GetImage().GetImage() != "" {
			b, err := imageVolumeBind(field, i, m, p, uids, gids)
			if err != nil {
				return nil, err
			}
			taken[b.dst] = true
			binds = append(binds, b)
			continue
		}
		dst, src := m.GetContainerPath(), m.GetHostPath()
		if !filepath.IsAbs(dst) || !filepath.IsAbs(src) || strings.ContainsRune(dst+src, 0) {
			return nil, fmt.Errorf("%w: %s: container_path %q and host_path %q must be absolute, without NUL", errdefs.ErrInvalidArgument, field, dst, src)
		}
		b := bindMount{
			field:       field,
			dst:         filepath.Clean(dst),
			src:         filepath.Clean(src),
			readonly:    m.GetReadonly(),
			propagation: m.GetPropagation(),
		}
		switch b.propagation {
		case runtimeapi.MountPropagation_PROPAGATION_PRIVATE,
			runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER,
			runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
		default:
			return nil, fmt.Errorf("%w: %s: unknown propagation %d", errdefs.ErrInvalidArgument, field, b.propagation)
		}
		if m.GetRecursiveReadOnly() {
			if !m.GetReadonly() {
				return nil, fmt.Errorf("%w: %s: recursive_read_only needs readonly", errdefs.ErrInvalidArgument, field)
			}
			if b.propagation != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
				return nil, fmt.Errorf("%w: %s: recursive_read_only needs private propagation, not %s", errdefs.ErrInvalidArgument, field, b.propagation)
			}
			b.rro = true
		}
		if opts := m.GetMountOptions(); len(opts) > 0 {
			if err := checkBindMountOptions(field, opts); err != nil {
				return nil, err
			}
			if !p.MountOptionsSupported {
				return nil, fmt.Errorf("%w: %s.mount_options: runtime handler %q does not apply bind mount options (%s)",
					errdefs.ErrNotImplemented, field, p.RuntimeHandler, strings.Join(opts, ","))
			}
			b.options = slices.Clone(opts)
		}
		if len(m.GetUidMappings()) > 0 || len(m.GetGidMappings()) > 0 {
			if !p.UsernsSupported {
				return nil, fmt.Errorf("%s: idmapped mounts: %w", field, errUsernsUnsupported)
			}
			var err error
			if b.uid, err = idMappings(m.GetUidMappings()); err != nil {
				return nil, fmt.Errorf("%w: %s.uidMappings: %v", errdefs.ErrInvalidArgument, field, err)
			}
			if b.gid, err = idMappings(m.GetGidMappings()); err != nil {
				return nil, fmt.Errorf("%w: %s.gidMappings: %v", errdefs.ErrInvalidArgument, field, err)
			}
		}
		taken[b.dst] = true
		binds = append(binds, b)
	}

	shm := p.ShmPath
	if podNS.GetIpc() == runtimeapi.NamespaceMode_NODE {
		shm = devShm
	}
	// In a user-namespaced pod the pod files (root's on the host) are
	// idmapped to the pod's root, as containerd's CRI does
	// (linuxContainerMounts in internal/cri/server/container_create.go).
	// /dev/shm is not: an empty tmpfs of mode 1777 needs no owner, and
	// containerd leaves it out too.
	ro := sc.GetReadonlyRootfs()
	for _, f := range []struct {
		dst, src string
		readonly bool
		idmapped bool
	}{
		{etcHostname, p.HostnamePath, ro, true},
		{etcHosts, p.HostsPath, ro, true},
		{resolvConf, p.ResolvPath, ro, true},
		{devShm, shm, false, false},
	} {
		if taken[f.dst] {
			continue
		}
		if f.src == "" {
			return nil, fmt.Errorf("%w: pod file for %s is missing", errdefs.ErrFailedPrecondition, f.dst)
		}
		b := bindMount{field: "pod " + f.dst, dst: f.dst, src: f.src, readonly: f.readonly, podFile: true}
		if f.idmapped && uids != nil {
			if !p.UsernsSupported {
				return nil, fmt.Errorf("%s: idmapped mounts: %w", b.field, errUsernsUnsupported)
			}
			b.uid, b.gid = uids, gids
		}
		binds = append(binds, b)
	}
	// Mount parents before children so that no mount hides another.
	slices.SortStableFunc(binds, func(a, b bindMount) int {
		return strings.Count(a.dst, "/") - strings.Count(b.dst, "/")
	})
	return binds, nil
}

// imageVolumeBind is the bind mount of the image volume of CRI mount i:
// read-only (recursively so when asked), private (nothing ever mounts
// below an image), idmapped in a pod with a user namespace of its own
// (imageVolumeMappings).
func imageVolumeBind(field string, i int, m *runtimeapi.Mount, p containerSpecParams, podUIDs, podGIDs []runtimespec.LinuxIDMapping) (bindMount, error) {
	if _, err := checkImageMount(field, m); err != nil {
		return bindMount{}, err
	}
	dst := m.GetContainerPath()
	if !filepath.IsAbs(dst) || strings.ContainsRune(dst, 0) {
		return bindMount{}, fmt.Errorf("%w: %s: container_path %q must be absolute, without NUL", errdefs.ErrInvalidArgument, field, dst)
	}
	j := slices.IndexFunc(p.ImageVolumes, func(v *imageVolume) bool { return v.Mount == i })
	if j < 0 {
		return bindMount{}, fmt.Errorf("%w: %s: image volume %q was not prepared", errdefs.ErrFailedPrecondition, field, m.GetImage().GetImage())
	}
	b := bindMount{
		field:       field,
		dst:         filepath.Clean(dst),
		readonly:    true,
		rro:         m.GetRecursiveReadOnly(),
		propagation: runtimeapi.MountPropagation_PROPAGATION_PRIVATE,
		volume:      p.ImageVolumes[j],
	}
	uids, gids, err := imageVolumeMappings(m, podUIDs, podGIDs)
	if err != nil {
		return bindMount{}, fmt.Errorf("%w: %s.%v", errdefs.ErrInvalidArgument, field, err)
	}
	if len(uids) > 0 {
		if !p.UsernsSupported {
			return bindMount{}, fmt.Errorf("%s: idmapped mounts: %w", field, errUsernsUnsupported)
		}
		b.uid, b.gid = uids, gids
	}
	return b, nil
}

// checkBindMountOptions checks a CRI mount's mount_options: each one of
// bindMountOptions, none twice.
func checkBindMountOptions(field string, opts []string) error {
	for i, o := range opts {
		if !IsBindMountOption(o) {
			return fmt.Errorf("%w: %s.mount_options[%d]: %.64q is not one of %s", errdefs.ErrInvalidArgument, field, i, o, strings.Join(bindMountOptions, ", "))
		}
		if j := slices.Index(opts, o); j < i {
			return fmt.Errorf("%w: %s.mount_options[%d]: %q is also mount_options[%d]", errdefs.ErrInvalidArgument, field, i, o, j)
		}
	}
	return nil
}

// IsSensitiveHostPath reports whether a clean absolute host path is the
// host's root or its /proc (or below): a writable bind of either lets an
// unprivileged container change the host (/proc/sys, /proc/sysrq-trigger,
// every file of the node). cri checks the path as sent; resolveMountSources
// checks it again after symlinks are resolved.
func IsSensitiveHostPath(p string) bool {
	p = filepath.Clean(p)
	return p == "/" || p == "/proc" || strings.HasPrefix(p, "/proc/")
}

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
func resolveMountSources(binds []bindMount, privileged bool) error {
	missing := make([]bool, len(binds))
	for i := range binds {
		b := &binds[i]
		if b.volume != nil {
			continue // inside an image: mountImageVolumes resolves it
		}
		if _, err := os.Stat(b.src); err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("%s: host path %q: %w", b.field, b.src, err)
			}
			if b.podFile {
				return fmt.Errorf("%w: pod file %q for %s: %v", errdefs.ErrFailedPrecondition, b.src, b.dst, err)
			}
			if dangling, target := danglingSymlink(b.src); dangling {
				return fmt.Errorf("%w: %s: host path %q is a symlink to %q, which does not exist", errdefs.ErrInvalidArgument, b.field, b.src, target)
			}
			missing[i] = true
			continue
		}
		src, err := filepath.EvalSymlinks(b.src)
		if err != nil {
			return fmt.Errorf("%s: resolve host path %q: %w", b.field, b.src, err)
		}
		if !privileged && !b.readonly && !b.podFile && IsSensitiveHostPath(src) {
			return fmt.Errorf("%w: %s: host path %q (resolved %q) may only be mounted read-only into an unprivileged container", errdefs.ErrInvalidArgument, b.field, b.src, src)
		}
		b.hostSource = src
	}
	for i := range binds {
		b := &binds[i]
		if b.volume != nil {
			continue
		}
		if missing[i] {
			if err := os.MkdirAll(b.src, 0o755); err != nil {
				return fmt.Errorf("%s: create host path %q: %w", b.field, b.src, err)
			}
			src, err := filepath.EvalSymlinks(b.src)
			if err != nil {
				return fmt.Errorf("%s: resolve host path %q: %w", b.field, b.src, err)
			}
			b.hostSource = src
		}
		switch b.propagation {
		case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			if err := checkPropagation(b.hostSource, true); err != nil {
				return fmt.Errorf("%s: %w", b.field, err)
			}
		case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			if err := checkPropagation(b.hostSource, false); err != nil {
				return fmt.Errorf("%s: %w", b.field, err)
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
func withBindMounts(binds []bindMount) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		covered := map[string]bool{}
		for _, b := range binds {
			covered[b.dst] = true
		}
		mounts := append(slices.Clone(s.Mounts), runtimespec.Mount{
			Destination: sysFSCgroup,
			Type:        "cgroup",
			Source:      "cgroup",
			Options:     []string{"nosuid", "noexec", "nodev", "relatime", "ro"},
		})
		s.Mounts = nil
		for _, m := range mounts {
			dst := filepath.Clean(m.Destination)
			if covered[dst] || (covered["/dev"] && strings.HasPrefix(dst, "/dev/")) {
				continue
			}
			s.Mounts = append(s.Mounts, m)
		}
		for _, b := range binds {
			m, err := b.specMount()
			if err != nil {
				return err
			}
			if b.propagation != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
				ensureLinux(s)
				switch {
				case b.propagation == runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
					s.Linux.RootfsPropagation = "rshared"
				case s.Linux.RootfsPropagation != "rshared":
					s.Linux.RootfsPropagation = "rslave"
				}
			}
			s.Mounts = append(s.Mounts, m)
		}
		return nil
	}
}

func (b bindMount) specMount() (runtimespec.Mount, error) {
	src := b.hostSource
	if b.volume != nil {
		if src = b.volume.Source; src == "" {
			return runtimespec.Mount{}, fmt.Errorf("%w: %s: image volume of image %s is not mounted", errdefs.ErrFailedPrecondition, b.field, b.volume.ImageID)
		}
	}
	if src == "" {
		return runtimespec.Mount{}, fmt.Errorf("%s: host path %q was not resolved", b.field, b.src)
	}
	opts := []string{"rbind"}
	switch b.propagation {
	case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
		opts = append(opts, "rshared")
	case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
		opts = append(opts, "rslave")
	default:
		opts = append(opts, "rprivate")
	}
	switch {
	case b.rro:
		opts = append(opts, "rro")
	case b.readonly:
		opts = append(opts, "ro")
	default:
		opts = append(opts, "rw")
	}
	if b.podFile {
		opts = append(opts, "nosuid", "nodev", "noexec")
	}
	// The CRI's mount_options go into the OCI mount as they are, after
	// rbind, the propagation and ro/rro/rw: containerd's CRI
	// (internal/cri/opts/spec_linux_opts.go, withMounts, v2.4.2) builds
	// the same list in that order; v2.4.2 does not read mount_options yet.
	// runc (libcontainer/rootfs_linux.go, mountToRootfs, "bind") and crun
	// make the bind mount first and then remount it MS_BIND|MS_REMOUNT
	// with the flags of these options, which is what makes them effective
	// (a plain MS_BIND ignores them). Like ro, they apply to the volume's
	// own mount, not to mounts below it that rbind brings along (the
	// recursive forms, rnoexec and so on, are not what the CRI asks for).
	opts = append(opts, b.options...)
	m := runtimespec.Mount{
		Destination: b.dst,
		Type:        "bind",
		Source:      src,
		Options:     opts,
		UIDMappings: b.uid,
		GIDMappings: b.gid,
	}
	if b.volume != nil && b.volume.mappedLayers {
		// Mounted with idmapped layers: mapped once is enough.
		m.UIDMappings, m.GIDMappings = nil, nil
	}
	return m, nil
}
