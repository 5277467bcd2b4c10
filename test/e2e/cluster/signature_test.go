//go:build cluster

package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/hack/testimages"
	"github.com/accel-cri/accel-cri/images/signature/sigtest"
)

// testSignaturePolicy: a namespace whose file in accel-cri's
// signature_policy_dir wants images of the cluster's registry signed by a
// key of the test's. A pod of an unsigned image there waits with the
// reason SignatureValidationFailed (kubelet's evalCRIPullErr reads accel-
// cri's message prefix), then ImagePullBackOff, and never runs; the same
// pod in a namespace without a file runs; signed images (a cosign legacy
// signature, a sigstore bundle) run in the first. Once the unsigned image
// is on the node, a pod of the first namespace that does not pull it
// (IfNotPresent) is stopped by accel-cri's re-check at CreateContainer,
// and the first pod's next pull (Always) is refused again.
func testSignaturePolicy(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	opts := c.Registry.RemoteOptions(ctx)

	base, err := testimages.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	// Images of their own (a label each), so that nothing another case
	// pulled stands in for them.
	push := func(name string) (repo, ref, dgst string) {
		t.Helper()
		cf, err := base.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.Config.Labels = map[string]string{"io.accel-cri.test.variant": name}
		var img v1.Image
		if img, err = mutate.ConfigFile(base, cf); err != nil {
			t.Fatal(err)
		}
		repo = c.Registry.Host() + "/signature-policy/" + name
		if dgst, err = testimages.Push(ctx, img, repo+":latest", opts...); err != nil {
			t.Fatal(err)
		}
		return repo, repo + ":latest", dgst
	}
	_, unsigned, _ := push("unsigned")
	legacyRepo, legacy, legacyDigest := push("signed-legacy")
	bundleRepo, bundle, bundleDigest := push("signed-bundle")
	signer, err := sigtest.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	if err := signer.SignLegacy(ctx, legacyRepo, legacyDigest, "", opts...); err != nil {
		t.Fatal(err)
	}
	if err := signer.SignBundle(ctx, bundleRepo, bundleDigest, opts...); err != nil {
		t.Fatal(err)
	}
	keyPath, err := signer.WritePublicKey(t.TempDir(), "cosign.pub")
	if err != nil {
		t.Fatal(err)
	}

	enforced := c.Namespace(t, "signature-enforced")
	free := c.Namespace(t, "signature-free")
	// Written while the cluster runs: accel-cri reads the directory at
	// each pull.
	policyFile := filepath.Join(c.SignaturePolicyDir, enforced+".json")
	policy, err := json.Marshal(map[string]any{
		"default": []any{map[string]string{"type": "reject"}},
		"transports": map[string]any{"docker": map[string]any{c.Registry.Host(): []any{map[string]any{
			"type": "sigstoreSigned", "keyPath": keyPath, "signedIdentity": map[string]string{"type": "matchRepository"},
		}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(policyFile, policy, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(policyFile); err != nil {
			t.Errorf("remove %s: %v", policyFile, err)
		}
	})

	pod := func(ns, name, image string, pull corev1.PullPolicy) *corev1.Pod {
		p := busyboxPod(c, ns, name, "echo running; exec sleep 3600")
		p.Spec.Containers[0].Image = image
		p.Spec.Containers[0].ImagePullPolicy = pull
		created, err := c.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return created
	}

	// The unsigned image in the enforced namespace: refused at each pull.
	refusedPod := pod(enforced, "unsigned", unsigned, corev1.PullAlways)
	reasons := watchWaiting(t, c, ctx, refusedPod, "SignatureValidationFailed", "ImagePullBackOff")
	t.Logf("unsigned in %s: waiting reasons %v", enforced, reasons)
	// kubelet: "image pull failed for X because the signature validation
	// failed: <accel-cri's reason>" while SignatureValidationFailed.
	msg := waitPodEvent(t, c, ctx, enforced, "unsigned", "Failed", "SignatureValidationFailed: ")
	t.Logf("event Failed: %s", msg)
	if !strings.Contains(msg, "no signature") || !strings.Contains(msg, enforced+".json") {
		t.Errorf("Failed event %q lacks accel-cri's reason (no signature) or the policy file %s.json", msg, enforced)
	}
	if img, err := c.AccelCRI.Images.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: unsigned}, false); err != nil || img.GetImage() != nil {
		t.Errorf("after the refusal, accel-cri's ImageStatus %s = %v, %v; want nothing", unsigned, img.GetImage(), err)
	}
	describeShows(t, c, ctx, enforced, "unsigned", "SignatureValidationFailed", "no signature")

	// Without a file the namespace has no policy (the cluster sets no
	// default policy): the same pod runs.
	pod(free, "unsigned", unsigned, corev1.PullAlways)
	waitRunning(t, c, ctx, free, "unsigned", 2*time.Minute)

	// Signed images run in the enforced namespace.
	pod(enforced, "signed-legacy", legacy, corev1.PullAlways)
	pod(enforced, "signed-bundle", bundle, corev1.PullAlways)
	waitRunning(t, c, ctx, enforced, "signed-legacy", 2*time.Minute)
	waitRunning(t, c, ctx, enforced, "signed-bundle", 2*time.Minute)

	// The unsigned image is on the node now (the free namespace's pull):
	// with IfNotPresent the kubelet does not pull it, and accel-cri's
	// re-check at CreateContainer refuses it.
	present := pod(enforced, "unsigned-present", unsigned, corev1.PullIfNotPresent)
	watchWaiting(t, c, ctx, present, "CreateContainerError")
	if st := containerStatus(getPod(t, c, ctx, enforced, "unsigned-present"), "main"); st.State.Waiting != nil && !strings.Contains(st.State.Waiting.Message, "SignatureValidationFailed") {
		t.Errorf("unsigned-present waits with %q, want accel-cri's SignatureValidationFailed", st.State.Waiting.Message)
	}

	// The first pod's image is on the node now, and still refused: kubelet
	// backs off, pulls again (Always) and is refused again.
	watchWaiting(t, c, ctx, getPod(t, c, ctx, enforced, "unsigned"), "ImagePullBackOff", "SignatureValidationFailed")
	watchWaiting(t, c, ctx, getPod(t, c, ctx, enforced, "unsigned"), "SignatureValidationFailed", "ImagePullBackOff")

	// It never ran.
	p := getPod(t, c, ctx, enforced, "unsigned")
	st := containerStatus(p, "main")
	if p.Status.Phase != corev1.PodPending || st == nil || st.ContainerID != "" || st.RestartCount != 0 || st.State.Waiting == nil ||
		!slices.Contains([]string{"SignatureValidationFailed", "ImagePullBackOff"}, st.State.Waiting.Reason) {
		t.Errorf("unsigned in %s at the end: phase %s, container %+v; want Pending, never created, waiting in SignatureValidationFailed or ImagePullBackOff", enforced, p.Status.Phase, st)
	}
}

// watchWaiting watches pod until its container "main" waits with reason
// want, and returns the waiting reasons it went through. The container
// must never be created meanwhile; the reasons allowed on the way are
// ContainerCreating and also.
func watchWaiting(t *testing.T, c *Cluster, ctx context.Context, pod *corev1.Pod, want string, also ...string) []string {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	pods := c.Client.CoreV1().Pods(pod.Namespace)
	lw := &cache.ListWatch{WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
		o.FieldSelector = "metadata.name=" + pod.Name
		return pods.Watch(wctx, o)
	}}
	var reasons []string
	_, err := watchtools.Until(wctx, pod.ResourceVersion, lw, func(ev watch.Event) (bool, error) {
		p, ok := ev.Object.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		if p.Status.Phase != corev1.PodPending {
			return false, fmt.Errorf("pod %s/%s is %s", p.Namespace, p.Name, p.Status.Phase)
		}
		st := containerStatus(p, "main")
		if st == nil {
			return false, nil
		}
		if st.ContainerID != "" || st.State.Running != nil || st.State.Terminated != nil {
			return false, fmt.Errorf("pod %s/%s: its container was created: %+v", p.Namespace, p.Name, st)
		}
		w := st.State.Waiting
		if w == nil {
			return false, nil
		}
		if len(reasons) == 0 || reasons[len(reasons)-1] != w.Reason {
			reasons = append(reasons, w.Reason)
			t.Logf("%s/%s waiting: %s: %s", p.Namespace, p.Name, w.Reason, w.Message)
		}
		switch {
		case w.Reason == want:
			return true, nil
		case w.Reason == "ContainerCreating" || slices.Contains(also, w.Reason):
			return false, nil
		}
		return false, fmt.Errorf("pod %s/%s waits with reason %s: %s", p.Namespace, p.Name, w.Reason, w.Message)
	})
	if err != nil {
		desc, _ := c.Kubectl(context.Background(), "-n", pod.Namespace, "describe", "pod", pod.Name)
		t.Fatalf("waiting for %s/%s to wait in %s (reasons so far %v): %v\n%s\naccel-cri log:\n%s", pod.Namespace, pod.Name, want, reasons, err, desc, c.AccelCRI.LogTail(20))
	}
	return reasons
}
