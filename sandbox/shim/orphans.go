package shim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// A runc shim can outlive everything that knows it. containerd creates the
// task bundle with a `log` FIFO whose read end it holds, and runs
// `containerd-shim-runc-v2 start`, which spawns the shim daemon and returns
// its socket. The daemon, starting, opens that FIFO for writing, before it
// serves the socket, and the open waits for a reader. When containerd dies,
// or gives up the create because accel-cri died and the call was cancelled,
// before the daemon got there, the daemon waits in open(2): its socket
// (bound by `start`) queues connections that nobody answers, and SIGTERM is
// caught and never handled. containerd, at its next start, opens the FIFO
// again while it tries to load the shim (which lets the daemon go on), cannot
// load it (no bootstrap.json, or "unable to load shim ... context deadline
// exceeded") and removes the bundle: from then on nothing names the shim.
// When the bundle, and with it the FIFO, went first, the daemon waits for
// ever, and it swallows the pod's next task: the runc shim sends a task to
// the shim already listening on the pod's socket, and that create hangs until
// its caller gives up.
//
// Reap finds shims of this containerd that no task bundle names and that
// serve no process, and ends them: through their own Shutdown when they
// answer as themselves (refused while they hold a task), else SIGKILL,
// after checking again, through a pidfd that pins the process, that it is
// still that shim.

// runcShimBinary is the shim binary of runc-type handlers; shims of other
// runtimes (a VM's, gVisor's own) are never touched.
const runcShimBinary = "containerd-shim-runc-v2"

// Annotations the runc shim groups tasks by (its manager's groupLabels, in
// its order): tasks of one group share the shim listening on the group's
// socket. The second is the CRI's sandbox id, which the core sets on every
// container's spec (sandbox.AnnotationSandboxID).
var groupAnnotations = []string{"io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id"}

// procRoot is where procfs is mounted.
const procRoot = "/proc"

// exitWait bounds the wait for an ended shim to exit.
const exitWait = 5 * time.Second

// Proc is a shim daemon of this containerd, as /proc shows it; a Match
// looks at it.
type Proc struct {
	pid int
	// id is the task it was started for (-id); its working directory is
	// that task's bundle.
	id string
	// bundleGone: the bundle it was started in is deleted.
	bundleGone bool
	// children: processes (a container's init, runc, an exec) have it as
	// their parent: it serves them.
	children bool
	// listening are the unix socket paths it accepts connections on.
	listening []string
}

// daemonArgs parses the command line of a runc shim daemon serving
// containerd address in namespace ns and returns the task it was started
// for. The shim's one-shot invocations (start, delete: an action word and
// -publish-binary) and anything with flags a daemon is not started with
// are not matched.
func daemonArgs(argv []string, address, ns string) (id string, ok bool) {
	if len(argv) < 1 || filepath.Base(argv[0]) != runcShimBinary {
		return "", false
	}
	var gotNS, gotAddr string
	for i := 1; i < len(argv); i++ {
		switch argv[i] {
		case "-debug":
		case "-namespace", "-id", "-address":
			if i+1 >= len(argv) {
				return "", false
			}
			v := argv[i+1]
			switch argv[i] {
			case "-namespace":
				gotNS = v
			case "-id":
				id = v
			case "-address":
				gotAddr = v
			}
			i++
		default:
			return "", false
		}
	}
	if gotNS != ns || gotAddr != address || id == "" || id != filepath.Base(id) || strings.HasPrefix(id, ".") {
		return "", false
	}
	return id, true
}

// Match selects the shims a Reap may end; nil selects every one.
type Match func(Proc) bool

// none matches no shim.
func none(Proc) bool { return false }

// StartedFor matches the shims a create of task id may have started: the
// one started for id, and the ones listening on the sockets of groups (the
// task's group: its pod, or the task itself for a handler with a sandbox
// per container).
func (s *Shims) StartedFor(id string, groups ...string) Match {
	if s == nil {
		return none
	}
	sockets := make([]string, 0, len(groups))
	for _, g := range groups {
		sockets = append(sockets, s.groupSocket(g))
	}
	return func(p Proc) bool {
		return p.id == id || p.listensOn(sockets...)
	}
}

// OfGroup matches the shims of the tasks of group: started for the group's
// own task or one that member says belongs to it, or listening on the
// group's socket.
func (s *Shims) OfGroup(group string, member func(id string) bool) Match {
	if s == nil {
		return none
	}
	socket := s.groupSocket(group)
	return func(p Proc) bool {
		return p.id == group || member(p.id) || p.listensOn(socket)
	}
}

func (p Proc) listensOn(sockets ...string) bool {
	for _, l := range p.listening {
		if slices.Contains(sockets, l) {
			return true
		}
	}
	return false
}

