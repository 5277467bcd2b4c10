package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/image-spec/identity"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/images"
)

// Labels on accel-cri's containerd containers.
const (
	labelKind  = "io.accel-cri/kind"
	labelPodID = "io.accel-cri/pod-id"
	kindPod    = "pod"
	kindCtr    = "container"

	extPodMeta       = "io.accel-cri/pod"
	extContainerMeta = "io.accel-cri/container"
)

func init() {
	typeurl.Register(&podMeta{}, "io.accel-cri", "podMeta", "v1")
	typeurl.Register(&containerMeta{}, "io.accel-cri", "containerMeta", "v1")
}

// stopTimeout bounds how long a pod's pause task gets to exit after SIGKILL.
const killWait = 10 * time.Second

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sandboxImageOf returns the pause image, pulling it when absent: kubelet
// never pulls it, and an image GC outside accel-cri may have removed it.
func (r *Runtime) sandboxImageOf(ctx context.Context) (images.Image, error) {
	img, err := r.images.Get(ctx, r.sandboxImage)
	if err == nil {
		return img, nil
	}
	if !errdefs.IsNotFound(err) {
		return images.Image{}, fmt.Errorf("sandbox image %s: %w", r.sandboxImage, err)
	}
	r.pullMu.Lock()
	defer r.pullMu.Unlock()
	if img, err := r.images.Get(ctx, r.sandboxImage); err == nil {
		return img, nil
	}
	img, err = r.images.Pull(ctx, r.sandboxImage, nil)
	if err != nil {
		return images.Image{}, fmt.Errorf("pull sandbox image %s: %w", r.sandboxImage, err)
	}
	return img, nil
}

// rootfsImage is an image unpacked into a snapshotter: what a container's
// root filesystem snapshot is prepared from.
type rootfsImage struct {
	name        string
	snapshotter string
	parent      string // the chain id of the image's layers
}

// containerdImage returns img as unpacked into snapshotter, unpacking it
// when needed (an image can exist with its snapshots collected, or have been
// pulled for another handler's snapshotter). Once known to be unpacked it is
// cached: creating a container then costs one snapshot Prepare instead of
// containerd's image, content and snapshot lookups.
func (r *Runtime) containerdImage(ctx context.Context, img images.Image, snapshotter string) (rootfsImage, error) {
	key := snapshotter + "\x00" + img.ID
	if ri, ok := r.unpacked.Load(key); ok {
		return ri.(rootfsImage), nil
	}
	ci, err := r.client.GetImage(ctx, img.ID)
	if err != nil {
		return rootfsImage{}, fmt.Errorf("image %s: %w", img.ID, err)
	}
	ok, err := ci.IsUnpacked(ctx, snapshotter)
	if err != nil {
		return rootfsImage{}, fmt.Errorf("image %s: %w", img.ID, err)
	}
	if !ok {
		if err := ci.Unpack(ctx, snapshotter); err != nil {
			return rootfsImage{}, fmt.Errorf("unpack image %s: %w", img.ID, err)
		}
	}
	diffIDs, err := ci.RootFS(ctx)
	if err != nil {
		return rootfsImage{}, fmt.Errorf("image %s: %w", img.ID, err)
	}
	ri := rootfsImage{name: ci.Name(), snapshotter: snapshotter, parent: identity.ChainID(diffIDs).String()}
	r.unpacked.Store(key, ri)
	return ri, nil
}

// withRootfsSnapshot prepares the container's writable snapshot on top of
// the image's layers. A missing parent (the image's snapshots were
// collected) drops the cache entry, so the next attempt unpacks again.
//
// remap (rootfsRemapOpts) is a user-namespaced pod's mapping. Its snapshot
// is prepared as containerd's CRI prepares it, through
// containerd.WithNewSnapshot: a snapshotter with the "remap-ids" capability
// (overlayfs where the kernel idmaps overlay layers) gets the mapping as
// labels and mounts the layers idmapped; one with "only-remap-ids" cannot
// do it here (an error); any other gets a copy of the image's layers with
// shifted owners as the parent, made once per image and mapping.
func (r *Runtime) withRootfsSnapshot(id string, img images.Image, ri rootfsImage, remap []snapshots.Opt) containerd.NewContainerOpts {
	return func(ctx context.Context, client *containerd.Client, c *containers.Container) error {
		var err error
		if len(remap) == 0 {
			_, err = client.SnapshotService(ri.snapshotter).Prepare(ctx, id, ri.parent)
		} else {
			var ci containerd.Image
			if ci, err = client.GetImage(ctx, ri.name); err == nil {
				c.Snapshotter = ri.snapshotter
				err = containerd.WithNewSnapshot(id, ci, remap...)(ctx, client, c)
			}
		}
		if err != nil {
			if errdefs.IsNotFound(err) {
				r.unpacked.Delete(ri.snapshotter + "\x00" + img.ID)
			}
			return fmt.Errorf("prepare root filesystem of %s: %w", id, err)
		}
		c.Snapshotter, c.SnapshotKey, c.Image = ri.snapshotter, id, ri.name
		return nil
	}
}

// deleteContainerd deletes a containerd container with its task and
// snapshot; an absent one is fine.
func (r *Runtime) deleteContainerd(ctx context.Context, id string) error {
	ctr, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if task, err := ctr.Task(ctx, nil); err == nil {
		if _, err := killAndDeleteTask(ctx, task); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete task %s: %w", id, err)
		}
	} else if !errdefs.IsNotFound(err) {
		return err
	}
	if err := ctr.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	return nil
}

func (r *Runtime) loadTask(ctx context.Context, id string) (containerd.Task, error) {
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, err
	}
	return ctr.Task(ctx, nil)
}

// recordPodExit is the one way a pod's exit is recorded: its pause task is
// gone (pauseGone), a pod without one stopped, or recovery found it
// stopped. exited gets the current status and returns the one after the
// exit, which is persisted and published (updatePod); then StopPod's wait
// ends. The monitor calls it without p.mu (StopPod holds p.mu while it
// waits for this).
func (r *Runtime) recordPodExit(p *Pod, exited func(podStatus) podStatus) {
	_, err := r.store.updatePod(p, func(cur podStatus) (podStatus, error) { return exited(cur), nil })
	logErr(err, "Record pause exit", "pod", p.ID)
	p.exitOnce.Do(func() { close(p.exited) })
}

// pauseGone is st once the pod's pause task (or, without one, the pod) has
// stopped.
func pauseGone(st podStatus) podStatus {
	st.State, st.PID = runtimeapi.PodSandboxState_SANDBOX_NOTREADY, 0
	return st
}

// reapPause deletes a stopped pause task and records the exit.
func (r *Runtime) reapPause(ctx context.Context, p *Pod) {
	if task, err := r.loadTask(ctx, p.ID); err == nil {
		_, err := killAndDeleteTask(ctx, task)
		if err != nil && !errdefs.IsNotFound(err) {
			klog.ErrorS(err, "Delete pause task", "pod", p.ID)
		}
	}
	r.recordPodExit(p, pauseGone)
}
