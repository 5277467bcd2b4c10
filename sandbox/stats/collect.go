package sandbox

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// DefaultStatsCollectionPeriod is how often the stats collector samples
// every running task: kubelet's own housekeeping (and cAdvisor's) runs
// every 10 s, so fresher samples would not be seen.
const DefaultStatsCollectionPeriod = 10 * time.Second

// startedSampleDelay batches the first samples of tasks that start close
// together (a node starting many pods) into one pass.
const startedSampleDelay = 100 * time.Millisecond

// statsCollector keeps the latest resource-use sample of every running
// task and the network counters of every ready pod, so the stats calls
// kubelet polls (ListContainerStats, ListPodSandboxStats,
// ListPodSandboxMetrics) answer from memory instead of reading a cgroup
// per task and entering a network namespace per pod while the caller
// waits. Samples are taken every period, and a task's first one shortly
// after it starts; a sample is at most one period old (CRI-O's
// stats_collection_period, cAdvisor's housekeeping). With period 0 every
// call samples what it reports.
type statsCollector struct {
	r      *Runtime
	cg     *cgroupReader
	period time.Duration
	// renewLayer measures a container's writable layer if its figure is
	// older than the age given (Runtime.renewLayer).
	renewLayer func(ctx context.Context, c *Container, maxAge time.Duration)

	mu      sync.Mutex
	tasks   map[string]taskSample // container or pause task id
	nets    map[string]*podNet    // pod id
	pending map[string]struct{}   // started, not sampled yet

	// built holds answers already built from the current samples, shared
	// (never changed) by every call until a sample or layer figure
	// changes: kubelet polls more often than samples change, and each
	// answer is dozens of small protobuf objects.
	builtCtrs map[string]builtContainerStats
	builtPods map[string]builtPodStats
	// The same for ListPodSandboxMetrics (stats_metrics.go).
	builtCtrMetrics map[string]builtContainerMetrics
	builtPodMetrics map[string]builtPodMetrics

	kick     chan struct{}
	stop     chan struct{}
	done     chan struct{} // closed when loop returns
	stopOnce sync.Once
	looping  bool // start ran the loop (set before any close)
}

// taskSample is a task's usage and its CPU rate over the sample window.
type taskSample struct {
	u         usage
	nanoCores uint64
	// base is the usage the rate was taken against.
	base usage
}

// minRateWindow is the shortest window a CPU rate is taken over. Two
// samples can come close together (a stats call samples a task just
// before the collector's first pass does); a rate over a few milliseconds
// says whether the task happened to be on a CPU then, so such a sample
// keeps its predecessor's base instead.
const minRateWindow = time.Second

// statTask says how to sample one task.
type statTask struct {
	id          string
	cgroupsPath string
	// direct: the task's processes are in cgroupsPath on this host (a
	// runc-style handler), so the cgroup is read without asking the shim.
	direct bool
	// startedAt is the start of the first sample's CPU window.
	startedAt time.Time
	// pid is the task's init process (its limits are reported).
	pid uint32
}

func newStatsCollector(r *Runtime, period time.Duration) *statsCollector {
	return &statsCollector{
		r: r,
		cg: &cgroupReader{root: cgroupRoot, v2: r.cgroupV2, swap: r.swapAccounting, driver: r.cgroupDriver,
			psi: r.metrics.pressure(), proc: "/proc", devices: newBlockDevices("/sys")},
		period: period, renewLayer: r.renewLayer,
		tasks: map[string]taskSample{}, nets: map[string]*podNet{}, pending: map[string]struct{}{},
		builtCtrs: map[string]builtContainerStats{}, builtPods: map[string]builtPodStats{},
		builtCtrMetrics: map[string]builtContainerMetrics{}, builtPodMetrics: map[string]builtPodMetrics{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
}

// start runs the collection loop until close; with period 0 there is none.
func (s *statsCollector) start() {
	if s.period <= 0 {
		return
	}
	s.looping = true
	go s.loop()
}

// close stops the loop and waits for it.
func (s *statsCollector) close() {
	s.stopOnce.Do(func() { close(s.stop) })
	if s.looping {
		<-s.done
	}
}

func (s *statsCollector) loop() {
	defer close(s.done)
	t := time.NewTicker(s.period)
	defer t.Stop()
	s.collect(nil)
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.collect(nil)
		case <-s.kick:
			select {
			case <-s.stop:
				return
			case <-time.After(startedSampleDelay):
			}
			s.mu.Lock()
			only := s.pending
			s.pending = map[string]struct{}{}
			s.mu.Unlock()
			s.collect(only)
		}
	}
}

