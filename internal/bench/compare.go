package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// Round is one A run and the B run that followed it.
type Round struct {
	A *Result `json:"a"`
	B *Result `json:"b"`
}

// Metric is one number compared across rounds: its value per round for A
// and B, the ratio A/B per round, and the medians. A value a runtime does
// not have (e.g. a process group only A runs) is NaN and left out of the
// medians.
type Metric struct {
	Key  string    `json:"key"`
	Unit string    `json:"unit"`
	A    []float64 `json:"a"`
	B    []float64 `json:"b"`
	// Ratios are A/B per round.
	Ratios      []float64 `json:"ratios"`
	MedianA     float64   `json:"median_a"`
	MedianB     float64   `json:"median_b"`
	MedianRatio float64   `json:"median_ratio"`
}

// Target is a goal for a metric: on the median ratio A/B when Ratio is
// set, else on A's median value.
type Target struct {
	Name  string  `json:"name"`
	Key   string  `json:"key"`
	Ratio bool    `json:"ratio"`
	Op    string  `json:"op"` // "<=", "<" or ">="
	Limit float64 `json:"limit"`
	Value float64 `json:"value"`
	Pass  bool    `json:"pass"`
}

// Comparison is the A/B result of alternating rounds.
type Comparison struct {
	A string `json:"a"`
	B string `json:"b"`
	// Own is A's own daemon's process group (its RSS target).
	Own     string   `json:"own"`
	Rounds  []Round  `json:"rounds"`
	Metrics []Metric `json:"metrics"`
	Targets []Target `json:"targets"`
}

// Metric keys. Lifecycle keys are per concurrency.
func PhaseKey(c int, phase, pct string) string { return fmt.Sprintf("c%d/%s/%s", c, phase, pct) }
func ThroughputKey(c int) string               { return fmt.Sprintf("c%d/pods_per_second", c) }
func LifecycleCPUKey(c int, group string) string {
	return fmt.Sprintf("c%d/cpu_seconds/%s", c, group)
}
func OpKey(op, pct string) string    { return "steady/" + op + "/" + pct }
func RSSKey(group string) string     { return "steady/rss_mib/" + group }
func PSSKey(group string) string     { return "steady/pss_mib/" + group }
func PollCPUKey(group string) string { return "steady/cpu_seconds/" + group }

// Floor keys: the ideal server's List latencies and its process's RSS.
func FloorOpKey(op, pct string) string { return "steady/floor/" + op + "/" + pct }

const FloorRSSKey = "steady/floor/rss_mib"

// Group names that sum a runtime's processes in the metrics.
const (
	GroupDaemons = "daemons-total" // every group that is not shims
	GroupShims   = "shims-total"   // every shims group
)

// percentiles the comparison keeps per phase and per List call.
var percentiles = []string{"p50", "p90", "p99"}

func pct(s Summary, p string) float64 {
	if s.N == 0 {
		return math.NaN()
	}
	switch p {
	case "p50":
		return s.P50Ms
	case "p90":
		return s.P90Ms
	default:
		return s.P99Ms
	}
}

