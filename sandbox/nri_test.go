package sandbox

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/testing/protocmp"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/sandbox/podnet"
)

func TestNRIPod(t *testing.T) {
	cfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p"}}
	for _, tc := range []struct {
		desc   string
		meta   podMeta
		st     podStatus
		wantNS []runtimespec.LinuxNamespace
		ips    []string
	}{
		{
			desc: "pinned namespaces, no pause",
			meta: podMeta{ID: "p1", Config: cfg, Infraless: true, NetNSPath: "/run/netns/p1", Pinned: PinnedNamespaces{UTS: "/s/uts", IPC: "/s/ipc"}},
			st:   podStatus{Network: podnet.IPs{IP: "10.0.0.2", AdditionalIPs: []string{"fd00::2"}}},
			wantNS: []runtimespec.LinuxNamespace{
				{Type: runtimespec.NetworkNamespace, Path: "/run/netns/p1"},
				{Type: runtimespec.UTSNamespace, Path: "/s/uts"},
				{Type: runtimespec.IPCNamespace, Path: "/s/ipc"},
			},
			ips: []string{"10.0.0.2", "fd00::2"},
		},
		{
			desc: "a pause holds them",
			meta: podMeta{ID: "p2", Config: cfg, NetNSPath: "/run/netns/p2"},
			st:   podStatus{PID: 42},
			wantNS: []runtimespec.LinuxNamespace{
				{Type: runtimespec.NetworkNamespace, Path: "/run/netns/p2"},
				{Type: runtimespec.UTSNamespace, Path: "/proc/42/ns/uts"},
				{Type: runtimespec.IPCNamespace, Path: "/proc/42/ns/ipc"},
			},
		},
		{
			desc: "stopped: nothing left to join",
			meta: podMeta{ID: "p3", Config: cfg, Infraless: true, NetNSPath: "/run/netns/p3", Pinned: PinnedNamespaces{UTS: "/s/uts"}},
			st:   podStatus{NetworkDown: true, State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got := nriPod(newPod(tc.meta), tc.st)
			if got.ID != tc.meta.ID || got.Config != cfg || got.PID != tc.st.PID {
				t.Errorf("nriPod = %+v", got)
			}
			if diff := cmp.Diff(tc.wantNS, got.Namespaces); diff != "" {
				t.Errorf("namespaces (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.ips, got.IPs); diff != "" {
				t.Errorf("ips (-want +got):\n%s", diff)
			}
		})
	}
}

// A container's status reports the resources plugins gave it.
func TestResourcesFromSpec(t *testing.T) {
	shares, quota, limit, oom := uint64(512), int64(20000), int64(1<<28), 700
	spec := &runtimespec.Spec{
		Process: &runtimespec.Process{OOMScoreAdj: &oom},
		Linux: &runtimespec.Linux{Resources: &runtimespec.LinuxResources{
			CPU:            &runtimespec.LinuxCPU{Shares: &shares, Quota: &quota, Cpus: "2-3"},
			Memory:         &runtimespec.LinuxMemory{Limit: &limit},
			HugepageLimits: []runtimespec.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 8}},
		}},
	}
	req := &runtimeapi.LinuxContainerResources{CpuShares: 1024, CpuPeriod: 100000, CpusetCpus: "0-3", MemoryLimitInBytes: 1 << 30, MemorySwapLimitInBytes: 1 << 30, OomScoreAdj: 100}
	want := &runtimeapi.LinuxContainerResources{
		CpuShares: 512, CpuQuota: 20000, CpuPeriod: 100000, CpusetCpus: "2-3",
		MemoryLimitInBytes: 1 << 28, MemorySwapLimitInBytes: 1 << 30, OomScoreAdj: 700,
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 8}},
	}
	if diff := cmp.Diff(want, resourcesFromSpec(req, spec), protocmp.Transform()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if req.CpuShares != 1024 {
		t.Error("the request was changed")
	}
}

// The cgroups path plugins set keeps the driver's form
// (cgroups.TestCheckPath has the rules); none set is fine.
func TestCheckNRISpec(t *testing.T) {
	for _, tc := range []struct {
		driver, path string
		ok           bool
	}{
		{cgroups.DriverCgroupfs, "/kubepods/pod1/c1", true},
		{cgroups.DriverCgroupfs, "", true},
		{cgroups.DriverCgroupfs, "kubepods/c1", false},
		{cgroups.DriverSystemd, "kubepods.slice:accel-cri:c1", true},
		{cgroups.DriverSystemd, "/kubepods/c1", false},
	} {
		r := &Runtime{cgroupDriver: tc.driver}
		err := r.checkNRISpec(&runtimespec.Spec{Linux: &runtimespec.Linux{CgroupsPath: tc.path}})
		if (err == nil) != tc.ok || (err != nil && !errdefs.IsInvalidArgument(err)) {
			t.Errorf("%s %q: %v; want ok=%v (else InvalidArgument)", tc.driver, tc.path, err, tc.ok)
		}
	}
}

// Limits plugins set that the host's cgroups cannot enforce go, as
// kubelet's do; unified on cgroup v1 is refused.
func TestFixNRIResources(t *testing.T) {
	swap := int64(1)
	res := func() *runtimespec.LinuxResources {
		return &runtimespec.LinuxResources{
			Memory:         &runtimespec.LinuxMemory{Swap: &swap},
			HugepageLimits: []runtimespec.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1}},
		}
	}
	bare := &Runtime{}
	r := res()
	if err := bare.fixNRIResources(r); err != nil || r.Memory.Swap != nil || r.HugepageLimits != nil {
		t.Errorf("without swap accounting and hugetlb: %v, %+v", err, r)
	}
	full := &Runtime{cgroupHost: cgroups.Host{SwapAccounting: true, Hugetlb: true, Version: cgroups.V2}}
	r = res()
	r.Unified = map[string]string{"memory.high": "1"}
	if err := full.fixNRIResources(r); err != nil || r.Memory.Swap == nil || len(r.HugepageLimits) != 1 {
		t.Errorf("with every controller: %v, %+v", err, r)
	}
	r = res()
	r.Unified = map[string]string{"memory.high": "1"}
	if err := bare.fixNRIResources(r); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("unified on cgroup v1 = %v; want InvalidArgument", err)
	}
}
