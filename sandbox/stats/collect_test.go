package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// statsFixture is a Runtime with one ready infra-less runc pod and one
// running container whose cgroup (v1) lives in a fake cgroupfs.
type statsFixture struct {
	r       *Runtime
	s       *statsCollector
	cgroups string
	layers  []string // containers whose layer the collector renewed
}

const fixtureCgroup = "/pods/pod1/c1"

func newStatsFixture(t *testing.T, period time.Duration, started time.Time) *statsFixture {
	t.Helper()
	f := &statsFixture{cgroups: t.TempDir()}
	f.r = &Runtime{store: newStore(t.TempDir()), defaultHandler: "runc",
		handlers: map[string]*handler{"runc": {name: "runc", runtimeType: RuntimeTypeRunc, binary: "runc"}},
		layers:   newLayerUsages(), metrics: newMetricSet(false, false)}
	t.Cleanup(f.r.layers.close)
	p := newPod(podMeta{ID: "pod1", Infraless: true, RuntimeHandler: "runc"})
	p.status = podStatus{State: runtimeapi.PodSandboxState_SANDBOX_READY}
	addShownPod(f.r.store, p)
	c := newContainer(containerMeta{ID: "c1", PodID: "pod1", CgroupsPath: fixtureCgroup})
	c.status = containerStatus{State: runtimeapi.ContainerState_CONTAINER_RUNNING, StartedAt: started}
	f.r.store.addContainer(c)
	f.s = newStatsCollector(f.r, period)
	f.s.cg = &cgroupReader{root: f.cgroups, driver: CgroupDriverCgroupfs}
	f.s.renewLayer = func(_ context.Context, c *Container, _ time.Duration) { f.layers = append(f.layers, c.ID) }
	f.r.stats = f.s
	f.setCPU(t, 0)
	return f
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
	first, ok := f.s.usages(ctx, []string{"c1"})["c1"]
	if !ok || first.u.cpuNanos != 500_000_000 {
		t.Fatalf("first sample %+v, %v", first, ok)
	}
	if first.nanoCores < 400_000_000 || first.nanoCores > 500_000_000 {
		t.Errorf("first rate %d nano cores, want about half a core", first.nanoCores)
	}
	// Served from memory until the next pass, however the cgroup changes.
	f.setCPU(t, 900_000_000)
	if again := f.s.usages(ctx, []string{"c1"})["c1"]; !reflect.DeepEqual(again, first) {
		t.Errorf("second call sampled again: %+v, want the stored %+v", again, first)
	}
	// A pass samples every running task and renews the layers.
	time.Sleep(10 * time.Millisecond)
	f.s.collect(nil)
	next := f.s.usages(ctx, []string{"c1"})["c1"]
	if next.u.cpuNanos != 900_000_000 || !next.u.at.After(first.u.at) || next.nanoCores == 0 {
		t.Errorf("after a pass: %+v", next)
	}
	if len(f.layers) != 1 || f.layers[0] != "c1" {
		t.Errorf("layers renewed: %v", f.layers)
	}
	// A task that stopped drops out at the next pass.
	os.RemoveAll(filepath.Join(f.cgroups, "cpuacct", fixtureCgroup))
	f.s.collect(nil)
	if _, ok := f.s.usages(ctx, []string{"c1"})["c1"]; ok {
		t.Error("a task whose cgroup is gone is still reported")
	}
	f.setCPU(t, 1)
	f.s.usages(ctx, []string{"c1"})
	f.s.forget("c1")
	if len(f.s.tasks) != 0 {
		t.Errorf("forget left %v", f.s.tasks)
	}
}

