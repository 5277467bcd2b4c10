package sandbox

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestCgroupReaderDir(t *testing.T) {
	for _, tc := range []struct {
		driver, path, want string
		bad                bool
	}{
		{driver: CgroupDriverCgroupfs, path: "/kubepods/besteffort/pod1/abc", want: "/kubepods/besteffort/pod1/abc"},
		{driver: CgroupDriverCgroupfs, path: "kubepods/abc", bad: true},
		{driver: CgroupDriverCgroupfs, path: "/kubepods/../etc", bad: true},
		{driver: CgroupDriverSystemd, path: "kubepods-besteffort-pod1.slice:cri-containerd:abc", want: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope"},
		{driver: CgroupDriverSystemd, path: "system.slice:accel-cri:abc", want: "/system.slice/accel-cri-abc.scope"},
		{driver: CgroupDriverSystemd, path: "-.slice::abc", want: "/abc.scope"},
		{driver: CgroupDriverSystemd, path: "kubepods--x.slice:p:abc", bad: true},
		{driver: CgroupDriverSystemd, path: "kubepods.slice:p", bad: true},
		{driver: CgroupDriverSystemd, path: "kubepods.slice:p:a/b", bad: true},
		{driver: CgroupDriverSystemd, path: "/kubepods.slice:p:abc", bad: true},
	} {
		c := &cgroupReader{driver: tc.driver}
		got, err := c.dir(tc.path)
		if tc.bad {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("%s %q: %q, %v; want InvalidArgument", tc.driver, tc.path, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s %q = %q, %v; want %q", tc.driver, tc.path, got, err, tc.want)
		}
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCgroupReaderV1(t *testing.T) {
	root := t.TempDir()
	d := "/pods/pod1/c1"
	writeFiles(t, root, map[string]string{
		"cpuacct" + d + "/cpuacct.usage":              "123456789\n",
		"memory" + d + "/memory.usage_in_bytes":       "10485760\n",
		"memory" + d + "/memory.limit_in_bytes":       "9223372036854771712\n",
		"memory" + d + "/memory.memsw.usage_in_bytes": "10489856\n",
		"memory" + d + "/memory.stat":                 "cache 0\nrss 1\ntotal_cache 4096\ntotal_rss 2097152\ntotal_inactive_file 1048576\ntotal_pgfault 77\ntotal_pgmajfault 3\n",
		"pids" + d + "/pids.current":                  "4\n",
	})
	c := &cgroupReader{root: root, swap: true, driver: CgroupDriverCgroupfs}
	before := time.Now()
	u, err := c.read(d)
	if err != nil {
		t.Fatal(err)
	}
	want := usage{at: u.at, cpuNanos: 123456789, memUsage: 10 << 20, memWorkingSet: 9 << 20, memRSS: 2 << 20, memLimit: 0,
		pageFaults: 77, majorPageFaults: 3, swap: 4096, pids: 4}
	if u != want || u.at.Before(before) {
		t.Errorf("v1 usage = %+v, want %+v", u, want)
	}
	// Without swap accounting the memsw file is not read; without the pids
	// controller the count is 0.
	os.Remove(filepath.Join(root, "memory", d, "memory.memsw.usage_in_bytes"))
	os.RemoveAll(filepath.Join(root, "pids"))
	c.swap = false
	if u, err = c.read(d); err != nil || u.swap != 0 || u.pids != 0 || u.cpuNanos != 123456789 {
		t.Errorf("v1 without swap and pids = %+v, %v", u, err)
	}
	// A removed cgroup is NotFound (the task exited).
	if _, err := c.read("/pods/pod1/gone"); !errdefs.IsNotFound(err) {
		t.Errorf("missing cgroup: %v, want NotFound", err)
	}
	// A garbled file is an error, not a zero.
	writeFiles(t, root, map[string]string{"memory" + d + "/memory.usage_in_bytes": "lots\n"})
	if _, err := c.read(d); err == nil || errdefs.IsNotFound(err) {
		t.Errorf("garbled usage: %v, want a parse error", err)
	}
}

func TestCgroupReaderV2(t *testing.T) {
	root := t.TempDir()
	d := "/kubepods.slice/kubepods-pod1.slice/accel-cri-c1.scope"
	writeFiles(t, root, map[string]string{
		d + "/cpu.stat":            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
		d + "/memory.current":      "8388608\n",
		d + "/memory.max":          "16777216\n",
		d + "/memory.swap.current": "0\n",
		d + "/memory.stat":         "anon 1048576\nfile 4096\ninactive_file 4096\npgfault 12\npgmajfault 1\n",
		d + "/pids.current":        "2\n",
	})
	c := &cgroupReader{root: root, v2: true, swap: true, driver: CgroupDriverSystemd}
	u, err := c.read("kubepods-pod1.slice:accel-cri:c1")
	if err != nil {
		t.Fatal(err)
	}
	want := usage{at: u.at, cpuNanos: 2500000, memUsage: 8 << 20, memWorkingSet: 8<<20 - 4096, memRSS: 1 << 20, memLimit: 16 << 20,
		pageFaults: 12, majorPageFaults: 1, pids: 2}
	if u != want {
		t.Errorf("v2 usage = %+v, want %+v", u, want)
	}
	writeFiles(t, root, map[string]string{d + "/memory.max": "max\n"})
	if u, err = c.read("kubepods-pod1.slice:accel-cri:c1"); err != nil || u.memLimit != 0 {
		t.Errorf("memory.max \"max\": limit %d, %v; want 0 (none)", u.memLimit, err)
	}
}

func TestReadUintMax(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte("max\n"), 0o644)
	var buf [64]byte
	if v, err := readUint(p, buf[:]); err != nil || v != math.MaxUint64 {
		t.Errorf("readUint(max) = %d, %v", v, err)
	}
}
