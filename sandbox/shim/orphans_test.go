package shim

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The fake shims below are this test binary started again with a shim's
// command line (argv[0] containerd-shim-runc-v2) in a task bundle of a test
// directory; fakeShimEnv says what it does there.
const (
	fakeShimEnv    = "ACCEL_CRI_FAKE_SHIM"        // stuck, serve, hold, child
	fakeShimSocket = "ACCEL_CRI_FAKE_SHIM_SOCKET" // the socket it listens on
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeShimEnv); mode != "" {
		runFakeShim(mode, os.Getenv(fakeShimSocket))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runFakeShim does what a runc shim daemon does in the states that matter:
// it listens on its socket (bound for a real shim by `start`), then
// stuck: opens its bundle's log FIFO for writing, which waits for a reader
// that never comes; serve: answers Connect with its pid and exits on
// Shutdown; hold: the same but refuses to exit (it holds a task); child:
// serves with a child process.
func runFakeShim(mode, socket string) {
	l, err := net.Listen("unix", socket)
	if err != nil {
		os.Exit(3)
	}
	if mode == "stuck" {
		f, err := os.OpenFile("log", os.O_WRONLY, 0)
		if err == nil {
			f.Close()
		}
		os.Exit(4) // not reached while nobody reads the FIFO
	}
	if mode == "child" {
		// The child dies with the fake shim (which the test ends): left
		// running, it would outlive the test, holding what the test
		// process inherited (CI's lock files).
		child := exec.Command("sleep", "3600")
		child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := child.Start(); err != nil {
			os.Exit(5)
		}
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		os.Exit(6)
	}
	done := make(chan struct{})
	taskapi.RegisterTTRPCTaskService(srv, &fakeShimService{hold: mode != "serve", done: done})
	go func() { _ = srv.Serve(context.Background(), l) }()
	<-done
}

type fakeShimService struct {
	taskapi.TTRPCTaskService
	hold bool
	done chan struct{}
}

func (f *fakeShimService) Connect(context.Context, *taskapi.ConnectRequest) (*taskapi.ConnectResponse, error) {
	return &taskapi.ConnectResponse{ShimPid: uint32(os.Getpid())}, nil
}

func (f *fakeShimService) Delete(context.Context, *taskapi.DeleteRequest) (*taskapi.DeleteResponse, error) {
	return nil, errgrpc.ToGRPC(errdefs.ErrNotFound)
}

func (f *fakeShimService) Shutdown(context.Context, *taskapi.ShutdownRequest) (*emptypb.Empty, error) {
	if !f.hold {
		close(f.done)
	}
	return &emptypb.Empty{}, nil
}

// reapEnv is the Shims of a test bundle root and shim socket directory.
type reapEnv struct {
	s                *Shims
	root, socketDir  string
	address, ns      string
	addressElsewhere string
}

func newReapEnv(t *testing.T) *reapEnv {
	t.Helper()
	sockets := socketDir(t)
	// The bundle root is reached through a symlink (/var/run -> /run): the
	// shims' working directories are shown resolved.
	tmp := t.TempDir()
	root, real := filepath.Join(tmp, "bundles"), filepath.Join(tmp, "real")
	if err := os.MkdirAll(real, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, root); err != nil {
		t.Fatal(err)
	}
	e := &reapEnv{root: root, socketDir: sockets, address: filepath.Join(t.TempDir(), "containerd.sock"), ns: "accel-cri",
		addressElsewhere: "/run/another-runtime/containerd.sock"}
	e.s = New(Config{Namespace: e.ns, BundleRoot: root, Address: e.address})
	e.s.socketDir = sockets
	t.Cleanup(e.s.Close)
	if err := os.MkdirAll(filepath.Join(root, e.ns), 0o711); err != nil {
		t.Fatal(err)
	}
	return e
}

// bundle makes task id's bundle: its spec naming group, the log FIFO, and
// bootstrap.json naming socket when socket is set.
func (e *reapEnv) bundle(t *testing.T, id, group, socket string) string {
	t.Helper()
	dir := filepath.Join(e.root, e.ns, id)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	spec := `{"annotations":{"io.kubernetes.cri.sandbox-id":"` + group + `"}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "log"), 0o700); err != nil {
		t.Fatal(err)
	}
	if socket != "" {
		writeBootstrap(t, dir, `{"version":3,"address":"unix://`+socket+`","protocol":"ttrpc"}`)
	}
	return dir
}

// fakeShimProc is one started fake shim process.
type fakeShimProc struct {
	cmd    *exec.Cmd
	socket string
	exited chan struct{}
	err    error
}

// startShim starts a fake shim for task id in its bundle dir, serving
// containerd address, listening on the socket of group.
func (e *reapEnv) startShim(t *testing.T, mode, id, group, address, dir string) *fakeShimProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeShimProc{socket: e.s.groupSocket(group), exited: make(chan struct{})}
	s.cmd = &exec.Cmd{Path: exe, Args: []string{runcShimBinary, "-namespace", e.ns, "-id", id, "-address", address}, Dir: dir,
		Env: append(os.Environ(), fakeShimEnv+"="+mode, fakeShimSocket+"="+s.socket)}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.exited
	})
	// Listening, and (but stuck) answering.
	if !eventually(10*time.Second, func() bool {
		if mode == "stuck" {
			_, err := os.Stat(s.socket)
			return err == nil
		}
		pid, err := pidAt(context.Background(), s.socket)
		return err == nil && pid == s.cmd.Process.Pid
	}) {
		t.Fatalf("fake shim (%s) not ready", mode)
	}
	return s
}

func (s *fakeShimProc) running() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

func (s *fakeShimProc) waitExit(t *testing.T) {
	t.Helper()
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("shim %d still runs", s.cmd.Process.Pid)
	}
}

// A shim whose bundle is gone and that waits, never serving, for a reader of
// its log (the chaos suite's orphan) is killed; one exactly like it of
// another containerd is not, nor one whose bundle still exists (containerd
// loads it at its next start and ends it if it serves nothing).
func TestReapShimsStuck(t *testing.T) {
	e := newReapEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	orphanDir := e.bundle(t, "orphan", "pod-a", "")
	orphan := e.startShim(t, "stuck", "orphan", "pod-a", e.address, orphanDir)
	otherDir := e.bundle(t, "other", "pod-b", "")
	other := e.startShim(t, "stuck", "other", "pod-b", e.addressElsewhere, otherDir)
	keptDir := e.bundle(t, "kept", "pod-c", "")
	kept := e.startShim(t, "stuck", "kept", "pod-c", e.address, keptDir)
	// containerd removed the orphan's bundle, and the other runtime its own.
	for _, d := range []string{orphanDir, otherDir} {
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
	}

	if got := e.s.listShims(); len(got) != 2 {
		t.Fatalf("shims of this containerd: %+v, want the orphan and the kept one", got)
	}
	if n := e.s.Reap(ctx, "test", nil); n != 1 {
		t.Errorf("reaped %d shims, want 1", n)
	}
	orphan.waitExit(t)
	var ee *exec.ExitError
	if !errors.As(orphan.err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("orphan ended with %v, want SIGKILL", orphan.err)
	}
	if !other.running() {
		t.Error("another containerd's shim was ended")
	}
	if !kept.running() {
		t.Error("a shim whose bundle exists was ended")
	}
}

// A shim that answers on its socket is asked to shut down (no signal), and
// one that refuses (it holds a task) or has a child process is left; so is
// one whose socket a task bundle names (containerd talks to it), and one
// another reap's match excludes.
func TestReapShimsServing(t *testing.T) {
	e := newReapEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	start := func(mode, id, group string) *fakeShimProc {
		dir := e.bundle(t, id, group, "")
		s := e.startShim(t, mode, id, group, e.address, dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		return s
	}
	idle := start("serve", "idle", "pod-a")
	holding := start("hold", "holding", "pod-b")
	parent := start("child", "parent", "pod-c")
	named := start("serve", "named", "pod-d")
	// Another task of pod-d runs in the named shim: its bundle says so.
	e.bundle(t, "sibling", "pod-d", named.socket)
	excluded := start("serve", "excluded", "pod-e")

	if n := e.s.Reap(ctx, "test", func(p Proc) bool { return p.id != "excluded" }); n != 1 {
		t.Errorf("reaped %d shims, want 1", n)
	}
	idle.waitExit(t)
	if idle.err != nil {
		t.Errorf("idle shim ended with %v, want its own exit on Shutdown", idle.err)
	}
	for name, s := range map[string]*fakeShimProc{"holding a task": holding, "with a child": parent, "named by a bundle": named, "not matched": excluded} {
		if !s.running() {
			t.Errorf("shim %s was ended", name)
		}
	}
}

// The daemon's command line is told from the shim's one-shot start and
// delete invocations and from other containerds' and namespaces' shims.
func TestShimDaemonArgs(t *testing.T) {
	const addr, ns = "/var/lib/accel-cri/containerd.sock", "accel-cri"
	for _, tc := range []struct {
		desc string
		argv string
		id   string
	}{
		{"daemon", "/usr/local/bin/containerd-shim-runc-v2 -namespace accel-cri -id abc -address " + addr, "abc"},
		{"daemon with -debug", "containerd-shim-runc-v2 -namespace accel-cri -id abc -address " + addr + " -debug", "abc"},
		{"start invocation", "containerd-shim-runc-v2 -namespace accel-cri -address " + addr + " -publish-binary /usr/bin/containerd -id abc start", ""},
		{"delete invocation", "containerd-shim-runc-v2 -namespace accel-cri -address " + addr + " -publish-binary /usr/bin/containerd -id abc -bundle /b delete", ""},
		{"another containerd", "containerd-shim-runc-v2 -namespace accel-cri -id abc -address /run/containerd/containerd.sock", ""},
		{"an address it only starts with", "containerd-shim-runc-v2 -namespace accel-cri -id abc -address " + addr + "x", ""},
		{"another namespace", "containerd-shim-runc-v2 -namespace k8s.io -id abc -address " + addr, ""},
		{"another shim binary", "containerd-shim-kata-v2 -namespace accel-cri -id abc -address " + addr, ""},
		{"an id with a path", "containerd-shim-runc-v2 -namespace accel-cri -id ../abc -address " + addr, ""},
		{"a hidden id", "containerd-shim-runc-v2 -namespace accel-cri -id .abc -address " + addr, ""},
		{"a flag without value", "containerd-shim-runc-v2 -namespace accel-cri -address " + addr + " -id", ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			id, ok := daemonArgs(strings.Fields(tc.argv), addr, ns)
			if id != tc.id || ok != (tc.id != "") {
				t.Errorf("daemonArgs(%q) = %q, %v; want %q", tc.argv, id, ok, tc.id)
			}
		})
	}
}

// Bundles name shim sockets by bootstrap.json and by their spec's group;
// a bundle that names neither yet (being made) makes the set incomplete.
func TestShimRefs(t *testing.T) {
	e := newReapEnv(t)
	e.bundle(t, "a", "pod-1", "/run/containerd/s/explicit")
	e.bundle(t, "b", "pod-2", "")
	if err := os.MkdirAll(filepath.Join(e.root, e.ns, ".c"), 0o711); err != nil { // being removed
		t.Fatal(err)
	}
	refs, complete := e.s.shimRefs()
	for _, want := range []string{"/run/containerd/s/explicit", e.s.groupSocket("pod-1"), e.s.groupSocket("pod-2")} {
		if !refs[want] {
			t.Errorf("refs lack %s: %v", want, refs)
		}
	}
	if !complete || len(refs) != 3 {
		t.Errorf("refs %v complete %v, want the 3 sockets, complete", refs, complete)
	}
	if err := os.MkdirAll(filepath.Join(e.root, e.ns, "d"), 0o711); err != nil { // being made
		t.Fatal(err)
	}
	if _, complete := e.s.shimRefs(); complete {
		t.Error("a bundle naming no socket yet left the refs complete")
	}
}
