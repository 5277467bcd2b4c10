package stats

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/internal/cgroups"
)

// fakeSource is the core's store as Source shows it: pods, and their
// containers by pod id, in order.
type fakeSource struct {
	mu    sync.Mutex
	pods  []Pod
	ctrs  map[string][]Container // pod id -> containers
	links map[string][]Link      // netns path -> interfaces
}

func (s *fakeSource) Pods() []Pod {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.pods)
}

func (s *fakeSource) Containers(podID string) []Container {
	s.mu.Lock()
	defer s.mu.Unlock()
	if podID != "" {
		return slices.Clone(s.ctrs[podID])
	}
	var out []Container
	for _, p := range s.pods {
		out = append(out, s.ctrs[p.ID]...)
	}
	return out
}

func (s *fakeSource) Exists(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pods {
		if p.ID == id || slices.ContainsFunc(s.ctrs[p.ID], func(c Container) bool { return c.ID == id }) {
			return true
		}
	}
	return false
}

func (s *fakeSource) Links(netnsPath string) ([]Link, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.links[netnsPath]
	if !ok {
		return nil, os.ErrNotExist
	}
	return l, nil
}

// setContainer changes container id of pod podID.
func (s *fakeSource) setContainer(podID, id string, edit func(*Container)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.ctrs[podID] {
		if s.ctrs[podID][i].ID == id {
			edit(&s.ctrs[podID][i])
		}
	}
}

// removeContainer removes container id of pod podID from the store.
func (s *fakeSource) removeContainer(podID, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ctrs[podID] = slices.DeleteFunc(s.ctrs[podID], func(c Container) bool { return c.ID == id })
}

// statsFixture is a collector over one ready pod without a pause task and
// one running container of a runc-style handler, whose cgroup (v1) lives
// in a fake cgroupfs.
type statsFixture struct {
	src     *fakeSource
	s       *Collector
	cgroups string
	layers  []string // containers whose layer the collector renewed
}

const fixtureCgroup = "/pods/pod1/c1"

func newStatsFixture(t *testing.T, period time.Duration, started time.Time) *statsFixture {
	t.Helper()
	f := &statsFixture{cgroups: t.TempDir()}
	f.src = &fakeSource{
		pods: []Pod{{ID: "pod1", Ready: true}},
		ctrs: map[string][]Container{"pod1": {{ID: "c1", Running: true, Snapshotter: "overlayfs",
			Task: Task{ID: "c1", CgroupsPath: fixtureCgroup, HostCgroups: true, StartedAt: started}}}},
	}
	f.s = New(f.src, nil, Config{Period: period, CgroupRoot: f.cgroups, CgroupDriver: cgroups.DriverCgroupfs})
	t.Cleanup(f.s.Close)
	f.s.cg = &cgroupReader{root: f.cgroups, driver: cgroups.DriverCgroupfs}
	f.s.renewLayer = func(_ context.Context, c Container, _ time.Duration) { f.layers = append(f.layers, c.ID) }
	f.setCPU(t, 0)
	return f
}

// task is the fixture container's task.
func (f *statsFixture) task() Task { return f.src.Containers("pod1")[0].Task }

// usages asks the collector for the fixture container's sample.
func (f *statsFixture) usages(ctx context.Context) map[string]taskSample {
	return f.s.usages(ctx, []Task{f.task()})
}

func (f *statsFixture) setCPU(t *testing.T, nanos uint64) {
	t.Helper()
	writeFiles(t, f.cgroups, map[string]string{
		"cpuacct" + fixtureCgroup + "/cpuacct.usage":        strconv.FormatUint(nanos, 10) + "\n",
		"memory" + fixtureCgroup + "/memory.usage_in_bytes": "4096\n",
		"memory" + fixtureCgroup + "/memory.limit_in_bytes": "8192\n",
		"memory" + fixtureCgroup + "/memory.stat":           "total_rss 4096\n",
	})
}

