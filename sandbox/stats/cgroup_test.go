package stats

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/accel-cri/accel-cri/internal/cgroups"
)

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

// fakeHost is a fake cgroupfs, /proc and /sys under one temp dir.
type fakeHost struct{ cgroups, proc, sys string }

func newFakeHost(t *testing.T) fakeHost {
	root := t.TempDir()
	h := fakeHost{filepath.Join(root, "cgroup"), filepath.Join(root, "proc"), filepath.Join(root, "sys")}
	// Two processes: 101 with stdin, a pipe and a socket open and limits,
	// 102 with one socket. One disk has a name in sysfs.
	for pid, fds := range map[string]map[string]string{
		"101": {"0": "/dev/null", "1": "pipe:[4242]", "3": "socket:[99]"},
		"102": {"0": "socket:[5]"},
	} {
		dir := filepath.Join(h.proc, pid, "fd")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for fd, target := range fds {
			if err := os.Symlink(target, filepath.Join(dir, fd)); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeFiles(t, h.proc, map[string]string{"101/limits": "Limit                     Soft Limit           Hard Limit           Units     \n" +
		"Max cpu time              unlimited            unlimited            seconds   \n" +
		"Max open files            1024                 4096                 files     \n"})
	writeFiles(t, h.sys, map[string]string{"dev/block/8:0/uevent": "MAJOR=8\nMINOR=0\nDEVNAME=sda\nDEVTYPE=disk\n"})
	return h
}

func (h fakeHost) reader(v2, swap, psi bool, driver string) *cgroupReader {
	return &cgroupReader{root: h.cgroups, v2: v2, swap: swap, psi: psi, driver: driver, proc: h.proc, devices: newBlockDevices(h.sys)}
}

// v1Cgroup is a container's cgroup as this kernel's v1 hierarchies have it.
func v1Cgroup(d string) map[string]string {
	return map[string]string{
		"cpuacct" + d + "/cpuacct.usage":              "123456789\n",
		"cpuacct" + d + "/cpuacct.stat":               "user 7\nsystem 3\n",
		"cpu" + d + "/cpu.stat":                       "nr_periods 40\nnr_throttled 4\nthrottled_time 2500000000\nnr_bursts 0\nburst_time 0\n",
		"memory" + d + "/memory.usage_in_bytes":       "10485760\n",
		"memory" + d + "/memory.limit_in_bytes":       "9223372036854771712\n",
		"memory" + d + "/memory.max_usage_in_bytes":   "12582912\n",
		"memory" + d + "/memory.failcnt":              "2\n",
		"memory" + d + "/memory.kmem.usage_in_bytes":  "524288\n",
		"memory" + d + "/memory.memsw.usage_in_bytes": "10489856\n",
		"memory" + d + "/memory.stat": "cache 0\nrss 1\npgfault 70\npgmajfault 2\ntotal_cache 4096\ntotal_rss 2097152\n" +
			"total_mapped_file 8192\ntotal_inactive_file 1048576\ntotal_active_file 65536\ntotal_pgfault 77\ntotal_pgmajfault 3\n",
		"memory" + d + "/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
		"pids" + d + "/pids.current":         "4\n",
		"pids" + d + "/pids.max":             "max\n",
		"pids" + d + "/cgroup.procs":         "101\n102\n",
		"blkio" + d + "/blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n" +
			"8:0 Discard 0\n8:0 Total 12288\n253:1 Read 512\n253:1 Write 0\n253:1 Total 512\nTotal 12800\n",
		"blkio" + d + "/blkio.throttle.io_serviced_recursive": "8:0 Read 1\n8:0 Write 2\n8:0 Total 3\n253:1 Read 1\nTotal 4\n",
	}
}

// v2Cgroup is a container's cgroup v2 directory (Linux 6.x, PSI on).
func v2Cgroup(d string) map[string]string {
	return map[string]string{
		d + "/cpu.stat":            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 10\nnr_throttled 1\nthrottled_usec 300\n",
		d + "/memory.current":      "8388608\n",
		d + "/memory.max":          "16777216\n",
		d + "/memory.peak":         "9437184\n",
		d + "/memory.swap.current": "4096\n",
		d + "/memory.stat": "anon 1048576\nfile 4096\nkernel 196608\nkernel_stack 16384\npagetables 8192\nslab 65536\n" +
			"file_mapped 1024\nactive_file 2048\ninactive_file 4096\npgfault 12\npgmajfault 1\n",
		d + "/memory.events":   "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n",
		d + "/pids.current":    "2\n",
		d + "/pids.max":        "100\n",
		d + "/cgroup.procs":    "102\n",
		d + "/io.stat":         "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
		d + "/cpu.pressure":    "some avg10=0.00 avg60=0.00 avg300=0.00 total=2500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1000000\n",
		d + "/memory.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=30\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=20\n",
		d + "/io.pressure":     "some avg10=1.50 avg60=0.10 avg300=0.00 total=4000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=3000000\n",
	}
}

// What v1Cgroup reads as, with process 101 as the init.
var v1Usage = usage{cpuNanos: 123456789, cpuUserNanos: 70_000_000, cpuSystemNanos: 30_000_000,
	cfsPeriods: 40, cfsThrottledPeriods: 4, cfsThrottledNanos: 2_500_000_000,
	memUsage: 10 << 20, memLimit: 0, memMaxUsage: 12 << 20, memFailcnt: 2, memKernel: 512 << 10, swap: 4096,
	memWorkingSet: 9 << 20, memRSS: 2 << 20, memCache: 4096, memMappedFile: 8192, memActiveFile: 65536, memInactiveFile: 1 << 20,
	pageFaults: 77, majorPageFaults: 3, ownPageFaults: 70, ownMajorPageFaults: 2, oomKills: 1,
	pids: 4, pidsLimit: 0, processes: 2, fds: 4, sockets: 2, nofileSoft: 1024,
	io: []deviceIO{
		{name: "/dev/sda", major: 8, minor: 0, readBytes: 4096, writeBytes: 8192, reads: 1, writes: 2},
		{name: "253:1", major: 253, minor: 1, readBytes: 512, reads: 1},
	},
	has: hasPids | hasProcs | hasNofile,
}

func TestCgroupReaderV1(t *testing.T) {
	const d = "/pods/pod1/c1"
	for _, tc := range []struct {
		desc   string
		swap   bool
		pid    uint32
		remove []string          // files (or hierarchies) the kernel lacks
		write  map[string]string // files that differ
		want   func(u *usage)
	}{
		{desc: "complete", swap: true, pid: 101, want: func(*usage) {}},
		{desc: "without swap accounting, pids and kmem controllers, init unknown", pid: 0,
			remove: []string{"memory" + d + "/memory.memsw.usage_in_bytes", "pids", "memory" + d + "/memory.kmem.usage_in_bytes"},
			write:  map[string]string{"cpu" + d + "/cgroup.procs": "101\n"}, // the procs of another hierarchy
			want: func(u *usage) {
				u.swap, u.pids, u.memKernel, u.nofileSoft = 0, 0, 0, 0
				u.processes, u.fds, u.sockets = 1, 3, 1
				u.has = hasProcs
			}},
		{desc: "old kernel: no oom_kill count, no blkio, no throttling figures", swap: true, pid: 101,
			remove: []string{"blkio", "cpu" + d + "/cpu.stat"},
			write:  map[string]string{"memory" + d + "/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\n"},
			want: func(u *usage) {
				u.oomKills, u.io = 0, nil
				u.cfsPeriods, u.cfsThrottledPeriods, u.cfsThrottledNanos = 0, 0, 0
			}},
		{desc: "a pids limit", swap: true, pid: 101, write: map[string]string{"pids" + d + "/pids.max": "512\n"},
			want: func(u *usage) { u.pidsLimit = 512 }},
		{desc: "processes that exited while counted", swap: true, pid: 101, write: map[string]string{"pids" + d + "/cgroup.procs": "101\n102\n103\n"},
			want: func(u *usage) { u.processes = 3 }},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			h := newFakeHost(t)
			writeFiles(t, h.cgroups, v1Cgroup(d))
			for _, f := range tc.remove {
				if err := os.RemoveAll(filepath.Join(h.cgroups, f)); err != nil {
					t.Fatal(err)
				}
			}
			writeFiles(t, h.cgroups, tc.write)
			before := time.Now()
			got, err := h.reader(false, tc.swap, false, cgroups.DriverCgroupfs).read(d, tc.pid)
			if err != nil {
				t.Fatal(err)
			}
			want := v1Usage
			want.io = slices.Clone(v1Usage.io)
			want.at = got.at
			tc.want(&want)
			if !reflect.DeepEqual(got, want) || got.at.Before(before) {
				t.Errorf("usage\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestCgroupReaderV1Errors(t *testing.T) {
	const d = "/pods/pod1/c1"
	for _, tc := range []struct {
		desc     string
		remove   string
		write    map[string]string
		notFound bool
	}{
		{desc: "a removed cgroup is NotFound (the task exited)", remove: "memory" + d, notFound: true},
		{desc: "a garbled figure is an error, not a zero", write: map[string]string{"memory" + d + "/memory.usage_in_bytes": "lots\n"}},
		{desc: "a garbled optional figure too", write: map[string]string{"memory" + d + "/memory.failcnt": "x\n"}},
		{desc: "a garbled blkio line", write: map[string]string{"blkio" + d + "/blkio.throttle.io_serviced_recursive": "8:x Read 1\n"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			h := newFakeHost(t)
			writeFiles(t, h.cgroups, v1Cgroup(d))
			if tc.remove != "" {
				os.RemoveAll(filepath.Join(h.cgroups, tc.remove))
			}
			writeFiles(t, h.cgroups, tc.write)
			_, err := h.reader(false, true, false, cgroups.DriverCgroupfs).read(d, 101)
			if err == nil || errdefs.IsNotFound(err) != tc.notFound {
				t.Errorf("read: %v, want an error (NotFound: %v)", err, tc.notFound)
			}
		})
	}
}

// What v2Cgroup reads as, with process 101 as the init.
var v2Usage = usage{cpuNanos: 2_500_000, cpuUserNanos: 2_000_000, cpuSystemNanos: 500_000,
	cfsPeriods: 10, cfsThrottledPeriods: 1, cfsThrottledNanos: 300_000,
	memUsage: 8 << 20, memLimit: 16 << 20, memMaxUsage: 9 << 20, memFailcnt: 5, memKernel: 196608, swap: 4096,
	memWorkingSet: 8<<20 - 4096, memRSS: 1 << 20, memCache: 4096, memMappedFile: 1024, memActiveFile: 2048, memInactiveFile: 4096,
	pageFaults: 12, majorPageFaults: 1, ownPageFaults: 12, ownMajorPageFaults: 1, oomKills: 1,
	pids: 2, pidsLimit: 100, processes: 1, fds: 1, sockets: 1, nofileSoft: 1024,
	psi: [3]psiTotals{psiCPU: {some: 2500000, full: 1000000}, psiMemory: {some: 30, full: 20}, psiIO: {some: 4000000, full: 3000000}},
	io:  []deviceIO{{name: "/dev/sda", major: 8, minor: 0, readBytes: 4096, writeBytes: 8192, reads: 1, writes: 2}},
	has: hasPids | hasProcs | hasNofile | hasPSI,
}

func TestCgroupReaderV2(t *testing.T) {
	const d = "/kubepods.slice/kubepods-pod1.slice/accel-cri-c1.scope"
	const path = "kubepods-pod1.slice:accel-cri:c1"
	for _, tc := range []struct {
		desc   string
		psi    bool
		remove []string
		write  map[string]string
		want   func(u *usage)
	}{
		{desc: "complete", psi: true, want: func(*usage) {}},
		{desc: "no limits", psi: true, write: map[string]string{d + "/memory.max": "max\n", d + "/pids.max": "max\n"},
			want: func(u *usage) { u.memLimit, u.pidsLimit = 0, 0 }},
		{desc: "a kernel without PSI", psi: false,
			want: func(u *usage) { u.psi, u.has = [3]psiTotals{}, u.has&^hasPSI }},
		{desc: "pressure off for the cgroup", psi: true, remove: []string{d + "/io.pressure"},
			want: func(u *usage) { u.psi, u.has = [3]psiTotals{}, u.has&^hasPSI }},
		{desc: "Linux before 5.18 and 5.19: no kernel total, no peak", psi: true, remove: []string{d + "/memory.peak"},
			write: map[string]string{d + "/memory.stat": "anon 1048576\nfile 4096\nkernel_stack 16384\npagetables 8192\nslab 65536\n" +
				"file_mapped 1024\nactive_file 2048\ninactive_file 4096\npgfault 12\npgmajfault 1\n"},
			want: func(u *usage) { u.memMaxUsage, u.memKernel = 0, 16384+8192+65536 }},
		{desc: "io.stat with more keys and devices", psi: true,
			write: map[string]string{d + "/io.stat": "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0 cost.usage=5\n254:0 rbytes=1 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n"},
			want: func(u *usage) {
				u.io = append(u.io, deviceIO{name: "254:0", major: 254, minor: 0, readBytes: 1, reads: 1})
			}},
		{desc: "a cgroup.procs longer than the read buffer", psi: true,
			write: map[string]string{d + "/cgroup.procs": strings.Repeat("1000000\n", 3000)},
			want:  func(u *usage) { u.processes, u.fds, u.sockets = 3000, 0, 0 }},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			h := newFakeHost(t)
			writeFiles(t, h.cgroups, v2Cgroup(d))
			for _, f := range tc.remove {
				os.RemoveAll(filepath.Join(h.cgroups, f))
			}
			writeFiles(t, h.cgroups, tc.write)
			got, err := h.reader(true, true, tc.psi, cgroups.DriverSystemd).read(path, 101)
			if err != nil {
				t.Fatal(err)
			}
			want := v2Usage
			want.io = slices.Clone(v2Usage.io)
			want.at = got.at
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("usage\n%+v\nwant\n%+v", got, want)
			}
		})
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
