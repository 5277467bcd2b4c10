package sandbox

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/images"
	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/sandbox/shim"
	"github.com/accel-cri/accel-cri/sandbox/spec"
	"github.com/accel-cri/accel-cri/sandbox/stdio"
)

// Exit reasons kubelet shows.
const (
	reasonCompleted  = "Completed"
	reasonError      = "Error"
	reasonOOMKilled  = "OOMKilled"
	reasonStartError = "StartError"
	reasonUnknown    = "Unknown"
	// exitCodeStartError is what a container that failed to start reports.
	exitCodeStartError = 128
	// exitCodeUnknown is reported when the exit happened while nobody
	// could observe it and containerd kept no status (the shim was lost).
	exitCodeUnknown = 255
)

// CreateContainer creates a container in a ready pod from an image that is
// present. It does not start it.
func (r *Runtime) CreateContainer(ctx context.Context, podID string, cfg *runtimeapi.ContainerConfig) (_ string, retErr error) {
	p, err := r.store.pod(podID)
	if err != nil {
		return "", err
	}
	pst := r.store.podStatusOf(p)
	if pst.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		return "", fmt.Errorf("%w: pod sandbox %s is not ready", errdefs.ErrFailedPrecondition, p.ID)
	}
	// Every container runs under its pod's handler: VM and gVisor shims
	// put a pod's containers into the pod's sandbox.
	h, err := r.handlerOf(p.RuntimeHandler)
	if err != nil {
		return "", fmt.Errorf("pod sandbox %s: %w", p.ID, err)
	}
	img, err := r.images.Get(ctx, cfg.GetImage().GetImage())
	if err != nil {
		return "", fmt.Errorf("image %q of container %q: %w", cfg.GetImage().GetImage(), cfg.GetMetadata().GetName(), err)
	}
	cimg, err := r.containerdImage(ctx, img, h.snapshotter)
	if err != nil {
		return "", err
	}
	id := newID()
	name := containerName(p.ID, cfg.GetMetadata())
	if err := r.store.reserveName(name, id); err != nil {
		return "", err
	}
	defer func() {
		if retErr != nil {
			r.store.releaseName(name, id)
		}
	}()

	meta := containerMeta{
		ID: id, PodID: p.ID, Config: cfg, ImageName: cfg.GetImage().GetImage(), ImageID: img.ID,
		ImageRef: imageRef(img), CreatedAt: time.Now(),
	}
	if dir, rel := p.Config.GetLogDirectory(), cfg.GetLogPath(); dir != "" && rel != "" {
		meta.LogPath = filepath.Join(dir, rel)
	}
	meta.StopSignal = stopSignalOf(cfg, img.Spec.Config.StopSignal)
	if meta.CgroupsPath, err = cgroups.Path(r.cgroupDriver, p.Config.GetLinux().GetCgroupParent(), id); err != nil {
		return "", err
	}
	var targetPID uint32
	if t := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetTargetId(); t != "" {
		tc, err := r.store.container(t)
		if err != nil {
			return "", fmt.Errorf("namespace target: %w", err)
		}
		if targetPID = r.store.containerStatusOf(tc).PID; targetPID == 0 {
			return "", fmt.Errorf("%w: namespace target container %s is not running", errdefs.ErrFailedPrecondition, t)
		}
	}
	uids, gids, err := spec.UsernsMappings(p.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions())
	if err != nil {
		return "", fmt.Errorf("pod %w", err)
	}
	vols, err := r.planImageVolumes(ctx, id, cfg, h.snapshotter, uids, gids)
	if err != nil {
		return "", err
	}
	meta.ImageVolumes = vols
	plan, err := r.specs.Container(spec.Container{
		ID: id, SandboxID: p.ID, PodConfig: p.Config, Config: cfg,
		Image: img.Spec.Config, ImageName: meta.ImageName,
		SandboxPID: pst.PID, Pinned: spec.Pinned{UTS: p.Pinned.UTS, IPC: p.Pinned.IPC}, TargetPID: targetPID, NetNSPath: p.NetNSPath,
		HostnamePath: p.Files.HostnamePath, HostsPath: p.Files.HostsPath, ResolvPath: p.Files.ResolvPath, ShmPath: p.Files.ShmPath,
		CgroupsPath: meta.CgroupsPath, Handler: specHandler(p.RuntimeHandler, h),
		PassedAnnotations: containerPassedAnnotations(h, p.Config.GetAnnotations(), cfg.GetAnnotations()),
	})
	if err != nil {
		return "", err
	}
	if err := prepareSpecHost(plan, cfg.GetLinux().GetSecurityContext().GetPrivileged()); err != nil {
		return "", err
	}
	labels := map[string]string{labelKind: kindCtr, labelPodID: p.ID}
	if len(vols) > 0 {
		// The image volumes' views are kept by the container's record
		// (its labels); until it exists, by a lease that NewContainer
		// takes over.
		lctx, done, err := r.client.WithLease(ctx)
		if err != nil {
			return "", fmt.Errorf("create container %q: %w", cfg.GetMetadata().GetName(), err)
		}
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(lctx), time.Minute)
			defer cancel()
			logErr(whileUnavailable(dctx, func() error { return done(dctx) }), "Delete the lease of a container's creation", "container", id)
		}()
		ctx = lctx
		if err := r.mountImageVolumes(ctx, id, vols); err != nil {
			return "", err
		}
		bindImageVolumes(plan.Binds(), vols)
		defer func() {
			if retErr != nil {
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
				defer cancel()
				logErr(r.removeImageVolumes(dctx, id, vols), "Undo image volumes", "container", id)
			}
		}()
		maps.Copy(labels, imageVolumeRefLabels(vols))
	}
	// NRI plugins adjust the spec once it is built (nri.go); the sync
	// block covers that event until the container is in the store, not
	// the image work before.
	ctx, unblock := r.nri.BlockSync(ctx)
	defer unblock()
	npod := nriPod(p, pst)
	var nriHooked, nriAdjusted bool
	defer func() {
		if retErr != nil && nriHooked {
			r.undoNRICreate(ctx, npod, meta)
		}
	}()
	// The spec's last option, and an NRI adjustment, keep the spec
	// containerd stores: it is not read back.
	var ctrSpec *runtimespec.Spec
	ctr, err := r.client.NewContainer(ctx, id,
		r.withRootfsSnapshot(id, img, cimg, rootfsRemapOpts(uids, gids)),
		containerd.WithNewSpec(plan.Opts(&ctrSpec)...),
		r.withNRIAdjustment(npod, &meta, &ctrSpec, &nriHooked, &nriAdjusted),
		containerd.WithRuntime(h.runtimeType, h.options),
		containerd.WithContainerLabels(labels),
		containerd.WithContainerExtension(extContainerMeta, &meta),
	)
	if err != nil {
		return "", fmt.Errorf("create container %q: %w", cfg.GetMetadata().GetName(), err)
	}
	defer func() {
		if retErr != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			logErr(ctr.Delete(dctx, containerd.WithSnapshotCleanup), "Undo container", "container", id)
		}
	}()
	c := newContainer(meta)
	c.process = ctrSpec.Process
	st := containerStatus{State: runtimeapi.ContainerState_CONTAINER_CREATED, Resources: cfg.GetLinux().GetResources(), User: userOf(ctrSpec)}
	if nriAdjusted {
		st.Resources = resourcesFromSpec(st.Resources, ctrSpec)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := r.store.updateContainer(c, func(containerStatus) (containerStatus, error) { return st, nil }); err != nil {
		return "", err
	}
	r.store.addContainer(c)
	r.publishContainer(c, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT)
	r.nri.PostCreateContainer(ctx, npod, nriContainer(c, st, ctrSpec))
	return id, nil
}

