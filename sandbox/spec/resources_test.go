package sandbox

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestCgroupsPath(t *testing.T) {
	for _, tc := range []struct {
		desc, driver, parent, id string
		want                     string
		wantErr                  error
	}{
		{desc: "cgroupfs", driver: "cgroupfs", parent: "/kubepods/burstable/pod1", id: "abc", want: "/kubepods/burstable/pod1/abc"},
		{desc: "cgroupfs root parent", driver: "cgroupfs", parent: "/", id: "abc", want: "/abc"},
		{desc: "cgroupfs no parent", driver: "cgroupfs", id: "abc", want: "/accel-cri/abc"},
		{desc: "cgroupfs relative", driver: "cgroupfs", parent: "kubepods/pod1", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "cgroupfs dot dot", driver: "cgroupfs", parent: "/kubepods/../etc", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "cgroupfs unclean", driver: "cgroupfs", parent: "/kubepods//pod1/", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "cgroupfs newline", driver: "cgroupfs", parent: "/kubepods\n", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "systemd slice", driver: "systemd", parent: "kubepods-besteffort-pod123.slice", id: "abc", want: "kubepods-besteffort-pod123.slice:accel-cri:abc"},
		{desc: "systemd slice path", driver: "systemd", parent: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice", id: "abc", want: "kubepods-besteffort-pod1.slice:accel-cri:abc"},
		{desc: "systemd no parent", driver: "systemd", id: "abc", want: "system.slice:accel-cri:abc"},
		{desc: "systemd not a slice", driver: "systemd", parent: "kubepods", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "systemd cgroupfs style path", driver: "systemd", parent: "/kubepods/burstable", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "systemd relative slice path", driver: "systemd", parent: "a.slice/b.slice", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "systemd dot dot", driver: "systemd", parent: "/a.slice/../b.slice", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "systemd colon", driver: "systemd", parent: "a:b.slice", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "systemd bare suffix", driver: "systemd", parent: ".slice", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "systemd dots", driver: "systemd", parent: "...slice", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "bad id", driver: "cgroupfs", parent: "/kubepods", id: "../x", wantErr: errdefs.ErrInvalidArgument},
		{desc: "empty id", driver: "systemd", id: "", wantErr: errdefs.ErrInvalidArgument},
		{desc: "unknown driver", driver: "cgroupv3", id: "abc", wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := cgroupsPath(tc.driver, tc.parent, tc.id)
			if checkErr(t, err, tc.wantErr) && got != tc.want {
				t.Errorf("cgroupsPath = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSpecContainerResources(t *testing.T) {
	u64 := func(v uint64) *uint64 { return &v }
	i64 := func(v int64) *int64 { return &v }
	full := &runtimeapi.LinuxContainerResources{
		CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512,
		MemoryLimitInBytes: 64 << 20,
		CpusetCpus:         "0-1", CpusetMems: "0",
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}},
	}
	for _, tc := range []struct {
		desc     string
		res      *runtimeapi.LinuxContainerResources
		facts    resourceFacts
		wantCPU  *runtimespec.LinuxCPU
		wantMem  *runtimespec.LinuxMemory
		wantHuge []runtimespec.LinuxHugepageLimit
		wantUni  map[string]string
		wantErr  error
	}{
		{
			desc:     "all set, swap and hugetlb present",
			res:      full,
			facts:    resourceFacts{swap: true, hugetlb: true},
			wantCPU:  &runtimespec.LinuxCPU{Period: u64(100000), Quota: i64(50000), Shares: u64(512), Cpus: "0-1", Mems: "0"},
			wantMem:  &runtimespec.LinuxMemory{Limit: i64(64 << 20), Swap: i64(64 << 20)},
			wantHuge: []runtimespec.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}},
		},
		{
			desc:    "no swap or hugetlb controller",
			res:     full,
			wantCPU: &runtimespec.LinuxCPU{Period: u64(100000), Quota: i64(50000), Shares: u64(512), Cpus: "0-1", Mems: "0"},
			wantMem: &runtimespec.LinuxMemory{Limit: i64(64 << 20)},
		},
		{
			desc:    "explicit swap",
			res:     &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, MemorySwapLimitInBytes: 128 << 20},
			facts:   resourceFacts{swap: true},
			wantCPU: &runtimespec.LinuxCPU{},
			wantMem: &runtimespec.LinuxMemory{Limit: i64(64 << 20), Swap: i64(128 << 20)},
		},
		{
			desc:    "unlimited quota",
			res:     &runtimeapi.LinuxContainerResources{CpuQuota: -1},
			wantCPU: &runtimespec.LinuxCPU{Quota: i64(-1)},
			wantMem: &runtimespec.LinuxMemory{},
		},
		{desc: "unified on cgroup v1", res: &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "1M"}}, wantErr: errdefs.ErrInvalidArgument},
		{
			desc:    "unified on cgroup v2",
			res:     &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "1M"}},
			facts:   resourceFacts{cgroupV2: true},
			wantCPU: &runtimespec.LinuxCPU{},
			wantMem: &runtimespec.LinuxMemory{},
			wantUni: map[string]string{"memory.high": "1M"},
		},
		{desc: "negative shares", res: &runtimeapi.LinuxContainerResources{CpuShares: -2}, wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			opt, err := withContainerResources(tc.res, tc.facts)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			dev := withDevices([]containerDevice{{rule: runtimespec.LinuxDeviceCgroup{Allow: true, Access: "r"}}})
			s := mustApply(t, dev, opt)
			r := s.Linux.Resources
			if fmt.Sprint(deref(r.CPU)) != fmt.Sprint(deref(tc.wantCPU)) {
				t.Errorf("cpu = %v, want %v", deref(r.CPU), deref(tc.wantCPU))
			}
			if fmt.Sprint(deref(r.Memory)) != fmt.Sprint(deref(tc.wantMem)) {
				t.Errorf("memory = %v, want %v", deref(r.Memory), deref(tc.wantMem))
			}
			if !slices.Equal(r.HugepageLimits, tc.wantHuge) {
				t.Errorf("hugepages = %v, want %v", r.HugepageLimits, tc.wantHuge)
			}
			if !maps.Equal(r.Unified, tc.wantUni) {
				t.Errorf("unified = %v, want %v", r.Unified, tc.wantUni)
			}
			if len(r.Devices) != 2 {
				t.Errorf("device rules lost: %v", r.Devices)
			}
		})
	}
}

