package framework

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/accel-cri/accel-cri/internal/cgroups"
)

// TestSweepStaleReapsKilledRuns plays a run killed mid-test (its temp root
// marked by a process that is gone, with a process, a mount and a cgroup
// with a process of its own) beside a live run whose root name starts with
// the dead one's, and checks that the sweep removes all of the first and
// nothing of the second, nor a bridge named like the dead run's but not
// marked as its.
func TestSweepStaleReapsKilledRuns(t *testing.T) {
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dead, err := os.MkdirTemp("", "acri-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	live := dead + "7" // a live instance's root that dead's name is a prefix of
	if err := os.Mkdir(live, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unmountUnder(dead)
		os.RemoveAll(dead)
		os.RemoveAll(live)
	})
	for dir, pid := range map[string]int{dead: gone.Process.Pid, live: os.Getpid()} {
		if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(pid)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "log"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// start runs a process until the test ends, unless something kills it;
	// the channel is closed when it exited.
	type proc struct {
		pid    int
		exited chan struct{}
	}
	start := func(name string, args ...string) proc {
		cmd := exec.Command(name, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := proc{cmd.Process.Pid, make(chan struct{})}
		go func() { _ = cmd.Wait(); close(p.exited) }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-p.exited })
		return p
	}
	deadDaemon := start("tail", "-f", filepath.Join(dead, "log"))
	liveDaemon := start("tail", "-f", filepath.Join(live, "log"))
	container := start("sleep", "1000")

	mnt := filepath.Join(dead, "state", "shm")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	bases := cgroups.Local().MountPoints()
	if len(bases) == 0 {
		t.Fatal("no cgroup mount")
	}
	deadCgroupRoot := filepath.Join(bases[0], "acri-"+filepath.Base(dead)[len("acri-e2e-"):])
	cg := filepath.Join(deadCgroupRoot, "pod1", "ctr")
	if err := os.MkdirAll(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Rmdir(cg)
		_ = syscall.Rmdir(filepath.Dir(cg))
		_ = syscall.Rmdir(deadCgroupRoot)
	})
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(container.pid)), 0); err != nil {
		t.Fatal(err)
	}
	// Bridges: the dead run's (marked with its root), the live run's, and
	// one named like an instance's bridge but not marked (another runtime's).
	n := filepath.Base(dead)[len("acri-e2e-"):]
	bridges := map[string]string{"acsw" + n[len(n)-4:] + "d": bridgeAliasPrefix + dead, "acsw" + n[len(n)-4:] + "l": bridgeAliasPrefix + live, "ac" + n[len(n)-min(8, len(n)):]: ""}
	for name, alias := range bridges {
		if out, err := exec.Command("ip", "link", "add", name, "type", "bridge").CombinedOutput(); err != nil {
			t.Fatalf("ip link add %s: %v: %s", name, err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "link", "del", name).Run() })
		if alias != "" {
			if out, err := exec.Command("ip", "link", "set", "dev", name, "alias", alias).CombinedOutput(); err != nil {
				t.Fatalf("ip link set %s alias: %v: %s", name, err, out)
			}
		}
	}

	SweepStale(t)

	for name, p := range map[string]proc{"the dead run's daemon": deadDaemon, "the dead run's container": container} {
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) still runs", name, p.pid)
		}
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("dead run's root %s still there: %v", dead, err)
	}
	if _, err := os.Stat(deadCgroupRoot); !os.IsNotExist(err) {
		t.Errorf("dead run's cgroups %s still there: %v", deadCgroupRoot, err)
	}
	select {
	case <-liveDaemon.exited:
		t.Error("the live run's daemon was killed")
	default:
	}
	if _, err := os.Stat(filepath.Join(live, "owner")); err != nil {
		t.Errorf("the live run's root was touched: %v", err)
	}
	for name, alias := range bridges {
		_, err := os.Stat(filepath.Join("/sys/class/net", name))
		if gone := os.IsNotExist(err); gone != (alias == bridgeAliasPrefix+dead) {
			t.Errorf("bridge %s (alias %q) removed: %v, want only the dead run's", name, alias, gone)
		}
	}
}

// TestSweepStaleReapsKilledClusters: a test/e2e/cluster dir whose owner is
// gone goes with its processes and its kubelet's shared root dir mount; a
// live one whose name the dead one's is a prefix of stays.
func TestSweepStaleReapsKilledClusters(t *testing.T) {
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dead, err := os.MkdirTemp("", "acri-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	live := dead + "7"
	if err := os.Mkdir(live, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unmountUnder(dead)
		os.RemoveAll(dead)
		os.RemoveAll(live)
	})
	procs := map[string]chan struct{}{}
	for dir, pid := range map[string]int{dead: gone.Process.Pid, live: os.Getpid()} {
		if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(pid)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "log"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("tail", "-f", filepath.Join(dir, "log"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
		procs[dir] = exited
	}
	root := filepath.Join(dead, "kubelet", "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--bind", root, root}, {"--make-shared", root}} {
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %v: %v: %s", args, err, out)
		}
	}

	SweepStale(t)

	select {
	case <-procs[dead]:
	case <-time.After(10 * time.Second):
		t.Error("the dead cluster's process still runs")
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("dead cluster's dir %s still there: %v", dead, err)
	}
	select {
	case <-procs[live]:
		t.Error("the live cluster's process was killed")
	default:
	}
	if _, err := os.Stat(filepath.Join(live, "owner")); err != nil {
		t.Errorf("the live cluster's dir was touched: %v", err)
	}
}

// TestOwnerGoneZombie: a dir whose owner was killed but not yet reaped (a
// zombie) is a dead run's; a running owner's is not.
func TestOwnerGoneZombie(t *testing.T) {
	dir := t.TempDir()
	mark := func(pid int) {
		if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(pid)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	owner := exec.Command("sleep", "3600")
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := false
	t.Cleanup(func() {
		if !reaped {
			owner.Process.Kill()
			owner.Wait()
		}
	})
	mark(owner.Process.Pid)
	if ownerGone(dir) {
		t.Fatal("ownerGone of a running owner = true")
	}
	if err := owner.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Wait for its exit without reaping it: a zombie until Wait.
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, owner.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	if !ownerGone(dir) {
		t.Error("ownerGone of a zombie owner = false")
	}
	owner.Wait()
	reaped = true
	if !ownerGone(dir) {
		t.Error("ownerGone of a reaped owner = false")
	}
}
