package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
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
// path (symlinks resolved) must be a character or block device under /dev; the
// permissions are some of "rwm" ("rwm" when empty). The rule allows exactly
// that device (type, major, minor) with those permissions.
func resolveDevices(devs []*runtimeapi.Device) ([]containerDevice, error) {
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
		host, err := filepath.EvalSymlinks(d.GetHostPath())
		if err != nil {
			if os.IsNotExist(err) {
				return nil, fmt.Errorf("%w: %s: host device %q does not exist", errdefs.ErrNotFound, field, d.GetHostPath())
			}
			return nil, fmt.Errorf("%s: resolve host device %q: %w", field, d.GetHostPath(), err)
		}
		if !underDevRoot(host) {
			return nil, fmt.Errorf("%w: %s: host device %q resolves to %q, outside %s", errdefs.ErrInvalidArgument, field, d.GetHostPath(), host, devRoot)
		}
		info, err := devices.StatNode(host)
		if errors.Is(err, devices.ErrNotDeviceNode) {
			return nil, fmt.Errorf("%w: %s: host path %q is not a character or block device", errdefs.ErrInvalidArgument, field, d.GetHostPath())
		}
		if err != nil {
			return nil, fmt.Errorf("%s: stat host device %q: %w", field, host, err)
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

// devRoot is where CRI device host paths must resolve to. A variable so that
// tests can use device nodes made under a temp dir.
var devRoot = "/dev"

// underDevRoot reports whether the resolved path p is below devRoot: a
// symlink under /dev must not lend a node (or a regular file) from
// elsewhere on the host.
func underDevRoot(p string) bool {
	rel, err := filepath.Rel(devRoot, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../")
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

// withHostDevices adds every device node of the host's /dev that the spec
// does not have at that path yet (privileged containers).
func withHostDevices(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	devs, err := oci.HostDevices()
	if err != nil {
		return fmt.Errorf("list host devices: %w", err)
	}
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
