package bench

import (
	"math"
	"slices"
	"testing"
	"time"
)

func seq(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = float64(i + 1)
	}
	return s
}

func TestPercentile(t *testing.T) {
	for _, tc := range []struct {
		desc   string
		sorted []float64
		p      float64
		want   float64
	}{
		{"empty is NaN", nil, 50, math.NaN()},
		{"one sample is every percentile", []float64{7}, 99, 7},
		{"one sample p50", []float64{7}, 50, 7},
		{"p50 of 1..10 is the 5th", seq(10), 50, 5},
		{"p90 of 1..10 is the 9th", seq(10), 90, 9},
		{"p99 of 1..10 is the largest", seq(10), 99, 10},
		{"p50 of 1..100 is the 50th", seq(100), 50, 50},
		{"p99 of 1..100 is the 99th", seq(100), 99, 99},
		{"p100 is the largest", seq(100), 100, 100},
		{"p0 is the smallest", seq(100), 0, 1},
		{"p50 of two is the lower", []float64{1, 2}, 50, 1},
		{"p51 of two is the upper", []float64{1, 2}, 51, 2},
		{"p99 of 1..1000 is the 990th", seq(1000), 99, 990},
		{"p above 100 clamps", seq(3), 150, 3},
		{"never interpolates", []float64{1, 10}, 75, 10},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got := Percentile(tc.sorted, tc.p)
			if got != tc.want && !(math.IsNaN(got) && math.IsNaN(tc.want)) {
				t.Errorf("Percentile(%d samples, %v) = %v, want %v", len(tc.sorted), tc.p, got, tc.want)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		desc string
		xs   []float64
		want float64
	}{
		{"empty is NaN", nil, math.NaN()},
		{"one", []float64{3}, 3},
		{"odd count, unsorted", []float64{9, 1, 5}, 5},
		{"even count is the mean of the middle two", []float64{4, 1, 3, 2}, 2.5},
		{"ratios", []float64{0.8, 1.2, 0.9}, 0.9},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			in := slices.Clone(tc.xs)
			got := Median(tc.xs)
			if got != tc.want && !(math.IsNaN(got) && math.IsNaN(tc.want)) {
				t.Errorf("Median(%v) = %v, want %v", tc.xs, got, tc.want)
			}
			if !slices.Equal(in, tc.xs) {
				t.Errorf("Median reordered its input: %v", tc.xs)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := Summarize(ds)
	want := Summary{N: 100, MinMs: 1, P50Ms: 50, P90Ms: 90, P99Ms: 99, MaxMs: 100, MeanMs: 50.5}
	if got != want {
		t.Errorf("Summarize = %+v, want %+v", got, want)
	}
	if got := Summarize(nil); got != (Summary{}) {
		t.Errorf("Summarize(nil) = %+v, want zero", got)
	}
	if got := Summarize([]time.Duration{1500 * time.Microsecond}); got.P99Ms != 1.5 || got.MinMs != 1.5 {
		t.Errorf("sub-millisecond precision lost: %+v", got)
	}
}
