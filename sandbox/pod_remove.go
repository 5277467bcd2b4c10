package sandbox

import (
	"context"
	"fmt"
	"path"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/sandbox/podns"
)

// RemovePod stops the pod if needed and removes its containers, its pause
// container and every file it made. An unknown pod is NotFound (the CRI
// edge makes that a success).
func (r *Runtime) RemovePod(ctx context.Context, id string) error {
	ctx, unblock := r.nri.BlockSync(ctx)
	defer unblock()
	p, err := r.store.pod(id)
	if err != nil {
		return err
	}
	if err := r.StopPod(ctx, p.ID); err != nil {
		return err
	}
	for _, c := range r.store.podContainers(p.ID) {
		// A container removed meanwhile is removed.
		if err := r.RemoveContainer(ctx, c.ID); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove pod %s: %w", p.ID, err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r.nri.RemovePodSandbox(ctx, nriPod(p, r.store.podStatusOf(p)))
	if err := r.deleteContainerd(ctx, p.ID); err != nil {
		return fmt.Errorf("remove pod %s: %w", p.ID, err)
	}
	if err := podns.RemoveFiles(r.podDir(p.ID)); err != nil {
		return fmt.Errorf("remove pod %s: %w", p.ID, err)
	}
	// A container whose start was cut short by containerd's death can get
	// its cgroup after its removal cleaned up: the shim goes on with the
	// OCI runtime's create (chaos suite, a loaded machine). Its pod's
	// parent is where it is.
	if r.cgroupDriver == cgroups.DriverCgroupfs {
		r.cgroupHost.RemoveLeftoverChildren(path.Dir(p.CgroupsPath), func(id string) bool {
			_, err := r.store.container(id)
			return err == nil || r.store.podExact(id) != nil
		})
	}
	r.store.removeCheckpoints("pods", p.ID)
	r.store.deletePod(p.ID)
	r.stats.Forget(p.ID)
	r.store.releaseName(podName(p.Config.GetMetadata()), p.ID)
	r.publishPod(p, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
	return nil
}
