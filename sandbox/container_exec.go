package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/sandbox/shim"
	"github.com/accel-cri/accel-cri/sandbox/stdio"
)

// ExecSyncOutputLimit caps what ExecSync keeps of each of stdout and
// stderr. Output past it is read and discarded (the command never blocks on
// a full pipe) and the result holds the first ExecSyncOutputLimit bytes.
// Both streams together must fit one CRI message: kubelet's client and
// accel-cri's server accept 16 MiB, so each stream gets a little less than
// half. kubelet keeps even less of it (probes read 10 KiB).
const ExecSyncOutputLimit = 8<<20 - 64<<10

const (
	// execDeleteTimeout bounds the deletion of an exec process after it ended.
	execDeleteTimeout = time.Minute
	// execIODrainTimeout is how long an exec's output may stay open after
	// the process exited (a background child holds it) before the session
	// returns without the rest.
	execIODrainTimeout = 2 * time.Second
)

// TerminalSize is a terminal's size in characters.
type TerminalSize struct {
	Width, Height uint16
}

// StreamOptions are a client's ends of an exec or attach session. A nil
// stream was not requested. Stderr is ignored with a TTY (a terminal has
// one output). Resize delivers terminal size changes while TTY is set.
type StreamOptions struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	TTY            bool
	Resize         <-chan TerminalSize
}

// ExecSyncResult is the outcome of a command run to its end.
type ExecSyncResult struct {
	Stdout, Stderr []byte
	ExitCode       int32
}

// RunningContainer resolves id (a full id or a unique prefix) to a running
// container's full id: NotFound for an unknown one, FailedPrecondition for
// one that is not running.
func (r *Runtime) RunningContainer(id string) (string, error) {
	c, err := r.store.container(id)
	if err != nil {
		return "", err
	}
	if st := r.store.containerStatusOf(c).State; st != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return "", fmt.Errorf("%w: container %s is not running (%s)", errdefs.ErrFailedPrecondition, c.ID, st)
	}
	return c.ID, nil
}

// ExecSync runs cmd in a running container to its end and returns its
// output (each stream capped at ExecSyncOutputLimit) and exit code. With a
// timeout > 0 a command still running then is killed and the error wraps
// context.DeadlineExceeded.
func (r *Runtime) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (ExecSyncResult, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	stdout, stderr := stdio.NewCappedBuffer(ExecSyncOutputLimit), stdio.NewCappedBuffer(ExecSyncOutputLimit)
	code, err := r.Exec(ctx, id, cmd, StreamOptions{Stdout: stdout, Stderr: stderr})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && timeout > 0 {
			return ExecSyncResult{}, fmt.Errorf("command %q in container %s did not finish within %s: %w", cmd, id, timeout, err)
		}
		return ExecSyncResult{}, err
	}
	if stdout.Truncated() || stderr.Truncated() {
		klog.V(2).InfoS("ExecSync output truncated", "container", id, "cmd", cmd, "limit", ExecSyncOutputLimit)
	}
	return ExecSyncResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: code}, nil
}

