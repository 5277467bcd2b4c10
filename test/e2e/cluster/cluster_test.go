//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// The suite: a one-node cluster (Start) on accel-cri; every case goes
// through the API server, with client-go and kubectl. It builds with the
// cluster tag only (go test -tags cluster ./test/e2e/cluster), as the bench,
// chaos and soak suites do, so that `go test ./...` does not start a second
// cluster-sized load beside the other suites: hack/test.sh runs it after them.
func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "cluster e2e tests need root")
		os.Exit(1)
	}
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "runc", framework.RegistryBinary, "go", "unshare", "findmnt"} {
		if _, err := exec.LookPath(b); err != nil {
			fmt.Fprintf(os.Stderr, "cluster e2e: %s not found: run hack/install-deps.sh (make deps)\n", b)
			os.Exit(1)
		}
	}
	framework.SweepStale(framework.StderrT{})
	code := m.Run()
	framework.CleanupBinaries()
	os.Exit(code)
}

// TestCluster starts one cluster and runs every case on it, one after
// another, each in a namespace of its own (cases that restart a component
// leave it running as they found it).
func TestCluster(t *testing.T) {
	c := Start(t, Options{})
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *Cluster)
	}{
		{"node", testNode},
		{"deployment", testDeployment},
		{"exec", testExec},
		{"exec-tty", testExecTTY},
		{"attach", testAttach},
		{"cp", testCp},
		{"port-forward", testPortForward},
		{"logs-follow", testLogsFollow},
		{"logs-previous", testLogsPrevious},
		{"jobs", testJobs},
		{"runtimeclass", testRuntimeClass},
		{"gpu-job", testGPUJob},
		{"bad-runtimeclass", testBadRuntimeClass},
		{"bad-hostpath", testBadHostPath},
		{"bad-device", testBadDevice},
		{"deleted-cdi-spec", testDeletedCDISpec},
		{"signature-policy", testSignaturePolicy},
		{"pod-cleanup", testPodCleanup},
		{"accel-cri-restart", testAccelCRIRestart},
	} {
		if !t.Run(tc.name, func(t *testing.T) { tc.run(t, c) }) && c.broken() {
			t.Fatalf("%s left the cluster broken: the cases after it do not run", tc.name)
		}
	}
}

// testNode: the node registered and is Ready with accel-cri as its
// runtime, and the kubelet of the release the suite pins.
func testNode(t *testing.T, c *Cluster) {
	node := c.WaitNodeReady(t, time.Minute)
	// kubelet shows a runtime version it cannot parse as "Unknown".
	if v := node.Status.NodeInfo.ContainerRuntimeVersion; !strings.HasPrefix(v, "accel-cri://") {
		t.Errorf("node's containerRuntimeVersion = %q, want accel-cri://<semantic version>", v)
	} else if _, err := utilversion.ParseSemantic(strings.TrimPrefix(v, "accel-cri://")); err != nil {
		t.Errorf("node's containerRuntimeVersion = %q: %v", v, err)
	}
	if v := node.Status.NodeInfo.KubeletVersion; v != Version {
		t.Errorf("node's kubeletVersion = %q, want %s", v, Version)
	}
	t.Logf("node %s Ready: runtime %s, kubelet %s", node.Name, node.Status.NodeInfo.ContainerRuntimeVersion, node.Status.NodeInfo.KubeletVersion)
}

