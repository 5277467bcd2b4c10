package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/status"

	"github.com/containerd/containerd/v2/pkg/cio"
)

// Exec processes of runc-type shims are driven over the shim's own ttrpc
// socket instead of through containerd: containerd keeps no record of exec
// processes (its task service forwards Exec, Start, Wait, Kill and Delete
// to the shim unchanged), so the hop through containerd is pure overhead on
// ExecSync's critical path. The shim still publishes the exec's events to
// containerd; the exit monitor ignores exits of exec processes.

// shimTaskAPIVersion is the shim bootstrap version whose shims serve the
// task API v3 (containerd.task.v3.Task), the only one spoken directly.
const shimTaskAPIVersion = 3

// shimDialTimeout bounds connecting to a shim's socket.
const shimDialTimeout = 2 * time.Second

// errNoDirectShim says an exec has to go through containerd.
var errNoDirectShim = errors.New("no direct shim connection")

// shimBootstrap is what containerd writes into a task's bundle as
// bootstrap.json (core/runtime/v2: the shim's start response, or the
// sandbox's shim for a task grouped into it).
type shimBootstrap struct {
	Version  int    `json:"version"`
	Address  string `json:"address"`
	Protocol string `json:"protocol"`
}

// readShimSocket returns the unix socket path of the shim serving the task
// whose bundle is bundle, from the bootstrap.json containerd wrote there.
// It fails (wrapping errNoDirectShim) for anything but a ttrpc shim of
// version 3 on a filesystem unix socket.
func readShimSocket(bundle string) (string, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "bootstrap.json"))
	if err != nil {
		return "", fmt.Errorf("%w: %w", errNoDirectShim, err)
	}
	var p shimBootstrap
	if err := json.Unmarshal(b, &p); err != nil {
		return "", fmt.Errorf("%w: bootstrap.json of %s: %w", errNoDirectShim, bundle, err)
	}
	if p.Version != shimTaskAPIVersion || !strings.EqualFold(p.Protocol, "ttrpc") {
		return "", fmt.Errorf("%w: shim of %s speaks %s version %d", errNoDirectShim, bundle, p.Protocol, p.Version)
	}
	path, _ := strings.CutPrefix(p.Address, "unix://")
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("%w: shim address %q of %s is not a unix socket path", errNoDirectShim, p.Address, bundle)
	}
	return path, nil
}

// directShimSocket returns the socket of container c's shim when its
// execs can be driven directly: a runc-type shim (other shims, gVisor's or
// a VM's, may speak another task API or hide exec processes differently),
// a bundle containerd wrote bootstrap parameters into.
func (r *Runtime) directShimSocket(c *Container) (string, error) {
	if r.bundleRoot == "" {
		return "", fmt.Errorf("%w: task bundles unknown (not the managed containerd)", errNoDirectShim)
	}
	h, err := r.handlerOf(r.podHandlerName(c.PodID))
	if err != nil {
		return "", fmt.Errorf("%w: %w", errNoDirectShim, err)
	}
	if h.runtimeType != RuntimeTypeRunc {
		return "", fmt.Errorf("%w: runtime type %s", errNoDirectShim, h.runtimeType)
	}
	return readShimSocket(filepath.Join(r.bundleRoot, r.namespace, c.ID))
}

// shimSocket returns the task's shim socket for direct execs, found by
// lookup on first use. A task keeps its shim for life, and a failed lookup
// (not a runc shim, no bootstrap file) would fail the same way again.
func (t *runningTask) shimSocket(lookup func() (string, error)) (string, error) {
	t.shimOnce.Do(func() { t.shimPath, t.shimPathErr = lookup() })
	return t.shimPath, t.shimPathErr
}

// shimClients holds one ttrpc connection per shim socket, shared by the
// execs of all containers a shim serves. A connection is forgotten when it
// ends (the shim exited) or fails a call; close ends them all.
type shimClients struct {
	mu     sync.Mutex
	conns  map[string]*shimConn
	closed bool
}

