//go:build cluster

package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// TestMakeCluster: the command behind make cluster and make cluster-down
// (hack/cluster), with its state dir in a temp dir. up returns with the
// cluster left running: the node is Ready with the fake GPU allocatable
// through the kubeconfig it printed, and a pod requesting the GPU runs the
// busybox image of the registry it printed; up again and status find it;
// down, with that pod still running, stops it and leaves no process, dir,
// mount, bridge or cgroup of it, nor the state dir; down again finds
// nothing. Independent of TestCluster: a cluster of its own, in a process
// of its own, which goes down with this test even if it is killed
// (-owner-pid).
func TestMakeCluster(t *testing.T) {
	root := framework.ModuleRoot(t)
	bin := filepath.Join(t.TempDir(), "acri-cluster")
	build := exec.Command("go", "build", "-o", bin, "./hack/cluster")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./hack/cluster: %v\n%s", err, out)
	}
	state := filepath.Join(t.TempDir(), "state")
	run := func(args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"-state", state}, args...)...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if _, err := os.Stat(state); err == nil {
			if out, err := run("down"); err != nil {
				t.Errorf("cleanup: down: %v\n%s", err, out)
			}
		}
	})

	start := time.Now()
	out, err := run("up", "-owner-pid", strconv.Itoa(os.Getpid()))
	if err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	t.Logf("up took %s:\n%s", time.Since(start).Round(time.Second), out)
	kubeconfig := filepath.Join(state, "kubeconfig")
	var recorded struct {
		PID     int      `json:"pid"`
		Busybox string   `json:"busybox"`
		Dirs    []string `json:"dirs"`
		Bridge  string   `json:"bridge"`
	}
	b, err := os.ReadFile(filepath.Join(state, "info.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &recorded); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"export KUBECONFIG=" + kubeconfig, recorded.Busybox, NodeName + "   Ready", "allocatable " + ResourceName + ": 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("up's output lacks %q", want)
		}
	}
	// The supervisor's temp dirs, found by their owner mark: what down
	// must remove.
	dirs := framework.OwnedBy(recorded.PID)
	for _, d := range recorded.Dirs {
		if !strings.Contains(strings.Join(dirs, "\n"), d) {
			t.Errorf("recorded dir %s is not marked as the supervisor's (pid %d): %v", d, recorded.PID, dirs)
		}
	}
	if len(dirs) < 4 || recorded.Bridge == "" {
		t.Errorf("supervisor pid %d owns %v, bridge %q: want the cluster's, accel-cri's, the binary's and the temp dirs, and a bridge", recorded.PID, dirs, recorded.Bridge)
	}

	// From outside, as a person would: kubectl with the printed kubeconfig.
	kubectlBin := Binaries(t)["kubectl"]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	kubectl := func(stdin []byte, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, kubectlBin, append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String(), nil
	}
	js, err := kubectl(nil, "get", "node", NodeName, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var node corev1.Node
	if err := json.Unmarshal([]byte(js), &node); err != nil {
		t.Fatal(err)
	}
	if !nodeReady(&node) {
		t.Errorf("node %s not Ready after up: %+v", NodeName, node.Status.Conditions)
	}
	if q := node.Status.Allocatable[ResourceName]; q.Value() != 1 {
		t.Errorf("node's allocatable %s = %s, want 1", ResourceName, q.String())
	}

	// A pod with the GPU, left running for down.
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "gpu", Namespace: "default"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](2),
			Containers: []corev1.Container{{
				Name: "c", Image: recorded.Busybox,
				Command:   []string{"sh", "-c", "ls /dev/dri && sleep 3600"},
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{ResourceName: resource.MustParse("1")}},
			}},
		},
	}
	manifest, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := kubectl(manifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := kubectl(nil, "wait", "--for=condition=Ready", "pod/gpu", "--timeout=3m"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var logs string
	for {
		logs, err = kubectl(nil, "logs", "gpu")
		if err == nil && strings.Contains(logs, "renderD128") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("pod gpu's log %q, %v: want the GPU's /dev/dri nodes", logs, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("pod gpu with %s: 1 runs; ls /dev/dri: %s", ResourceName, strings.Join(strings.Fields(logs), " "))

	if out, err := run("up"); err != nil || !strings.Contains(out, "already running") {
		t.Errorf("up again: %v\n%s", err, out)
	}
	if out, err := run("status"); err != nil || !strings.Contains(out, NodeName) {
		t.Errorf("status: %v\n%s", err, out)
	}

	start = time.Now()
	out, err = run("down")
	if err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
	t.Logf("down took %s:\n%s", time.Since(start).Round(time.Second), out)
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", recorded.PID)); err == nil && len(b) > 0 {
		t.Errorf("supervisor pid %d still runs after down: %q", recorded.PID, b)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s still there after down (%v)", d, err)
		}
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		for _, line := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], d+"/") {
				t.Errorf("mount %s left after down", f[4])
			}
		}
		if procs := framework.ProcessesNaming(d + "/"); len(procs) > 0 {
			t.Errorf("processes naming %s left after down: %v", d, procs)
		}
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", recorded.Bridge)); !os.IsNotExist(err) {
		t.Errorf("bridge %s still there after down (%v)", recorded.Bridge, err)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state dir %s still there after down (%v)", state, err)
	}
	if out, err := run("down"); err != nil || !strings.Contains(out, "No cluster is running") {
		t.Errorf("down again: %v\n%s", err, out)
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
