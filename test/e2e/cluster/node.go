package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/internal/cgroups"
)

// NodeCounts is what the node holds for pods, counted as the kubelet and
// chaos suites count it and only in what this cluster made: accel-cri's
// ready pod sandboxes and running containers, its pods' pinned namespaces
// (network, UTS, IPC: nsfs mounts) and their rootfs, /dev/shm and volume
// mounts (overlay, tmpfs, binds under accel-cri's and the kubelet's dirs), the IPs the host-local IPAM of
// its CNI network holds, pod cgroups under its cgroup root, and the shims
// of its containerd. Nothing else on the host is looked at.
type NodeCounts struct {
	ReadySandboxes, RunningContainers, PinnedNS, Mounts, IPs, PodCgroups, Shims int
	// Detail names each counted item, for messages.
	Detail []string
}

func (n NodeCounts) String() string {
	return fmt.Sprintf("%d ready sandboxes, %d running containers, %d pinned namespaces, %d mounts, %d IPs, %d pod cgroups, %d shims",
		n.ReadySandboxes, n.RunningContainers, n.PinnedNS, n.Mounts, n.IPs, n.PodCgroups, n.Shims)
}

// Equal compares the counts (not the detail).
func (n NodeCounts) Equal(o NodeCounts) bool {
	n.Detail, o.Detail = nil, nil
	return fmt.Sprint(n) == fmt.Sprint(o)
}

// Count counts what the node holds for pods now.
func (c *Cluster) Count(ctx context.Context) (NodeCounts, error) {
	var n NodeCounts
	a := c.AccelCRI
	sandboxes, err := a.Runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}})
	if err != nil {
		return n, err
	}
	for _, s := range sandboxes {
		n.ReadySandboxes++
		n.Detail = append(n.Detail, "sandbox "+s.GetMetadata().GetNamespace()+"/"+s.GetMetadata().GetName())
	}
	containers, err := a.Runtime.ListContainers(ctx, &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}})
	if err != nil {
		return n, err
	}
	for _, ctr := range containers {
		n.RunningContainers++
		n.Detail = append(n.Detail, "container "+ctr.GetLabels()["io.kubernetes.pod.namespace"]+"/"+ctr.GetLabels()["io.kubernetes.pod.name"]+"/"+ctr.GetMetadata().GetName())
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return n, err
	}
	podsDir := filepath.Join(c.Kubelet.RootDir, "pods")
	for _, l := range strings.Split(string(mi), "\n") {
		f := strings.Fields(l)
		if len(f) < 10 {
			continue
		}
		mp := f[4]
		if !under(mp, a.Dir) && !under(mp, podsDir) {
			continue
		}
		fstype := f[slices.Index(f, "-")+1]
		if fstype == "nsfs" {
			n.PinnedNS++
		} else {
			n.Mounts++
		}
		n.Detail = append(n.Detail, fstype+" "+mp)
	}
	ipam := filepath.Join(a.Dir, "ipam", a.NetworkName)
	entries, _ := os.ReadDir(ipam)
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			n.IPs++
			n.Detail = append(n.Detail, "IP "+e.Name())
		}
	}
	seen := map[string]bool{}
	for _, p := range cgroups.Local().Walk(a.CgroupRoot()) {
		if b := filepath.Base(p); strings.HasPrefix(b, "pod") && !seen[b] {
			seen[b] = true
			n.PodCgroups++
			n.Detail = append(n.Detail, "cgroup "+b)
		}
	}
	for _, s := range a.Shims() {
		n.Shims++
		n.Detail = append(n.Detail, s.String())
	}
	return n, nil
}

func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// WaitCounts waits until the node's counts equal want (a count taken when
// the node ran what it should run now), failing the test with what
// differs after timeout.
func (c *Cluster) WaitCounts(t testing.TB, want NodeCounts, timeout time.Duration) NodeCounts {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		got, err := c.Count(ctx)
		cancel()
		if err == nil && got.Equal(want) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node holds %v, want %v (%v):\n%s\nwanted:\n%s", got, want, err,
				strings.Join(got.Detail, "\n"), strings.Join(want.Detail, "\n"))
		}
		time.Sleep(500 * time.Millisecond)
	}
}