// metrics flattens a result into key → value.
func metrics(r *Result) (keys []string, units map[string]string, vals map[string]float64) {
	units, vals = map[string]string{}, map[string]float64{}
	add := func(k, unit string, v float64) {
		if _, ok := vals[k]; !ok {
			keys = append(keys, k)
		}
		units[k], vals[k] = unit, v
	}
	sum := func(us []ProcUsage, f func(ProcUsage) float64) map[string]float64 {
		m := map[string]float64{}
		for _, u := range us {
			m[u.Name] = f(u)
			if u.Shims {
				m[GroupShims] += f(u)
			} else {
				m[GroupDaemons] += f(u)
			}
		}
		return m
	}
	groups := func(us []ProcUsage) []string {
		var gs []string
		for _, u := range us {
			gs = append(gs, u.Name)
		}
		return append(gs, GroupDaemons, GroupShims)
	}
	for _, l := range r.Lifecycle {
		for _, ph := range Phases {
			for _, p := range percentiles {
				add(PhaseKey(l.Concurrency, ph, p), "ms", pct(l.Phase(ph), p))
			}
		}
		add(ThroughputKey(l.Concurrency), "pods/s", l.PodsPerSecond)
		cpu := sum(l.Procs, func(u ProcUsage) float64 { return u.CPUSeconds })
		for _, g := range groups(l.Procs) {
			add(LifecycleCPUKey(l.Concurrency, g), "s", cpu[g])
		}
	}
	if s := r.Steady; s != nil {
		for _, op := range ListOps {
			for _, p := range percentiles {
				add(OpKey(op, p), "ms", pct(s.Op(op), p))
			}
		}
		rss := sum(s.Procs, func(u ProcUsage) float64 { return float64(u.RSSBytes) / (1 << 20) })
		pss := sum(s.Procs, func(u ProcUsage) float64 { return float64(u.PSSBytes) / (1 << 20) })
		cpu := sum(s.Procs, func(u ProcUsage) float64 { return u.CPUSeconds })
		for _, g := range groups(s.Procs) {
			add(RSSKey(g), "MiB", rss[g])
			// No PSS (no smaps_rollup) is unknown, not zero.
			add(PSSKey(g), "MiB", cmpOr(pss[g], math.NaN()))
			add(PollCPUKey(g), "s", cpu[g])
		}
		if f := s.Floor; f != nil {
			for _, op := range ListOps {
				for _, p := range percentiles {
					add(FloorOpKey(op, p), "ms", pct(f.Op(op), p))
				}
			}
			rss := 0.0
			for _, u := range f.Procs {
				rss += float64(u.RSSBytes) / (1 << 20)
			}
			add(FloorRSSKey, "MiB", rss)
		}
	}
	return keys, units, vals
}

// Compare computes per-round ratios A/B and their medians for every
// metric of A's results (B's extra metrics are listed after), and checks
// the targets. own is the process group of A's own daemon (its RSS
// target).
func Compare(rounds []Round, own string) *Comparison {
	c := &Comparison{Rounds: rounds, Own: own}
	if len(rounds) == 0 {
		return c
	}
	c.A, c.B = rounds[0].A.Label, rounds[0].B.Label
	var order []string
	units := map[string]string{}
	perRound := make([][2]map[string]float64, len(rounds))
	for i, r := range rounds {
		for j, res := range []*Result{r.A, r.B} {
			keys, u, v := metrics(res)
			for _, k := range keys {
				if _, ok := units[k]; !ok {
					order = append(order, k)
				}
				units[k] = u[k]
			}
			perRound[i][j] = v
		}
	}
	for _, k := range order {
		m := Metric{Key: k, Unit: units[k]}
		for _, pr := range perRound {
			a, b := get(pr[0], k), get(pr[1], k)
			m.A, m.B = append(m.A, a), append(m.B, b)
			ratio := math.NaN()
			if !math.IsNaN(a) && !math.IsNaN(b) && b != 0 {
				ratio = a / b
			}
			m.Ratios = append(m.Ratios, ratio)
		}
		m.MedianA, m.MedianB, m.MedianRatio = medianOK(m.A), medianOK(m.B), medianOK(m.Ratios)
		c.Metrics = append(c.Metrics, m)
	}
	c.Targets = c.checkTargets(own)
	return c
}

func get(m map[string]float64, k string) float64 {
	if v, ok := m[k]; ok {
		return v
	}
	return math.NaN()
}

// medianOK is the median of the values that are numbers (NaN if none).
func medianOK(xs []float64) float64 {
	var ok []float64
	for _, x := range xs {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			ok = append(ok, x)
		}
	}
	return Median(ok)
}

// Metric returns the metric with key k.
func (c *Comparison) Metric(k string) (Metric, bool) {
	for _, m := range c.Metrics {
		if m.Key == k {
			return m, true
		}
	}
	return Metric{}, false
}

// Issue 8's targets for accel-cri (A) against containerd's CRI (B).
const (
	TargetPodStartRatio   = 0.85 // pod start p50, at concurrency 1 and 8
	TargetThroughputRatio = 1.25 // lifecycle pods/s at the highest concurrency
	TargetExecSyncRatio   = 0.8  // ExecSync p50, at concurrency 1 and 8
	TargetOwnRSSMiB       = 25   // A's own daemon with the steady-state pods
	TargetDaemonsRatio    = 1.0  // A's daemons' RSS against B's
	TargetListP99Ms       = 2.0  // every List call's p99 with the steady-state pods
)

// targetConcurrency is where the latency targets apply.
var targetConcurrency = []int{1, 8}

