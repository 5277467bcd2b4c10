package shim

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"
)

// fakeShim serves the few task API calls an exec, a stale task's delete,
// or the harvest of stopped tasks' exits makes.
type fakeShim struct {
	taskapi.TTRPCTaskService // the rest: not called

	mu      sync.Mutex
	calls   []string
	states  map[string]*taskapi.StateResponse // State's answers by task; others NotFound
	execReq *taskapi.ExecProcessRequest
	exitErr error // returned by Exec when set
	code    uint32
	block   bool          // Wait blocks until Kill
	killed  chan struct{} // closed by Kill
}

func (f *fakeShim) record(c string) {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
}

func (f *fakeShim) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeShim) Exec(_ context.Context, r *taskapi.ExecProcessRequest) (*emptypb.Empty, error) {
	f.record("exec")
	if f.exitErr != nil {
		return nil, f.exitErr
	}
	f.mu.Lock()
	f.execReq = r
	f.mu.Unlock()
	return &emptypb.Empty{}, nil
}

func (f *fakeShim) Start(context.Context, *taskapi.StartRequest) (*taskapi.StartResponse, error) {
	f.record("start")
	return &taskapi.StartResponse{Pid: 42}, nil
}

func (f *fakeShim) Wait(ctx context.Context, _ *taskapi.WaitRequest) (*taskapi.WaitResponse, error) {
	f.record("wait")
	if f.block {
		select {
		case <-f.killed:
			return &taskapi.WaitResponse{ExitStatus: 137}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &taskapi.WaitResponse{ExitStatus: f.code}, nil
}

func (f *fakeShim) Kill(context.Context, *taskapi.KillRequest) (*emptypb.Empty, error) {
	f.record("kill")
	select {
	case <-f.killed:
	default:
		close(f.killed)
	}
	return &emptypb.Empty{}, nil
}

func (f *fakeShim) Delete(context.Context, *taskapi.DeleteRequest) (*taskapi.DeleteResponse, error) {
	f.record("delete")
	return &taskapi.DeleteResponse{}, nil
}

func (f *fakeShim) State(_ context.Context, r *taskapi.StateRequest) (*taskapi.StateResponse, error) {
	f.record("state " + r.ID)
	if st, ok := f.states[r.ID]; ok {
		return st, nil
	}
	return nil, errgrpc.ToGRPCf(errdefs.ErrNotFound, "container %s", r.ID)
}

func (f *fakeShim) Connect(context.Context, *taskapi.ConnectRequest) (*taskapi.ConnectResponse, error) {
	f.record("connect")
	return &taskapi.ConnectResponse{ShimPid: uint32(os.Getpid())}, nil
}

func (f *fakeShim) Shutdown(context.Context, *taskapi.ShutdownRequest) (*emptypb.Empty, error) {
	f.record("shutdown")
	return &emptypb.Empty{}, nil
}

// serveFakeShim serves f on a new unix socket until the returned stop.
func serveFakeShim(t *testing.T, socket string, f *fakeShim) (stop func()) {
	t.Helper()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	taskapi.RegisterTTRPCTaskService(srv, f)
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(context.Background(), l)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = srv.Close()
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

func newFakeShim() *fakeShim { return &fakeShim{killed: make(chan struct{})} }

// startFakeShim serves f (configured before, so its fields are not
// written while it serves) on a socket of the test's own, with a client
// cache closed at the test's end.
func startFakeShim(t *testing.T, f *fakeShim) (context.Context, string, *pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	socket := filepath.Join(t.TempDir(), "shim.sock")
	serveFakeShim(t, socket, f)
	shims := newPool()
	t.Cleanup(shims.close)
	return ctx, socket, shims
}

func TestShimExecLifecycle(t *testing.T) {
	f := newFakeShim()
	f.code = 3
	ctx, socket, shims := startFakeShim(t, f)

	spec := &runtimespec.Process{Args: []string{"echo", "hi"}, Cwd: "/"}
	stdio := cio.Config{Stdout: "/x/out", Stderr: "/x/err"}
	p, err := newExec(ctx, shims, socket, "ctr", "exec1", spec, stdio)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(ctx)
	if err != nil || code != 3 {
		t.Fatalf("wait = %d, %v; want 3", code, err)
	}
	if err := p.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := f.Calls(), []string{"exec", "start", "wait", "delete"}; !slices.Equal(got, want) {
		t.Errorf("calls %v, want %v (an exited process is deleted without a kill)", got, want)
	}
	r := f.execReq
	var got runtimespec.Process
	if err := json.Unmarshal(r.Spec.GetValue(), &got); err != nil {
		t.Fatal(err)
	}
	if r.ID != "ctr" || r.ExecID != "exec1" || r.Stdout != "/x/out" || r.Stderr != "/x/err" || r.Stdin != "" || r.Terminal || !slices.Equal(got.Args, spec.Args) {
		t.Errorf("exec request %+v spec %+v", r, got)
	}

	// One connection serves later execs (of any container of the shim).
	shims.mu.Lock()
	n := len(shims.conns)
	shims.mu.Unlock()
	if n != 1 {
		t.Errorf("%d cached connections, want 1", n)
	}
}

func TestShimExecTimeoutKills(t *testing.T) {
	f := newFakeShim()
	f.block = true
	ctx, socket, shims := startFakeShim(t, f)

	p, err := newExec(ctx, shims, socket, "ctr", "exec1", &runtimespec.Process{Args: []string{"sleep", "1d"}}, cio.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer wcancel()
	if _, err := p.Wait(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait past the deadline = %v, want DeadlineExceeded", err)
	}
	// One Wait call, answered after the kill: the connection survives the
	// caller's deadline.
	if err := p.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(ctx); err != nil || code != 137 {
		t.Fatalf("wait after kill = %d, %v", code, err)
	}
	if err := p.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := f.Calls(), []string{"exec", "start", "wait", "kill", "delete"}; !slices.Equal(got, want) {
		t.Errorf("calls %v, want %v", got, want)
	}
}

// A process that may still run is killed and waited for before its
// delete (the shim refuses to delete a running process).
func TestShimExecDeleteKillsRunning(t *testing.T) {
	f := newFakeShim()
	f.block = true
	ctx, socket, shims := startFakeShim(t, f)
	p, err := newExec(ctx, shims, socket, "ctr", "exec1", &runtimespec.Process{}, cio.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := f.Calls(), []string{"exec", "start", "kill", "wait", "delete"}; !slices.Equal(got, want) {
		t.Errorf("calls %v, want %v", got, want)
	}
}

func TestShimExecReconnects(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	socket := filepath.Join(t.TempDir(), "shim.sock")
	stop := serveFakeShim(t, socket, newFakeShim())
	shims := newPool()
	defer shims.close()
	if _, err := newExec(ctx, shims, socket, "ctr", "e1", &runtimespec.Process{}, cio.Config{}); err != nil {
		t.Fatal(err)
	}

	// A connection that broke under a call is dropped and the call retried
	// once on a fresh one.
	shims.mu.Lock()
	old := shims.conns[socket]
	shims.mu.Unlock()
	old.client.Close()
	if _, err := newExec(ctx, shims, socket, "ctr", "e2", &runtimespec.Process{}, cio.Config{}); err != nil {
		t.Fatalf("exec after the connection broke: %v", err)
	}

	// The shim went away: its connection is forgotten, and the exec is
	// reported as not served directly, so it goes through containerd.
	stop()
	_ = os.Remove(socket)
	if _, err := newExec(ctx, shims, socket, "ctr", "e3", &runtimespec.Process{}, cio.Config{}); !errors.Is(err, ErrNotDirect) {
		t.Fatalf("exec with the shim gone = %v, want ErrNotDirect", err)
	}
	if !eventually(2*time.Second, func() bool { shims.mu.Lock(); defer shims.mu.Unlock(); return len(shims.conns) == 0 }) {
		t.Error("the connection to an exited shim is still cached")
	}

	// A new shim on the same socket is dialled afresh.
	serveFakeShim(t, socket, newFakeShim())
	if _, err := newExec(ctx, shims, socket, "ctr", "e4", &runtimespec.Process{}, cio.Config{}); err != nil {
		t.Fatalf("exec on a new shim: %v", err)
	}

	// After close nothing is served directly.
	shims.close()
	if _, err := newExec(ctx, shims, socket, "ctr", "e5", &runtimespec.Process{}, cio.Config{}); !errors.Is(err, ErrNotDirect) {
		t.Fatalf("exec after close = %v, want ErrNotDirect", err)
	}
}

// A shim's refusal is the exec's error (no fallback: containerd would get
// the same answer), as an errdefs class.
func TestShimExecRefusal(t *testing.T) {
	f := newFakeShim()
	f.exitErr = errgrpc.ToGRPCf(errdefs.ErrNotFound, "container ctr")
	ctx, socket, shims := startFakeShim(t, f)
	_, err := newExec(ctx, shims, socket, "ctr", "e1", &runtimespec.Process{}, cio.Config{})
	if !errdefs.IsNotFound(err) || errors.Is(err, ErrNotDirect) {
		t.Fatalf("exec refused by the shim = %v, want NotFound", err)
	}
}