type shimConn struct {
	socket string
	client *ttrpc.Client
	task   taskapi.TTRPCTaskService
}

func newShimClients() *shimClients { return &shimClients{conns: map[string]*shimConn{}} }

// get returns the connection to the shim at socket, connecting once.
func (s *shimClients) get(ctx context.Context, socket string) (*shimConn, error) {
	s.mu.Lock()
	if c := s.conns[socket]; c != nil {
		s.mu.Unlock()
		return c, nil
	}
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("%w: shutting down", errNoDirectShim)
	}
	dctx, cancel := context.WithTimeout(ctx, shimDialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoDirectShim, err)
	}
	c := &shimConn{socket: socket}
	// The client's receive loop ends when the shim closes the connection
	// (it exited): forget it then, so the next exec dials afresh.
	c.client = ttrpc.NewClient(conn, ttrpc.WithOnClose(func() { s.forget(c) }))
	c.task = taskapi.NewTTRPCTaskClient(c.client)

	s.mu.Lock()
	if s.closed || s.conns[socket] != nil {
		other := s.conns[socket]
		s.mu.Unlock()
		c.client.Close()
		if other == nil {
			return nil, fmt.Errorf("%w: shutting down", errNoDirectShim)
		}
		return other, nil
	}
	s.conns[socket] = c
	s.mu.Unlock()
	return c, nil
}

// forget removes c from the cache if it is still the cached one.
func (s *shimClients) forget(c *shimConn) {
	s.mu.Lock()
	if s.conns[c.socket] == c {
		delete(s.conns, c.socket)
	}
	s.mu.Unlock()
}

// drop forgets and closes a connection that failed a call.
func (s *shimClients) drop(c *shimConn) {
	s.forget(c)
	c.client.Close()
}

// close ends every connection; later gets fail.
func (s *shimClients) close() {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = map[string]*shimConn{}
	s.mu.Unlock()
	for _, c := range conns {
		c.client.Close()
	}
}

// isConnError reports whether err says the connection to the shim broke
// (rather than the shim refusing the request).
func isConnError(err error) bool {
	return errors.Is(err, ttrpc.ErrClosed) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// call runs f on the shim's connection; when the connection broke, it is
// dropped and f retried once on a fresh one. Shim errors come back as
// errdefs errors.
func (s *shimClients) call(ctx context.Context, socket string, f func(context.Context, taskapi.TTRPCTaskService) error) error {
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var c *shimConn
		if c, err = s.get(ctx, socket); err != nil {
			return err
		}
		if err = f(ctx, c.task); err == nil || !isConnError(err) || ctx.Err() != nil {
			break
		}
		s.drop(c)
	}
	// Only the shim's own errors are statuses; conversion would flatten
	// connection and context errors into ErrUnknown.
	if _, ok := status.FromError(err); ok && err != nil {
		err = errgrpc.ToNative(err)
	}
	return err
}

// shimExec is an exec process driven over its shim's socket.
type shimExec struct {
	shims           *shimClients
	socket          string
	containerID, id string
	// mayRun: Start was asked and not refused; exited: wait returned an
	// exit. Only a process that may run needs a kill before its delete
	// (waiting for one never started would block).
	mayRun, exited bool

	waitOnce sync.Once
	waitDone chan struct{} // closed when the Wait call returned
	waitCode uint32
	waitErr  error
	stopWait context.CancelFunc
}

