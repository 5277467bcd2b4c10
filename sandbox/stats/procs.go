package stats

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// readProcs counts the processes of a cgroup (its cgroup.procs) and their
// open files and sockets, as cAdvisor does: the entries of each process's
// /proc/<pid>/fd, sockets told by their link ("socket:[inode]"). A process
// that exits meanwhile is skipped; when the list cannot be read the
// figures are left out (u.has).
func (c *cgroupReader) readProcs(procsFile string, u *usage, buf []byte) {
	b, err := readSmall(procsFile, buf)
	if err != nil {
		return
	}
	// b may be buf itself: take the pids out before buf is reused.
	var pids []int
	for line := range lines(b) {
		if pid, err := strconv.Atoi(string(bytes.TrimSpace(line))); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	u.processes = uint64(len(pids))
	for _, pid := range pids {
		fds, sockets := countFDs(filepath.Join(c.proc, strconv.Itoa(pid), "fd"))
		u.fds += fds
		u.sockets += sockets
	}
	u.has |= hasProcs
}

// countFDs counts the entries of a /proc/<pid>/fd directory and the
// sockets among them.
func countFDs(dir string) (fds, sockets uint64) {
	f, err := os.Open(dir)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	dfd := int(f.Fd())
	var link [16]byte // enough to see "socket:"
	for {
		names, err := f.Readdirnames(256)
		for _, n := range names {
			fds++
			if k, err := unix.Readlinkat(dfd, n, link[:]); err == nil && bytes.HasPrefix(link[:k], []byte("socket:")) {
				sockets++
			}
		}
		if err != nil || len(names) == 0 {
			return fds, sockets
		}
	}
}

// readNofile reads the soft limit on open files of process pid (cAdvisor's
// container_ulimits_soft reports only that one, as "max_open_files").
// Unlimited is left out: a metric value cannot be -1.
func (c *cgroupReader) readNofile(pid uint32, u *usage, buf []byte) {
	b, err := readSmall(filepath.Join(c.proc, strconv.FormatUint(uint64(pid), 10), "limits"), buf)
	if err != nil {
		return
	}
	const prefix = "Max open files"
	for line := range lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte(prefix))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) < 2 {
			return
		}
		if v, err := strconv.ParseUint(string(f[0]), 10, 64); err == nil {
			u.nofileSoft, u.has = v, u.has|hasNofile
		}
		return
	}
}