func (c *Comparison) checkTargets(own string) []Target {
	var ts []Target
	add := func(name, key string, ratio bool, op string, limit float64) {
		m, ok := c.Metric(key)
		if !ok {
			return
		}
		t := Target{Name: name, Key: key, Ratio: ratio, Op: op, Limit: limit, Value: m.MedianA}
		if ratio {
			t.Value = m.MedianRatio
		}
		switch op {
		case "<=":
			t.Pass = t.Value <= limit
		case "<":
			t.Pass = t.Value < limit
		case ">=":
			t.Pass = t.Value >= limit
		}
		ts = append(ts, t)
	}
	var cs []int
	for _, r := range c.Rounds[0].A.Lifecycle {
		cs = append(cs, r.Concurrency)
	}
	for _, cc := range targetConcurrency {
		add(fmt.Sprintf("pod start p50, c=%d", cc), PhaseKey(cc, PhasePodStart, "p50"), true, "<=", TargetPodStartRatio)
	}
	if len(cs) > 0 {
		top := slices.Max(cs)
		add(fmt.Sprintf("lifecycle throughput, c=%d", top), ThroughputKey(top), true, ">=", TargetThroughputRatio)
	}
	for _, cc := range targetConcurrency {
		add(fmt.Sprintf("ExecSync p50, c=%d", cc), PhaseKey(cc, PhaseExecSync, "p50"), true, "<=", TargetExecSyncRatio)
	}
	if s := c.Rounds[0].A.Steady; s != nil {
		add(fmt.Sprintf("%s RSS with %d pods (MiB)", own, s.Pods), RSSKey(own), false, "<=", TargetOwnRSSMiB)
		add(fmt.Sprintf("daemons' RSS with %d pods", s.Pods), RSSKey(GroupDaemons), true, "<=", TargetDaemonsRatio)
		for _, op := range ListOps {
			add(fmt.Sprintf("%s p99 with %d pods (ms)", op, s.Pods), OpKey(op, "p99"), false, "<", TargetListP99Ms)
		}
	}
	return ts
}

