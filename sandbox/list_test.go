package sandbox

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// List entries are shared until their state changes (the CRI server caches
// each entry's encoding for as long as it lives), and never changed: a
// state change makes a new entry and leaves the old one as it was.
func TestListItemsSharedUntilStateChanges(t *testing.T) {
	r := &Runtime{store: newStore(t.TempDir())}
	cfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"}, Labels: map[string]string{"a": "b"}}
	p := newPod(podMeta{ID: "pod1", Config: cfg, RuntimeHandler: "runc"})
	addShownPod(r.store, p)
	c := newContainer(containerMeta{ID: "ctr1", PodID: "pod1", ImageName: "busybox", ImageRef: "ref",
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Annotations: map[string]string{"x": "y"}}})
	r.store.addContainer(c)

	pods1, ctrs1 := r.ListPods(PodFilter{}), r.ListContainers(ContainerFilter{})
	pods2, ctrs2 := r.ListPods(PodFilter{}), r.ListContainers(ContainerFilter{})
	if len(pods1) != 1 || len(ctrs1) != 1 {
		t.Fatalf("listed %d pods and %d containers, want 1 each", len(pods1), len(ctrs1))
	}
	if pods1[0] != pods2[0] || ctrs1[0] != ctrs2[0] {
		t.Error("unchanged pod or container listed as a new entry")
	}
	if got := pods1[0]; got.Id != "pod1" || got.Labels["a"] != "b" || got.RuntimeHandler != "runc" || got.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("pod entry %v", got)
	}
	if got := ctrs1[0]; got.Id != "ctr1" || got.PodSandboxId != "pod1" || got.Image.GetImage() != "busybox" || got.ImageRef != "ref" || got.Annotations["x"] != "y" {
		t.Errorf("container entry %v", got)
	}

	pst := r.store.podStatusOf(p)
	pst.State = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	cst := r.store.containerStatusOf(c)
	cst.State = runtimeapi.ContainerState_CONTAINER_EXITED
	if err := r.store.setPodStatus(p, pst); err != nil {
		t.Fatal(err)
	}
	if err := r.store.setContainerStatus(c, cst); err != nil {
		t.Fatal(err)
	}
	pods3, ctrs3 := r.ListPods(PodFilter{}), r.ListContainers(ContainerFilter{})
	if pods3[0] == pods1[0] || pods3[0].State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("pod after the state change: %v (same entry: %v)", pods3[0], pods3[0] == pods1[0])
	}
	if ctrs3[0] == ctrs1[0] || ctrs3[0].State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("container after the state change: %v (same entry: %v)", ctrs3[0], ctrs3[0] == ctrs1[0])
	}
	if pods1[0].State != runtimeapi.PodSandboxState_SANDBOX_READY || ctrs1[0].State != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Error("an entry already handed out was changed")
	}
}
