package sandbox

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ReopenContainerLog makes a running container's output go to a fresh log
// file at its log path (kubelet renamed the old one for rotation).
func (r *Runtime) ReopenContainerLog(ctx context.Context, id string) error {
	c, err := r.store.container(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.store.containerStatusOf(c).State != runtimeapi.ContainerState_CONTAINER_RUNNING || c.io == nil {
		return fmt.Errorf("%w: container %s is not running", errdefs.ErrFailedPrecondition, c.ID)
	}
	if c.LogPath == "" {
		return fmt.Errorf("%w: container %s has no log path", errdefs.ErrFailedPrecondition, c.ID)
	}
	if err := c.io.ReopenLog(); err != nil {
		return fmt.Errorf("reopen log of container %s: %w", c.ID, err)
	}
	return nil
}
