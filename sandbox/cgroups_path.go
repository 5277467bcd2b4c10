package sandbox

import (
	"fmt"
	"path"
	"strings"

	"github.com/containerd/errdefs"
)

// This file names the cgroups of pods and containers (the OCI
// cgroupsPath that sandbox/spec puts into their specs).

// cgroupPrefix names accel-cri's cgroups: the default cgroupfs parent and
// the systemd scope prefix (accel-cri-<id>.scope).
const cgroupPrefix = "accel-cri"

// cgroupsPath is the OCI cgroupsPath of a pod or container id under the
// cgroup parent kubelet sent.
//
// cgroupfs: parent is an absolute, clean path ("/kubepods/burstable/pod1");
// the result is "<parent>/<id>". Without a parent the cgroup is
// "/accel-cri/<id>", where containerd would put it for accel-cri's
// namespace.
//
// systemd: parent is a slice name ("kubepods-besteffort-pod1.slice"); an
// absolute path of slices is accepted and its last element used, as
// containerd does. The result is runc's "<slice>:accel-cri:<id>", a scope
// accel-cri-<id>.scope in that slice. Without a parent the slice is
// system.slice (runc's default).
//
// Relative parents, parents with ".." or unclean paths, and systemd parents
// that are not slices are rejected.
func cgroupsPath(driver, parent, id string) (string, error) {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/:") || hasControl(id) {
		return "", fmt.Errorf("%w: invalid cgroup id %q", errdefs.ErrInvalidArgument, id)
	}
	if hasControl(parent) {
		return "", fmt.Errorf("%w: cgroup_parent %q has control characters", errdefs.ErrInvalidArgument, parent)
	}
	switch driver {
	case CgroupDriverCgroupfs:
		if parent == "" {
			return "/" + cgroupPrefix + "/" + id, nil
		}
		if !path.IsAbs(parent) || path.Clean(parent) != parent || strings.Contains(parent, "..") {
			return "", fmt.Errorf("%w: cgroup_parent %q must be an absolute clean path for the cgroupfs driver", errdefs.ErrInvalidArgument, parent)
		}
		return path.Join(parent, id), nil
	case CgroupDriverSystemd:
		slice := parent
		if slice == "" {
			slice = "system.slice"
		}
		if strings.Contains(slice, "/") {
			if !path.IsAbs(slice) || path.Clean(slice) != slice || strings.Contains(slice, "..") {
				return "", fmt.Errorf("%w: cgroup_parent %q must be a systemd slice name for the systemd driver", errdefs.ErrInvalidArgument, parent)
			}
			slice = path.Base(slice)
		}
		name, ok := strings.CutSuffix(slice, ".slice")
		if !ok || name == "" || strings.Contains(name, "..") || !validUnitName(name) {
			return "", fmt.Errorf("%w: cgroup_parent %q must be a systemd slice name (like kubepods-besteffort-pod1.slice) for the systemd driver", errdefs.ErrInvalidArgument, parent)
		}
		return slice + ":" + cgroupPrefix + ":" + id, nil
	}
	return "", fmt.Errorf("%w: unknown cgroup driver %q", errdefs.ErrInvalidArgument, driver)
}

// validUnitName reports whether s has only the characters systemd allows in
// unit names, minus ':' which separates runc's cgroupsPath fields.
func validUnitName(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-', r == '\\', r == '@':
		default:
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
