package nri

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/nri/pkg/adaptation"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// This file relays the lifecycle events to the plugins. The events that
// may refuse what the CRI asked for (RunPodSandbox, CreateContainer,
// StartContainer, the updates) return an error; the rest are notices whose
// failures are only logged. Each call into a plugin is bounded by the
// request timeout: a plugin that does not answer is disconnected and the
// event goes on without it.

// asyncTimeout bounds the updates plugins ask for outside a CRI call (after
// a stop, at Synchronize, on their own), which have no deadline of their own.
const asyncTimeout = time.Minute

// refused wraps a plugin's error. It is kept as text: wrapped, its gRPC
// status (usually Unknown) would become the CRI call's code.
func refused(event string, err error) error {
	return fmt.Errorf("%w: NRI %s: %v", errdefs.ErrFailedPrecondition, event, err)
}

// RunPodSandbox tells plugins a pod is made; an error (a plugin refused
// it) must fail RunPodSandbox, after which the runtime sends
// StopPodSandbox and RemovePodSandbox as it undoes the pod.
func (n *NRI) RunPodSandbox(ctx context.Context, p Pod) error {
	if !n.Active() {
		return nil
	}
	if err := n.nri.RunPodSandbox(ctx, &adaptation.RunPodSandboxRequest{Pod: toPod(p)}); err != nil {
		return refused("RunPodSandbox", err)
	}
	return nil
}

// StopPodSandbox tells plugins a pod stopped: its containers are stopped.
func (n *NRI) StopPodSandbox(ctx context.Context, p Pod) {
	if !n.Active() {
		return
	}
	logNotice(n.nri.StopPodSandbox(ctx, &adaptation.StopPodSandboxRequest{Pod: toPod(p)}), "StopPodSandbox", "pod", p.ID)
}

// RemovePodSandbox tells plugins a pod is being removed.
func (n *NRI) RemovePodSandbox(ctx context.Context, p Pod) {
	if !n.Active() {
		return
	}
	logNotice(n.nri.RemovePodSandbox(ctx, &adaptation.RemovePodSandboxRequest{Pod: toPod(p)}), "RemovePodSandbox", "pod", p.ID)
}

// UpdatePodSandbox tells plugins kubelet changes a pod's resources; an
// error refuses the change.
func (n *NRI) UpdatePodSandbox(ctx context.Context, p Pod, overhead, resources *runtimeapi.LinuxContainerResources) error {
	if !n.Active() {
		return nil
	}
	_, err := n.nri.UpdatePodSandbox(ctx, &adaptation.UpdatePodSandboxRequest{
		Pod: toPod(p), OverheadLinuxResources: fromCRIResources(overhead), LinuxResources: fromCRIResources(resources),
	})
	if err != nil {
		return refused("UpdatePodSandbox", err)
	}
	return nil
}

// PostUpdatePodSandbox tells plugins a pod's resources changed.
func (n *NRI) PostUpdatePodSandbox(ctx context.Context, p Pod) {
	if !n.Active() {
		return
	}
	logNotice(n.nri.PostUpdatePodSandbox(ctx, &adaptation.PostUpdatePodSandboxRequest{Pod: toPod(p)}), "PostUpdatePodSandbox", "pod", p.ID)
}