// imageRef is the reference the CRI reports as image_ref: the digest
// reference when the image has one (it names the exact content), else the id.
func imageRef(img images.Image) string {
	if len(img.RepoDigests) > 0 {
		return img.RepoDigests[0]
	}
	return img.ID
}

// stopSignalOf picks the signal that stops the container gracefully: the
// CRI's (from the pod spec's lifecycle), else the image's, else SIGTERM.
func stopSignalOf(cfg *runtimeapi.ContainerConfig, imageSignal string) string {
	if s := cfg.GetStopSignal(); s != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		return ociSignalName(s)
	}
	if imageSignal != "" {
		return imageSignal
	}
	return "SIGTERM"
}

// StartContainer starts a created container with its output going to its
// CRI log file.
func (r *Runtime) StartContainer(ctx context.Context, id string) (retErr error) {
	ctx, unblock := r.nri.BlockSync(ctx)
	defer unblock()
	c, err := r.store.container(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := r.store.containerStatusOf(c)
	if st.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		return fmt.Errorf("%w: container %s is %s, not created", errdefs.ErrFailedPrecondition, c.ID, st.State)
	}
	p, err := r.store.pod(c.PodID)
	if err != nil {
		return err
	}
	if r.store.podStatusOf(p).State != runtimeapi.PodSandboxState_SANDBOX_READY {
		return fmt.Errorf("%w: pod sandbox %s of container %s is not ready", errdefs.ErrFailedPrecondition, p.ID, c.ID)
	}
	defer c.markStartDone()
	defer func() {
		if retErr != nil {
			// kubelet expects a container whose start failed to be exited.
			r.recordExit(c, func(cur containerStatus) containerStatus {
				cur.State = runtimeapi.ContainerState_CONTAINER_EXITED
				cur.FinishedAt = time.Now()
				cur.ExitCode, cur.Reason, cur.Message = exitCodeStartError, reasonStartError, retErr.Error()
				return cur
			})
		}
	}()

	ctr, err := r.client.LoadContainer(ctx, c.ID)
	if err != nil {
		return err
	}
	if c.recovered() {
		if err := r.clearStaleTask(ctx, c, false); err != nil {
			return fmt.Errorf("start container %s: %w", c.ID, err)
		}
	} else if p.shimSuspect.Swap(false) {
		r.shims.Reap(ctx, "start after a failed task create in the pod", r.shimsOfPod(p))
	}
	taskOpts, err := taskIOOwnerOpts(ctx, c, ctr)
	if err != nil {
		return fmt.Errorf("start container %s: %w", c.ID, err)
	}
	var cio *stdio.ContainerIO
	var task containerd.Task
	err = retryShimGone(ctx, time.Now().Add(killWait), func() error {
		var err error
		if cio, err = stdio.New(r.containerDir(c.ID), c.LogPath, stdio.Options{TTY: c.Config.GetTty(), Stdin: c.Config.GetStdin(), StdinOnce: c.Config.GetStdinOnce()}); err != nil {
			return err
		}
		if task, err = ctr.NewTask(ctx, cio.Creator(), taskOpts...); err != nil {
			cio.Close()
			return fmt.Errorf("create task: %w", err)
		}
		return nil
	}, func(err error) error {
		klog.V(2).InfoS("The pod's shim went away during the task's create; retrying", "container", c.ID, "err", err)
		return r.clearStaleTask(ctx, c, false)
	})
	if err != nil {
		// containerd or accel-cri's call may have died while the pod's
		// shim was starting: that shim can be left waiting, never serving,
		// and would take the pod's next task.
		p.shimSuspect.Store(true)
		return fmt.Errorf("start container %s: %w", c.ID, err)
	}
	cio.SetStdinCloser(stdinCloser(task))
	c.io = cio
	// NRI plugins hear of the start once the task exists; one may refuse it.
	npod, nctr, nriOK := r.nriContainerEvent(ctx, c, st)
	if nriOK {
		nctr.PID = task.Pid()
		err = r.nri.StartContainer(ctx, npod, nctr)
	}
	// The process starts during task.Start; taking the time before it keeps
	// started <= finished for a process that exits at once.
	startedAt := time.Now()
	if err == nil {
		err = task.Start(ctx)
	}
	if err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_, derr := task.Delete(dctx, containerd.WithProcessKill)
		logErr(derr, "Delete task that failed to start", "container", c.ID)
		return fmt.Errorf("start container %s: %w", c.ID, err)
	}
	cio.ReleaseHolds()
	if c.process != nil {
		c.running.Store(&runningTask{task: task, process: c.process})
	}
	st, err = r.store.updateContainer(c, func(cur containerStatus) (containerStatus, error) {
		if cur.State != runtimeapi.ContainerState_CONTAINER_CREATED {
			return cur, fmt.Errorf("%w: container %s became %s while it started", errdefs.ErrFailedPrecondition, c.ID, cur.State)
		}
		cur.State, cur.PID, cur.StartedAt = runtimeapi.ContainerState_CONTAINER_RUNNING, task.Pid(), startedAt
		return cur, nil
	})
	if err != nil {
		return err
	}
	r.stats.Started(c.ID)
	r.publishContainer(c, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	if nriOK {
		nctr.State, nctr.PID, nctr.StartedAt = st.State, st.PID, st.StartedAt
		r.nri.PostStartContainer(ctx, npod, nctr)
	}
	return nil
}

