//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	podresourcesapi "k8s.io/kubelet/pkg/apis/podresources/v1"
	"k8s.io/utils/ptr"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// transcodeScript is the media job of test/e2e/ffmpeg_test.go as a Job's
// container runs it: it first says what it was given (the node's of
// /dev/dri, what the render node is, its own groups, whether the render
// node opens read-write), then transcodes a generated clip into /out, VAAPI
// on renderD128 first and software (libx264) when VAAPI cannot start (the
// fake GPU's render node is /dev/fuse's numbers), then holds the device
// until the test creates /out/release.
const transcodeScript = `set -u
echo "dri=$(ls /dev/dri | tr '\n' ' ')"
[ -c /dev/dri/renderD128 ] && echo "render-is-char"
echo "render-stat=$(stat -c '%F %g %a' /dev/dri/renderD128)"
echo "uid=$(id -u) groups=$(id -G)"
(exec 3<>/dev/dri/renderD128) && echo "render-open-rw-ok"
` + framework.FFmpegEncode + `
echo "holding the device until /out/release"
while [ ! -e /out/release ]; do sleep 0.2; done
echo "released"`

// jobUID and jobGID are the Jobs' non-root user and group.
const jobUID, jobGID = 1000, 1000

// testGPUJob: the node offers accel-cri.io/intel-gpu: 1; a non-root Job
// asking for it is scheduled, gets exactly that device (renderD128, the
// render group), transcodes with the ffmpeg image and its output passes
// ffprobe; a second such Job, created while the first holds the device,
// stays Pending (the scheduler's Insufficient accel-cri.io/intel-gpu)
// and runs to completion once the first is done.
func testGPUJob(t *testing.T, c *Cluster) {
	for _, b := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s not found: run hack/install-deps.sh (Debian ffmpeg)", b)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	// The node's status and the kubelet's device manager list the GPU,
	// once accel-cri's device plugin has registered.
	node := waitFor(t, time.Minute, "the node's allocatable to list "+ResourceName+": 1", func() (*corev1.Node, error) {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		alloc, capa := n.Status.Allocatable[ResourceName], n.Status.Capacity[ResourceName]
		if alloc.Cmp(resource.MustParse("1")) != 0 || capa.Cmp(resource.MustParse("1")) != 0 {
			return nil, fmt.Errorf("allocatable %s, capacity %s", alloc.String(), capa.String())
		}
		return n, nil
	})
	q := node.Status.Capacity[ResourceName]
	t.Logf("node %s: capacity and allocatable %s=%s", node.Name, ResourceName, q.String())
	pr := c.Kubelet.PodResources(t)
	ar, err := pr.GetAllocatableResources(ctx, &podresourcesapi.AllocatableResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := deviceIDs(ar.Devices, ResourceName); got != GPU.PCI {
		t.Errorf("kubelet's allocatable %s = %q, want %s", ResourceName, got, GPU.PCI)
	}

	start := time.Now()
	img := framework.PushFFmpegImage(t, c.Registry, "library/")
	t.Logf("ffmpeg image built and pushed in %s", time.Since(start).Round(time.Second))

	ns := c.Namespace(t, "gpu-job")
	// Each Job writes to a host directory of its own that uid 1000 may
	// write to.
	media, err := os.MkdirTemp("", "acri-cluster-media-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(media) })
	out := map[string]string{}
	for _, name := range []string{"transcode-1", "transcode-2"} {
		out[name] = filepath.Join(media, name)
		if err := os.Mkdir(out[name], 0o777); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{media, out["transcode-1"], out["transcode-2"]} {
		if err := os.Chmod(d, 0o777); err != nil { // past the umask
			t.Fatal(err)
		}
	}

	createJob := func(name string) {
		t.Helper()
		if _, err := c.Client.BatchV1().Jobs(ns).Create(ctx, transcodeJob(name, img.Ref, out[name]), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	createJob("transcode-1")
	first := waitJobPod(t, c, ctx, ns, "transcode-1", "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	log1 := waitKubectlTimeout(t, c, ctx, 5*time.Minute, "holding the device", "-n", ns, "logs", first.Name)
	t.Logf("transcode-1 (%s) holds the GPU after %s; log:\n%s", first.Name, time.Since(start).Round(time.Second), log1)
	checkTranscodeLog(t, "transcode-1", log1)

	// kubelet's device manager gave that container the one GPU.
	list, err := pr.List(ctx, &podresourcesapi.ListPodResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var alloc []string
	for _, p := range list.PodResources {
		for _, ctr := range p.Containers {
			if got := deviceIDs(ctr.Devices, ResourceName); got != "" {
				alloc = append(alloc, p.Namespace+"/"+p.Name+"/"+ctr.Name+"="+got)
			}
		}
	}
	if want := ns + "/" + first.Name + "/ffmpeg=" + GPU.PCI; len(alloc) != 1 || alloc[0] != want {
		t.Errorf("kubelet's pod-resources allocations of %s: %v, want [%s]", ResourceName, alloc, want)
	}

	// The second Job waits for the device: the scheduler finds no node
	// with a free GPU.
	createJob("transcode-2")
	second := waitJobPod(t, c, ctx, ns, "transcode-2", "created", func(*corev1.Pod) bool { return true })
	msg := waitPodEvent(t, c, ctx, ns, second.Name, "FailedScheduling", "Insufficient "+ResourceName)
	t.Logf("transcode-2 (%s): FailedScheduling: %s", second.Name, msg)
	waitUnschedulable(t, c, ctx, ns, second.Name, "Insufficient "+ResourceName)

	// The first releases the device; both complete.
	if err := os.WriteFile(filepath.Join(out["transcode-1"], "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitJobComplete(t, c, ctx, ns, "transcode-1")
	released := time.Now()
	second = waitJobPod(t, c, ctx, ns, "transcode-2", "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	log2 := waitKubectlTimeout(t, c, ctx, 5*time.Minute, "holding the device", "-n", ns, "logs", second.Name)
	t.Logf("transcode-2 (%s) got the GPU %s after transcode-1 finished; log:\n%s", second.Name, time.Since(released).Round(time.Millisecond), log2)
	checkTranscodeLog(t, "transcode-2", log2)
	if err := os.WriteFile(filepath.Join(out["transcode-2"], "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitJobComplete(t, c, ctx, ns, "transcode-2")

	for _, name := range []string{"transcode-1", "transcode-2"} {
		probe, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
			"-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "default=nw=1", filepath.Join(out[name], "clip.mp4")).CombinedOutput()
		if err != nil {
			t.Fatalf("ffprobe %s's clip: %v\n%s", name, err, probe)
		}
		for _, want := range []string{"codec_name=h264", "width=320", "height=240", "nb_read_frames=50"} {
			if !strings.Contains(string(probe), want) {
				t.Errorf("ffprobe of %s's clip: %q lacks %s", name, probe, want)
			}
		}
		t.Logf("ffprobe %s: %s", name, strings.ReplaceAll(strings.TrimSpace(string(probe)), "\n", " "))
	}
}

// transcodeJob is a Job running transcodeScript as jobUID:jobGID, not
// privileged, with one accel-cri.io/intel-gpu and outDir as /out.
func transcodeJob(name, image, outDir string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{
					RestartPolicy:                 corev1.RestartPolicyNever,
					TerminationGracePeriodSeconds: ptr.To[int64](2),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsUser: ptr.To[int64](jobUID), RunAsGroup: ptr.To[int64](jobGID), RunAsNonRoot: ptr.To(true),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name: "ffmpeg", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
						Command: []string{"sh", "-c", transcodeScript},
						Resources: corev1.ResourceRequirements{
							Limits: corev1.ResourceList{ResourceName: resource.MustParse("1")},
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "out", MountPath: "/out"}},
					}},
					Volumes: []corev1.Volume{{Name: "out", VolumeSource: corev1.VolumeSource{
						HostPath: &corev1.HostPathVolumeSource{Path: outDir},
					}}},
				},
			},
		},
	}
}

// checkTranscodeLog checks what a transcode container said it was given:
// the GPU's nodes and nothing else, renderD128 a character device of the
// render group that the non-root process, a member of that group, opens
// read-write, and the software encoder (the fake GPU has no VAAPI).
func checkTranscodeLog(t *testing.T, name, log string) {
	t.Helper()
	for _, want := range []string{
		"dri=card0 renderD128 \n",
		"render-is-char\n",
		fmt.Sprintf("render-stat=character special file %d 660\n", GPU.RenderGID),
		"render-open-rw-ok\n",
		"encoder=software\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("%s's log lacks %q", name, strings.TrimSpace(want))
		}
	}
	var uid, groups string
	for _, l := range strings.Split(log, "\n") {
		if rest, ok := strings.CutPrefix(l, "uid="); ok {
			uid, groups, _ = strings.Cut(rest, " groups=")
		}
	}
	if uid != fmt.Sprint(jobUID) || !strings.Contains(" "+groups+" ", fmt.Sprintf(" %d ", GPU.RenderGID)) || !strings.HasPrefix(groups, fmt.Sprint(jobGID)) {
		t.Errorf("%s runs as uid %q with groups %q; want uid %d, group %d and the render group %d among them", name, uid, groups, jobUID, jobGID, GPU.RenderGID)
	}
}

// deviceIDs joins the IDs of the devices of resource.
func deviceIDs(devs []*podresourcesapi.ContainerDevices, resource string) string {
	var ids []string
	for _, d := range devs {
		if d.ResourceName == resource {
			ids = append(ids, d.DeviceIds...)
		}
	}
	return strings.Join(ids, ",")
}

// waitJobPod waits for the one pod of Job job to satisfy cond.
func waitJobPod(t *testing.T, c *Cluster, ctx context.Context, ns, job, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	return waitFor(t, 5*time.Minute, "the pod of job "+job+" "+what, func() (*corev1.Pod, error) {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job})
		if err != nil {
			return nil, err
		}
		if len(pods.Items) != 1 {
			return nil, fmt.Errorf("%d pods", len(pods.Items))
		}
		p := &pods.Items[0]
		if p.Status.Phase == corev1.PodFailed {
			out, _ := c.Kubectl(ctx, "-n", ns, "logs", p.Name)
			t.Fatalf("pod %s of job %s failed: %s\nlog:\n%s", p.Name, job, p.Status.Message, out)
		}
		if !cond(p) {
			return nil, fmt.Errorf("pod %s %s", p.Name, p.Status.Phase)
		}
		return p, nil
	})
}

// waitJobComplete waits for Job job's Complete condition.
func waitJobComplete(t *testing.T, c *Cluster, ctx context.Context, ns, job string) {
	t.Helper()
	waitFor(t, 5*time.Minute, "job "+job+" to complete", func() (bool, error) {
		j, err := c.Client.BatchV1().Jobs(ns).Get(ctx, job, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range j.Status.Conditions {
			if cond.Status == corev1.ConditionTrue && (cond.Type == batchv1.JobComplete || cond.Type == batchv1.JobFailed) {
				if cond.Type == batchv1.JobFailed {
					t.Fatalf("job %s failed: %s: %s", job, cond.Reason, cond.Message)
				}
				return true, nil
			}
		}
		return false, fmt.Errorf("succeeded %d, failed %d, active %d", j.Status.Succeeded, j.Status.Failed, j.Status.Active)
	})
}
