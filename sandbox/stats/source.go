package stats

import (
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/core/snapshots"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Source is what the stats need of the sandbox core, which implements it:
// its pods and containers as plain values taken when asked, whether one is
// still there, and a pod's interface counters.
type Source interface {
	// Pods lists the pods the CRI shows, oldest first.
	Pods() []Pod
	// Containers lists the containers of pod podID, oldest first; every
	// container when podID is "".
	Containers(podID string) []Container
	// Exists reports whether a pod or container of this full id is still
	// in the store (ids are unique across both); answers built for one
	// that is gone are not kept.
	Exists(id string) bool
	// Links reads the counters of the interfaces in the network namespace
	// at netnsPath.
	Links(netnsPath string) ([]Link, error)
}

// Containerd is what the stats ask containerd (a *containerd.Client is
// one): the metrics of tasks whose cgroups are not on this host, and the
// use of the containers' writable layers.
type Containerd interface {
	TaskService() tasks.TasksClient
	SnapshotService(snapshotterName string) snapshots.Snapshotter
}

// Pod is a pod as the stats see it.
type Pod struct {
	ID     string
	Config *runtimeapi.PodSandboxConfig // metadata, labels, annotations
	// Ready: SANDBOX_READY. Only ready pods report usage.
	Ready bool
	// NetNSPath is its network namespace ("": the host's, not reported).
	NetNSPath string
	// Pause is its pause task; Pause.ID is "" for a pod without one.
	Pause Task
}

// Container is a container as the stats see it.
type Container struct {
	ID     string
	Config *runtimeapi.ContainerConfig // metadata, labels, annotations, image
	// ImageName labels its metrics when Config names no image the user
	// specified.
	ImageName string
	// Running: CONTAINER_RUNNING. Only running containers report usage.
	Running bool
	// Resources are the resources kubelet last set (container_spec_*).
	Resources *runtimeapi.LinuxContainerResources
	// Snapshotter holds its writable layer, the snapshot keyed by its id.
	Snapshotter string
	// Task says how to sample its task while it runs.
	Task Task
}

// Task says how to sample one task (a container's or a pause).
type Task struct {
	ID          string // the container's or the pod's id
	CgroupsPath string // the OCI cgroupsPath
	// HostCgroups: the task's processes are in CgroupsPath on this host (a
	// runc-style handler), so the cgroup is read without asking the shim.
	HostCgroups bool
	// StartedAt is the start of the first sample's CPU window.
	StartedAt time.Time
	// PID is the task's init process (its limits are reported; 0: unknown).
	PID uint32
}

// Link is one network interface's counters.
type Link struct {
	Name                                    string
	RxBytes, RxPackets, RxErrors, RxDropped uint64
	TxBytes, TxPackets, TxErrors, TxDropped uint64
}
