package stats

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// usage is one sample of a task's resource use, whatever the cgroup version.
type usage struct {
	at              time.Time
	cpuNanos        uint64 // cumulative CPU time
	memUsage        uint64
	memWorkingSet   uint64
	memRSS          uint64
	memLimit        uint64
	pageFaults      uint64 // of the cgroup and its descendants
	majorPageFaults uint64
	swap            uint64
	pids            uint64 // tasks (threads) in the cgroup

	// The rest is only reported by ListPodSandboxMetrics (cAdvisor's
	// figures, metricSet.containerMetrics).
	cpuUserNanos, cpuSystemNanos                       uint64
	cfsPeriods, cfsThrottledPeriods, cfsThrottledNanos uint64
	memCache, memMappedFile, memKernel                 uint64
	memMaxUsage, memFailcnt                            uint64
	memActiveFile, memInactiveFile                     uint64
	ownPageFaults, ownMajorPageFaults                  uint64 // of the cgroup alone
	oomKills                                           uint64
	pidsLimit                                          uint64 // 0: none
	processes, fds, sockets                            uint64
	nofileSoft                                         uint64 // the init's soft RLIMIT_NOFILE
	psi                                                [3]psiTotals
	io                                                 []deviceIO
	has                                                usageParts
}

// usageParts says which optional groups of figures a sample has.
type usageParts uint8

const (
	hasPids   usageParts = 1 << iota // pids, pidsLimit (pids controller)
	hasProcs                         // processes, fds, sockets (read from /proc)
	hasNofile                        // nofileSoft
	hasPSI                           // psi (cgroup v2 pressure files)
)

// Pressure resources, the indexes of usage.psi.
const (
	psiCPU = iota
	psiMemory
	psiIO
)

// psiTotals are a pressure file's cumulative stall times in microseconds:
// some task waiting, and all tasks stalled.
type psiTotals struct{ some, full uint64 }

// deviceIO is a cgroup's I/O on one block device.
type deviceIO struct {
	name                  string // "/dev/sda", or "major:minor" when unknown
	major, minor          uint64
	readBytes, writeBytes uint64
	reads, writes         uint64
}

// tasksUsage asks containerd for the metrics of several tasks in one call
// (containerd asks each shim); tasks that are gone are missing in the map.
func (s *Collector) tasksUsage(ctx context.Context, ids []string) (map[string]usage, error) {
	out := make(map[string]usage, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	filters := make([]string, len(ids))
	for i, id := range ids {
		filters[i] = "id==" + id
	}
	resp, err := s.cd.TaskService().Metrics(ctx, &tasks.MetricsRequest{Filters: filters})
	if err != nil {
		return nil, fmt.Errorf("task metrics: %w", errgrpc.ToNative(err))
	}
	for _, m := range resp.Metrics {
		u, err := usageOf(m.ID, m)
		if err != nil {
			return nil, err
		}
		out[m.ID] = u
	}
	return out, nil
}

// usageOf decodes a task's cgroup metrics as its shim reports them.
func usageOf(id string, m *types.Metric) (usage, error) {
	data, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return usage{}, fmt.Errorf("decode metrics of %s: %w", id, err)
	}
	u := usage{at: m.Timestamp.AsTime()}
	switch s := data.(type) {
	case *v1.Metrics:
		usageOfV1(s, &u)
	case *v2.Metrics:
		usageOfV2(s, &u)
	default:
		return usage{}, fmt.Errorf("metrics of %s: unknown type %T", id, data)
	}
	if u.memLimit >= math.MaxInt64/2 {
		u.memLimit = 0 // "no limit" is reported as a huge number
	}
	if u.pidsLimit >= math.MaxInt64/2 {
		u.pidsLimit = 0
	}
	return u, nil
}

func usageOfV1(s *v1.Metrics, u *usage) {
	if cpu := s.CPU; cpu != nil {
		if cpu.Usage != nil {
			u.cpuNanos, u.cpuUserNanos, u.cpuSystemNanos = cpu.Usage.Total, cpu.Usage.User, cpu.Usage.Kernel
		}
		if t := cpu.Throttling; t != nil {
			u.cfsPeriods, u.cfsThrottledPeriods, u.cfsThrottledNanos = t.Periods, t.ThrottledPeriods, t.ThrottledTime
		}
	}
	if mem := s.Memory; mem != nil {
		if mem.Usage != nil {
			u.memUsage, u.memLimit = mem.Usage.Usage, mem.Usage.Limit
			u.memMaxUsage, u.memFailcnt = mem.Usage.Max, mem.Usage.Failcnt
		}
		if mem.Swap != nil {
			u.swap = mem.Swap.Usage - min(mem.Swap.Usage, u.memUsage)
		}
		if mem.Kernel != nil {
			u.memKernel = mem.Kernel.Usage
		}
		u.memWorkingSet = u.memUsage - min(u.memUsage, mem.TotalInactiveFile)
		u.memRSS, u.pageFaults, u.majorPageFaults = mem.TotalRSS, mem.TotalPgFault, mem.TotalPgMajFault
		u.ownPageFaults, u.ownMajorPageFaults = mem.PgFault, mem.PgMajFault
		u.memCache, u.memMappedFile = mem.TotalCache, mem.TotalMappedFile
		u.memActiveFile, u.memInactiveFile = mem.TotalActiveFile, mem.TotalInactiveFile
	}
	if s.MemoryOomControl != nil {
		u.oomKills = s.MemoryOomControl.OomKill
	}
	if s.Pids != nil {
		u.pids, u.pidsLimit = s.Pids.Current, s.Pids.Limit
		u.has |= hasPids
	}
	if s.Blkio != nil {
		u.io = blkioV1Entries(u.io, s.Blkio.IoServiceBytesRecursive, true)
		u.io = blkioV1Entries(u.io, s.Blkio.IoServicedRecursive, false)
	}
}

