package sandbox

import (
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A pod RunPodSandbox is still making (its NRI RunPodSandbox hook may be
// running) is the exit monitor's to find, not the CRI's: no lookup, list
// or id prefix reaches it until showPod.
func TestPodHiddenUntilShown(t *testing.T) {
	s := newStore(t.TempDir())
	cfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"}}
	p := newPod(podMeta{ID: "abcdef", Config: cfg})
	s.addPod(p)

	if _, err := s.pod("abcdef"); !errdefs.IsNotFound(err) {
		t.Errorf("pod(full id) of a pod being made = %v; want NotFound", err)
	}
	if _, err := s.pod("abc"); !errdefs.IsNotFound(err) {
		t.Errorf("pod(prefix) of a pod being made = %v; want NotFound", err)
	}
	if got := s.listPods(); len(got) != 0 {
		t.Errorf("listPods = %d pods while one is being made; want none", len(got))
	}
	if s.podExact("abcdef") != p {
		t.Error("podExact does not find the pod being made; the exit monitor needs it")
	}

	s.showPod(p)
	if got, err := s.pod("abc"); err != nil || got != p {
		t.Errorf("pod(prefix) after showPod = %v, %v; want the pod", got, err)
	}
	if got := s.listPods(); len(got) != 1 || got[0] != p {
		t.Errorf("listPods after showPod = %v; want the pod", got)
	}
}
