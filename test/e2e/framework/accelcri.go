package framework

import (
	"bufio"
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"

	"github.com/accel-cri/accel-cri/internal/testutil/hostnet"
)

// AccelCRIOptions configures one accel-cri instance under test.
type AccelCRIOptions struct {
	// SandboxImage is passed as --sandbox-image (pinned in the image store).
	SandboxImage string
	// RegistryHosts are written as <registry-config-dir>/<host>/hosts.toml.
	RegistryHosts map[string]string
	// Config is extra TOML appended to the generated config file.
	Config string
	// WithCNI writes a bridge conflist with a network name of this instance's own.
	WithCNI bool
	// ExtraArgs are appended to the command line.
	ExtraArgs []string
	// Debug serves pprof on DebugSocket (--debug-socket), for Goroutines.
	Debug bool
	// Binary is the accel-cri binary to run ("": this tree's, built by
	// Binary; BinaryAt builds an earlier revision's).
	Binary string
	// IPCNamespace starts accel-cri in an IPC namespace of its own, which its
	// containerd, shims and host-IPC containers share. System V IPC objects
	// made there (critest's host-IPC spec makes one with ipcmk; run it with
	// IPCNamespacePath) go when the last of these processes exits.
	IPCNamespace bool
}

// AccelCRI is a running accel-cri with a managed containerd, in temp roots of
// its own, and kubelet's CRI clients connected to it.
type AccelCRI struct {
	t    testing.TB
	opts AccelCRIOptions

	Dir, Socket, Root, State    string
	CNIConfDir, RegistryConfDir string
	ConfigPath, LogPath         string
	NetworkName                 string
	// Bridge is the CNI bridge WriteCNIConfig made ("" without CNI).
	Bridge     string
	netUndo    []func()
	releaseNet func()

	Runtime internalapi.RuntimeService
	Images  internalapi.ImageManagerService
	// StreamingImages and StreamingRuntime use the streaming list RPCs
	// (StreamImages, StreamPodSandboxes, StreamContainers, Stream*Stats).
	StreamingImages  internalapi.ImageManagerService
	StreamingRuntime internalapi.RuntimeService

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binary builds accel-cri once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "acri-bin-")
		if buildErr != nil {
			return
		}
		// SweepStale removes the dir only once this process is gone.
		MarkOwned(t, binDir)
		// The commit it reports (its version is 0.0.0-dev+<commit>, what
		// the node shows as its runtime under a kubelet), as make build.
		args := []string{"build", "-o", filepath.Join(binDir, "accel-cri")}
		if rev, err := exec.Command("git", "-C", ModuleRoot(t), "rev-parse", "--verify", "-q", "HEAD").Output(); err == nil {
			args = append(args, "-ldflags", "-X github.com/accel-cri/accel-cri/internal/version.Commit="+strings.TrimSpace(string(rev)))
		}
		cmd := exec.Command("go", append(args, "./cmd/accel-cri")...)
		cmd.Dir = ModuleRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build accel-cri: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "accel-cri")
}

// CleanupBinaries removes what Binary and BinaryAt built; call it from
// TestMain.
func CleanupBinaries() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	revMu.Lock()
	defer revMu.Unlock()
	for _, dir := range revDirs {
		os.RemoveAll(dir)
	}
}

var (
	revMu   sync.Mutex
	revDirs = map[string]string{} // revision -> dir holding its accel-cri
)

// BinaryAt builds accel-cri as it was at git revision rev of this
// repository (its tree exported with git archive, built with the same Go
// and module cache) once per test process, and returns its path. It needs
// the repository's history: a test of adopting an earlier accel-cri's
// state cannot run from a tarball or a shallow clone without rev, and
// fails saying so.
func BinaryAt(t testing.TB, rev string) string {
	t.Helper()
	revMu.Lock()
	defer revMu.Unlock()
	if dir, ok := revDirs[rev]; ok {
		return filepath.Join(dir, "accel-cri")
	}
	root := ModuleRoot(t)
	if out, err := exec.Command("git", "-C", root, "cat-file", "-e", rev+"^{commit}").CombinedOutput(); err != nil {
		t.Fatalf("revision %s is not in this repository's history (a full git clone is needed): %v %s", rev, err, out)
	}
	dir, err := os.MkdirTemp("", "acri-bin-"+rev[:min(12, len(rev))]+"-")
	if err != nil {
		t.Fatal(err)
	}
	MarkOwned(t, dir)
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	archive := exec.Command("sh", "-c", `git -C "$1" archive --format=tar "$2" | tar -x -C "$3"`, "sh", root, rev, src)
	if out, err := archive.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("export revision %s: %v\n%s", rev, err, out)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "accel-cri"), "./cmd/accel-cri")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("go build accel-cri at %s: %v\n%s", rev, err, out)
	}
	_ = os.RemoveAll(src)
	revDirs[rev] = dir
	return filepath.Join(dir, "accel-cri")
}