// blkioV1Entries adds blkio entries ("Read"/"Write" of one device each)
// to io: bytes, or else counts of requests.
func blkioV1Entries(io []deviceIO, entries []*v1.BlkIOEntry, bytes bool) []deviceIO {
	for _, e := range entries {
		var i int
		io, i = ioDevice(io, e.Major, e.Minor)
		if io[i].name == "" {
			io[i].name = e.Device
		}
		addBlkioOp(&io[i], e.Op, e.Value, bytes)
	}
	return io
}

// ioDevice returns io with an entry for major:minor, and its index.
func ioDevice(io []deviceIO, major, minor uint64) ([]deviceIO, int) {
	for i := range io {
		if io[i].major == major && io[i].minor == minor {
			return io, i
		}
	}
	return append(io, deviceIO{major: major, minor: minor}), len(io)
}

// addBlkioOp records one v1 blkio figure; operations other than reads and
// writes (Sync, Async, Discard, Total) are not reported.
func addBlkioOp(d *deviceIO, op string, v uint64, bytes bool) {
	switch {
	case strings.EqualFold(op, "read") && bytes:
		d.readBytes = v
	case strings.EqualFold(op, "write") && bytes:
		d.writeBytes = v
	case strings.EqualFold(op, "read"):
		d.reads = v
	case strings.EqualFold(op, "write"):
		d.writes = v
	}
}

func usageOfV2(s *v2.Metrics, u *usage) {
	if cpu := s.CPU; cpu != nil {
		u.cpuNanos, u.cpuUserNanos, u.cpuSystemNanos = cpu.UsageUsec*1000, cpu.UserUsec*1000, cpu.SystemUsec*1000
		u.cfsPeriods, u.cfsThrottledPeriods, u.cfsThrottledNanos = cpu.NrPeriods, cpu.NrThrottled, cpu.ThrottledUsec*1000
		psiOf(cpu.PSI, &u.psi[psiCPU], u)
	}
	if mem := s.Memory; mem != nil {
		u.memUsage, u.memLimit, u.swap = mem.Usage, mem.UsageLimit, mem.SwapUsage
		u.memWorkingSet = mem.Usage - min(mem.Usage, mem.InactiveFile)
		u.memRSS, u.pageFaults, u.majorPageFaults = mem.Anon, mem.Pgfault, mem.Pgmajfault
		u.ownPageFaults, u.ownMajorPageFaults = mem.Pgfault, mem.Pgmajfault
		u.memCache, u.memMappedFile, u.memMaxUsage = mem.File, mem.FileMapped, mem.MaxUsage
		u.memKernel = mem.KernelStack + mem.Slab // the shim's message has no "kernel" total
		u.memActiveFile, u.memInactiveFile = mem.ActiveFile, mem.InactiveFile
		psiOf(mem.PSI, &u.psi[psiMemory], u)
	}
	if ev := s.MemoryEvents; ev != nil {
		u.oomKills, u.memFailcnt = ev.OomKill, ev.Max
	}
	if s.Pids != nil {
		u.pids, u.pidsLimit = s.Pids.Current, s.Pids.Limit
		u.has |= hasPids
	}
	if s.Io != nil {
		for _, e := range s.Io.Usage {
			var i int
			u.io, i = ioDevice(u.io, e.Major, e.Minor)
			d := &u.io[i]
			d.name = fmt.Sprintf("%d:%d", e.Major, e.Minor)
			d.readBytes, d.writeBytes, d.reads, d.writes = e.Rbytes, e.Wbytes, e.Rios, e.Wios
		}
		psiOf(s.Io.PSI, &u.psi[psiIO], u)
	}
}