func TestStatsCollectorServesSamples(t *testing.T) {
	ctx := context.Background()
	f := newStatsFixture(t, 10*time.Second, time.Now().Add(-time.Second))
	f.setCPU(t, 500_000_000) // half a core over the second since the start

	// Not sampled yet: sampled in the call, its rate taken since the start.
	first, ok := f.usages(ctx)["c1"]
	if !ok || first.u.cpuNanos != 500_000_000 {
		t.Fatalf("first sample %+v, %v", first, ok)
	}
	if first.nanoCores < 400_000_000 || first.nanoCores > 500_000_000 {
		t.Errorf("first rate %d nano cores, want about half a core", first.nanoCores)
	}
	// Served from memory until the next pass, however the cgroup changes.
	f.setCPU(t, 900_000_000)
	if again := f.usages(ctx)["c1"]; !reflect.DeepEqual(again, first) {
		t.Errorf("second call sampled again: %+v, want the stored %+v", again, first)
	}
	// A pass samples every running task and renews the layers.
	time.Sleep(10 * time.Millisecond)
	f.s.collect(nil)
	next := f.usages(ctx)["c1"]
	if next.u.cpuNanos != 900_000_000 || !next.u.at.After(first.u.at) || next.nanoCores == 0 {
		t.Errorf("after a pass: %+v", next)
	}
	if len(f.layers) != 1 || f.layers[0] != "c1" {
		t.Errorf("layers renewed: %v", f.layers)
	}
	// A task that stopped drops out at the next pass.
	os.RemoveAll(filepath.Join(f.cgroups, "cpuacct", fixtureCgroup))
	f.s.collect(nil)
	if _, ok := f.usages(ctx)["c1"]; ok {
		t.Error("a task whose cgroup is gone is still reported")
	}
	f.setCPU(t, 1)
	f.usages(ctx)
	f.s.Forget("c1")
	if len(f.s.tasks) != 0 {
		t.Errorf("forget left %v", f.s.tasks)
	}
}

func TestStatsCollectorStaleSampleIsRenewed(t *testing.T) {
	ctx := context.Background()
	f := newStatsFixture(t, time.Second, time.Time{})
	f.setCPU(t, 100)
	old := f.usages(ctx)["c1"]
	// A sample three periods old (a stuck pass) is not served.
	f.s.mu.Lock()
	ts := f.s.tasks["c1"]
	ts.u.at = ts.u.at.Add(-3 * time.Second)
	f.s.tasks["c1"] = ts
	f.s.mu.Unlock()
	f.setCPU(t, 200)
	if got := f.usages(ctx)["c1"]; got.u.cpuNanos != 200 || old.nanoCores != 0 {
		t.Errorf("stale sample served: %+v (first %+v)", got, old)
	}
}

func TestStatsOnDemand(t *testing.T) {
	ctx := context.Background()
	f := newStatsFixture(t, 0, time.Now())
	f.s.Start() // no loop with period 0
	defer f.s.Close()
	for _, cpu := range []uint64{10, 20, 30} {
		f.setCPU(t, cpu)
		if got := f.usages(ctx)["c1"]; got.u.cpuNanos != cpu {
			t.Errorf("on demand: cpu %d, want %d", got.u.cpuNanos, cpu)
		}
	}
	f.s.Started("c1") // nothing to batch
	if len(f.s.pending) != 0 {
		t.Errorf("pending with period 0: %v", f.s.pending)
	}
}