// StartAccelCRI starts accel-cri and waits until its socket answers. Cleanup
// stops it (and so its containerd) and removes its directories, also when
// the test fails; on failure the tail of its log is printed.
func StartAccelCRI(t testing.TB, opts AccelCRIOptions) *AccelCRI {
	t.Helper()
	bin := opts.Binary
	if bin == "" {
		bin = Binary(t)
	}
	dir, err := os.MkdirTemp("", "acri-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	// 0711 as accel-cri's own root and state: processes of user-namespaced
	// pods (root inside maps to an unprivileged host uid) must traverse it
	// to reach their rootfs and bundles; MkdirTemp makes it 0700.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	// If this process is killed, SweepStale of a later run removes the
	// instance and all it started.
	MarkOwned(t, dir)
	a := &AccelCRI{
		t: t, opts: opts, Dir: dir,
		Socket:          filepath.Join(dir, "cri.sock"),
		Root:            filepath.Join(dir, "root"),
		State:           filepath.Join(dir, "state"),
		CNIConfDir:      filepath.Join(dir, "net.d"),
		RegistryConfDir: filepath.Join(dir, "certs.d"),
		ConfigPath:      filepath.Join(dir, "config.toml"),
		LogPath:         filepath.Join(dir, "accel-cri.log"),
		NetworkName:     "acri-" + filepath.Base(dir)[len("acri-e2e-"):],
	}
	t.Cleanup(a.cleanup)
	if err := os.MkdirAll(a.CNIConfDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for host, toml := range opts.RegistryHosts {
		hd := filepath.Join(a.RegistryConfDir, host)
		if err := os.MkdirAll(hd, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hd, "hosts.toml"), []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(a.ConfigPath, []byte(opts.Config), 0o644); err != nil {
		t.Fatal(err)
	}
	if opts.WithCNI {
		a.WriteCNIConfig(t)
	}
	a.start(bin)
	return a
}

// WriteCNIConfig writes a bridge + portmap conflist whose network and bridge
// names belong to this instance. The test creates the bridge with its
// gateway address itself and the plugin runs with isGateway false: the
// bridge plugin would otherwise switch on net.ipv4.ip_forward for the whole
// host. CNI use is serialised with other test processes. At the end the
// network's own nat rules, CNI cache and bridge are removed; host-wide
// state that changed meanwhile (forwarding, portmap's shared chains) is
// another runtime's too, and only reported.
func (a *AccelCRI) WriteCNIConfig(t testing.TB) {
	t.Helper()
	unlock := hostnet.LockHostNetwork(t)
	var once sync.Once
	a.releaseNet = func() { once.Do(unlock) }
	// Undone by cleanup after the pods are gone, in reverse order.
	a.netUndo = append(a.netUndo,
		a.releaseNet,
		hostnet.ReportSysctlChange(t, "/proc/sys/net/ipv4/ip_forward"),
		hostnet.ReportPortmapChains(t, "iptables"),
		func() { hostnet.RemoveNetworkRules(t, "iptables", a.NetworkName) },
		func() { hostnet.RemoveCNICache(a.NetworkName) })
	a.Bridge = "ac" + a.NetworkName[len(a.NetworkName)-min(8, len(a.NetworkName)):]
	h := fnv.New32a()
	h.Write([]byte(a.NetworkName))
	n := h.Sum32()
	prefix := fmt.Sprintf("10.%d.%d", 200+n%50, (n/50)%256)
	for _, args := range [][]string{
		{"link", "add", a.Bridge, "type", "bridge"},
		// The mark SweepStale knows it by: no other link is ever removed.
		{"link", "set", "dev", a.Bridge, "alias", bridgeAliasPrefix + a.Dir},
		{"addr", "add", prefix + ".1/24", "dev", a.Bridge},
		{"link", "set", a.Bridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	a.netUndo = append(a.netUndo, func() { exec.Command("ip", "link", "del", a.Bridge).Run() })
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": false, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q, "gateway": %q}]], "dataDir": %q}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}`, a.NetworkName, a.Bridge, prefix+".0/24", prefix+".1", filepath.Join(a.Dir, "ipam"))
	if err := os.WriteFile(filepath.Join(a.CNIConfDir, "10-"+a.NetworkName+".conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ReleaseHostNetwork releases, before cleanup, the host network lock
// WriteCNIConfig took (hostnet.LockHostNetwork), for an instance that stays
// up for hours (make cluster): test runs that use CNI meanwhile go ahead
// instead of waiting for it, and what they report of host-wide network
// state (portmap's shared chains, forwarding) may then be this instance's
// doing. Without CNI it does nothing.
func (a *AccelCRI) ReleaseHostNetwork() {
	if a.releaseNet != nil {
		a.releaseNet()
	}
}

func (a *AccelCRI) args() []string {
	args := []string{
		"--config", a.ConfigPath,
		"--socket", a.Socket,
		"--root", a.Root,
		"--state", a.State,
		"--cni-conf-dir", a.CNIConfDir,
		"--cni-bin-dir", "/usr/lib/cni",
		"--registry-config-dir", a.RegistryConfDir,
		"--log-level", "debug",
	}
	if a.opts.SandboxImage != "" {
		args = append(args, "--sandbox-image", a.opts.SandboxImage)
	}
	if a.opts.Debug {
		args = append(args, "--debug-socket", a.DebugSocket())
	}
	return append(args, a.opts.ExtraArgs...)
}

func (a *AccelCRI) start(bin string) {
	t := a.t
	t.Helper()
	logf, err := os.OpenFile(a.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, a.args()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if a.opts.IPCNamespace {
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWIPC}
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	a.mu.Lock()
	a.cmd, a.exited, a.exitErr = cmd, exited, nil
	a.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		a.mu.Lock()
		a.exitErr = err
		a.mu.Unlock()
		close(exited)
	}()
	if err := a.waitReady(60 * time.Second); err != nil {
		t.Fatalf("accel-cri did not come up: %v\n%s", err, a.LogTail(40))
	}
	ctx := context.Background()
	endpoint := "unix://" + a.Socket
	if a.Runtime, err = remote.NewRemoteRuntimeService(ctx, endpoint, 2*time.Minute, nil, false); err != nil {
		t.Fatal(err)
	}
	if a.Images, err = remote.NewRemoteImageService(ctx, endpoint, 2*time.Minute, nil, false); err != nil {
		t.Fatal(err)
	}
	if a.StreamingImages, err = remote.NewRemoteImageService(ctx, endpoint, 2*time.Minute, nil, true); err != nil {
		t.Fatal(err)
	}
	if a.StreamingRuntime, err = remote.NewRemoteRuntimeService(ctx, endpoint, 2*time.Minute, nil, true); err != nil {
		t.Fatal(err)
	}
}

// waitReady waits for the CRI socket to answer Version, or for the process to exit.
func (a *AccelCRI) waitReady(timeout time.Duration) error {
	// exitErr is written before exited is closed.
	return WaitCRI(a.Socket, timeout, a.exited, func() error { return a.exitErr })
}

// WaitCRI waits up to timeout for the CRI server on socket to answer
// Version, or until exited is closed: the server's process is gone, and
// exitErr says how.
func WaitCRI(socket string, timeout time.Duration, exited <-chan struct{}, exitErr func() error) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("the server exited: %v", exitErr())
		default:
		}
		if _, err := os.Stat(socket); err == nil && answersVersion(socket) == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("socket %s not answering after %s", socket, timeout)
}

// answersVersion makes one Version call on a connection of its own.
func answersVersion(socket string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rs, err := remote.NewRemoteRuntimeService(ctx, "unix://"+socket, 2*time.Second, nil, false)
	if err != nil {
		return err
	}
	defer rs.Close(ctx)
	_, err = rs.Version(ctx, "v1")
	return err
}

// Signal sends sig to the accel-cri process.
func (a *AccelCRI) Signal(sig syscall.Signal) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cmd.Process.Signal(sig)
}

// Wait waits for accel-cri to exit and returns its exit error.
func (a *AccelCRI) Wait(timeout time.Duration) error {
	select {
	case <-a.exited:
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.exitErr
	case <-time.After(timeout):
		return fmt.Errorf("accel-cri still running after %s", timeout)
	}
}

// Running reports whether the accel-cri process has not exited.
func (a *AccelCRI) Running() bool {
	select {
	case <-a.exited:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and waits for a clean exit.
func (a *AccelCRI) Stop(t testing.TB) {
	t.Helper()
	select {
	case <-a.exited:
		return
	default:
	}
	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := a.Wait(30 * time.Second); err != nil {
		t.Fatalf("accel-cri stop: %v\n%s", err, a.LogTail(30))
	}
}

// Restart stops accel-cri and starts it again with the same directories.
func (a *AccelCRI) Restart(t testing.TB) {
	t.Helper()
	a.Stop(t)
	a.start(a.binary(t))
}

// StartBinary starts a stopped accel-cri from bin, another accel-cri
// binary, on the same directories, sockets and managed containerd state (an
// operator's in-place upgrade); later restarts run bin too.
func (a *AccelCRI) StartBinary(t testing.TB, bin string) {
	t.Helper()
	a.opts.Binary = bin
	a.start(bin)
}

// Kill sends SIGKILL (a crash) and waits for the process to be gone.
func (a *AccelCRI) Kill(t testing.TB) {
	t.Helper()
	if err := a.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.Wait(30 * time.Second)
}

// Start starts a stopped or killed accel-cri again with the same directories.
func (a *AccelCRI) Start(t testing.TB) {
	t.Helper()
	a.start(a.binary(t))
}

// binary is the binary this instance runs.
func (a *AccelCRI) binary(t testing.TB) string {
	if a.opts.Binary != "" {
		return a.opts.Binary
	}
	return Binary(t)
}

// PID is the pid of the accel-cri process (0 before it started).
func (a *AccelCRI) PID() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil || a.cmd.Process == nil {
		return 0
	}
	return a.cmd.Process.Pid
}

// NRISocket is the instance's NRI socket: nri.sock in its state directory,
// where accel-cri puts it unless [nri] socket_path says otherwise.
func (a *AccelCRI) NRISocket() string { return filepath.Join(a.State, "nri.sock") }

// IPCNamespacePath is /proc/<pid>/ns/ipc of the accel-cri process: the
// namespace the node's (host) IPC is, with IPCNamespace.
func (a *AccelCRI) IPCNamespacePath() string {
	return fmt.Sprintf("/proc/%d/ns/ipc", a.PID())
}

// ContainerdPID is the pid of the managed containerd, from its pid file.
func (a *AccelCRI) ContainerdPID() int {
	b, err := os.ReadFile(filepath.Join(a.State, "containerd", "containerd.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// LogTail returns the last n lines of accel-cri's log.
func (a *AccelCRI) LogTail(n int) string {
	f, err := os.Open(a.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// Status returns the runtime conditions by type.
func (a *AccelCRI) Status(ctx context.Context) (map[string]*runtimeapi.RuntimeCondition, error) {
	st, err := a.Runtime.Status(ctx, false)
	if err != nil {
		return nil, err
	}
	out := map[string]*runtimeapi.RuntimeCondition{}
	for _, c := range st.GetStatus().GetConditions() {
		out[c.Type] = c
	}
	return out, nil
}

func (a *AccelCRI) cleanup() {
	t := a.t
	if t.Failed() {
		t.Logf("accel-cri log tail (%s):\n%s", a.LogPath, a.LogTail(60))
		if b, err := os.ReadFile(filepath.Join(a.State, "containerd", "containerd.log")); err == nil {
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Logf("managed containerd log tail:\n%s", strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	}
	a.mu.Lock()
	cmd := a.cmd
	a.mu.Unlock()
	if cmd != nil {
		select {
		case <-a.exited:
		default:
			a.removeAllPods()
		}
		select {
		case <-a.exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			if a.Wait(30*time.Second) != nil {
				_ = cmd.Process.Kill()
				<-a.exited
			}
		}
	}
	// SIGTERM stops the managed containerd; after a SIGKILL it keeps running
	// (the next accel-cri adopts it). Make sure no process we started lives.
	if pid := a.ContainerdPID(); pid > 0 && ProcessHasArg(pid, a.State) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	// Whatever a failed test left running is ours: container processes in
	// our cgroups, shims serving our containerd.
	a.killCgroupProcs()
	killProcsWithArg(a.State)
	unmountUnder(a.Dir)
	a.removeCgroups()
	for i := len(a.netUndo) - 1; i >= 0; i-- {
		a.netUndo[i]()
	}
	if err := os.RemoveAll(a.Dir); err != nil {
		t.Errorf("remove %s: %v", a.Dir, err)
	}
}

// killProcsWithArg kills every process whose command line mentions s.
func killProcsWithArg(s string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if ProcessHasArg(pid, s) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// unmountUnder lazily unmounts every mount below dir, deepest first.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var mps []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (f[1] == dir || strings.HasPrefix(f[1], dir+"/")) {
			mps = append(mps, f[1])
		}
	}
	for i := len(mps) - 1; i >= 0; i-- {
		_ = syscall.Unmount(mps[i], syscall.MNT_DETACH)
	}
}

// UnmountUnder lazily unmounts every mount at or below dir, deepest first.
func UnmountUnder(dir string) { unmountUnder(dir) }
