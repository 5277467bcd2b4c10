package sandbox

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdatePodResources records the pod-level resources kubelet applied to the
// pod cgroup, which kubelet owns; they are reported in the verbose status.
func (r *Runtime) UpdatePodResources(ctx context.Context, id string, overhead, resources *runtimeapi.LinuxContainerResources) error {
	ctx, unblock := r.nri.BlockSync(ctx)
	defer unblock()
	p, err := r.store.pod(id)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	st := r.store.podStatusOf(p)
	if st.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		return fmt.Errorf("%w: pod sandbox %s is not ready", errdefs.ErrFailedPrecondition, p.ID)
	}
	if err := r.nri.UpdatePodSandbox(ctx, nriPod(p, st), overhead, resources); err != nil {
		return fmt.Errorf("pod %s: %w", p.ID, err)
	}
	// Only the resources change: a pause exit recorded meanwhile stays (the
	// exit monitor does not take p.mu).
	st, err = r.store.updatePod(p, func(cur podStatus) (podStatus, error) {
		cur.Overhead, cur.Resources = overhead, resources
		return cur, nil
	})
	if err != nil {
		return err
	}
	r.nri.PostUpdatePodSandbox(ctx, nriPod(p, st))
	return nil
}
