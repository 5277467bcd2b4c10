package spec

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/devices"
)

// This file adds the CRI devices of a container (kubelet's device plugins
// send them) and, for privileged containers, the host's devices.

// containerDevice is one device node to create in the container and the
// cgroup rule that lets it be used.
type containerDevice struct {
	node runtimespec.LinuxDevice
	rule runtimespec.LinuxDeviceCgroup
}

// resolveDevices checks each CRI device and reads its host node: the host
// path (symlinks resolved) must be a character or block device under /dev;
// the permissions are some of "rwm" ("rwm" when empty). The rule allows
// exactly that device (type, major, minor) with those permissions.
func (b *Builder) resolveDevices(devs []*runtimeapi.Device) ([]containerDevice, error) {
	var out []containerDevice
	for i, d := range devs {
		field := fmt.Sprintf("devices[%d]", i)
		perms := d.GetPermissions()
		if perms == "" {
			perms = "rwm"
		}
		if strings.Trim(perms, "rwm") != "" {
			return nil, fmt.Errorf("%w: %s: permissions %q may only hold r, w and m", errdefs.ErrInvalidArgument, field, d.GetPermissions())
		}
		ctrPath := d.GetContainerPath()
		if !filepath.IsAbs(ctrPath) || strings.ContainsRune(ctrPath, 0) {
			return nil, fmt.Errorf("%w: %s: container_path %q must be an absolute path without NUL", errdefs.ErrInvalidArgument, field, ctrPath)
		}
		if !filepath.IsAbs(d.GetHostPath()) || strings.ContainsRune(d.GetHostPath(), 0) {
			return nil, fmt.Errorf("%w: %s: host_path %q must be an absolute path without NUL", errdefs.ErrInvalidArgument, field, d.GetHostPath())
		}
		_, info, err := b.host.DeviceNode(d.GetHostPath())
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("%w: %s: host device %q does not exist", errdefs.ErrNotFound, field, d.GetHostPath())
		case errors.Is(err, devices.ErrOutsideRoot):
			return nil, fmt.Errorf("%w: %s: host device %v", errdefs.ErrInvalidArgument, field, err)
		case errors.Is(err, devices.ErrNotDeviceNode):
			return nil, fmt.Errorf("%w: %s: host path %q is not a character or block device", errdefs.ErrInvalidArgument, field, d.GetHostPath())
		case err != nil:
			return nil, fmt.Errorf("%s: host device: %w", field, err)
		}
		typ, major, minor, mode, uid, gid := info.Type, info.Major, info.Minor, info.Mode, info.UID, info.GID
		out = append(out, containerDevice{
			node: runtimespec.LinuxDevice{
				Path:     filepath.Clean(ctrPath),
				Type:     typ,
				Major:    major,
				Minor:    minor,
				FileMode: &mode,
				UID:      &uid,
				GID:      &gid,
			},
			rule: runtimespec.LinuxDeviceCgroup{
				Allow:  true,
				Type:   typ,
				Major:  &major,
				Minor:  &minor,
				Access: perms,
			},
		})
	}
	return out, nil
}

// withDevices adds the device nodes and their cgroup rules after the rules
// already in the spec (the default spec starts with "deny all").
func withDevices(devs []containerDevice) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if len(devs) == 0 {
			return nil
		}
		ensureResources(s)
		for _, d := range devs {
			s.Linux.Devices = append(s.Linux.Devices, d.node)
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, d.rule)
		}
		return nil
	}
}

// withHostDevices adds the host's device nodes (privileged containers)
// the spec does not have at that path yet.
func withHostDevices(devs []runtimespec.LinuxDevice) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		ensureLinux(s)
		have := map[string]bool{}
		for _, d := range s.Linux.Devices {
			have[d.Path] = true
		}
		for _, d := range devs {
			if !have[d.Path] {
				s.Linux.Devices = append(s.Linux.Devices, d)
			}
		}
		return nil
	}
}

// withDeviceOwner gives the nodes of devs to the process's user
// (devices.OwnNodes); it runs after the user and the devices are set.
func withDeviceOwner(devs []containerDevice) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		paths := make([]string, 0, len(devs))
		for _, d := range devs {
			paths = append(paths, d.node.Path)
		}
		devices.OwnNodes(s, paths)
		return nil
	}
}
