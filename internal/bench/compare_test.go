package bench

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// result builds a Result whose every phase has p50 = ms, p90 = 2 ms,
// p99 = 3 ms, throughput pps, List p99 = list, and own/daemon RSS.
func result(label string, ms, pps, list float64, groups map[string]uint64) *Result {
	r := &Result{Label: label, Started: time.Date(2026, 11, 22, 20, 0, 0, 0, time.UTC), Image: "busybox"}
	for _, c := range []int{1, 8} {
		l := LifecycleResult{Concurrency: c, Pods: 10, WallSeconds: 10 / pps, PodsPerSecond: pps}
		for _, ph := range Phases {
			l.Phases = append(l.Phases, Named{Name: ph, Summary: Summary{N: 10, P50Ms: ms, P90Ms: 2 * ms, P99Ms: 3 * ms, MaxMs: 4 * ms}})
		}
		r.Lifecycle = append(r.Lifecycle, l)
	}
	s := &SteadyResult{Pods: 100, Iterations: 10}
	for _, op := range ListOps {
		s.Ops = append(s.Ops, Named{Name: op, Summary: Summary{N: 10, P50Ms: list / 2, P90Ms: list / 1.5, P99Ms: list}})
	}
	for _, name := range []string{"accel-cri", "containerd"} {
		if b, ok := groups[name]; ok {
			s.Procs = append(s.Procs, ProcUsage{Name: name, Procs: 1, RSSBytes: b})
		}
	}
	s.Procs = append(s.Procs, ProcUsage{Name: "shims", Shims: true, Procs: 100, RSSBytes: groups["shims"]})
	r.Steady = s
	return r
}

const MiB = 1 << 20

