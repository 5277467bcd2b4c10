//go:build soak

package chaos

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// sample is one measurement of accel-cri and its managed containerd.
type sample struct {
	at               time.Duration
	rss, fds         int64
	ctrdRSS, ctrdFDs int64
	lifecycles       int64
}

// slopePerMinute is the least-squares slope of ys over xs (minutes).
func slopePerMinute(xs []float64, ys []float64) float64 {
	n := float64(len(xs))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx, sy = sx+xs[i], sy+ys[i]
		sxx, sxy = sxx+xs[i]*xs[i], sxy+xs[i]*ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

func TestSlopePerMinute(t *testing.T) {
	for _, tc := range []struct {
		desc   string
		xs, ys []float64
		want   float64
	}{
		{desc: "flat", xs: []float64{0, 1, 2}, ys: []float64{5, 5, 5}, want: 0},
		{desc: "rising", xs: []float64{0, 1, 2, 3}, ys: []float64{1, 3, 5, 7}, want: 2},
		{desc: "noisy falling", xs: []float64{0, 1, 2}, ys: []float64{4, 3.5, 2}, want: -1},
		{desc: "one point", xs: []float64{0}, ys: []float64{9}, want: 0},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if got := slopePerMinute(tc.xs, tc.ys); got < tc.want-1e-9 || got > tc.want+1e-9 {
				t.Errorf("slope %v, want %v", got, tc.want)
			}
		})
	}
}

// Churn without kills for SOAK_DURATION (default 30m), sampling accel-cri's
// and its containerd's RSS and open fds every SOAK_INTERVAL (10s); prints
// the samples and the least-squares slope per minute of each. At the end
// everything is removed and nothing may be left.
func TestSoak(t *testing.T) {
	duration, interval := 30*time.Minute, 10*time.Second
	if d, err := time.ParseDuration(os.Getenv("SOAK_DURATION")); err == nil {
		duration = d
	}
	if d, err := time.ParseDuration(os.Getenv("SOAK_INTERVAL")); err == nil {
		interval = d
	}
	workers := 8
	workers = envInt("SOAK_CONCURRENCY", workers)
	e := startEnv(t)
	if err := e.lifecycle(newRand(1), 0); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	base := measure(t, e.AccelCRI)
	began := time.Now()
	deadline := began.Add(duration)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.runChurn(workers, uint64(began.UnixNano()), func(int64) bool { return time.Now().Before(deadline) })
	}()

	var samples []sample
	take := func() {
		s := sample{at: time.Since(began), lifecycles: e.lifecycles.Load()}
		pid, cpid := e.PID(), e.ContainerdPID()
		rss, _ := framework.RSSBytes(pid)
		fds, _ := framework.OpenFDs(pid)
		crss, _ := framework.RSSBytes(cpid)
		cfds, _ := framework.OpenFDs(cpid)
		s.rss, s.fds, s.ctrdRSS, s.ctrdFDs = rss, int64(fds), crss, int64(cfds)
		samples = append(samples, s)
		t.Logf("t=%-6s lifecycles=%-5d accel-cri rss=%6.1fMiB fds=%-4d  containerd rss=%6.1fMiB fds=%-4d",
			s.at.Round(time.Second), s.lifecycles, float64(s.rss)/(1<<20), s.fds, float64(s.ctrdRSS)/(1<<20), s.ctrdFDs)
	}
	take()
	tick := time.NewTicker(interval)
	defer tick.Stop()
loop:
	for {
		select {
		case <-done:
			break loop
		case <-tick.C:
			take()
		}
	}
	take()
	if f := e.failures(); len(f) > 0 {
		t.Errorf("churn failures:\n  %s", join(f))
	}

	xs := make([]float64, len(samples))
	series := map[string][]float64{}
	for i, s := range samples {
		xs[i] = s.at.Minutes()
		series["accel-cri rss MiB"] = append(series["accel-cri rss MiB"], float64(s.rss)/(1<<20))
		series["accel-cri fds"] = append(series["accel-cri fds"], float64(s.fds))
		series["containerd rss MiB"] = append(series["containerd rss MiB"], float64(s.ctrdRSS)/(1<<20))
		series["containerd fds"] = append(series["containerd fds"], float64(s.ctrdFDs))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "soak: %s, %d lifecycles at concurrency %d, %d samples every %s\n", time.Since(began).Round(time.Second), e.lifecycles.Load()-1, workers, len(samples), interval)
	for _, name := range []string{"accel-cri rss MiB", "accel-cri fds", "containerd rss MiB", "containerd fds"} {
		ys := series[name]
		fmt.Fprintf(&b, "  %-19s first %8.2f last %8.2f  slope %+.3f per minute\n", name, ys[0], ys[len(ys)-1], slopePerMinute(xs, ys))
	}
	removeAll(t, e.AccelCRI)
	final, bad := settle(t, e.AccelCRI, base, 30*time.Second)
	fmt.Fprintf(&b, "  baseline: %s\n  after removing every pod: %s", base, final)
	t.Log(b.String())
	if len(bad) > 0 {
		t.Errorf("left after the soak:\n  %s", join(bad))
	}
}
