// Command cluster keeps test/e2e/cluster's one-node Kubernetes cluster on
// accel-cri running for a person (make cluster, make cluster-down): the
// same cluster the suite starts (cluster.Start: etcd, the control plane, a
// local registry with the test images, accel-cri with CNI, a fake Intel GPU
// and the crun and runsc handlers, the kubelet), until told to stop.
//
//	go run ./hack/cluster up       # start it and print how to reach it (or print the running one's)
//	go run ./hack/cluster status   # print it; exit 1 when none runs
//	go run ./hack/cluster down     # stop it and check that nothing of it is left
//
// Run it from the module (as root, with hack/install-deps.sh's packages; the
// Kubernetes binaries come from hack/build-k8s.sh's cache). -state DIR (or
// $ACCEL_CRI_CLUSTER_STATE) moves the state dir from /run/accel-cri-cluster;
// each state dir is one cluster.
//
// up starts a supervisor, this command again ("supervise", in a session of
// its own, its output in the state dir's supervisor.log), which calls
// cluster.Start with a testing.TB of its own (tb) and, on SIGTERM, runs
// every cleanup Start registered, as the end of a test would. The
// supervisor's pid owns the cluster's temp dirs (framework.MarkOwned): a
// test run's framework.SweepStale leaves them alone while it lives and
// removes them once it is gone. The cluster holds the host network lock
// only while it starts (framework's ReleaseHostNetwork), so test runs go
// ahead beside it.
package main

import (
	"bufio"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/accel-cri/accel-cri/test/e2e/cluster"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// DefaultState is the state dir of make cluster's cluster.
const DefaultState = "/run/accel-cri-cluster"

// stopTimeout bounds down's wait for the supervisor's teardown, which
// waits for the kubelet to stop every pod (about 10 seconds usually).
const stopTimeout = 15 * time.Minute

// errNotRunning is status's error when no cluster runs.
var errNotRunning = errors.New("no cluster is running")

func main() {
	if len(os.Args) > 1 && os.Args[1] == "supervise" {
		fs := flag.NewFlagSet("supervise", flag.ExitOnError)
		owner := fs.Int("owner-pid", 0, "")
		fs.Parse(os.Args[2:])
		if fs.NArg() != 1 {
			fmt.Fprintln(os.Stderr, "usage: cluster supervise [-owner-pid N] STATE-DIR")
			os.Exit(2)
		}
		os.Exit(supervise(stateDir(fs.Arg(0)), *owner))
	}
	fs := flag.NewFlagSet("cluster", flag.ExitOnError)
	state := fs.String("state", cmp.Or(os.Getenv("ACCEL_CRI_CLUSTER_STATE"), DefaultState), "state dir: pid, kubeconfig, supervisor.log (also $ACCEL_CRI_CLUSTER_STATE)")
	owner := fs.Int("owner-pid", 0, "up: stop the cluster when this process exits (tests)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: cluster [flags] up|status|down\n\n"+
			"  up      start a one-node cluster on accel-cri (test/e2e/cluster) and keep it running\n"+
			"  status  print the running cluster; exit 1 when none runs\n"+
			"  down    stop it and check that nothing of it is left\n\nflags:\n")
		fs.PrintDefaults()
	}
	// Flags before or after the command.
	fs.Parse(os.Args[1:])
	cmd := fs.Arg(0)
	fs.Parse(fs.Args()[min(1, fs.NArg()):])
	if fs.NArg() != 0 {
		fs.Usage()
		os.Exit(2)
	}
	abs, err := filepath.Abs(*state)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
	d := stateDir(abs)
	switch cmd {
	case "up":
		err = cmdUp(d, *owner)
	case "status":
		err = cmdStatus(d)
	case "down":
		err = cmdDown(d)
	default:
		fs.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster "+cmd+":", err)
		os.Exit(1)
	}
}

