package cgroups

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

// Dirs is the directory of the cgroup at path (relative to a hierarchy's
// root, "/parent/id") in every mounted hierarchy, whether it exists or not.
func (h *Host) Dirs(path string) []string {
	out := make([]string, 0, len(h.Mounts))
	for _, m := range h.Mounts {
		out = append(out, filepath.Join(m.Point, path))
	}
	return out
}

// RemoveLeftover removes the cgroup directories of a cgroupfs path
// ("/parent/id") in every hierarchy, where they still exist and are empty.
// The OCI runtime removes them when it deletes the container; after an
// interrupted create, containerd's cleanup can leave one behind (seen: a
// v1 cpuset directory). Non-empty or busy ones are left alone. A systemd
// path ("slice:prefix:name") is systemd's to remove.
func (h *Host) RemoveLeftover(path string) {
	if !strings.HasPrefix(path, "/") || strings.Contains(path, "..") || path == "/" {
		return
	}
	for _, d := range h.Dirs(path) {
		if _, err := os.Stat(d); err != nil {
			continue
		}
		// Processes still in it are the forgotten container's (its init
		// waiting to be started): the container is being removed.
		for i := 0; i < 20; i++ {
			KillProcs(d)
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

// RemoveLeftoverChildren removes the leftover cgroups (RemoveLeftover)
// directly below the cgroupfs parent that are named like a container id (64
// lower-case hex digits) and that live does not claim: those a container's
// cut-short start made after its removal had already cleaned up (the shim
// carries on with the OCI runtime's create while containerd is down). The
// caller passes the parent of a pod it has just removed, and live reports
// the ids it still runs (pods and containers), so a directory of another
// pod's container below a shared parent is never touched.
func (h *Host) RemoveLeftoverChildren(parent string, live func(id string) bool) {
	if !strings.HasPrefix(parent, "/") || strings.Contains(parent, "..") {
		return
	}
	seen := map[string]bool{}
	for _, d := range h.Dirs(parent) {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			name := e.Name()
			if !e.IsDir() || seen[name] || !isContainerID(name) || live(name) {
				continue
			}
			seen[name] = true
			h.RemoveLeftover(filepath.Join(parent, name))
		}
	}
}

// isContainerID reports whether name has the form of the ids accel-cri
// gives pods and containers.
func isContainerID(name string) bool {
	if len(name) != 64 {
		return false
	}
	for _, c := range name {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// KillProcs SIGKILLs the processes listed in a cgroup directory (its
// cgroup.procs; never PID 1).
func KillProcs(dir string) {
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

// Walk lists the cgroup directories at and below path (relative to a
// hierarchy's root) in every hierarchy, each hierarchy's parents before
// their children.
func (h *Host) Walk(path string) []string {
	var out []string
	for _, root := range h.Dirs(path) {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

// Leftovers lists the cgroups below the pod cgroups under parent
// (parent/pod<uid>/<id>...): those are the pods' and containers' own,
// which the runtime must remove. The pod cgroups themselves belong to
// kubelet, which creates and removes them. For leak checks that count
// only what is below their own parent.
func (h *Host) Leftovers(parent string) []string {
	var left []string
	for _, root := range h.Dirs(parent) {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && strings.Count(strings.TrimPrefix(p, root), "/") >= 2 {
				left = append(left, p)
			}
			return nil
		})
	}
	return left
}

// KillTree SIGKILLs the processes of every cgroup at and below path in
// every hierarchy.
func (h *Host) KillTree(path string) {
	for _, d := range h.Walk(path) {
		KillProcs(d)
	}
}

// RemoveTrees removes the cgroup at path and those below it in every
// hierarchy, deepest first, as far as they are empty.
func (h *Host) RemoveTrees(path string) {
	for _, d := range h.Dirs(path) {
		_ = RemoveTree(d)
	}
}

// RemoveTree removes the cgroup directory dir and the cgroups below it,
// deepest first.
func RemoveTree(dir string) error {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var errs []error
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := unix.Rmdir(dirs[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
