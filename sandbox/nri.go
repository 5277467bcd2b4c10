package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/sandbox/nri"
	"github.com/accel-cri/accel-cri/sandbox/spec"
)

// This file wires NRI (package sandbox/nri) into the lifecycle: the
// runtime side it needs (nriDomain: the pods and containers plugins are
// synchronized with, the updates and evictions they ask for) and the
// conversion of pods and containers into its terms. The lifecycle calls
// the events where they happen (pod.go, container.go, monitor.go); each
// CRI call that makes, changes or removes something holds NRI's sync
// block (nri.BlockSync) around its event, taken before any lifecycle lock
// another call could wait for.

// nriNoticeTimeout bounds the events sent where no CRI call gives a
// deadline (a container's exit, undoing a failed create). Each call into a
// plugin is bounded by the request timeout; this covers waiting for the
// plugins' turn.
const nriNoticeTimeout = time.Minute

// WithNRI switches NRI on with cfg (nri.New); Start starts it once the
// state is recovered and Close stops it.
func WithNRI(cfg nri.Config) Option { return func(r *Runtime) { r.nriConfig = &cfg } }

// NRIStatus reports NRI for the CRI's verbose Status (nil: off).
func (r *Runtime) NRIStatus() *nri.Status { return r.nri.Status() }

func (r *Runtime) newNRI() error {
	if r.nriConfig == nil {
		return nil
	}
	var inject func(*runtimespec.Spec, []string) error
	if r.cdi != nil {
		inject = r.cdi.Inject
	}
	n, err := nri.New(*r.nriConfig, nriDomain{r},
		nri.WithCDIInjector(inject),
		nri.WithResourceFixup(r.fixNRIResources),
		nri.WithSpecCheck(r.checkNRISpec),
	)
	if err != nil {
		return err
	}
	r.nri = n
	return nil
}

// fixNRIResources drops the limits plugins set that this host's cgroups
// cannot enforce, as CreateContainer does for kubelet's (runc fails on
// them): swap without swap accounting, hugepages without hugetlb.
func (r *Runtime) fixNRIResources(res *runtimespec.LinuxResources) error {
	if !r.cgroupHost.SwapAccounting && res.Memory != nil {
		res.Memory.Swap = nil
	}
	if !r.cgroupHost.Hugetlb {
		res.HugepageLimits = nil
	}
	if len(res.Unified) > 0 && !r.cgroupHost.V2() {
		return fmt.Errorf("%w: resources.unified needs cgroup v2; this host uses cgroup v1", errdefs.ErrInvalidArgument)
	}
	return nil
}

// checkNRISpec checks what accel-cri relies on after plugins adjusted a
// spec: the cgroups path keeps the form of the cgroup driver (stats and
// cleanup read the container's cgroup by it).
func (r *Runtime) checkNRISpec(s *runtimespec.Spec) error {
	if s.Linux == nil || s.Linux.CgroupsPath == "" {
		return nil
	}
	return cgroups.CheckPath(r.cgroupDriver, s.Linux.CgroupsPath)
}

// nriPod is p with status st in NRI's terms.
func nriPod(p *Pod, st podStatus) nri.Pod {
	np := nri.Pod{
		ID: p.ID, Config: p.Config, RuntimeHandler: p.RuntimeHandler, CgroupsPath: p.CgroupsPath,
		PID: st.PID, Overhead: st.Overhead, Resources: st.Resources,
	}
	if st.Network.IP != "" {
		np.IPs = append([]string{st.Network.IP}, st.Network.AdditionalIPs...)
	}
	if p.NetNSPath != "" && !st.NetworkDown {
		np.Namespaces = append(np.Namespaces, runtimespec.LinuxNamespace{Type: runtimespec.NetworkNamespace, Path: p.NetNSPath})
	}
	for _, ns := range []struct {
		t      runtimespec.LinuxNamespaceType
		pinned string
	}{{runtimespec.UTSNamespace, p.Pinned.UTS}, {runtimespec.IPCNamespace, p.Pinned.IPC}} {
		switch {
		case ns.pinned != "" && !st.NetworkDown:
			np.Namespaces = append(np.Namespaces, runtimespec.LinuxNamespace{Type: ns.t, Path: ns.pinned})
		case !p.Infraless && st.PID != 0:
			np.Namespaces = append(np.Namespaces, runtimespec.LinuxNamespace{Type: ns.t, Path: spec.ProcNS(st.PID, string(ns.t))})
		}
	}
	return np
}