// StopContainer sends the stop signal, waits up to timeout seconds, then
// SIGKILL. Stopping a stopped container succeeds; an unknown one is
// NotFound (the CRI edge makes that a success).
//
// It does not hold NRI's sync block: its NRI event is sent by whoever
// records the exit (recordExit, mostly the exit monitor, which holds no
// block either), and holding the block through the grace period would
// stall every CRI call of the node while a plugin registers.
func (r *Runtime) StopContainer(ctx context.Context, id string, timeout int64) error {
	c, err := r.store.container(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := r.store.containerStatusOf(c)
	if st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return nil
	}
	var task containerd.Task
	if rt := c.running.Load(); rt != nil {
		task = rt.task
	} else {
		task, err = r.loadTask(ctx, c.ID)
		if errdefs.IsNotFound(err) {
			r.recordExit(c, exitInfo{code: exitCodeUnknown, at: time.Now(), unknown: true}.after)
			return nil
		}
		if err != nil {
			return fmt.Errorf("stop container %s: %w", c.ID, err)
		}
	}
	if timeout > 0 {
		sig, err := parseSignal(c.StopSignal)
		if err != nil {
			sig = syscall.SIGTERM
		}
		if err := task.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("stop container %s: signal %s: %w", c.ID, c.StopSignal, err)
		}
		select {
		case <-c.exited:
			return nil
		case <-time.After(time.Duration(timeout) * time.Second):
			klog.V(2).InfoS("Container did not stop in time; killing", "container", c.ID, "timeout", timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := r.killAll(ctx, c.ID, task); err != nil {
		return fmt.Errorf("stop container %s: kill: %w", c.ID, err)
	}
	return awaitExit(ctx, c.exited, func() { r.reapContainer(ctx, c) })
}

// retryShimGone runs create, and again after cleanup (at most every 100
// ms, until deadline) while it fails because the shim went away. A pod's
// containers share one shim, which containerd shuts down once the pod's
// last task is deleted: a container started just as its pod's only other
// one exited and was deleted (an init container, then the next) can pick
// the shim containerd is closing and fail with "ttrpc: closed" (seen in
// the e2e suite). A new create gets a new shim.
func retryShimGone(ctx context.Context, deadline time.Time, create func() error, cleanup func(error) error) error {
	for {
		err := create()
		if err == nil || !shimGone(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return err
		}
		if cerr := cleanup(err); cerr != nil {
			return fmt.Errorf("%w (and cleaning up for a retry: %v)", err, cerr)
		}
	}
}

// shimGone reports whether err says the connection to a shim closed:
// shim.IsConnError, or its text once it crossed containerd's API, which keeps
// only the text. It also covers the shim start that found the pod's shim
// socket but was refused on it ("failed to start shim: start failed:
// failed to create TTRPC connection: dial unix /run/containerd/s/...:
// connect: connection refused"): the shim listening there was closing its
// socket as its last task went (seen in the e2e suite under load).
func shimGone(err error) bool {
	msg := err.Error()
	return shim.IsConnError(err) || strings.Contains(msg, ttrpc.ErrClosed.Error()) ||
		strings.Contains(msg, "failed to start shim") && strings.Contains(msg, "connection refused")
}

// killAll SIGKILLs every process of a container's task. The kill can fail
// with "ttrpc: closed" when the pod's other tasks are deleted at the same
// moment and containerd drops its connection to their shared shim (seen
// once in a few thousand StopPodSandbox in the soak): the task is looked up
// again and the kill retried, for up to killWait.
func (r *Runtime) killAll(ctx context.Context, id string, task containerd.Task) error {
	deadline := time.Now().Add(killWait)
	for {
		err := task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll)
		if err == nil || errdefs.IsNotFound(err) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		klog.V(2).InfoS("Kill failed; retrying", "container", id, "err", err)
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return err
		}
		t, lerr := r.loadTask(ctx, id)
		if errdefs.IsNotFound(lerr) {
			return nil
		}
		if lerr == nil {
			task = t
		}
	}
}

