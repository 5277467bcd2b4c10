package stats

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// DefaultPeriod is how often the collector samples every running task:
// kubelet's own housekeeping (and cAdvisor's) runs every 10 s, so fresher
// samples would not be seen.
const DefaultPeriod = 10 * time.Second

// startedSampleDelay batches the first samples of tasks that start close
// together (a node starting many pods) into one pass.
const startedSampleDelay = 100 * time.Millisecond

// Collector keeps the latest resource-use sample of every running
// task and the network counters of every ready pod, so the stats calls
// kubelet polls (ListContainerStats, ListPodSandboxStats,
// ListPodSandboxMetrics) answer from memory instead of reading a cgroup
// per task and entering a network namespace per pod while the caller
// waits. Samples are taken every period, and a task's first one shortly
// after it starts; a sample is at most one period old (CRI-O's
// stats_collection_period, cAdvisor's housekeeping). With period 0 every
// call samples what it reports.
type Collector struct {
	src     Source
	cd      Containerd
	cg      *cgroupReader
	metrics *metricSet // the cAdvisor metrics of PodMetrics on this host
	layers  *layerUsages
	period  time.Duration
	// renewLayer measures a container's writable layer if its figure is
	// older than the age given (renewLayerOf; tests replace it).
	renewLayer func(ctx context.Context, c Container, maxAge time.Duration)

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
	// The same for ListPodSandboxMetrics (metrics.go).
	builtCtrMetrics map[string]builtContainerMetrics
	builtPodMetrics map[string]builtPodMetrics

	kick     chan struct{}
	stop     chan struct{}
	done     chan struct{} // closed when loop returns
	stopOnce sync.Once
	looping  bool // Start ran the loop (set before any Close)
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

// Config is the host's cgroup facts and the collection period.
type Config struct {
	// Period is how often every running task is sampled (DefaultPeriod);
	// 0 samples on every call instead.
	Period time.Duration
	// CgroupRoot is where the cgroup hierarchies are mounted.
	CgroupRoot string
	// CgroupV2: the unified hierarchy; SwapAccounting: v1 memsw or v2
	// memory.swap.current exist.
	CgroupV2, SwapAccounting bool
	// CgroupDriver is "cgroupfs" or "systemd": how a Task's CgroupsPath
	// names its cgroup.
	CgroupDriver string
}

// New returns a collector over the pods and containers of src; Start
// runs its loop. The metrics' descriptors are built here, from cfg and
// whether the kernel accounts pressure.
func New(src Source, cd Containerd, cfg Config) *Collector {
	metrics := newMetricSet(cfg.CgroupV2, psiAvailable())
	s := &Collector{
		src: src, cd: cd,
		cg: &cgroupReader{root: cfg.CgroupRoot, v2: cfg.CgroupV2, swap: cfg.SwapAccounting, driver: cfg.CgroupDriver,
			psi: metrics.pressure(), proc: "/proc", devices: newBlockDevices("/sys")},
		metrics: metrics, layers: newLayerUsages(),
		period: cfg.Period,
		tasks:  map[string]taskSample{}, nets: map[string]*podNet{}, pending: map[string]struct{}{},
		builtCtrs: map[string]builtContainerStats{}, builtPods: map[string]builtPodStats{},
		builtCtrMetrics: map[string]builtContainerMetrics{}, builtPodMetrics: map[string]builtPodMetrics{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	s.renewLayer = s.renewLayerOf
	return s
}

// Start runs the collection loop until Close; with period 0 there is none.
func (s *Collector) Start() {
	if s.period <= 0 {
		return
	}
	s.looping = true
	go s.loop()
}

// Close stops the loop and waits for it, then stops the writable layers'
// measurements under way and waits for them.
func (s *Collector) Close() {
	s.stopOnce.Do(func() { close(s.stop) })
	if s.looping {
		<-s.done
	}
	s.layers.close()
}

func (s *Collector) loop() {
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

// Started asks for a first sample of a task (or a pod's network) that has
// just started, so the next stats call finds it.
func (s *Collector) Started(id string) {
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

// Forget drops what is kept of a removed container or pod: its samples,
// answers and writable layer figure.
func (s *Collector) Forget(id string) {
	s.mu.Lock()
	delete(s.tasks, id)
	delete(s.nets, id)
	delete(s.pending, id)
	delete(s.builtCtrs, id)
	delete(s.builtPods, id)
	delete(s.builtCtrMetrics, id)
	delete(s.builtPodMetrics, id)
	s.mu.Unlock()
	s.layers.forget(id)
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

func (s *Collector) builtContainer(id string, sampleAt time.Time, layer *runtimeapi.FilesystemUsage) *runtimeapi.ContainerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.builtCtrs[id]; ok && b.sampleAt.Equal(sampleAt) && b.layer == layer {
		return b.out
	}
	return nil
}

// keep remembers answer b of pod or container id in m (one of the built
// maps) unless the pod or container went away meanwhile (Forget ran).
func keep[V any](s *Collector, m map[string]V, id string, b V) {
	if !s.src.Exists(id) {
		return
	}
	s.mu.Lock()
	m[id] = b
	s.mu.Unlock()
}

func (s *Collector) builtPod(id string, pauseAt time.Time, net *runtimeapi.NetworkUsage, containers []*runtimeapi.ContainerStats) *runtimeapi.PodSandboxStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.builtPods[id]
	if !ok || !b.pauseAt.Equal(pauseAt) || b.net != net || !slices.Equal(b.containers, containers) {
		return nil
	}
	return b.out
}

// collect samples every running task and ready pod, or only those in only
// (ids of tasks or pods) when it is not nil.
func (s *Collector) collect(only map[string]struct{}) {
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
	var tasks []Task
	var pods []Pod
	var ctrs []Container
	for _, p := range s.src.Pods() {
		if !p.Ready {
			continue
		}
		if want(p.ID) {
			pods = append(pods, p)
			if p.Pause.ID != "" {
				tasks = append(tasks, p.Pause)
			}
		}
	}
	for _, c := range s.src.Containers("") {
		if !want(c.ID) {
			continue
		}
		ctrs = append(ctrs, c)
		if !c.Running {
			continue
		}
		tasks = append(tasks, c.Task)
	}
	samples := s.sample(ctx, tasks)
	nets := make(map[string]*podNet, len(pods))
	for _, p := range pods {
		if p.NetNSPath == "" {
			continue
		}
		n, err := s.netnsStats(p.NetNSPath)
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
		dropGone(s.builtCtrs, s.src.Exists)
		dropGone(s.builtPods, s.src.Exists)
		dropGone(s.builtCtrMetrics, s.src.Exists)
		dropGone(s.builtPodMetrics, s.src.Exists)
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
	s.layers.renewFilesystems(s.period / 2)
}

// dropGone deletes the entries of m, by pod or container id, that exists
// says are gone.
func dropGone[V any](m map[string]V, exists func(id string) bool) {
	for id := range m {
		if !exists(id) {
			delete(m, id)
		}
	}
}

// sample reads the usage of tasks and records it; the result holds the
// tasks that are running.
func (s *Collector) sample(ctx context.Context, tasks []Task) map[string]taskSample {
	out := make(map[string]taskSample, len(tasks))
	var viaShim []string
	byID := make(map[string]Task, len(tasks))
	for _, t := range tasks {
		byID[t.ID] = t
		if !t.HostCgroups {
			viaShim = append(viaShim, t.ID)
			continue
		}
		u, err := s.cg.read(t.CgroupsPath, t.PID)
		if err != nil {
			if !errdefs.IsNotFound(err) {
				klog.V(4).InfoS("Reading a task's cgroup", "task", t.ID, "err", err)
			}
			continue
		}
		out[t.ID] = s.record(t, u)
	}
	if len(viaShim) > 0 {
		us, err := s.tasksUsage(ctx, viaShim)
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
func (s *Collector) record(t Task, u usage) taskSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, ok := s.tasks[t.ID]
	from := prev.u
	switch {
	case !ok:
		from = usage{at: t.StartedAt}
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
	s.tasks[t.ID] = ts
	return ts
}

// usages returns the latest samples of the running tasks, by id; tasks
// without a usable one are sampled now. A task that is not running is
// missing.
func (s *Collector) usages(ctx context.Context, tasks []Task) map[string]taskSample {
	out := make(map[string]taskSample, len(tasks))
	var missing []Task
	now := time.Now()
	s.mu.Lock()
	for _, t := range tasks {
		if ts, ok := s.tasks[t.ID]; ok && s.period > 0 && now.Sub(ts.u.at) < 3*s.period {
			out[t.ID] = ts
			continue
		}
		missing = append(missing, t)
	}
	s.mu.Unlock()
	for id, ts := range s.sample(ctx, missing) {
		out[id] = ts
	}
	return out
}

// network returns a ready pod's interface counters.
func (s *Collector) network(p Pod) (*podNet, error) {
	if s.period > 0 {
		s.mu.Lock()
		n, ok := s.nets[p.ID]
		s.mu.Unlock()
		if ok && time.Since(time.Unix(0, n.usage.Timestamp)) < 3*s.period {
			return n, nil
		}
	}
	n, err := s.netnsStats(p.NetNSPath)
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
