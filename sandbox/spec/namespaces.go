package spec

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// This file decides the Linux namespaces of the pause container and of app
// containers. Each builder sets the spec's whole namespace list, so the
// result does not depend on the default spec's list.

// errUsernsUnsupported is returned for user namespaced pods of a handler
// whose OCI runtime has no idmapped mounts (`features` lacks
// mountExtensions.idmap, as runc 1.1 and crun 1.8): it could not give the
// pod's containers their volumes and pod files owned by the pod's root.
var errUsernsUnsupported = fmt.Errorf("%w: user namespaces (hostUsers: false) need an OCI runtime with idmapped mounts (runc >= 1.2, crun >= 1.9) for the pod's runtime handler", errdefs.ErrNotImplemented)

// ProcNS is the path of the namespace ns ("net", "ipc", ...) of process pid.
func ProcNS(pid uint32, ns string) string { return fmt.Sprintf("/proc/%d/ns/%s", pid, ns) }

// Pinned are the UTS and IPC namespaces of a pod without a pause process,
// bind-mounted files ("" for a namespace the pod does not have).
type Pinned struct {
	UTS, IPC string
}

// withNamespaces sets the spec's namespace list.
func withNamespaces(nss []runtimespec.LinuxNamespace) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		ensureLinux(s)
		s.Linux.Namespaces = nss
		return nil
	}
}

// podNamespaces are the pause container's namespaces: a new mount namespace;
// the pod network namespace (netNSPath) or the host's; new UTS unless host
// network; new IPC and PID unless NODE. A user namespace comes from
// usernsNamespace.
func podNamespaces(opts *runtimeapi.NamespaceOption, netNSPath string) ([]runtimespec.LinuxNamespace, error) {
	nss := []runtimespec.LinuxNamespace{{Type: runtimespec.MountNamespace}}
	switch mode := opts.GetNetwork(); mode {
	case runtimeapi.NamespaceMode_NODE:
	case runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_CONTAINER:
		if netNSPath == "" {
			return nil, fmt.Errorf("%w: pod network namespace path is missing", errdefs.ErrFailedPrecondition)
		}
		nss = append(nss,
			runtimespec.LinuxNamespace{Type: runtimespec.NetworkNamespace, Path: netNSPath},
			runtimespec.LinuxNamespace{Type: runtimespec.UTSNamespace})
	default:
		return nil, fmt.Errorf("%w: pod network namespace mode %s is not supported", errdefs.ErrInvalidArgument, mode)
	}
	for _, n := range []struct {
		typ  runtimespec.LinuxNamespaceType
		name string
		mode runtimeapi.NamespaceMode
	}{
		{runtimespec.IPCNamespace, "ipc", opts.GetIpc()},
		{runtimespec.PIDNamespace, "pid", opts.GetPid()},
	} {
		switch n.mode {
		case runtimeapi.NamespaceMode_NODE:
		case runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_CONTAINER:
			nss = append(nss, runtimespec.LinuxNamespace{Type: n.typ})
		default:
			return nil, fmt.Errorf("%w: pod %s namespace mode %s is not supported", errdefs.ErrInvalidArgument, n.name, n.mode)
		}
	}
	return nss, nil
}

