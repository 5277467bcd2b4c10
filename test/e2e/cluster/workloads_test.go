//go:build cluster

package cluster

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// busyboxJob is a Job of one busybox container running script.
func busyboxJob(c *Cluster, ns, name, script string, completions, parallelism, backoffLimit int32) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: batchv1.JobSpec{
			Completions: ptr.To(completions), Parallelism: ptr.To(parallelism), BackoffLimit: ptr.To(backoffLimit),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"job": name}},
				Spec: corev1.PodSpec{
					RestartPolicy:                 corev1.RestartPolicyNever,
					TerminationGracePeriodSeconds: ptr.To[int64](2),
					Containers: []corev1.Container{{
						Name: "work", Image: c.Images.Busybox.Ref, ImagePullPolicy: corev1.PullIfNotPresent,
						Command: []string{"sh", "-c", script},
					}},
				},
			},
		},
	}
}

// waitJob waits for the Job's Complete or Failed condition and returns it.
func waitJob(t *testing.T, c *Cluster, ctx context.Context, ns, name string, timeout time.Duration) (*batchv1.Job, batchv1.JobConditionType) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j, err := c.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			for _, cond := range j.Status.Conditions {
				if (cond.Type == batchv1.JobComplete || cond.Type == batchv1.JobFailed) && cond.Status == corev1.ConditionTrue {
					return j, cond.Type
				}
			}
		}
		if time.Now().After(deadline) {
			pods, _ := c.Kubectl(ctx, "get", "pods", "-n", ns, "-o", "wide")
			t.Fatalf("job %s/%s neither complete nor failed after %s (%v): %+v\n%s", ns, name, timeout, err, j.Status, pods)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// testJobs: a Job of 4 completions, 2 at a time, completes with at most
// two pods running at once; a Job whose pod exits 3 is retried up to its
// backoffLimit and each pod's status carries exit code 3.
func testJobs(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	ns := c.Namespace(t, "jobs")

	start := time.Now()
	if _, err := c.Client.BatchV1().Jobs(ns).Create(ctx, busyboxJob(c, ns, "batch", "echo work-of-$(hostname); sleep 2", 4, 2, 0), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.BatchV1().Jobs(ns).Create(ctx, busyboxJob(c, ns, "fails", "echo failing; exit 3", 1, 1, 2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	j, cond := waitJob(t, c, ctx, ns, "batch", 5*time.Minute)
	if cond != batchv1.JobComplete || j.Status.Succeeded != 4 || j.Status.Failed != 0 {
		t.Errorf("job batch: %s, %d succeeded, %d failed; want Complete, 4, 0", cond, j.Status.Succeeded, j.Status.Failed)
	}
	t.Logf("job batch (4 completions, parallelism 2) complete in %s", time.Since(start).Round(time.Millisecond))
	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job=batch"})
	if err != nil {
		t.Fatal(err)
	}
	// Parallelism from the containers' own start and finish times (the
	// kubelet's, from accel-cri's status): never more than 2 at once.
	type event struct {
		at    time.Time
		delta int
	}
	var events []event
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodSucceeded || len(p.Status.ContainerStatuses) != 1 {
			t.Errorf("pod %s: %s, %d container statuses", p.Name, p.Status.Phase, len(p.Status.ContainerStatuses))
			continue
		}
		term := p.Status.ContainerStatuses[0].State.Terminated
		if term == nil || term.ExitCode != 0 || term.Reason != "Completed" {
			t.Errorf("pod %s: terminated %+v, want exit 0 Completed", p.Name, term)
			continue
		}
		events = append(events, event{term.StartedAt.Time, 1}, event{term.FinishedAt.Time, -1})
		logs, err := c.Kubectl(ctx, "-n", ns, "logs", p.Name)
		if err != nil || strings.TrimSpace(logs) != "work-of-"+p.Name {
			t.Errorf("kubectl logs %s = %q, %v", p.Name, logs, err)
		}
	}
	if len(events) != 8 {
		t.Errorf("%d succeeded pods of job batch, want 4", len(events)/2)
	}
	slices.SortFunc(events, func(a, b event) int {
		if d := a.at.Compare(b.at); d != 0 {
			return d
		}
		return a.delta - b.delta // a finish before a start at the same second
	})
	running, most := 0, 0
	for _, e := range events {
		running += e.delta
		most = max(most, running)
	}
	if most > 2 {
		t.Errorf("job batch ran %d pods at once, parallelism is 2", most)
	}

	j, cond = waitJob(t, c, ctx, ns, "fails", 5*time.Minute)
	if cond != batchv1.JobFailed || j.Status.Failed != 3 || j.Status.Succeeded != 0 {
		t.Errorf("job fails: %s, %d failed, %d succeeded; want Failed after 3 attempts (backoffLimit 2)", cond, j.Status.Failed, j.Status.Succeeded)
	}
	for _, cnd := range j.Status.Conditions {
		if cnd.Type == batchv1.JobFailed && cnd.Reason != "BackoffLimitExceeded" {
			t.Errorf("job fails failed with reason %q, want BackoffLimitExceeded", cnd.Reason)
		}
	}
	pods, err = c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job=fails"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 3 {
		t.Errorf("job fails has %d pods, want 3", len(pods.Items))
	}
	for _, p := range pods.Items {
		var term *corev1.ContainerStateTerminated
		if len(p.Status.ContainerStatuses) == 1 {
			term = p.Status.ContainerStatuses[0].State.Terminated
		}
		if p.Status.Phase != corev1.PodFailed || term == nil || term.ExitCode != 3 || term.Reason != "Error" {
			t.Errorf("pod %s of job fails: %s, terminated %+v; want Failed with exit code 3 (Error)", p.Name, p.Status.Phase, term)
		}
	}
}

// testRuntimeClass: RuntimeClass objects for accel-cri's crun and gVisor
// (runsc) handlers; a pod naming each runs under that OCI runtime, seen
// from outside: gVisor's own kernel answers inside its pod, crun's state
// directory holds the other pod's container.
func testRuntimeClass(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := c.Namespace(t, "runtimeclass")
	for name, handler := range map[string]string{"crun": "crun", "gvisor": "runsc"} {
		rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Handler: handler}
		if _, err := c.Client.NodeV1().RuntimeClasses().Create(ctx, rc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = c.Client.NodeV1().RuntimeClasses().Delete(context.Background(), name, metav1.DeleteOptions{})
		})
	}
	for _, rc := range []string{"crun", "gvisor"} {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: rc, Namespace: ns},
			Spec: corev1.PodSpec{
				RuntimeClassName:              ptr.To(rc),
				TerminationGracePeriodSeconds: ptr.To[int64](2),
				Containers: []corev1.Container{{
					Name: "main", Image: c.Images.Busybox.Ref, ImagePullPolicy: corev1.PullIfNotPresent,
					Command: []string{"sh", "-c", "echo running-under-" + rc + "; exec sleep 3600"},
				}},
			},
		}
		if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pods := map[string]*corev1.Pod{}
	for _, rc := range []string{"crun", "gvisor"} {
		pods[rc] = waitRunning(t, c, ctx, ns, rc, 3*time.Minute)
		waitKubectl(t, c, ctx, "running-under-"+rc, "-n", ns, "logs", rc)
	}

	// gVisor's Sentry is the kernel its pod sees: its dmesg is gVisor's,
	// its kernel release not the host's.
	host, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	dmesg, err := c.Kubectl(ctx, "-n", ns, "exec", "gvisor", "--", "dmesg")
	if err != nil || !strings.Contains(dmesg, "gVisor") {
		t.Errorf("dmesg in the gvisor pod: %q, %v; want gVisor's", dmesg, err)
	}
	for rc, wantHost := range map[string]bool{"gvisor": false, "crun": true} {
		rel, err := c.Kubectl(ctx, "-n", ns, "exec", rc, "--", "uname", "-r")
		if err != nil {
			t.Fatal(err)
		}
		if same := strings.TrimSpace(rel) == strings.TrimSpace(string(host)); same != wantHost {
			t.Errorf("uname -r in the %s pod = %q, host's %q", rc, strings.TrimSpace(rel), strings.TrimSpace(string(host)))
		}
	}
	// Each OCI runtime keeps a container's state under the handler's root,
	// per containerd namespace (the runc shim's --root), in an entry named
	// with the container's id (crun: a directory <id>; runsc: files
	// <sandbox>_sandbox:<id>.state): the pods' containers are there.
	for rc, root := range map[string]string{"crun": "crun", "gvisor": "runsc"} {
		id := strings.TrimPrefix(pods[rc].Status.ContainerStatuses[0].ContainerID, "accel-cri://")
		entries, err := os.ReadDir(filepath.Join(c.Dir, "runtimes", root, "accel-cri"))
		if !slices.ContainsFunc(entries, func(e os.DirEntry) bool { return strings.Contains(e.Name(), id) }) {
			t.Errorf("the %s pod's container %s has no state under %s's root (%v)", rc, id, root, err)
		}
	}
	t.Logf("pods ran under crun and gVisor (%s)", strings.TrimSpace(firstLine(dmesg)))
}

// waitRunning waits for the pod's Running phase with every container
// ready and returns it.
func waitRunning(t *testing.T, c *Cluster, ctx context.Context, ns, name string, timeout time.Duration) *corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) > 0 &&
			!slices.ContainsFunc(p.Status.ContainerStatuses, func(s corev1.ContainerStatus) bool { return !s.Ready }) {
			return p
		}
		if time.Now().After(deadline) {
			desc, _ := c.Kubectl(ctx, "-n", ns, "describe", "pod", name)
			t.Fatalf("pod %s/%s not running after %s (%v):\n%s", ns, name, timeout, err, desc)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
