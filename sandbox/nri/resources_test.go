package nri

import (
	"slices"
	"testing"

	"github.com/containerd/nri/pkg/api"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestFromCRIResources(t *testing.T) {
	if fromCRIResources(nil) != nil {
		t.Error("fromCRIResources(nil) != nil")
	}
	shares, period, quota, limit, swap := uint64(256), uint64(100000), int64(50000), int64(1<<28), int64(1<<29)
	got := fromCRIResources(&runtimeapi.LinuxContainerResources{
		CpuShares: 256, CpuPeriod: 100000, CpuQuota: 50000, CpusetCpus: "0-1", CpusetMems: "0",
		MemoryLimitInBytes: 1 << 28, MemorySwapLimitInBytes: 1 << 29,
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}},
		Unified:        map[string]string{"memory.high": "max"},
	})
	want := &api.LinuxResources{
		Cpu:            &api.LinuxCPU{Shares: api.UInt64(&shares), Quota: api.Int64(&quota), Period: api.UInt64(&period), Cpus: "0-1", Mems: "0"},
		Memory:         &api.LinuxMemory{Limit: api.Int64(&limit), Swap: api.Int64(&swap)},
		HugepageLimits: []*api.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}},
		Unified:        map[string]string{"memory.high": "max"},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestMergeResources(t *testing.T) {
	cur := &runtimeapi.LinuxContainerResources{
		CpuShares: 1024, CpuQuota: 20000, CpuPeriod: 100000, CpusetCpus: "0-3",
		MemoryLimitInBytes: 1 << 30, OomScoreAdj: 900,
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 1}},
	}
	shares, limit := uint64(2048), int64(1<<29)
	for _, tc := range []struct {
		desc        string
		cur         *runtimeapi.LinuxContainerResources
		update      *api.LinuxResources
		want        *runtimeapi.LinuxContainerResources
		wantDropped []string
	}{
		{"no update keeps everything", cur, nil, cur, nil},
		{
			desc:   "only the fields set change",
			cur:    cur,
			update: &api.LinuxResources{Cpu: &api.LinuxCPU{Cpus: "2"}, Memory: &api.LinuxMemory{Limit: api.Int64(&limit)}},
			want: &runtimeapi.LinuxContainerResources{
				CpuShares: 1024, CpuQuota: 20000, CpuPeriod: 100000, CpusetCpus: "2",
				MemoryLimitInBytes: 1 << 29, OomScoreAdj: 900,
				HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 1}},
			},
		},
		{
			desc: "hugepages replaced per size, unified merged, shares set",
			cur:  cur,
			update: &api.LinuxResources{
				Cpu:            &api.LinuxCPU{Shares: api.UInt64(&shares)},
				HugepageLimits: []*api.HugepageLimit{{PageSize: "2MB", Limit: 8}, {PageSize: "1GB", Limit: 1 << 30}},
				Unified:        map[string]string{"cpu.idle": "1"},
			},
			want: &runtimeapi.LinuxContainerResources{
				CpuShares: 2048, CpuQuota: 20000, CpuPeriod: 100000, CpusetCpus: "0-3",
				MemoryLimitInBytes: 1 << 30, OomScoreAdj: 900,
				HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 8}, {PageSize: "1GB", Limit: 1 << 30}},
				Unified:        map[string]string{"cpu.idle": "1"},
			},
		},
		{
			desc:        "what the CRI cannot carry is reported",
			cur:         nil,
			update:      &api.LinuxResources{Pids: &api.LinuxPids{Limit: 10}, RdtClass: api.String("gold"), Devices: []*api.LinuxDeviceCgroup{{Allow: true}}},
			want:        &runtimeapi.LinuxContainerResources{},
			wantDropped: []string{"pids", "RDT class", "device rules"},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			before := cloneRes(tc.cur)
			got, dropped := mergeResources(tc.cur, tc.update)
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("merged (-want +got):\n%s", diff)
			}
			if !slices.Equal(dropped, tc.wantDropped) {
				t.Errorf("dropped = %v; want %v", dropped, tc.wantDropped)
			}
			if diff := cmp.Diff(before, tc.cur, protocmp.Transform()); diff != "" {
				t.Errorf("cur changed (-before +after):\n%s", diff)
			}
		})
	}
}

// cloneRes copies r so a test can see whether it changed.
func cloneRes(r *runtimeapi.LinuxContainerResources) *runtimeapi.LinuxContainerResources {
	out, _ := mergeResources(r, nil)
	if r == nil {
		return nil
	}
	return out
}
