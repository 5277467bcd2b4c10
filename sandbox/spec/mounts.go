package spec

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
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
// among them. cri validates requests against this list; planMounts checks
// again.
var bindMountOptions = []string{"nodev", "noexec", "nosuid"}

// IsBindMountOption reports whether o may be in a CRI mount's
// mount_options.
func IsBindMountOption(o string) bool { return slices.Contains(bindMountOptions, o) }

// BindMountOptions lists the options IsBindMountOption accepts, for
// messages.
func BindMountOptions() []string { return slices.Clone(bindMountOptions) }

// Bind is one bind mount of a container: a host path (a CRI mount's or a
// pod file) or an image volume. The builder plans it without touching the
// host; the core gives it its Source before the spec is applied: the host
// path with symlinks resolved (created when missing), or the mounted image
// volume.
type Bind struct {
	// Field is the request field it comes from, for errors ("mounts[2]",
	// "pod /etc/hosts").
	Field string
	// Destination is the clean path in the container.
	Destination string
	// HostPath is the clean host path; "" for an image volume.
	HostPath string
	// ImageVolume marks the bind of the image volume (Mount.image) of the
	// CRI mount Mount (its index in ContainerConfig.mounts; -1 for a pod
	// file).
	ImageVolume bool
	Mount       int
	Readonly    bool
	Propagation runtimeapi.MountPropagation
	// PodFile is a file accel-cri made for the pod: it must exist, is
	// never created and is mounted nosuid,nodev,noexec.
	PodFile bool

	// Source is what the container gets; the core sets it.
	Source string
	// LayersIDMapped says the image volume was mounted with idmapped
	// layers, so its bind is not idmapped again; the core sets it.
	LayersIDMapped bool

	rro      bool // recursive read-only ("rro", runc >= 1.1, kernel >= 5.12)
	uid, gid []runtimespec.LinuxIDMapping
	// options are the CRI mount's mount_options (some of
	// bindMountOptions, each once), added to the OCI mount's options.
	options []string
}

