package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
)

// WriteJSON writes v as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// WriteMarkdown writes one run's tables: lifecycle phases per concurrency,
// steady-state List calls, and process usage.
func WriteMarkdown(w io.Writer, r *Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n", orDash(r.Label))
	fmt.Fprintf(&b, "Run %s at %s, image `%s`.\n\n", r.RunID, r.Started.Format("2006-01-02 15:04 UTC"), r.Image)
	if len(r.Lifecycle) > 0 {
		b.WriteString("| concurrency | pods | pods/s | phase | p50 ms | p90 ms | p99 ms | max ms |\n|---:|---:|---:|---|---:|---:|---:|---:|\n")
		for _, l := range r.Lifecycle {
			for _, p := range l.Phases {
				fmt.Fprintf(&b, "| %d | %d | %s | %s | %s | %s | %s | %s |\n", l.Concurrency, l.Pods, num(l.PodsPerSecond),
					p.Name, ms(p.P50Ms), ms(p.P90Ms), ms(p.P99Ms), ms(p.MaxMs))
			}
		}
		b.WriteString("\n")
	}
	if s := r.Steady; s != nil {
		fmt.Fprintf(&b, "Steady state: %d pods running (started in %s s), %d polls of each call.\n\n", s.Pods, num(s.StartSeconds), s.Iterations)
		b.WriteString("| call | p50 ms | p90 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|\n")
		for _, o := range s.Ops {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", o.Name, ms(o.P50Ms), ms(o.P90Ms), ms(o.P99Ms), ms(o.MaxMs))
		}
		b.WriteString("\n")
	}
	if len(r.Idle) > 0 {
		b.WriteString("| processes | when | procs | RSS MiB | PSS MiB | peak RSS MiB | CPU s |\n|---|---|---:|---:|---:|---:|---:|\n")
		row := func(when string, us []ProcUsage) {
			for _, u := range us {
				fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s |\n", u.Name, when, u.Procs, mib(u.RSSBytes), mib(u.PSSBytes), mib(u.PeakRSSBytes), num(u.CPUSeconds))
			}
		}
		row("idle", r.Idle)
		for _, l := range r.Lifecycle {
			row(fmt.Sprintf("lifecycle c=%d", l.Concurrency), l.Procs)
		}
		if r.Steady != nil {
			row(fmt.Sprintf("%d pods, polling", r.Steady.Pods), r.Steady.Procs)
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// ms formats milliseconds with three significant digits.
func ms(v float64) string { return num(v) }

// num formats a number with about three significant digits; NaN as "—".
func num(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "—"
	case v == 0:
		return "0"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	case math.Abs(v) >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func mib(b uint64) string {
	if b == 0 {
		return "—"
	}
	return num(float64(b) / (1 << 20))
}
