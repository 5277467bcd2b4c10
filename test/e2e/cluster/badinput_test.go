//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/utils/ptr"
)

// The bad-input cases: a pod the node must refuse ends with the precise
// reason in its events and status, shown by kubectl describe, and never as
// a crash-looping or silently stuck pod.

// testBadRuntimeClass: a RuntimeClass whose handler accel-cri does not
// have. RunPodSandbox fails with accel-cri's NotFound naming the handler
// and the ones it has; the kubelet reports it as FailedCreatePodSandBox
// and keeps the pod Pending with no container started.
func testBadRuntimeClass(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := c.Namespace(t, "bad-runtimeclass")
	const rcName, handler = "acri-no-such-handler", "no-such-handler"
	if _, err := c.Client.NodeV1().RuntimeClasses().Create(ctx, &nodev1.RuntimeClass{
		ObjectMeta: metav1.ObjectMeta{Name: rcName}, Handler: handler,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Client.NodeV1().RuntimeClasses().Delete(context.Background(), rcName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete RuntimeClass %s: %v", rcName, err)
		}
	})
	pod := busyboxPod(c, ns, "no-handler", "sleep 3600")
	pod.Spec.RuntimeClassName = ptr.To(rcName)
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// accel-cri's words (sandbox.Handlers), through kubelet's event.
	want := regexp.MustCompile(`^Failed to create pod sandbox: rpc error: code = NotFound desc = .*runtime handler "` + handler + `" is not configured \(known: [^)]*\bcrun\b[^)]*\)`)
	msg := waitPodEvent(t, c, ctx, ns, "no-handler", "FailedCreatePodSandBox", `runtime handler "`+handler+`"`)
	t.Logf("event FailedCreatePodSandBox: %s", msg)
	if !want.MatchString(msg) {
		t.Errorf("FailedCreatePodSandBox event %q does not match %s", msg, want)
	}
	// The kubelet writes the status apart from the event.
	p := waitFor(t, time.Minute, "no-handler's container waiting in ContainerCreating", func() (*corev1.Pod, error) {
		p := getPod(t, c, ctx, ns, "no-handler")
		if st := containerStatus(p, "main"); st == nil || st.State.Waiting == nil || st.State.Waiting.Reason != "ContainerCreating" {
			return nil, fmt.Errorf("%+v", st)
		}
		return p, nil
	})
	if st := containerStatus(p, "main"); p.Status.Phase != corev1.PodPending || st.RestartCount != 0 || st.ContainerID != "" {
		t.Errorf("pod status: phase %s, container %+v; want Pending, main never started", p.Status.Phase, st)
	}
	describeShows(t, c, ctx, ns, "no-handler", "FailedCreatePodSandBox", `runtime handler "`+handler+`" is not configured`)
}