// deref renders the pointer fields of CPU and memory limits as values.
func deref(v any) string {
	p := func(x any) string {
		switch x := x.(type) {
		case *int64:
			if x != nil {
				return fmt.Sprint(*x)
			}
		case *uint64:
			if x != nil {
				return fmt.Sprint(*x)
			}
		}
		return "-"
	}
	switch v := v.(type) {
	case *runtimespec.LinuxCPU:
		if v != nil {
			return fmt.Sprintf("period=%s quota=%s shares=%s cpus=%q mems=%q", p(v.Period), p(v.Quota), p(v.Shares), v.Cpus, v.Mems)
		}
	case *runtimespec.LinuxMemory:
		if v != nil {
			return fmt.Sprintf("limit=%s swap=%s", p(v.Limit), p(v.Swap))
		}
	}
	return "nil"
}

func TestSpecOOMScoreAdj(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		want    int
		r       *OOMScoreRange
		wantAdj int
	}{
		{desc: "restricted host raises negative values", want: -998, r: &OOMScoreRange{Min: 0, Restricted: true}, wantAdj: 0},
		{desc: "restricted host keeps positive values", want: 500, r: &OOMScoreRange{Min: 0, Restricted: true}, wantAdj: 500},
		{desc: "unrestricted host", want: -998, r: &OOMScoreRange{Min: -1000}, wantAdj: -998},
		{desc: "out of range", want: 5000, r: &OOMScoreRange{Min: -1000}, wantAdj: 1000},
		{desc: "no range", want: -2000, wantAdj: -1000},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := mustApply(t, withOOMScoreAdj(tc.want, tc.r))
			if s.Process.OOMScoreAdj == nil || *s.Process.OOMScoreAdj != tc.wantAdj {
				t.Errorf("oom_score_adj = %v, want %d", s.Process.OOMScoreAdj, tc.wantAdj)
			}
		})
	}
}

func TestSpecSysctlsAndCgroup(t *testing.T) {
	for _, tc := range []struct {
		desc     string
		sysctls  map[string]string
		cgroup   string
		wantPath string
	}{
		{desc: "sysctls and cgroup", sysctls: map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "1"}, cgroup: "/kubepods/p1/abc", wantPath: "/kubepods/p1/abc"},
		{desc: "empty cgroup keeps the default", wantPath: "/accel-cri/c1"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := mustApply(t, withSysctls(tc.sysctls), withCgroupsPath(tc.cgroup))
			if len(tc.sysctls) > 0 && !maps.Equal(s.Linux.Sysctl, tc.sysctls) {
				t.Errorf("sysctls = %v, want %v", s.Linux.Sysctl, tc.sysctls)
			}
			if s.Linux.CgroupsPath != tc.wantPath {
				t.Errorf("cgroups path = %q, want %q", s.Linux.CgroupsPath, tc.wantPath)
			}
		})
	}
}