func psiOf(p *v2.PSIStats, t *psiTotals, u *usage) {
	if p == nil {
		return
	}
	t.some, t.full = p.GetSome().GetTotal(), p.GetFull().GetTotal()
	u.has |= hasPSI
}

func cpuMemStats(s taskSample) (*runtimeapi.CpuUsage, *runtimeapi.MemoryUsage, *runtimeapi.SwapUsage) {
	u := s.u
	ts := u.at.UnixNano()
	cpu := &runtimeapi.CpuUsage{
		Timestamp:            ts,
		UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: u.cpuNanos},
		UsageNanoCores:       &runtimeapi.UInt64Value{Value: s.nanoCores},
	}
	mem := &runtimeapi.MemoryUsage{
		Timestamp:       ts,
		WorkingSetBytes: &runtimeapi.UInt64Value{Value: u.memWorkingSet},
		UsageBytes:      &runtimeapi.UInt64Value{Value: u.memUsage},
		RssBytes:        &runtimeapi.UInt64Value{Value: u.memRSS},
		PageFaults:      &runtimeapi.UInt64Value{Value: u.pageFaults},
		MajorPageFaults: &runtimeapi.UInt64Value{Value: u.majorPageFaults},
	}
	if u.memLimit > 0 {
		mem.AvailableBytes = &runtimeapi.UInt64Value{Value: u.memLimit - min(u.memLimit, u.memWorkingSet)}
	}
	swap := &runtimeapi.SwapUsage{Timestamp: ts, SwapUsageBytes: &runtimeapi.UInt64Value{Value: u.swap}}
	return cpu, mem, swap
}

// ContainerStats reports container c: its task's CPU and memory use while
// it runs, and its writable layer's use.
func (s *Collector) ContainerStats(ctx context.Context, c Container) (*runtimeapi.ContainerStats, error) {
	var u *taskSample
	if c.Running {
		if ts, ok := s.usages(ctx, []Task{c.Task})[c.ID]; ok {
			u = &ts
		}
	}
	return s.containerStatsOf(ctx, c, u)
}

// containerStatsOf reports a container with its task's usage u (nil: not
// running) and its writable layer's use.
func (s *Collector) containerStatsOf(ctx context.Context, c Container, u *taskSample) (*runtimeapi.ContainerStats, error) {
	wl, err := s.writableLayer(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("writable layer of container %s: %w", c.ID, err)
	}
	var at time.Time
	if u != nil {
		at = u.u.at
	}
	if out := s.builtContainer(c.ID, at, wl); out != nil {
		return out, nil
	}
	out := &runtimeapi.ContainerStats{Attributes: &runtimeapi.ContainerAttributes{
		Id: c.ID, Metadata: c.Config.GetMetadata(), Labels: c.Config.GetLabels(), Annotations: c.Config.GetAnnotations(),
	}, WritableLayer: wl}
	if u != nil {
		out.Cpu, out.Memory, out.Swap = cpuMemStats(*u)
	}
	keep(s, s.builtCtrs, c.ID, builtContainerStats{sampleAt: at, layer: wl, out: out})
	return out, nil
}

