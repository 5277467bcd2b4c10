package cgroups

import (
	"io/fs"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

// mapFiles is a fake host: absolute paths in a MapFS (without the leading
// slash).
type mapFiles fstest.MapFS

func (m mapFiles) ReadFile(name string) ([]byte, error) {
	return fstest.MapFS(m).ReadFile(strings.TrimPrefix(name, "/"))
}

func (m mapFiles) Stat(name string) (fs.FileInfo, error) {
	return fstest.MapFS(m).Stat(strings.TrimPrefix(name, "/"))
}

// fakeHost is a host with this mountinfo and these other files.
func fakeHost(mountinfo string, files map[string]string) mapFiles {
	m := mapFiles{"proc/self/mountinfo": {Data: []byte(mountinfo)}}
	for name, data := range files {
		m[strings.TrimPrefix(name, "/")] = &fstest.MapFile{Data: []byte(data)}
	}
	return m
}

// Mountinfo of the hosts the tests describe: v2 (systemd's default), v1
// with cpu and cpuacct mounted together, and a hybrid host laid out as
// this project's CI VM is (no systemd, cgroup2 at /sys/fs/cgroup/unified).
const (
	v2Mountinfo = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
	v1Mountinfo = "24 18 0:21 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n" +
		"26 24 0:23 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:7 - cgroup cgroup rw,cpu,cpuacct\n" +
		"27 24 0:24 / /sys/fs/cgroup/memory rw,nosuid shared:8 - cgroup cgroup rw,memory\n" +
		"28 24 0:25 / /sys/fs/cgroup/pids rw,nosuid shared:9 - cgroup cgroup rw,pids\n"
	hybridMountinfo = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n" +
		"32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n" +
		"33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n" +
		"35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n" +
		"39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n" +
		"40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n" +
		"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
)

func TestDiscover(t *testing.T) {
	for _, tc := range []struct {
		desc, mountinfo string
		files           map[string]string
		want            Host
		controllers     []string
		controllersErr  bool
		points          []string
	}{
		{
			desc: "v2", mountinfo: v2Mountinfo,
			files:       map[string]string{"/sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory hugetlb pids\n", "/sys/fs/cgroup/memory.swap.max": ""},
			want:        Host{Version: V2, Unified: "/sys/fs/cgroup", UnifiedControllers: []string{"cpuset", "cpu", "io", "memory", "hugetlb", "pids"}, SwapAccounting: true, Hugetlb: true},
			controllers: []string{"cpuset", "cpu", "io", "memory", "hugetlb", "pids"},
			points:      []string{"/sys/fs/cgroup"},
		},
		{
			desc: "v2 without swap or hugetlb", mountinfo: v2Mountinfo,
			files:       map[string]string{"/sys/fs/cgroup/cgroup.controllers": "cpu memory pids\n"},
			want:        Host{Version: V2, Unified: "/sys/fs/cgroup", UnifiedControllers: []string{"cpu", "memory", "pids"}},
			controllers: []string{"cpu", "memory", "pids"},
			points:      []string{"/sys/fs/cgroup"},
		},
		{
			desc: "v2, cgroup.controllers unreadable", mountinfo: v2Mountinfo,
			want:           Host{Version: V2, Unified: "/sys/fs/cgroup"},
			controllersErr: true,
			points:         []string{"/sys/fs/cgroup"},
		},
		{
			desc: "v1", mountinfo: v1Mountinfo,
			files:       map[string]string{"/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes": "0", "/sys/fs/cgroup/hugetlb/tasks": ""},
			want:        Host{Version: V1, V1Controllers: []string{"cpu", "cpuacct", "memory", "pids"}, SwapAccounting: true, Hugetlb: true},
			controllers: []string{"cpu", "cpuacct", "memory", "pids"},
			points:      []string{"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"},
		},
		{
			desc: "hybrid: the v1 rules for swap and hugetlb", mountinfo: hybridMountinfo,
			files:       map[string]string{"/sys/fs/cgroup/unified/cgroup.controllers": "hugetlb\n"},
			want:        Host{Version: Hybrid, Unified: "/sys/fs/cgroup/unified", UnifiedControllers: []string{"hugetlb"}, V1Controllers: []string{"cpu", "cpuacct", "memory", "pids"}},
			controllers: []string{"cpu", "cpuacct", "memory", "pids"},
			points:      []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"},
		},
		{
			desc: "name=systemd is no controller", mountinfo: "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n",
			want:   Host{Version: None},
			points: []string{"/sys/fs/cgroup/systemd"},
		},
		{
			desc: "favordynmods", mountinfo: strings.Replace(v2Mountinfo, "nsdelegate", "nsdelegate,favordynmods", 1),
			want:           Host{Version: V2, Unified: "/sys/fs/cgroup", Favordynmods: true},
			controllersErr: true,
			points:         []string{"/sys/fs/cgroup"},
		},
		{desc: "no cgroup mount", mountinfo: "20 1 8:1 / / rw - ext4 /dev/vda rw\n", want: Host{Version: None}, points: []string{}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			h, err := Discover(fakeHost(tc.mountinfo, tc.files))
			if err != nil {
				t.Fatal(err)
			}
			if h.Version != tc.want.Version || h.Unified != tc.want.Unified || !slices.Equal(h.UnifiedControllers, tc.want.UnifiedControllers) ||
				!slices.Equal(h.V1Controllers, tc.want.V1Controllers) || h.SwapAccounting != tc.want.SwapAccounting ||
				h.Hugetlb != tc.want.Hugetlb || h.Favordynmods != tc.want.Favordynmods {
				t.Errorf("got %+v\nwant %+v", *h, tc.want)
			}
			if h.V2() != (tc.want.Version == V2) {
				t.Errorf("V2() = %v", h.V2())
			}
			c, err := h.Controllers()
			if !slices.Equal(c, tc.controllers) || (err != nil) != tc.controllersErr {
				t.Errorf("Controllers() = %v, %v; want %v (error %v)", c, err, tc.controllers, tc.controllersErr)
			}
			if p := h.MountPoints(); !slices.Equal(p, tc.points) {
				t.Errorf("MountPoints() = %q, want %q", p, tc.points)
			}
		})
	}
}

