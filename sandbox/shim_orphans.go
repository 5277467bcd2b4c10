package sandbox

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/sandbox/spec"
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
// reapShims finds shims of this runtime's containerd that no task bundle
// names and that serve no process, and ends them: through their own
// Shutdown when they answer as themselves (refused while they hold a task),
// else SIGKILL, after checking again, through a pidfd that pins the process,
// that it is still that shim.

// runcShimBinary is the shim binary of runc-type handlers; shims of other
// runtimes (a VM's, gVisor's own) are never touched.
const runcShimBinary = "containerd-shim-runc-v2"

// Annotations the runc shim groups tasks by (its manager's groupLabels, in
// its order): tasks of one group share the shim listening on the group's
// socket.
var shimGroupAnnotations = []string{"io.containerd.runc.v2.group", spec.AnnotationSandboxID}

// procRoot is where procfs is mounted.
const procRoot = "/proc"

// defaultShimSocketDir is where the runc shim makes its sockets when
// containerd names no socket directory (containerd's defaults.DefaultStateDir
// + "/s"; the managed containerd names none).
const defaultShimSocketDir = "/run/containerd/s"

// shimExitWait bounds the wait for an ended shim to exit.
const shimExitWait = 5 * time.Second

// shimProc is a shim daemon of this runtime's containerd, as /proc shows it.
type shimProc struct {
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

// shimDaemonArgs parses the command line of a runc shim daemon serving
// containerd address in namespace ns and returns the task it was started
// for. The shim's one-shot invocations (start, delete: an action word and
// -publish-binary) and anything with flags a daemon is not started with
// are not matched.
func shimDaemonArgs(argv []string, address, ns string) (id string, ok bool) {
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

// readShim returns the shim daemon pid is, if it is one of this runtime's
// containerd: its command line names the containerd address and namespace,
// and its working directory is the bundle of the task it names (or that
// bundle deleted, or renamed to .<id> by containerd's removal).
func (r *Runtime) readShim(pid int) (shimProc, bool) {
	return r.readShimIn(pid, r.bundleNSDirs())
}

// bundleNSDirs are the task bundle directory of the namespace as
// configured and with its symlinks resolved (a process's working directory
// is shown resolved).
func (r *Runtime) bundleNSDirs() []string {
	nsDir := filepath.Join(r.bundleRoot, r.namespace)
	dirs := []string{nsDir}
	if resolved, err := filepath.EvalSymlinks(nsDir); err == nil && resolved != nsDir {
		dirs = append(dirs, resolved)
	}
	return dirs
}

func (r *Runtime) readShimIn(pid int, nsDirs []string) (shimProc, bool) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	b, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return shimProc{}, false
	}
	id, ok := shimDaemonArgs(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), r.containerdAddress, r.namespace)
	if !ok {
		return shimProc{}, false
	}
	cwd, err := os.Readlink(filepath.Join(dir, "cwd"))
	if err != nil {
		return shimProc{}, false
	}
	cwd, deleted := strings.CutSuffix(cwd, " (deleted)")
	if !slices.Contains(nsDirs, filepath.Dir(cwd)) || (filepath.Base(cwd) != id && filepath.Base(cwd) != "."+id) {
		return shimProc{}, false
	}
	return shimProc{
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

// shimRefs returns the shim sockets the task bundles of this runtime's
// containerd name: the address containerd wrote into a bundle's
// bootstrap.json, and the socket of the task's group (from its spec's
// annotations, as the runc shim derives it), which a create in flight has
// before its bootstrap.json. complete is false when a bundle names neither
// (one being made): then no shim can be judged unreferenced.
func (r *Runtime) shimRefs() (refs map[string]bool, complete bool) {
	refs = map[string]bool{}
	nsDir := filepath.Join(r.bundleRoot, r.namespace)
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
		if b, err := os.ReadFile(filepath.Join(bundle, "bootstrap.json")); err == nil {
			var p shimBootstrap
			if json.Unmarshal(b, &p) == nil {
				if path, _ := strings.CutPrefix(p.Address, "unix://"); filepath.IsAbs(path) {
					refs[path], named = true, true
				}
			}
		}
		if b, err := os.ReadFile(filepath.Join(bundle, "config.json")); err == nil {
			var spec struct {
				Annotations map[string]string `json:"annotations"`
			}
			if json.Unmarshal(b, &spec) == nil {
				group := e.Name()
				for _, a := range shimGroupAnnotations {
					if g := spec.Annotations[a]; g != "" {
						group = g
						break
					}
				}
				refs[r.groupSocket(group)], named = true, true
			}
		}
		if !named {
			complete = false
		}
	}
	return refs, complete
}

// groupSocket is the socket the runc shim of task group listens on.
func (r *Runtime) groupSocket(group string) string {
	dir := r.shimSocketDir
	if dir == "" {
		dir = defaultShimSocketDir
	}
	return shimSocketIn(dir, r.containerdAddress, r.namespace, group)
}

// listShims returns this runtime's containerd's shim daemons.
func (r *Runtime) listShims() []shimProc {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	nsDirs := r.bundleNSDirs()
	var out []shimProc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if s, ok := r.readShimIn(pid, nsDirs); ok {
			out = append(out, s)
		}
	}
	return out
}

