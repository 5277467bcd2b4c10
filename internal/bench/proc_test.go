package bench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestParseStatTicks(t *testing.T) {
	for _, tc := range []struct {
		desc, stat string
		want       uint64
		wantErr    bool
	}{
		{"plain", "1234 (containerd) S 1 1234 1234 0 -1 4194560 5000 0 0 0 150 25 0 0 20 0 12 0 100 2000000 3000", 175, false},
		{"name with spaces and parens", "77 (a (b) c) R 1 77 77 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 5 0 0", 7, false},
		{"no name", "77 R 1", 0, true},
		{"short", "77 (x) R 1 2 3", 0, true},
		{"not a number", "77 (x) R 1 77 77 0 -1 0 0 0 0 0 x 4 0 0", 0, true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := parseStatTicks(tc.stat)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseStatTicks = %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseSmapsPSS(t *testing.T) {
	for _, tc := range []struct {
		desc, in string
		want     uint64
	}{
		{"rollup", "00400000-7ffd [rollup]\nRss:               10240 kB\nPss:                4096 kB\nPss_Anon:   100 kB\n", 4096 * 1024},
		{"missing", "Rss: 1 kB\n", 0},
		{"bad unit", "Pss: 4 MB\n", 0},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if got := parseSmapsPSS(tc.in); got != tc.want {
				t.Errorf("parseSmapsPSS = %d, want %d", got, tc.want)
			}
		})
	}
}

// The test process itself is a group: its RSS is read, and CPU burnt
// inside the phase is counted.
func TestMeasureOwnProcess(t *testing.T) {
	groups := []ProcGroup{{Name: "self", Pids: Pids(os.Getpid())}, {Name: "nobody", Pids: Pids()}}
	u, err := measure(context.Background(), groups, func() error {
		// Spin until this process used 300ms of CPU: on a loaded machine
		// wall time says little about CPU time.
		start := cpuTime(t)
		deadline := time.Now().Add(time.Minute)
		for cpuTime(t)-start < 300*time.Millisecond {
			if time.Now().After(deadline) {
				return errors.New("no CPU time in a minute")
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	self := u[0]
	if self.Name != "self" || self.Procs != 1 || self.RSSBytes == 0 || self.PeakRSSBytes < self.RSSBytes/2 {
		t.Errorf("self usage %+v: want 1 process with RSS", self)
	}
	// 300ms of CPU; the tick is 10ms.
	if self.CPUSeconds < 0.25 || self.CPUSeconds > 5 {
		t.Errorf("CPU seconds %v, want about 0.3", self.CPUSeconds)
	}
	if n := u[1]; n.Procs != 0 || n.RSSBytes != 0 || n.CPUSeconds != 0 {
		t.Errorf("empty group has usage %+v", n)
	}
	if snap := Snapshot(groups); snap[0].CPUSeconds != 0 || snap[0].RSSBytes == 0 {
		t.Errorf("snapshot %+v: want memory, no CPU", snap[0])
	}
}

func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestPidsMatching(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pids := PidsMatching(filepath.Base(exe), "-test.")()
	if !slices.Contains(pids, os.Getpid()) {
		t.Errorf("PidsMatching(%q, -test.) = %v, want it to include this process %d", filepath.Base(exe), pids, os.Getpid())
	}
	if pids := PidsMatching(filepath.Base(exe), "no-such-argument-anywhere-"+randHex(8))(); len(pids) != 0 {
		t.Errorf("matched %v for an argument nobody has", pids)
	}
}
