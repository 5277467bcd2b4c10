//go:build chaos || soak

package chaos

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// counts is everything a pod can leave behind, and accel-cri's own
// resources, at one moment.
type counts struct {
	netns, ips, mounts, cgroups, shims, checkpoints int
	containers, snapshots, leases                   int
	fds, goroutines                                 int
	cgroupPaths, checkpointPaths                    []string
	// shimList are the shims counted, with whether their bundle is gone
	// (an orphan nothing names) and whether they got to serve.
	shimList []framework.Shim
}

func (c counts) String() string {
	return fmt.Sprintf("netns=%d cni_ips=%d mounts=%d pod_cgroups=%d shims=%d checkpoints_and_state_dirs=%d containerd_containers=%d containerd_snapshots=%d containerd_leases=%d accel_cri_fds=%d accel_cri_goroutines=%d",
		c.netns, c.ips, c.mounts, c.cgroups, c.shims, c.checkpoints, c.containers, c.snapshots, c.leases, c.fds, c.goroutines)
}

// measure counts an instance's leftovers and accel-cri's fds and
// goroutines; containerd is asked in accel-cri's namespace over its socket.
func measure(t testing.TB, a *framework.AccelCRI) counts {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := counts{
		netns:       countNetNS(a),
		ips:         countIPs(a),
		mounts:      countMounts(a.Dir),
		cgroupPaths: a.LeftCgroups(),
		shimList:    a.Shims(),
	}
	c.cgroups = len(c.cgroupPaths)
	c.shims = len(c.shimList)
	// Status checkpoints, and the pods' and containers' state dirs and
	// the containers' image volume dirs.
	for _, g := range []string{"root/sandbox/pods/*.json", "root/sandbox/containers/*.json", "state/sandbox/pods/*", "state/sandbox/containers/*", "state/sandbox/imagevolumes/*"} {
		m, _ := filepath.Glob(filepath.Join(a.Dir, g))
		c.checkpointPaths = append(c.checkpointPaths, m...)
	}
	c.checkpoints = len(c.checkpointPaths)
	client, err := containerd.New(a.ContainerdAddress(), containerd.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatalf("containerd client: %v", err)
	}
	defer client.Close()
	nctx := namespaces.WithNamespace(ctx, "accel-cri")
	ctrs, err := client.Containers(nctx)
	if err != nil {
		t.Fatalf("containerd containers: %v", err)
	}
	c.containers = len(ctrs)
	if err := client.SnapshotService("overlayfs").Walk(nctx, func(context.Context, snapshots.Info) error {
		c.snapshots++
		return nil
	}); err != nil {
		t.Fatalf("containerd snapshots: %v", err)
	}
	leases, err := client.LeasesService().List(nctx)
	if err != nil {
		t.Fatalf("containerd leases: %v", err)
	}
	c.leases = len(leases)
	if c.fds, err = framework.OpenFDs(a.PID()); err != nil {
		t.Fatalf("accel-cri fds: %v", err)
	}
	if c.goroutines, err = a.Goroutines(ctx); err != nil {
		t.Fatalf("accel-cri goroutines: %v", err)
	}
	return c
}

// Allowed growth of accel-cri's fds and goroutines over the baseline.
const (
	fdSlack        = 10
	goroutineSlack = 20
)

// leftovers lists what c holds beyond base: pod resources must be gone,
// containerd objects back to the baseline (the images' snapshots), fds and
// goroutines within the slack.
func leftovers(c, base counts) []string {
	var bad []string
	check := func(name string, got, limit int) {
		if got > limit {
			bad = append(bad, fmt.Sprintf("%s=%d (allowed %d)", name, got, limit))
		}
	}
	check("netns", c.netns, 0)
	check("cni_ips", c.ips, 0)
	check("mounts", c.mounts, base.mounts)
	check("pod_cgroups", c.cgroups, 0)
	if c.cgroups > 0 {
		bad = append(bad, fmt.Sprintf("  cgroups: %v", c.cgroupPaths))
	}
	check("shims", c.shims, 0)
	if c.shims > 0 {
		bad = append(bad, fmt.Sprintf("  shims: %v", c.shimList))
	}
	check("checkpoints", c.checkpoints, 0)
	if c.checkpoints > 0 {
		bad = append(bad, fmt.Sprintf("  checkpoints: %v", c.checkpointPaths))
	}
	check("containerd_containers", c.containers, 0)
	check("containerd_snapshots", c.snapshots, base.snapshots)
	check("containerd_leases", c.leases, base.leases)
	check("accel_cri_fds", c.fds, base.fds+fdSlack)
	check("accel_cri_goroutines", c.goroutines, base.goroutines+goroutineSlack)
	return bad
}

// settle waits (up to timeout) until nothing is left beyond base:
// containerd's garbage collector and closing connections take a moment.
func settle(t testing.TB, a *framework.AccelCRI, base counts, timeout time.Duration) (counts, []string) {
	t.Helper()
	var c counts
	var bad []string
	framework.WaitUntil(timeout, func() bool {
		c = measure(t, a)
		bad = leftovers(c, base)
		return len(bad) == 0
	})
	return c, bad
}

// removeAll stops and removes every pod accel-cri lists.
func removeAll(t testing.TB, a *framework.AccelCRI) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := framework.RemovePods(ctx, a.Runtime, t.Errorf); err != nil {
		t.Errorf("remove all pods: %v", err)
	}
}

func join(s []string) string { return strings.Join(s, "\n  ") }
