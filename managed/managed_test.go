package managed

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/accel-cri/accel-cri/internal/fsutil"
)

func testOptions(t *testing.T) Options {
	t.Helper()
	// Short path: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "acri-mgd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Unmount anything containerd left mounted under the root before
		// removing it: mount points in dir itself only (a grep for the
		// name also matched /tmp/acri-mgd-1234, another run's).
		b, _ := os.ReadFile("/proc/self/mounts")
		var points []string
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 1 && (f[1] == dir || strings.HasPrefix(f[1], dir+"/")) {
				points = append(points, f[1])
			}
		}
		for i := len(points) - 1; i >= 0; i-- {
			_ = syscall.Unmount(points[i], syscall.MNT_DETACH)
		}
		os.RemoveAll(dir)
	})
	return Options{
		Binary:     "containerd",
		Root:       dir + "/root",
		State:      dir + "/state",
		MaxBackoff: time.Second,
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// A zombie ("Z") has exited.
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

func startDaemon(t *testing.T, opts Options) *Daemon {
	t.Helper()
	d := New(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pid := d.PID()
		d.Stop(context.Background())
		if pid != 0 && alive(pid) {
			t.Errorf("containerd %d still alive after Stop", pid)
		}
	})
	return d
}

func TestStartServesAndWritesConfig(t *testing.T) {
	opts := testOptions(t)
	d := startDaemon(t, opts)
	if err := d.healthCheck(context.Background()); err != nil {
		t.Fatalf("not serving: %v", err)
	}
	cfg, err := os.ReadFile(d.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"io.containerd.grpc.v1.cri"`, `"io.containerd.nri.v1.nri"`, "imports = []", opts.Root} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("config lacks %s:\n%s", want, cfg)
		}
	}
	pidFile, _ := os.ReadFile(d.PIDFile())
	if strings.TrimSpace(string(pidFile)) != strconv.Itoa(d.PID()) {
		t.Fatalf("pid file %q, pid %d", pidFile, d.PID())
	}
	// containerd must run in its own process group so a terminal's ^C does
	// not reach it.
	pgid, err := syscall.Getpgid(d.PID())
	if err != nil || pgid != d.PID() {
		t.Fatalf("pgid = %d, %v; want own group %d", pgid, err, d.PID())
	}
}

// waitRestart waits until the supervisor has restarted containerd once.
func waitRestart(t *testing.T, d *Daemon) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for d.Restarts() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("containerd not restarted; log:\n%s", tailFile(d.LogPath(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRestartAfterKill(t *testing.T) {
	d := startDaemon(t, testOptions(t))
	first := d.PID()
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitRestart(t, d)
	second := d.PID()
	if second == 0 || second == first {
		t.Fatalf("pid after restart = %d (before %d)", second, first)
	}
	if err := d.healthCheck(context.Background()); err != nil {
		t.Fatalf("restarted containerd not serving: %v", err)
	}
}

// startLeftover starts containerd as an earlier accel-cri would have left
// it: with config, and its pid in the pid file.
func startLeftover(t *testing.T, d *Daemon, opts Options, config []byte) (*exec.Cmd, chan struct{}) {
	t.Helper()
	for _, dir := range []string{opts.Root, opts.State} {
		os.MkdirAll(dir, 0o711)
	}
	if err := fsutil.WriteFileAtomic(d.ConfigPath(), config, 0o600); err != nil {
		t.Fatal(err)
	}
	left := exec.Command("containerd", "--config", d.ConfigPath())
	if err := left.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { left.Wait(); close(waited) }()
	t.Cleanup(func() { left.Process.Kill(); <-waited })
	os.WriteFile(d.PIDFile(), []byte(strconv.Itoa(left.Process.Pid)), 0o644)
	if err := d.waitServing(context.Background(), waited); err != nil {
		t.Fatal(err)
	}
	return left, waited
}

// A containerd left by a crashed accel-cri with the same config is adopted,
// supervised (restarted when it dies) and stopped by Stop.
func TestAdoptsLeftoverFromEarlierRun(t *testing.T) {
	opts := testOptions(t)
	d := New(opts)
	left, waited := startLeftover(t, d, opts, renderConfig(opts, d.Address()))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background())
	if d.PID() != left.Process.Pid {
		t.Fatalf("pid %d, want the adopted %d", d.PID(), left.Process.Pid)
	}
	left.Process.Kill()
	<-waited
	waitRestart(t, d)
	if pid := d.PID(); pid == 0 || pid == left.Process.Pid {
		t.Fatalf("pid after restart %d", pid)
	}
}

// One with another config is stopped and replaced.
func TestReplacesLeftoverWithOtherConfig(t *testing.T) {
	opts := testOptions(t)
	d := New(opts)
	config := append(renderConfig(opts, d.Address()), []byte("\n# changed by an operator\n")...)
	left, waited := startLeftover(t, d, opts, config)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background())
	select {
	case <-waited:
	case <-time.After(15 * time.Second):
		t.Fatal("leftover containerd with another config still running")
	}
	if d.PID() == left.Process.Pid || d.PID() == 0 {
		t.Fatalf("new pid %d", d.PID())
	}
}

func TestStartFailsClearly(t *testing.T) {
	opts := testOptions(t)
	opts.Binary = "/nonexistent/containerd"
	if err := New(opts).Start(context.Background()); err == nil || !strings.Contains(err.Error(), "find binary") {
		t.Fatalf("err = %v", err)
	}
}

// A goroutine that ends while locked to its OS thread makes Go end that
// thread (containerd's netns creation does this on purpose). That must not
// deliver Pdeathsig to containerd.
func TestSurvivesThreadExits(t *testing.T) {
	d := startDaemon(t, testOptions(t))
	pid := d.PID()
	for i := 0; i < 200; i++ {
		done := make(chan struct{})
		go func() {
			defer close(done)
			runtime.LockOSThread() // never unlocked: the thread exits
		}()
		<-done
	}
	time.Sleep(200 * time.Millisecond)
	if !alive(pid) || d.Restarts() != 0 {
		t.Fatalf("containerd %d died when unrelated threads exited (alive=%v restarts=%d)", pid, alive(pid), d.Restarts())
	}
}

// BeforeStart runs before every containerd process accel-cri starts, the
// first and each restart after a death, while none serves; not when a
// running one is adopted (it kept its tasks).
func TestBeforeStart(t *testing.T) {
	for _, adopt := range []bool{false, true} {
		t.Run(map[bool]string{false: "started", true: "adopted"}[adopt], func(t *testing.T) {
			opts := testOptions(t)
			var (
				mu      sync.Mutex
				serving []bool // whether a containerd served at each call
				d       *Daemon
			)
			opts.BeforeStart = func(ctx context.Context) {
				hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				mu.Lock()
				serving = append(serving, d.healthCheck(hctx) == nil)
				mu.Unlock()
			}
			calls := func() []bool { mu.Lock(); defer mu.Unlock(); return slices.Clone(serving) }
			d = New(opts)
			want := []bool{false}
			if adopt {
				startLeftover(t, d, opts, renderConfig(opts, d.Address()))
				want = nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := d.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer d.Stop(context.Background())
			if got := calls(); !slices.Equal(got, want) {
				t.Fatalf("after Start: calls (serving?) %v, want %v", got, want)
			}
			if err := syscall.Kill(d.PID(), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			waitRestart(t, d)
			if got, want := calls(), append(want, false); !slices.Equal(got, want) {
				t.Errorf("after a restart: calls (serving?) %v, want %v", got, want)
			}
		})
	}
}