func TestDiscoverErrors(t *testing.T) {
	if _, err := Discover(mapFiles{}); err == nil || !strings.Contains(err.Error(), "read /proc/self/mountinfo") {
		t.Errorf("without mountinfo: %v", err)
	}
	if _, err := Discover(fakeHost("x y z\n - \n", nil)); err == nil {
		t.Error("garbage mountinfo read without an error")
	}
}

func TestMountsAndDirs(t *testing.T) {
	h, err := Discover(fakeHost(v1Mountinfo+"41 24 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"+
		"42 31 0:39 /kubepods /sys/fs/cgroup/with\\040space rw - cgroup cgroup rw,blkio\n", nil))
	if err != nil {
		t.Fatal(err)
	}
	last := h.Mounts[len(h.Mounts)-1]
	if last.Point != "/sys/fs/cgroup/with space" || last.Root != "/kubepods" || last.V2 || !slices.Contains(last.Options, "blkio") {
		t.Errorf("escaped subtree mount = %+v", last)
	}
	want := []string{"/sys/fs/cgroup/cpu,cpuacct/a/b", "/sys/fs/cgroup/memory/a/b", "/sys/fs/cgroup/pids/a/b", "/sys/fs/cgroup/unified/a/b", "/sys/fs/cgroup/with space/a/b"}
	if got := h.Dirs("/a/b"); !slices.Equal(got, want) {
		t.Errorf("Dirs = %q, want %q", got, want)
	}
	for controller, want := range map[string]string{"cpuacct": "/sys/fs/cgroup/cpu,cpuacct/a", "memory": "/sys/fs/cgroup/memory/a", "hugetlb": ""} {
		if got := h.ControllerDir(controller, "/a"); got != want {
			t.Errorf("ControllerDir(%s) = %q, want %q", controller, got, want)
		}
	}
	v2 := Host{Version: V2, Unified: Root}
	if got := v2.ControllerDir("cpu", "/a"); got != "/sys/fs/cgroup/a" {
		t.Errorf("v2 ControllerDir = %q", got)
	}
}

// TestLocal checks the real host's facts against its files.
func TestLocal(t *testing.T) {
	h := Local()
	if Local() != h {
		t.Error("Local discovered twice")
	}
	_, err := OS{}.Stat(Root + "/cgroup.controllers")
	if h.V2() != (err == nil) {
		t.Errorf("V2() = %v, but stat cgroup.controllers: %v", h.V2(), err)
	}
	if len(h.Mounts) == 0 {
		t.Error("no cgroup mount on this host")
	}
}