func cmdUp(d stateDir, owner int) error {
	if os.Geteuid() != 0 {
		return errors.New("the cluster needs root")
	}
	release, err := d.lock()
	if err != nil {
		return err
	}
	defer release()
	if pid, _ := d.supervisor(); pid != 0 {
		i, err := d.upInfo(pid)
		if err != nil {
			return err
		}
		fmt.Printf("A cluster is already running (supervisor pid %d).\n", pid)
		return show(d, i)
	}
	if entries, _ := os.ReadDir(string(d)); len(entries) > 0 {
		fmt.Printf("%s is left from an earlier cluster: removing it first\n", d)
		if err := teardown(d, false); err != nil {
			return err
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(d.path(logFile), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		logf.Close()
		return err
	}
	args := []string{"supervise"}
	if owner > 0 {
		args = append(args, "-owner-pid="+strconv.Itoa(owner))
	}
	busy := hostNetworkBusy() // before the supervisor may take it
	sup := exec.Command(exe, append(args, string(d))...)
	sup.Stdout, sup.Stderr = logf, logf
	sup.ExtraFiles = []*os.File{w} // its fd 3 (readyFD)
	sup.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = sup.Start()
	w.Close()
	logf.Close()
	if err != nil {
		r.Close()
		return err
	}
	defer r.Close()
	fmt.Printf("Starting the cluster: supervisor pid %d, log %s (about a minute)\n", sup.Process.Pid, d.path(logFile))
	if busy {
		fmt.Printf("%s is locked by a test run that uses CNI (hostnet.LockHostNetwork): the cluster waits for it\n", cniBinDir)
	}

	// Interrupted while it starts: the supervisor, in a session of its
	// own, does not get the terminal's SIGINT; stop it.
	var interrupted atomic.Bool
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; ok {
			interrupted.Store(true)
			fmt.Println("Interrupted: the supervisor stops the cluster once its start is over")
			sup.Process.Signal(syscall.SIGTERM)
		}
	}()
	line, _ := bufio.NewReader(r).ReadString('\n')
	if line != "ready\n" || interrupted.Load() {
		sup.Wait()
		fmt.Fprintf(os.Stderr, "supervisor log tail (%s):\n%s\n", d.path(logFile), d.logTail(40))
		if interrupted.Load() {
			return errors.New("interrupted: make cluster-down checks for leftovers")
		}
		return fmt.Errorf("the cluster did not come up (the supervisor exited: %v): make cluster-down checks for leftovers and removes %s", sup.ProcessState, d)
	}
	sup.Process.Release()
	i, err := d.info()
	if err != nil {
		return err
	}
	return show(d, i)
}

// cniBinDir is the dir whose flock serialises CNI use between test
// processes (internal/testutil/hostnet); the cluster takes it while it starts.
const cniBinDir = "/usr/lib/cni"

// hostNetworkBusy reports whether another process holds the host network
// lock now.
func hostNetworkBusy() bool {
	f, err := os.Open(cniBinDir)
	if err != nil {
		return false
	}
	defer f.Close()
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == unix.EWOULDBLOCK
}

func cmdStatus(d stateDir) error {
	pid, _ := d.supervisor()
	if pid == 0 {
		return errNotRunning
	}
	i, err := d.upInfo(pid)
	if err != nil {
		return err
	}
	return show(d, i)
}

// show prints how to reach the cluster and what it offers, and the node as
// kubectl sees it.
func show(d stateDir, i *info) error {
	fmt.Printf(`Cluster: node %s on accel-cri, API server %s (supervisor pid %d, log %s)
kubeconfig: %s
    export KUBECONFIG=%s
kubectl:    %s
registry:   %s (plain HTTP on this host; the node pulls from it)
images:     %s
            %s
handlers:   runc (default), crun, runsc (gVisor): a RuntimeClass with handler: crun or runsc selects one
`, i.Node, i.Server, i.PID, d.path(logFile), i.Kubeconfig, i.Kubeconfig, i.Kubectl, i.Registry, i.Busybox, i.Pause)
	kubectl := func(args ...string) (string, error) {
		cmd := exec.Command(i.Kubectl, append([]string{"--kubeconfig=" + i.Kubeconfig}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	nodes, err := kubectl("get", "nodes", "-o", "wide")
	if err != nil {
		return err
	}
	fmt.Printf("\n$ kubectl get nodes -o wide\n%s", nodes)
	gpu, err := kubectl("get", "node", i.Node, "-o", `jsonpath={.status.allocatable.accel-cri\.io/intel-gpu}`)
	if err != nil {
		return err
	}
	fmt.Printf("\nallocatable %s: %s (a fake Intel GPU: accel-cri's device plugin; request it in resources.limits)\n", cluster.ResourceName, cmp.Or(gpu, "none"))
	fmt.Println("Stop it, leaving nothing behind: make cluster-down")
	return nil
}

func cmdDown(d stateDir) error {
	if _, err := os.Stat(string(d)); os.IsNotExist(err) {
		fmt.Printf("No cluster is running (no %s).\n", d)
		return nil
	}
	release, err := d.lock()
	if err != nil {
		return err
	}
	defer release()
	return teardown(d, true)
}

// teardown stops the dir's supervisor when it runs and waits for it to
// exit; when it was killed (no "ok" in its exit file) it removes what it
// left as a test run would (framework.SweepStale). Then it checks for every
// trace of the cluster and empties the state dir when there is none, and
// removes it with removeDir; else it lists them and keeps the dir (its
// log). The caller holds the dir's lock.
func teardown(d stateDir, removeDir bool) error {
	pid, recorded := d.supervisor()
	i, _ := d.info() // nil when the cluster never came up as far as info.json
	if pid != 0 {
		fmt.Printf("Stopping the cluster: SIGTERM to its supervisor, pid %d (log %s)\n", pid, d.path(logFile))
		start := time.Now()
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
		if !waitExit(pid, stopTimeout) {
			fmt.Printf("The supervisor is still running after %s: SIGKILL. Log tail:\n%s\n", stopTimeout, d.logTail(40))
			syscall.Kill(pid, syscall.SIGKILL)
			waitExit(pid, time.Minute)
		}
		fmt.Printf("The supervisor exited after %s\n", time.Since(start).Round(100*time.Millisecond))
	} else if recorded != 0 {
		fmt.Printf("The supervisor (pid %d) is not running\n", recorded)
	} else {
		fmt.Println("No cluster is running")
	}
	exit, _ := os.ReadFile(d.path(exitFile))
	var problems []string
	switch strings.TrimSpace(string(exit)) {
	case "ok":
	case "failed":
		problems = append(problems, "the supervisor's teardown reported errors (its log)")
	default:
		if recorded != 0 {
			fmt.Println("Its supervisor did not finish its teardown (killed?): removing what it left (framework.SweepStale)")
			framework.SweepStale(framework.StderrT{})
		}
	}
	problems = append(problems, traces(i, recorded)...)
	if len(problems) > 0 {
		return fmt.Errorf("left behind:\n  %s\nsupervisor log (kept): %s; its tail:\n%s", strings.Join(problems, "\n  "), d.path(logFile), d.logTail(30))
	}
	entries, _ := os.ReadDir(string(d))
	for _, e := range entries {
		if err := os.RemoveAll(d.path(e.Name())); err != nil {
			return err
		}
	}
	if removeDir {
		if err := os.Remove(string(d)); err != nil {
			return err
		}
		if _, err := os.Stat(string(d)); !os.IsNotExist(err) {
			return fmt.Errorf("%s is still there: %v", d, err)
		}
	}
	if i != nil {
		fmt.Printf("Nothing of it is left: no process, mount or dir under %s, no bridge %s, cgroup %s, CNI cache or nat rule of network %s\n",
			strings.Join(i.Dirs, ", "), i.Bridge, i.CgroupRoot, i.Network)
	}
	if removeDir {
		fmt.Printf("%s removed\n", d)
	}
	return nil
}
