package sandbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/sandbox/podnet"
	"github.com/accel-cri/accel-cri/sandbox/podns"
)

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
