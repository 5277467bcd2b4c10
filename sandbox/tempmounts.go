package sandbox

import (
	"fmt"
	"path/filepath"

	"github.com/containerd/containerd/v2/core/mount"
	"k8s.io/klog/v2"
)

// useTempMounts moves the containerd client's temporary mounts into
// stateDir and removes those an earlier run left there.
//
// The client mounts a container's image in a temp dir while it builds the
// spec (oci.WithUser, oci.WithAdditionalGIDs read /etc/passwd and
// /etc/group). By default that dir is in /tmp, where an accel-cri killed
// in the middle leaves the mount for good (seen after the chaos tests'
// SIGKILLs). Under the state dir, the next start unmounts it, as containerd
// does with its own root's tmpmounts. The location is process-wide, as in
// containerd's daemon.
func useTempMounts(stateDir string) error {
	if err := mount.SetTempMountLocation(filepath.Join(stateDir, "tmpmounts")); err != nil {
		return fmt.Errorf("temp mount location: %w", err)
	}
	warnings, err := mount.CleanupTempMounts(0)
	if err != nil {
		return fmt.Errorf("remove leftover temp mounts: %w", err)
	}
	for _, w := range warnings {
		klog.InfoS("Leftover temp mount not removed", "err", w)
	}
	return nil
}