func TestStatsCollectorStaleSampleIsRenewed(t *testing.T) {
	ctx := context.Background()
	f := newStatsFixture(t, time.Second, time.Time{})
	f.setCPU(t, 100)
	old := f.s.usages(ctx, []string{"c1"})["c1"]
	// A sample three periods old (a stuck pass) is not served.
	f.s.mu.Lock()
	ts := f.s.tasks["c1"]
	ts.u.at = ts.u.at.Add(-3 * time.Second)
	f.s.tasks["c1"] = ts
	f.s.mu.Unlock()
	f.setCPU(t, 200)
	if got := f.s.usages(ctx, []string{"c1"})["c1"]; got.u.cpuNanos != 200 || old.nanoCores != 0 {
		t.Errorf("stale sample served: %+v (first %+v)", got, old)
	}
}

func TestStatsOnDemand(t *testing.T) {
	ctx := context.Background()
	f := newStatsFixture(t, 0, time.Now())
	f.s.start() // no loop with period 0
	defer f.s.close()
	for _, cpu := range []uint64{10, 20, 30} {
		f.setCPU(t, cpu)
		if got := f.s.usages(ctx, []string{"c1"})["c1"]; got.u.cpuNanos != cpu {
			t.Errorf("on demand: cpu %d, want %d", got.u.cpuNanos, cpu)
		}
	}
	f.s.started("c1") // nothing to batch
	if len(f.s.pending) != 0 {
		t.Errorf("pending with period 0: %v", f.s.pending)
	}
}

func TestStatsCollectorFirstSampleAfterStart(t *testing.T) {
	f := newStatsFixture(t, time.Hour, time.Now())
	f.s.start()
	t.Cleanup(f.s.close)
	// The loop's first pass, then the started container's batched one.
	f.setCPU(t, 42)
	f.s.started("c1")
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
	f.r.layers.entries["c1"] = &layerUsage{usage: &runtimeapi.FilesystemUsage{Timestamp: 1}, at: time.Now()}
	f.setCPU(t, 1000)

	first, err := f.r.ListContainerStats(ctx, ContainerFilter{})
	if err != nil || len(first) != 1 || first[0].GetCpu().GetUsageCoreNanoSeconds().GetValue() != 1000 {
		t.Fatalf("ListContainerStats = %v, %v", first, err)
	}
	pods1, err := f.r.ListPodStats(ctx, PodFilter{})
	if err != nil || len(pods1) != 1 || len(pods1[0].GetLinux().GetContainers()) != 1 {
		t.Fatalf("ListPodStats = %v, %v", pods1, err)
	}
	again, _ := f.r.ListContainerStats(ctx, ContainerFilter{})
	pods2, _ := f.r.ListPodStats(ctx, PodFilter{})
	if again[0] != first[0] || pods2[0] != pods1[0] || pods1[0].Linux.Containers[0] != first[0] {
		t.Error("answers were rebuilt without a new sample")
	}
	time.Sleep(5 * time.Millisecond)
	f.setCPU(t, 2000)
	f.s.collect(nil)
	next, _ := f.r.ListContainerStats(ctx, ContainerFilter{})
	pods3, _ := f.r.ListPodStats(ctx, PodFilter{})
	if next[0] == first[0] || next[0].GetCpu().GetUsageCoreNanoSeconds().GetValue() != 2000 {
		t.Errorf("after a new sample: %v", next[0])
	}
	if pods3[0] == pods1[0] || pods3[0].GetLinux().GetCpu().GetUsageCoreNanoSeconds().GetValue() != 2000 {
		t.Errorf("pod after a new sample: %v", pods3[0].GetLinux().GetCpu())
	}
	f.r.store.deleteContainer("c1")
	f.s.forget("c1")
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
	task, ok := f.r.statTaskOf("c1")
	if !ok {
		t.Fatal("no task")
	}
	first := f.s.sample(ctx, []statTask{task})["c1"]
	second := f.s.sample(ctx, []statTask{task})["c1"] // no CPU used in between
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
	if third := f.s.sample(ctx, []statTask{task})["c1"]; third.nanoCores != 0 {
		t.Errorf("idle for %s: %d nanocores, want 0", minRateWindow, third.nanoCores)
	}
}
