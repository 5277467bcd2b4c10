package spec

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// This file checks image volumes (CRI Mount.image): what their mounts may
// ask for and the id mappings of their binds. The core makes and mounts
// them (sandbox/imagevolume.go); planMounts binds them.

// CheckImageMount checks what an image volume's CRI mount must be, before
// anything is looked up: no host path, read-only, no mount options, a
// relative sub path that stays inside the image. It returns the clean sub
// path ("" for the root).
func CheckImageMount(field string, m *runtimeapi.Mount) (string, error) {
	switch {
	case m.GetHostPath() != "":
		return "", fmt.Errorf("%w: %s: host_path %q and image %q are mutually exclusive", errdefs.ErrInvalidArgument, field, m.GetHostPath(), m.GetImage().GetImage())
	case !m.GetReadonly():
		return "", fmt.Errorf("%w: %s: image volumes are read-only: readonly must be true", errdefs.ErrInvalidArgument, field)
	case len(m.GetMountOptions()) > 0:
		return "", fmt.Errorf("%w: %s.mount_options: not supported on image volumes", errdefs.ErrInvalidArgument, field)
	}
	return cleanImageSubPath(field+".image_sub_path", m.GetImageSubPath())
}

// cleanImageSubPath checks a sub path: relative, no "..", no NUL; "" and
// "." are the image's root.
func cleanImageSubPath(field, sub string) (string, error) {
	if sub == "" {
		return "", nil
	}
	if path.IsAbs(sub) || strings.ContainsRune(sub, 0) || slices.Contains(strings.Split(sub, "/"), "..") {
		return "", fmt.Errorf("%w: %s: %q must be a relative path without \"..\"", errdefs.ErrInvalidArgument, field, sub)
	}
	if c := path.Clean(sub); c != "." {
		return c, nil
	}
	return "", nil
}

// ImageVolumeMappings are the id mappings an image volume's bind gets: the
// mount's own (kubelet sends the pod's with every mount of a pod with a
// user namespace), else the pod's; none in the host's user namespace.
func ImageVolumeMappings(m *runtimeapi.Mount, podUIDs, podGIDs []runtimespec.LinuxIDMapping) (uids, gids []runtimespec.LinuxIDMapping, err error) {
	if len(m.GetUidMappings()) == 0 && len(m.GetGidMappings()) == 0 {
		return podUIDs, podGIDs, nil
	}
	if uids, err = idMappings(m.GetUidMappings()); err != nil {
		return nil, nil, fmt.Errorf("uidMappings: %v", err)
	}
	if gids, err = idMappings(m.GetGidMappings()); err != nil {
		return nil, nil, fmt.Errorf("gidMappings: %v", err)
	}
	return uids, gids, nil
}
