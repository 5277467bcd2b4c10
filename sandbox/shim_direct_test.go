package sandbox

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

	eventtypes "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func writeBootstrap(t *testing.T, dir, content string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bootstrap.json"), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestReadShimSocket(t *testing.T) {
	for _, tc := range []struct {
		desc, content string // content "" : no file
		want          string
	}{
		{desc: "runc shim of containerd 2", content: `{"version":3,"address":"unix:///run/containerd/s/abc","protocol":"ttrpc"}`, want: "/run/containerd/s/abc"},
		{desc: "plain path", content: `{"version":3,"address":"/run/s.sock","protocol":"TTRPC"}`, want: "/run/s.sock"},
		{desc: "task API v2 shim", content: `{"version":2,"address":"unix:///run/containerd/s/abc","protocol":"ttrpc"}`},
		{desc: "grpc shim", content: `{"version":3,"address":"unix:///run/x.sock","protocol":"grpc"}`},
		{desc: "vsock address", content: `{"version":3,"address":"vsock://3:1024","protocol":"ttrpc"}`},
		{desc: "abstract socket", content: `{"version":3,"address":"unix://@abstract","protocol":"ttrpc"}`},
		{desc: "legacy bare address", content: `unix:///run/containerd/s/abc`},
		{desc: "no bootstrap file"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			if tc.content != "" {
				writeBootstrap(t, dir, tc.content)
			}
			got, err := readShimSocket(dir)
			if tc.want == "" {
				if !errors.Is(err, errNoDirectShim) {
					t.Errorf("readShimSocket = %q, %v; want errNoDirectShim", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("readShimSocket = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// Only containers of runc-type handlers of the managed containerd are
// exec'd directly; everything else goes through containerd.
func TestDirectShimSocketSelection(t *testing.T) {
	bundles := t.TempDir()
	state := t.TempDir()
	handlers := map[string]*handler{}
	for name, cfg := range map[string]HandlerConfig{
		"runc":       {Type: RuntimeTypeRunc},
		"crun":       {Type: RuntimeTypeRunc, BinaryName: "crun"},
		"runsc":      {Type: RuntimeTypeRunsc},
		"kata":       {Type: RuntimeTypeKata},
		"runc-bound": {Type: RuntimeTypeRunc},
	} {
		h, err := newHandler(name, cfg, state, "overlayfs", false)
		if err != nil {
			t.Fatal(err)
		}
		handlers[name] = h
	}
	r := &Runtime{store: newStore(t.TempDir()), handlers: handlers, defaultHandler: "runc", namespace: "ns", bundleRoot: bundles}
	boot := `{"version":3,"address":"unix:///run/containerd/s/x","protocol":"ttrpc"}`
	for _, tc := range []struct {
		desc, handler string
		bootstrap     bool
		noBundleRoot  bool
		direct        bool
	}{
		{desc: "runc", handler: "runc", bootstrap: true, direct: true},
		{desc: "default handler", handler: "", bootstrap: true, direct: true},
		{desc: "crun through the runc shim", handler: "crun", bootstrap: true, direct: true},
		{desc: "gVisor shim", handler: "runsc", bootstrap: true},
		{desc: "kata shim", handler: "kata", bootstrap: true},
		{desc: "no bootstrap file", handler: "runc"},
		{desc: "external containerd", handler: "runc", bootstrap: true, noBundleRoot: true},
		{desc: "unknown handler", handler: "gone", bootstrap: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			id := newID()
			addShownPod(r.store, newPod(podMeta{ID: "pod-" + id, RuntimeHandler: tc.handler}))
			c := newContainer(containerMeta{ID: id, PodID: "pod-" + id})
			if tc.bootstrap {
				writeBootstrap(t, filepath.Join(bundles, "ns", id), boot)
			}
			r.bundleRoot = bundles
			if tc.noBundleRoot {
				r.bundleRoot = ""
			}
			got, err := r.directShimSocket(c)
			if tc.direct && (err != nil || got != "/run/containerd/s/x") {
				t.Errorf("directShimSocket = %q, %v; want the shim's socket", got, err)
			}
			if !tc.direct && !errors.Is(err, errNoDirectShim) {
				t.Errorf("directShimSocket = %q, %v; want errNoDirectShim (through containerd)", got, err)
			}
		})
	}
}

// fakeShim serves the few task API calls an exec makes.
type fakeShim struct {
	taskapi.TTRPCTaskService // the rest: not called

	mu      sync.Mutex
	calls   []string
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

// serveFakeShim serves f on a new unix socket until the returned stop.
func serveFakeShim(t *testing.T, socket string, f *fakeShim) (stop func()) {
	t.Helper()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	taskapi.RegisterTTRPCTaskService(srv, f)
	ul, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	l := &trackingListener{Listener: ul}
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
			// ttrpc's Close leaves a connection that is not idle yet (a
			// reply still being written) open: a shim that exits closes
			// every one.
			l.closeAll()
		})
	}
	t.Cleanup(stop)
	return stop
}

// trackingListener remembers the connections it accepted, so a stopped
// fake shim can close them all as an exited shim's are.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		_ = c.Close()
	}
}

func newFakeShim() *fakeShim { return &fakeShim{killed: make(chan struct{})} }

// startFakeShim serves f (configured before, so its fields are not
// written while it serves) on a socket of the test's own, with a client
// cache closed at the test's end.
func startFakeShim(t *testing.T, f *fakeShim) (context.Context, string, *shimClients) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	socket := filepath.Join(t.TempDir(), "shim.sock")
	serveFakeShim(t, socket, f)
	shims := newShimClients()
	t.Cleanup(shims.close)
	return ctx, socket, shims
}

func TestShimExecLifecycle(t *testing.T) {
	f := newFakeShim()
	f.code = 3
	ctx, socket, shims := startFakeShim(t, f)

	spec := &runtimespec.Process{Args: []string{"echo", "hi"}, Cwd: "/"}
	stdio := cio.Config{Stdout: "/x/out", Stderr: "/x/err"}
	p, err := newShimExec(ctx, shims, socket, "ctr", "exec1", spec, stdio)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.start(ctx); err != nil {
		t.Fatal(err)
	}
	code, err := p.wait(ctx)
	if err != nil || code != 3 {
		t.Fatalf("wait = %d, %v; want 3", code, err)
	}
	if err := p.delete(ctx); err != nil {
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

	p, err := newShimExec(ctx, shims, socket, "ctr", "exec1", &runtimespec.Process{Args: []string{"sleep", "1d"}}, cio.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.start(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer wcancel()
	if _, err := p.wait(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait past the deadline = %v, want DeadlineExceeded", err)
	}
	// One Wait call, answered after the kill: the connection survives the
	// caller's deadline.
	if err := p.kill(ctx); err != nil {
		t.Fatal(err)
	}
	if code, err := p.wait(ctx); err != nil || code != 137 {
		t.Fatalf("wait after kill = %d, %v", code, err)
	}
	if err := p.delete(ctx); err != nil {
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
	p, err := newShimExec(ctx, shims, socket, "ctr", "exec1", &runtimespec.Process{}, cio.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.delete(ctx); err != nil {
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
	shims := newShimClients()
	defer shims.close()
	if _, err := newShimExec(ctx, shims, socket, "ctr", "e1", &runtimespec.Process{}, cio.Config{}); err != nil {
		t.Fatal(err)
	}

	// A connection that broke under a call is dropped and the call retried
	// once on a fresh one.
	shims.mu.Lock()
	old := shims.conns[socket]
	shims.mu.Unlock()
	old.client.Close()
	if _, err := newShimExec(ctx, shims, socket, "ctr", "e2", &runtimespec.Process{}, cio.Config{}); err != nil {
		t.Fatalf("exec after the connection broke: %v", err)
	}

	// The shim went away: its connection is forgotten, and the exec is
	// reported as not served directly, so it goes through containerd.
	stop()
	_ = os.Remove(socket)
	if _, err := newShimExec(ctx, shims, socket, "ctr", "e3", &runtimespec.Process{}, cio.Config{}); !errors.Is(err, errNoDirectShim) {
		t.Fatalf("exec with the shim gone = %v, want errNoDirectShim", err)
	}
	if !eventually(2*time.Second, func() bool { shims.mu.Lock(); defer shims.mu.Unlock(); return len(shims.conns) == 0 }) {
		t.Error("the connection to an exited shim is still cached")
	}

	// A new shim on the same socket is dialled afresh.
	serveFakeShim(t, socket, newFakeShim())
	if _, err := newShimExec(ctx, shims, socket, "ctr", "e4", &runtimespec.Process{}, cio.Config{}); err != nil {
		t.Fatalf("exec on a new shim: %v", err)
	}

	// After close nothing is served directly.
	shims.close()
	if _, err := newShimExec(ctx, shims, socket, "ctr", "e5", &runtimespec.Process{}, cio.Config{}); !errors.Is(err, errNoDirectShim) {
		t.Fatalf("exec after close = %v, want errNoDirectShim", err)
	}
}

// A shim's refusal is the exec's error (no fallback: containerd would get
// the same answer), as an errdefs class.
func TestShimExecRefusal(t *testing.T) {
	f := newFakeShim()
	f.exitErr = errgrpc.ToGRPCf(errdefs.ErrNotFound, "container ctr")
	ctx, socket, shims := startFakeShim(t, f)
	_, err := newShimExec(ctx, shims, socket, "ctr", "e1", &runtimespec.Process{}, cio.Config{})
	if !errdefs.IsNotFound(err) || errors.Is(err, errNoDirectShim) {
		t.Fatalf("exec refused by the shim = %v, want NotFound", err)
	}
}

// The shim reports its exec processes' exits to containerd, which passes
// them on to the exit monitor: they must not end the container.
func TestMonitorIgnoresExecExits(t *testing.T) {
	r := &Runtime{store: newStore(t.TempDir())}
	c := newContainer(containerMeta{ID: "c1", PodID: "p1"})
	r.store.addContainer(c)
	if err := r.store.setContainerStatus(c, containerStatus{State: runtimeapi.ContainerState_CONTAINER_RUNNING, PID: 42}); err != nil {
		t.Fatal(err)
	}
	m := newMonitor(r)
	m.handle(&eventtypes.TaskExit{ContainerID: "c1", ID: "0123456789abcdef0123456789abcdef", Pid: 77, ExitStatus: 137})
	m.wg.Wait()
	select {
	case <-c.exited:
		t.Fatal("an exec's exit ended the container")
	default:
	}
	if st := r.store.containerStatusOf(c); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("state after an exec's exit: %s", st.State)
	}
}

func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}
