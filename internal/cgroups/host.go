package cgroups

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/moby/sys/mountinfo"
	"k8s.io/klog/v2"
)

// Root is where the cgroup hierarchies are mounted: the unified one on a
// v2 host, a tmpfs with one directory per v1 hierarchy otherwise.
const Root = "/sys/fs/cgroup"

// mountinfoPath is what Discover reads the cgroup mounts from.
const mountinfoPath = "/proc/self/mountinfo"

// Version is how a host mounts its cgroup hierarchies.
type Version int

const (
	// None: no cgroup v1 controller is mounted and no cgroup2 at Root.
	None Version = iota
	// V1 (legacy): v1 hierarchies only.
	V1
	// Hybrid: v1 hierarchies, and cgroup2 mounted beside them
	// (/sys/fs/cgroup/unified).
	Hybrid
	// V2 (unified): cgroup2 mounted at Root.
	V2
)

func (v Version) String() string {
	switch v {
	case V1:
		return "v1"
	case Hybrid:
		return "hybrid"
	case V2:
		return "v2"
	}
	return "none"
}

// v1Controllers are the controllers a v1 mount's options can name.
var v1Controllers = []string{"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc"}

// Mount is one mounted cgroup hierarchy.
type Mount struct {
	// Point is where it is mounted.
	Point string
	// Root is the hierarchy's path mounted there: "/", or a subtree (a
	// container without a cgroup namespace).
	Root string
	// V2: a cgroup2 mount; else a v1 one.
	V2 bool
	// Options are its super options: a v1 mount's controllers and
	// name=, and the flags (rw, nsdelegate, favordynmods...).
	Options []string
}

// holds says whether the mount is the hierarchy /proc/self/cgroup lists
// under key: "" for the unified one, else its controllers ("cpu,cpuacct",
// "name=systemd"). A controller is in one hierarchy only, so a mount
// with all of them is that hierarchy, whatever the order of its options.
func (m Mount) holds(key string) bool {
	if key == "" || m.V2 {
		return key == "" && m.V2
	}
	for _, c := range strings.Split(key, ",") {
		if !slices.Contains(m.Options, c) {
			return false
		}
	}
	return true
}

// Host is what a host's cgroups offer, found once by Discover. The zero
// Host knows of no cgroups: nothing mounted, no controller.
type Host struct {
	// Mounts are the cgroup and cgroup2 mounts, in mountinfo order.
	Mounts []Mount
	// Version is how the hierarchies are mounted.
	Version Version
	// Unified is where cgroup2 is mounted: Root on a v2 host, beside the
	// v1 hierarchies on a hybrid one; "" when it is not mounted.
	Unified string
	// UnifiedControllers are the controllers of the cgroup2 hierarchy
	// (its cgroup.controllers): all of them on a v2 host, usually none
	// on a hybrid one.
	UnifiedControllers []string
	// V1Controllers are the v1 controllers mounted, in mountinfo order.
	V1Controllers []string
	// SwapAccounting and Hugetlb say whether swap accounting and the
	// hugetlb controller exist: limits for missing ones make runc fail.
	SwapAccounting, Hugetlb bool
	// Favordynmods: a hierarchy is mounted with favordynmods, which
	// keeps the kernel's cgroup migration lock warm (MigrationWarmer).
	Favordynmods bool

	// unifiedErr is why a v2 host's cgroup.controllers was unreadable.
	unifiedErr error
}

// V2 reports whether the host runs the unified hierarchy (cgroup v2) only.
func (h *Host) V2() bool { return h.Version == V2 }

// Controllers lists the controllers containers can be limited with: a v2
// host's cgroup.controllers (an error when it cannot be read), else the
// mounted v1 ones.
func (h *Host) Controllers() ([]string, error) {
	if h.Version == V2 {
		return h.UnifiedControllers, h.unifiedErr
	}
	return h.V1Controllers, nil
}

