package stats

import (
	"context"
	"os"
	"slices"
	"strconv"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// The metrics of ListMetricDescriptors and ListPodSandboxMetrics are
// cAdvisor's: with its PodAndContainerStatsFromCRI feature on, kubelet
// serves them on /metrics/cadvisor in place of its own cAdvisor's, reading
// the descriptors once at start and the values at every scrape. Names,
// help, types and extra label keys are those of the cAdvisor metrics kubelet
// registers (cpu, memory, disk usage and I/O, network, process, OOM, and
// pressure where the kernel reports it); every metric carries the base
// labels containerd's CRI uses: pod, namespace, container, id (the
// container's id; the pod's for pod-level metrics) and image (as the pod
// spec names it). Values are the CRI's uint64: seconds are whole seconds,
// as in containerd's and CRI-O's answers.

// metricLabels are the label keys every metric starts with.
var metricLabels = []string{"pod", "namespace", "container", "id", "image"}

// metricDef is one metric: its descriptor and type.
type metricDef struct {
	name, help string
	typ        runtimeapi.MetricType
	extra      []string // label keys after metricLabels
	psi        bool     // only where the kernel reports pressure (cgroup v2)
}

const (
	counter = runtimeapi.MetricType_COUNTER
	gauge   = runtimeapi.MetricType_GAUGE
)

var (
	mLastSeen  = &metricDef{name: "container_last_seen", help: "Last time a container was seen by the exporter", typ: gauge}
	mStartTime = &metricDef{name: "container_start_time_seconds", help: "Start time of the container since unix epoch in seconds.", typ: gauge}

	mCPUUsage          = &metricDef{name: "container_cpu_usage_seconds_total", help: "Cumulative cpu time consumed in seconds.", typ: counter, extra: []string{"cpu"}}
	mCPUUser           = &metricDef{name: "container_cpu_user_seconds_total", help: "Cumulative user cpu time consumed in seconds.", typ: counter}
	mCPUSystem         = &metricDef{name: "container_cpu_system_seconds_total", help: "Cumulative system cpu time consumed in seconds.", typ: counter}
	mCFSPeriods        = &metricDef{name: "container_cpu_cfs_periods_total", help: "Number of elapsed enforcement period intervals.", typ: counter}
	mCFSThrottled      = &metricDef{name: "container_cpu_cfs_throttled_periods_total", help: "Number of throttled period intervals.", typ: counter}
	mCFSThrottledTotal = &metricDef{name: "container_cpu_cfs_throttled_seconds_total", help: "Total time duration the container has been throttled.", typ: counter}

	mMemCache        = &metricDef{name: "container_memory_cache", help: "Number of bytes of page cache memory.", typ: gauge}
	mMemRSS          = &metricDef{name: "container_memory_rss", help: "Size of RSS in bytes.", typ: gauge}
	mMemKernel       = &metricDef{name: "container_memory_kernel_usage", help: "Size of kernel memory allocated in bytes.", typ: gauge}
	mMemMappedFile   = &metricDef{name: "container_memory_mapped_file", help: "Size of memory mapped files in bytes.", typ: gauge}
	mMemSwap         = &metricDef{name: "container_memory_swap", help: "Container swap usage in bytes.", typ: gauge}
	mMemFailcnt      = &metricDef{name: "container_memory_failcnt", help: "Number of memory usage hits limits", typ: counter}
	mMemUsage        = &metricDef{name: "container_memory_usage_bytes", help: "Current memory usage in bytes, including all memory regardless of when it was accessed", typ: gauge}
	mMemMaxUsage     = &metricDef{name: "container_memory_max_usage_bytes", help: "Maximum memory usage recorded in bytes", typ: gauge}
	mMemWorkingSet   = &metricDef{name: "container_memory_working_set_bytes", help: "Current working set in bytes.", typ: gauge}
	mMemActiveFile   = &metricDef{name: "container_memory_total_active_file_bytes", help: "Current total active file in bytes.", typ: gauge}
	mMemInactiveFile = &metricDef{name: "container_memory_total_inactive_file_bytes", help: "Current total inactive file in bytes.", typ: gauge}
	mMemFailures     = &metricDef{name: "container_memory_failures_total", help: "Cumulative count of memory allocation failures.", typ: counter, extra: []string{"failure_type", "scope"}}

	mFsInodesFree  = &metricDef{name: "container_fs_inodes_free", help: "Number of available Inodes", typ: gauge, extra: []string{"device"}}
	mFsInodesTotal = &metricDef{name: "container_fs_inodes_total", help: "Number of Inodes", typ: gauge, extra: []string{"device"}}
	mFsLimit       = &metricDef{name: "container_fs_limit_bytes", help: "Number of bytes that can be consumed by the container on this filesystem.", typ: gauge, extra: []string{"device"}}
	mFsUsage       = &metricDef{name: "container_fs_usage_bytes", help: "Number of bytes that are consumed by the container on this filesystem.", typ: gauge, extra: []string{"device"}}

	mFsReadBytes   = &metricDef{name: "container_fs_reads_bytes_total", help: "Cumulative count of bytes read", typ: counter, extra: []string{"device"}}
	mFsReads       = &metricDef{name: "container_fs_reads_total", help: "Cumulative count of reads completed", typ: counter, extra: []string{"device"}}
	mFsWriteBytes  = &metricDef{name: "container_fs_writes_bytes_total", help: "Cumulative count of bytes written", typ: counter, extra: []string{"device"}}
	mFsWrites      = &metricDef{name: "container_fs_writes_total", help: "Cumulative count of writes completed", typ: counter, extra: []string{"device"}}
	mBlkioDevUsage = &metricDef{name: "container_blkio_device_usage_total", help: "Blkio Device bytes usage", typ: counter, extra: []string{"device", "major", "minor", "operation"}}

	mNetRxBytes   = &metricDef{name: "container_network_receive_bytes_total", help: "Cumulative count of bytes received", typ: counter, extra: []string{"interface"}}
	mNetRxPackets = &metricDef{name: "container_network_receive_packets_total", help: "Cumulative count of packets received", typ: counter, extra: []string{"interface"}}
	mNetRxDropped = &metricDef{name: "container_network_receive_packets_dropped_total", help: "Cumulative count of packets dropped while receiving", typ: counter, extra: []string{"interface"}}
	mNetRxErrors  = &metricDef{name: "container_network_receive_errors_total", help: "Cumulative count of errors encountered while receiving", typ: counter, extra: []string{"interface"}}
	mNetTxBytes   = &metricDef{name: "container_network_transmit_bytes_total", help: "Cumulative count of bytes transmitted", typ: counter, extra: []string{"interface"}}
	mNetTxPackets = &metricDef{name: "container_network_transmit_packets_total", help: "Cumulative count of packets transmitted", typ: counter, extra: []string{"interface"}}
	mNetTxDropped = &metricDef{name: "container_network_transmit_packets_dropped_total", help: "Cumulative count of packets dropped while transmitting", typ: counter, extra: []string{"interface"}}
	mNetTxErrors  = &metricDef{name: "container_network_transmit_errors_total", help: "Cumulative count of errors encountered while transmitting", typ: counter, extra: []string{"interface"}}

	mProcesses  = &metricDef{name: "container_processes", help: "Number of processes running inside the container.", typ: gauge}
	mFDs        = &metricDef{name: "container_file_descriptors", help: "Number of open file descriptors for the container.", typ: gauge}
	mSockets    = &metricDef{name: "container_sockets", help: "Number of open sockets for the container.", typ: gauge}
	mThreadsMax = &metricDef{name: "container_threads_max", help: "Maximum number of threads allowed inside the container, infinity if value is zero", typ: gauge}
	mThreads    = &metricDef{name: "container_threads", help: "Number of threads running inside the container", typ: gauge}
	mUlimits    = &metricDef{name: "container_ulimits_soft", help: "Soft ulimit values for the container root process. Unlimited if -1, except priority and nice", typ: gauge, extra: []string{"ulimit"}}

	mOOMEvents = &metricDef{name: "container_oom_events_total", help: "Count of out of memory events observed for the container", typ: counter}

	mSpecCPUPeriod    = &metricDef{name: "container_spec_cpu_period", help: "CPU period of the container.", typ: gauge}
	mSpecCPUQuota     = &metricDef{name: "container_spec_cpu_quota", help: "CPU quota of the container.", typ: gauge}
	mSpecCPUShares    = &metricDef{name: "container_spec_cpu_shares", help: "CPU share of the container.", typ: gauge}
	mSpecMemLimit     = &metricDef{name: "container_spec_memory_limit_bytes", help: "Memory limit for the container.", typ: gauge}
	mSpecMemReserve   = &metricDef{name: "container_spec_memory_reservation_limit_bytes", help: "Memory reservation limit for the container.", typ: gauge}
	mSpecMemSwapLimit = &metricDef{name: "container_spec_memory_swap_limit_bytes", help: "Memory swap limit for the container.", typ: gauge}

	mPSICPUStalled = &metricDef{name: "container_pressure_cpu_stalled_seconds_total", help: "Total time duration no tasks in the container could make progress due to CPU congestion.", typ: counter, psi: true}
	mPSICPUWaiting = &metricDef{name: "container_pressure_cpu_waiting_seconds_total", help: "Total time duration tasks in the container have waited due to CPU congestion.", typ: counter, psi: true}
	mPSIMemStalled = &metricDef{name: "container_pressure_memory_stalled_seconds_total", help: "Total time duration no tasks in the container could make progress due to memory congestion.", typ: counter, psi: true}
	mPSIMemWaiting = &metricDef{name: "container_pressure_memory_waiting_seconds_total", help: "Total time duration tasks in the container have waited due to memory congestion.", typ: counter, psi: true}
	mPSIIOStalled  = &metricDef{name: "container_pressure_io_stalled_seconds_total", help: "Total time duration no tasks in the container could make progress due to IO congestion.", typ: counter, psi: true}
	mPSIIOWaiting  = &metricDef{name: "container_pressure_io_waiting_seconds_total", help: "Total time duration tasks in the container have waited due to IO congestion.", typ: counter, psi: true}

	// psiMetrics are the pressure metrics by resource: waiting (some), stalled (full).
	psiMetrics = [...][2]*metricDef{psiCPU: {mPSICPUWaiting, mPSICPUStalled}, psiMemory: {mPSIMemWaiting, mPSIMemStalled}, psiIO: {mPSIIOWaiting, mPSIIOStalled}}

	// allMetricDefs is the descriptors' order (cAdvisor's).
	allMetricDefs = []*metricDef{
		mLastSeen, mStartTime,
		mCPUUsage, mCPUUser, mCPUSystem, mCFSPeriods, mCFSThrottled, mCFSThrottledTotal,
		mMemCache, mMemRSS, mMemKernel, mMemMappedFile, mMemSwap, mMemFailcnt, mMemUsage, mMemMaxUsage, mMemWorkingSet, mMemActiveFile, mMemInactiveFile, mMemFailures,
		mFsInodesFree, mFsInodesTotal, mFsLimit, mFsUsage, mFsReadBytes, mFsReads, mFsWriteBytes, mFsWrites, mBlkioDevUsage,
		mNetRxBytes, mNetRxPackets, mNetRxDropped, mNetRxErrors, mNetTxBytes, mNetTxPackets, mNetTxDropped, mNetTxErrors,
		mProcesses, mFDs, mSockets, mThreadsMax, mThreads, mUlimits, mOOMEvents,
		mSpecCPUPeriod, mSpecCPUQuota, mSpecCPUShares, mSpecMemLimit, mSpecMemReserve, mSpecMemSwapLimit,
		mPSICPUStalled, mPSICPUWaiting, mPSIMemStalled, mPSIMemWaiting, mPSIIOStalled, mPSIIOWaiting,
	}
	defaultCFSPeriod uint64 = 100000 // µs: the kernel's, when none is set
	defaultCPUShares uint64 = 1024   // cpu.shares 1024 (v1) / cpu.weight 100 (v2)
)

// metricSet is this host's metrics: the descriptors are built once, from
// host facts that do not change (the cgroup version, pressure accounting).
type metricSet struct {
	v2, psi bool
	descs   []*runtimeapi.MetricDescriptor
}

func newMetricSet(v2, psi bool) *metricSet {
	s := &metricSet{v2: v2, psi: v2 && psi}
	for _, d := range allMetricDefs {
		if d.psi && !s.psi {
			continue
		}
		s.descs = append(s.descs, &runtimeapi.MetricDescriptor{
			Name: d.name, Help: d.help, LabelKeys: append(slices.Clip(metricLabels), d.extra...),
		})
	}
	return s
}

// pressure reports whether the metrics include pressure (and the samples
// read it).
func (s *metricSet) pressure() bool { return s != nil && s.psi }

// psiAvailable reports whether the kernel accounts pressure (PSI).
func psiAvailable() bool {
	_, err := os.Stat("/proc/pressure/cpu")
	return err == nil
}

// metricBuilder appends metrics that share a timestamp and base labels.
type metricBuilder struct {
	ts     int64
	labels []string
	out    []*runtimeapi.Metric
}

func (b *metricBuilder) add(d *metricDef, v uint64, extra ...string) {
	labels := b.labels
	if len(extra) > 0 {
		labels = append(slices.Clip(b.labels), extra...)
	}
	b.out = append(b.out, &runtimeapi.Metric{
		Name: d.name, Timestamp: b.ts, MetricType: d.typ, LabelValues: labels, Value: &runtimeapi.UInt64Value{Value: v},
	})
}

func seconds(nanos uint64) uint64 { return nanos / uint64(time.Second) }

// ctrMetricsIn is what a running container's metrics are made of.
type ctrMetricsIn struct {
	labels    []string // the values of metricLabels
	u         usage
	startedAt time.Time
	res       *runtimeapi.LinuxContainerResources // as kubelet last set them
	layer     *runtimeapi.FilesystemUsage         // its writable layer (nil: not measured)
	fs        *layerFilesystem                    // the layer's filesystem (nil: not known)
}

// containerMetrics builds a running container's metrics from its sample.
// Figures a sample lacks (a shim's tasks have no /proc figures; pids and
// pressure depend on the kernel) are left out, not reported as 0.
func (s *metricSet) containerMetrics(in ctrMetricsIn) []*runtimeapi.Metric {
	u := &in.u
	b := metricBuilder{ts: u.at.UnixNano(), labels: in.labels, out: make([]*runtimeapi.Metric, 0, 64)}
	b.add(mLastSeen, uint64(u.at.Unix()))
	if !in.startedAt.IsZero() {
		b.add(mStartTime, uint64(in.startedAt.Unix()))
	}

	b.add(mCPUUsage, seconds(u.cpuNanos), "total")
	b.add(mCPUUser, seconds(u.cpuUserNanos))
	b.add(mCPUSystem, seconds(u.cpuSystemNanos))
	// As cAdvisor: CFS figures only for a container with a CPU quota.
	if in.res.GetCpuQuota() > 0 {
		b.add(mCFSPeriods, u.cfsPeriods)
		b.add(mCFSThrottled, u.cfsThrottledPeriods)
		b.add(mCFSThrottledTotal, seconds(u.cfsThrottledNanos))
	}

	b.add(mMemCache, u.memCache)
	b.add(mMemRSS, u.memRSS)
	b.add(mMemKernel, u.memKernel)
	b.add(mMemMappedFile, u.memMappedFile)
	b.add(mMemSwap, u.swap)
	b.add(mMemFailcnt, u.memFailcnt)
	b.add(mMemUsage, u.memUsage)
	b.add(mMemMaxUsage, u.memMaxUsage)
	b.add(mMemWorkingSet, u.memWorkingSet)
	b.add(mMemActiveFile, u.memActiveFile)
	b.add(mMemInactiveFile, u.memInactiveFile)
	b.add(mMemFailures, u.ownPageFaults, "pgfault", "container")
	b.add(mMemFailures, u.ownMajorPageFaults, "pgmajfault", "container")
	b.add(mMemFailures, u.pageFaults, "pgfault", "hierarchy")
	b.add(mMemFailures, u.majorPageFaults, "pgmajfault", "hierarchy")
	b.add(mOOMEvents, u.oomKills)

	for _, d := range u.io {
		b.add(mFsReadBytes, d.readBytes, d.name)
		b.add(mFsReads, d.reads, d.name)
		b.add(mFsWriteBytes, d.writeBytes, d.name)
		b.add(mFsWrites, d.writes, d.name)
		major, minor := strconv.FormatUint(d.major, 10), strconv.FormatUint(d.minor, 10)
		b.add(mBlkioDevUsage, d.readBytes, d.name, major, minor, "Read")
		b.add(mBlkioDevUsage, d.writeBytes, d.name, major, minor, "Write")
	}

	if u.has&hasProcs != 0 {
		b.add(mProcesses, u.processes)
		b.add(mFDs, u.fds)
		b.add(mSockets, u.sockets)
	}
	if u.has&hasPids != 0 {
		b.add(mThreads, u.pids)
		b.add(mThreadsMax, u.pidsLimit)
	}
	if u.has&hasNofile != 0 {
		b.add(mUlimits, u.nofileSoft, "max_open_files")
	}
	if s.psi && u.has&hasPSI != 0 {
		for i, defs := range psiMetrics {
			b.add(defs[0], seconds(u.psi[i].some*1000))
			b.add(defs[1], seconds(u.psi[i].full*1000))
		}
	}

	spec := specFiguresOf(in.res, s.v2)
	b.add(mSpecCPUPeriod, spec.cpuPeriod)
	if spec.cpuQuota > 0 {
		b.add(mSpecCPUQuota, spec.cpuQuota)
	}
	b.add(mSpecCPUShares, spec.cpuShares)
	b.add(mSpecMemLimit, spec.memLimit)
	b.add(mSpecMemReserve, spec.memReservation)
	b.add(mSpecMemSwapLimit, spec.memSwapLimit)

	if in.layer != nil {
		// The layer's figures are as old as its measurement.
		fb := metricBuilder{ts: in.layer.GetTimestamp(), labels: in.labels, out: b.out}
		dev := ""
		if in.fs != nil {
			dev = in.fs.device
		}
		fb.add(mFsUsage, in.layer.GetUsedBytes().GetValue(), dev)
		if in.fs != nil {
			fb.ts = in.fs.at.UnixNano()
			fb.add(mFsLimit, in.fs.capacity, dev)
			fb.add(mFsInodesTotal, in.fs.inodes, dev)
			fb.add(mFsInodesFree, in.fs.inodesFree, dev)
		}
		b.out = fb.out
	}
	return b.out
}

// specFigures are a container's limits as cAdvisor reports them.
type specFigures struct {
	cpuPeriod, cpuQuota, cpuShares         uint64
	memLimit, memReservation, memSwapLimit uint64
}

// specFiguresOf turns the resources kubelet set (CreateContainer,
// UpdateContainerResources) into cAdvisor's container_spec_* figures, which
// cAdvisor reads from the cgroup: no limit is 0; the period and shares the
// kernel applies when none is set; the swap limit is memory+swap on cgroup
// v1 (memory.memsw.limit_in_bytes) and swap alone on v2
// (memory.swap.max, which runc sets to the difference, or kubelet
// directly as unified memory.swap.max); the reservation is v2's
// memory.min (kubelet's memory QoS), unset on v1. The cgroup itself is
// not read for these: on v2 the shares are a cpu.weight that runc's
// conversion does not map back exactly.
func specFiguresOf(res *runtimeapi.LinuxContainerResources, v2 bool) specFigures {
	f := specFigures{cpuPeriod: defaultCFSPeriod, cpuShares: defaultCPUShares}
	if p := res.GetCpuPeriod(); p > 0 {
		f.cpuPeriod = uint64(p)
	}
	if q := res.GetCpuQuota(); q > 0 {
		f.cpuQuota = uint64(q)
	}
	if sh := res.GetCpuShares(); sh > 0 {
		f.cpuShares = uint64(sh)
	}
	mem, swap := res.GetMemoryLimitInBytes(), res.GetMemorySwapLimitInBytes()
	if mem > 0 {
		f.memLimit = uint64(mem)
	}
	if !v2 {
		if swap > 0 {
			f.memSwapLimit = uint64(swap)
		}
		return f
	}
	if v, ok := res.GetUnified()["memory.swap.max"]; ok {
		f.memSwapLimit = unifiedBytes(v)
	} else if swap > mem && mem > 0 {
		f.memSwapLimit = uint64(swap - mem)
	}
	f.memReservation = unifiedBytes(res.GetUnified()["memory.min"])
	return f
}

// unifiedBytes reads a v2 byte value as kubelet writes it ("max" or
// unparsable: 0).
func unifiedBytes(v string) uint64 {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// podNetMetrics builds a pod's network metrics (every interface of its
// network namespace but lo).
func podNetMetrics(labels []string, n *podNet) []*runtimeapi.Metric {
	b := metricBuilder{ts: n.usage.GetTimestamp(), labels: labels, out: make([]*runtimeapi.Metric, 0, 8*len(n.links))}
	for _, l := range n.links {
		b.add(mNetRxBytes, l.RxBytes, l.Name)
		b.add(mNetRxPackets, l.RxPackets, l.Name)
		b.add(mNetRxDropped, l.RxDropped, l.Name)
		b.add(mNetRxErrors, l.RxErrors, l.Name)
		b.add(mNetTxBytes, l.TxBytes, l.Name)
		b.add(mNetTxPackets, l.TxPackets, l.Name)
		b.add(mNetTxDropped, l.TxDropped, l.Name)
		b.add(mNetTxErrors, l.TxErrors, l.Name)
	}
	return b.out
}

// MetricDescriptors describes the metrics PodMetrics reports (built once).
func (s *Collector) MetricDescriptors() []*runtimeapi.MetricDescriptor { return s.metrics.descs }

// PodMetrics reports the cAdvisor metrics of every ready pod: its network
// counters, and its running containers' figures from their latest samples
// (Collector). Answers are built once per sample and shared.
func (s *Collector) PodMetrics(ctx context.Context) ([]*runtimeapi.PodSandboxMetrics, error) {
	var ready []Pod
	var ctrs [][]Container
	var tasks []Task
	for _, p := range s.src.Pods() {
		if p.Ready {
			cs := s.src.Containers(p.ID)
			ready = append(ready, p)
			ctrs = append(ctrs, cs)
			tasks = append(tasks, podTasks(p, cs)...)
		}
	}
	usages := s.usages(ctx, tasks)
	if s.period <= 0 {
		s.layers.renewFilesystems(0)
	}
	out := make([]*runtimeapi.PodSandboxMetrics, 0, len(ready))
	for i, p := range ready {
		out = append(out, s.podMetricsWith(ctx, p, ctrs[i], usages))
	}
	return out, nil
}

// builtContainerMetrics is a container's metrics and what they were built from.
type builtContainerMetrics struct {
	sampleAt time.Time
	layer    *runtimeapi.FilesystemUsage
	fs       *layerFilesystem
	res      *runtimeapi.LinuxContainerResources // replaced by UpdateContainerResources
	out      *runtimeapi.ContainerMetrics
}

// builtPodMetrics is a pod's metrics and what they were built from.
type builtPodMetrics struct {
	net        *podNet
	containers []*runtimeapi.ContainerMetrics
	out        *runtimeapi.PodSandboxMetrics
}

func (s *Collector) podMetricsWith(ctx context.Context, p Pod, ctrs []Container, usages map[string]taskSample) *runtimeapi.PodSandboxMetrics {
	var net *podNet
	if p.NetNSPath != "" {
		n, err := s.network(p)
		if err != nil {
			klog.V(4).InfoS("Reading a pod's network counters", "pod", p.ID, "err", err)
		}
		net = n
	}
	var cms []*runtimeapi.ContainerMetrics
	for _, c := range ctrs {
		if !c.Running {
			continue
		}
		if ts, ok := usages[c.ID]; ok {
			cms = append(cms, s.containerMetricsOf(ctx, p, c, ts.u))
		}
	}
	s.mu.Lock()
	b, ok := s.builtPodMetrics[p.ID]
	s.mu.Unlock()
	if ok && b.net == net && slices.Equal(b.containers, cms) {
		return b.out
	}
	out := &runtimeapi.PodSandboxMetrics{PodSandboxId: p.ID, ContainerMetrics: cms}
	if net != nil {
		md := p.Config.GetMetadata()
		out.Metrics = podNetMetrics([]string{md.GetName(), md.GetNamespace(), "", p.ID, ""}, net)
	}
	keep(s, s.builtPodMetrics, p.ID, builtPodMetrics{net: net, containers: cms, out: out})
	return out
}

// containerMetricsOf builds (or finds built) the metrics of running
// container c from its sample u.
func (s *Collector) containerMetricsOf(ctx context.Context, p Pod, c Container, u usage) *runtimeapi.ContainerMetrics {
	layer, err := s.writableLayer(ctx, c)
	if err != nil {
		klog.V(4).InfoS("Measuring a writable layer", "container", c.ID, "err", err)
	}
	fs := s.layers.filesystem(c.Snapshotter)
	s.mu.Lock()
	b, ok := s.builtCtrMetrics[c.ID]
	s.mu.Unlock()
	if ok && b.sampleAt.Equal(u.at) && b.layer == layer && b.fs == fs && b.res == c.Resources {
		return b.out
	}
	image := c.Config.GetImage().GetUserSpecifiedImage()
	if image == "" {
		image = c.ImageName
	}
	md := p.Config.GetMetadata()
	out := &runtimeapi.ContainerMetrics{ContainerId: c.ID, Metrics: s.metrics.containerMetrics(ctrMetricsIn{
		labels: []string{md.GetName(), md.GetNamespace(), c.Config.GetMetadata().GetName(), c.ID, image},
		u:      u, startedAt: c.Task.StartedAt, res: c.Resources, layer: layer, fs: fs,
	})}
	keep(s, s.builtCtrMetrics, c.ID, builtContainerMetrics{sampleAt: u.at, layer: layer, fs: fs, res: c.Resources, out: out})
	return out
}