// newShimExec creates exec process id in container containerID's task.
// Failures that say nothing was created because the shim could not be
// reached wrap errNoDirectShim: containerd's path may still work.
func newShimExec(ctx context.Context, shims *shimClients, socket, containerID, id string, spec *runtimespec.Process, cfg cio.Config) (*shimExec, error) {
	anySpec, err := typeurl.MarshalAnyToProto(spec)
	if err != nil {
		return nil, err
	}
	req := &taskapi.ExecProcessRequest{
		ID: containerID, ExecID: id, Spec: anySpec,
		Stdin: cfg.Stdin, Stdout: cfg.Stdout, Stderr: cfg.Stderr, Terminal: cfg.Terminal,
	}
	tries := 0
	err = shims.call(ctx, socket, func(ctx context.Context, t taskapi.TTRPCTaskService) error {
		tries++
		_, err := t.Exec(ctx, req)
		return err
	})
	switch {
	case err == nil:
	case tries > 1 && errdefs.IsAlreadyExists(err):
		// The first try reached the shim before the connection broke.
	case isConnError(err):
		return nil, fmt.Errorf("%w: %w", errNoDirectShim, err)
	default:
		return nil, err
	}
	return &shimExec{shims: shims, socket: socket, containerID: containerID, id: id}, nil
}

func (p *shimExec) start(ctx context.Context) error {
	err := p.shims.call(ctx, p.socket, func(ctx context.Context, t taskapi.TTRPCTaskService) error {
		_, err := t.Start(ctx, &taskapi.StartRequest{ID: p.containerID, ExecID: p.id})
		return err
	})
	// A broken connection or an ended ctx leaves it unknown whether the
	// process started; a refusal from the shim means it did not.
	p.mayRun = err == nil || isConnError(err) || ctx.Err() != nil
	return err
}

// wait returns the exit, or ctx's error first. The shim answers one Wait
// call when the process exits; it is made once, with a context of its own,
// and not cancelled with ctx: a response to a cancelled ttrpc call is
// logged as an error by the client, and after a timeout the process is
// killed and waited for again.
func (p *shimExec) wait(ctx context.Context) (uint32, error) {
	p.waitOnce.Do(func() {
		// No deadline: an interactive session may run for hours. The
		// call ends with the process (killed at the latest by delete),
		// the connection, or delete's stopWait.
		wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		p.stopWait = cancel
		p.waitDone = make(chan struct{})
		go func() {
			defer close(p.waitDone)
			p.waitErr = p.shims.call(wctx, p.socket, func(ctx context.Context, t taskapi.TTRPCTaskService) error {
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

func (p *shimExec) kill(ctx context.Context) error {
	return p.shims.call(ctx, p.socket, func(ctx context.Context, t taskapi.TTRPCTaskService) error {
		_, err := t.Kill(ctx, &taskapi.KillRequest{ID: p.containerID, ExecID: p.id, Signal: uint32(syscall.SIGKILL)})
		return err
	})
}

func (p *shimExec) closeStdin(ctx context.Context) error {
	return p.shims.call(ctx, p.socket, func(ctx context.Context, t taskapi.TTRPCTaskService) error {
		_, err := t.CloseIO(ctx, &taskapi.CloseIORequest{ID: p.containerID, ExecID: p.id, Stdin: true})
		return err
	})
}

func (p *shimExec) resize(ctx context.Context, w, h uint32) error {
	return p.shims.call(ctx, p.socket, func(ctx context.Context, t taskapi.TTRPCTaskService) error {
		_, err := t.ResizePty(ctx, &taskapi.ResizePtyRequest{ID: p.containerID, ExecID: p.id, Width: w, Height: h})
		return err
	})
}

// delete removes the process from the shim; one that may still run is
// killed and waited for first (the shim refuses to delete a running one).
func (p *shimExec) delete(ctx context.Context) error {
	defer func() {
		if p.stopWait != nil {
			p.stopWait()
		}
	}()
	if p.mayRun && !p.exited {
		if err := p.kill(ctx); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
			return err
		}
		if _, err := p.wait(ctx); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
	}
	return p.shims.call(ctx, p.socket, func(ctx context.Context, t taskapi.TTRPCTaskService) error {
		_, err := t.Delete(ctx, &taskapi.DeleteRequest{ID: p.containerID, ExecID: p.id})
		return err
	})
}
