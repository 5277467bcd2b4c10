package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The state dir's files. Only the supervisor writes pid, info, kubeconfig
// and exit; up and down hold the dir's flock while they look at them.
const (
	pidFile        = "pid"            // the supervisor's pid, written first
	infoFile       = "info.json"      // info, written once the cluster is up, kept for down
	kubeconfigFile = "kubeconfig"     // kubernetes-admin's, written last: while it is there the cluster is up
	logFile        = "supervisor.log" // the supervisor's output
	exitFile       = "exit"           // "ok" or "failed": how its teardown went
)

// info is what the supervisor records of its cluster: what up prints, and
// where down looks for traces.
type info struct {
	PID        int    `json:"pid"`
	Node       string `json:"node"`
	Server     string `json:"server"`
	Kubeconfig string `json:"kubeconfig"`
	Kubectl    string `json:"kubectl"`
	Registry   string `json:"registry"`
	Busybox    string `json:"busybox"`
	Pause      string `json:"pause"`
	// Dirs are every directory the cluster made: its own, accel-cri's,
	// the temp dirs, the built accel-cri's.
	Dirs []string `json:"dirs"`
	// Network is accel-cri's CNI network name (its nat rules and CNI cache
	// entries carry it), Bridge its bridge, CgroupRoot the kubelet's.
	Network    string `json:"network"`
	Bridge     string `json:"bridge"`
	CgroupRoot string `json:"cgroupRoot"`
}

type stateDir string

func (d stateDir) path(name string) string { return filepath.Join(string(d), name) }

// lock makes the dir if needed and takes its flock (no lock file: nothing
// is left once down removes the dir). A dir removed while we waited is made
// again and locked anew.
func (d stateDir) lock() (release func(), err error) {
	for {
		if err := os.MkdirAll(string(d), 0o700); err != nil {
			return nil, err
		}
		f, err := os.Open(string(d))
		if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", d, err)
		}
		var locked, now unix.Stat_t
		if unix.Fstat(int(f.Fd()), &locked) == nil && unix.Stat(string(d), &now) == nil && locked.Ino == now.Ino && locked.Dev == now.Dev {
			return func() { f.Close() }, nil
		}
		f.Close()
	}
}

// supervisor returns the pid of the dir's supervisor when it runs: its
// pid file names a process whose command line is "... supervise ... <dir>"
// (a pid reused by another process does not count), else 0 and the pid
// file's pid (0 without one).
func (d stateDir) supervisor() (running, recorded int) {
	b, err := os.ReadFile(d.path(pidFile))
	if err != nil {
		return 0, 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, pid
	}
	args := strings.Split(string(bytes.TrimRight(cmdline, "\x00")), "\x00")
	if len(args) > 2 && args[1] == "supervise" && args[len(args)-1] == string(d) {
		return pid, pid
	}
	return 0, pid
}

// upInfo returns the info of a cluster that is up: its supervisor runs
// and has written the kubeconfig (it removes it as it starts stopping).
func (d stateDir) upInfo(pid int) (*info, error) {
	if _, err := os.Stat(d.path(kubeconfigFile)); err != nil {
		return nil, fmt.Errorf("its supervisor (pid %d) runs but the cluster is not up, starting or stopping (log %s): make cluster-down stops it", pid, d.path(logFile))
	}
	return d.info()
}

func (d stateDir) info() (*info, error) {
	b, err := os.ReadFile(d.path(infoFile))
	if err != nil {
		return nil, err
	}
	var i info
	if err := json.Unmarshal(b, &i); err != nil {
		return nil, fmt.Errorf("%s: %w", d.path(infoFile), err)
	}
	return &i, nil
}

// writeFile writes name in the dir through a temp file and a rename: a
// reader sees all of it or nothing.
func (d stateDir) writeFile(name string, b []byte, mode os.FileMode) error {
	tmp := d.path("." + name + ".tmp")
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, d.path(name))
}

// logTail returns the last n lines of the supervisor's log.
func (d stateDir) logTail(n int) string {
	b, _ := os.ReadFile(d.path(logFile))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// waitExit waits for process pid to exit (a pidfd: woken by the exit
// itself), up to timeout (< 0: no limit). It reports whether the process is
// gone.
func waitExit(pid int, timeout time.Duration) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return errors.Is(err, syscall.ESRCH)
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(timeout)
	for {
		ms := -1
		if timeout >= 0 {
			if ms = int(time.Until(deadline).Milliseconds()); ms <= 0 {
				return false
			}
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
		if err == nil && n > 0 {
			return true
		}
		if err != nil && !errors.Is(err, syscall.EINTR) {
			return false
		}
	}
}
