package sandbox

import (
	"context"
	"fmt"
	"math"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/pkg/netns"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	cnins "github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// usage is one sample of a cgroup's resource use, whatever the cgroup version.
type usage struct {
	at              time.Time
	cpuNanos        uint64 // cumulative CPU time
	memUsage        uint64
	memWorkingSet   uint64
	memRSS          uint64
	memLimit        uint64
	pageFaults      uint64
	majorPageFaults uint64
	swap            uint64
	pids            uint64
}

// tasksUsage asks containerd for the metrics of several tasks in one call
// (containerd asks each shim); tasks that are gone are missing in the map.
func (r *Runtime) tasksUsage(ctx context.Context, ids []string) (map[string]usage, error) {
	out := make(map[string]usage, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	filters := make([]string, len(ids))
	for i, id := range ids {
		filters[i] = "id==" + id
	}
	resp, err := r.client.TaskService().Metrics(ctx, &tasks.MetricsRequest{Filters: filters})
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

// usageOf decodes a task's cgroup metrics.
func usageOf(id string, m *types.Metric) (usage, error) {
	data, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return usage{}, fmt.Errorf("decode metrics of %s: %w", id, err)
	}
	u := usage{at: m.Timestamp.AsTime()}
	switch s := data.(type) {
	case *v1.Metrics:
		if s.CPU != nil && s.CPU.Usage != nil {
			u.cpuNanos = s.CPU.Usage.Total
		}
		if mem := s.Memory; mem != nil {
			if mem.Usage != nil {
				u.memUsage, u.memLimit = mem.Usage.Usage, mem.Usage.Limit
			}
			if mem.Swap != nil {
				u.swap = mem.Swap.Usage - min(mem.Swap.Usage, u.memUsage)
			}
			u.memWorkingSet = u.memUsage - min(u.memUsage, mem.TotalInactiveFile)
			u.memRSS, u.pageFaults, u.majorPageFaults = mem.TotalRSS, mem.TotalPgFault, mem.TotalPgMajFault
		}
		if s.Pids != nil {
			u.pids = s.Pids.Current
		}
	case *v2.Metrics:
		if s.CPU != nil {
			u.cpuNanos = s.CPU.UsageUsec * 1000
		}
		if mem := s.Memory; mem != nil {
			u.memUsage, u.memLimit, u.swap = mem.Usage, mem.UsageLimit, mem.SwapUsage
			u.memWorkingSet = mem.Usage - min(mem.Usage, mem.InactiveFile)
			u.memRSS, u.pageFaults, u.majorPageFaults = mem.Anon, mem.Pgfault, mem.Pgmajfault
		}
		if s.Pids != nil {
			u.pids = s.Pids.Current
		}
	default:
		return usage{}, fmt.Errorf("metrics of %s: unknown type %T", id, data)
	}
	if u.memLimit >= math.MaxInt64/2 {
		u.memLimit = 0 // "no limit" is reported as a huge number
	}
	return u, nil
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

// ContainerStats reports a container's CPU, memory and writable layer use.
func (r *Runtime) ContainerStats(ctx context.Context, id string) (*runtimeapi.ContainerStats, error) {
	c, err := r.store.container(id)
	if err != nil {
		return nil, err
	}
	return r.containerStats(ctx, c)
}

func (r *Runtime) containerStats(ctx context.Context, c *Container) (*runtimeapi.ContainerStats, error) {
	var u *taskSample
	if r.store.containerStatusOf(c).State == runtimeapi.ContainerState_CONTAINER_RUNNING {
		if ts, ok := r.stats.usages(ctx, []string{c.ID})[c.ID]; ok {
			u = &ts
		}
	}
	return r.containerStatsOf(ctx, c, u)
}

// containerStatsOf reports a container with its task's usage u (nil: not
// running) and its writable layer's use.
func (r *Runtime) containerStatsOf(ctx context.Context, c *Container, u *taskSample) (*runtimeapi.ContainerStats, error) {
	wl, err := r.writableLayer(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("writable layer of container %s: %w", c.ID, err)
	}
	var at time.Time
	if u != nil {
		at = u.u.at
	}
	if out := r.stats.builtContainer(c.ID, at, wl); out != nil {
		return out, nil
	}
	out := &runtimeapi.ContainerStats{Attributes: &runtimeapi.ContainerAttributes{
		Id: c.ID, Metadata: c.Config.GetMetadata(), Labels: c.Config.GetLabels(), Annotations: c.Config.GetAnnotations(),
	}, WritableLayer: wl}
	if u != nil {
		out.Cpu, out.Memory, out.Swap = cpuMemStats(*u)
	}
	r.stats.keepContainer(c.ID, builtContainerStats{sampleAt: at, layer: wl, out: out})
	return out, nil
}

// ListContainerStats reports the containers that match f, with the
// running ones' latest samples (statsCollector).
func (r *Runtime) ListContainerStats(ctx context.Context, f ContainerFilter) ([]*runtimeapi.ContainerStats, error) {
	var sel []*Container
	var running []string
	for _, c := range r.store.listContainers() {
		if !matchID(c.ID, f.ID) || !matchID(c.PodID, f.PodID) || !matchLabels(c.Config.GetLabels(), f.LabelSelector) {
			continue
		}
		st := r.store.containerStatusOf(c).State
		if f.State != nil && st != *f.State {
			continue
		}
		sel = append(sel, c)
		if st == runtimeapi.ContainerState_CONTAINER_RUNNING {
			running = append(running, c.ID)
		}
	}
	usages := r.stats.usages(ctx, running)
	out := make([]*runtimeapi.ContainerStats, 0, len(sel))
	for _, c := range sel {
		var u *taskSample
		if tu, ok := usages[c.ID]; ok {
			u = &tu
		}
		s, err := r.containerStatsOf(ctx, c, u)
		if errdefs.IsNotFound(err) {
			continue // removed while listing
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// PodStats reports a pod: the sum of its pause and app containers' cgroup
// use, its network interfaces' counters, and its containers' stats.
func (r *Runtime) PodStats(ctx context.Context, id string) (*runtimeapi.PodSandboxStats, error) {
	p, err := r.store.pod(id)
	if err != nil {
		return nil, err
	}
	return r.podStats(ctx, p)
}

func (r *Runtime) podStats(ctx context.Context, p *Pod) (*runtimeapi.PodSandboxStats, error) {
	return r.podStatsWith(ctx, p, r.stats.usages(ctx, r.podTaskIDs(p)))
}

// podTaskIDs are the tasks whose use is the pod's: its pause task (if it
// has one) and its running containers' tasks.
func (r *Runtime) podTaskIDs(p *Pod) []string {
	if r.store.podStatusOf(p).State != runtimeapi.PodSandboxState_SANDBOX_READY {
		return nil
	}
	var ids []string
	if !p.Infraless {
		ids = append(ids, p.ID)
	}
	for _, c := range r.store.podContainers(p.ID) {
		if r.store.containerStatusOf(c).State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			ids = append(ids, c.ID)
		}
	}
	return ids
}

// podStatsWith reports a pod from its tasks' usages (tasksUsage).
func (r *Runtime) podStatsWith(ctx context.Context, p *Pod, usages map[string]taskSample) (*runtimeapi.PodSandboxStats, error) {
	attrs := &runtimeapi.PodSandboxAttributes{
		Id: p.ID, Metadata: p.Config.GetMetadata(), Labels: p.Config.GetLabels(), Annotations: p.Config.GetAnnotations(),
	}
	if r.store.podStatusOf(p).State != runtimeapi.PodSandboxState_SANDBOX_READY {
		return &runtimeapi.PodSandboxStats{Attributes: attrs, Linux: &runtimeapi.LinuxPodSandboxStats{}}, nil
	}
	ctrs := r.store.podContainers(p.ID)
	var containers []*runtimeapi.ContainerStats
	for _, c := range ctrs {
		var cu *taskSample
		if u, ok := usages[c.ID]; ok && r.store.containerStatusOf(c).State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			cu = &u
		}
		cs, err := r.containerStatsOf(ctx, c, cu)
		if err != nil {
			continue
		}
		containers = append(containers, cs)
	}
	var net *runtimeapi.NetworkUsage
	if p.NetNSPath != "" {
		var err error
		if net, err = r.stats.network(p); err != nil {
			return nil, fmt.Errorf("network stats of pod %s: %w", p.ID, err)
		}
	}
	pause := usages[p.ID]
	if out := r.stats.builtPod(p.ID, pause.u.at, net, containers); out != nil {
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
		if u, ok := usages[c.ID]; ok && r.store.containerStatusOf(c).State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			add(u)
		}
	}
	if total.u.at.IsZero() {
		total.u.at = time.Now()
	}
	out.Linux.Cpu, out.Linux.Memory, _ = cpuMemStats(total)
	out.Linux.Process = &runtimeapi.ProcessUsage{Timestamp: total.u.at.UnixNano(), ProcessCount: &runtimeapi.UInt64Value{Value: count}}
	r.stats.keepPod(p.ID, builtPodStats{pauseAt: pause.u.at, net: net, containers: containers, out: out})
	return out, nil
}

// netnsStats reads the interface counters inside a pod's network namespace.
func netnsStats(path string) (*runtimeapi.NetworkUsage, error) {
	out := &runtimeapi.NetworkUsage{Timestamp: time.Now().UnixNano()}
	err := netns.LoadNetNS(path).Do(func(cnins.NetNS) error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			a := l.Attrs()
			if a.Name == "lo" || a.Statistics == nil {
				continue
			}
			iu := &runtimeapi.NetworkInterfaceUsage{
				Name:     a.Name,
				RxBytes:  &runtimeapi.UInt64Value{Value: a.Statistics.RxBytes},
				RxErrors: &runtimeapi.UInt64Value{Value: a.Statistics.RxErrors},
				TxBytes:  &runtimeapi.UInt64Value{Value: a.Statistics.TxBytes},
				TxErrors: &runtimeapi.UInt64Value{Value: a.Statistics.TxErrors},
			}
			if a.Name == "eth0" {
				out.DefaultInterface = iu
			} else {
				out.Interfaces = append(out.Interfaces, iu)
			}
		}
		return nil
	})
	return out, err
}

// ListPodStats reports stats of every pod matching f.
func (r *Runtime) ListPodStats(ctx context.Context, f PodFilter) ([]*runtimeapi.PodSandboxStats, error) {
	var sel []*Pod
	var ids []string
	for _, p := range r.store.listPods() {
		if !matchID(p.ID, f.ID) || !matchLabels(p.Config.GetLabels(), f.LabelSelector) {
			continue
		}
		if f.State != nil && r.store.podStatusOf(p).State != *f.State {
			continue
		}
		sel = append(sel, p)
		ids = append(ids, r.podTaskIDs(p)...)
	}
	usages := r.stats.usages(ctx, ids)
	out := make([]*runtimeapi.PodSandboxStats, 0, len(sel))
	for _, p := range sel {
		s, err := r.podStatsWith(ctx, p, usages)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// metricDescriptors are the cAdvisor-compatible metrics ListPodSandboxMetrics
// reports (kubelet's PodAndContainerStatsFromCRI serves them on /metrics/cadvisor).
var metricDescriptors = []*runtimeapi.MetricDescriptor{
	{Name: "container_cpu_usage_seconds_total", Help: "Cumulative cpu time consumed in seconds."},
	{Name: "container_memory_usage_bytes", Help: "Current memory usage in bytes, including all memory regardless of when it was accessed."},
	{Name: "container_memory_working_set_bytes", Help: "Current working set in bytes."},
	{Name: "container_memory_rss", Help: "Size of RSS in bytes."},
	{Name: "container_spec_memory_limit_bytes", Help: "Memory limit for the container."},
	{Name: "container_network_receive_bytes_total", Help: "Cumulative count of bytes received.", LabelKeys: []string{"interface"}},
	{Name: "container_network_transmit_bytes_total", Help: "Cumulative count of bytes transmitted.", LabelKeys: []string{"interface"}},
}

// MetricDescriptors lists the metrics PodMetrics reports.
func (r *Runtime) MetricDescriptors() []*runtimeapi.MetricDescriptor { return metricDescriptors }

// PodMetrics reports the cAdvisor-style metrics of every ready pod.
func (r *Runtime) PodMetrics(ctx context.Context) ([]*runtimeapi.PodSandboxMetrics, error) {
	var ready []*Pod
	var ids []string
	for _, p := range r.store.listPods() {
		if r.store.podStatusOf(p).State == runtimeapi.PodSandboxState_SANDBOX_READY {
			ready = append(ready, p)
			ids = append(ids, r.podTaskIDs(p)...)
		}
	}
	usages := r.stats.usages(ctx, ids)
	var out []*runtimeapi.PodSandboxMetrics
	for _, p := range ready {
		pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: p.ID}
		if p.NetNSPath != "" {
			if net, err := r.stats.network(p); err == nil {
				now := net.Timestamp
				for _, iu := range append([]*runtimeapi.NetworkInterfaceUsage{net.DefaultInterface}, net.Interfaces...) {
					if iu == nil {
						continue
					}
					pm.Metrics = append(pm.Metrics,
						counter("container_network_receive_bytes_total", now, iu.RxBytes.GetValue(), iu.Name),
						counter("container_network_transmit_bytes_total", now, iu.TxBytes.GetValue(), iu.Name))
				}
			}
		}
		for _, c := range r.store.podContainers(p.ID) {
			if r.store.containerStatusOf(c).State != runtimeapi.ContainerState_CONTAINER_RUNNING {
				continue
			}
			s, ok := usages[c.ID]
			if !ok {
				continue
			}
			u := s.u
			ts := u.at.UnixNano()
			pm.ContainerMetrics = append(pm.ContainerMetrics, &runtimeapi.ContainerMetrics{ContainerId: c.ID, Metrics: []*runtimeapi.Metric{
				counter("container_cpu_usage_seconds_total", ts, u.cpuNanos/1e9),
				gauge("container_memory_usage_bytes", ts, u.memUsage),
				gauge("container_memory_working_set_bytes", ts, u.memWorkingSet),
				gauge("container_memory_rss", ts, u.memRSS),
				gauge("container_spec_memory_limit_bytes", ts, u.memLimit),
			}})
		}
		out = append(out, pm)
	}
	return out, nil
}

func counter(name string, ts int64, v uint64, labels ...string) *runtimeapi.Metric {
	return &runtimeapi.Metric{Name: name, Timestamp: ts, MetricType: runtimeapi.MetricType_COUNTER, LabelValues: labels, Value: &runtimeapi.UInt64Value{Value: v}}
}

func gauge(name string, ts int64, v uint64, labels ...string) *runtimeapi.Metric {
	return &runtimeapi.Metric{Name: name, Timestamp: ts, MetricType: runtimeapi.MetricType_GAUGE, LabelValues: labels, Value: &runtimeapi.UInt64Value{Value: v}}
}
