package framework

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	internalapi "k8s.io/cri-api/pkg/apis"
	remote "k8s.io/cri-client/pkg"

	"github.com/accel-cri/accel-cri/config"
)

// ContainerdCRI is the pinned containerd with its own CRI plugin enabled,
// in a root, state and socket of its own: the comparison runtime of the
// kubelet suite and of the benchmark (test/bench).
type ContainerdCRI struct {
	Dir, Socket, LogPath string
	// Runtime and Images are CRI clients of this containerd.
	Runtime internalapi.RuntimeService
	Images  internalapi.ImageManagerService
	cmd     *exec.Cmd
	exited  chan struct{}
}

// StartContainerdCRI starts containerd with CRI on CNI config dir cniConfDir,
// sandbox image pause and plain-HTTP access to registryHost. Cleanup stops
// it, kills its shims and container processes (by its dir on their command
// lines) and unmounts and removes dir.
func StartContainerdCRI(t testing.TB, dir, cniConfDir, pause, registryHost string) *ContainerdCRI {
	t.Helper()
	c := &ContainerdCRI{Dir: dir, Socket: filepath.Join(dir, "containerd.sock"), LogPath: filepath.Join(dir, "containerd.log")}
	certs := filepath.Join(dir, "certs.d")
	if err := os.MkdirAll(filepath.Join(certs, registryHost), 0o755); err != nil {
		t.Fatal(err)
	}
	hosts := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+registryHost, "http://"+registryHost)
	if err := os.WriteFile(filepath.Join(certs, registryHost, "hosts.toml"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	cfg := fmt.Sprintf(`version = 3
root = %q
state = %q
imports = []
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = %q
  [plugins.'io.containerd.image-verifier.v1.bindir']
    bin_dir = %q
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = %q
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = %q
  [plugins.'io.containerd.cri.v1.runtime']
    # root lacks CAP_SYS_RESOURCE here: the sandbox's -998 would fail.
    restrict_oom_score_adj = true
    # Pod netns under its own state dir (NetNSDir), not the host-wide
    # /var/run/netns other runtimes use: what it leaves is counted there.
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['/usr/lib/cni']
      conf_dir = %q
    # The same OCI runtime accel-cri's default handler runs.
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = %q
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
`, root, filepath.Join(dir, "state"), c.Socket, c.Socket+".ttrpc", filepath.Join(root, "opt"),
		filepath.Join(root, "image-verifier", "bin"), pause, certs, cniConfDir, config.DefaultRuncBinary)
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(c.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("containerd", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	c.cmd, c.exited = cmd, make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(c.exited)
	}()
	t.Cleanup(func() { c.cleanup(t) })
	if err := WaitCRI(c.Socket, 60*time.Second, c.exited, func() error { return nil }); err != nil {
		t.Fatalf("containerd CRI: %v\n%s", err, tailLines(c.LogPath, 30))
	}
	if c.Runtime, err = remote.NewRemoteRuntimeService(context.Background(), "unix://"+c.Socket, 2*time.Minute, nil, false); err != nil {
		t.Fatal(err)
	}
	if c.Images, err = remote.NewRemoteImageService(context.Background(), "unix://"+c.Socket, 2*time.Minute, nil, false); err != nil {
		t.Fatal(err)
	}
	return c
}

// PID is the containerd process's pid.
func (c *ContainerdCRI) PID() int { return c.cmd.Process.Pid }

// NetNSDir is where this containerd's CRI mounts its pods' network
// namespaces (netns_mounts_under_state_dir).
func (c *ContainerdCRI) NetNSDir() string {
	return filepath.Join(c.Dir, "state", "io.containerd.grpc.v1.cri", "netns")
}

func (c *ContainerdCRI) cleanup(t testing.TB) {
	if t.Failed() {
		t.Logf("containerd (CRI) log tail:\n%s", tailLines(c.LogPath, 40))
	}
	select {
	case <-c.exited:
	default:
		c.removeAllPods(t)
		// Its pods are gone: no network namespace of its own may be left
		// (it made them all under NetNSDir; /var/run/netns is other
		// runtimes' and not looked at).
		if left, _ := os.ReadDir(c.NetNSDir()); len(left) > 0 {
			var names []string
			for _, e := range left {
				names = append(names, e.Name())
			}
			t.Errorf("containerd CRI left network namespaces in %s after removing its pods: %v", c.NetNSDir(), names)
		}
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(20 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}
	// Its shims name our socket (under Dir) on their command line.
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(b), c.Dir+"/") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if b, err := os.ReadFile("/proc/self/mounts"); err == nil {
		var mps []string
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], c.Dir+"/") {
				mps = append(mps, f[1])
			}
		}
		for i := len(mps) - 1; i >= 0; i-- {
			_ = syscall.Unmount(mps[i], syscall.MNT_DETACH)
		}
	}
	os.RemoveAll(c.Dir)
}

// tailLines returns the last n lines of a file.
func tailLines(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// removeAllPods stops and removes what kubelet left, so no netns (under
// NetNSDir), IP or cgroup stays behind.
func (c *ContainerdCRI) removeAllPods(t testing.TB) {
	if c.Runtime == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	report := func(format string, args ...any) { t.Errorf("containerd CRI cleanup: "+format, args...) }
	if err := RemovePods(ctx, c.Runtime, report); err != nil {
		report("%v", err)
	}
}
