package sandbox

import (
	"context"
	"fmt"
	"os"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemoveContainer stops the container if it runs and removes it with its
// root filesystem. Its log file stays (kubelet owns logs). An unknown
// container is NotFound (the CRI edge makes that a success).
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	ctx, unblock := r.nri.BlockSync(ctx)
	defer unblock()
	c, err := r.store.container(id)
	if err != nil {
		return err
	}
	if err := r.StopContainer(ctx, c.ID, 0); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Plugins heard of the stop when the container exited; one that never
	// started stops now.
	if npod, nctr, ok := r.nriContainerEvent(ctx, c, r.store.containerStatusOf(c)); ok {
		if nctr.State == runtimeapi.ContainerState_CONTAINER_CREATED {
			r.nri.StopContainer(ctx, npod, nctr)
		}
		r.nri.RemoveContainer(ctx, npod, nctr)
	}
	if err := r.deleteContainerd(ctx, c.ID); err != nil {
		return fmt.Errorf("remove container %s: %w", c.ID, err)
	}
	if err := r.removeImageVolumes(ctx, c.ID, c.ImageVolumes); err != nil {
		return fmt.Errorf("remove container %s: %w", c.ID, err)
	}
	// A start cut short, by accel-cri's death or by containerd's in the
	// middle of the task's creation, can leave a task, an OCI runtime
	// container and its cgroup behind.
	neverStarted := r.store.containerStatusOf(c).StartedAt.IsZero()
	if c.recovered() || neverStarted {
		if neverStarted {
			if err := r.clearStaleTask(ctx, c, true); err != nil {
				return fmt.Errorf("remove container %s: %w", c.ID, err)
			}
		}
		r.cgroupHost.RemoveLeftover(c.CgroupsPath)
	}
	if c.io != nil {
		c.io.Close()
	}
	if err := os.RemoveAll(r.containerDir(c.ID)); err != nil {
		return fmt.Errorf("remove container %s: %w", c.ID, err)
	}
	r.store.removeCheckpoints("containers", c.ID)
	r.store.deleteContainer(c.ID)
	r.stats.Forget(c.ID)
	r.store.releaseName(containerName(c.PodID, c.Config.GetMetadata()), c.ID)
	r.publishContainer(c, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
	return nil
}
