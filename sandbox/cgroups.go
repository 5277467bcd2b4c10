package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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
		if _, err := os.Stat(d); err != nil {
			continue
		}
		// Processes still in it are the forgotten container's (its init
		// waiting to be started): the container is being removed.
		for i := 0; i < 20; i++ {
			killCgroupProcs(d)
			err := unix.Rmdir(d)
			if err == nil {
				klog.InfoS("Removed a cgroup its container left", "path", d)
				break
			}
			if !errors.Is(err, unix.EBUSY) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// killCgroupProcs SIGKILLs the processes listed in a cgroup directory.
func killCgroupProcs(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}