// RemoveContainer stops the container if it runs and removes it with its
// root filesystem. Its log file stays (kubelet owns logs). An unknown
// container is NotFound (the CRI edge makes that a success).
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	ctx, unblock := r.nri.BlockSync(ctx)
	defer unblock()
	c, err := r.store.container(id)
	if err != nil {
		return err
	}
	if err := r.StopContainer(ctx, c.ID, 0); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Plugins heard of the stop when the container exited; one that never
	// started stops now.
	if npod, nctr, ok := r.nriContainerEvent(ctx, c, r.store.containerStatusOf(c)); ok {
		if nctr.State == runtimeapi.ContainerState_CONTAINER_CREATED {
			r.nri.StopContainer(ctx, npod, nctr)
		}
		r.nri.RemoveContainer(ctx, npod, nctr)
	}
	if err := r.deleteContainerd(ctx, c.ID); err != nil {
		return fmt.Errorf("remove container %s: %w", c.ID, err)
	}
	if err := r.removeImageVolumes(ctx, c.ID, c.ImageVolumes); err != nil {
		return fmt.Errorf("remove container %s: %w", c.ID, err)
	}
	// A start cut short, by accel-cri's death or by containerd's in the
	// middle of the task's creation, can leave a task, an OCI runtime
	// container and its cgroup behind.
	neverStarted := r.store.containerStatusOf(c).StartedAt.IsZero()
	if c.recovered() || neverStarted {
		if neverStarted {
			if err := r.clearStaleTask(ctx, c, true); err != nil {
				return fmt.Errorf("remove container %s: %w", c.ID, err)
			}
		}
		r.cgroupHost.RemoveLeftover(c.CgroupsPath)
	}
	if c.io != nil {
		c.io.Close()
	}
	if err := os.RemoveAll(r.containerDir(c.ID)); err != nil {
		return fmt.Errorf("remove container %s: %w", c.ID, err)
	}
	r.store.removeCheckpoints("containers", c.ID)
	r.store.deleteContainer(c.ID)
	r.stats.Forget(c.ID)
	r.store.releaseName(containerName(c.PodID, c.Config.GetMetadata()), c.ID)
	r.publishContainer(c, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
	return nil
}

