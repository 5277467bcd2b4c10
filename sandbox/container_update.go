package sandbox

import (
	"context"
	"fmt"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdateContainerResources applies new limits to a created or running
// container and records them. NRI plugins see the request first and may
// change it.
func (r *Runtime) UpdateContainerResources(ctx context.Context, id string, res *runtimeapi.LinuxContainerResources) error {
	ctx, unblock := r.nri.BlockSync(ctx)
	defer unblock()
	c, err := r.store.container(id)
	if err != nil {
		return err
	}
	npod, nctr, nriOK := r.nriContainerEvent(ctx, c, r.store.containerStatusOf(c))
	if nriOK {
		if res, err = r.nri.UpdateContainer(ctx, npod, nctr, res); err != nil {
			return err
		}
	}
	if err := r.updateContainerResources(ctx, c.ID, func(*runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
		return res, nil
	}); err != nil {
		return err
	}
	if nriOK {
		nctr.Spec = r.containerSpec(ctx, c.ID)
		r.nri.PostUpdateContainer(ctx, npod, nctr)
	}
	return nil
}

// updateContainerResources is UpdateContainerResources without NRI's
// events, for the updates NRI plugins ask for: update gets the recorded
// resources under the container's lock and returns the new ones.
func (r *Runtime) updateContainerResources(ctx context.Context, id string, update func(*runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error)) error {
	c, err := r.store.container(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := r.store.containerStatusOf(c)
	switch st.State {
	case runtimeapi.ContainerState_CONTAINER_CREATED, runtimeapi.ContainerState_CONTAINER_RUNNING:
	default:
		return fmt.Errorf("%w: container %s is %s", errdefs.ErrFailedPrecondition, c.ID, st.State)
	}
	res, err := update(st.Resources)
	if err != nil {
		return err
	}
	ctr, err := r.client.LoadContainer(ctx, c.ID)
	if err != nil {
		return err
	}
	spec, err := ctr.Spec(ctx)
	if err != nil {
		return err
	}
	if err := r.specs.UpdateResources(spec, res); err != nil {
		return err
	}
	if err := ctr.Update(ctx, withSpec(spec)); err != nil {
		return fmt.Errorf("update spec of container %s: %w", c.ID, err)
	}
	if st.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
		task, err := ctr.Task(ctx, nil)
		if err != nil {
			return err
		}
		if err := task.Update(ctx, containerd.WithResources(spec.Linux.Resources)); err != nil {
			return fmt.Errorf("update resources of container %s: %w", c.ID, err)
		}
	}
	// Only the resources change: an exit recorded while containerd was
	// asked stays (the exit monitor does not take c.mu).
	_, err = r.store.updateContainer(c, func(cur containerStatus) (containerStatus, error) {
		cur.Resources = res
		return cur, nil
	})
	return err
}
