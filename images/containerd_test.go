package images

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// Test-only: a real containerd v2 daemon in its own temporary root, state and
// socket, with the CRI plugins disabled. The production equivalent is the
// managed package.

const (
	containerdBin = "/usr/local/bin/containerd"
	testNamespace = "accel-cri"
)

func TestMain(m *testing.M) {
	// containerd's client logs through logrus at info level; keep test
	// output to what matters.
	_ = log.SetLevel("warn")
	// No test may reach beyond the loopback: a host name that is not in
	// /etc/hosts fails here instead of becoming a DNS query.
	net.DefaultResolver = &net.Resolver{
		PreferGo: true,
		Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("DNS is disabled in images tests")
		},
	}
	os.Exit(m.Run())
}

type testContainerd struct {
	dir     string // everything lives below it
	root    string
	address string
	log     string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// startContainerd starts containerd for one test and stops it, kills the
// tasks the test left, unmounts what is left mounted and removes the
// directory in t.Cleanup.
func startContainerd(t *testing.T) *testContainerd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("integration tests need root (containerd, overlayfs); running as uid %d", os.Geteuid())
	}
	if _, err := os.Stat(containerdBin); err != nil {
		t.Fatalf("containerd binary: %v", err)
	}
	// Short: the socket path must fit in sun_path (108 bytes).
	dir, err := os.MkdirTemp("", "acri-img-")
	if err != nil {
		t.Fatal(err)
	}
	c := &testContainerd{
		dir:     dir,
		root:    filepath.Join(dir, "root"),
		address: filepath.Join(dir, "c.sock"),
		log:     filepath.Join(dir, "containerd.log"),
		exited:  make(chan struct{}),
	}
	t.Cleanup(func() { c.cleanup(t) })

	cfg := fmt.Sprintf(`version = 3
root = %q
state = %q
temp = %q
imports = []
disabled_plugins = [
  'io.containerd.grpc.v1.cri',
  'io.containerd.cri.v1.images',
  'io.containerd.cri.v1.runtime',
  'io.containerd.podsandbox.controller.v1.podsandbox',
  'io.containerd.nri.v1.nri',
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.zfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.blockfile',
  'io.containerd.snapshotter.v1.erofs',
  'io.containerd.differ.v1.erofs',
  'io.containerd.tracing.processor.v1.otlp',
  'io.containerd.internal.v1.tracing',
]

[grpc]
  address = %q

[debug]
  level = 'info'
`, c.root, filepath.Join(dir, "state"), filepath.Join(dir, "tmp"), c.address)
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	c.cmd = exec.Command(containerdBin, "--config", cfgPath)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.Env = append(os.Environ(), "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin")
	// If the test binary dies, containerd goes with it.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	go func() {
		_ = c.cmd.Wait()
		close(c.exited)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		select {
		case <-c.exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	// The socket appears when containerd listens; the health check with
	// WaitForReady blocks until it serves.
	client, err := containerd.New(c.address)
	if err != nil {
		t.Fatalf("containerd client: %v", err)
	}
	defer client.Close()
	if ok, err := client.IsServing(ctx); err != nil || !ok {
		t.Fatalf("containerd did not come up (serving=%v): %v\n%s", ok, err, c.tail())
	}
	return c
}

// client returns a client in the accel-cri namespace, closed at cleanup.
func (c *testContainerd) client(t *testing.T) *containerd.Client {
	t.Helper()
	client, err := containerd.New(c.address, containerd.WithDefaultNamespace(testNamespace))
	if err != nil {
		t.Fatalf("containerd client: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

func (c *testContainerd) tail() string {
	b, _ := os.ReadFile(c.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

func (c *testContainerd) cleanup(t *testing.T) {
	if c.cmd != nil && c.cmd.Process != nil {
		select {
		case <-c.exited:
		default:
			c.killTasks(t)
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.exited:
			case <-time.After(15 * time.Second):
				t.Logf("containerd pid %d ignored SIGTERM; killing it", c.cmd.Process.Pid)
				_ = c.cmd.Process.Kill()
				<-c.exited
			}
		}
		if t.Failed() {
			t.Logf("containerd log (tail):\n%s", c.tail())
		}
	}
	if err := unmountBelow(c.dir); err != nil {
		t.Errorf("unmount below %s: %v", c.dir, err)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		t.Errorf("remove %s: %v", c.dir, err)
	}
}

// killTasks kills and deletes every task the test left, so no shim outlives
// the daemon.
func (c *testContainerd) killTasks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client, err := containerd.New(c.address)
	if err != nil {
		return
	}
	defer client.Close()
	nss, err := client.NamespaceService().List(ctx)
	if err != nil {
		return
	}
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		ctrs, err := client.Containers(nctx)
		if err != nil {
			continue
		}
		for _, ctr := range ctrs {
			task, err := ctr.Task(nctx, nil)
			if err != nil {
				continue
			}
			t.Logf("killing task %s/%s left by the test", ns, ctr.ID())
			_ = task.Kill(nctx, syscall.SIGKILL)
			if _, err := task.Delete(nctx, containerd.WithProcessKill); err != nil {
				t.Logf("delete task %s: %v", ctr.ID(), err)
			}
		}
	}
}

// unmountBelow detaches every mount at or below dir, deepest first.
func unmountBelow(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for space...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