// ContainerStatus reports one container.
func (r *Runtime) ContainerStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.ContainerStatus, map[string]string, error) {
	c, err := r.store.container(id)
	if err != nil {
		return nil, nil, err
	}
	var info map[string]string
	if verbose {
		st := r.store.containerStatusOf(c)
		info, err = jsonInfo(map[string]any{"info": map[string]any{
			"sandboxID": c.PodID, "pid": st.PID, "cgroupsPath": c.CgroupsPath, "stopSignal": c.StopSignal,
			"runtimeType": r.runtimeTypeOf(r.podHandlerName(c.PodID)), "config": c.Config,
		}})
		if err != nil {
			return nil, nil, err
		}
	}
	return r.containerStatus(c), info, nil
}

func (r *Runtime) containerStatus(c *Container) *runtimeapi.ContainerStatus {
	st := r.store.containerStatusOf(c)
	out := &runtimeapi.ContainerStatus{
		Id:          c.ID,
		Metadata:    c.Config.GetMetadata(),
		State:       st.State,
		CreatedAt:   c.CreatedAt.UnixNano(),
		ExitCode:    st.ExitCode,
		Image:       &runtimeapi.ImageSpec{Image: c.ImageName, Annotations: c.Config.GetImage().GetAnnotations()},
		ImageRef:    c.ImageRef,
		ImageId:     c.ImageID,
		Reason:      st.Reason,
		Message:     st.Message,
		Labels:      c.Config.GetLabels(),
		Annotations: c.Config.GetAnnotations(),
		Mounts:      c.mounts,
		LogPath:     c.LogPath,
		User:        st.User,
	}
	if !st.StartedAt.IsZero() {
		out.StartedAt = st.StartedAt.UnixNano()
	}
	if !st.FinishedAt.IsZero() {
		out.FinishedAt = st.FinishedAt.UnixNano()
	}
	if st.Resources != nil {
		out.Resources = &runtimeapi.ContainerResources{Linux: st.Resources}
	}
	out.StopSignal = criSignal(c.StopSignal)
	return out
}

// ContainerFilter selects containers for ListContainers.
type ContainerFilter struct {
	ID            string
	PodID         string
	State         *ContainerState
	LabelSelector map[string]string
}

// ListContainers lists containers matching f.
func (r *Runtime) ListContainers(f ContainerFilter) []*runtimeapi.Container {
	var out []*runtimeapi.Container
	for _, c := range r.store.listContainers() {
		st := r.store.containerStatusOf(c)
		if !matchID(c.ID, f.ID) || !matchID(c.PodID, f.PodID) || (f.State != nil && st.State != *f.State) || !matchLabels(c.Config.GetLabels(), f.LabelSelector) {
			continue
		}
		out = append(out, c.listItem(st.State))
	}
	return out
}

