package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/internal/fsutil"
	"github.com/accel-cri/accel-cri/sandbox/shim"
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
// is already gone (shim.Shims.Reap).

// WithTaskBundles tells the runtime where its containerd keeps task bundles
// (<state>/io.containerd.runtime.v2.task) and its socket address, which name
// a task's bundle and its shim's socket. Known for the managed containerd
// only; without it nothing is cleaned.
func WithTaskBundles(bundleRoot, containerdAddress string) Option {
	return func(r *Runtime) { r.bundleRoot, r.containerdAddress = bundleRoot, containerdAddress }
}

// ociDeleteTimeout bounds the OCI runtime's delete of a stale container.
const ociDeleteTimeout = 5 * time.Second

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
		// a reader of its log, see sandbox/shim). Nothing is removed
		// under it; removing the bundle here left such a shim waiting for
		// good (the chaos suite's orphaned shim).
		return fmt.Errorf("stale task of container %s: %w", c.ID, err)
	}
	bundle := r.shims.Bundle(c.ID)
	if bundle != "" {
		if _, err := os.Lstat(bundle); errors.Is(err, fs.ErrNotExist) {
			bundle = ""
		}
	}
	if bundle != "" {
		klog.InfoS("Cleaning the task of a container whose creation was cut short", "container", c.ID, "bundle", bundle)
		// The shim is the pod's (tasks are grouped by sandbox id) or, for a
		// handler with a sandbox per container, the container's own.
		r.shims.DeleteTask(ctx, c.ID, c.PodID, c.ID)
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
	// load a shim that never started serving): end it. That is the one
	// started for c's own task, or the one listening on the socket of c's
	// group.
	r.shims.Reap(ctx, "stale task of container "+c.ID, r.shims.StartedFor(c.ID, c.PodID, c.ID))
	return nil
}

// shimsOfPod matches the shims of pod p's tasks: started for one of its
// containers, or listening on its group socket.
func (r *Runtime) shimsOfPod(p *Pod) shim.Match {
	return r.shims.OfGroup(p.ID, func(id string) bool {
		c := r.store.containerExact(id)
		return c != nil && c.PodID == p.ID
	})
}

// deleteOCIState force-deletes container c in its runc-style OCI runtime
// when the runtime still keeps state for it (the runc.v2 shim runs the
// runtime with --root <handler root>/<namespace>).
func (r *Runtime) deleteOCIState(ctx context.Context, c *Container) {
	h, err := r.handlerOf(r.podHandlerName(c.PodID))
	if err != nil {
		return
	}
	bin, root := h.kind.ociState()
	if root == "" {
		return
	}
	root = filepath.Join(root, r.namespace)
	if _, err := os.Lstat(filepath.Join(root, c.ID)); err != nil {
		return
	}
	klog.InfoS("Deleting an OCI runtime container left by a cut-short start", "container", c.ID, "root", root)
	rctx, cancel := context.WithTimeout(ctx, ociDeleteTimeout)
	defer cancel()
	if out, err := exec.CommandContext(rctx, bin, "--root", root, "delete", "--force", c.ID).CombinedOutput(); err != nil {
		klog.V(2).InfoS("OCI runtime delete of a stale container", "container", c.ID, "err", err, "output", string(out))
	}
}
