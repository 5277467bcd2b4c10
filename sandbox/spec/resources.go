package spec

import (
	"context"
	"fmt"
	"maps"
	"strconv"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// This file builds resource limits, the OOM score and sysctls; the cgroup
// path is internal/cgroups' (cgroups.Path).

// sandboxCPUShares is the pause container's cpu.shares (containerd's value):
// it does nothing but wait.
const sandboxCPUShares = 2

// withCgroupsPath sets the cgroup; "" keeps the default spec's.
func withCgroupsPath(p string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if p == "" {
			return nil
		}
		ensureLinux(s)
		s.Linux.CgroupsPath = p
		return nil
	}
}

// oomScoreAdjMin and oomScoreAdjMax are the kernel's range of
// oom_score_adj.
const oomScoreAdjMin, oomScoreAdjMax = -1000, 1000

// withOOMScoreAdj sets oom_score_adj, raised to what the host permits.
func withOOMScoreAdj(want int, r OOMScores) oci.SpecOpts {
	v := min(max(want, oomScoreAdjMin), oomScoreAdjMax)
	if r != nil {
		v = r.Clamp(want)
	}
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		ensureProcess(s)
		s.Process.OOMScoreAdj = &v
		return nil
	}
}

// withSysctls sets the pod's sysctls (cri validation admits only namespaced
// ones).
func withSysctls(sysctls map[string]string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if len(sysctls) == 0 {
			return nil
		}
		ensureLinux(s)
		if s.Linux.Sysctl == nil {
			s.Linux.Sysctl = map[string]string{}
		}
		maps.Copy(s.Linux.Sysctl, sysctls)
		return nil
	}
}

// podResourceAnnotations records the pod's resources (kubelet includes the
// pod overhead in them) for sandboxed runtimes that size a VM from them;
// the pod cgroup itself is kubelet's.
func podResourceAnnotations(r *runtimeapi.LinuxContainerResources) map[string]string {
	if r == nil {
		return nil
	}
	return map[string]string{
		AnnotationSandboxCPUPeriod: strconv.FormatInt(r.GetCpuPeriod(), 10),
		AnnotationSandboxCPUQuota:  strconv.FormatInt(r.GetCpuQuota(), 10),
		AnnotationSandboxCPUShares: strconv.FormatInt(r.GetCpuShares(), 10),
		AnnotationSandboxMemory:    strconv.FormatInt(r.GetMemoryLimitInBytes(), 10),
	}
}

// withSandboxCPUShares gives the pause container its cpu.shares.
func withSandboxCPUShares() oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		ensureResources(s)
		if s.Linux.Resources.CPU == nil {
			s.Linux.Resources.CPU = &runtimespec.LinuxCPU{}
		}
		shares := uint64(sandboxCPUShares)
		s.Linux.Resources.CPU.Shares = &shares
		return nil
	}
}

// withContainerResources sets a container's CPU, memory and hugepage limits
// (the device rules already in the spec stay). Zero means unset, as kubelet
// sends it. The swap limit is the memory limit unless given, when the swap
// controller exists. Hugepage limits are skipped on hosts without the
// hugetlb controller (kubelet sends one per page size the node has, mostly
// 0), as containerd's default tolerate_missing_hugetlb_controller does.
// unified (cgroup v2 files) is refused on cgroup v1.
func (b *Builder) withContainerResources(r *runtimeapi.LinuxContainerResources) (oci.SpecOpts, error) {
	if r == nil {
		return nil, nil
	}
	for _, v := range []struct {
		name string
		v    int64
	}{
		{"cpu_period", r.GetCpuPeriod()},
		{"cpu_shares", r.GetCpuShares()},
		{"memory_limit_in_bytes", r.GetMemoryLimitInBytes()},
	} {
		if v.v < 0 {
			return nil, fmt.Errorf("%w: resources.%s: %d is negative", errdefs.ErrInvalidArgument, v.name, v.v)
		}
	}
	if len(r.GetUnified()) > 0 && !b.host.CgroupV2 {
		return nil, fmt.Errorf("%w: resources.unified needs cgroup v2; this host uses cgroup v1", errdefs.ErrInvalidArgument)
	}
	cpu := &runtimespec.LinuxCPU{Cpus: r.GetCpusetCpus(), Mems: r.GetCpusetMems()}
	if v := uint64(r.GetCpuPeriod()); v != 0 {
		cpu.Period = &v
	}
	if v := r.GetCpuQuota(); v != 0 {
		cpu.Quota = &v
	}
	if v := uint64(r.GetCpuShares()); v != 0 {
		cpu.Shares = &v
	}
	mem := &runtimespec.LinuxMemory{}
	if v := r.GetMemoryLimitInBytes(); v != 0 {
		mem.Limit = &v
		if b.host.Swap && r.GetMemorySwapLimitInBytes() == 0 {
			mem.Swap = &v
		}
	}
	if v := r.GetMemorySwapLimitInBytes(); v != 0 && b.host.Swap {
		mem.Swap = &v
	}
	var huge []runtimespec.LinuxHugepageLimit
	if len(r.GetHugepageLimits()) > 0 {
		if b.host.Hugetlb {
			for _, h := range r.GetHugepageLimits() {
				huge = append(huge, runtimespec.LinuxHugepageLimit{Pagesize: h.GetPageSize(), Limit: h.GetLimit()})
			}
		} else {
			klog.V(4).InfoS("No hugetlb cgroup controller; skipping hugepage limits", "limits", len(r.GetHugepageLimits()))
		}
	}
	unified := maps.Clone(r.GetUnified())
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		ensureResources(s)
		res := s.Linux.Resources
		res.CPU = cpu
		res.Memory = mem
		res.HugepageLimits = huge
		if len(unified) > 0 {
			res.Unified = unified
		}
		return nil
	}, nil
}

// UpdateResources replaces the resource limits and the OOM score in spec
// with r, the way a new container's are set (UpdateContainerResources).
func (b *Builder) UpdateResources(spec *runtimespec.Spec, r *runtimeapi.LinuxContainerResources) error {
	opt, err := b.withContainerResources(r)
	if err != nil {
		return err
	}
	for _, o := range []oci.SpecOpts{opt, withOOMScoreAdj(int(r.GetOomScoreAdj()), b.host.OOM)} {
		if o == nil {
			continue
		}
		if err := o(context.Background(), nil, nil, spec); err != nil {
			return err
		}
	}
	return nil
}
