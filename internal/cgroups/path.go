package cgroups

import (
	"fmt"
	"path"
	"strings"

	"github.com/containerd/errdefs"
)

// Prefix names accel-cri's cgroups: the default cgroupfs parent
// (/accel-cri) and the systemd scope prefix (accel-cri-<id>.scope).
const Prefix = "accel-cri"

// Path is the OCI cgroupsPath of a pod or container id under the cgroup
// parent kubelet sent.
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
func Path(driver, parent, id string) (string, error) {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/:") || hasControl(id) {
		return "", fmt.Errorf("%w: invalid cgroup id %q", errdefs.ErrInvalidArgument, id)
	}
	if hasControl(parent) {
		return "", fmt.Errorf("%w: cgroup_parent %q has control characters", errdefs.ErrInvalidArgument, parent)
	}
	switch driver {
	case DriverCgroupfs:
		if parent == "" {
			return "/" + Prefix + "/" + id, nil
		}
		if !path.IsAbs(parent) || path.Clean(parent) != parent || strings.Contains(parent, "..") {
			return "", fmt.Errorf("%w: cgroup_parent %q must be an absolute clean path for the cgroupfs driver", errdefs.ErrInvalidArgument, parent)
		}
		return path.Join(parent, id), nil
	case DriverSystemd:
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
		if !IsSlice(slice) {
			return "", fmt.Errorf("%w: cgroup_parent %q must be a systemd slice name (like kubepods-besteffort-pod1.slice) for the systemd driver", errdefs.ErrInvalidArgument, parent)
		}
		return slice + ":" + Prefix + ":" + id, nil
	}
	return "", fmt.Errorf("%w: unknown cgroup driver %q", errdefs.ErrInvalidArgument, driver)
}

// IsSlice reports whether s is a systemd slice name ("kubepods-pod1.slice"):
// a non-empty name without ".." of the characters systemd allows in unit
// names, minus ':' which separates runc's cgroupsPath fields, and the
// ".slice" suffix.
func IsSlice(s string) bool {
	name, ok := strings.CutSuffix(s, ".slice")
	if !ok || name == "" || strings.Contains(name, "..") {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-', r == '\\', r == '@':
		default:
			return false
		}
	}
	return true
}

// CheckPath checks that a cgroupsPath keeps the form of the driver (what
// NRI plugins set is checked with it: stats and cleanup read the
// container's cgroup by it): "slice:prefix:name" for systemd, an absolute
// clean path for cgroupfs; no "..", no control characters.
func CheckPath(driver, p string) error {
	if hasControl(p) || strings.Contains(p, "..") {
		return fmt.Errorf("%w: cgroups path %q", errdefs.ErrInvalidArgument, p)
	}
	switch driver {
	case DriverSystemd:
		if f := strings.Split(p, ":"); len(f) != 3 || !strings.HasSuffix(f[0], ".slice") || f[2] == "" {
			return fmt.Errorf("%w: cgroups path %q is not the systemd driver's slice:prefix:name", errdefs.ErrInvalidArgument, p)
		}
	default:
		if !path.IsAbs(p) || path.Clean(p) != p {
			return fmt.Errorf("%w: cgroups path %q is not an absolute clean path", errdefs.ErrInvalidArgument, p)
		}
	}
	return nil
}

// Dir is the cgroup directory (relative to a hierarchy's root) of an OCI
// cgroupsPath: "/parent/id" for cgroupfs, "slice:prefix:name" for systemd
// (the scope prefix-name.scope in the slice's directory).
func Dir(driver, cgroupsPath string) (string, error) {
	if driver != DriverSystemd {
		if !path.IsAbs(cgroupsPath) || path.Clean(cgroupsPath) != cgroupsPath || strings.Contains(cgroupsPath, "..") {
			return "", fmt.Errorf("%w: cgroupfs path %q", errdefs.ErrInvalidArgument, cgroupsPath)
		}
		return cgroupsPath, nil
	}
	slice, rest, ok1 := strings.Cut(cgroupsPath, ":")
	prefix, name, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 || name == "" || strings.ContainsAny(name, "/") || strings.ContainsAny(prefix, "/") {
		return "", fmt.Errorf("%w: systemd cgroups path %q", errdefs.ErrInvalidArgument, cgroupsPath)
	}
	d, err := expandSlice(slice)
	if err != nil {
		return "", err
	}
	unit := name + ".scope"
	if prefix != "" {
		unit = prefix + "-" + unit
	}
	return path.Join(d, unit), nil
}

// expandSlice turns a systemd slice name into its cgroup directory, the way
// systemd nests slices: "a-b-c.slice" is /a.slice/a-b.slice/a-b-c.slice.
func expandSlice(slice string) (string, error) {
	name, ok := strings.CutSuffix(slice, ".slice")
	if ok && name == "-" {
		return "/", nil // the root slice
	}
	if !ok || strings.Contains(slice, "/") || strings.Contains(name, "--") || strings.HasSuffix(name, "-") {
		return "", fmt.Errorf("%w: systemd slice %q", errdefs.ErrInvalidArgument, slice)
	}
	var b strings.Builder
	prefix := ""
	for part := range strings.SplitSeq(name, "-") {
		if part == "" {
			return "", fmt.Errorf("%w: systemd slice %q", errdefs.ErrInvalidArgument, slice)
		}
		b.WriteString("/" + prefix + part + ".slice")
		prefix += part + "-"
	}
	return b.String(), nil
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
