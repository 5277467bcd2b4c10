package shim

import (
	"context"
	"fmt"
	"sync"
	"syscall"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	// The type URLs of the runtime spec's types, as containerd's client
	// registers them: an exec's spec is sent as a typeurl Any.
	_ "github.com/containerd/containerd/v2/core/runtime"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
)

// Exec processes of runc-type shims are driven over the shim's own ttrpc
// socket instead of through containerd: containerd keeps no record of exec
// processes (its task service forwards Exec, Start, Wait, Kill and Delete
// to the shim unchanged), so the hop through containerd is pure overhead on
// ExecSync's critical path. The shim still publishes the exec's events to
// containerd; the core's exit monitor ignores exits of exec processes.

// Exec is an exec process driven over its shim's socket.
type Exec struct {
	pool            *pool
	socket          string
	containerID, id string
	// mayRun: Start was asked and not refused; exited: Wait returned an
	// exit. Only a process that may run needs a kill before its delete
	// (waiting for one never started would block).
	mayRun, exited bool

	waitOnce sync.Once
	waitDone chan struct{} // closed when the Wait call returned
	waitCode uint32
	waitErr  error
	stopWait context.CancelFunc
}

// NewExec creates exec process id in task containerID of the shim at
// socket (Socket), with process spec and stdio. Failures that say nothing
// was created because the shim could not be reached wrap ErrNotDirect:
// containerd's path may still work.
func (s *Shims) NewExec(ctx context.Context, socket, containerID, id string, spec *runtimespec.Process, stdio cio.Config) (*Exec, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: not the managed containerd", ErrNotDirect)
	}
	return newExec(ctx, s.pool, socket, containerID, id, spec, stdio)
}

func newExec(ctx context.Context, conns *pool, socket, containerID, id string, spec *runtimespec.Process, stdio cio.Config) (*Exec, error) {
	anySpec, err := typeurl.MarshalAnyToProto(spec)
	if err != nil {
		return nil, err
	}
	req := &taskapi.ExecProcessRequest{
		ID: containerID, ExecID: id, Spec: anySpec,
		Stdin: stdio.Stdin, Stdout: stdio.Stdout, Stderr: stdio.Stderr, Terminal: stdio.Terminal,
	}
	tries := 0
	err = conns.call(ctx, socket, func(ctx context.Context, t taskapi.TTRPCTaskService) error {
		tries++
		_, err := t.Exec(ctx, req)
		return err
	})
	switch {
	case err == nil:
	case tries > 1 && errdefs.IsAlreadyExists(err):
		// The first try reached the shim before the connection broke.
	case IsConnError(err):
		return nil, fmt.Errorf("%w: %w", ErrNotDirect, err)
	default:
		return nil, err
	}
	return &Exec{pool: conns, socket: socket, containerID: containerID, id: id}, nil
}

// Start starts the process.
func (p *Exec) Start(ctx context.Context) error {
	err := p.pool.call(ctx, p.socket, func(ctx context.Context, t taskapi.TTRPCTaskService) error {
		_, err := t.Start(ctx, &taskapi.StartRequest{ID: p.containerID, ExecID: p.id})
		return err
	})
	// A broken connection or an ended ctx leaves it unknown whether the
	// process started; a refusal from the shim means it did not.
	p.mayRun = err == nil || IsConnError(err) || ctx.Err() != nil
	return err
}

// Wait returns the exit status, or ctx's error first. The shim answers one
// Wait call when the process exits; it is made once, with a context of its
// own, and not cancelled with ctx: a response to a cancelled ttrpc call is
// logged as an error by the client, and after a timeout the process is
// killed and waited for again.
func (p *Exec) Wait(ctx context.Context) (uint32, error) {
	p.waitOnce.Do(func() {
		// No deadline: an interactive session may run for hours. The
		// call ends with the process (killed at the latest by Delete),
		// the connection, or Delete's stopWait.
		wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		p.stopWait = cancel
		p.waitDone = make(chan struct{})
		go func() {
			defer close(p.waitDone)
			p.waitErr = p.pool.call(wctx, p.socket, func(ctx context.Context, t taskapi.TTRPCTaskService) error {
				r, err := t.Wait(ctx, &taskapi.WaitRequest{ID: p.containerID, ExecID: p.id})
				if err == nil {
					p.waitCode = r.ExitStatus
				}
				return err
			})
		}()
	})
	select {
	case <-p.waitDone:
		if p.waitErr == nil {
			p.exited = true
		}
		return p.waitCode, p.waitErr
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Kill sends the process SIGKILL.
func (p *Exec) Kill(ctx context.Context) error {
	return p.pool.call(ctx, p.socket, func(ctx context.Context, t taskapi.TTRPCTaskService) error {
		_, err := t.Kill(ctx, &taskapi.KillRequest{ID: p.containerID, ExecID: p.id, Signal: uint32(syscall.SIGKILL)})
		return err
	})
}

// CloseStdin makes the shim close the process's stdin.
func (p *Exec) CloseStdin(ctx context.Context) error {
	return p.pool.call(ctx, p.socket, func(ctx context.Context, t taskapi.TTRPCTaskService) error {
		_, err := t.CloseIO(ctx, &taskapi.CloseIORequest{ID: p.containerID, ExecID: p.id, Stdin: true})
		return err
	})
}

// Resize sets the size of the process's terminal.
func (p *Exec) Resize(ctx context.Context, w, h uint32) error {
	return p.pool.call(ctx, p.socket, func(ctx context.Context, t taskapi.TTRPCTaskService) error {
		_, err := t.ResizePty(ctx, &taskapi.ResizePtyRequest{ID: p.containerID, ExecID: p.id, Width: w, Height: h})
		return err
	})
}

// Delete removes the process from the shim; one that may still run is
// killed and waited for first (the shim refuses to delete a running one).
func (p *Exec) Delete(ctx context.Context) error {
	defer func() {
		if p.stopWait != nil {
			p.stopWait()
		}
	}()
	if p.mayRun && !p.exited {
		if err := p.Kill(ctx); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
			return err
		}
		if _, err := p.Wait(ctx); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	return p.pool.call(ctx, p.socket, func(ctx context.Context, t taskapi.TTRPCTaskService) error {
		_, err := t.Delete(ctx, &taskapi.DeleteRequest{ID: p.containerID, ExecID: p.id})
		return err
	})
}
