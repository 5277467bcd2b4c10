package sandbox

import (
	"context"
	"fmt"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// This file holds what a pod with a user namespace of its own (hostUsers:
// false) needs besides the namespace in its specs and the idmapped bind
// mounts (sandbox/spec builds both). Each piece is what containerd's CRI
// does (internal/cri/server):
//
//   - The pod network namespace is made inside a new user namespace with
//     the pod's mappings, and the pause container joins that user namespace
//     (pinned at <pod>/ns/user): the pod's root then owns its network
//     namespace, so runc can mount sysfs and the pod's net sysctls can be
//     written (sandbox_run_linux.go setupNetnsWithinUserns,
//     podsandbox/helpers_linux.go pinUserNamespace).
//   - The root filesystems of the pause and the app containers are prepared
//     with the mappings as snapshot labels (helpers_linux.go
//     snapshotterRemapOpts): the overlay snapshotter answers with idmapped
//     mounts (uidmap=/gidmap= options) where the kernel has them; for other
//     snapshotters containerd's client copies the image's layers with
//     shifted owners once per image and mapping.
//   - With the host network, /sys is bound from the host read-only: the host
//     network namespace is not the pod root's, so sysfs cannot be mounted
//     (container_create.go, podsandbox/sandbox_run_linux.go); sandbox/spec
//     does that in the spec.
//   - The pipes of a container's stdio belong to its user as seen from the
//     host (container_start_linux.go updateContainerIOOwner).

// ownUserns reports whether a user namespace option asks for a namespace of
// the pod's own. (NODE, the host's user namespace, is the only other mode;
// an absent option is the host's too, while POD is the zero value.)
func ownUserns(u *runtimeapi.UserNamespace) bool {
	return u != nil && u.GetMode() == runtimeapi.NamespaceMode_POD
}

// rootfsRemapOpts are the snapshot options of the root filesystem of a
// container whose pod has the user namespace mappings uids and gids; none
// for a pod in the host's user namespace. (containerd's CRI labels
// WithRemapperLabels(0, uids[0].HostID, 0, gids[0].HostID, uids[0].Size),
// the uids' length for the gids too; here each has its own.)
func rootfsRemapOpts(uids, gids []runtimespec.LinuxIDMapping) []snapshots.Opt {
	if len(uids) == 0 {
		return nil
	}
	return []snapshots.Opt{containerd.WithUserNSRemapperLabels(uids, gids)}
}

// idMapString is a mapping as "container:host:size", the form
// sys.UnshareAfterEnterUserns takes.
func idMapString(m runtimespec.LinuxIDMapping) string {
	return fmt.Sprintf("%d:%d:%d", m.ContainerID, m.HostID, m.Size)
}

// toHostID maps an id inside a user namespace to the host's.
func toHostID(maps []runtimespec.LinuxIDMapping, id uint32) (uint32, bool) {
	for _, m := range maps {
		if id >= m.ContainerID && uint64(id) < uint64(m.ContainerID)+uint64(m.Size) {
			return m.HostID + (id - m.ContainerID), true
		}
	}
	return 0, false
}

// ioOwner returns the host uid and gid the pipes of a container's stdio
// must belong to so that its process can reopen them (/dev/stdout is
// /proc/self/fd/1): its user mapped to the host. ok is false for a
// container in the host's user namespace, whose pipes stay root's.
func ioOwner(s *runtimespec.Spec) (uid, gid uint32, ok bool, err error) {
	if s.Linux == nil || len(s.Linux.UIDMappings) == 0 {
		return 0, 0, false, nil
	}
	if s.Process == nil {
		return 0, 0, false, fmt.Errorf("%w: spec has no process", errdefs.ErrFailedPrecondition)
	}
	u := s.Process.User
	if uid, ok = toHostID(s.Linux.UIDMappings, u.UID); !ok {
		return 0, 0, false, fmt.Errorf("%w: uid %d is not mapped in the pod's user namespace", errdefs.ErrInvalidArgument, u.UID)
	}
	if gid, ok = toHostID(s.Linux.GIDMappings, u.GID); !ok {
		return 0, 0, false, fmt.Errorf("%w: gid %d is not mapped in the pod's user namespace", errdefs.ErrInvalidArgument, u.GID)
	}
	return uid, gid, true, nil
}

// taskIOOwnerOpts gives a user-namespaced container's stdio pipes to its
// user (the runc shim's IoUid and IoGid); nothing for other containers.
func taskIOOwnerOpts(ctx context.Context, c *Container, ctr containerd.Container) ([]containerd.NewTaskOpts, error) {
	if !ownUserns(c.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions()) {
		return nil, nil
	}
	spec, err := ctr.Spec(ctx)
	if err != nil {
		return nil, fmt.Errorf("read spec of container %s: %w", c.ID, err)
	}
	uid, gid, ok, err := ioOwner(spec)
	if err != nil || !ok {
		return nil, err
	}
	return []containerd.NewTaskOpts{containerd.WithUIDOwner(uid), containerd.WithGIDOwner(gid)}, nil
}
