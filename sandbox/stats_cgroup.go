package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// cgroupReader reads the few cgroup files a CRI stats answer needs, straight
// from cgroupfs. containerd's metrics path asks the task's shim, which
// reads every file of every controller (v1: some 40) and costs a ttrpc
// round trip per task; for runc-style tasks the container's cgroup is the
// whole story, so accel-cri reads it itself (as CRI-O does).
type cgroupReader struct {
	root   string // cgroupfs mount point, /sys/fs/cgroup
	v2     bool
	swap   bool // v1 memsw / v2 memory.swap.current exist
	driver string
}

// dir is the cgroup directory (relative to a hierarchy) of an OCI
// cgroupsPath: "/parent/id" for cgroupfs, "slice:prefix:name" for systemd.
func (c *cgroupReader) dir(cgroupsPath string) (string, error) {
	if c.driver != CgroupDriverSystemd {
		if !path.IsAbs(cgroupsPath) || path.Clean(cgroupsPath) != cgroupsPath || strings.Contains(cgroupsPath, "..") {
			return "", fmt.Errorf("%w: cgroupfs path %q", errdefs.ErrInvalidArgument, cgroupsPath)
		}
		return cgroupsPath, nil
	}
	slice, rest, ok1 := strings.Cut(cgroupsPath, ":")
	prefix, name, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 || name == "" || strings.ContainsAny(name, "/") || strings.ContainsAny(prefix, "/") {
		return "", fmt.Errorf("%w: systemd cgroups path %q", errdefs.ErrInvalidArgument, cgroupsPath)
	}
	d, err := expandSlice(slice)
	if err != nil {
		return "", err
	}
	unit := name + ".scope"
	if prefix != "" {
		unit = prefix + "-" + unit
	}
	return path.Join(d, unit), nil
}

// expandSlice turns a systemd slice name into its cgroup directory, the way
// systemd nests slices: "a-b-c.slice" is /a.slice/a-b.slice/a-b-c.slice.
func expandSlice(slice string) (string, error) {
	name, ok := strings.CutSuffix(slice, ".slice")
	if ok && name == "-" {
		return "/", nil // the root slice
	}
	if !ok || strings.Contains(slice, "/") || strings.Contains(name, "--") || strings.HasSuffix(name, "-") {
		return "", fmt.Errorf("%w: systemd slice %q", errdefs.ErrInvalidArgument, slice)
	}
	var b strings.Builder
	prefix := ""
	for part := range strings.SplitSeq(name, "-") {
		if part == "" {
			return "", fmt.Errorf("%w: systemd slice %q", errdefs.ErrInvalidArgument, slice)
		}
		b.WriteString("/" + prefix + part + ".slice")
		prefix += part + "-"
	}
	return b.String(), nil
}

// read samples the cgroup of cgroupsPath. A cgroup that does not exist
// (the task exited and runc removed it) is errdefs.ErrNotFound.
func (c *cgroupReader) read(cgroupsPath string) (usage, error) {
	d, err := c.dir(cgroupsPath)
	if err != nil {
		return usage{}, err
	}
	var buf [8192]byte
	u := usage{at: time.Now()}
	if c.v2 {
		err = c.readV2(filepath.Join(c.root, d), &u, buf[:])
	} else {
		err = c.readV1(d, &u, buf[:])
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
	return u, nil
}

func (c *cgroupReader) readV1(d string, u *usage, buf []byte) error {
	mem := filepath.Join(c.root, "memory", d)
	var err error
	if u.cpuNanos, err = readUint(filepath.Join(c.root, "cpuacct", d, "cpuacct.usage"), buf); err != nil {
		return err
	}
	if u.memUsage, err = readUint(filepath.Join(mem, "memory.usage_in_bytes"), buf); err != nil {
		return err
	}
	if u.memLimit, err = readUint(filepath.Join(mem, "memory.limit_in_bytes"), buf); err != nil {
		return err
	}
	var inactiveFile uint64
	err = readKeyed(filepath.Join(mem, "memory.stat"), buf, func(k string, v uint64) {
		switch k {
		case "total_inactive_file":
			inactiveFile = v
		case "total_rss":
			u.memRSS = v
		case "total_pgfault":
			u.pageFaults = v
		case "total_pgmajfault":
			u.majorPageFaults = v
		}
	})
	if err != nil {
		return err
	}
	u.memWorkingSet = u.memUsage - min(u.memUsage, inactiveFile)
	if c.swap {
		memsw, err := readUint(filepath.Join(mem, "memory.memsw.usage_in_bytes"), buf)
		if err != nil {
			return err
		}
		u.swap = memsw - min(memsw, u.memUsage)
	}
	// pids is optional on v1 (a kernel may lack the controller).
	if v, err := readUint(filepath.Join(c.root, "pids", d, "pids.current"), buf); err == nil {
		u.pids = v
	}
	return nil
}

func (c *cgroupReader) readV2(dir string, u *usage, buf []byte) error {
	err := readKeyed(filepath.Join(dir, "cpu.stat"), buf, func(k string, v uint64) {
		if k == "usage_usec" {
			u.cpuNanos = v * 1000
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
	var inactiveFile uint64
	err = readKeyed(filepath.Join(dir, "memory.stat"), buf, func(k string, v uint64) {
		switch k {
		case "inactive_file":
			inactiveFile = v
		case "anon":
			u.memRSS = v
		case "pgfault":
			u.pageFaults = v
		case "pgmajfault":
			u.majorPageFaults = v
		}
	})
	if err != nil {
		return err
	}
	u.memWorkingSet = u.memUsage - min(u.memUsage, inactiveFile)
	if c.swap {
		if u.swap, err = readUint(filepath.Join(dir, "memory.swap.current"), buf); err != nil {
			return err
		}
	}
	if v, err := readUint(filepath.Join(dir, "pids.current"), buf); err == nil {
		u.pids = v
	}
	return nil
}

// readSmall reads a cgroup file into buf (cgroup files are read in one
// go; memory.stat is well under 8 KiB) without allocating.
func readSmall(name string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	n := 0
	for n < len(buf) {
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
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
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
