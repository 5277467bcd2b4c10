package sandbox

import (
	"context"
	"fmt"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

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