// Exec runs cmd in a running container as an exec process of its task, with
// the container's user, environment, working directory, capabilities and
// security settings, and the client's streams. It returns the exit code
// once the process exited and its output was delivered. When ctx ends
// first, the process is killed and ctx's error returned. The exec process
// is always deleted (its FIFOs with it).
func (r *Runtime) Exec(ctx context.Context, id string, cmd []string, opts StreamOptions) (int32, error) {
	if len(cmd) == 0 {
		return 0, fmt.Errorf("%w: exec: the command is empty", errdefs.ErrInvalidArgument)
	}
	id, err := r.RunningContainer(id)
	if err != nil {
		return 0, err
	}
	rt, err := r.execTarget(ctx, id)
	if err != nil {
		return 0, err
	}

	execID := newID()[:32]
	fifoDir := filepath.Join(r.containerDir(id), "exec")
	pio, err := stdio.NewExecIO(fifoDir, execID, opts.TTY, opts.Stdin, opts.Stdout, opts.Stderr)
	if err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", id, err)
	}
	r.warm.Kick()
	proc, err := r.createExec(ctx, id, rt, execID, execProcessSpec(rt.process, cmd, opts.TTY), pio)
	if err != nil {
		pio.Cancel()
		_ = pio.Close()
		return 0, fmt.Errorf("exec in container %s: %w", id, err)
	}
	// Deleted once the session ended, in the background: the caller has
	// its result without waiting for the shim's cleanup (when a child still
	// holds the output open, the shim waits up to 10s for it).
	defer func() {
		r.execCleanup.Add(1)
		go func() {
			defer r.execCleanup.Done()
			r.deleteExec(ctx, id, execID, proc, pio)
		}()
	}()

	if err := proc.start(ctx); err != nil {
		return 0, fmt.Errorf("exec in container %s: start %q: %w", id, cmd[0], err)
	}
	pio.Start()
	_, direct := proc.(directExec)
	klog.V(4).InfoS("Exec started", "container", id, "exec", execID, "cmd", cmd, "tty", opts.TTY, "direct", direct)

	waitCtx, cancelWait := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWait()
	if opts.TTY && opts.Resize != nil {
		go forwardResize(waitCtx, opts.Resize, waitCtx.Done(), proc.resize)
	}
	if stdinEOF := pio.StdinEOF(); stdinEOF != nil {
		go func() {
			select {
			case <-stdinEOF:
				// The shim holds the stdin FIFO open itself: tell it to
				// close the process's stdin so the process reads EOF.
				cctx, cancel := context.WithTimeout(waitCtx, 10*time.Second)
				defer cancel()
				if err := proc.closeStdin(cctx); err != nil && !errdefs.IsNotFound(err) {
					klog.V(4).InfoS("Close exec stdin", "container", id, "exec", execID, "err", err)
				}
			case <-waitCtx.Done():
			}
		}()
	}

	code, err := proc.wait(ctx)
	if err == nil {
		// The exit can be reported before the last output is copied.
		pio.WaitOutput(execIODrainTimeout)
		klog.V(4).InfoS("Exec exited", "container", id, "exec", execID, "code", code)
		return int32(code), nil
	}
	if ctx.Err() == nil {
		return 0, fmt.Errorf("exec in container %s: wait: %w", id, err)
	}
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killWait)
	defer cancel()
	if err := proc.kill(kctx); err != nil && !errdefs.IsNotFound(err) {
		klog.ErrorS(err, "Kill exec process", "container", id, "exec", execID)
	}
	_, _ = proc.wait(kctx)
	return 0, fmt.Errorf("exec %q in container %s: %w", cmd[0], id, ctx.Err())
}

// execProcess is an exec process in a container's shim, driven over the
// shim's socket (directExec) or through containerd (containerdExec).
type execProcess interface {
	start(ctx context.Context) error
	// wait returns the exit code once the process exited, or ctx's error.
	wait(ctx context.Context) (uint32, error)
	kill(ctx context.Context) error
	closeStdin(ctx context.Context) error
	resize(ctx context.Context, w, h uint32) error
	// delete removes the process, killing it first if it may still run.
	delete(ctx context.Context) error
}

// createExec creates the exec process directly in the container's shim
// when that can be done (directShimSocket), else through containerd.
func (r *Runtime) createExec(ctx context.Context, id string, rt *runningTask, execID string, spec *runtimespec.Process, pio cio.IO) (execProcess, error) {
	socket, err := rt.shimSocket(func() (string, error) {
		c, err := r.store.container(id)
		if err != nil {
			return "", err
		}
		return r.directShimSocket(c)
	})
	if err == nil {
		p, err := r.newDirectExec(ctx, socket, id, execID, spec, pio.Config())
		if !errors.Is(err, shim.ErrNotDirect) {
			return p, err
		}
		klog.V(2).InfoS("Exec through containerd: the shim is not reachable directly", "container", id, "err", err)
	} else {
		klog.V(5).InfoS("Exec through containerd", "container", id, "reason", err)
	}
	return newContainerdExec(ctx, rt.task, execID, spec, pio)
}

// deleteExec removes an exec process from the shim, killing it if it still
// runs, then closes and removes its FIFOs.
func (r *Runtime) deleteExec(ctx context.Context, id, execID string, proc execProcess, pio cio.IO) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), execDeleteTimeout)
	defer cancel()
	if err := proc.delete(dctx); err != nil && !errdefs.IsNotFound(err) {
		klog.ErrorS(err, "Delete exec process", "container", id, "exec", execID)
	}
	pio.Cancel()
	pio.Wait()
	logErr(pio.Close(), "Remove exec FIFOs", "container", id, "exec", execID)
}