// CreateContainer asks plugins for their adjustments of a container being
// created and applies them to c.Spec, checked (adjust.go). It reports
// whether the spec changed. The evictions and updates of other containers
// plugins answer with are made first; their failures are logged, as
// containerd does. An error fails the CreateContainer; the runtime then
// sends StopContainer and RemoveContainer as it undoes the container (a
// plugin earlier in the chain may have accepted it).
func (n *NRI) CreateContainer(ctx context.Context, p Pod, c Container) (bool, error) {
	if !n.Active() || c.Spec == nil {
		return false, nil
	}
	rsp, err := n.nri.CreateContainer(ctx, &adaptation.CreateContainerRequest{Pod: toPod(p), Container: toContainer(c)})
	if err != nil {
		return false, refused("CreateContainer", err)
	}
	n.evict(ctx, "CreateContainer", rsp.GetEvict())
	n.applyUpdates(ctx, "CreateContainer", rsp.GetUpdate())
	adj := rsp.GetAdjust()
	if adj == nil {
		return false, nil
	}
	// The library answers with an adjustment of empty parts even when no
	// plugin adjusted anything: whether the spec changed is seen on it.
	before, err := json.Marshal(c.Spec)
	if err != nil {
		return false, err
	}
	if err := n.adjust.apply(c.Spec, adj); err != nil {
		return false, err
	}
	after, err := json.Marshal(c.Spec)
	if err != nil || bytes.Equal(before, after) {
		return false, err
	}
	klog.V(2).InfoS("NRI plugins adjusted the container", "container", c.ID, "pod", p.ID)
	return true, nil
}

// PostCreateContainer tells plugins a container was created.
func (n *NRI) PostCreateContainer(ctx context.Context, p Pod, c Container) {
	if !n.Active() {
		return
	}
	logNotice(n.nri.PostCreateContainer(ctx, &adaptation.PostCreateContainerRequest{Pod: toPod(p), Container: toContainer(c)}), "PostCreateContainer", "container", c.ID)
}

// StartContainer tells plugins a container is about to start (its task
// exists); an error fails the start.
func (n *NRI) StartContainer(ctx context.Context, p Pod, c Container) error {
	if !n.Active() {
		return nil
	}
	if err := n.nri.StartContainer(ctx, &adaptation.StartContainerRequest{Pod: toPod(p), Container: toContainer(c)}); err != nil {
		return refused("StartContainer", err)
	}
	return nil
}

// PostStartContainer tells plugins a container started.
func (n *NRI) PostStartContainer(ctx context.Context, p Pod, c Container) {
	if !n.Active() {
		return
	}
	logNotice(n.nri.PostStartContainer(ctx, &adaptation.PostStartContainerRequest{Pod: toPod(p), Container: toContainer(c)}), "PostStartContainer", "container", c.ID)
}

// UpdateContainer asks plugins about kubelet's new resources for a
// container and returns them as the plugins changed them; the other
// containers' updates and evictions they answer with are made first. An
// error refuses the update.
func (n *NRI) UpdateContainer(ctx context.Context, p Pod, c Container, req *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
	if !n.Active() {
		return req, nil
	}
	rsp, err := n.nri.UpdateContainer(ctx, &adaptation.UpdateContainerRequest{
		Pod: toPod(p), Container: toContainer(c), LinuxResources: fromCRIResources(req),
	})
	if err != nil {
		return nil, refused("UpdateContainer", err)
	}
	n.evict(ctx, "UpdateContainer", rsp.GetEvict())
	ups := rsp.GetUpdate()
	if len(ups) == 0 {
		return req, nil
	}
	// The requested container's update comes last (nil when no plugin
	// changed it).
	n.applyUpdates(ctx, "UpdateContainer", ups[:len(ups)-1])
	out, dropped := mergeResources(req, ups[len(ups)-1].GetLinux().GetResources())
	if len(dropped) > 0 {
		klog.InfoS("NRI plugins changed resources the CRI cannot update; ignored", "container", c.ID, "ignored", dropped)
	}
	return out, nil
}

// PostUpdateContainer tells plugins a container's resources changed.
func (n *NRI) PostUpdateContainer(ctx context.Context, p Pod, c Container) {
	if !n.Active() {
		return
	}
	logNotice(n.nri.PostUpdateContainer(ctx, &adaptation.PostUpdateContainerRequest{Pod: toPod(p), Container: toContainer(c)}), "PostUpdateContainer", "container", c.ID)
}

