//go:build cluster

package cluster

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// webDeployment is n busybox httpd replicas serving page-<pod name>, each
// saying hello-from-<pod name> in its log first.
func webDeployment(c *Cluster, ns, name string, n int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(n),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](2),
					Containers: []corev1.Container{{
						Name: "web", Image: c.Images.Busybox.Ref, ImagePullPolicy: corev1.PullIfNotPresent,
						Command: []string{"sh", "-c", "echo hello-from-$(hostname); mkdir -p /www; echo page-$(hostname) > /www/index.html; exec httpd -f -p 8080 -h /www"},
					}},
				},
			},
		},
	}
}

// podSnapshot is what must not change about a running pod across a
// component's restart: its UID, its sandbox (IP) and its containers'
// restart counts and ids.
func podSnapshot(t *testing.T, c *Cluster, ctx context.Context, ns, selector string) map[string]string {
	t.Helper()
	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range pods.Items {
		s := string(p.UID) + " " + p.Status.PodIP
		for _, cs := range p.Status.ContainerStatuses {
			s += " " + cs.ContainerID + " restarts=" + strconv.Itoa(int(cs.RestartCount))
		}
		out[p.Name] = s
	}
	return out
}

// testPodCleanup: pod deletion, a node drain and a kubelet restart leave
// nothing of the pods behind (ready sandboxes, running containers, netns,
// mounts, IPs, pod cgroups, shims), and a kubelet restart does not restart
// the pods it finds running.
func testPodCleanup(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	idle, err := c.Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("idle node: %v", idle)
	ns := c.Namespace(t, "cleanup")
	if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, webDeployment(c, ns, "web", 3), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	names := waitPods(t, c, ctx, ns, "app=web", 3, nil)
	running, err := c.Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("3 pods: %v", running)
	if running.ReadySandboxes != idle.ReadySandboxes+3 || running.PinnedNS <= idle.PinnedNS || running.IPs != idle.IPs+3 || running.PodCgroups != idle.PodCgroups+3 {
		t.Errorf("3 more pods count as %v (idle %v): the count does not see them", running, idle)
	}

	// Pod deletion: the Deployment replaces the pod; the node holds what
	// it held with 3 pods, not 4.
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, names[0], metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPods(t, c, ctx, ns, "app=web", 3, names[:1])
	c.WaitCounts(t, running, 2*time.Minute)
	t.Logf("pod %s deleted and replaced: the node holds %v again", names[0], running)

	// A kubelet restart: the pods keep running, unrestarted, in the same
	// sandboxes; nothing is added.
	before := podSnapshot(t, c, ctx, ns, "app=web")
	c.Kubelet.Stop()
	c.Kubelet.Start(t)
	c.WaitNodeReady(t, 2*time.Minute)
	waitPods(t, c, ctx, ns, "app=web", 3, nil)
	if after := podSnapshot(t, c, ctx, ns, "app=web"); !maps.Equal(before, after) {
		t.Errorf("the kubelet restart changed the pods:\nbefore %v\nafter  %v", before, after)
	}
	c.WaitCounts(t, running, 2*time.Minute)
	t.Log("kubelet restarted: the same 3 pods run, nothing added")

	// A drain evicts every pod; with the one node cordoned their
	// replacements stay Pending and the node holds what it held idle.
	if out, err := c.Kubectl(ctx, "drain", NodeName, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=3m"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	drained := c.WaitCounts(t, idle, 2*time.Minute)
	t.Logf("drained: %v", drained)
	if out, err := c.Kubectl(ctx, "uncordon", NodeName); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	waitPods(t, c, ctx, ns, "app=web", 3, names)
	c.WaitCounts(t, running, 2*time.Minute)

	// Deleting the Deployment: back to idle.
	if err := c.Client.AppsV1().Deployments(ns).Delete(ctx, "web", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
		t.Fatal(err)
	}
	c.WaitCounts(t, idle, 2*time.Minute)
	t.Logf("deployment deleted: the node holds %v, as idle", idle)
}

// testAccelCRIRestart: accel-cri restarts while a Deployment serves and a
// Job runs: no pod restarts, the Deployment's pods keep their sandboxes
// and serve, and the Job completes with no failed attempt.
func testAccelCRIRestart(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	ns := c.Namespace(t, "restart")
	if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, webDeployment(c, ns, "web", 2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The Job's pod waits for a file the test writes after the restart,
	// so it is mid-run whatever the machine's speed.
	gate := t.TempDir()
	os.Chmod(gate, 0o777)
	job := busyboxJob(c, ns, "media", "echo started; while [ ! -e /gate/go ]; do sleep 0.2; done; echo finished", 1, 1, 0)
	job.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "gate", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: gate}}}}
	job.Spec.Template.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "gate", MountPath: "/gate"}}
	if _, err := c.Client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	web := waitPods(t, c, ctx, ns, "app=web", 2, nil)
	jobPods := waitPods(t, c, ctx, ns, "job=media", 1, nil)
	waitKubectl(t, c, ctx, "started", "-n", ns, "logs", jobPods[0])
	before := podSnapshot(t, c, ctx, ns, "")

	start := time.Now()
	c.AccelCRI.Restart(t)
	t.Logf("accel-cri restarted in %s", time.Since(start).Round(time.Millisecond))
	c.WaitNodeReady(t, 2*time.Minute)
	// Every pod serves or runs on: the same sandboxes, nothing restarted.
	for _, name := range web {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := framework.HTTPGet(t, "http://"+p.Status.PodIP+":8080/", 30*time.Second); strings.TrimSpace(got) != "page-"+name {
			t.Errorf("after the restart, %s serves %q", name, got)
		}
	}
	if err := os.WriteFile(filepath.Join(gate, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	j, cond := waitJob(t, c, ctx, ns, "media", 3*time.Minute)
	if cond != batchv1.JobComplete || j.Status.Succeeded != 1 || j.Status.Failed != 0 {
		t.Errorf("job media: %s, %d succeeded, %d failed; want Complete, 1, 0", cond, j.Status.Succeeded, j.Status.Failed)
	}
	waitKubectl(t, c, ctx, "finished", "-n", ns, "logs", jobPods[0])
	after := podSnapshot(t, c, ctx, ns, "")
	for name, was := range before {
		now := after[name]
		if name == jobPods[0] {
			// The job's container has exited since: its id and pod stay.
			was, now = strings.Fields(was)[0], strings.Fields(now)[0]
		}
		if was != now {
			t.Errorf("pod %s changed across accel-cri's restart:\nbefore %s\nafter  %s", name, was, now)
		}
	}
}