// containerdExec is an exec process driven through containerd, for shims
// accel-cri does not talk to directly.
type containerdExec struct {
	proc containerd.Process
	exit <-chan containerd.ExitStatus
	// stopWait ends the wait on containerd once the process is deleted.
	stopWait context.CancelFunc
}

func newContainerdExec(ctx context.Context, task containerd.Task, execID string, spec *runtimespec.Process, pio cio.IO) (*containerdExec, error) {
	proc, err := task.Exec(ctx, execID, spec, func(string) (cio.IO, error) { return pio, nil })
	if err != nil {
		return nil, err
	}
	// Wait before Start, so a process that exits at once is not missed.
	waitCtx, stopWait := context.WithCancel(context.WithoutCancel(ctx))
	exit, err := proc.Wait(waitCtx)
	if err != nil {
		stopWait()
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), execDeleteTimeout)
		defer cancel()
		_, _ = proc.Delete(dctx)
		return nil, err
	}
	return &containerdExec{proc: proc, exit: exit, stopWait: stopWait}, nil
}

func (p *containerdExec) start(ctx context.Context) error { return p.proc.Start(ctx) }

func (p *containerdExec) wait(ctx context.Context) (uint32, error) {
	select {
	case st, ok := <-p.exit:
		if !ok {
			return 0, fmt.Errorf("%w: exit already reported", errdefs.ErrFailedPrecondition)
		}
		code, _, err := st.Result()
		return code, err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (p *containerdExec) kill(ctx context.Context) error { return p.proc.Kill(ctx, syscall.SIGKILL) }

func (p *containerdExec) closeStdin(ctx context.Context) error {
	return p.proc.CloseIO(ctx, containerd.WithStdinCloser)
}

func (p *containerdExec) resize(ctx context.Context, w, h uint32) error {
	return p.proc.Resize(ctx, w, h)
}

func (p *containerdExec) delete(ctx context.Context) error {
	defer p.stopWait()
	_, err := p.proc.Delete(ctx, containerd.WithProcessKill)
	return err
}

// execProcessSpec is the container's process with cmd as arguments: the
// same user, groups, environment, working directory, capabilities,
// AppArmor/SELinux labels, no_new_privs and rlimits.
func execProcessSpec(process *runtimespec.Process, cmd []string, tty bool) *runtimespec.Process {
	var p runtimespec.Process
	if process != nil {
		p = *process
	}
	p.Args = cmd
	p.CommandLine = ""
	p.Terminal = tty
	p.ConsoleSize = nil
	return &p
}

// execTarget returns a running container's task and process spec: cached
// since Start, or read from containerd once after a restart of accel-cri.
func (r *Runtime) execTarget(ctx context.Context, id string) (*runningTask, error) {
	c, err := r.store.container(id)
	if err != nil {
		return nil, err
	}
	if rt := c.running.Load(); rt != nil {
		return rt, nil
	}
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", id, err)
	}
	spec, err := ctr.Spec(ctx)
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: read spec: %w", id, err)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("%w: container %s is not running", errdefs.ErrFailedPrecondition, id)
		}
		return nil, fmt.Errorf("exec in container %s: %w", id, err)
	}
	rt := &runningTask{task: task, process: spec.Process}
	c.running.Store(rt)
	return rt, nil
}

// waitExecCleanup waits for exec processes still being deleted.
func (r *Runtime) waitExecCleanup() {
	done := make(chan struct{})
	go func() {
		r.execCleanup.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(execDeleteTimeout):
	}
}

// forwardResize applies terminal size changes until the channel closes or
// done: the first size arrives right after the start.
func forwardResize(ctx context.Context, sizes <-chan TerminalSize, done <-chan struct{}, resize func(ctx context.Context, w, h uint32) error) {
	for {
		select {
		case <-done:
			return
		case sz, ok := <-sizes:
			if !ok {
				return
			}
			if sz.Width == 0 || sz.Height == 0 {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := resize(rctx, uint32(sz.Width), uint32(sz.Height))
			cancel()
			if err != nil {
				klog.V(4).InfoS("Resize terminal", "width", sz.Width, "height", sz.Height, "err", err)
			}
		}
	}
}
