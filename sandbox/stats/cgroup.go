package stats

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/accel-cri/accel-cri/internal/cgroups"
)

// cgroupReader reads the cgroup files a CRI stats answer and the
// cAdvisor-style metrics need, straight from cgroupfs. containerd's metrics
// path asks the task's shim, which reads every file of every controller
// (v1: some 40) and costs a ttrpc round trip per task; for runc-style tasks
// the container's cgroup is the whole story, so accel-cri reads it itself
// (as CRI-O does), together with the processes' open files in /proc.
type cgroupReader struct {
	root   string // cgroupfs mount point, /sys/fs/cgroup
	v2     bool
	swap   bool // v1 memsw / v2 memory.swap.current exist
	psi    bool // v2 pressure files exist (the kernel has PSI)
	driver string
	proc   string // procfs mount point, /proc
	// devices names the block devices of I/O figures (nil: by number).
	devices *blockDevices
}

// read samples the cgroup of cgroupsPath; pid is the task's init process
// (0: unknown). A cgroup that does not exist (the task exited and runc
// removed it) is errdefs.ErrNotFound.
func (c *cgroupReader) read(cgroupsPath string, pid uint32) (usage, error) {
	d, err := cgroups.Dir(c.driver, cgroupsPath)
	if err != nil {
		return usage{}, err
	}
	var buf [8192]byte
	u := usage{at: time.Now()}
	procs := ""
	if c.v2 {
		dir := filepath.Join(c.root, d)
		err = c.readV2(dir, &u, buf[:])
		procs = filepath.Join(dir, "cgroup.procs")
	} else {
		err = c.readV1(d, &u, buf[:])
		procs = filepath.Join(c.root, "pids", d, "cgroup.procs")
		if u.has&hasPids == 0 {
			procs = filepath.Join(c.root, "cpu", d, "cgroup.procs")
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return usage{}, fmt.Errorf("cgroup %s: %w", d, errdefs.ErrNotFound)
	}
	if err != nil {
		return usage{}, fmt.Errorf("cgroup %s: %w", d, err)
	}
	if u.memLimit >= math.MaxInt64/2 {
		u.memLimit = 0 // "no limit" is reported as a huge number
	}
	if u.pidsLimit >= math.MaxInt64/2 {
		u.pidsLimit = 0
	}
	// The processes' figures are best effort: processes come and go
	// while they are counted.
	c.readProcs(procs, &u, buf[:])
	if pid > 0 {
		c.readNofile(pid, &u, buf[:])
	}
	for i := range u.io {
		u.io[i].name = c.devices.name(u.io[i].major, u.io[i].minor)
	}
	return u, nil
}

func (c *cgroupReader) readV1(d string, u *usage, buf []byte) error {
	acct := filepath.Join(c.root, "cpuacct", d)
	mem := filepath.Join(c.root, "memory", d)
	var err error
	if u.cpuNanos, err = readUint(filepath.Join(acct, "cpuacct.usage"), buf); err != nil {
		return err
	}
	// The files the CRI stats need are required; a missing one means the
	// cgroup is gone. Those only the metrics need are optional: a kernel
	// without one leaves its figure 0.
	//
	// User and system time are in USER_HZ ticks, 100 a second on Linux.
	err = optional(readKeyed(filepath.Join(acct, "cpuacct.stat"), buf, func(k string, v uint64) {
		switch k {
		case "user":
			u.cpuUserNanos = v * (1e9 / userHZ)
		case "system":
			u.cpuSystemNanos = v * (1e9 / userHZ)
		}
	}))
	if err != nil {
		return err
	}
	err = optional(readKeyed(filepath.Join(c.root, "cpu", d, "cpu.stat"), buf, func(k string, v uint64) {
		switch k {
		case "nr_periods":
			u.cfsPeriods = v
		case "nr_throttled":
			u.cfsThrottledPeriods = v
		case "throttled_time":
			u.cfsThrottledNanos = v
		}
	}))
	if err != nil {
		return err
	}
	if u.memUsage, err = readUint(filepath.Join(mem, "memory.usage_in_bytes"), buf); err != nil {
		return err
	}
	if u.memLimit, err = readUint(filepath.Join(mem, "memory.limit_in_bytes"), buf); err != nil {
		return err
	}
	if u.memMaxUsage, err = readUint(filepath.Join(mem, "memory.max_usage_in_bytes"), buf); optional(err) != nil {
		return err
	}
	if u.memFailcnt, err = readUint(filepath.Join(mem, "memory.failcnt"), buf); optional(err) != nil {
		return err
	}
	// Kernel memory accounting can be off (cgroup.memory=nokmem).
	if u.memKernel, err = readUint(filepath.Join(mem, "memory.kmem.usage_in_bytes"), buf); optional(err) != nil {
		return err
	}
	err = readKeyed(filepath.Join(mem, "memory.stat"), buf, func(k string, v uint64) {
		switch k {
		case "total_inactive_file":
			u.memInactiveFile = v
		case "total_active_file":
			u.memActiveFile = v
		case "total_rss":
			u.memRSS = v
		case "total_cache":
			u.memCache = v
		case "total_mapped_file":
			u.memMappedFile = v
		case "total_pgfault":
			u.pageFaults = v
		case "total_pgmajfault":
			u.majorPageFaults = v
		case "pgfault":
			u.ownPageFaults = v
		case "pgmajfault":
			u.ownMajorPageFaults = v
		}
	})
	if err != nil {
		return err
	}
	u.memWorkingSet = u.memUsage - min(u.memUsage, u.memInactiveFile)
	if c.swap {
		memsw, err := readUint(filepath.Join(mem, "memory.memsw.usage_in_bytes"), buf)
		if err != nil {
			return err
		}
		u.swap = memsw - min(memsw, u.memUsage)
	}
	err = readKeyed(filepath.Join(mem, "memory.oom_control"), buf, func(k string, v uint64) {
		if k == "oom_kill" {
			u.oomKills = v
		}
	})
	if optional(err) != nil {
		return err
	}
	// pids is optional on v1 (a kernel may lack the controller).
	pids := filepath.Join(c.root, "pids", d)
	if v, err := readUint(filepath.Join(pids, "pids.current"), buf); err == nil {
		u.pids, u.has = v, u.has|hasPids
		if u.pidsLimit, err = readUint(filepath.Join(pids, "pids.max"), buf); err != nil {
			return err
		}
	}
	blkio := filepath.Join(c.root, "blkio", d)
	for _, f := range []struct {
		name  string
		bytes bool
	}{{"blkio.throttle.io_service_bytes_recursive", true}, {"blkio.throttle.io_serviced_recursive", false}} {
		if u.io, err = readBlkioV1(filepath.Join(blkio, f.name), buf, u.io, f.bytes); optional(err) != nil {
			return err
		}
	}
	return nil
}

// userHZ is the unit of cpuacct.stat (USER_HZ, fixed at 100 on Linux).
const userHZ = 100

func (c *cgroupReader) readV2(dir string, u *usage, buf []byte) error {
	err := readKeyed(filepath.Join(dir, "cpu.stat"), buf, func(k string, v uint64) {
		switch k {
		case "usage_usec":
			u.cpuNanos = v * 1000
		case "user_usec":
			u.cpuUserNanos = v * 1000
		case "system_usec":
			u.cpuSystemNanos = v * 1000
		case "nr_periods":
			u.cfsPeriods = v
		case "nr_throttled":
			u.cfsThrottledPeriods = v
		case "throttled_usec":
			u.cfsThrottledNanos = v * 1000
		}
	})
	if err != nil {
		return err
	}
	if u.memUsage, err = readUint(filepath.Join(dir, "memory.current"), buf); err != nil {
		return err
	}
	if u.memLimit, err = readUint(filepath.Join(dir, "memory.max"), buf); err != nil {
		return err
	}
	// memory.peak since Linux 5.19.
	if u.memMaxUsage, err = readUint(filepath.Join(dir, "memory.peak"), buf); optional(err) != nil {
		return err
	}
	var kernel, kernelParts uint64
	err = readKeyed(filepath.Join(dir, "memory.stat"), buf, func(k string, v uint64) {
		switch k {
		case "inactive_file":
			u.memInactiveFile = v
		case "active_file":
			u.memActiveFile = v
		case "anon":
			u.memRSS = v
		case "file":
			u.memCache = v
		case "file_mapped":
			u.memMappedFile = v
		case "pgfault":
			u.pageFaults, u.ownPageFaults = v, v
		case "pgmajfault":
			u.majorPageFaults, u.ownMajorPageFaults = v, v
		case "kernel":
			kernel = v
		case "kernel_stack", "pagetables", "percpu", "vmalloc", "slab":
			kernelParts += v
		}
	})
	if err != nil {
		return err
	}
	// "kernel" (Linux 5.18) is the total; older kernels list its parts.
	u.memKernel = kernel
	if kernel == 0 {
		u.memKernel = kernelParts
	}
	u.memWorkingSet = u.memUsage - min(u.memUsage, u.memInactiveFile)
	if c.swap {
		if u.swap, err = readUint(filepath.Join(dir, "memory.swap.current"), buf); err != nil {
			return err
		}
	}
	// memory.events "max" counts what v1's memory.failcnt counts: the
	// times usage was about to exceed the limit.
	err = readKeyed(filepath.Join(dir, "memory.events"), buf, func(k string, v uint64) {
		switch k {
		case "oom_kill":
			u.oomKills = v
		case "max":
			u.memFailcnt = v
		}
	})
	if optional(err) != nil {
		return err
	}
	if v, err := readUint(filepath.Join(dir, "pids.current"), buf); err == nil {
		u.pids, u.has = v, u.has|hasPids
		if u.pidsLimit, err = readUint(filepath.Join(dir, "pids.max"), buf); err != nil {
			return err
		}
	}
	if u.io, err = readIOStat(filepath.Join(dir, "io.stat"), buf, u.io); optional(err) != nil {
		return err
	}
	if c.psi {
		// Pressure can be off for a cgroup (cgroup.pressure 0): no files.
		var psi [3]psiTotals
		for i, f := range [...]string{psiCPU: "cpu.pressure", psiMemory: "memory.pressure", psiIO: "io.pressure"} {
			if err := readPSI(filepath.Join(dir, f), buf, &psi[i]); err != nil {
				return optional(err)
			}
		}
		u.psi, u.has = psi, u.has|hasPSI
	}
	return nil
}

// optional drops a missing file's error: the file's figures stay 0.
func optional(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// readBlkioV1 adds a v1 blkio list ("8:0 Read 4096" lines, "Total 4096"
// last) to io: bytes, or else counts of requests.
func readBlkioV1(name string, buf []byte, io []deviceIO, bytes bool) ([]deviceIO, error) {
	b, err := readSmall(name, buf)
	if err != nil {
		return io, err
	}
	for line := range lines(b) {
		f := strings.Fields(string(line))
		if len(f) != 3 {
			continue // "Total N"
		}
		major, minor, ok := deviceNumber(f[0])
		v, err := strconv.ParseUint(f[2], 10, 64)
		if !ok || err != nil {
			return io, fmt.Errorf("%s: bad line %q", name, line)
		}
		var i int
		io, i = ioDevice(io, major, minor)
		addBlkioOp(&io[i], f[1], v, bytes)
	}
	return io, nil
}

// readIOStat adds a v2 io.stat ("8:0 rbytes=1 wbytes=2 rios=3 wios=4
// dbytes=0 dios=0" lines) to io.
func readIOStat(name string, buf []byte, io []deviceIO) ([]deviceIO, error) {
	b, err := readSmall(name, buf)
	if err != nil {
		return io, err
	}
	for line := range lines(b) {
		f := strings.Fields(string(line))
		if len(f) == 0 {
			continue
		}
		major, minor, ok := deviceNumber(f[0])
		if !ok {
			return io, fmt.Errorf("%s: bad line %q", name, line)
		}
		var i int
		io, i = ioDevice(io, major, minor)
		d := &io[i]
		for _, kv := range f[1:] {
			k, vs, _ := strings.Cut(kv, "=")
			v, err := strconv.ParseUint(vs, 10, 64)
			if err != nil {
				continue // keys to come may not be numbers
			}
			switch k {
			case "rbytes":
				d.readBytes = v
			case "wbytes":
				d.writeBytes = v
			case "rios":
				d.reads = v
			case "wios":
				d.writes = v
			}
		}
	}
	return io, nil
}

// deviceNumber parses "major:minor".
func deviceNumber(s string) (major, minor uint64, ok bool) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, false
	}
	major, err1 := strconv.ParseUint(a, 10, 64)
	minor, err2 := strconv.ParseUint(b, 10, 64)
	return major, minor, err1 == nil && err2 == nil
}