// testBadHostPath: a writable hostPath volume of /proc/sys in an
// unprivileged pod. The kubelet hands it to accel-cri, whose validator
// refuses it (cri.checkMounts, spec.IsSensitiveHostPath): the container is
// waiting in CreateContainerError with accel-cri's message, never started,
// never restarted. The same volume read-only runs: the refusal is
// accel-cri's, not the kubelet's.
func testBadHostPath(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := c.Namespace(t, "bad-hostpath")
	for _, ro := range []bool{false, true} {
		name := map[bool]string{false: "proc-rw", true: "proc-ro"}[ro]
		pod := busyboxPod(c, ns, name, "echo ostype=$(cat /host-sys/kernel/ostype); exec sleep 3600")
		pod.Spec.Volumes = []corev1.Volume{{Name: "sys", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/proc/sys"}}}}
		pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "sys", MountPath: "/host-sys", ReadOnly: ro}}
		if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	const refusal = `host_path: "/proc/sys" may only be mounted read-only into an unprivileged container`
	msg := waitPodEvent(t, c, ctx, ns, "proc-rw", "Failed", refusal)
	t.Logf("event Failed: %s", msg)
	want := regexp.MustCompile(`^Error: invalid argument: config\.mounts\[[0-9]+\]\.` + regexp.QuoteMeta(refusal) + `$`)
	if !want.MatchString(msg) {
		t.Errorf("Failed event %q does not match %s", msg, want)
	}
	p := waitFor(t, time.Minute, "proc-rw's container waiting in CreateContainerError", func() (*corev1.Pod, error) {
		p := getPod(t, c, ctx, ns, "proc-rw")
		st := containerStatus(p, "main")
		if st == nil || st.State.Waiting == nil || st.State.Waiting.Reason != "CreateContainerError" {
			return nil, fmt.Errorf("%+v", st)
		}
		return p, nil
	})
	st := containerStatus(p, "main")
	if !strings.HasSuffix(st.State.Waiting.Message, refusal) || !strings.Contains(st.State.Waiting.Message, "config.mounts[") {
		t.Errorf("proc-rw waiting message %q, want accel-cri's %q", st.State.Waiting.Message, refusal)
	}
	if p.Status.Phase != corev1.PodPending || st.RestartCount != 0 || st.ContainerID != "" || st.LastTerminationState.Terminated != nil {
		t.Errorf("proc-rw: phase %s, restarts %d, container %q, last state %+v; want Pending, never started", p.Status.Phase, st.RestartCount, st.ContainerID, st.LastTerminationState)
	}
	describeShows(t, c, ctx, ns, "proc-rw", "CreateContainerError", refusal)

	// The control: read-only, the same volume reaches the container.
	waitFor(t, 2*time.Minute, "proc-ro running", func() (bool, error) {
		if p := getPod(t, c, ctx, ns, "proc-ro"); p.Status.Phase != corev1.PodRunning {
			return false, fmt.Errorf("phase %q", p.Status.Phase)
		}
		return true, nil
	})
	waitKubectlTimeout(t, c, ctx, 30*time.Second, "ostype=Linux", "-n", ns, "logs", "proc-ro")
}

// testBadDevice: more GPUs than the node has (2 of accel-cri.io/intel-gpu)
// and a device class it has none of (accel-cri.io/gpu, NVIDIA): the
// scheduler keeps each Pending with Insufficient <resource>. Bound to the
// node directly, past the scheduler, the kubelet's device manager refuses
// the pod at admission (Failed, UnexpectedAdmissionError naming the
// resource), and accel-cri never sees it.
func testBadDevice(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := c.Namespace(t, "bad-device")
	for _, tc := range []struct {
		pod, resource string
		n             string
	}{
		{"two-intel-gpus", ResourceName, "2"},
		{"nvidia-gpu", "accel-cri.io/gpu", "1"},
	} {
		pod := busyboxPod(c, ns, tc.pod, "sleep 3600")
		pod.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceName(tc.resource): resource.MustParse(tc.n)}
		if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		msg := waitPodEvent(t, c, ctx, ns, tc.pod, "FailedScheduling", "Insufficient "+tc.resource)
		t.Logf("%s (%s: %s): FailedScheduling: %s", tc.pod, tc.resource, tc.n, msg)
		waitUnschedulable(t, c, ctx, ns, tc.pod, "Insufficient "+tc.resource)
		describeShows(t, c, ctx, ns, tc.pod, "FailedScheduling", "Insufficient "+tc.resource)
	}

	pod := busyboxPod(c, ns, "bound-two-gpus", "sleep 3600")
	pod.Spec.NodeName = NodeName
	pod.Spec.Containers[0].Resources.Limits = corev1.ResourceList{ResourceName: resource.MustParse("2")}
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := waitFor(t, 2*time.Minute, "bound-two-gpus to fail", func() (*corev1.Pod, error) {
		p := getPod(t, c, ctx, ns, "bound-two-gpus")
		if p.Status.Phase != corev1.PodFailed {
			return nil, fmt.Errorf("phase %q", p.Status.Phase)
		}
		return p, nil
	})
	t.Logf("bound-two-gpus: %s: %s", p.Status.Reason, p.Status.Message)
	if p.Status.Reason != "UnexpectedAdmissionError" || !strings.Contains(p.Status.Message, ResourceName) || !strings.Contains(p.Status.Message, "Requested: 2, Available: 1") {
		t.Errorf("bound-two-gpus: reason %q, message %q; want UnexpectedAdmissionError naming %s, Requested: 2, Available: 1", p.Status.Reason, p.Status.Message, ResourceName)
	}
	describeShows(t, c, ctx, ns, "bound-two-gpus", "UnexpectedAdmissionError", ResourceName)
}

