package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	containerd "github.com/containerd/containerd/v2/client"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// TestShimStartCutShort kills the managed containerd at the moment it
// starts a pod's shim for a StartContainer: when `containerd-shim-runc-v2
// start` reads the new task bundle's config.json (inotify on the bundle).
// The shim daemon start spawns outlives containerd and waits for a reader
// of its log FIFO; the restarted containerd opens that FIFO while it tries
// to load the shim (which lets the daemon go on to serve), cannot load it
// (no bootstrap.json) and removes its bundle. From then on nothing names the
// shim: the orphaned shim of issue 24, `shims=1 (allowed 0)` in the chaos
// suite. (One whose bundle goes before anything opens its FIFO again waits
// for ever, never serves, and swallows the pod's next task: the chaos
// suite's other form of it, played by sandbox/shim/orphans_test.go.)
//
// accel-cri must end such a shim: while it runs (the pod's next start
// works and the orphan goes), and at its own start (recovery). A running
// container's shim in another pod is never touched.
func TestShimStartCutShort(t *testing.T) {
	e := startPodEnv(t)
	ctx := ctxT(t, 10*time.Minute)

	// A running container of another pod: its shim must outlive all this.
	byID, byPod := e.runPod(t, "bystander")
	bystander := e.RunContainer(t, byID, byPod, e.busybox("bystander", "exec sleep 3600"))
	byShim := servingShim(t, e, bystander)

	// 1. containerd alone killed; accel-cri stays up. The pod's next
	// container starts (within the call's deadline, not on a shim that
	// never serves), and the orphan is gone unless it serves that container.
	podID, pod := e.runPod(t, "cut")
	orphan := cutShimStart(t, e, podID, pod, "first", false)
	next := e.busybox("second", "echo second-started; exec sleep 3600")
	nid, err := e.Runtime.CreateContainer(ctx, podID, next, pod)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	err = e.Runtime.StartContainer(sctx, nid)
	cancel()
	if err != nil {
		t.Fatalf("start in the pod after its shim's start was cut short (%s): %v", orphan, err)
	}
	framework.WaitLog(t, logPath(pod, next), "second-started", 20*time.Second)
	if serving := servingShim(t, e, nid); serving.PID != orphan.PID {
		waitShimGone(t, e, orphan, 15*time.Second)
	}
	t.Logf("accel-cri: %s", grepLog(e, "Ending a shim"))

	// 2. accel-cri and containerd killed together at the same point, and
	// the instance's containerd booted once without accel-cri: it drops
	// the bundle, and the shim (when it got to serve) is an orphan while
	// nothing of accel-cri runs. accel-cri's recovery ends it.
	pod3ID, pod3 := e.runPod(t, "cut-recovery")
	orphan3 := cutShimStartOffline(t, e, pod3ID, pod3)
	e.Start(t)
	if alive(e, orphan3) {
		t.Errorf("after accel-cri's restart, %s still runs", orphan3)
		waitShimGone(t, e, orphan3, 10*time.Second)
	}
	if log := grepLog(e, fmt.Sprintf(`"Ending a shim no task bundle refers to" pid=%d `, orphan3.PID)); !strings.Contains(log, `why="recovery"`) {
		t.Errorf("recovery did not end %s; accel-cri logged: %q", orphan3, log)
	}
	if !alive(e, byShim) {
		t.Errorf("the shim of another pod's running container (%s) was ended", byShim)
	}
	e.WaitContainer(t, bystander, running, 5*time.Second)

	// 3. Everything removed: no shim of this containerd is left.
	for _, id := range []string{podID, pod3ID, byID} {
		if err := e.Runtime.StopPodSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := e.Runtime.RemovePodSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if !framework.WaitUntil(10*time.Second, func() bool { return len(e.Shims()) == 0 }) {
		t.Errorf("shims left after removing every pod: %v", e.Shims())
	}
}

// cutShimStart creates a container in the pod and starts it, and SIGKILLs
// the managed containerd (and accel-cri too when both) when the shim's
// start reads the task's config.json. It returns the shim daemon that start
// spawned. With accel-cri alive, it waits until accel-cri restarted
// containerd; otherwise accel-cri is left down. The start is tried again
// with a new container if the kill came too late (the start succeeded) or
// no daemon was spawned.
func cutShimStart(t *testing.T, e podEnv, podID string, pod *runtimeapi.PodSandboxConfig, name string, both bool) framework.Shim {
	t.Helper()
	ctx := ctxT(t, 5*time.Minute)
	for attempt := 1; attempt <= 5; attempt++ {
		cfg := e.busybox(fmt.Sprintf("%s-%d", name, attempt), "exec sleep 3600")
		cid, err := e.Runtime.CreateContainer(ctx, podID, cfg, pod)
		if err != nil {
			t.Fatal(err)
		}
		w := watchDir(t, e.TaskBundles(), unix.IN_CREATE)
		ctrd := e.ContainerdPID()
		started := make(chan error, 1)
		go func() { started <- e.Runtime.StartContainer(ctx, cid) }()
		killed, err := w.killWhenShimStarts(t, cid, ctrd, started, func() {
			if both {
				_ = e.Signal(syscall.SIGKILL)
			}
		})
		w.close()
		if !killed {
			t.Logf("attempt %d: the start finished before the kill (%v); trying again", attempt, err)
			continue
		}
		if err == nil {
			t.Fatalf("StartContainer succeeded although containerd was killed while it started the shim")
		}
		t.Logf("attempt %d: containerd killed while it started the shim (accel-cri too: %v); StartContainer: %v", attempt, both, err)
		// The daemon is spawned by start, which outlives containerd; start
		// kills it again when it fails after the spawn (it cannot read
		// its parent's OOM score once containerd is gone and reaped):
		// only a daemon that outlived start counts.
		var orphan framework.Shim
		spawned := framework.WaitUntil(10*time.Second, func() bool { return !shimStartRuns(cid) }) &&
			framework.WaitUntil(2*time.Second, func() bool {
				for _, s := range e.Shims() {
					if s.ID == cid {
						orphan = s
						return true
					}
				}
				return false
			})
		if both {
			if err := e.Wait(30 * time.Second); err == nil {
				t.Fatalf("accel-cri survived SIGKILL")
			}
		} else if !framework.WaitUntil(60*time.Second, func() bool {
			if pid := e.ContainerdPID(); pid == 0 || pid == ctrd {
				return false
			}
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			conds, err := e.Status(sctx)
			return err == nil && conds["RuntimeReady"].GetStatus()
		}) {
			t.Fatalf("containerd not restarted by accel-cri\n%s", e.LogTail(30))
		}
		if !spawned {
			t.Logf("attempt %d: no shim daemon of task %s outlived its start; trying again", attempt, cid)
			if both {
				e.Start(t)
			}
			continue
		}
		t.Logf("the cut start left %s", orphan)
		return orphan
	}
	t.Fatalf("containerd could not be killed while it started a shim in 5 attempts")
	return framework.Shim{}
}

// grepLog returns accel-cri's log lines that contain s.
func grepLog(e podEnv, s string) string {
	var out []string
	for _, l := range strings.Split(e.LogTail(100000), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// shimStartRuns reports whether `containerd-shim-runc-v2 ... -id <cid>
// ... start` still runs.
func shimStartRuns(cid string) bool {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if strings.HasPrefix(filepath.Base(argv[0]), "containerd-shim") && argv[len(argv)-1] == "start" && slices.Contains(argv, cid) {
			return true
		}
	}
	return false
}

// cutShimStartOffline cuts a shim start short as cutShimStart does, with
// accel-cri killed too, then boots the instance's containerd (its own config
// file) once, as accel-cri would, and stops it: that containerd cannot load
// the shim and removes its bundle. It returns the shim when it outlived all
// this (it serves: the FIFO's reader came before the bundle went), with
// accel-cri and containerd both down; it tries again when it did not.
func cutShimStartOffline(t *testing.T, e podEnv, podID string, pod *runtimeapi.PodSandboxConfig) framework.Shim {
	t.Helper()
	for attempt := 1; attempt <= 5; attempt++ {
		orphan := cutShimStart(t, e, podID, pod, fmt.Sprintf("offline-%d", attempt), true)
		bootContainerd(t, e)
		for _, s := range e.Shims() {
			if s.PID == orphan.PID && s.ID == orphan.ID && s.BundleGone && s.LogOpen {
				t.Logf("with accel-cri and containerd down: %s", s)
				return s
			}
		}
		t.Logf("attempt %d: %s did not outlive containerd's boot (it went on after its bundle was removed: getwd fails); trying again", attempt, orphan)
		e.Start(t)
	}
	t.Fatalf("no shim outlived containerd's boot in 5 attempts")
	return framework.Shim{}
}

// bootContainerd starts the managed containerd of a stopped accel-cri with
// accel-cri's config file, waits until it serves (it has loaded or dropped
// every task bundle by then), and stops it with SIGTERM.
func bootContainerd(t *testing.T, e podEnv) {
	t.Helper()
	dir := filepath.Join(e.State, "containerd")
	logf, err := os.OpenFile(filepath.Join(e.Dir, "containerd-boot.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	serving := framework.WaitUntil(30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := containerd.New(filepath.Join(dir, "containerd.sock"), containerd.WithTimeout(2*time.Second))
		if err != nil {
			return false
		}
		defer c.Close()
		ok, err := c.IsServing(ctx)
		return err == nil && ok
	})
	if !serving {
		t.Fatalf("containerd booted by the test does not serve")
	}
}

// servingShim returns the shim whose child a running container's init is.
func servingShim(t *testing.T, e podEnv, cid string) framework.Shim {
	t.Helper()
	st, err := e.Runtime.ContainerStatus(ctxT(t, time.Minute), cid, true)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.PID == 0 {
		t.Fatalf("container %s: no pid in %q: %v", cid, st.Info["info"], err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", info.PID))
	if err != nil {
		t.Fatal(err)
	}
	// pid (comm) state ppid ...
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ppid, _ := strconv.Atoi(f[1])
	for _, s := range e.Shims() {
		if s.PID == ppid {
			return s
		}
	}
	t.Fatalf("container %s (pid %d): parent %d is no shim of this containerd: %v", cid, info.PID, ppid, e.Shims())
	return framework.Shim{}
}

// alive reports whether shim s still runs (the same shim: its pid names a
// shim of this containerd started for the same task).
func alive(e podEnv, s framework.Shim) bool {
	for _, now := range e.Shims() {
		if now.PID == s.PID && now.ID == s.ID {
			return true
		}
	}
	return false
}

func waitShimGone(t *testing.T, e podEnv, s framework.Shim, timeout time.Duration) {
	t.Helper()
	if !framework.WaitUntil(timeout, func() bool { return !alive(e, s) }) {
		t.Errorf("%s still runs after %s (shims: %v)\n%s", s, timeout, e.Shims(), e.LogTail(20))
	}
}

// dirWatch reads inotify events of a directory and of the directories
// added to it; events arrive on a channel until close.
type dirWatch struct {
	f      *os.File
	mu     sync.Mutex
	dirs   map[int32]string
	events chan dirEvent
	done   chan struct{}
}

type dirEvent struct {
	dir, name string
	mask      uint32
}

func watchDir(t *testing.T, dir string, mask uint32) *dirWatch {
	t.Helper()
	if err := os.MkdirAll(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	w := &dirWatch{f: os.NewFile(uintptr(fd), "inotify"), dirs: map[int32]string{}, events: make(chan dirEvent, 256), done: make(chan struct{})}
	if err := w.add(dir, mask); err != nil {
		w.f.Close()
		t.Fatal(err)
	}
	go w.read()
	t.Cleanup(w.close)
	return w
}

// read delivers events until the file is closed.
func (w *dirWatch) read() {
	defer close(w.done)
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := string(buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(raw.Len)])
			w.mu.Lock()
			dir := w.dirs[raw.Wd]
			w.mu.Unlock()
			select {
			case w.events <- dirEvent{dir: dir, name: strings.TrimRight(name, "\x00"), mask: raw.Mask}:
			default: // nobody listens any more
			}
			off += unix.SizeofInotifyEvent + int(raw.Len)
		}
	}
}

func (w *dirWatch) add(dir string, mask uint32) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	wd, err := unix.InotifyAddWatch(int(w.f.Fd()), dir, mask)
	if err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	w.dirs[int32(wd)] = dir
	return nil
}

// close stops the reader and waits for it.
func (w *dirWatch) close() {
	if w.f.Close() == nil {
		<-w.done
	}
}

// killWhenShimStarts follows task cid's bundle: made by containerd (the
// directory, its config.json, the shim's log FIFO), then config.json opened
// again, by `containerd-shim-runc-v2 start`, which reads the spec's
// grouping annotations before it spawns the shim daemon. At that open
// containerd (pid ctrd) is SIGKILLed, and also is run. It returns whether
// it killed, and the start's outcome.
func (w *dirWatch) killWhenShimStarts(t *testing.T, cid string, ctrd int, started <-chan error, also func()) (bool, error) {
	t.Helper()
	bundle := ""
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for {
		select {
		case err := <-started:
			return false, err
		case <-timeout.C:
			t.Fatalf("no shim start of task %s seen within a minute", cid)
		case ev := <-w.events:
			switch {
			case bundle == "" && ev.name == cid && ev.mask&unix.IN_CREATE != 0:
				bundle = filepath.Join(ev.dir, cid)
				if err := w.add(bundle, unix.IN_OPEN); err != nil {
					t.Fatal(err)
				}
			case bundle != "" && ev.dir == bundle && ev.name == "config.json" && ev.mask&unix.IN_OPEN != 0:
				if _, err := os.Lstat(filepath.Join(bundle, "log")); err != nil {
					continue // containerd writing the spec
				}
				if err := syscall.Kill(ctrd, syscall.SIGKILL); err != nil {
					t.Fatalf("kill containerd %d: %v", ctrd, err)
				}
				also()
				return true, <-started
			}
		}
	}
}
