package framework

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Shim is a containerd shim daemon serving one containerd, as /proc shows it.
type Shim struct {
	PID int
	// ID is the task it was started for (-id).
	ID string
	// Cwd is its working directory: the task bundle it was started in.
	Cwd string
	// BundleGone: that bundle is deleted; nothing containerd reads at a
	// restart names the shim any more.
	BundleGone bool
	// LogOpen: it opened its log FIFO for writing. A shim that has not
	// waits in open(2) for a reader (containerd) and serves nothing.
	LogOpen bool
}

func (s Shim) String() string {
	return fmt.Sprintf("shim pid %d task %s bundle-gone=%v log-open=%v", s.PID, s.ID, s.BundleGone, s.LogOpen)
}

// ShimsOf lists the shim daemons whose -address is exactly address: the
// shims of one containerd, never another runtime's (their command lines
// name their own containerd). The shim's one-shot start and delete
// invocations are not listed.
func ShimsOf(address string) []Shim {
	entries, _ := os.ReadDir("/proc")
	var out []Shim
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, ok := readShim(pid, address); ok {
			out = append(out, s)
		}
	}
	return out
}

// Shims lists the shim daemons of this instance's managed containerd.
func (a *AccelCRI) Shims() []Shim { return ShimsOf(a.ContainerdAddress()) }

// TaskBundles is where the managed containerd keeps the task bundles of
// accel-cri's namespace.
func (a *AccelCRI) TaskBundles() string {
	return filepath.Join(a.State, "containerd", "daemon", "io.containerd.runtime.v2.task", "accel-cri")
}

func readShim(pid int, address string) (Shim, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return Shim{}, false
	}
	argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	if !strings.HasPrefix(filepath.Base(argv[0]), "containerd-shim") {
		return Shim{}, false
	}
	s := Shim{PID: pid}
	addr := ""
	for i := 1; i < len(argv); i++ {
		switch argv[i] {
		case "-address", "-id", "-namespace":
			if i+1 < len(argv) {
				if argv[i] == "-address" {
					addr = argv[i+1]
				} else if argv[i] == "-id" {
					s.ID = argv[i+1]
				}
				i++
			}
		case "start", "delete", "-publish-binary":
			return Shim{}, false
		}
	}
	if addr != address {
		return Shim{}, false
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return Shim{}, false
	}
	s.Cwd, s.BundleGone = strings.CutSuffix(cwd, " (deleted)")
	s.BundleGone = s.BundleGone || strings.HasPrefix(filepath.Base(s.Cwd), ".")
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil || filepath.Base(strings.TrimSuffix(target, " (deleted)")) != "log" {
			continue
		}
		info, _ := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		for _, l := range strings.Split(string(info), "\n") {
			if v, ok := strings.CutPrefix(l, "flags:"); ok {
				if flags, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64); err == nil && flags&syscall.O_ACCMODE == syscall.O_WRONLY {
					s.LogOpen = true
				}
			}
		}
	}
	return s, true
}
