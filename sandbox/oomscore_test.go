package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestOOMScoreClamp(t *testing.T) {
	tests := []struct {
		desc      string
		min, want int
		expect    int
	}{
		{desc: "unrestricted keeps value", min: -1000, want: -998, expect: -998},
		{desc: "restricted raises negative", min: 0, want: -998, expect: 0},
		{desc: "restricted keeps higher", min: 0, want: 500, expect: 500},
		{desc: "above range capped", min: -1000, want: 5000, expect: 1000},
		{desc: "below range raised", min: -1000, want: -5000, expect: -1000},
		{desc: "restricted at custom min", min: -500, want: -999, expect: -500},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			r := &OOMScoreRange{Min: tc.min, Restricted: tc.min > -1000}
			if got := r.Clamp(tc.want); got != tc.expect {
				t.Fatalf("Clamp(%d) = %d, want %d", tc.want, got, tc.expect)
			}
		})
	}
}

// The probe must agree with what the kernel does on this host: if it says
// restricted, writing below the minimum fails; if not, it succeeds.
func TestDetectOOMScoreRangeMatchesKernel(t *testing.T) {
	const path = "/proc/self/oom_score_adj"
	r, err := DetectOOMScoreRange(path)
	if err != nil {
		t.Fatal(err)
	}
	before, err := readOOMScoreAdj(path)
	if err != nil {
		t.Fatal(err)
	}
	if before != r.Min && r.Restricted {
		t.Fatalf("restricted min %d differs from current value %d", r.Min, before)
	}
	if before == -1000 {
		return
	}
	werr := os.WriteFile(path, []byte(strconv.Itoa(before-1)), 0)
	if werr == nil {
		defer os.WriteFile(path, []byte(strconv.Itoa(before)), 0)
	}
	switch {
	case r.Restricted && werr == nil:
		t.Fatal("probe says restricted, but lowering oom_score_adj worked")
	case !r.Restricted && werr != nil:
		t.Fatalf("probe says unrestricted, but lowering failed: %v", werr)
	case r.Restricted && !errors.Is(werr, os.ErrPermission):
		t.Fatalf("lowering failed with %v, want a permission error", werr)
	}
	after, _ := readOOMScoreAdj(path)
	if after != before && werr != nil {
		t.Fatalf("probe changed oom_score_adj: %d -> %d", before, after)
	}
	t.Logf("oom_score_adj: current %d, restricted=%v", before, r.Restricted)
}

func TestDetectOOMScoreRangeFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "oom")
	if err := os.WriteFile(p, []byte("0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := DetectOOMScoreRange(p)
	if err != nil || r.Restricted || r.Min != -1000 {
		t.Fatalf("writable file: %+v, %v", r, err)
	}
	if b, _ := os.ReadFile(p); string(b) != "0" {
		t.Fatalf("probe did not restore the value: %q", b)
	}
	if err := os.WriteFile(p, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := DetectOOMScoreRange(p); err == nil {
		t.Fatal("garbage: want error")
	}
}
