package sandbox

import (
	"context"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
)

// WithDeviceOwnershipFromSecurityContext makes the device nodes of CRI
// devices owned by the container process's uid and gid instead of the host
// node's (containerd's device_ownership_from_security_context). The CDI
// injector has the same switch for CDI devices.
func WithDeviceOwnershipFromSecurityContext(on bool) Option {
	return func(r *Runtime) { r.deviceOwnershipFromSC = on }
}

// withDeviceOwner gives the nodes of devs to the process's user; it runs
// after the user and the devices are set.
func withDeviceOwner(devs []containerDevice) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil || s.Linux == nil {
			return nil
		}
		paths := map[string]bool{}
		for _, d := range devs {
			paths[d.node.Path] = true
		}
		uid, gid := s.Process.User.UID, s.Process.User.GID
		for i := range s.Linux.Devices {
			if paths[s.Linux.Devices[i].Path] {
				s.Linux.Devices[i].UID, s.Linux.Devices[i].GID = &uid, &gid
			}
		}
		return nil
	}
}