// planMounts checks the CRI mounts and lists the bind mounts of a
// container, without touching the host. A pod file is left out when a CRI
// mount targets its path. An image volume (Mount.image) is bound from
// where the core mounts it.
func planMounts(p Container) ([]*Bind, error) {
	sc := p.Config.GetLinux().GetSecurityContext()
	podNS := p.PodConfig.GetLinux().GetSecurityContext().GetNamespaceOptions()
	uids, gids, err := UsernsMappings(podNS.GetUsernsOptions())
	if err != nil {
		return nil, fmt.Errorf("pod %w", err)
	}
	var binds []*Bind
	taken := map[string]bool{}
	for i, m := range p.Config.GetMounts() {
		field := fmt.Sprintf("mounts[%d]", i)
		if m.GetImage().GetImage() != "" {
			b, err := imageVolumeBind(field, i, m, p.Handler.UserNamespaces, uids, gids)
			if err != nil {
				return nil, err
			}
			taken[b.Destination] = true
			binds = append(binds, b)
			continue
		}
		dst, src := m.GetContainerPath(), m.GetHostPath()
		if !filepath.IsAbs(dst) || !filepath.IsAbs(src) || strings.ContainsRune(dst+src, 0) {
			return nil, fmt.Errorf("%w: %s: container_path %q and host_path %q must be absolute, without NUL", errdefs.ErrInvalidArgument, field, dst, src)
		}
		b := &Bind{
			Field:       field,
			Destination: filepath.Clean(dst),
			HostPath:    filepath.Clean(src),
			Mount:       i,
			Readonly:    m.GetReadonly(),
			Propagation: m.GetPropagation(),
		}
		switch b.Propagation {
		case runtimeapi.MountPropagation_PROPAGATION_PRIVATE,
			runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER,
			runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
		default:
			return nil, fmt.Errorf("%w: %s: unknown propagation %d", errdefs.ErrInvalidArgument, field, b.Propagation)
		}
		if m.GetRecursiveReadOnly() {
			if !m.GetReadonly() {
				return nil, fmt.Errorf("%w: %s: recursive_read_only needs readonly", errdefs.ErrInvalidArgument, field)
			}
			if b.Propagation != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
				return nil, fmt.Errorf("%w: %s: recursive_read_only needs private propagation, not %s", errdefs.ErrInvalidArgument, field, b.Propagation)
			}
			b.rro = true
		}
		if opts := m.GetMountOptions(); len(opts) > 0 {
			if err := checkBindMountOptions(field, opts); err != nil {
				return nil, err
			}
			if !p.Handler.MountOptions {
				return nil, fmt.Errorf("%w: %s.mount_options: runtime handler %q does not apply bind mount options (%s)",
					errdefs.ErrNotImplemented, field, p.Handler.Name, strings.Join(opts, ","))
			}
			b.options = slices.Clone(opts)
		}
		if len(m.GetUidMappings()) > 0 || len(m.GetGidMappings()) > 0 {
			if !p.Handler.UserNamespaces {
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
		taken[b.Destination] = true
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
		b := &Bind{Field: "pod " + f.dst, Destination: f.dst, HostPath: f.src, Mount: -1, Readonly: f.readonly, PodFile: true}
		if f.idmapped && uids != nil {
			if !p.Handler.UserNamespaces {
				return nil, fmt.Errorf("%s: idmapped mounts: %w", b.Field, errUsernsUnsupported)
			}
			b.uid, b.gid = uids, gids
		}
		binds = append(binds, b)
	}
	// Mount parents before children so that no mount hides another.
	slices.SortStableFunc(binds, func(a, b *Bind) int {
		return strings.Count(a.Destination, "/") - strings.Count(b.Destination, "/")
	})
	return binds, nil
}

// imageVolumeBind is the bind mount of the image volume of CRI mount i:
// read-only (recursively so when asked), private (nothing ever mounts
// below an image), idmapped in a pod with a user namespace of its own
// (ImageVolumeMappings). usernsSupported is Handler.UserNamespaces.
func imageVolumeBind(field string, i int, m *runtimeapi.Mount, usernsSupported bool, podUIDs, podGIDs []runtimespec.LinuxIDMapping) (*Bind, error) {
	if _, err := CheckImageMount(field, m); err != nil {
		return nil, err
	}
	dst := m.GetContainerPath()
	if !filepath.IsAbs(dst) || strings.ContainsRune(dst, 0) {
		return nil, fmt.Errorf("%w: %s: container_path %q must be absolute, without NUL", errdefs.ErrInvalidArgument, field, dst)
	}
	b := &Bind{
		Field:       field,
		Destination: filepath.Clean(dst),
		ImageVolume: true,
		Mount:       i,
		Readonly:    true,
		Propagation: runtimeapi.MountPropagation_PROPAGATION_PRIVATE,
		rro:         m.GetRecursiveReadOnly(),
	}
	uids, gids, err := ImageVolumeMappings(m, podUIDs, podGIDs)
	if err != nil {
		return nil, fmt.Errorf("%w: %s.%v", errdefs.ErrInvalidArgument, field, err)
	}
	if len(uids) > 0 {
		if !usernsSupported {
			return nil, fmt.Errorf("%s: idmapped mounts: %w", field, errUsernsUnsupported)
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
// every file of the node). cri checks the path as sent; the core checks it
// again after symlinks are resolved.
func IsSensitiveHostPath(p string) bool {
	p = filepath.Clean(p)
	return p == "/" || p == "/proc" || strings.HasPrefix(p, "/proc/")
}

// withBindMounts replaces the default mounts that the binds cover (all of
// /dev's when /dev itself is bound), adds the cgroup filesystem (read-only;
// privileged containers get it writable) and appends the binds in order.
// The binds must have their Source when it is applied.
func withBindMounts(binds []*Bind) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		covered := map[string]bool{}
		for _, b := range binds {
			covered[b.Destination] = true
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
			if b.Propagation != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
				ensureLinux(s)
				switch {
				case b.Propagation == runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
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

func (b *Bind) specMount() (runtimespec.Mount, error) {
	if b.Source == "" {
		if b.ImageVolume {
			return runtimespec.Mount{}, fmt.Errorf("%w: %s: image volume is not mounted", errdefs.ErrFailedPrecondition, b.Field)
		}
		return runtimespec.Mount{}, fmt.Errorf("%s: host path %q was not resolved", b.Field, b.HostPath)
	}
	opts := []string{"rbind"}
	switch b.Propagation {
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
	case b.Readonly:
		opts = append(opts, "ro")
	default:
		opts = append(opts, "rw")
	}
	if b.PodFile {
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
		Destination: b.Destination,
		Type:        "bind",
		Source:      b.Source,
		Options:     opts,
		UIDMappings: b.uid,
		GIDMappings: b.gid,
	}
	if b.ImageVolume && b.LayersIDMapped {
		// Mounted with idmapped layers: mapped once is enough.
		m.UIDMappings, m.GIDMappings = nil, nil
	}
	return m, nil
}
