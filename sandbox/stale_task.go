package sandbox

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/internal/fsutil"
)

// When accel-cri dies while containerd creates a container's task, the
// gRPC call is cancelled and containerd's own cleanup can race the shim,
// which goes on creating the container: the task's bundle directory (with
// its mounted root filesystem), the OCI runtime's container with its cgroups,
// and, for a pod's first task, the shim itself stay behind, unknown to
// containerd. The next create of that task then fails ("file exists"). So
// before a task is created, and when a container that never ran is removed,
// a bundle that containerd does not know is cleaned here: through the shim
// that holds it, then the OCI runtime, then the directory; last, a shim the
// create started and that now serves nothing is ended, also when its bundle
// is already gone (shim_orphans.go).

// WithTaskBundles tells the runtime where its containerd keeps task bundles
// (<state>/io.containerd.runtime.v2.task) and its socket address, which name
// a task's bundle and its shim's socket. Known for the managed containerd
// only; without it nothing is cleaned.
func WithTaskBundles(bundleRoot, containerdAddress string) Option {
	return func(r *Runtime) { r.bundleRoot, r.containerdAddress = bundleRoot, containerdAddress }
}

// shimCallTimeout bounds each call to a shim during cleanup.
const shimCallTimeout = 5 * time.Second

// clearStaleTask removes what an interrupted task creation of container c
// left, if anything. It is called only for containers that never started
// (StartContainer, or removing one in CREATED state).
//
// removing also force-deletes what the OCI runtime still holds of c. Not
// before a retried start: the shim may still track the stale init, and
// the exit it would publish for that kill is indistinguishable from the
// new task's (seen in the chaos suite).
func (r *Runtime) clearStaleTask(ctx context.Context, c *Container, removing bool) error {
	// A task containerd knows for a container accel-cri never recorded as
	// started was made by a StartContainer that containerd finished after
	// accel-cri died: delete it, so the retried start makes it afresh.
	task, err := r.loadTask(ctx, c.ID)
	switch {
	case err == nil:
		klog.InfoS("Deleting the task of a container whose start was cut short", "container", c.ID)
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("task of interrupted start of %s: %w", c.ID, err)
		}
		return nil
	case !errdefs.IsNotFound(err):
		// containerd did not say: it may know the task, and a containerd
		// that restarts loads the bundle (and so ends a shim that waits for
		// a reader of its log, see shim_orphans.go). Nothing is removed
		// under it; removing the bundle here left such a shim waiting for
		// good (the chaos suite's orphaned shim).
		return fmt.Errorf("stale task of container %s: %w", c.ID, err)
	}
	bundle := ""
	if r.bundleRoot != "" {
		bundle = filepath.Join(r.bundleRoot, r.namespace, c.ID)
		if _, err := os.Lstat(bundle); errors.Is(err, fs.ErrNotExist) {
			bundle = ""
		}
	}
	if bundle != "" {
		klog.InfoS("Cleaning the task of a container whose creation was cut short", "container", c.ID, "bundle", bundle)
		// The shim is the pod's (tasks are grouped by sandbox id) or, for a
		// handler with a sandbox per container, the container's own.
		for _, group := range []string{c.PodID, c.ID} {
			if r.deleteInShim(ctx, group, c.ID) {
				break
			}
		}
	}
	// Also without a bundle: when containerd went away during the create
	// and cleaned its dead shim on restart, the OCI runtime's create may
	// still have finished, leaving a container whose init waits in its
	// cgroup (seen in the chaos suite).
	if removing {
		r.deleteOCIState(ctx, c)
	}
	if bundle != "" {
		work, werr := os.Readlink(filepath.Join(bundle, "work"))
		if err := fsutil.UnmountUnder(bundle); err != nil {
			return fmt.Errorf("stale task of container %s: %w", c.ID, err)
		}
		if err := os.RemoveAll(bundle); err != nil {
			return fmt.Errorf("stale task of container %s: %w", c.ID, err)
		}
		if werr == nil && filepath.Base(work) == c.ID {
			_ = os.RemoveAll(work)
		}
	}
	// The shim the interrupted create started may be left serving nothing,
	// its bundle removed above or by containerd (which, restarted, cannot
	// load a shim that never started serving): end it.
	r.reapShims(ctx, "stale task of container "+c.ID, r.shimsOfContainer(c))
	return nil
}