// readPSI reads a pressure file's totals ("some avg10=0.00 avg60=0.00
// avg300=0.00 total=123" and a "full" line; cpu.pressure has "full" since
// Linux 5.13).
func readPSI(name string, buf []byte, t *psiTotals) error {
	b, err := readSmall(name, buf)
	if err != nil {
		return err
	}
	for line := range lines(b) {
		kind, rest, _ := bytes.Cut(line, []byte{' '})
		i := bytes.LastIndex(rest, []byte("total="))
		if i < 0 {
			continue
		}
		v, err := strconv.ParseUint(string(bytes.TrimSpace(rest[i+len("total="):])), 10, 64)
		if err != nil {
			return fmt.Errorf("%s: bad line %q", name, line)
		}
		switch string(kind) {
		case "some":
			t.some = v
		case "full":
			t.full = v
		}
	}
	return nil
}

// readSmall reads a cgroup or proc file in one go into buf, without
// allocating while it fits (memory.stat is well under 8 KiB); a longer one
// (cgroup.procs of a big container) is read whole into a larger buffer.
func readSmall(name string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	n := 0
	for {
		if n == len(buf) {
			buf = append(buf, make([]byte, max(len(buf), 4096))...)
		}
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: name, Err: err}
		}
		if m == 0 {
			break
		}
		n += m
	}
	return buf[:n], nil
}

// lines yields the lines of b, without their newlines.
func lines(b []byte) func(yield func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			line := b
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				line, b = b[:i], b[i+1:]
			} else {
				b = nil
			}
			if !yield(line) {
				return
			}
		}
	}
}

// readUint reads a file holding one number; "max" is no limit.
func readUint(name string, buf []byte) (uint64, error) {
	b, err := readSmall(name, buf)
	if err != nil {
		return 0, err
	}
	b = bytes.TrimSpace(b)
	if string(b) == "max" {
		return math.MaxUint64, nil
	}
	v, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

// readKeyed calls fn for each "key value" line of a flat-keyed file.
func readKeyed(name string, buf []byte, fn func(k string, v uint64)) error {
	b, err := readSmall(name, buf)
	if err != nil {
		return err
	}
	for line := range lines(b) {
		k, v, ok := bytes.Cut(line, []byte{' '})
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			continue
		}
		fn(string(k), n)
	}
	return nil
}