// WriteComparisonMarkdown writes the targets, the latency table (medians
// over rounds) and the process table.
func WriteComparisonMarkdown(w io.Writer, c *Comparison) error {
	var b strings.Builder
	val := func(k string) Metric {
		m, ok := c.Metric(k)
		if !ok {
			nan := math.NaN()
			return Metric{MedianA: nan, MedianB: nan, MedianRatio: nan}
		}
		return m
	}
	fmt.Fprintf(&b, "A = %s, B = %s, %d rounds A B A B …; every figure is the median over the rounds, every ratio the median of the per-round ratios A/B.\n\n", c.A, c.B, len(c.Rounds))
	if len(c.Targets) > 0 {
		b.WriteString("| target | measured | goal | |\n|---|---:|---:|---|\n")
		for _, t := range c.Targets {
			goal := fmt.Sprintf("%s %s", t.Op, num(t.Limit))
			if t.Ratio {
				goal += " ×"
			}
			verdict := "MISS"
			if t.Pass {
				verdict = "PASS"
			}
			measured := num(t.Value)
			if t.Ratio {
				measured += " ×"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t.Name, measured, goal, verdict)
		}
		b.WriteString("\n")
	}
	if len(c.Rounds) == 0 {
		_, err := io.WriteString(w, b.String())
		return err
	}
	first := c.Rounds[0].A
	fmt.Fprintf(&b, "| c | phase | %[1]s p50 | %[1]s p90 | %[1]s p99 | %[2]s p50 | %[2]s p90 | %[2]s p99 | p50 A/B | p99 A/B |\n", c.A, c.B)
	b.WriteString("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, l := range first.Lifecycle {
		for _, ph := range Phases {
			p50, p90, p99 := val(PhaseKey(l.Concurrency, ph, "p50")), val(PhaseKey(l.Concurrency, ph, "p90")), val(PhaseKey(l.Concurrency, ph, "p99"))
			fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", l.Concurrency, ph,
				num(p50.MedianA), num(p90.MedianA), num(p99.MedianA), num(p50.MedianB), num(p90.MedianB), num(p99.MedianB),
				num(p50.MedianRatio), num(p99.MedianRatio))
		}
		t := val(ThroughputKey(l.Concurrency))
		fmt.Fprintf(&b, "| %d | **pods/s** | %s | | | %s | | | %s | |\n", l.Concurrency, num(t.MedianA), num(t.MedianB), num(t.MedianRatio))
	}
	if s := first.Steady; s != nil {
		for _, op := range ListOps {
			p50, p90, p99 := val(OpKey(op, "p50")), val(OpKey(op, "p90")), val(OpKey(op, "p99"))
			fmt.Fprintf(&b, "| %d pods | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", s.Pods, op,
				num(p50.MedianA), num(p90.MedianA), num(p99.MedianA), num(p50.MedianB), num(p90.MedianB), num(p99.MedianB),
				num(p50.MedianRatio), num(p99.MedianRatio))
		}
	}
	b.WriteString("\nLatencies in ms.\n\n")
	writeFloor(&b, c, val)
	if s := first.Steady; s != nil {
		fmt.Fprintf(&b, "| processes with %d pods | %s RSS MiB | %s PSS MiB | %s RSS MiB | %s PSS MiB | RSS A/B |\n|---|---:|---:|---:|---:|---:|\n", s.Pods, c.A, c.A, c.B, c.B)
		for _, m := range c.Metrics {
			g, ok := strings.CutPrefix(m.Key, "steady/rss_mib/")
			if !ok {
				continue
			}
			pss := val(PSSKey(g))
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", g, num(m.MedianA), num(pss.MedianA), num(m.MedianB), num(pss.MedianB), num(m.MedianRatio))
		}
		b.WriteString("\n")
		b.WriteString("| CPU seconds | " + c.A + " | " + c.B + " | A/B |\n|---|---:|---:|---:|\n")
		for _, m := range c.Metrics {
			if strings.Contains(m.Key, "/cpu_seconds/") {
				fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", m.Key, num(m.MedianA), num(m.MedianB), num(m.MedianRatio))
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeFloor writes the floor table when the rounds measured one: A's List
// latencies next to the ideal server's, polled with the same client and
// pods, and the two processes' RSS.
func writeFloor(b *strings.Builder, c *Comparison, val func(string) Metric) {
	s := c.Rounds[0].A.Steady
	if s == nil || s.Floor == nil {
		return
	}
	fmt.Fprintf(b, "Floor: the same polling of an ideal CRI server (cri-floor) that answers with %s's answers encoded in advance and does nothing else; no runtime can be faster.\n\n", c.A)
	fmt.Fprintf(b, "| %d pods | %[2]s p50 | %[2]s p90 | %[2]s p99 | floor p50 | floor p90 | floor p99 |\n|---|---:|---:|---:|---:|---:|---:|\n", s.Pods, c.A)
	for _, op := range ListOps {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", op,
			num(val(OpKey(op, "p50")).MedianA), num(val(OpKey(op, "p90")).MedianA), num(val(OpKey(op, "p99")).MedianA),
			num(val(FloorOpKey(op, "p50")).MedianA), num(val(FloorOpKey(op, "p90")).MedianA), num(val(FloorOpKey(op, "p99")).MedianA))
	}
	fmt.Fprintf(b, "| RSS MiB (%s's own process) | %s | | | %s | | |\n\n", c.A, num(val(RSSKey(c.Own)).MedianA), num(val(FloorRSSKey).MedianA))
}

// JSON has no NaN: a value a runtime does not have is written as null.
func jsonNum(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func jsonNums(vs []float64) []*float64 {
	out := make([]*float64, len(vs))
	for i, v := range vs {
		out[i] = jsonNum(v)
	}
	return out
}

// MarshalJSON writes NaN values as null.
func (m Metric) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Key         string     `json:"key"`
		Unit        string     `json:"unit"`
		A           []*float64 `json:"a"`
		B           []*float64 `json:"b"`
		Ratios      []*float64 `json:"ratios"`
		MedianA     *float64   `json:"median_a"`
		MedianB     *float64   `json:"median_b"`
		MedianRatio *float64   `json:"median_ratio"`
	}{m.Key, m.Unit, jsonNums(m.A), jsonNums(m.B), jsonNums(m.Ratios), jsonNum(m.MedianA), jsonNum(m.MedianB), jsonNum(m.MedianRatio)})
}

// MarshalJSON writes a NaN value as null.
func (t Target) MarshalJSON() ([]byte, error) {
	type plain Target
	return json.Marshal(struct {
		plain
		Value *float64 `json:"value"`
	}{plain(t), jsonNum(t.Value)})
}

// cmpOr is v, or def when v is zero.
func cmpOr(v, def float64) float64 {
	if v == 0 {
		return def
	}
	return v
}