// testDeletedCDISpec: the node offers the GPU and its CDI spec file is
// gone (an admin clearing /var/run/cdi, or a spec deleted under a running
// plugin). That no longer matters to accel-cri's own containers: the
// device plugin's CDI name is resolved from accel-cri's live inventory,
// not read back from the file, so the pod runs with exactly its GPU.
func testDeletedCDISpec(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := c.Namespace(t, "deleted-cdi-spec")
	spec := filepath.Join(c.Devices.Root, "cdi", "accel-cri.io-intel-gpu.json")
	data, err := os.ReadFile(spec)
	if err != nil {
		t.Fatalf("accel-cri's published spec: %v", err)
	}
	t.Cleanup(func() {
		if _, err := os.Stat(spec); err == nil {
			return
		}
		// Whole or not at all: the CDI cache reads *.json only.
		tmp := spec + ".restore"
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			t.Errorf("restore %s: %v", spec, err)
			return
		}
		if err := os.Rename(tmp, spec); err != nil {
			t.Errorf("restore %s: %v", spec, err)
		}
	})
	if err := os.Remove(spec); err != nil {
		t.Fatal(err)
	}

	pod := busyboxPod(c, ns, "gpu-no-spec", "echo dri=$(ls /dev/dri | tr '\\n' ' '); exec sleep 3600")
	pod.Spec.Containers[0].Resources.Limits = corev1.ResourceList{ResourceName: resource.MustParse("1")}
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Minute, "gpu-no-spec running without its spec file", func() (bool, error) {
		if p := getPod(t, c, ctx, ns, "gpu-no-spec"); p.Status.Phase != corev1.PodRunning {
			return false, fmt.Errorf("phase %q", p.Status.Phase)
		}
		return true, nil
	})
	waitKubectlTimeout(t, c, ctx, 30*time.Second, "dri=card0 renderD128\n", "-n", ns, "logs", "gpu-no-spec")
	if _, err := os.Stat(spec); !os.IsNotExist(err) {
		t.Fatalf("the spec file came back while the pod started (%v): the case proved nothing", err)
	}
}

func getPod(t *testing.T, c *Cluster, ctx context.Context, ns, name string) *corev1.Pod {
	t.Helper()
	p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == name {
			return &p.Status.ContainerStatuses[i]
		}
	}
	return nil
}

// waitUnschedulable waits for pod ns/name's PodScheduled condition to be
// False, Unschedulable, with a message containing text; the pod must stay
// Pending and unbound meanwhile. (The scheduler records its event and the
// condition in two writes, in either order.)
func waitUnschedulable(t *testing.T, c *Cluster, ctx context.Context, ns, name, text string) *corev1.Pod {
	t.Helper()
	return waitFor(t, 3*time.Minute, fmt.Sprintf("pod %s Unschedulable: %s", name, text), func() (*corev1.Pod, error) {
		p := getPod(t, c, ctx, ns, name)
		if p.Status.Phase != corev1.PodPending || p.Spec.NodeName != "" {
			t.Fatalf("pod %s: phase %s, node %q; want Pending and unscheduled", name, p.Status.Phase, p.Spec.NodeName)
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Reason == corev1.PodReasonUnschedulable && strings.Contains(cond.Message, text) {
				return p, nil
			}
		}
		return nil, fmt.Errorf("conditions %+v", p.Status.Conditions)
	})
}

// waitPodEvent waits for an event about pod ns/name with reason whose
// message contains text, and returns the message.
func waitPodEvent(t *testing.T, c *Cluster, ctx context.Context, ns, name, reason, text string) string {
	t.Helper()
	sel := fields.Set{"involvedObject.kind": "Pod", "involvedObject.name": name}.AsSelector().String()
	return waitFor(t, 3*time.Minute, fmt.Sprintf("a %s event about pod %s containing %q", reason, name, text), func() (string, error) {
		evs, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return "", err
		}
		var seen []string
		for _, e := range evs.Items {
			if e.Reason == reason && strings.Contains(e.Message, text) {
				return e.Message, nil
			}
			seen = append(seen, e.Reason+": "+e.Message)
		}
		return "", fmt.Errorf("events: %q", seen)
	})
}

// describeShows checks that kubectl describe pod shows each of want.
func describeShows(t *testing.T, c *Cluster, ctx context.Context, ns, name string, want ...string) {
	t.Helper()
	out, err := c.Kubectl(ctx, "-n", ns, "describe", "pod", name)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("kubectl describe pod %s lacks %q:\n%s", name, w, out)
		}
	}
}

// waitFor polls f until it returns no error and returns its value; the
// test fails after timeout with f's last error.
func waitFor[V any](t *testing.T, timeout time.Duration, what string, f func() (V, error)) V {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v, err := f()
		if err == nil {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not after %s: %v", what, timeout, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// waitKubectlTimeout runs kubectl until its output contains want.
func waitKubectlTimeout(t *testing.T, c *Cluster, ctx context.Context, timeout time.Duration, want string, args ...string) string {
	t.Helper()
	return waitFor(t, timeout, fmt.Sprintf("%q from kubectl %s", want, strings.Join(args, " ")), func() (string, error) {
		out, err := c.Kubectl(ctx, args...)
		if err == nil && strings.Contains(out, want) {
			return out, nil
		}
		return "", fmt.Errorf("%q, %v", out, err)
	})
}
