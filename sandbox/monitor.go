package sandbox

import (
	"context"
	"sync"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// ioDrainTimeout bounds the wait for a container's last output to reach
// its log after the task exited.
const ioDrainTimeout = 5 * time.Second

// monitor follows containerd's task exit and OOM events and records them,
// so exits are noticed without polling. After each (re)subscription, which
// follows a containerd restart, it reconciles: exits that happened while it
// was not subscribed are found by asking containerd once.
type monitor struct {
	r      *Runtime
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup // exit handlers in flight
}

func newMonitor(r *Runtime) *monitor {
	ctx, cancel := context.WithCancel(context.Background())
	return &monitor{r: r, ctx: ctx, cancel: cancel, done: make(chan struct{})}
}

func (m *monitor) start() { go m.run() }

func (m *monitor) stop() {
	m.cancel()
	<-m.done
	m.wg.Wait()
}

func (m *monitor) run() {
	defer close(m.done)
	backoff := 100 * time.Millisecond
	for m.ctx.Err() == nil {
		ns := m.r.namespace
		evs, errs := m.r.client.Subscribe(m.ctx,
			`topic=="/tasks/exit",namespace=="`+ns+`"`,
			`topic=="/tasks/oom",namespace=="`+ns+`"`)
		m.reconcile()
		err := m.consume(evs, errs)
		if m.ctx.Err() != nil {
			return
		}
		klog.V(2).InfoS("Event subscription ended; resubscribing", "err", err, "backoff", backoff)
		select {
		case <-m.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (m *monitor) consume(evs <-chan *events.Envelope, errs <-chan error) error {
	for {
		select {
		case <-m.ctx.Done():
			return m.ctx.Err()
		case err := <-errs:
			return err
		case env := <-evs:
			if env == nil {
				continue
			}
			ev, err := typeurl.UnmarshalAny(env.Event)
			if err != nil {
				klog.ErrorS(err, "Decode containerd event", "topic", env.Topic)
				continue
			}
			m.handle(ev)
		}
	}
}

func (m *monitor) handle(ev any) {
	switch e := ev.(type) {
	case *eventtypes.TaskExit:
		if e.ID != e.ContainerID {
			return // an exec process, not the container's init
		}
		exit := exitInfo{code: int32(e.ExitStatus), at: e.ExitedAt.AsTime(), pid: e.Pid}
		if p := m.r.store.podExact(e.ContainerID); p != nil {
			if !p.Infraless {
				m.async(func(ctx context.Context) { m.r.reapPause(ctx, p) })
			}
			return
		}
		if c := m.r.store.containerExact(e.ContainerID); c != nil {
			m.async(func(ctx context.Context) { m.r.handleContainerExit(ctx, c, &exit) })
		}
	case *eventtypes.TaskOOM:
		// The kernel OOM-killed a process of the container: the exit
		// that follows is reported as OOMKilled.
		if c := m.r.store.containerExact(e.ContainerID); c != nil {
			_, err := m.r.store.updateContainer(c, func(st containerStatus) (containerStatus, error) {
				st.OOMKilled = true
				return st, nil
			})
			logErr(err, "Record OOM kill", "container", c.ID)
		}
	}
}

func (m *monitor) async(f func(ctx context.Context)) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
		defer cancel()
		f(ctx)
	}()
}

// reconcile finds exits missed while no subscription was active. It also
// looks for shims left serving nothing: a containerd that restarts removes
// the bundles of shims it cannot load (one killed while it started a shim
// leaves that shim waiting for a reader of its log, see sandbox/shim).
func (m *monitor) reconcile() {
	m.async(func(ctx context.Context) { m.r.shims.Reap(ctx, "containerd (re)subscribed", nil) })
	ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
	defer cancel()
	for _, p := range m.r.store.listPods() {
		// A pod without a pause process has no task to lose. PID 0:
		// RunPodSandbox is still making the pod (its zero status reads
		// READY) and the pause task may not exist yet; reaping it here
		// killed pods created right after a containerd restart (found by
		// the chaos suite).
		if st := m.r.store.podStatusOf(p); p.Infraless || st.State != runtimeapi.PodSandboxState_SANDBOX_READY || st.PID == 0 {
			continue
		}
		if gone, _ := m.r.taskGone(ctx, p.ID); gone {
			m.async(func(ctx context.Context) { m.r.reapPause(ctx, p) })
		}
	}
	for _, c := range m.r.store.listContainers() {
		if m.r.store.containerStatusOf(c).State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			continue
		}
		if gone, _ := m.r.taskGone(ctx, c.ID); gone {
			m.async(func(ctx context.Context) { m.r.handleContainerExit(ctx, c, nil) })
		}
	}
}

// taskGone reports whether the task has stopped or no longer exists.
func (r *Runtime) taskGone(ctx context.Context, id string) (bool, error) {
	task, err := r.loadTask(ctx, id)
	if errdefs.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	st, err := task.Status(ctx)
	if err != nil {
		return errdefs.IsNotFound(err), err
	}
	return st.Status == containerd.Stopped, nil
}

// exitInfo is how a container ended.
type exitInfo struct {
	code    int32
	at      time.Time
	unknown bool   // nobody saw the exit and containerd kept no status
	pid     uint32 // the process that exited, when an event said (else 0)
}

// staleExit says whether an exit event is for a process that is not the
// container's recorded task: the init of an earlier, cut-short start of
// the same container, which the start's retry killed (clearStaleTask) and
// whose shim reports its exit under the container's id, possibly after
// the new task started. Taken for the new task's exit, it deleted that
// task and recorded 137 (seen in the chaos suite).
func staleExit(st containerStatus, exit *exitInfo) bool {
	if exit == nil || exit.pid == 0 {
		return false
	}
	return st.State != runtimeapi.ContainerState_CONTAINER_RUNNING || (st.PID != 0 && st.PID != exit.pid)
}

// handleContainerExit waits for Start to finish (an exit can be reported
// before Start returns), lets the output drain into the log, deletes the
// task and records the exit. exit is nil when only containerd knows it.
func (r *Runtime) handleContainerExit(ctx context.Context, c *Container, exit *exitInfo) {
	select {
	case <-c.startDone:
	case <-ctx.Done():
		return
	}
	if st := r.store.containerStatusOf(c); staleExit(st, exit) {
		klog.V(2).InfoS("Ignoring the exit of a process that is not the container's task", "container", c.ID, "pid", exit.pid, "taskPid", st.PID, "state", st.State)
		return
	}
	// Deleting the task deletes containerd's only record of the exit, and
	// the output drain below can take seconds: a crash in between used to
	// leave a lost task (Unknown, 255). The exit goes to the checkpoint
	// first, so the next start reports it.
	kept := false // exit is one HarvestExits kept
	if exit == nil {
		if info, ok := r.stoppedTaskExit(ctx, c.ID); ok {
			exit = &info
		} else if info, ok := r.keptExit(c.ID, r.store.containerStatusOf(c).PID); ok {
			exit = &info // a restarted containerd deleted the task
			kept = true
		}
	}
	if exit != nil {
		err := r.store.persistExit(c, *exit)
		logErr(err, "Checkpoint container exit", "container", c.ID)
		if kept && err == nil {
			r.dropKeptExit(c.ID)
		}
	}
	if c.io != nil && !c.io.Wait(ioDrainTimeout) {
		klog.InfoS("Container output still open after its exit; closing", "container", c.ID)
	}
	info := r.deleteTask(ctx, c.ID)
	if exit == nil {
		exit = &info
	}
	if c.io != nil {
		c.io.Close()
	}
	r.recordExit(c, exit.after)
}

// reapContainer records the exit of a container whose exit event was not
// seen, asking containerd for the status.
func (r *Runtime) reapContainer(ctx context.Context, c *Container) {
	info := r.deleteTask(ctx, c.ID)
	if c.io != nil {
		c.io.Close()
	}
	r.recordExit(c, info.after)
}

// deleteTask deletes a stopped (or killed) task and returns its exit.
func (r *Runtime) deleteTask(ctx context.Context, id string) exitInfo {
	task, err := r.loadTask(ctx, id)
	if err != nil {
		return exitInfo{code: exitCodeUnknown, at: time.Now(), unknown: true}
	}
	st, err := killAndDeleteTask(ctx, task)
	if err != nil || st == nil {
		if err != nil && !errdefs.IsNotFound(err) {
			klog.ErrorS(err, "Delete exited task", "id", id)
		}
		return exitInfo{code: exitCodeUnknown, at: time.Now(), unknown: true}
	}
	return exitInfo{code: int32(st.ExitCode()), at: st.ExitTime()}
}

// stoppedTaskExit returns the exit containerd holds for a stopped task.
func (r *Runtime) stoppedTaskExit(ctx context.Context, id string) (exitInfo, bool) {
	task, err := r.loadTask(ctx, id)
	if err != nil {
		return exitInfo{}, false
	}
	st, err := task.Status(ctx)
	if err != nil || st.Status != containerd.Stopped {
		return exitInfo{}, false
	}
	return exitInfo{code: int32(st.ExitStatus), at: st.ExitTime}, true
}

// after is st after the exit e, for recordExit.
func (e exitInfo) after(st containerStatus) containerStatus { return exitedStatus(st, e) }

// exitedStatus is st after the exit e.
func exitedStatus(st containerStatus, e exitInfo) containerStatus {
	st.State = runtimeapi.ContainerState_CONTAINER_EXITED
	st.PID = 0
	st.ExitCode = e.code
	st.FinishedAt = e.at
	if st.FinishedAt.IsZero() {
		st.FinishedAt = time.Now()
	}
	switch {
	case st.OOMKilled:
		st.Reason = reasonOOMKilled
	case e.unknown:
		st.Reason, st.Message = reasonUnknown, "the container exited while its exit status could not be observed"
	case e.code == 0:
		st.Reason = reasonCompleted
	default:
		st.Reason = reasonError
	}
	return st
}

// recordExit is the one way a container's exit is recorded, whoever saw it
// (the exit monitor, Stop's reap, a failed Start, recovery): once per
// container, exited gets the current status and returns the exited one,
// which is persisted and published (updateContainer); then NRI plugins are
// told, waiters wake (a StopContainer returns once plugins know) and
// kubelet gets the event.
func (r *Runtime) recordExit(c *Container, exited func(containerStatus) containerStatus) {
	c.exitOnce.Do(func() {
		var st containerStatus
		_, err := r.store.updateContainer(c, func(cur containerStatus) (containerStatus, error) {
			st = exited(cur)
			return st, nil
		})
		logErr(err, "Record container exit", "container", c.ID)
		r.nriContainerStopped(c, st)
		close(c.exited)
		klog.V(2).InfoS("Container exited", "container", c.ID, "code", st.ExitCode, "reason", st.Reason)
		r.publishContainer(c, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
	})
}
