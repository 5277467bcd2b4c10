package podnet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/pkg/netns"
	"github.com/containerd/containerd/v2/pkg/sys"
	cnins "github.com/containernetworking/plugins/pkg/ns"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// NewNetNS creates a persistent network namespace for a pod, bind-mounted
// under baseDir, and returns its path.
func NewNetNS(baseDir string) (string, error) {
	ns, err := netns.NewNetNS(baseDir)
	if err != nil {
		return "", fmt.Errorf("create pod netns under %s: %w", baseDir, err)
	}
	return ns.GetPath(), nil
}

// NewNetNSInUserns creates a pod network namespace, bind-mounted under
// baseDir like NewNetNS, whose owner is a new user namespace with the
// mappings uid and gid (the pod's: one range of each). The caller pins that
// user namespace if something must join it later (containerd's CRI:
// sandbox_run_linux.go setupNetnsWithinUserns).
func NewNetNSInUserns(baseDir string, uid, gid runtimespec.LinuxIDMapping) (string, error) {
	var path string
	// A process is started in a new user namespace with the mappings and
	// unshares a network namespace there; it is killed once the
	// namespace is mounted.
	err := sys.UnshareAfterEnterUserns(idMapString(uid), idMapString(gid), unix.CLONE_NEWNET, func(pid int) error {
		ns, err := netns.NewNetNSFromPID(baseDir, uint32(pid))
		if err != nil {
			return err
		}
		path = ns.GetPath()
		return nil
	})
	if err != nil {
		var rerr error
		if path != "" {
			rerr = RemoveNetNS(path)
		}
		return "", errors.Join(fmt.Errorf("create pod netns in a user namespace under %s: %w", baseDir, err), rerr)
	}
	return path, nil
}

// idMapString is a mapping as "container:host:size", the form
// sys.UnshareAfterEnterUserns takes.
func idMapString(m runtimespec.LinuxIDMapping) string {
	return fmt.Sprintf("%d:%d:%d", m.ContainerID, m.HostID, m.Size)
}

// RemoveNetNS unmounts the pod network namespace at path and removes the
// file. A path that is already gone is not an error.
func RemoveNetNS(path string) error {
	if path == "" {
		return nil
	}
	if err := netns.LoadNetNS(path).Remove(); err != nil {
		return fmt.Errorf("remove pod netns %s: %w", path, err)
	}
	return nil
}

// RemoveOrphanNetNS removes the network namespaces under baseDir whose path
// owned does not hold (left by a crash at a moment no checkpoint covers).
// Hidden entries are left alone.
func RemoveOrphanNetNS(baseDir string, owned map[string]bool) {
	entries, err := os.ReadDir(baseDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		path := filepath.Join(baseDir, e.Name())
		if !owned[path] && !strings.HasPrefix(e.Name(), ".") {
			klog.InfoS("Removing network namespace no pod owns", "path", path)
			if err := RemoveNetNS(path); err != nil {
				klog.ErrorS(err, "Remove orphan netns", "path", path)
			}
		}
	}
}

// liveNetNS returns path when it is a network namespace, and "" (the CNI
// convention for "the namespace is gone, clean up what you can") when the
// path is missing or no longer a mounted namespace.
func liveNetNS(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	ns, err := cnins.GetNS(path)
	if err != nil {
		var notExist cnins.NSPathNotExistErr
		var notNS cnins.NSPathNotNSErr
		if errors.As(err, &notExist) || errors.As(err, &notNS) {
			return "", nil
		}
		return "", fmt.Errorf("open netns %s: %w", path, err)
	}
	ns.Close()
	return path, nil
}