// shimsOfContainer matches the shims a task create of container c may have
// started: the one started for c's own task, and the one listening on the
// socket of c's group (its pod, or c itself for a handler with a sandbox
// per container).
func (r *Runtime) shimsOfContainer(c *Container) func(shimProc) bool {
	sockets := []string{r.groupSocket(c.PodID), r.groupSocket(c.ID)}
	return func(s shimProc) bool {
		return s.id == c.ID || listensOn(s, sockets...)
	}
}

// shimsOfPod matches the shims of pod p's tasks: started for one of its
// containers, or listening on its group socket.
func (r *Runtime) shimsOfPod(p *Pod) func(shimProc) bool {
	socket := r.groupSocket(p.ID)
	return func(s shimProc) bool {
		if c := r.store.containerExact(s.id); c != nil && c.PodID == p.ID {
			return true
		}
		return s.id == p.ID || listensOn(s, socket)
	}
}

func listensOn(s shimProc, sockets ...string) bool {
	for _, l := range s.listening {
		for _, want := range sockets {
			if l == want {
				return true
			}
		}
	}
	return false
}

// deleteOCIState force-deletes container c in its runc-style OCI runtime
// when the runtime still keeps state for it (the runc.v2 shim runs the
// runtime with --root <handler root>/<namespace>).
func (r *Runtime) deleteOCIState(ctx context.Context, c *Container) {
	h, err := r.handlerOf(r.podHandlerName(c.PodID))
	if err != nil || h.root == "" {
		return
	}
	root := filepath.Join(h.root, r.namespace)
	if _, err := os.Lstat(filepath.Join(root, c.ID)); err != nil {
		return
	}
	bin := h.binary
	klog.InfoS("Deleting an OCI runtime container left by a cut-short start", "container", c.ID, "root", root)
	rctx, cancel := context.WithTimeout(ctx, shimCallTimeout)
	defer cancel()
	if out, err := exec.CommandContext(rctx, bin, "--root", root, "delete", "--force", c.ID).CombinedOutput(); err != nil {
		klog.V(2).InfoS("OCI runtime delete of a stale container", "container", c.ID, "err", err, "output", string(out))
	}
}

// deleteInShim asks the shim of group to kill and delete task id, then to
// exit if it holds no other task (a shim's Shutdown is refused while it
// holds one). It reports whether the shim answered the delete. A shim that
// does not answer Connect at once (one that never started serving, see
// shim_orphans.go) is not asked more.
func (r *Runtime) deleteInShim(ctx context.Context, group, id string) bool {
	socket := r.groupSocket(group)
	if _, err := shimPidAt(ctx, socket); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			klog.V(2).InfoS("Shim of a stale task does not answer", "container", id, "shim", group, "err", err)
		}
		return false
	}
	conn, err := net.DialTimeout("unix", socket, shimCallTimeout)
	if err != nil {
		return false
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	svc := taskapi.NewTTRPCTaskClient(client)
	call := func(f func(context.Context) error) error {
		cctx, cancel := context.WithTimeout(ctx, shimCallTimeout)
		defer cancel()
		return f(cctx)
	}
	_ = call(func(ctx context.Context) error {
		_, err := svc.Kill(ctx, &taskapi.KillRequest{ID: id, Signal: uint32(syscall.SIGKILL), All: true})
		return err
	})
	derr := call(func(ctx context.Context) error {
		_, err := svc.Delete(ctx, &taskapi.DeleteRequest{ID: id})
		return err
	})
	_ = call(func(ctx context.Context) error {
		_, err := svc.Shutdown(ctx, &taskapi.ShutdownRequest{ID: id})
		return err
	})
	if derr != nil {
		klog.V(2).InfoS("Shim delete of a stale task", "container", id, "shim", group, "err", derr)
	}
	return derr == nil
}

// shimSocketIn is where the runc shim of task group listens: containerd's
// shim library names it by the hash of containerd's address, the namespace
// and the group, in the shim socket directory (/run/containerd/s unless
// containerd names another, whatever containerd's state directory).
func shimSocketIn(dir, containerdAddress, namespace, group string) string {
	sum := sha256.Sum256([]byte(filepath.Join(containerdAddress, namespace, group)))
	return filepath.Join(dir, fmt.Sprintf("%x", sum))
}
