package sandbox

import (
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// Cgroup drivers as kubelet names them.
const (
	CgroupDriverCgroupfs = "cgroupfs"
	CgroupDriverSystemd  = "systemd"
)

// ResolveCgroupDriver turns the configured driver ("auto", "cgroupfs",
// "systemd") into the one in use. "auto" picks systemd only when systemd is
// PID 1, since the systemd driver needs systemd to create the scopes.
func ResolveCgroupDriver(configured, proc1Comm string) string {
	switch configured {
	case CgroupDriverCgroupfs, CgroupDriverSystemd:
		return configured
	}
	b, err := os.ReadFile(proc1Comm)
	if err == nil && strings.TrimSpace(string(b)) == "systemd" {
		return CgroupDriverSystemd
	}
	return CgroupDriverCgroupfs
}

// cgroupRoot is where the cgroup hierarchies are mounted (a variable for
// tests).
var cgroupRoot = "/sys/fs/cgroup"

// removeLeftoverCgroup removes the cgroup directories of a cgroupfs path
// ("/parent/id") in every hierarchy, where they still exist and are empty.
// The OCI runtime removes them when it deletes the container; after an
// interrupted create, containerd's cleanup can leave one behind (seen: a
// v1 cpuset directory). Non-empty or busy ones are left alone. A systemd
// path ("slice:prefix:name") is systemd's to remove.
func removeLeftoverCgroup(path string) {
	if !strings.HasPrefix(path, "/") || strings.Contains(path, "..") || path == "/" {
		return
	}
	dirs := []string{filepath.Join(cgroupRoot, path)} // cgroup v2
	entries, _ := os.ReadDir(cgroupRoot)
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join(cgroupRoot, e.Name(), path))
		}
	}
	for _, d := range dirs {
		if err := unix.Rmdir(d); err == nil {
			klog.V(2).InfoS("Removed a cgroup its container left", "path", d)
		}
	}
}
