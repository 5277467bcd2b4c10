package spec

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

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
		host     Host
		wantCPU  *runtimespec.LinuxCPU
		wantMem  *runtimespec.LinuxMemory
		wantHuge []runtimespec.LinuxHugepageLimit
		wantUni  map[string]string
		wantErr  error
	}{
		{
			desc:     "all set, swap and hugetlb present",
			res:      full,
			host:     Host{Swap: true, Hugetlb: true},
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
			host:    Host{Swap: true},
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
			host:    Host{CgroupV2: true},
			wantCPU: &runtimespec.LinuxCPU{},
			wantMem: &runtimespec.LinuxMemory{},
			wantUni: map[string]string{"memory.high": "1M"},
		},
		{desc: "negative shares", res: &runtimeapi.LinuxContainerResources{CpuShares: -2}, wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			opt, err := New(tc.host).withContainerResources(tc.res)
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
		r       OOMScores
		wantAdj int
	}{
		{desc: "restricted host raises negative values", want: -998, r: oomFloor(0), wantAdj: 0},
		{desc: "restricted host keeps positive values", want: 500, r: oomFloor(0), wantAdj: 500},
		{desc: "unrestricted host", want: -998, r: oomFloor(-1000), wantAdj: -998},
		{desc: "no range", want: -2000, wantAdj: -1000},
		{desc: "no range, out of range", want: 5000, wantAdj: 1000},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := mustApply(t, withOOMScoreAdj(tc.want, tc.r))
			if s.Process.OOMScoreAdj == nil || *s.Process.OOMScoreAdj != tc.wantAdj {
				t.Errorf("oom_score_adj = %v, want %d", s.Process.OOMScoreAdj, tc.wantAdj)
			}
		})
	}
}

// TestSpecUpdateResources: UpdateContainerResources sets a stored spec's
// limits and OOM score as CreateContainer does, and leaves the rest.
func TestSpecUpdateResources(t *testing.T) {
	b := New(Host{Swap: true, OOM: oomFloor(0)})
	s := mustApply(t, withDevices([]containerDevice{{rule: runtimespec.LinuxDeviceCgroup{Allow: true, Access: "r"}}}))
	s.Hostname = "kept"
	if err := b.UpdateResources(s, &runtimeapi.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 64 << 20, OomScoreAdj: -10}); err != nil {
		t.Fatal(err)
	}
	r := s.Linux.Resources
	if *r.CPU.Shares != 512 || *r.Memory.Limit != 64<<20 || *r.Memory.Swap != 64<<20 || *s.Process.OOMScoreAdj != 0 || len(r.Devices) != 2 || s.Hostname != "kept" {
		t.Errorf("resources %+v oom %d devices %v hostname %q", deref(r.CPU)+" "+deref(r.Memory), *s.Process.OOMScoreAdj, r.Devices, s.Hostname)
	}
	err := b.UpdateResources(s, &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "1"}})
	checkErr(t, err, errdefs.ErrInvalidArgument)
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