// containerNamespaces are an app container's namespaces. Network and IPC
// follow the pod's options (kubelet copies them into the container's; the
// pod is the source of truth): the pod network namespace (netNSPath) or the
// host's, the pod's IPC namespace or the host's. UTS is the pod's unless host
// network. PID follows the container's own option: POD is the pod's
// choice (the pause container's shared one, or a new one), CONTAINER is new, NODE is the host's, TARGET joins
// targetPID's. The pod's namespaces are the pause process's
// (/proc/<sandboxPID>/ns/...) or, for a pod without one, its pinned ones.
func containerNamespaces(pod, ctr *runtimeapi.NamespaceOption, netNSPath string, sandboxPID uint32, pinned Pinned, targetPID uint32) ([]runtimespec.LinuxNamespace, error) {
	podNS := func(ns string) (string, error) {
		path := ""
		switch {
		case sandboxPID != 0:
			path = ProcNS(sandboxPID, ns)
		case ns == "uts":
			path = pinned.UTS
		case ns == "ipc":
			path = pinned.IPC
		}
		if path == "" {
			return "", fmt.Errorf("%w: the pod's sandbox holds no %s namespace (not running, or the pod has no shared %s namespace)", errdefs.ErrFailedPrecondition, ns, ns)
		}
		return path, nil
	}
	nss := []runtimespec.LinuxNamespace{{Type: runtimespec.MountNamespace}}
	if pod.GetNetwork() != runtimeapi.NamespaceMode_NODE {
		if netNSPath == "" {
			return nil, fmt.Errorf("%w: pod network namespace path is missing", errdefs.ErrFailedPrecondition)
		}
		uts, err := podNS("uts")
		if err != nil {
			return nil, err
		}
		nss = append(nss,
			runtimespec.LinuxNamespace{Type: runtimespec.NetworkNamespace, Path: netNSPath},
			runtimespec.LinuxNamespace{Type: runtimespec.UTSNamespace, Path: uts})
	}
	if pod.GetIpc() != runtimeapi.NamespaceMode_NODE {
		ipc, err := podNS("ipc")
		if err != nil {
			return nil, err
		}
		nss = append(nss, runtimespec.LinuxNamespace{Type: runtimespec.IPCNamespace, Path: ipc})
	}
	switch mode := ctr.GetPid(); mode {
	case runtimeapi.NamespaceMode_POD:
		// POD means the pod's choice: a shared one, one per container
		// (kubelet's default), or the host's.
		switch pod.GetPid() {
		case runtimeapi.NamespaceMode_CONTAINER:
			nss = append(nss, runtimespec.LinuxNamespace{Type: runtimespec.PIDNamespace})
		case runtimeapi.NamespaceMode_POD:
			pid, err := podNS("pid")
			if err != nil {
				return nil, err
			}
			nss = append(nss, runtimespec.LinuxNamespace{Type: runtimespec.PIDNamespace, Path: pid})
		}
	case runtimeapi.NamespaceMode_CONTAINER:
		nss = append(nss, runtimespec.LinuxNamespace{Type: runtimespec.PIDNamespace})
	case runtimeapi.NamespaceMode_NODE:
	case runtimeapi.NamespaceMode_TARGET:
		if targetPID == 0 {
			return nil, fmt.Errorf("%w: target container %q of the pid namespace is not running", errdefs.ErrFailedPrecondition, ctr.GetTargetId())
		}
		nss = append(nss, runtimespec.LinuxNamespace{Type: runtimespec.PIDNamespace, Path: ProcNS(targetPID, "pid")})
	default:
		return nil, fmt.Errorf("%w: pid namespace mode %s is not supported", errdefs.ErrInvalidArgument, mode)
	}
	return nss, nil
}

// UsernsMappings checks a CRI user namespace option and returns its
// mappings. nil or NODE: no user namespace. POD: the pod's own, which needs
// one uid and one gid mapping, each from container id 0. That is what
// kubelet sends and what containerd's CRI takes (its pod network namespace
// is made with uids[0] and gids[0], its snapshots labelled with them); a
// user namespace without a root could not own the container's root
// filesystem.
func UsernsMappings(u *runtimeapi.UserNamespace) (uids, gids []runtimespec.LinuxIDMapping, err error) {
	if u == nil {
		return nil, nil, nil
	}
	if uids, err = idMappings(u.GetUids()); err != nil {
		return nil, nil, fmt.Errorf("%w: userns_options.uids: %v", errdefs.ErrInvalidArgument, err)
	}
	if gids, err = idMappings(u.GetGids()); err != nil {
		return nil, nil, fmt.Errorf("%w: userns_options.gids: %v", errdefs.ErrInvalidArgument, err)
	}
	switch mode := u.GetMode(); mode {
	case runtimeapi.NamespaceMode_NODE:
		if len(uids) != 0 || len(gids) != 0 {
			return nil, nil, fmt.Errorf("%w: userns_options: mode NODE takes no mappings", errdefs.ErrInvalidArgument)
		}
		return nil, nil, nil
	case runtimeapi.NamespaceMode_POD:
		if len(uids) == 0 || len(gids) == 0 {
			return nil, nil, fmt.Errorf("%w: userns_options: mode POD needs uid and gid mappings", errdefs.ErrInvalidArgument)
		}
		if len(uids) != 1 || len(gids) != 1 {
			return nil, nil, fmt.Errorf("%w: userns_options: %d uid and %d gid mappings; one of each is supported", errdefs.ErrNotImplemented, len(uids), len(gids))
		}
		if uids[0].ContainerID != 0 || gids[0].ContainerID != 0 {
			return nil, nil, fmt.Errorf("%w: userns_options: the mappings must start at container id 0 (root), not uid %d gid %d", errdefs.ErrInvalidArgument, uids[0].ContainerID, gids[0].ContainerID)
		}
		return uids, gids, nil
	default:
		return nil, nil, fmt.Errorf("%w: userns_options: mode %s is not supported", errdefs.ErrInvalidArgument, mode)
	}
}

