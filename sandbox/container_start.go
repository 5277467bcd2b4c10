package sandbox

import (
	"context"
	"fmt"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/sandbox/shim"
	"github.com/accel-cri/accel-cri/sandbox/stdio"
)

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