func TestStatsCollectorFirstSampleAfterStart(t *testing.T) {
	f := newStatsFixture(t, time.Hour, time.Now())
	f.s.Start()
	// The loop's first pass, then the started container's batched one.
	f.setCPU(t, 42)
	f.s.Started("c1")
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.s.mu.Lock()
		ts, ok := f.s.tasks["c1"]
		f.s.mu.Unlock()
		if ok && ts.u.cpuNanos == 42 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sample of the started container: %+v %v", ts, ok)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Answers are built once per sample and shared until one changes.
func TestStatsAnswersReusedUntilSampleChanges(t *testing.T) {
	ctx := context.Background()
	f := newStatsFixture(t, 10*time.Second, time.Now().Add(-time.Second))
	f.s.layers.entries["c1"] = &layerUsage{usage: &runtimeapi.FilesystemUsage{Timestamp: 1}, at: time.Now()}
	f.setCPU(t, 1000)

	first, err := f.s.ListContainerStats(ctx, f.src.Containers(""))
	if err != nil || len(first) != 1 || first[0].GetCpu().GetUsageCoreNanoSeconds().GetValue() != 1000 {
		t.Fatalf("ListContainerStats = %v, %v", first, err)
	}
	pods1, err := f.s.ListPodStats(ctx, f.src.Pods())
	if err != nil || len(pods1) != 1 || len(pods1[0].GetLinux().GetContainers()) != 1 {
		t.Fatalf("ListPodStats = %v, %v", pods1, err)
	}
	again, _ := f.s.ListContainerStats(ctx, f.src.Containers(""))
	pods2, _ := f.s.ListPodStats(ctx, f.src.Pods())
	if again[0] != first[0] || pods2[0] != pods1[0] || pods1[0].Linux.Containers[0] != first[0] {
		t.Error("answers were rebuilt without a new sample")
	}
	time.Sleep(5 * time.Millisecond)
	f.setCPU(t, 2000)
	f.s.collect(nil)
	next, _ := f.s.ListContainerStats(ctx, f.src.Containers(""))
	pods3, _ := f.s.ListPodStats(ctx, f.src.Pods())
	if next[0] == first[0] || next[0].GetCpu().GetUsageCoreNanoSeconds().GetValue() != 2000 {
		t.Errorf("after a new sample: %v", next[0])
	}
	if pods3[0] == pods1[0] || pods3[0].GetLinux().GetCpu().GetUsageCoreNanoSeconds().GetValue() != 2000 {
		t.Errorf("pod after a new sample: %v", pods3[0].GetLinux().GetCpu())
	}
	f.src.removeContainer("pod1", "c1")
	f.s.Forget("c1")
	if len(f.s.builtCtrs) != 0 {
		t.Errorf("a removed container's answer is kept: %v", f.s.builtCtrs)
	}
}

// Two samples close together (a stats call sampling a task just before the
// collector's pass) do not make a rate out of the few milliseconds between
// them: the later one keeps the earlier one's base.
func TestStatsRateNotOverASliver(t *testing.T) {
	ctx := context.Background()
	f := newStatsFixture(t, 10*time.Second, time.Now().Add(-2*time.Second))
	f.setCPU(t, 1_000_000_000) // half a core since the start
	task := f.task()
	first := f.s.sample(ctx, []Task{task})["c1"]
	second := f.s.sample(ctx, []Task{task})["c1"] // no CPU used in between
	for i, ts := range []taskSample{first, second} {
		if ts.nanoCores < 400_000_000 || ts.nanoCores > 500_000_000 {
			t.Errorf("sample %d: %d nanocores, want about half a core", i+1, ts.nanoCores)
		}
	}

	// A window long enough is a window of its own.
	f.s.mu.Lock()
	ts := f.s.tasks["c1"]
	ts.u.at = ts.u.at.Add(-minRateWindow)
	f.s.tasks["c1"] = ts
	f.s.mu.Unlock()
	if third := f.s.sample(ctx, []Task{task})["c1"]; third.nanoCores != 0 {
		t.Errorf("idle for %s: %d nanocores, want 0", minRateWindow, third.nanoCores)
	}
}

// A pod's interface counters come from Source.Links: eth0 is the default
// interface, the loopback is left out, and the sample is kept for the
// period like the tasks'.
func TestPodNetwork(t *testing.T) {
	ctx := context.Background()
	f := newStatsFixture(t, 10*time.Second, time.Now().Add(-time.Second))
	f.s.layers.entries["c1"] = &layerUsage{at: time.Now()}
	f.src.pods[0].NetNSPath = "/run/netns/pod1"
	f.src.pods[0].Config = &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "web-0", Namespace: "shop"}}
	f.src.links = map[string][]Link{"/run/netns/pod1": {
		{Name: "lo", RxBytes: 99},
		{Name: "net1", RxBytes: 10, TxErrors: 1},
		{Name: "eth0", RxBytes: 1, RxErrors: 2, TxBytes: 3, TxErrors: 4, RxPackets: 5},
	}}
	pods, err := f.s.ListPodStats(ctx, f.src.Pods())
	if err != nil || len(pods) != 1 {
		t.Fatalf("ListPodStats = %v, %v", pods, err)
	}
	net := pods[0].GetLinux().GetNetwork()
	if d := net.GetDefaultInterface(); d.GetName() != "eth0" || d.GetRxBytes().GetValue() != 1 || d.GetRxErrors().GetValue() != 2 ||
		d.GetTxBytes().GetValue() != 3 || d.GetTxErrors().GetValue() != 4 {
		t.Errorf("default interface %v", d)
	}
	if is := net.GetInterfaces(); len(is) != 1 || is[0].GetName() != "net1" || is[0].GetTxErrors().GetValue() != 1 {
		t.Errorf("other interfaces %v", is)
	}
	metrics, err := f.s.PodMetrics(ctx)
	if err != nil || len(metrics) != 1 {
		t.Fatalf("PodMetrics = %v, %v", metrics, err)
	}
	values := checkMetrics(t, f.s.metrics, []string{"web-0", "shop", "", "pod1", ""}, metrics[0].Metrics)
	if len(values) != 16 || values["container_network_receive_packets_total{eth0}"] != 5 || values["container_network_receive_bytes_total{net1}"] != 10 {
		t.Errorf("network metrics %v", values)
	}

	// Kept for the period: the namespace is not entered again.
	f.src.links = nil
	again, err := f.s.ListPodStats(ctx, f.src.Pods())
	if err != nil || again[0].GetLinux().GetNetwork() != net {
		t.Errorf("network read again: %v, %v", again, err)
	}
	// Sampled in the call without a period: a failure is the call's.
	f.s.period = 0
	if _, err := f.s.ListPodStats(ctx, f.src.Pods()); err == nil {
		t.Error("a namespace that cannot be read: no error")
	}
}