// maxIDMappings is the kernel's limit of lines in uid_map/gid_map.
const maxIDMappings = 340

func idMappings(in []*runtimeapi.IDMapping) ([]runtimespec.LinuxIDMapping, error) {
	if len(in) > maxIDMappings {
		return nil, fmt.Errorf("%d mappings, at most %d", len(in), maxIDMappings)
	}
	var out []runtimespec.LinuxIDMapping
	for i, m := range in {
		if m == nil || m.GetLength() == 0 {
			return nil, fmt.Errorf("mapping %d has length 0", i)
		}
		if uint64(m.GetContainerId())+uint64(m.GetLength()) > 1<<32 || uint64(m.GetHostId())+uint64(m.GetLength()) > 1<<32 {
			return nil, fmt.Errorf("mapping %d overflows the id range", i)
		}
		out = append(out, runtimespec.LinuxIDMapping{ContainerID: m.GetContainerId(), HostID: m.GetHostId(), Size: m.GetLength()})
	}
	return out, nil
}

// withUserns puts the process in a user namespace with the mappings: a new
// one (path "", a pause on the host network), the pinned owner of the pod's
// network namespace (other pauses) or the pause container's (app
// containers). runc checks that a joined namespace has the mappings.
func withUserns(path string, uids, gids []runtimespec.LinuxIDMapping) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		ensureLinux(s)
		s.Linux.Namespaces = append(s.Linux.Namespaces, runtimespec.LinuxNamespace{Type: runtimespec.UserNamespace, Path: path})
		s.Linux.UIDMappings = uids
		s.Linux.GIDMappings = gids
		return nil
	}
}

// podUsernsOpt is the user namespace of the pause container: the one at
// path (the core pins the owner of the pod's network namespace there), or
// a new one when path is "".
func podUsernsOpt(u *runtimeapi.UserNamespace, path string, supported bool) (oci.SpecOpts, error) {
	uids, gids, err := UsernsMappings(u)
	if err != nil || uids == nil {
		return nil, err
	}
	if !supported {
		return nil, errUsernsUnsupported
	}
	return withUserns(path, uids, gids), nil
}

// containerUsernsOpt is the user namespace of an app container: the pod's,
// which the container's option must repeat.
func containerUsernsOpt(pod, ctr *runtimeapi.UserNamespace, sandboxPID uint32, supported bool) (oci.SpecOpts, error) {
	uids, gids, err := UsernsMappings(ctr)
	if err != nil {
		return nil, err
	}
	puids, pgids, err := UsernsMappings(pod)
	if err != nil {
		return nil, fmt.Errorf("pod %w", err)
	}
	if !slices.Equal(uids, puids) || !slices.Equal(gids, pgids) {
		return nil, fmt.Errorf("%w: the container's user namespace options differ from the pod's", errdefs.ErrInvalidArgument)
	}
	if uids == nil {
		return nil, nil
	}
	if !supported {
		return nil, errUsernsUnsupported
	}
	return withUserns(ProcNS(sandboxPID, "user"), uids, gids), nil
}

// PodUsernsMappings returns the mappings of the pod's own user namespace
// (nil for a pod in the host's) once it is known the handler can run it
// (supported: Handler.UserNamespaces).
func PodUsernsMappings(cfg *runtimeapi.PodSandboxConfig, supported bool) (uids, gids []runtimespec.LinuxIDMapping, err error) {
	uids, gids, err = UsernsMappings(cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions())
	if err != nil || uids == nil {
		return nil, nil, err
	}
	if !supported {
		return nil, nil, errUsernsUnsupported
	}
	return uids, gids, nil
}

// withHostSys replaces the sysfs mount at /sys with a read-only bind of the
// host's /sys, for a user-namespaced pod on the host network: the host
// network namespace is not the pod root's, so sysfs cannot be mounted.
func withHostSys() oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		bind := runtimespec.Mount{
			Destination: "/sys",
			Type:        "bind",
			Source:      "/sys",
			Options:     []string{"rbind", "rro", "nosuid", "nodev", "noexec"},
		}
		// In place: mounts below /sys (the cgroup filesystem) come later.
		i := slices.IndexFunc(s.Mounts, func(m runtimespec.Mount) bool { return filepath.Clean(m.Destination) == "/sys" })
		if i < 0 {
			s.Mounts = append(s.Mounts, bind)
			return nil
		}
		s.Mounts[i] = bind
		return nil
	}
}