// started asks for a first sample of a task (or a pod's network) that has
// just started, so the next stats call finds it.
func (s *statsCollector) started(id string) {
	if s.period <= 0 {
		return
	}
	s.mu.Lock()
	s.pending[id] = struct{}{}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *statsCollector) forget(id string) {
	s.mu.Lock()
	delete(s.tasks, id)
	delete(s.nets, id)
	delete(s.pending, id)
	delete(s.builtCtrs, id)
	delete(s.builtPods, id)
	delete(s.builtCtrMetrics, id)
	delete(s.builtPodMetrics, id)
	s.mu.Unlock()
}

// builtContainerStats is a container's answer and what it was built from.
type builtContainerStats struct {
	sampleAt time.Time // zero: built without usage (not running)
	layer    *runtimeapi.FilesystemUsage
	out      *runtimeapi.ContainerStats
}

// builtPodStats is a ready pod's answer and what it was built from.
type builtPodStats struct {
	pauseAt    time.Time
	net        *runtimeapi.NetworkUsage
	containers []*runtimeapi.ContainerStats
	out        *runtimeapi.PodSandboxStats
}

func (s *statsCollector) builtContainer(id string, sampleAt time.Time, layer *runtimeapi.FilesystemUsage) *runtimeapi.ContainerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.builtCtrs[id]; ok && b.sampleAt.Equal(sampleAt) && b.layer == layer {
		return b.out
	}
	return nil
}

// keepContainer remembers an answer unless the container went away
// meanwhile (forget ran).
func (s *statsCollector) keepContainer(id string, b builtContainerStats) {
	if s.r.store.containerExact(id) == nil {
		return
	}
	s.mu.Lock()
	s.builtCtrs[id] = b
	s.mu.Unlock()
}

func (s *statsCollector) builtPod(id string, pauseAt time.Time, net *runtimeapi.NetworkUsage, containers []*runtimeapi.ContainerStats) *runtimeapi.PodSandboxStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.builtPods[id]
	if !ok || !b.pauseAt.Equal(pauseAt) || b.net != net || !slices.Equal(b.containers, containers) {
		return nil
	}
	return b.out
}

func (s *statsCollector) keepPod(id string, b builtPodStats) {
	if s.r.store.podExact(id) == nil {
		return
	}
	s.mu.Lock()
	s.builtPods[id] = b
	s.mu.Unlock()
}

// collect samples every running task and ready pod, or only those in only
// (ids of tasks or pods) when it is not nil.
func (s *statsCollector) collect(only map[string]struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), max(s.period, 30*time.Second))
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	want := func(id string) bool {
		if only == nil {
			return true
		}
		_, ok := only[id]
		return ok
	}
	var tasks []statTask
	var pods []*Pod
	var ctrs []*Container
	for _, p := range s.r.store.listPods() {
		if s.r.store.podStatusOf(p).State != runtimeapi.PodSandboxState_SANDBOX_READY {
			continue
		}
		if want(p.ID) {
			pods = append(pods, p)
			if !p.Infraless {
				if t, ok := s.r.statTaskOf(p.ID); ok {
					tasks = append(tasks, t)
				}
			}
		}
	}
	for _, c := range s.r.store.listContainers() {
		if !want(c.ID) {
			continue
		}
		ctrs = append(ctrs, c)
		if s.r.store.containerStatusOf(c).State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			continue
		}
		if t, ok := s.r.statTaskOf(c.ID); ok {
			tasks = append(tasks, t)
		}
	}
	samples := s.sample(ctx, tasks)
	nets := make(map[string]*podNet, len(pods))
	for _, p := range pods {
		if p.NetNSPath == "" {
			continue
		}
		n, err := netnsStats(p.NetNSPath)
		if err != nil {
			klog.V(4).InfoS("Sampling a pod's network counters", "pod", p.ID, "err", err)
			continue
		}
		nets[p.ID] = n
	}
	s.mu.Lock()
	if only == nil {
		// Whatever was not seen running is not reported with usage any more.
		for id := range s.tasks {
			if _, ok := samples[id]; !ok {
				delete(s.tasks, id)
			}
		}
		for id := range s.nets {
			if _, ok := nets[id]; !ok {
				delete(s.nets, id)
			}
		}
		// Answers of containers and pods removed between a keep and
		// their forget.
		for id := range s.builtCtrs {
			if s.r.store.containerExact(id) == nil {
				delete(s.builtCtrs, id)
			}
		}
		for id := range s.builtPods {
			if s.r.store.podExact(id) == nil {
				delete(s.builtPods, id)
			}
		}
		for id := range s.builtCtrMetrics {
			if s.r.store.containerExact(id) == nil {
				delete(s.builtCtrMetrics, id)
			}
		}
		for id := range s.builtPodMetrics {
			if s.r.store.podExact(id) == nil {
				delete(s.builtPodMetrics, id)
			}
		}
	}
	for id, n := range nets {
		s.nets[id] = n
	}
	s.mu.Unlock()
	// Writable layers are measured here too, one at a time, so no stats
	// call waits for a directory walk.
	for _, c := range ctrs {
		if ctx.Err() != nil {
			return
		}
		s.renewLayer(ctx, c, s.period/2)
	}
	// And the filesystems the layers are on (one statfs each).
	s.r.layers.renewFilesystems(s.period / 2)
}