// readShim returns the shim daemon pid is, if it is one of this
// containerd's: its command line names the containerd address and
// namespace, and its working directory is the bundle of the task it names
// (or that bundle deleted, or renamed to .<id> by containerd's removal).
func (s *Shims) readShim(pid int) (Proc, bool) {
	return s.readShimIn(pid, s.bundleNSDirs())
}

// bundleNSDirs are the task bundle directory of the namespace as
// configured and with its symlinks resolved (a process's working directory
// is shown resolved).
func (s *Shims) bundleNSDirs() []string {
	nsDir := filepath.Join(s.bundleRoot, s.namespace)
	dirs := []string{nsDir}
	if resolved, err := filepath.EvalSymlinks(nsDir); err == nil && resolved != nsDir {
		dirs = append(dirs, resolved)
	}
	return dirs
}

func (s *Shims) readShimIn(pid int, nsDirs []string) (Proc, bool) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	b, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return Proc{}, false
	}
	id, ok := daemonArgs(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), s.address, s.namespace)
	if !ok {
		return Proc{}, false
	}
	cwd, err := os.Readlink(filepath.Join(dir, "cwd"))
	if err != nil {
		return Proc{}, false
	}
	cwd, deleted := strings.CutSuffix(cwd, " (deleted)")
	if !slices.Contains(nsDirs, filepath.Dir(cwd)) || (filepath.Base(cwd) != id && filepath.Base(cwd) != "."+id) {
		return Proc{}, false
	}
	return Proc{
		pid:        pid,
		id:         id,
		bundleGone: deleted || filepath.Base(cwd) != id,
		children:   hasChildren(dir),
		listening:  listeningSockets(dir),
	}, true
}

// hasChildren reports whether any thread of the process in procfs dir has a
// child (or the children cannot be read: then it is assumed to).
func hasChildren(dir string) bool {
	tasks, err := os.ReadDir(filepath.Join(dir, "task"))
	if err != nil {
		return true
	}
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, "task", t.Name(), "children"))
		if err != nil || len(strings.TrimSpace(string(b))) > 0 {
			return true
		}
	}
	return false
}

// listeningSockets returns the paths of the unix sockets the process in
// procfs dir listens on: its socket fds matched by inode against the
// listening sockets of its network namespace (/proc/<pid>/net/unix).
func listeningSockets(dir string) []string {
	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return nil
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
		if ino, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	f, err := os.Open(filepath.Join(dir, "net", "unix"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var paths []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path
		fl := strings.Fields(sc.Text())
		if len(fl) < 8 || !inodes[fl[6]] || !strings.HasPrefix(fl[7], "/") {
			continue
		}
		// Flags: __SO_ACCEPTCON (0x10000) marks a listening socket.
		if flags, err := strconv.ParseUint(fl[3], 16, 32); err == nil && flags&0x10000 != 0 {
			paths = append(paths, fl[7])
		}
	}
	return paths
}

// shimRefs returns the shim sockets the task bundles of this containerd
// name: the address containerd wrote into a bundle's bootstrap.json, and
// the socket of the task's group (from its spec's annotations, as the runc
// shim derives it), which a create in flight has before its
// bootstrap.json. complete is false when a bundle names neither
// (one being made): then no shim can be judged unreferenced.
func (s *Shims) shimRefs() (refs map[string]bool, complete bool) {
	refs = map[string]bool{}
	nsDir := filepath.Join(s.bundleRoot, s.namespace)
	entries, err := os.ReadDir(nsDir)
	if err != nil {
		return refs, errors.Is(err, os.ErrNotExist)
	}
	complete = true
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || !e.IsDir() {
			continue // being removed (containerd renames before it deletes)
		}
		bundle := filepath.Join(nsDir, e.Name())
		named := false
		if p, err := readBootstrap(bundle); err == nil {
			if path, ok := p.socketPath(); ok {
				refs[path], named = true, true
			}
		}
		if b, err := os.ReadFile(filepath.Join(bundle, "config.json")); err == nil {
			var spec struct {
				Annotations map[string]string `json:"annotations"`
			}
			if json.Unmarshal(b, &spec) == nil {
				group := e.Name()
				for _, a := range groupAnnotations {
					if g := spec.Annotations[a]; g != "" {
						group = g
						break
					}
				}
				refs[s.groupSocket(group)], named = true, true
			}
		}
		if !named {
			complete = false
		}
	}
	return refs, complete
}

// listShims returns this containerd's shim daemons.
func (s *Shims) listShims() []Proc {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	nsDirs := s.bundleNSDirs()
	var out []Proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if p, ok := s.readShimIn(pid, nsDirs); ok {
			out = append(out, p)
		}
	}
	return out
}

