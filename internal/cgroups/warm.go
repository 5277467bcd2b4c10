package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"k8s.io/klog/v2"
)

// MigrationWarmer shortens the first cgroup migration after an idle spell.
//
// Every write to a cgroup.procs file (the OCI runtime moving an exec'd or a
// new container process into the container's cgroups) takes the kernel's
// global cgroup_threadgroup_rwsem for writing. That lock is a per-CPU
// rwsem whose writer side first waits for an RCU grace period, unless a
// writer ran less than about one grace period before. On an idle node
// every exec therefore waits one grace period (5-15 ms measured on this
// project's 2-core VM, a third of a cold `runc exec`), while a burst of
// execs pays it once.
//
// Kick starts a no-op migration of accel-cri into its own cgroup in the
// background as soon as an exec is requested. The grace period then
// elapses while the shim starts `runc exec`, and runc's own migration,
// 10-15 ms later, finds the lock still warm (it stays warm for about one
// grace period after the last writer). Task creation is not warmed: runc
// create writes its cgroup.procs after containerd started the shim, too
// late for a kick made before NewTask. Hosts whose cgroup hierarchy is
// mounted with favordynmods keep the lock warm permanently and need none
// of this.
type MigrationWarmer struct {
	procs string // accel-cri's own cgroup.procs, in one hierarchy
	pid   []byte
	// busy: one warming write at a time (a second one finds the lock warm
	// anyway); off: the write failed once, so warming stays off.
	busy, off atomic.Bool
}

// MigrationWarmer is the warmer of this process on h (nil: warming is
// not needed or not possible; Kick on nil does nothing).
func (h *Host) MigrationWarmer() *MigrationWarmer {
	cg, err := os.Open("/proc/self/cgroup")
	if err != nil {
		klog.V(4).InfoS("No cgroup migration warming", "err", err)
		return nil
	}
	defer cg.Close()
	w, why := newMigrationWarmer(cg, h.Mounts, h.Favordynmods)
	if w == nil {
		klog.V(4).InfoS("No cgroup migration warming", "reason", why)
		return nil
	}
	klog.V(4).InfoS("Cgroup migration warming", "file", w.procs)
	return w
}

// newMigrationWarmer finds a cgroup.procs file that moves this process
// into the cgroup it is in. It returns nil, and the reason, when warming is
// not needed or not possible: favordynmods is set, or no hierarchy of this
// process is mounted where this process sees it.
func newMigrationWarmer(procSelfCgroup io.Reader, mounts []Mount, favordynmods bool) (*MigrationWarmer, string) {
	own, err := ownCgroups(procSelfCgroup)
	if err != nil {
		return nil, err.Error()
	}
	if favordynmods {
		return nil, "a cgroup hierarchy is mounted with favordynmods"
	}
	// The unified hierarchy first: on a hybrid host it has no
	// controllers, so its migration callbacks do nothing.
	var ordered []Mount
	for _, v2 := range []bool{true, false} {
		for _, m := range mounts {
			if m.V2 == v2 {
				ordered = append(ordered, m)
			}
		}
	}
	for _, m := range ordered {
		for key, p := range own {
			if !m.holds(key) {
				continue
			}
			rel, ok := underRoot(p, m.Root)
			if !ok {
				continue
			}
			procs := filepath.Join(m.Point, rel, "cgroup.procs")
			if _, err := os.Stat(procs); err != nil {
				continue
			}
			return &MigrationWarmer{procs: procs, pid: []byte(strconv.Itoa(os.Getpid()))}, ""
		}
	}
	return nil, "no cgroup hierarchy of this process is mounted in its mount namespace"
}

// underRoot is p relative to a mount of the hierarchy's path root.
func underRoot(p, root string) (string, bool) {
	switch {
	case root == "/":
		return p, true
	case p == root:
		return "/", true
	case strings.HasPrefix(p, root+"/"):
		return p[len(root):], true
	}
	return "", false
}

// Kick starts the warming migration unless one is under way. It never
// blocks: the write waits out the grace period in its own goroutine, which
// ends when the write returns.
func (w *MigrationWarmer) Kick() {
	if w == nil || w.off.Load() || !w.busy.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer w.busy.Store(false)
		if err := w.write(); err != nil {
			w.off.Store(true)
			klog.InfoS("Cgroup migration warming off: exec latency after idle spells is not shortened", "file", w.procs, "err", err)
		}
	}()
}

func (w *MigrationWarmer) write() error {
	f, err := os.OpenFile(w.procs, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(w.pid)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ownCgroups reads /proc/self/cgroup into the path of each hierarchy, keyed
// by its controller list as the kernel prints it ("cpu,cpuacct",
// "name=systemd"; "" for the unified hierarchy).
func ownCgroups(r io.Reader) (map[string]string, error) {
	own := map[string]string{}
	s := bufio.NewScanner(r)
	for s.Scan() {
		f := strings.SplitN(s.Text(), ":", 3)
		if len(f) != 3 {
			continue
		}
		own[f[1]] = f[2]
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("read own cgroups: %w", err)
	}
	if len(own) == 0 {
		return nil, errors.New("this process is in no cgroup hierarchy")
	}
	return own, nil
}
