package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/image-spec/identity"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/images"
	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/sandbox/podnet"
	"github.com/accel-cri/accel-cri/sandbox/podns"
	"github.com/accel-cri/accel-cri/sandbox/spec"
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

// RunPod creates and starts a pod sandbox: its files, network namespace and
// CNI networks, and its pause container. Everything it made is undone when
// any step fails, so a failed RunPodSandbox leaves nothing behind.
func (r *Runtime) RunPod(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (_ string, retErr error) {
	h, err := r.handlerOf(handler)
	if err != nil {
		return "", err
	}
	// A user namespace the handler cannot run is refused before anything
	// is made.
	uids, gids, err := spec.PodUsernsMappings(cfg, h.features.UserNamespaces)
	if err != nil {
		return "", err
	}
	id := newID()
	name := podName(cfg.GetMetadata())
	if err := r.store.reserveName(name, id); err != nil {
		return "", err
	}
	var undo []func()
	defer func() {
		if retErr != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
			r.store.releaseName(name, id)
		}
	}()

	infra := podNeedsInfra(cfg, h, r.alwaysInfra)
	var img images.Image
	var cimg rootfsImage
	if infra {
		if img, err = r.sandboxImageOf(ctx); err != nil {
			return "", err
		}
		if cimg, err = r.containerdImage(ctx, img, h.snapshotter); err != nil {
			return "", err
		}
	}

	meta := podMeta{ID: id, Config: cfg, RuntimeHandler: handler, CreatedAt: time.Now(), Infraless: !infra}
	// Until the pod is complete, a checkpoint says what to clean if
	// accel-cri dies half way (recover.cleanCreating).
	if err := writeJSON(r.creatingPath(id), meta); err != nil {
		return "", fmt.Errorf("pod %s: %w", id, err)
	}
	defer os.Remove(r.creatingPath(id))
	files, err := podns.WriteFiles(r.podDir(id), cfg, r.shmSize)
	if err != nil {
		return "", fmt.Errorf("pod %s files: %w", id, err)
	}
	undo = append(undo, func() { logErr(podns.RemoveFiles(r.podDir(id)), "Undo pod files", "pod", id) })
	meta.Files = files

	hostNet := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
	if !hostNet {
		var path string
		if uids != nil {
			// Owned by the pod's user namespace, which the pause joins
			// (userns.go).
			path, err = podnet.NewNetNSInUserns(r.netnsDir(), uids[0], gids[0])
		} else {
			path, err = podnet.NewNetNS(r.netnsDir())
		}
		if err != nil {
			return "", fmt.Errorf("pod %s network namespace: %w", id, err)
		}
		undo = append(undo, func() { logErr(podnet.RemoveNetNS(path), "Undo pod netns", "pod", id) })
		meta.NetNSPath = path
		if uids != nil {
			user, err := podns.PinNetNSOwner(path, r.podDir(id))
			if err != nil {
				return "", fmt.Errorf("pod %s: %w", id, err)
			}
			undo = append(undo, func() { logErr(podns.Unpin(podns.Namespaces{User: user}), "Undo pod user namespace", "pod", id) })
			meta.Pinned.User = user
		}
		if err := writeJSON(r.creatingPath(id), meta); err != nil {
			return "", fmt.Errorf("pod %s: %w", id, err)
		}
	}
	if !infra {
		pinned, err := podns.Pin(r.podDir(id), cfg)
		if err != nil {
			return "", fmt.Errorf("pod %s: %w", id, err)
		}
		undo = append(undo, func() { logErr(podns.Unpin(pinned), "Undo pod namespaces", "pod", id) })
		meta.Pinned.UTS, meta.Pinned.IPC = pinned.UTS, pinned.IPC
	}
	if meta.CgroupsPath, err = cgroups.Path(r.cgroupDriver, cfg.GetLinux().GetCgroupParent(), id); err != nil {
		return "", err
	}

	// CNI ADD and the sandbox's creation need nothing of each other, so they
	// run side by side. A pause container applies the pod's net sysctls
	// itself; the network goes first then, so the sysctls win over the
	// plugins' settings as they would in sequence.
	var network podnet.IPs
	var joinNet func() error
	if !hostNet {
		_, netSysctls := podns.SplitSysctls(cfg.GetLinux().GetSysctls())
		type netResult struct {
			setup bool // CNI ADD succeeded: undo needs a DEL
			err   error
		}
		netDone := make(chan netResult, 1)
		go func() {
			var res netResult
			network, res.err = r.network.SetupPod(ctx, id, meta.NetNSPath, cfg)
			res.setup = res.err == nil
			if res.err == nil && !infra {
				res.err = podns.ApplyNetSysctls(meta.NetNSPath, netSysctls)
			}
			netDone <- res
		}()
		joined := false
		joinNet = func() error {
			if joined {
				return nil
			}
			joined = true
			res := <-netDone
			if res.setup {
				undo = append(undo, func() {
					tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
					defer cancel()
					logErr(r.network.TeardownPod(tctx, id, meta.NetNSPath, cfg), "Undo pod network", "pod", id)
				})
			}
			if res.err != nil {
				return fmt.Errorf("pod %s network: %w", id, res.err)
			}
			return nil
		}
		// A failure of the sandbox still waits for CNI, so its undo can run.
		defer func() { _ = joinNet() }()
		if infra && len(netSysctls) > 0 {
			if err := joinNet(); err != nil {
				return "", err
			}
		}
	}

	var ctr containerd.Container
	if infra {
		specOpts, err := r.specs.Pod(spec.Pod{
			ID: id, Config: cfg, Image: img.Spec.Config, ImageName: r.sandboxImage, NetNSPath: meta.NetNSPath,
			CgroupsPath: meta.CgroupsPath, Handler: specHandler(handler, h), UsernsPath: meta.Pinned.User,
			PassedAnnotations: passAnnotations(cfg.GetAnnotations(), h.podAnnotations),
		})
		if err != nil {
			return "", err
		}
		ctr, err = r.client.NewContainer(ctx, id,
			r.withRootfsSnapshot(id, img, cimg, rootfsRemapOpts(uids, gids)),
			containerd.WithNewSpec(specOpts...),
			containerd.WithRuntime(h.runtimeType, h.options),
			containerd.WithContainerLabels(map[string]string{labelKind: kindPod, labelPodID: id}),
			containerd.WithContainerExtension(extPodMeta, &meta),
		)
	} else {
		// The record holds the pod's metadata for recovery; it never gets
		// a task. containerd requires a spec on every container.
		ctr, err = r.client.NewContainer(ctx, id,
			containerd.WithSpec(&oci.Spec{Version: runtimespec.Version}),
			containerd.WithRuntime(h.runtimeType, h.options),
			containerd.WithContainerLabels(map[string]string{labelKind: kindPod, labelPodID: id}),
			containerd.WithContainerExtension(extPodMeta, &meta),
		)
	}
	if err != nil {
		return "", fmt.Errorf("create sandbox container of pod %s: %w", id, err)
	}
	undo = append(undo, func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		logErr(ctr.Delete(dctx, containerd.WithSnapshotCleanup), "Undo sandbox container", "pod", id)
	})

	p := newPod(meta)
	p.mu.Lock()
	defer p.mu.Unlock()
	// The exit monitor must find the pod before the task can exit; the
	// CRI sees it once it is ready (showPod).
	r.store.addPod(p)
	undo = append(undo, func() { r.store.deletePod(id); r.store.removeCheckpoints("pods", id) })

	var pid uint32
	if infra {
		task, err := ctr.NewTask(ctx, cio.NullIO)
		if err != nil {
			return "", fmt.Errorf("create pause task of pod %s: %w", id, err)
		}
		undo = append(undo, func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			_, err := task.Delete(dctx, containerd.WithProcessKill)
			logErr(err, "Undo pause task", "pod", id)
		})
		if err := task.Start(ctx); err != nil {
			return "", fmt.Errorf("start pause task of pod %s: %w", id, err)
		}
		pid = task.Pid()
	}
	if joinNet != nil {
		if err := joinNet(); err != nil {
			return "", err
		}
	}
	st := podStatus{State: runtimeapi.PodSandboxState_SANDBOX_READY, PID: pid, Network: network}
	// NRI plugins hear of the pod while nobody else can see it yet; one may
	// refuse it. Undone, they hear it stop and go (all of them: one
	// earlier in their order may have accepted it). The sync block covers
	// the event and showPod, not the pull, CNI and pause before: taken
	// after p.mu, which nobody else can hold or wait for while the pod is
	// not shown.
	ctx, unblock := r.nri.BlockSync(ctx)
	defer unblock()
	undo = append(undo, func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), nriNoticeTimeout)
		defer cancel()
		r.nri.StopPodSandbox(dctx, nriPod(p, st))
		r.nri.RemovePodSandbox(dctx, nriPod(p, st))
	})
	if err := r.nri.RunPodSandbox(ctx, nriPod(p, st)); err != nil {
		return "", fmt.Errorf("pod %s: %w", id, err)
	}
	// Nobody else writes the status of a pod being made, but the exit
	// monitor: a pause that exited meanwhile fails the pod, not shown as
	// ready with no process.
	if _, err := r.store.updatePod(p, func(cur podStatus) (podStatus, error) {
		if cur.State == runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
			return cur, fmt.Errorf("pod %s: its pause process exited while the pod was made", id)
		}
		return st, nil
	}); err != nil {
		return "", err
	}
	r.store.showPod(p)
	klog.V(2).InfoS("Pod sandbox running", "pod", id, "name", name, "ip", network.IP, "pause", infra)
	r.publishPod(p, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT)
	r.stats.Started(p.ID)
	r.publishPod(p, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	return id, nil
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

// StopPod stops every container of the pod, the pause task, and tears down
// the pod network. Stopping a stopped pod succeeds, as kubelet retries
// stops; an unknown one is NotFound (the CRI edge makes that a success).
func (r *Runtime) StopPod(ctx context.Context, id string) error {
	ctx, unblock := r.nri.BlockSync(ctx)
	defer unblock()
	p, err := r.store.pod(id)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	st := r.store.podStatusOf(p)
	// NOTREADY is recorded first: a crash from here on leaves a pod that
	// kubelet stops again, never a ready pod whose network is gone.
	if st.State == runtimeapi.PodSandboxState_SANDBOX_READY {
		if st, err = r.store.updatePod(p, func(cur podStatus) (podStatus, error) {
			cur.State = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
			return cur, nil
		}); err != nil {
			return err
		}
	}
	// The containers stop side by side, and the pod network goes down
	// meanwhile: nothing in a stopping pod may use it any more.
	netErr := make(chan error, 1)
	if !st.NetworkDown && p.NetNSPath != "" {
		go func() { netErr <- r.network.TeardownPod(ctx, p.ID, p.NetNSPath, p.Config) }()
	} else {
		netErr <- nil
	}
	ctrs := r.store.podContainers(p.ID)
	errs := make([]error, len(ctrs))
	var wg sync.WaitGroup
	for i, c := range ctrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A container removed meanwhile is stopped too.
			if err := r.StopContainer(ctx, c.ID, 0); err != nil && !errdefs.IsNotFound(err) {
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	if err := <-netErr; err != nil {
		return fmt.Errorf("stop pod %s: teardown network: %w", p.ID, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop pod %s: %w", p.ID, err)
	}
	switch {
	case p.Infraless:
		r.recordPodExit(p, pauseGone)
	case st.PID != 0: // the pause process runs (or did when last seen)
		if err := r.killPause(ctx, p); err != nil {
			return err
		}
	}
	st = r.store.podStatusOf(p)
	if !st.NetworkDown {
		// NRI plugins hear of the stop once the pod's containers (and
		// pause) are stopped, while the pod is still there to look at; a
		// stop repeated after this one completed sends nothing.
		r.nri.StopPodSandbox(ctx, nriPod(p, st))
		if err := podnet.RemoveNetNS(p.NetNSPath); err != nil {
			return fmt.Errorf("stop pod %s: %w", p.ID, err)
		}
		// A stopped pod's containers cannot use /dev/shm any more; its
		// memory goes back now, not when kubelet garbage-collects the pod.
		if err := podns.ReleaseShm(r.podDir(p.ID)); err != nil {
			return fmt.Errorf("stop pod %s: %w", p.ID, err)
		}
		// So do its IPC objects, as when a pause process exits.
		if err := podns.Unpin(p.Pinned); err != nil {
			return fmt.Errorf("stop pod %s: %w", p.ID, err)
		}
		if _, err := r.store.updatePod(p, func(cur podStatus) (podStatus, error) {
			cur.NetworkDown = true
			cur.State = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
			return cur, nil
		}); err != nil {
			return err
		}
		r.publishPod(p, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
	}
	return nil
}

// killPause kills the pause task and waits until the monitor has recorded
// its exit. The caller holds p.mu.
func (r *Runtime) killPause(ctx context.Context, p *Pod) error {
	task, err := r.loadTask(ctx, p.ID)
	if errdefs.IsNotFound(err) {
		r.recordPodExit(p, pauseGone)
		return nil
	}
	if err != nil {
		return err
	}
	if err := task.Kill(ctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("kill pause of pod %s: %w", p.ID, err)
	}
	return awaitExit(ctx, p.exited, func() { r.reapPause(ctx, p) })
}

// awaitExit waits until the monitor has recorded an exit. An exit event can
// be lost with a containerd restart; after killWait, reap asks containerd
// for the task directly.
func awaitExit(ctx context.Context, exited <-chan struct{}, reap func()) error {
	select {
	case <-exited:
	case <-time.After(killWait):
		reap()
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// RemovePod stops the pod if needed and removes its containers, its pause
// container and every file it made. An unknown pod is NotFound (the CRI
// edge makes that a success).
func (r *Runtime) RemovePod(ctx context.Context, id string) error {
	ctx, unblock := r.nri.BlockSync(ctx)
	defer unblock()
	p, err := r.store.pod(id)
	if err != nil {
		return err
	}
	if err := r.StopPod(ctx, p.ID); err != nil {
		return err
	}
	for _, c := range r.store.podContainers(p.ID) {
		// A container removed meanwhile is removed.
		if err := r.RemoveContainer(ctx, c.ID); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove pod %s: %w", p.ID, err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r.nri.RemovePodSandbox(ctx, nriPod(p, r.store.podStatusOf(p)))
	if err := r.deleteContainerd(ctx, p.ID); err != nil {
		return fmt.Errorf("remove pod %s: %w", p.ID, err)
	}
	if err := podns.RemoveFiles(r.podDir(p.ID)); err != nil {
		return fmt.Errorf("remove pod %s: %w", p.ID, err)
	}
	// A container whose start was cut short by containerd's death can get
	// its cgroup after its removal cleaned up: the shim goes on with the
	// OCI runtime's create (chaos suite, a loaded machine). Its pod's
	// parent is where it is.
	if r.cgroupDriver == cgroups.DriverCgroupfs {
		r.cgroupHost.RemoveLeftoverChildren(path.Dir(p.CgroupsPath), func(id string) bool {
			_, err := r.store.container(id)
			return err == nil || r.store.podExact(id) != nil
		})
	}
	r.store.removeCheckpoints("pods", p.ID)
	r.store.deletePod(p.ID)
	r.stats.Forget(p.ID)
	r.store.releaseName(podName(p.Config.GetMetadata()), p.ID)
	r.publishPod(p, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
	return nil
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

// PodStatus reports a pod with its containers' statuses.
func (r *Runtime) PodStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.PodSandboxStatus, []*runtimeapi.ContainerStatus, map[string]string, error) {
	p, err := r.store.pod(id)
	if err != nil {
		return nil, nil, nil, err
	}
	st := r.podSandboxStatus(p)
	var cs []*runtimeapi.ContainerStatus
	for _, c := range r.store.podContainers(p.ID) {
		cs = append(cs, r.containerStatus(c))
	}
	var info map[string]string
	if verbose {
		pst := r.store.podStatusOf(p)
		info, err = jsonInfo(map[string]any{"info": map[string]any{
			"pid": pst.PID, "pause": !p.Infraless, "pinnedNamespaces": p.Pinned,
			"netns": p.NetNSPath, "cgroupsPath": p.CgroupsPath, "runtimeHandler": p.RuntimeHandler,
			"runtimeType": r.runtimeTypeOf(p.RuntimeHandler), "files": p.Files, "config": p.Config,
			"overhead": pst.Overhead, "resources": pst.Resources, "network": pst.Network,
		}})
		if err != nil {
			return nil, nil, nil, err
		}
	}
	return st, cs, info, nil
}

func (r *Runtime) podSandboxStatus(p *Pod) *runtimeapi.PodSandboxStatus {
	st := r.store.podStatusOf(p)
	out := &runtimeapi.PodSandboxStatus{
		Id:             p.ID,
		Metadata:       p.Config.GetMetadata(),
		State:          st.State,
		CreatedAt:      p.CreatedAt.UnixNano(),
		Labels:         p.Config.GetLabels(),
		Annotations:    p.Config.GetAnnotations(),
		RuntimeHandler: p.RuntimeHandler,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
			Options: p.Config.GetLinux().GetSecurityContext().GetNamespaceOptions(),
		}},
	}
	if st.Network.IP != "" {
		out.Network = &runtimeapi.PodSandboxNetworkStatus{Ip: st.Network.IP}
		for _, ip := range st.Network.AdditionalIPs {
			out.Network.AdditionalIps = append(out.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	return out
}

// PodFilter selects pods for ListPods; empty fields match everything.
type PodFilter struct {
	ID            string
	State         *PodState
	LabelSelector map[string]string
}

// ListPods lists pods matching f.
func (r *Runtime) ListPods(f PodFilter) []*runtimeapi.PodSandbox {
	var out []*runtimeapi.PodSandbox
	for _, p := range r.store.listPods() {
		st := r.store.podStatusOf(p)
		if !matchID(p.ID, f.ID) || (f.State != nil && st.State != *f.State) || !matchLabels(p.Config.GetLabels(), f.LabelSelector) {
			continue
		}
		out = append(out, p.listItem(st.State))
	}
	return out
}

// listItem is the pod's ListPodSandbox entry in state st. Entries are
// shared by all callers and never changed: a new one is made when the state
// changes, so the CRI server can keep each entry's encoding for as long as
// the entry lives.
func (p *Pod) listItem(st runtimeapi.PodSandboxState) *runtimeapi.PodSandbox {
	if it := p.item.Load(); it != nil && it.State == st {
		return it
	}
	it := &runtimeapi.PodSandbox{
		Id: p.ID, Metadata: p.Config.GetMetadata(), State: st, CreatedAt: p.CreatedAt.UnixNano(),
		Labels: p.Config.GetLabels(), Annotations: p.Config.GetAnnotations(), RuntimeHandler: p.RuntimeHandler,
	}
	p.item.Store(it)
	return it
}

func matchID(id, want string) bool {
	return want == "" || id == want || (len(want) < len(id) && id[:len(want)] == want)
}

func matchLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
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

// UpdatePodResources records the pod-level resources kubelet applied to the
// pod cgroup, which kubelet owns; they are reported in the verbose status.
func (r *Runtime) UpdatePodResources(ctx context.Context, id string, overhead, resources *runtimeapi.LinuxContainerResources) error {
	ctx, unblock := r.nri.BlockSync(ctx)
	defer unblock()
	p, err := r.store.pod(id)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	st := r.store.podStatusOf(p)
	if st.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		return fmt.Errorf("%w: pod sandbox %s is not ready", errdefs.ErrFailedPrecondition, p.ID)
	}
	if err := r.nri.UpdatePodSandbox(ctx, nriPod(p, st), overhead, resources); err != nil {
		return fmt.Errorf("pod %s: %w", p.ID, err)
	}
	// Only the resources change: a pause exit recorded meanwhile stays (the
	// exit monitor does not take p.mu).
	st, err = r.store.updatePod(p, func(cur podStatus) (podStatus, error) {
		cur.Overhead, cur.Resources = overhead, resources
		return cur, nil
	})
	if err != nil {
		return err
	}
	r.nri.PostUpdatePodSandbox(ctx, nriPod(p, st))
	return nil
}