// sample reads the usage of tasks and records it; the result holds the
// tasks that are running.
func (s *statsCollector) sample(ctx context.Context, tasks []statTask) map[string]taskSample {
	out := make(map[string]taskSample, len(tasks))
	var viaShim []string
	byID := make(map[string]statTask, len(tasks))
	for _, t := range tasks {
		byID[t.id] = t
		if !t.direct {
			viaShim = append(viaShim, t.id)
			continue
		}
		u, err := s.cg.read(t.cgroupsPath, t.pid)
		if err != nil {
			if !errdefs.IsNotFound(err) {
				klog.V(4).InfoS("Reading a task's cgroup", "task", t.id, "err", err)
			}
			continue
		}
		out[t.id] = s.record(t, u)
	}
	if len(viaShim) > 0 {
		us, err := s.r.tasksUsage(ctx, viaShim)
		if err != nil {
			klog.V(4).InfoS("Asking shims for task metrics", "tasks", len(viaShim), "err", err)
		}
		for id, u := range us {
			out[id] = s.record(byID[id], u)
		}
	}
	return out
}

// record stores u as t's latest sample, with the CPU rate since the
// previous one (or since the task started).
func (s *statsCollector) record(t statTask, u usage) taskSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, ok := s.tasks[t.id]
	from := prev.u
	switch {
	case !ok:
		from = usage{at: t.startedAt}
	case u.at.Sub(prev.u.at) < minRateWindow && !prev.base.at.IsZero():
		from = prev.base
	}
	ts := taskSample{u: u, base: from}
	if !from.at.IsZero() && u.at.After(from.at) && u.cpuNanos >= from.cpuNanos {
		ts.nanoCores = uint64(float64(u.cpuNanos-from.cpuNanos) / float64(u.at.Sub(from.at).Nanoseconds()) * 1e9)
	}
	if ok && !u.at.After(prev.u.at) {
		return prev // a concurrent sampler was later
	}
	s.tasks[t.id] = ts
	return ts
}

// usages returns the latest samples of the running tasks ids; ids without
// a usable one are sampled now. A task that is not running is missing.
func (s *statsCollector) usages(ctx context.Context, ids []string) map[string]taskSample {
	out := make(map[string]taskSample, len(ids))
	var missing []statTask
	now := time.Now()
	s.mu.Lock()
	for _, id := range ids {
		if ts, ok := s.tasks[id]; ok && s.period > 0 && now.Sub(ts.u.at) < 3*s.period {
			out[id] = ts
			continue
		}
		if t, ok := s.r.statTaskOf(id); ok {
			missing = append(missing, t)
		}
	}
	s.mu.Unlock()
	for id, ts := range s.sample(ctx, missing) {
		out[id] = ts
	}
	return out
}

// network returns a ready pod's interface counters.
func (s *statsCollector) network(p *Pod) (*podNet, error) {
	if s.period > 0 {
		s.mu.Lock()
		n, ok := s.nets[p.ID]
		s.mu.Unlock()
		if ok && time.Since(time.Unix(0, n.usage.Timestamp)) < 3*s.period {
			return n, nil
		}
	}
	n, err := netnsStats(p.NetNSPath)
	if err != nil {
		return nil, err
	}
	if s.period > 0 {
		s.mu.Lock()
		s.nets[p.ID] = n
		s.mu.Unlock()
	}
	return n, nil
}

// statTaskOf describes the task of container or pod id; false when there
// is none.
func (r *Runtime) statTaskOf(id string) (statTask, bool) {
	if c, err := r.store.container(id); err == nil {
		st := r.store.containerStatusOf(c)
		return statTask{id: id, cgroupsPath: c.CgroupsPath, direct: r.hostCgroups(c.PodID), startedAt: st.StartedAt, pid: st.PID}, true
	}
	if p := r.store.podExact(id); p != nil && !p.Infraless {
		return statTask{id: id, cgroupsPath: p.CgroupsPath, direct: r.hostCgroups(p.ID), startedAt: p.CreatedAt, pid: r.store.podStatusOf(p).PID}, true
	}
	return statTask{}, false
}

// hostCgroups reports whether the tasks of a pod live in their OCI
// cgroupsPath on this host: runc and crun put them there; gVisor and VM
// handlers keep the real figures in their sandbox, which the shim reports.
func (r *Runtime) hostCgroups(podID string) bool {
	p := r.store.podExact(podID)
	if p == nil {
		return false
	}
	h, err := r.handlerOf(p.RuntimeHandler)
	return err == nil && h.runcStyle()
}
