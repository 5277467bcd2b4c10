package sandbox

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

	"github.com/moby/sys/mountinfo"
	"k8s.io/klog/v2"
)

// migrationWarmer shortens the first cgroup migration after an idle spell.
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
// kick starts a no-op migration of accel-cri into its own cgroup in the
// background as soon as an exec is requested. The grace period then
// elapses while the shim starts `runc exec`, and runc's own migration,
// 10-15 ms later, finds the lock still warm (it stays warm for about one
// grace period after the last writer). Task creation is not warmed: runc
// create writes its cgroup.procs after containerd started the shim, too
// late for a kick made before NewTask. Hosts whose cgroup hierarchy is
// mounted with favordynmods keep the lock warm permanently and need none
// of this.
type migrationWarmer struct {
	procs string // accel-cri's own cgroup.procs, in one hierarchy
	pid   []byte
	// busy: one warming write at a time (a second one finds the lock warm
	// anyway); off: the write failed once, so warming stays off.
	busy, off atomic.Bool
}

// hostMigrationWarmer is newMigrationWarmer for this process.
func hostMigrationWarmer() *migrationWarmer {
	cg, err := os.Open("/proc/self/cgroup")
	if err != nil {
		klog.V(4).InfoS("No cgroup migration warming", "err", err)
		return nil
	}
	defer cg.Close()
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		klog.V(4).InfoS("No cgroup migration warming", "err", err)
		return nil
	}
	defer mi.Close()
	w, why := newMigrationWarmer(cg, mi)
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
func newMigrationWarmer(procSelfCgroup, mountInfo io.Reader) (*migrationWarmer, string) {
	own, err := ownCgroups(procSelfCgroup)
	if err != nil {
		return nil, err.Error()
	}
	mounts, favor, err := cgroupMountsOf(mountInfo)
	if err != nil {
		return nil, err.Error()
	}
	if favor {
		return nil, "a cgroup hierarchy is mounted with favordynmods"
	}
	// The unified hierarchy first: on a hybrid host it has no
	// controllers, so its migration callbacks do nothing.
	for _, m := range mounts {
		for key, p := range own {
			if !m.holds(key) {
				continue
			}
			rel, ok := underRoot(p, m.root)
			if !ok {
				continue
			}
			procs := filepath.Join(m.point, rel, "cgroup.procs")
			if _, err := os.Stat(procs); err != nil {
				continue
			}
			return &migrationWarmer{procs: procs, pid: []byte(strconv.Itoa(os.Getpid()))}, ""
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

// kick starts the warming migration unless one is under way. It never
// blocks: the write waits out the grace period in its own goroutine, which
// ends when the write returns.
func (w *migrationWarmer) kick() {
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

func (w *migrationWarmer) write() error {
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

type cgroupMount struct {
	v2      bool
	options map[string]bool // its super options: a v1 mount's controllers, name=
	root    string          // the hierarchy's path mounted here
	point   string
}

// holds says whether the mount is the hierarchy /proc/self/cgroup lists
// under key: "" for the unified one, else its controllers ("cpu,cpuacct",
// "name=systemd"). A controller is in one hierarchy only, so a mount
// with all of them is that hierarchy, whatever the order of its options.
func (m cgroupMount) holds(key string) bool {
	if key == "" || m.v2 {
		return key == "" && m.v2
	}
	for _, c := range strings.Split(key, ",") {
		if !m.options[c] {
			return false
		}
	}
	return true
}

// cgroupMountsOf lists the cgroup mounts of a mountinfo, the unified ones
// first, and whether any of them has favordynmods.
func cgroupMountsOf(r io.Reader) ([]cgroupMount, bool, error) {
	infos, err := mountinfo.GetMountsFromReader(r, mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, false, fmt.Errorf("read mountinfo: %w", err)
	}
	var unified, v1 []cgroupMount
	favor := false
	for _, i := range infos {
		m := cgroupMount{v2: i.FSType == "cgroup2", options: map[string]bool{}, root: i.Root, point: i.Mountpoint}
		for _, o := range strings.Split(i.VFSOptions, ",") {
			favor = favor || o == "favordynmods"
			m.options[o] = true
		}
		if m.v2 {
			unified = append(unified, m)
		} else {
			v1 = append(v1, m)
		}
	}
	return append(unified, v1...), favor, nil
}
