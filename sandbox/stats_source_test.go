package sandbox

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/sandbox/stats"
)

// The stats see each pod and container with what sampling it needs: whose
// cgroups are on the host (runc-style handlers), which pods have a pause
// task, and the snapshotter of the writable layer.
func TestStatsSource(t *testing.T) {
	r := &Runtime{store: newStore(t.TempDir()), defaultHandler: "runc", snapshotter: "overlayfs",
		handlers: map[string]*handler{
			"runc":   withKind(&handler{name: "runc", runtimeType: RuntimeTypeRunc, binary: "runc", snapshotter: "overlayfs"}),
			"gvisor": withKind(&handler{name: "gvisor", runtimeType: RuntimeTypeRunc, binary: "/usr/bin/runsc", snapshotter: "native"}),
		}}
	created := time.Unix(1_800_000_000, 0)
	started := created.Add(time.Second)
	res := &runtimeapi.LinuxContainerResources{CpuQuota: 20000}
	podCfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "web-0"}}
	ctrCfg := &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "nginx"}}

	infraless := newPod(podMeta{ID: "pod1", Config: podCfg, Infraless: true, RuntimeHandler: "runc",
		NetNSPath: "/run/netns/pod1", CgroupsPath: "/pods/pod1", CreatedAt: created})
	infraless.status = podStatus{State: runtimeapi.PodSandboxState_SANDBOX_READY}
	addShownPod(r.store, infraless)
	sandboxed := newPod(podMeta{ID: "pod2", Config: podCfg, RuntimeHandler: "gvisor", CgroupsPath: "/pods/pod2", CreatedAt: created.Add(time.Minute)})
	sandboxed.status = podStatus{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY, PID: 42}
	addShownPod(r.store, sandboxed)
	c1 := newContainer(containerMeta{ID: "c1", PodID: "pod1", Config: ctrCfg, ImageName: "nginx:1.27", CgroupsPath: "/pods/pod1/c1", CreatedAt: created})
	c1.status = containerStatus{State: runtimeapi.ContainerState_CONTAINER_RUNNING, PID: 7, StartedAt: started, Resources: res}
	r.store.addContainer(c1)
	c2 := newContainer(containerMeta{ID: "c2", PodID: "pod2", Config: ctrCfg, CgroupsPath: "/pods/pod2/c2", CreatedAt: created.Add(time.Hour)})
	c2.status = containerStatus{State: runtimeapi.ContainerState_CONTAINER_EXITED}
	r.store.addContainer(c2)

	src := statsSource{r}
	wantPods := []stats.Pod{
		{ID: "pod1", Config: podCfg, Ready: true, NetNSPath: "/run/netns/pod1"},
		{ID: "pod2", Config: podCfg, Pause: stats.Task{ID: "pod2", CgroupsPath: "/pods/pod2", StartedAt: created.Add(time.Minute), PID: 42}},
	}
	wantC1 := stats.Container{ID: "c1", Config: ctrCfg, ImageName: "nginx:1.27", Running: true, Resources: res, Snapshotter: "overlayfs",
		Task: stats.Task{ID: "c1", CgroupsPath: "/pods/pod1/c1", HostCgroups: true, StartedAt: started, PID: 7}}
	wantC2 := stats.Container{ID: "c2", Config: ctrCfg, Snapshotter: "native", Task: stats.Task{ID: "c2", CgroupsPath: "/pods/pod2/c2"}}
	// The configs and resources are the store's own, not copies.
	same := cmp.Options{
		cmp.Comparer(func(a, b *runtimeapi.PodSandboxConfig) bool { return a == b }),
		cmp.Comparer(func(a, b *runtimeapi.ContainerConfig) bool { return a == b }),
		cmp.Comparer(func(a, b *runtimeapi.LinuxContainerResources) bool { return a == b }),
	}
	for _, tc := range []struct {
		desc      string
		got, want any
	}{
		{"pods", src.Pods(), wantPods},
		{"every container", src.Containers(""), []stats.Container{wantC1, wantC2}},
		{"a pod's containers", src.Containers("pod2"), []stats.Container{wantC2}},
	} {
		if d := cmp.Diff(tc.want, tc.got, same); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.desc, d)
		}
	}
	for id, want := range map[string]bool{"pod1": true, "c2": true, "c": false, "pod3": false} {
		if got := src.Exists(id); got != want {
			t.Errorf("Exists(%q) = %v", id, got)
		}
	}
}