// listItem is the container's ListContainers entry in state st, shared and
// never changed like Pod.listItem's.
func (c *Container) listItem(st runtimeapi.ContainerState) *runtimeapi.Container {
	if it := c.item.Load(); it != nil && it.State == st {
		return it
	}
	it := &runtimeapi.Container{
		Id: c.ID, PodSandboxId: c.PodID, Metadata: c.Config.GetMetadata(),
		Image: &runtimeapi.ImageSpec{Image: c.ImageName}, ImageRef: c.ImageRef, ImageId: c.ImageID,
		State: st, CreatedAt: c.CreatedAt.UnixNano(),
		Labels: c.Config.GetLabels(), Annotations: c.Config.GetAnnotations(),
	}
	c.item.Store(it)
	return it
}

// UpdateContainerResources applies new limits to a created or running
// container and records them. NRI plugins see the request first and may
// change it.
func (r *Runtime) UpdateContainerResources(ctx context.Context, id string, res *runtimeapi.LinuxContainerResources) error {
	ctx, unblock := r.nri.BlockSync(ctx)
	defer unblock()
	c, err := r.store.container(id)
	if err != nil {
		return err
	}
	npod, nctr, nriOK := r.nriContainerEvent(ctx, c, r.store.containerStatusOf(c))
	if nriOK {
		if res, err = r.nri.UpdateContainer(ctx, npod, nctr, res); err != nil {
			return err
		}
	}
	if err := r.updateContainerResources(ctx, c.ID, func(*runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
		return res, nil
	}); err != nil {
		return err
	}
	if nriOK {
		nctr.Spec = r.containerSpec(ctx, c.ID)
		r.nri.PostUpdateContainer(ctx, npod, nctr)
	}
	return nil
}

// updateContainerResources is UpdateContainerResources without NRI's
// events, for the updates NRI plugins ask for: update gets the recorded
// resources under the container's lock and returns the new ones.
func (r *Runtime) updateContainerResources(ctx context.Context, id string, update func(*runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error)) error {
	c, err := r.store.container(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := r.store.containerStatusOf(c)
	switch st.State {
	case runtimeapi.ContainerState_CONTAINER_CREATED, runtimeapi.ContainerState_CONTAINER_RUNNING:
	default:
		return fmt.Errorf("%w: container %s is %s", errdefs.ErrFailedPrecondition, c.ID, st.State)
	}
	res, err := update(st.Resources)
	if err != nil {
		return err
	}
	ctr, err := r.client.LoadContainer(ctx, c.ID)
	if err != nil {
		return err
	}
	spec, err := ctr.Spec(ctx)
	if err != nil {
		return err
	}
	if err := r.specs.UpdateResources(spec, res); err != nil {
		return err
	}
	if err := ctr.Update(ctx, withSpec(spec)); err != nil {
		return fmt.Errorf("update spec of container %s: %w", c.ID, err)
	}
	if st.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
		task, err := ctr.Task(ctx, nil)
		if err != nil {
			return err
		}
		if err := task.Update(ctx, containerd.WithResources(spec.Linux.Resources)); err != nil {
			return fmt.Errorf("update resources of container %s: %w", c.ID, err)
		}
	}
	// Only the resources change: an exit recorded while containerd was
	// asked stays (the exit monitor does not take c.mu).
	_, err = r.store.updateContainer(c, func(cur containerStatus) (containerStatus, error) {
		cur.Resources = res
		return cur, nil
	})
	return err
}

// ReopenContainerLog makes a running container's output go to a fresh log
// file at its log path (kubelet renamed the old one for rotation).
func (r *Runtime) ReopenContainerLog(ctx context.Context, id string) error {
	c, err := r.store.container(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.store.containerStatusOf(c).State != runtimeapi.ContainerState_CONTAINER_RUNNING || c.io == nil {
		return fmt.Errorf("%w: container %s is not running", errdefs.ErrFailedPrecondition, c.ID)
	}
	if c.LogPath == "" {
		return fmt.Errorf("%w: container %s has no log path", errdefs.ErrFailedPrecondition, c.ID)
	}
	if err := c.io.ReopenLog(); err != nil {
		return fmt.Errorf("reopen log of container %s: %w", c.ID, err)
	}
	return nil
}
