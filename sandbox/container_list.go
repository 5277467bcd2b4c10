package sandbox

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ContainerFilter selects containers for ListContainers.
type ContainerFilter struct {
	ID            string
	PodID         string
	State         *ContainerState
	LabelSelector map[string]string
}

// ListContainers lists containers matching f.
func (r *Runtime) ListContainers(f ContainerFilter) []*runtimeapi.Container {
	var out []*runtimeapi.Container
	for _, c := range r.store.listContainers() {
		st := r.store.containerStatusOf(c)
		if !matchID(c.ID, f.ID) || !matchID(c.PodID, f.PodID) || (f.State != nil && st.State != *f.State) || !matchLabels(c.Config.GetLabels(), f.LabelSelector) {
			continue
		}
		out = append(out, c.listItem(st.State))
	}
	return out
}

// listItem is the container's ListContainers entry in state st, shared and
// never changed like Pod.listItem's.
func (c *Container) listItem(st runtimeapi.ContainerState) *runtimeapi.Container {
	if it := c.item.Load(); it != nil && it.State == st {
		return it
	}
	it := &runtimeapi.Container{
		Id: c.ID, PodSandboxId: c.PodID, Metadata: c.Config.GetMetadata(),
		Image: &runtimeapi.ImageSpec{Image: c.ImageName}, ImageRef: c.ImageRef, ImageId: c.ImageID,
		State: st, CreatedAt: c.CreatedAt.UnixNano(),
		Labels: c.Config.GetLabels(), Annotations: c.Config.GetAnnotations(),
	}
	c.item.Store(it)
	return it
}