func TestCompareRatiosAndTargets(t *testing.T) {
	// Three rounds; A is faster in two, slower in one: the median ratio
	// ignores the outlier round.
	rounds := []Round{
		{A: result("accel-cri", 80, 5, 1, map[string]uint64{"accel-cri": 20 * MiB, "containerd": 30 * MiB, "shims": 100 * MiB}),
			B: result("containerd CRI", 100, 4, 1.5, map[string]uint64{"containerd": 60 * MiB, "shims": 100 * MiB})},
		{A: result("accel-cri", 300, 1, 5, map[string]uint64{"accel-cri": 22 * MiB, "containerd": 30 * MiB, "shims": 100 * MiB}),
			B: result("containerd CRI", 100, 4, 1.5, map[string]uint64{"containerd": 60 * MiB, "shims": 100 * MiB})},
		{A: result("accel-cri", 70, 6, 1.2, map[string]uint64{"accel-cri": 30 * MiB, "containerd": 30 * MiB, "shims": 100 * MiB}),
			B: result("containerd CRI", 100, 4, 1.5, map[string]uint64{"containerd": 60 * MiB, "shims": 100 * MiB})},
	}
	c := Compare(rounds, "accel-cri")
	if c.A != "accel-cri" || c.B != "containerd CRI" || len(c.Rounds) != 3 {
		t.Fatalf("comparison header %q %q %d", c.A, c.B, len(c.Rounds))
	}
	for _, tc := range []struct {
		key                  string
		medianA, medianRatio float64
		ratios0              float64
		ratioNaN, medianANaN bool
		wantUnit             string
	}{
		{key: PhaseKey(1, PhasePodStart, "p50"), medianA: 80, medianRatio: 0.8, ratios0: 0.8, wantUnit: "ms"},
		{key: PhaseKey(8, PhaseExecSync, "p99"), medianA: 240, medianRatio: 0.8, ratios0: 0.8, wantUnit: "ms"},
		{key: ThroughputKey(8), medianA: 5, medianRatio: 1.25, ratios0: 1.25, wantUnit: "pods/s"},
		{key: RSSKey("accel-cri"), medianA: 22, ratioNaN: true, ratios0: math.NaN(), wantUnit: "MiB"},
		{key: RSSKey(GroupDaemons), medianA: 52, medianRatio: 52.0 / 60, ratios0: 50.0 / 60, wantUnit: "MiB"},
		{key: RSSKey("shims"), medianA: 100, medianRatio: 1, ratios0: 1, wantUnit: "MiB"},
		{key: RSSKey(GroupShims), medianA: 100, medianRatio: 1, ratios0: 1, wantUnit: "MiB"},
		{key: OpKey(OpListContainers, "p99"), medianA: 1.2, medianRatio: 0.8, ratios0: 1 / 1.5, wantUnit: "ms"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			m, ok := c.Metric(tc.key)
			if !ok {
				t.Fatalf("no metric %s", tc.key)
			}
			if m.Unit != tc.wantUnit || len(m.Ratios) != 3 {
				t.Errorf("unit %q, %d ratios", m.Unit, len(m.Ratios))
			}
			if !near(m.MedianA, tc.medianA) {
				t.Errorf("median A %v, want %v", m.MedianA, tc.medianA)
			}
			if tc.ratioNaN != math.IsNaN(m.MedianRatio) || (!tc.ratioNaN && !near(m.MedianRatio, tc.medianRatio)) {
				t.Errorf("median ratio %v, want %v", m.MedianRatio, tc.medianRatio)
			}
			if !near(m.Ratios[0], tc.ratios0) && !(math.IsNaN(tc.ratios0) && math.IsNaN(m.Ratios[0])) {
				t.Errorf("round 1 ratio %v, want %v", m.Ratios[0], tc.ratios0)
			}
		})
	}
	want := map[string]bool{
		"pod start p50, c=1":                         true, // 0.8 <= 0.85
		"pod start p50, c=8":                         true,
		"lifecycle throughput, c=8":                  true, // 1.25 >= 1.25
		"ExecSync p50, c=1":                          true, // 0.8 <= 0.8
		"accel-cri RSS with 100 pods (MiB)":          true, // 22 <= 25
		"daemons' RSS with 100 pods":                 true, // 52/60
		"ListPodSandbox p99 with 100 pods (ms)":      true, // 1.2 < 2
		"ListPodSandboxStats p99 with 100 pods (ms)": true,
	}
	got := map[string]Target{}
	for _, tg := range c.Targets {
		got[tg.Name] = tg
	}
	if len(c.Targets) != 11 {
		t.Errorf("%d targets, want 11 (2 pod start, 1 throughput, 2 ExecSync, 2 memory, 4 List): %+v", len(c.Targets), c.Targets)
	}
	for name, pass := range want {
		tg, ok := got[name]
		if !ok {
			t.Errorf("no target %q", name)
			continue
		}
		if tg.Pass != pass {
			t.Errorf("target %q = %v (value %v), want pass %v", name, tg.Pass, tg.Value, pass)
		}
	}

	// One round where A misses everything.
	miss := Compare([]Round{{A: result("accel-cri", 200, 2, 3, map[string]uint64{"accel-cri": 40 * MiB, "containerd": 50 * MiB, "shims": MiB}),
		B: result("containerd CRI", 100, 4, 1, map[string]uint64{"containerd": 60 * MiB, "shims": MiB})}}, "accel-cri")
	for _, tg := range miss.Targets {
		if tg.Pass {
			t.Errorf("target %q passes with value %v", tg.Name, tg.Value)
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestComparisonJSONHasNoNaN(t *testing.T) {
	c := Compare([]Round{{A: result("a", 1, 1, 1, map[string]uint64{"accel-cri": MiB, "shims": MiB}),
		B: result("b", 1, 1, 1, map[string]uint64{"containerd": MiB, "shims": MiB})}}, "accel-cri")
	var buf bytes.Buffer
	if err := WriteJSON(&buf, c); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Metrics []struct {
			Key         string     `json:"key"`
			MedianRatio *float64   `json:"median_ratio"`
			A           []*float64 `json:"a"`
		} `json:"metrics"`
		Rounds []Round `json:"rounds"`
	}
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range back.Metrics {
		if m.Key == RSSKey("accel-cri") {
			found = true
			if m.MedianRatio != nil || m.A[0] == nil || *m.A[0] != 1 {
				t.Errorf("accel-cri RSS: ratio %v (want null: B has no such process), A %v", m.MedianRatio, m.A)
			}
		}
	}
	if !found || len(back.Rounds) != 1 || back.Rounds[0].A.Label != "a" {
		t.Errorf("JSON lacks the metric or the rounds: %s", buf.String()[:200])
	}
}

func TestWriteComparisonMarkdown(t *testing.T) {
	c := Compare([]Round{{A: result("accel-cri", 80, 5, 1, map[string]uint64{"accel-cri": 20 * MiB, "containerd": 30 * MiB, "shims": MiB}),
		B: result("containerd CRI", 100, 4, 3, map[string]uint64{"containerd": 60 * MiB, "shims": MiB})}}, "accel-cri")
	var b strings.Builder
	if err := WriteComparisonMarkdown(&b, c); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| pod start p50, c=1 | 0.800 × | <= 0.850 × | PASS |",
		"| lifecycle throughput, c=8 | 1.25 × | >= 1.25 × | PASS |",
		"| ListPodSandbox p99 with 100 pods (ms) | 1.00 | < 2.00 | PASS |",
		"| 8 | PodStart | 80.0 | 160 | 240 | 100 | 200 | 300 | 0.800 | 0.800 |",
		"| 1 | **pods/s** | 5.00 | | | 4.00 | | | 1.25 | |",
		"| 100 pods | ListContainerStats | 0.500 | 0.667 | 1.00 | 1.50 | 2.00 | 3.00 | 0.333 | 0.333 |",
		"| accel-cri | 20.0 | — | — | — | — |",
		"| daemons-total | 50.0 | — | 60.0 | — | 0.833 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestWriteMarkdown(t *testing.T) {
	r := result("accel-cri", 10, 2.5, 1, map[string]uint64{"accel-cri": 20 * MiB, "shims": 3 * MiB})
	r.RunID = "abc"
	r.Idle = []ProcUsage{{Name: "accel-cri", Procs: 1, RSSBytes: 15 * MiB, PSSBytes: 14 * MiB}}
	r.Lifecycle[0].Procs = []ProcUsage{{Name: "accel-cri", Procs: 1, RSSBytes: 16 * MiB, PeakRSSBytes: 17 * MiB, CPUSeconds: 1.5}}
	var b strings.Builder
	if err := WriteMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"### accel-cri",
		"Run abc at 2026-11-22 20:00 UTC, image `busybox`.",
		"| 1 | 10 | 2.50 | RunPodSandbox | 10.0 | 20.0 | 30.0 | 40.0 |",
		"| 8 | 10 | 2.50 | Lifecycle | 10.0 | 20.0 | 30.0 | 40.0 |",
		"Steady state: 100 pods running",
		"| ListPodSandboxStats | 0.500 | 0.667 | 1.00 | 0 |",
		"| accel-cri | idle | 1 | 15.0 | 14.0 | — | 0 |",
		"| accel-cri | lifecycle c=1 | 1 | 16.0 | — | 17.0 | 1.50 |",
		"| shims | 100 pods, polling | 100 | 3.00 | — | — | 0 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestNum(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{
		{math.NaN(), "—"}, {math.Inf(1), "—"}, {0, "0"}, {0.01234, "0.012"}, {1.234, "1.23"},
		{12.34, "12.3"}, {123.4, "123"}, {-2.5, "-2.50"},
	} {
		if got := num(tc.in); got != tc.want {
			t.Errorf("num(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// A floor measured in A's rounds is a median over them, printed next to
// A's List latencies and own RSS; B has none.
func TestComparisonFloor(t *testing.T) {
	var rounds []Round
	for i, list := range []float64{1, 3, 2} {
		a := result("accel-cri", 80, 5, list, map[string]uint64{"accel-cri": 40 * MiB, "containerd": 30 * MiB, "shims": MiB})
		f := &FloorResult{Procs: []ProcUsage{{Name: "cri-floor", Procs: 1, RSSBytes: uint64(20+i) * MiB}}}
		for _, op := range ListOps {
			f.Ops = append(f.Ops, Named{Name: op, Summary: Summary{N: 10, P50Ms: list / 4, P90Ms: list / 3, P99Ms: list / 2}})
		}
		a.Steady.Floor = f
		rounds = append(rounds, Round{A: a, B: result("containerd CRI", 100, 4, 3, map[string]uint64{"containerd": 60 * MiB, "shims": MiB})})
	}
	c := Compare(rounds, "accel-cri")
	m, ok := c.Metric(FloorOpKey(OpListPodSandboxStats, "p99"))
	if !ok || !near(m.MedianA, 1) || !math.IsNaN(m.MedianB) {
		t.Errorf("floor p99: %+v (found %v), want median 1 for A and none for B", m, ok)
	}
	if m, ok := c.Metric(FloorRSSKey); !ok || !near(m.MedianA, 21) {
		t.Errorf("floor RSS: %+v (found %v), want 21", m, ok)
	}
	var b strings.Builder
	if err := WriteComparisonMarkdown(&b, c); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| 100 pods | accel-cri p50 | accel-cri p90 | accel-cri p99 | floor p50 | floor p90 | floor p99 |",
		"| ListPodSandboxStats | 1.00 | 1.33 | 2.00 | 0.500 | 0.667 | 1.00 |",
		"| RSS MiB (accel-cri's own process) | 40.0 | | | 21.0 | | |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, b.String())
		}
	}
	// Without a floor there is no floor table.
	b.Reset()
	if err := WriteComparisonMarkdown(&b, Compare([]Round{{A: result("accel-cri", 80, 5, 1, nil), B: result("containerd CRI", 100, 4, 3, nil)}}, "accel-cri")); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "floor p50") {
		t.Errorf("floor table without a floor:\n%s", b.String())
	}
}