// reapShims ends the shims of this runtime's containerd that match (all
// when match is nil) and serve nothing: the bundle they were started in is
// gone (one that exists is containerd's to load, and end, at its next
// start), no task bundle names a socket they answer on, and no process is
// their child. It returns how many it ended. Known only for the managed
// containerd (WithTaskBundles); nothing is done otherwise.
func (r *Runtime) reapShims(ctx context.Context, why string, match func(shimProc) bool) int {
	if r.bundleRoot == "" || r.containerdAddress == "" {
		return 0
	}
	r.reapMu.Lock()
	defer r.reapMu.Unlock()
	var candidates []shimProc
	for _, s := range r.listShims() {
		if s.bundleGone && (match == nil || match(s)) {
			candidates = append(candidates, s)
		}
	}
	if len(candidates) == 0 {
		return 0
	}
	refs, complete := r.shimRefs()
	if !complete {
		klog.V(2).InfoS("A task bundle is being made; judging no shim now", "why", why)
		return 0
	}
	ended := 0
	for _, s := range candidates {
		answers, kept := r.shimReferenced(ctx, s, refs)
		if kept {
			continue
		}
		if s.children {
			// Processes nobody knows (a container's init): they go with
			// their container (removeLeftoverCgroup), then the shim.
			klog.InfoS("Leaving a shim no task bundle refers to: it has child processes", "pid", s.pid, "task", s.id)
			continue
		}
		klog.InfoS("Ending a shim no task bundle refers to", "pid", s.pid, "task", s.id, "answers", answers != "", "why", why)
		if err := r.endShim(ctx, s, answers); err != nil {
			klog.ErrorS(err, "Shim not ended", "pid", s.pid, "task", s.id)
			continue
		}
		ended++
	}
	return ended
}

// shimReferenced reports whether shim s serves, or may serve, a task some
// bundle names: it listens on a referenced socket and answers there as
// itself, or does not answer there (it cannot be told from a busy shim). It
// also returns a socket s answers on as itself, if any.
func (r *Runtime) shimReferenced(ctx context.Context, s shimProc, refs map[string]bool) (answers string, referenced bool) {
	for _, path := range s.listening {
		pid, err := shimPidAt(ctx, path)
		if err == nil && pid == s.pid {
			answers = path
		}
		if refs[path] && (err != nil || pid == s.pid) {
			return answers, true
		}
	}
	return answers, false
}

// shimPidAt asks the shim listening on socket for its pid (task API
// Connect, answered without any task).
func shimPidAt(ctx context.Context, socket string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, shimDialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return 0, err
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	resp, err := taskapi.NewTTRPCTaskClient(client).Connect(ctx, &taskapi.ConnectRequest{})
	if err != nil {
		return 0, err
	}
	return int(resp.ShimPid), nil
}

// endShim ends shim s. One that answers on socket is asked to delete the
// task it was started for and to shut down, which it refuses while it holds
// a task; one that does not answer is killed, after its identity was checked
// again through a pidfd that pins the process.
func (r *Runtime) endShim(ctx context.Context, s shimProc, socket string) error {
	pidfd, err := unix.PidfdOpen(s.pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", s.pid, err)
	}
	defer unix.Close(pidfd)
	if socket != "" {
		if err := shutdownShim(ctx, socket, s.pid, s.id); err != nil {
			return err
		}
		if waitPidfd(ctx, pidfd, shimExitWait) {
			return nil
		}
		return fmt.Errorf("shim %d did not exit when asked: it holds a task", s.pid)
	}
	// The pidfd now pins the process: while it has not exited, /proc/<pid>
	// is that process, and it must still be the same shim, serving nothing.
	again, ok := r.readShim(s.pid)
	if !ok || again.id != s.id || !again.bundleGone || again.children || waitPidfd(ctx, pidfd, 0) {
		return fmt.Errorf("process %d changed; not signalled", s.pid)
	}
	if err := unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("kill shim %d: %w", s.pid, err)
	}
	if !waitPidfd(ctx, pidfd, shimExitWait) {
		return fmt.Errorf("shim %d still running after SIGKILL", s.pid)
	}
	return nil
}

// shutdownShim asks the shim at socket, if it is still process pid, to
// delete task id (an exited one: a shim without child processes runs none)
// and to exit if it then holds no task.
func shutdownShim(ctx context.Context, socket string, pid int, id string) error {
	ctx, cancel := context.WithTimeout(ctx, shimCallTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return fmt.Errorf("shim %d: %w", pid, err)
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	svc := taskapi.NewTTRPCTaskClient(client)
	// The same connection for all three calls: the same process answers.
	resp, err := svc.Connect(ctx, &taskapi.ConnectRequest{})
	if err != nil {
		return fmt.Errorf("shim %d: %w", pid, err)
	}
	if int(resp.ShimPid) != pid {
		return fmt.Errorf("socket %s is now served by process %d, not shim %d; not asked", socket, resp.ShimPid, pid)
	}
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
