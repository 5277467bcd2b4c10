package sandbox

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/pkg/cio"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/accel-cri/accel-cri/sandbox/shim"
)

// Exec processes of runc-type handlers of the managed containerd are
// driven over their shim's own socket (package shim); which containers
// qualify is decided here.

// directShimSocket returns the socket of container c's shim when its
// execs can be driven directly: a runc-type shim (other shims, gVisor's or
// a VM's, may speak another task API or hide exec processes differently)
// of the managed containerd, a bundle containerd wrote bootstrap
// parameters into. Otherwise the error wraps shim.ErrNotDirect.
func (r *Runtime) directShimSocket(c *Container) (string, error) {
	h, err := r.handlerOf(r.podHandlerName(c.PodID))
	if err != nil {
		return "", fmt.Errorf("%w: %w", shim.ErrNotDirect, err)
	}
	if !h.kind.directExec() {
		return "", fmt.Errorf("%w: runtime type %s", shim.ErrNotDirect, h.runtimeType)
	}
	return r.shims.Socket(c.ID)
}

// shimSocket returns the task's shim socket for direct execs, found by
// lookup on first use. A task keeps its shim for life, and a failed lookup
// (not a runc shim, no bootstrap file) would fail the same way again.
func (t *runningTask) shimSocket(lookup func() (string, error)) (string, error) {
	t.shimOnce.Do(func() { t.shimPath, t.shimPathErr = lookup() })
	return t.shimPath, t.shimPathErr
}

// newDirectExec creates exec process execID in container id's task over
// the shim at socket. An error wrapping shim.ErrNotDirect says nothing was
// created: the exec may go through containerd.
func (r *Runtime) newDirectExec(ctx context.Context, socket, id, execID string, spec *runtimespec.Process, stdio cio.Config) (execProcess, error) {
	p, err := r.shims.NewExec(ctx, socket, id, execID, spec, stdio)
	if err != nil {
		return nil, err
	}
	return directExec{p}, nil
}

// directExec is an exec process driven over its shim's socket.
type directExec struct{ p *shim.Exec }

func (d directExec) start(ctx context.Context) error               { return d.p.Start(ctx) }
func (d directExec) wait(ctx context.Context) (uint32, error)      { return d.p.Wait(ctx) }
func (d directExec) kill(ctx context.Context) error                { return d.p.Kill(ctx) }
func (d directExec) closeStdin(ctx context.Context) error          { return d.p.CloseStdin(ctx) }
func (d directExec) resize(ctx context.Context, w, h uint32) error { return d.p.Resize(ctx, w, h) }
func (d directExec) delete(ctx context.Context) error              { return d.p.Delete(ctx) }