// nriContainer is c with status st and spec in NRI's terms.
func nriContainer(c *Container, st containerStatus, spec *runtimespec.Spec) nri.Container {
	return nri.Container{
		ID: c.ID, PodID: c.PodID, Config: c.Config, Spec: spec,
		State: st.State, PID: st.PID,
		CreatedAt: c.CreatedAt, StartedAt: st.StartedAt, FinishedAt: st.FinishedAt,
		ExitCode: st.ExitCode, Reason: st.Reason, Message: st.Message,
		ImageName: c.ImageName, ImageRef: c.ImageRef, ImageID: c.ImageID,
	}
}

// nriContainerEvent is the pod and container of an event about c in state
// st, with its spec read from containerd; ok is false when no plugin is
// registered (nothing is read then).
func (r *Runtime) nriContainerEvent(ctx context.Context, c *Container, st containerStatus) (nri.Pod, nri.Container, bool) {
	if !r.nri.Active() {
		return nri.Pod{}, nri.Container{}, false
	}
	pod := nri.Pod{ID: c.PodID}
	if p := r.store.podExact(c.PodID); p != nil {
		pod = nriPod(p, r.store.podStatusOf(p))
	}
	return pod, nriContainer(c, st, r.containerSpec(ctx, c.ID)), true
}

// containerSpec reads a container's OCI spec from containerd (nil when it
// cannot: the event then carries no spec details).
func (r *Runtime) containerSpec(ctx context.Context, id string) *runtimespec.Spec {
	ctr, err := r.client.ContainerService().Get(ctx, id)
	if err != nil {
		klog.V(2).InfoS("No spec for an NRI event", "container", id, "err", err)
		return nil
	}
	spec, err := decodeSpec(ctr)
	if err != nil {
		klog.ErrorS(err, "Decode a container's spec for an NRI event", "container", id)
		return nil
	}
	return spec
}

// decodeSpec reads the OCI spec a containerd container record holds.
func decodeSpec(c containers.Container) (*runtimespec.Spec, error) {
	if c.Spec == nil {
		return nil, fmt.Errorf("container %s has no spec", c.ID)
	}
	var s runtimespec.Spec
	if err := json.Unmarshal(c.Spec.GetValue(), &s); err != nil {
		return nil, fmt.Errorf("container %s spec: %w", c.ID, err)
	}
	return &s, nil
}

// nriContainerStopped tells plugins a container stopped: its exit is
// recorded (or its start failed). The exit monitor, Stop and Start call it
// once per container (under exitOnce).
func (r *Runtime) nriContainerStopped(c *Container, st containerStatus) {
	ctx, cancel := context.WithTimeout(context.Background(), nriNoticeTimeout)
	defer cancel()
	if pod, nc, ok := r.nriContainerEvent(ctx, c, st); ok {
		r.nri.StopContainer(ctx, pod, nc)
	}
}

// withNRIAdjustment runs inside CreateContainer's NewContainer, after
// WithNewSpec: it hands the container's spec to the plugins' CreateContainer
// hook and stores the spec they adjusted, also in *kept. meta's cgroups
// path follows an adjusted one (stats and cleanup read it) before
// WithContainerExtension records meta. *hooked tells CreateContainer the
// plugins saw the container (its undo then tells them it is gone);
// *adjusted that the spec changed.
func (r *Runtime) withNRIAdjustment(pod nri.Pod, meta *containerMeta, kept **runtimespec.Spec, hooked, adjusted *bool) containerd.NewContainerOpts {
	return func(ctx context.Context, _ *containerd.Client, c *containers.Container) error {
		if !r.nri.Active() {
			return nil
		}
		spec, err := decodeSpec(*c)
		if err != nil {
			return err
		}
		shell := &Container{containerMeta: *meta}
		*hooked = true
		changed, err := r.nri.CreateContainer(ctx, pod, nriContainer(shell, containerStatus{State: runtimeapi.ContainerState_CONTAINER_UNKNOWN}, spec))
		if err != nil || !changed {
			return err
		}
		if spec.Linux != nil && spec.Linux.CgroupsPath != "" {
			meta.CgroupsPath = spec.Linux.CgroupsPath
		}
		if c.Spec, err = typeurl.MarshalAny(spec); err != nil {
			return fmt.Errorf("NRI-adjusted spec of %s: %w", c.ID, err)
		}
		*kept = spec
		*adjusted = true
		return nil
	}
}