// testDeployment: a Deployment rolls out; kubectl logs and exec reach its
// pods through the API server and the kubelet, HTTP their pod IPs; it
// scales and restarts, leaving accel-cri with the pods it wants.
func testDeployment(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	ns := c.Namespace(t, "deployment")
	d := webDeployment(c, ns, "web", 3)
	if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if out, err := c.Kubectl(ctx, "-n", ns, "rollout", "status", "deployment/web", "--timeout=3m"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("deployment of 3 rolled out in %s", time.Since(start).Round(time.Millisecond))

	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	var running []corev1.Pod
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			running = append(running, p)
		}
	}
	if len(running) != 3 {
		t.Fatalf("%d running pods of deployment web, want 3", len(running))
	}
	for _, p := range running {
		if p.Spec.NodeName != NodeName || p.Status.PodIP == "" {
			t.Errorf("pod %s: node %q, IP %q", p.Name, p.Spec.NodeName, p.Status.PodIP)
		}
		// kubectl logs: API server -> kubelet -> the CRI log file.
		logs := waitKubectl(t, c, ctx, "hello-from-"+p.Name, "-n", ns, "logs", p.Name)
		t.Logf("kubectl logs %s: %s", p.Name, strings.TrimSpace(logs))
		// kubectl exec: API server -> kubelet -> accel-cri's streaming
		// server. The service account token volume is a tmpfs the kubelet
		// mounted in its own mount namespace: it reaches the container.
		out, err := c.Kubectl(ctx, "-n", ns, "exec", p.Name, "--", "cat", "/www/index.html", "/var/run/secrets/kubernetes.io/serviceaccount/namespace")
		if want := "page-" + p.Name + "\n" + ns; err != nil || strings.TrimSpace(out) != want {
			t.Errorf("kubectl exec %s -- cat /www/index.html .../serviceaccount/namespace = %q, %v; want %q", p.Name, out, err, want)
		}
		// HTTP on the pod IP, from the host.
		if got := framework.HTTPGet(t, "http://"+net.JoinHostPort(p.Status.PodIP, "8080")+"/", 30*time.Second); strings.TrimSpace(got) != "page-"+p.Name {
			t.Errorf("GET %s:8080 = %q, want page-%s", p.Status.PodIP, got, p.Name)
		}
	}

	// kubectl scale to 5 and back to 3, then rollout restart: accel-cri
	// runs exactly the pods the Deployment wants at each step.
	for _, n := range []int{5, 3} {
		if out, err := c.Kubectl(ctx, "-n", ns, "scale", "deployment/web", fmt.Sprintf("--replicas=%d", n)); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		waitPods(t, c, ctx, ns, "app=web", n, nil)
	}
	before := waitPods(t, c, ctx, ns, "app=web", 3, nil)
	if out, err := c.Kubectl(ctx, "-n", ns, "rollout", "restart", "deployment/web"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := c.Kubectl(ctx, "-n", ns, "rollout", "status", "deployment/web", "--timeout=3m"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	after := waitPods(t, c, ctx, ns, "app=web", 3, before)
	for _, name := range after {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := framework.HTTPGet(t, "http://"+net.JoinHostPort(p.Status.PodIP, "8080")+"/", 30*time.Second); strings.TrimSpace(got) != "page-"+name {
			t.Errorf("after the restart, GET %s:8080 = %q, want page-%s", p.Status.PodIP, got, name)
		}
	}
	t.Logf("scaled to 5 and back to 3 (%v), restarted (%v)", before, after)
}

// waitPods waits until the pods matching selector are n, all running, none
// of them named in old, and accel-cri has n ready pod sandboxes of theirs;
// it returns their names.
func waitPods(t *testing.T, c *Cluster, ctx context.Context, ns, selector string, n int, old []string) []string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var last string
	for {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		sandboxes, serr := c.AccelCRI.Runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY},
			LabelSelector: sandboxSelector(ns, selector)})
		if err == nil && serr == nil {
			var names []string
			ok := len(pods.Items) == n && len(sandboxes) == n
			for _, p := range pods.Items {
				names = append(names, p.Name)
				ok = ok && p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil && !slices.Contains(old, p.Name)
			}
			if ok {
				return names
			}
			last = fmt.Sprintf("pods %v, %d ready sandboxes", names, len(sandboxes))
		} else {
			last = fmt.Sprintf("%v; %v", err, serr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not %d running pods of %s (none of %v) with as many ready sandboxes after 2m: %s", n, selector, old, last)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// sandboxSelector is the CRI label selector of the pod sandboxes of ns whose
// pods match selector (k=v[,k=v]): kubelet copies a pod's labels to its
// sandbox.
func sandboxSelector(ns, selector string) map[string]string {
	m := map[string]string{"io.kubernetes.pod.namespace": ns}
	for _, kv := range strings.Split(selector, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// waitKubectl runs kubectl until its output contains want (a container's
// first log line may lag its Running status).
func waitKubectl(t *testing.T, c *Cluster, ctx context.Context, want string, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := c.Kubectl(ctx, args...)
		if err == nil && strings.Contains(out, want) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubectl %s: %q, %v; want %q", strings.Join(args, " "), out, err, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