// StopContainer tells plugins a container stopped (its exit is recorded).
// The updates plugins answer with (resources freed for others) are applied
// in the background: the caller may hold the stopped container's lock, and
// the updated containers' locks must not be taken under it.
func (n *NRI) StopContainer(ctx context.Context, p Pod, c Container) {
	if !n.Active() {
		return
	}
	rsp, err := n.nri.StopContainer(ctx, &adaptation.StopContainerRequest{Pod: toPod(p), Container: toContainer(c)})
	if err != nil {
		logNotice(err, "StopContainer", "container", c.ID)
		return
	}
	if ups := rsp.GetUpdate(); len(ups) > 0 {
		n.async(func(ctx context.Context) { n.applyUpdates(ctx, "StopContainer", ups) })
	}
}

// RemoveContainer tells plugins a container is being removed.
func (n *NRI) RemoveContainer(ctx context.Context, p Pod, c Container) {
	if !n.Active() {
		return
	}
	logNotice(n.nri.RemoveContainer(ctx, &adaptation.RemoveContainerRequest{Pod: toPod(p), Container: toContainer(c)}), "RemoveContainer", "container", c.ID)
}

// applyUpdates makes the resource updates plugins asked for through the
// runtime's update path and returns those that failed and may not. An
// update of a container that no longer exists is dropped.
func (n *NRI) applyUpdates(ctx context.Context, event string, updates []*adaptation.ContainerUpdate) []*adaptation.ContainerUpdate {
	var failed []*adaptation.ContainerUpdate
	ctx = context.WithValue(ctx, syncHeld{}, true)
	for _, u := range updates {
		if u == nil {
			continue
		}
		res := u.GetLinux().GetResources()
		err := n.rt.UpdateContainerResources(ctx, u.GetContainerId(), func(cur *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
			out, dropped := mergeResources(cur, res)
			if len(dropped) > 0 {
				klog.InfoS("NRI plugin update has resources the CRI cannot update; ignored", "container", u.GetContainerId(), "ignored", dropped)
			}
			return out, nil
		})
		switch {
		case err == nil:
			klog.V(2).InfoS("Applied an NRI container update", "event", event, "container", u.GetContainerId())
		case errdefs.IsNotFound(err):
			klog.V(2).InfoS("NRI update of a container that is gone; dropped", "event", event, "container", u.GetContainerId())
		default:
			klog.ErrorS(err, "NRI container update failed", "event", event, "container", u.GetContainerId(), "ignoreFailure", u.GetIgnoreFailure())
			if !u.GetIgnoreFailure() {
				failed = append(failed, u)
			}
		}
	}
	return failed
}

// evict stops the containers plugins asked to evict, as StopContainer does
// with no grace period. NRI v0.12.3's adaptation collects no evictions from
// plugins yet (its CreateContainer and UpdateContainer results carry none);
// they are handled as containerd handles them for when it does.
func (n *NRI) evict(ctx context.Context, event string, evictions []*adaptation.ContainerEviction) {
	ctx = context.WithValue(ctx, syncHeld{}, true)
	for _, e := range evictions {
		if e == nil {
			continue
		}
		klog.InfoS("Evicting a container at an NRI plugin's request", "event", event, "container", e.GetContainerId(), "reason", e.GetReason())
		if err := n.rt.EvictContainer(ctx, e.GetContainerId(), e.GetReason()); err != nil && !errdefs.IsNotFound(err) {
			klog.ErrorS(err, "NRI eviction failed", "event", event, "container", e.GetContainerId())
		}
	}
}

// async runs f in the background until Close (which waits for it).
func (n *NRI) async(f func(context.Context)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(context.WithValue(n.ctx, syncHeld{}, true), asyncTimeout)
		defer cancel()
		f(ctx)
	}()
}

func logNotice(err error, event string, kv ...any) {
	if err != nil {
		klog.ErrorS(err, "NRI plugins failed to handle a notice", append([]any{"event", event}, kv...)...)
	}
}
