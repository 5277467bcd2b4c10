package nri

import (
	"maps"
	"slices"

	"github.com/containerd/nri/pkg/api"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// This file converts container resources between the CRI's form, in which
// accel-cri records and updates them, and NRI's.

// fromCRIResources is NRI's form of CRI resources; nil stays nil. CPU
// shares, quota and period and the memory limit are always set (0 included),
// as containerd sends them, so plugins see the same request from both.
func fromCRIResources(c *runtimeapi.LinuxContainerResources) *api.LinuxResources {
	if c == nil {
		return nil
	}
	shares, period := uint64(c.GetCpuShares()), uint64(c.GetCpuPeriod())
	quota, limit := c.GetCpuQuota(), c.GetMemoryLimitInBytes()
	r := &api.LinuxResources{
		Cpu: &api.LinuxCPU{
			Shares: api.UInt64(&shares), Quota: api.Int64(&quota), Period: api.UInt64(&period),
			Cpus: c.GetCpusetCpus(), Mems: c.GetCpusetMems(),
		},
		Memory: &api.LinuxMemory{Limit: api.Int64(&limit)},
	}
	if swap := c.GetMemorySwapLimitInBytes(); swap != 0 {
		r.Memory.Swap = api.Int64(&swap)
	}
	for _, h := range c.GetHugepageLimits() {
		r.HugepageLimits = append(r.HugepageLimits, &api.HugepageLimit{PageSize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	if len(c.GetUnified()) > 0 {
		r.Unified = maps.Clone(c.GetUnified())
	}
	return r
}

// mergeResources lays what u sets over cur and returns the result (cur is
// not changed; nil cur starts empty). NRI fields the CRI's resources have
// no place for (pids, block I/O and RDT classes, device rules) cannot be
// applied through UpdateContainerResources and are reported in dropped.
func mergeResources(cur *runtimeapi.LinuxContainerResources, u *api.LinuxResources) (out *runtimeapi.LinuxContainerResources, dropped []string) {
	out = &runtimeapi.LinuxContainerResources{}
	if cur != nil {
		out = proto.Clone(cur).(*runtimeapi.LinuxContainerResources)
	}
	if u == nil {
		return out, nil
	}
	if c := u.GetCpu(); c != nil {
		if v := c.GetShares(); v != nil {
			out.CpuShares = int64(v.GetValue())
		}
		if v := c.GetQuota(); v != nil {
			out.CpuQuota = v.GetValue()
		}
		if v := c.GetPeriod(); v != nil {
			out.CpuPeriod = int64(v.GetValue())
		}
		if c.GetCpus() != "" {
			out.CpusetCpus = c.GetCpus()
		}
		if c.GetMems() != "" {
			out.CpusetMems = c.GetMems()
		}
		if c.GetRealtimePeriod() != nil || c.GetRealtimeRuntime() != nil {
			dropped = append(dropped, "cpu realtime")
		}
	}
	if m := u.GetMemory(); m != nil {
		if v := m.GetLimit(); v != nil {
			out.MemoryLimitInBytes = v.GetValue()
		}
		if v := m.GetSwap(); v != nil {
			out.MemorySwapLimitInBytes = v.GetValue()
		}
	}
	for _, h := range u.GetHugepageLimits() {
		i := slices.IndexFunc(out.HugepageLimits, func(o *runtimeapi.HugepageLimit) bool { return o.GetPageSize() == h.GetPageSize() })
		if i < 0 {
			out.HugepageLimits = append(out.HugepageLimits, &runtimeapi.HugepageLimit{PageSize: h.GetPageSize(), Limit: h.GetLimit()})
		} else {
			out.HugepageLimits[i].Limit = h.GetLimit()
		}
	}
	if len(u.GetUnified()) > 0 {
		if out.Unified == nil {
			out.Unified = map[string]string{}
		}
		maps.Copy(out.Unified, u.GetUnified())
	}
	if u.GetPids() != nil {
		dropped = append(dropped, "pids")
	}
	if u.GetBlockioClass() != nil {
		dropped = append(dropped, "block I/O class")
	}
	if u.GetRdtClass() != nil {
		dropped = append(dropped, "RDT class")
	}
	if len(u.GetDevices()) > 0 {
		dropped = append(dropped, "device rules")
	}
	return out, dropped
}
