package sandbox

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/sandbox/stats"
)

// The stats calls select pods and containers from the store; sandbox/stats
// samples and answers (stats.Collector), seeing the store through
// statsSource.

// ContainerStats reports a container's CPU, memory and writable layer use.
func (r *Runtime) ContainerStats(ctx context.Context, id string) (*runtimeapi.ContainerStats, error) {
	c, err := r.store.container(id)
	if err != nil {
		return nil, err
	}
	return r.stats.ContainerStats(ctx, r.statsContainer(c, r.store.containerStatusOf(c)))
}

// ListContainerStats reports the containers that match f, with the
// running ones' latest samples.
func (r *Runtime) ListContainerStats(ctx context.Context, f ContainerFilter) ([]*runtimeapi.ContainerStats, error) {
	var sel []stats.Container
	for _, c := range r.store.listContainers() {
		if !matchID(c.ID, f.ID) || !matchID(c.PodID, f.PodID) || !matchLabels(c.Config.GetLabels(), f.LabelSelector) {
			continue
		}
		st := r.store.containerStatusOf(c)
		if f.State != nil && st.State != *f.State {
			continue
		}
		sel = append(sel, r.statsContainer(c, st))
	}
	return r.stats.ListContainerStats(ctx, sel)
}

// PodStats reports a pod: the sum of its pause and app containers' cgroup
// use, its network interfaces' counters, and its containers' stats.
func (r *Runtime) PodStats(ctx context.Context, id string) (*runtimeapi.PodSandboxStats, error) {
	p, err := r.store.pod(id)
	if err != nil {
		return nil, err
	}
	return r.stats.PodStats(ctx, r.statsPod(p))
}

// ListPodStats reports stats of every pod matching f.
func (r *Runtime) ListPodStats(ctx context.Context, f PodFilter) ([]*runtimeapi.PodSandboxStats, error) {
	var sel []stats.Pod
	for _, p := range r.store.listPods() {
		if !matchID(p.ID, f.ID) || !matchLabels(p.Config.GetLabels(), f.LabelSelector) {
			continue
		}
		if f.State != nil && r.store.podStatusOf(p).State != *f.State {
			continue
		}
		sel = append(sel, r.statsPod(p))
	}
	return r.stats.ListPodStats(ctx, sel)
}

// MetricDescriptors describes the metrics PodMetrics reports (built once).
func (r *Runtime) MetricDescriptors() []*runtimeapi.MetricDescriptor {
	return r.stats.MetricDescriptors()
}

// PodMetrics reports the cAdvisor metrics of every ready pod.
func (r *Runtime) PodMetrics(ctx context.Context) ([]*runtimeapi.PodSandboxMetrics, error) {
	return r.stats.PodMetrics(ctx)
}

// statsSource is the store as the stats see it (stats.Source).
type statsSource struct{ r *Runtime }

func (s statsSource) Pods() []stats.Pod {
	ps := s.r.store.listPods()
	out := make([]stats.Pod, len(ps))
	for i, p := range ps {
		out[i] = s.r.statsPod(p)
	}
	return out
}

func (s statsSource) Containers(podID string) []stats.Container {
	var cs []*Container
	if podID == "" {
		cs = s.r.store.listContainers()
	} else {
		cs = s.r.store.podContainers(podID)
	}
	out := make([]stats.Container, len(cs))
	for i, c := range cs {
		out[i] = s.r.statsContainer(c, s.r.store.containerStatusOf(c))
	}
	return out
}

func (s statsSource) Exists(id string) bool {
	return s.r.store.containerExact(id) != nil || s.r.store.podExact(id) != nil
}

func (s statsSource) Links(netnsPath string) ([]stats.Link, error) { return netnsLinks(netnsPath) }

// statsPod describes pod p for the stats, with its pause task if it has one.
func (r *Runtime) statsPod(p *Pod) stats.Pod {
	st := r.store.podStatusOf(p)
	out := stats.Pod{ID: p.ID, Config: p.Config, Ready: st.State == runtimeapi.PodSandboxState_SANDBOX_READY, NetNSPath: p.NetNSPath}
	if !p.Infraless {
		out.Pause = stats.Task{ID: p.ID, CgroupsPath: p.CgroupsPath, HostCgroups: r.hostCgroups(p.ID), StartedAt: p.CreatedAt, PID: st.PID}
	}
	return out
}

// statsContainer describes container c, of status st, for the stats.
func (r *Runtime) statsContainer(c *Container, st containerStatus) stats.Container {
	return stats.Container{ID: c.ID, Config: c.Config, ImageName: c.ImageName,
		Running: st.State == runtimeapi.ContainerState_CONTAINER_RUNNING, Resources: st.Resources,
		Snapshotter: r.podSnapshotter(c.PodID),
		Task: stats.Task{ID: c.ID, CgroupsPath: c.CgroupsPath, HostCgroups: r.hostCgroups(c.PodID),
			StartedAt: st.StartedAt, PID: st.PID}}
}

// hostCgroups reports whether the tasks of a pod live in their OCI
// cgroupsPath on this host: runc and crun put them there; gVisor and VM
// handlers keep the real figures in their sandbox, which the shim reports.
func (r *Runtime) hostCgroups(podID string) bool {
	p := r.store.podExact(podID)
	if p == nil {
		return false
	}
	h, err := r.handlerOf(p.RuntimeHandler)
	return err == nil && h.kind.hostProcesses()
}