// MountPoints are where the hierarchies are mounted, in mountinfo order:
// each v1 one and the cgroup2 one (also on a hybrid host).
func (h *Host) MountPoints() []string {
	out := make([]string, 0, len(h.Mounts))
	for _, m := range h.Mounts {
		out = append(out, m.Point)
	}
	return out
}

// ControllerDir is the directory of the cgroup at path (relative to a
// hierarchy's root, as Dir gives it) in the hierarchy that holds
// controller: below Unified on a v2 host, else below the v1 mount with
// that controller. "" when no hierarchy holds it.
func (h *Host) ControllerDir(controller, path string) string {
	if h.Version == V2 {
		return filepath.Join(h.Unified, path)
	}
	for _, m := range h.Mounts {
		if !m.V2 && slices.Contains(m.Options, controller) {
			return filepath.Join(m.Point, path)
		}
	}
	return ""
}

// Files reads the host for Discover: absolute paths. OS is the real host.
type Files interface {
	ReadFile(name string) ([]byte, error)
	Stat(name string) (fs.FileInfo, error)
}

// OS reads the real host.
type OS struct{}

func (OS) ReadFile(name string) ([]byte, error)  { return os.ReadFile(name) }
func (OS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }

// Discover finds a host's cgroups: the mounts of /proc/self/mountinfo and,
// below them, the files that say which controllers exist. It fails only
// when mountinfo cannot be read.
func Discover(files Files) (*Host, error) {
	b, err := files.ReadFile(mountinfoPath)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", mountinfoPath, err)
	}
	infos, err := mountinfo.GetMountsFromReader(bytes.NewReader(b), mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", mountinfoPath, err)
	}
	h := &Host{}
	v2Root, v2Elsewhere := false, ""
	for _, i := range infos {
		m := Mount{Point: i.Mountpoint, Root: i.Root, V2: i.FSType == "cgroup2", Options: strings.Split(i.VFSOptions, ",")}
		h.Mounts = append(h.Mounts, m)
		h.Favordynmods = h.Favordynmods || slices.Contains(m.Options, "favordynmods")
		if m.V2 {
			if m.Point == Root {
				v2Root = true
			} else {
				v2Elsewhere = m.Point
			}
			continue
		}
		for _, o := range m.Options {
			if slices.Contains(v1Controllers, o) && !slices.Contains(h.V1Controllers, o) {
				h.V1Controllers = append(h.V1Controllers, o)
			}
		}
	}
	switch {
	case v2Root:
		h.Version, h.Unified = V2, Root
	case len(h.V1Controllers) > 0:
		h.Version, h.Unified = V1, v2Elsewhere
		if v2Elsewhere != "" {
			h.Version = Hybrid
		}
	default:
		h.Unified = v2Elsewhere
	}
	if h.Unified != "" {
		c, err := files.ReadFile(filepath.Join(h.Unified, "cgroup.controllers"))
		h.UnifiedControllers = strings.Fields(string(c))
		if h.Version == V2 {
			h.unifiedErr = err
		}
	}
	exists := func(p string) bool {
		_, err := files.Stat(p)
		return err == nil
	}
	if h.Version == V2 {
		h.SwapAccounting = exists(filepath.Join(Root, "memory.swap.max"))
		h.Hugetlb = slices.Contains(h.UnifiedControllers, "hugetlb")
	} else {
		h.SwapAccounting = exists(filepath.Join(Root, "memory", "memory.memsw.limit_in_bytes"))
		h.Hugetlb = exists(filepath.Join(Root, "hugetlb"))
	}
	return h, nil
}

var local = sync.OnceValue(func() *Host {
	h, err := Discover(OS{})
	if err != nil {
		klog.ErrorS(err, "No cgroup mounts found")
		return &Host{}
	}
	return h
})

// Local is the Host this process runs on, discovered on the first call.
// When mountinfo cannot be read it knows of no cgroups.
func Local() *Host { return local() }
