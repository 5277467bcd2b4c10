package framework

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/sandbox/stdio/crilog"
)

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// CgroupRoot is this instance's cgroup parent for all its pods (cgroupfs
// driver), so leftovers are easy to find and remove.
func (a *AccelCRI) CgroupRoot() string { return "/" + a.NetworkName }

// PodConfig returns a pod config as kubelet would send it, with a unique
// uid, a log directory under the instance's dir and a cgroup parent under
// CgroupRoot.
func (a *AccelCRI) PodConfig(t testing.TB, name string) *runtimeapi.PodSandboxConfig {
	t.Helper()
	uid := randHex(8)
	logDir := filepath.Join(a.Dir, "pods", "e2e_"+name+"_"+uid)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: uid},
		Hostname:     name,
		LogDirectory: logDir,
		DnsConfig:    &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"e2e.svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5"}},
		Labels:       map[string]string{"app": name, "e2e": "true"},
		Annotations:  map[string]string{"e2e/annotation": "kept as is", "e2e/unicode": "Grüße ✓"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: a.CgroupRoot() + "/pod" + uid,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD},
			},
		},
	}
}

// ContainerConfig returns a container config logging to <name>.log.
func ContainerConfig(name, image string, cmd ...string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: image},
		Command:  cmd,
		LogPath:  name + ".log",
		Labels:   map[string]string{"container": name},
		Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{}},
	}
}

// RunContainer creates and starts a container, failing the test on error.
func (a *AccelCRI) RunContainer(t testing.TB, podID string, pod *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id, err := a.Runtime.CreateContainer(ctx, podID, cfg, pod)
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", cfg.GetMetadata().GetName(), err)
	}
	if err := a.Runtime.StartContainer(ctx, id); err != nil {
		t.Fatalf("StartContainer %s: %v", cfg.GetMetadata().GetName(), err)
	}
	return id
}

// WaitContainer waits until the container reaches state and returns its status.
func (a *AccelCRI) WaitContainer(t testing.TB, id string, state runtimeapi.ContainerState, timeout time.Duration) *runtimeapi.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := a.Runtime.ContainerStatus(context.Background(), id, false)
		if err != nil {
			t.Fatalf("ContainerStatus %s: %v", id, err)
		}
		if resp.Status.State == state {
			return resp.Status
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s is %s after %s, want %s (reason %q message %q)", id, resp.Status.State, timeout, state, resp.Status.Reason, resp.Status.Message)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// LogContent returns the content of a CRI log file, partial entries joined,
// one line per full entry.
func LogContent(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open log: %v", err)
	}
	defer f.Close()
	var out bytes.Buffer
	if err := crilog.Parse(f, func(e crilog.Entry) error {
		out.Write(e.Content)
		if !e.Partial {
			out.WriteByte('\n')
		}
		return nil
	}); err != nil {
		t.Fatalf("parse CRI log %s: %v", path, err)
	}
	return out.String()
}

// WaitLog waits until the container's log contains want.
func WaitLog(t testing.TB, path, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			if got := LogContent(t, path); strings.Contains(got, want) {
				return got
			}
		}
		if time.Now().After(deadline) {
			got := ""
			if _, err := os.Stat(path); err == nil {
				got = LogContent(t, path)
			}
			t.Fatalf("log %s lacks %q after %s; it has:\n%s", path, want, timeout, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// removeAllPods stops and removes every pod, so no netns, IP, iptables rule
// or mount is left by a failing test.
func (a *AccelCRI) removeAllPods() {
	if a.Runtime == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_ = RemovePods(ctx, a.Runtime, func(format string, args ...any) { a.t.Errorf("cleanup: "+format, args...) })
}

// RemovePods stops and removes every pod a CRI runtime lists (accel-cri's
// or another runtime's), reporting each failure; a failed listing is
// returned for the caller to judge.
func RemovePods(ctx context.Context, rs internalapi.RuntimeService, report func(format string, args ...any)) error {
	pods, err := rs.ListPodSandbox(ctx, nil)
	if err != nil {
		return err
	}
	for _, p := range pods {
		if err := rs.StopPodSandbox(ctx, p.Id); err != nil {
			report("stop pod %s: %v", p.Id, err)
		}
		if err := rs.RemovePodSandbox(ctx, p.Id); err != nil {
			report("remove pod %s: %v", p.Id, err)
		}
	}
	return nil
}

// removeCgroups removes the cgroup directories under CgroupRoot in every
// hierarchy (runc creates parents it never removes).
func (a *AccelCRI) removeCgroups() { cgroups.Local().RemoveTrees(a.CgroupRoot()) }

// killCgroupProcs kills every process in a cgroup below CgroupRoot.
func (a *AccelCRI) killCgroupProcs() { cgroups.Local().KillTree(a.CgroupRoot()) }

// LeftCgroups lists the cgroups left below the pod cgroup parents
// (CgroupRoot/pod<uid>/...): those are the pods' and containers' own. The
// parents themselves belong to kubelet, which creates and removes them.
func (a *AccelCRI) LeftCgroups() []string { return cgroups.Local().Leftovers(a.CgroupRoot()) }
