package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ProcGroup is a set of processes whose memory and CPU are summed, e.g. a
// daemon or all shims of one containerd. Pids is asked at every sample, so
// a group may grow and shrink during a phase (shims come and go with pods).
type ProcGroup struct {
	Name string
	// Shims marks per-pod processes (containerd shims) as opposed to the
	// runtime's daemons; comparisons sum daemons and shims separately.
	Shims bool
	Pids  func() []int
}

// Pids is a fixed list of pids.
func Pids(pids ...int) func() []int { return func() []int { return pids } }

// PidsMatching lists, at each call, the processes whose executable name
// starts with exe and whose command line contains arg (e.g. shims whose
// -address names one containerd's socket).
func PidsMatching(exe, arg string) func() []int {
	return func() []int {
		entries, _ := os.ReadDir("/proc")
		var out []int
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err != nil || len(b) == 0 {
				continue
			}
			argv0, _, _ := bytes.Cut(b, []byte{0})
			if strings.HasPrefix(filepath.Base(string(argv0)), exe) && bytes.Contains(b, []byte(arg)) {
				out = append(out, pid)
			}
		}
		return out
	}
}

// ProcUsage is what one group used: memory at the end of a phase, the
// largest summed RSS seen during it, and CPU seconds spent in it.
type ProcUsage struct {
	Name  string `json:"name"`
	Shims bool   `json:"shims,omitempty"`
	// Procs is how many processes the group had at the end.
	Procs int `json:"procs"`
	// RSSBytes and PSSBytes are summed over the group at the end of the
	// phase; PSS (proportional set size) charges shared pages to each
	// sharer in part, so shims sharing one binary do not count it N times.
	RSSBytes     uint64 `json:"rss_bytes"`
	PSSBytes     uint64 `json:"pss_bytes"`
	PeakRSSBytes uint64 `json:"peak_rss_bytes"`
	// CPUSeconds is user+system time spent during the phase; a process
	// that exited during it counts up to the last sample that saw it.
	CPUSeconds float64 `json:"cpu_seconds"`
}

// procStat is one process's cumulative CPU ticks and RSS.
type procStat struct {
	ticks uint64
	rss   uint64
}

var pageSize = uint64(os.Getpagesize())

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat; it is
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// readProcStat reads utime+stime from /proc/PID/stat and resident pages
// from /proc/PID/statm.
func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	ticks, err := parseStatTicks(string(b))
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	m, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return procStat{}, err
	}
	f := strings.Fields(string(m))
	if len(f) < 2 {
		return procStat{}, fmt.Errorf("/proc/%d/statm: %q", pid, m)
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/statm: %w", pid, err)
	}
	return procStat{ticks: ticks, rss: pages * pageSize}, nil
}

// parseStatTicks returns utime+stime (fields 14 and 15) of a
// /proc/PID/stat line. The command name (field 2) may contain spaces and
// parentheses, so fields are counted from the last ')'.
func parseStatTicks(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no command name in %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("short stat line %q", stat)
	}
	ut, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	st, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return ut + st, nil
}

// readPSS returns Pss from /proc/PID/smaps_rollup (0 when unreadable:
// kernels before 4.14 have no rollup, and walking full smaps is too slow
// for hundreds of shims).
func readPSS(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	return parseSmapsPSS(string(b))
}

// parseSmapsPSS returns the "Pss:" line of smaps(_rollup) in bytes.
func parseSmapsPSS(s string) uint64 {
	for _, line := range strings.Split(s, "\n") {
		if rest, ok := strings.CutPrefix(line, "Pss:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseUint(f[0], 10, 64)
				if err == nil {
					return kb * 1024
				}
			}
		}
	}
	return 0
}

// sampleInterval is how often a phase's groups are read for peak RSS and
// the CPU of processes that exit before the phase ends.
const sampleInterval = 250 * time.Millisecond

// phaseMeter follows the groups through one phase.
type phaseMeter struct {
	groups []ProcGroup
	mu     sync.Mutex
	first  []map[int]uint64 // per group: ticks when first seen
	last   []map[int]uint64 // per group: ticks when last seen
	peak   []uint64
}

// measure runs fn while sampling groups and returns their usage over it.
func measure(ctx context.Context, groups []ProcGroup, fn func() error) ([]ProcUsage, error) {
	m := &phaseMeter{groups: groups}
	for range groups {
		m.first = append(m.first, map[int]uint64{})
		m.last = append(m.last, map[int]uint64{})
		m.peak = append(m.peak, 0)
	}
	m.sample(true)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(sampleInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				m.sample(false)
			}
		}
	}()
	err := fn()
	close(stop)
	<-done
	return m.finish(), err
}

// sample reads every group once. Processes first seen after the start of
// the phase started during it: their whole CPU time belongs to it.
func (m *phaseMeter) sample(atStart bool) []uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	rss := make([]uint64, len(m.groups))
	for gi, g := range m.groups {
		for _, pid := range g.Pids() {
			st, err := readProcStat(pid)
			if err != nil {
				continue // exited between listing and reading
			}
			if _, ok := m.first[gi][pid]; !ok {
				if atStart {
					m.first[gi][pid] = st.ticks
				} else {
					m.first[gi][pid] = 0
				}
			}
			m.last[gi][pid] = st.ticks
			rss[gi] += st.rss
		}
		m.peak[gi] = max(m.peak[gi], rss[gi])
	}
	return rss
}

func (m *phaseMeter) finish() []ProcUsage {
	rss := m.sample(false)
	out := make([]ProcUsage, len(m.groups))
	for gi, g := range m.groups {
		u := ProcUsage{Name: g.Name, Shims: g.Shims, RSSBytes: rss[gi], PeakRSSBytes: m.peak[gi]}
		var ticks uint64
		for pid, last := range m.last[gi] {
			ticks += last - min(last, m.first[gi][pid])
		}
		u.CPUSeconds = float64(ticks) / clockTicks
		for _, pid := range g.Pids() {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				u.Procs++
				u.PSSBytes += readPSS(pid)
			}
		}
		out[gi] = u
	}
	return out
}

// Snapshot reads the groups' memory now (CPU zero).
func Snapshot(groups []ProcGroup) []ProcUsage {
	u, _ := measure(context.Background(), groups, func() error { return nil })
	for i := range u {
		u[i].CPUSeconds = 0
	}
	return u
}