// Reap ends the shims of this containerd that match (all when match is
// nil) and serve nothing: the bundle they were started in is gone (one
// that exists is containerd's to load, and end, at its next start), no
// task bundle names a socket they answer on, and no process is their
// child. why is logged. It returns how many it ended. Known only for the
// managed containerd (bundle root and address set); nothing is done
// otherwise.
func (s *Shims) Reap(ctx context.Context, why string, match Match) int {
	if s == nil || s.bundleRoot == "" || s.address == "" {
		return 0
	}
	s.reapMu.Lock()
	defer s.reapMu.Unlock()
	var candidates []Proc
	for _, p := range s.listShims() {
		if p.bundleGone && (match == nil || match(p)) {
			candidates = append(candidates, p)
		}
	}
	if len(candidates) == 0 {
		return 0
	}
	refs, complete := s.shimRefs()
	if !complete {
		klog.V(2).InfoS("A task bundle is being made; judging no shim now", "why", why)
		return 0
	}
	ended := 0
	for _, p := range candidates {
		answers, kept := referenced(ctx, p, refs)
		if kept {
			continue
		}
		if p.children {
			// Processes nobody knows (a container's init): they go with
			// their container (the core removes its leftover cgroup
			// through cgroups.Host.RemoveLeftover), then the shim.
			klog.InfoS("Leaving a shim no task bundle refers to: it has child processes", "pid", p.pid, "task", p.id)
			continue
		}
		klog.InfoS("Ending a shim no task bundle refers to", "pid", p.pid, "task", p.id, "answers", answers != "", "why", why)
		if err := s.end(ctx, p, answers); err != nil {
			klog.ErrorS(err, "Shim not ended", "pid", p.pid, "task", p.id)
			continue
		}
		ended++
	}
	return ended
}

// referenced reports whether shim p serves, or may serve, a task some
// bundle names: it listens on a referenced socket and answers there as
// itself, or does not answer there (it cannot be told from a busy shim). It
// also returns a socket p answers on as itself, if any.
func referenced(ctx context.Context, p Proc, refs map[string]bool) (answers string, named bool) {
	for _, path := range p.listening {
		pid, err := pidAt(ctx, path)
		if err == nil && pid == p.pid {
			answers = path
		}
		if refs[path] && (err != nil || pid == p.pid) {
			return answers, true
		}
	}
	return answers, false
}

// end ends shim p. One that answers on socket is asked to delete the task
// it was started for and to shut down, which it refuses while it holds a
// task; one that does not answer is killed, after its identity was checked
// again through a pidfd that pins the process.
func (s *Shims) end(ctx context.Context, p Proc, socket string) error {
	pidfd, err := unix.PidfdOpen(p.pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", p.pid, err)
	}
	defer unix.Close(pidfd)
	if socket != "" {
		if err := shutdown(ctx, socket, p.pid, p.id); err != nil {
			return err
		}
		if waitPidfd(ctx, pidfd, exitWait) {
			return nil
		}
		return fmt.Errorf("shim %d did not exit when asked: it holds a task", p.pid)
	}
	// The pidfd now pins the process: while it has not exited, /proc/<pid>
	// is that process, and it must still be the same shim, serving nothing.
	again, ok := s.readShim(p.pid)
	if !ok || again.id != p.id || !again.bundleGone || again.children || waitPidfd(ctx, pidfd, 0) {
		return fmt.Errorf("process %d changed; not signalled", p.pid)
	}
	if err := unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("kill shim %d: %w", p.pid, err)
	}
	if !waitPidfd(ctx, pidfd, exitWait) {
		return fmt.Errorf("shim %d still running after SIGKILL", p.pid)
	}
	return nil
}

// shutdown asks the shim at socket, if it is still process pid, to delete
// task id (an exited one: a shim without child processes runs none) and to
// exit if it then holds no task.
func shutdown(ctx context.Context, socket string, pid int, id string) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	// The same connection for all three calls: the same process answers.
	client, got, err := connect(ctx, socket)
	if err != nil {
		return fmt.Errorf("shim %d: %w", pid, err)
	}
	defer client.Close()
	if got != pid {
		return fmt.Errorf("socket %s is now served by process %d, not shim %d; not asked", socket, got, pid)
	}
	svc := taskapi.NewTTRPCTaskClient(client)
	_, _ = svc.Delete(ctx, &taskapi.DeleteRequest{ID: id})
	_, _ = svc.Shutdown(ctx, &taskapi.ShutdownRequest{ID: id})
	return nil
}

// waitPidfd waits up to d (bounded by ctx) for the process of pidfd to
// exit, and reports whether it has.
func waitPidfd(ctx context.Context, pidfd int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		ms := int(time.Until(deadline) / time.Millisecond)
		n, err := unix.Poll(fds, max(ms, 0))
		switch {
		case err == nil:
			return n > 0
		case !errors.Is(err, syscall.EINTR):
			return false
		}
	}
}
