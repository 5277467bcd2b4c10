package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/accel-cri/accel-cri/test/e2e/cluster"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// readyFD is the write end of up's pipe in the supervisor: "ready\n" once
// the cluster is up; up sees EOF without it when the supervisor exits
// first.
const readyFD = 3

// supervise runs the cluster: it starts it with cluster.Start, records it in
// the state dir, tells up, and on SIGTERM or SIGINT (or once process owner,
// when not 0, exits) runs every cleanup Start registered, as a test's end
// would. up starts it in a session of its own, so that it outlives up; its
// output is the state dir's supervisor.log. Killed instead, it takes the
// control plane, the registry and the kubelet along (Pdeathsig) and leaves
// accel-cri and its temp dirs to framework.SweepStale (down runs it). It
// returns the exit code: 1 when the start or the teardown failed.
func supervise(d stateDir, owner int) int {
	ready := os.NewFile(readyFD, "ready")
	syscall.CloseOnExec(readyFD) // the components must not hold up's pipe
	if err := d.writeFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "supervise:", err)
		return 1
	}
	stop := make(chan string, 2)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	signal.Ignore(syscall.SIGHUP)
	go func() { stop <- (<-sigs).String() }()
	t := newTB("make-cluster", os.Stderr)
	if owner > 0 {
		go func() {
			// Woken by the owner's exit; a test that dies takes its cluster along.
			if !waitExit(owner, -1) {
				t.Logf("cannot watch process %d (the owner): stopping", owner)
			}
			stop <- fmt.Sprintf("process %d (the owner) exited", owner)
		}()
	}

	// Registered first, so run last: the accel-cri that framework.Binary
	// built (TestMain's job in a test binary).
	t.Cleanup(framework.CleanupBinaries)
	t.Logf("supervisor pid %d: starting the cluster (state %s)", os.Getpid(), d)
	start := time.Now()
	started := t.run(func() { startCluster(t, d) })
	if started {
		t.Logf("cluster up in %s; stop it with SIGTERM (make cluster-down)", time.Since(start).Round(time.Second))
		if _, err := ready.WriteString("ready\n"); err != nil {
			t.Logf("telling up: %v", err)
		}
	} else {
		t.Logf("the cluster did not come up: tearing down what was started")
	}
	ready.Close()
	if started {
		t.Logf("%s: stopping the cluster", <-stop)
	}
	// From here on status and up see no cluster up; down waits for this
	// process to exit, then checks for what info.json names.
	os.Remove(d.path(kubeconfigFile))
	ok := t.finish()
	result := "ok"
	if !ok {
		result = "failed"
	}
	if err := d.writeFile(exitFile, []byte(result+"\n"), 0o644); err != nil {
		t.Logf("%v", err)
	}
	t.Logf("supervisor exits: %s", result)
	if !ok || !started {
		return 1
	}
	return 0
}

// startCluster starts the cluster, waits for its GPU to be allocatable and writes
// info.json and the kubeconfig to the state dir.
func startCluster(t *tb, d stateDir) {
	c := cluster.Start(t, cluster.Options{})
	// The cluster stays for hours: test runs that use CNI go ahead meanwhile.
	c.AccelCRI.ReleaseHostNetwork()
	waitGPU(t, c, 2*time.Minute)
	i := info{
		PID: os.Getpid(), Node: cluster.NodeName, Server: c.Server, Kubeconfig: d.path(kubeconfigFile),
		Kubectl: c.Bins["kubectl"], Registry: c.Registry.Host(), Busybox: c.Images.Busybox.Ref, Pause: c.Images.Pause.Ref,
		Dirs:    []string{c.Dir, c.AccelCRI.Dir, filepath.Dir(framework.Binary(t))},
		Network: c.AccelCRI.NetworkName, Bridge: c.AccelCRI.Bridge, CgroupRoot: c.AccelCRI.CgroupRoot(),
	}
	if t.tmp != "" {
		i.Dirs = append(i.Dirs, t.tmp)
	}
	b, err := json.MarshalIndent(i, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.writeFile(infoFile, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	// Last: the kubeconfig in the state dir means the cluster is up.
	kubeconfig, err := os.ReadFile(c.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.writeFile(kubeconfigFile, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitGPU waits for the node to offer the fake GPU: Ready comes before
// accel-cri's device plugin has registered with the kubelet.
func waitGPU(t *tb, c *cluster.Cluster, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last string
	for ctx.Err() == nil {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, cluster.NodeName, metav1.GetOptions{})
		if err == nil {
			q := n.Status.Allocatable[corev1.ResourceName(cluster.ResourceName)]
			if q.Value() == 1 {
				return
			}
			last = fmt.Sprintf("allocatable %s = %s", cluster.ResourceName, q.String())
		} else {
			last = err.Error()
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("node %s offers no %s after %s (%s); kubelet log tail:\n%s", cluster.NodeName, cluster.ResourceName, timeout, last, c.Kubelet.LogTail(30))
}
