package sandbox

import (
	"context"
	"fmt"
	"maps"
	"path"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// This file builds cgroup paths, resource limits, the OOM score and sysctls.

// sandboxCPUShares is the pause container's cpu.shares (containerd's value):
// it does nothing but wait.
const sandboxCPUShares = 2

// cgroupPrefix names accel-cri's cgroups: the default cgroupfs parent and
// the systemd scope prefix (accel-cri-<id>.scope).
const cgroupPrefix = "accel-cri"

// cgroupsPath is the OCI cgroupsPath of a pod or container id under the
// cgroup parent kubelet sent.
//
// cgroupfs: parent is an absolute, clean path ("/kubepods/burstable/pod1");
// the result is "<parent>/<id>". Without a parent the cgroup is
// "/accel-cri/<id>", where containerd would put it for accel-cri's
// namespace.
//
// systemd: parent is a slice name ("kubepods-besteffort-pod1.slice"); an
// absolute path of slices is accepted and its last element used, as
// containerd does. The result is runc's "<slice>:accel-cri:<id>", a scope
// accel-cri-<id>.scope in that slice. Without a parent the slice is
// system.slice (runc's default).
//
// Relative parents, parents with ".." or unclean paths, and systemd parents
// that are not slices are rejected.
func cgroupsPath(driver, parent, id string) (string, error) {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/:") || hasControl(id) {
		return "", fmt.Errorf("%w: invalid cgroup id %q", errdefs.ErrInvalidArgument, id)
	}
	if hasControl(parent) {
		return "", fmt.Errorf("%w: cgroup_parent %q has control characters", errdefs.ErrInvalidArgument, parent)
	}
	switch driver {
	case CgroupDriverCgroupfs:
		if parent == "" {
			return "/" + cgroupPrefix + "/" + id, nil
		}
		if !path.IsAbs(parent) || path.Clean(parent) != parent || strings.Contains(parent, "..") {
			return "", fmt.Errorf("%w: cgroup_parent %q must be an absolute clean path for the cgroupfs driver", errdefs.ErrInvalidArgument, parent)
		}
		return path.Join(parent, id), nil
	case CgroupDriverSystemd:
		slice := parent
		if slice == "" {
			slice = "system.slice"
		}
		if strings.Contains(slice, "/") {
			if !path.IsAbs(slice) || path.Clean(slice) != slice || strings.Contains(slice, "..") {
				return "", fmt.Errorf("%w: cgroup_parent %q must be a systemd slice name for the systemd driver", errdefs.ErrInvalidArgument, parent)
			}
			slice = path.Base(slice)
		}
		name, ok := strings.CutSuffix(slice, ".slice")
		if !ok || name == "" || strings.Contains(name, "..") || !validUnitName(name) {
			return "", fmt.Errorf("%w: cgroup_parent %q must be a systemd slice name (like kubepods-besteffort-pod1.slice) for the systemd driver", errdefs.ErrInvalidArgument, parent)
		}
		return slice + ":" + cgroupPrefix + ":" + id, nil
	}
	return "", fmt.Errorf("%w: unknown cgroup driver %q", errdefs.ErrInvalidArgument, driver)
}

// validUnitName reports whether s has only the characters systemd allows in
// unit names, minus ':' which separates runc's cgroupsPath fields.
func validUnitName(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-', r == '\\', r == '@':
		default:
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

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

// withOOMScoreAdj sets oom_score_adj, raised to what the host permits.
func withOOMScoreAdj(want int, r *OOMScoreRange) oci.SpecOpts {
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

// resourceFacts are the host facts resource limits depend on.
type resourceFacts struct {
	cgroupV2, swap, hugetlb bool
}

// withContainerResources sets a container's CPU, memory and hugepage limits
// (the device rules already in the spec stay). Zero means unset, as kubelet
// sends it. The swap limit is the memory limit unless given, when the swap
// controller exists. Hugepage limits are skipped on hosts without the
// hugetlb controller (kubelet sends one per page size the node has, mostly
// 0), as containerd's default tolerate_missing_hugetlb_controller does.
// unified (cgroup v2 files) is refused on cgroup v1.
func withContainerResources(r *runtimeapi.LinuxContainerResources, f resourceFacts) (oci.SpecOpts, error) {
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
	if len(r.GetUnified()) > 0 && !f.cgroupV2 {
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
		if f.swap && r.GetMemorySwapLimitInBytes() == 0 {
			mem.Swap = &v
		}
	}
	if v := r.GetMemorySwapLimitInBytes(); v != 0 && f.swap {
		mem.Swap = &v
	}
	var huge []runtimespec.LinuxHugepageLimit
	if len(r.GetHugepageLimits()) > 0 {
		if f.hugetlb {
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