// undoNRICreate tells plugins a container whose CreateContainer hook they
// saw was not created after all.
func (r *Runtime) undoNRICreate(ctx context.Context, pod nri.Pod, meta containerMeta) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), nriNoticeTimeout)
	defer cancel()
	nc := nriContainer(&Container{containerMeta: meta}, containerStatus{State: runtimeapi.ContainerState_CONTAINER_EXITED}, nil)
	r.nri.StopContainer(ctx, pod, nc)
	r.nri.RemoveContainer(ctx, pod, nc)
}

// resourcesFromSpec is the CRI form of the resources in a spec plugins
// adjusted, for the container's status: req's values overlaid with the
// spec's.
func resourcesFromSpec(req *runtimeapi.LinuxContainerResources, s *runtimespec.Spec) *runtimeapi.LinuxContainerResources {
	out := &runtimeapi.LinuxContainerResources{}
	if req != nil {
		out = proto.Clone(req).(*runtimeapi.LinuxContainerResources)
	}
	if s.Process != nil && s.Process.OOMScoreAdj != nil {
		out.OomScoreAdj = int64(*s.Process.OOMScoreAdj)
	}
	if s.Linux == nil || s.Linux.Resources == nil {
		return out
	}
	res := s.Linux.Resources
	if c := res.CPU; c != nil {
		if c.Shares != nil {
			out.CpuShares = int64(*c.Shares)
		}
		if c.Quota != nil {
			out.CpuQuota = *c.Quota
		}
		if c.Period != nil {
			out.CpuPeriod = int64(*c.Period)
		}
		out.CpusetCpus, out.CpusetMems = c.Cpus, c.Mems
	}
	if m := res.Memory; m != nil && m.Limit != nil {
		out.MemoryLimitInBytes = *m.Limit
	}
	if len(res.HugepageLimits) > 0 {
		out.HugepageLimits = nil
		for _, h := range res.HugepageLimits {
			out.HugepageLimits = append(out.HugepageLimits, &runtimeapi.HugepageLimit{PageSize: h.Pagesize, Limit: h.Limit})
		}
	}
	if len(res.Unified) > 0 {
		out.Unified = maps.Clone(res.Unified)
	}
	return out
}

// nriDomain is the runtime side NRI calls: what plugins are synchronized
// with, and the updates and evictions they ask for.
type nriDomain struct{ r *Runtime }

func (d nriDomain) Pods() []nri.Pod {
	pods := d.r.store.listPods()
	out := make([]nri.Pod, 0, len(pods))
	for _, p := range pods {
		out = append(out, nriPod(p, d.r.store.podStatusOf(p)))
	}
	return out
}

// Containers lists the created and running containers with their specs,
// read from containerd in one call.
func (d nriDomain) Containers(ctx context.Context) []nri.Container {
	specs := map[string]*runtimespec.Spec{}
	if all, err := d.r.client.ContainerService().List(ctx, `labels."`+labelKind+`"==`+kindCtr); err == nil {
		for _, c := range all {
			if s, err := decodeSpec(c); err == nil {
				specs[c.ID] = s
			}
		}
	} else {
		klog.ErrorS(err, "List container specs for an NRI plugin's synchronization")
	}
	var out []nri.Container
	for _, c := range d.r.store.listContainers() {
		st := d.r.store.containerStatusOf(c)
		if st.State != runtimeapi.ContainerState_CONTAINER_CREATED && st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			continue
		}
		out = append(out, nriContainer(c, st, specs[c.ID]))
	}
	return out
}

func (d nriDomain) UpdateContainerResources(ctx context.Context, id string, update func(*runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error)) error {
	return d.r.updateContainerResources(ctx, id, update)
}

func (d nriDomain) EvictContainer(ctx context.Context, id, reason string) error {
	if _, err := d.r.store.container(id); err != nil {
		return err
	}
	return d.r.StopContainer(ctx, id, 0)
}