// ListContainerStats reports the containers ctrs (the core's selection),
// with the running ones' latest samples (Collector). A container removed
// meanwhile is left out.
func (s *Collector) ListContainerStats(ctx context.Context, ctrs []Container) ([]*runtimeapi.ContainerStats, error) {
	var running []Task
	for _, c := range ctrs {
		if c.Running {
			running = append(running, c.Task)
		}
	}
	usages := s.usages(ctx, running)
	out := make([]*runtimeapi.ContainerStats, 0, len(ctrs))
	for _, c := range ctrs {
		var u *taskSample
		if tu, ok := usages[c.ID]; ok {
			u = &tu
		}
		st, err := s.containerStatsOf(ctx, c, u)
		if errdefs.IsNotFound(err) {
			continue // removed while listing
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// PodStats reports pod p: the sum of its pause and app containers' cgroup
// use, its network interfaces' counters, and its containers' stats.
func (s *Collector) PodStats(ctx context.Context, p Pod) (*runtimeapi.PodSandboxStats, error) {
	var ctrs []Container
	if p.Ready {
		ctrs = s.src.Containers(p.ID)
	}
	return s.podStatsWith(ctx, p, ctrs, s.usages(ctx, podTasks(p, ctrs)))
}

// podTasks are the tasks whose use is the pod's: its pause task (if it
// has one) and its running containers' tasks.
func podTasks(p Pod, ctrs []Container) []Task {
	if !p.Ready {
		return nil
	}
	var ts []Task
	if p.Pause.ID != "" {
		ts = append(ts, p.Pause)
	}
	for _, c := range ctrs {
		if c.Running {
			ts = append(ts, c.Task)
		}
	}
	return ts
}

// podStatsWith reports a pod with its containers ctrs from its tasks'
// usages.
func (s *Collector) podStatsWith(ctx context.Context, p Pod, ctrs []Container, usages map[string]taskSample) (*runtimeapi.PodSandboxStats, error) {
	attrs := &runtimeapi.PodSandboxAttributes{
		Id: p.ID, Metadata: p.Config.GetMetadata(), Labels: p.Config.GetLabels(), Annotations: p.Config.GetAnnotations(),
	}
	if !p.Ready {
		return &runtimeapi.PodSandboxStats{Attributes: attrs, Linux: &runtimeapi.LinuxPodSandboxStats{}}, nil
	}
	var containers []*runtimeapi.ContainerStats
	for _, c := range ctrs {
		var cu *taskSample
		if u, ok := usages[c.ID]; ok && c.Running {
			cu = &u
		}
		cs, err := s.containerStatsOf(ctx, c, cu)
		if err != nil {
			continue
		}
		containers = append(containers, cs)
	}
	var net *runtimeapi.NetworkUsage
	if p.NetNSPath != "" {
		n, err := s.network(p)
		if err != nil {
			return nil, fmt.Errorf("network stats of pod %s: %w", p.ID, err)
		}
		net = n.usage
	}
	pause := usages[p.ID]
	if out := s.builtPod(p.ID, pause.u.at, net, containers); out != nil {
		return out, nil
	}
	out := &runtimeapi.PodSandboxStats{Attributes: attrs, Linux: &runtimeapi.LinuxPodSandboxStats{Containers: containers, Network: net}}
	// The pod's CPU rate is the sum of its tasks' rates: a total whose
	// members come and go has no rate of its own.
	var total taskSample
	var count uint64
	add := func(s taskSample) {
		u := s.u
		total.nanoCores += s.nanoCores
		if u.at.After(total.u.at) {
			total.u.at = u.at
		}
		t := &total.u
		t.cpuNanos += u.cpuNanos
		t.memUsage += u.memUsage
		t.memWorkingSet += u.memWorkingSet
		t.memRSS += u.memRSS
		t.pageFaults += u.pageFaults
		t.majorPageFaults += u.majorPageFaults
		t.swap += u.swap
		count += u.pids
	}
	if !pause.u.at.IsZero() {
		add(pause)
	}
	for _, c := range ctrs {
		if u, ok := usages[c.ID]; ok && c.Running {
			add(u)
		}
	}
	if total.u.at.IsZero() {
		total.u.at = time.Now()
	}
	out.Linux.Cpu, out.Linux.Memory, _ = cpuMemStats(total)
	out.Linux.Process = &runtimeapi.ProcessUsage{Timestamp: total.u.at.UnixNano(), ProcessCount: &runtimeapi.UInt64Value{Value: count}}
	keep(s, s.builtPods, p.ID, builtPodStats{pauseAt: pause.u.at, net: net, containers: containers, out: out})
	return out, nil
}

// podNet is a sample of a pod's interface counters: the CRI stats' view
// (shared by the answers built from it) and every counter the metrics
// report.
type podNet struct {
	usage *runtimeapi.NetworkUsage
	links []Link
}

// netnsStats reads the interface counters inside a pod's network namespace
// (Source.Links); the loopback is not reported.
func (s *Collector) netnsStats(path string) (*podNet, error) {
	now := time.Now().UnixNano()
	out := &podNet{usage: &runtimeapi.NetworkUsage{Timestamp: now}}
	links, err := s.src.Links(path)
	for _, l := range links {
		if l.Name == "lo" {
			continue
		}
		out.links = append(out.links, l)
		iu := &runtimeapi.NetworkInterfaceUsage{
			Name:     l.Name,
			RxBytes:  &runtimeapi.UInt64Value{Value: l.RxBytes},
			RxErrors: &runtimeapi.UInt64Value{Value: l.RxErrors},
			TxBytes:  &runtimeapi.UInt64Value{Value: l.TxBytes},
			TxErrors: &runtimeapi.UInt64Value{Value: l.TxErrors},
		}
		if l.Name == "eth0" {
			out.usage.DefaultInterface = iu
		} else {
			out.usage.Interfaces = append(out.usage.Interfaces, iu)
		}
	}
	return out, err
}

// ListPodStats reports the pods pods (the core's selection).
func (s *Collector) ListPodStats(ctx context.Context, pods []Pod) ([]*runtimeapi.PodSandboxStats, error) {
	ctrs := make([][]Container, len(pods))
	var tasks []Task
	for i, p := range pods {
		if p.Ready {
			ctrs[i] = s.src.Containers(p.ID)
		}
		tasks = append(tasks, podTasks(p, ctrs[i])...)
	}
	usages := s.usages(ctx, tasks)
	out := make([]*runtimeapi.PodSandboxStats, 0, len(pods))
	for i, p := range pods {
		st, err := s.podStatsWith(ctx, p, ctrs[i], usages)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}
