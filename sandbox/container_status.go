package sandbox

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ContainerStatus reports one container.
func (r *Runtime) ContainerStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.ContainerStatus, map[string]string, error) {
	c, err := r.store.container(id)
	if err != nil {
		return nil, nil, err
	}
	var info map[string]string
	if verbose {
		st := r.store.containerStatusOf(c)
		info, err = jsonInfo(map[string]any{"info": map[string]any{
			"sandboxID": c.PodID, "pid": st.PID, "cgroupsPath": c.CgroupsPath, "stopSignal": c.StopSignal,
			"runtimeType": r.runtimeTypeOf(r.podHandlerName(c.PodID)), "config": c.Config,
		}})
		if err != nil {
			return nil, nil, err
		}
	}
	return r.containerStatus(c), info, nil
}

func (r *Runtime) containerStatus(c *Container) *runtimeapi.ContainerStatus {
	st := r.store.containerStatusOf(c)
	out := &runtimeapi.ContainerStatus{
		Id:          c.ID,
		Metadata:    c.Config.GetMetadata(),
		State:       st.State,
		CreatedAt:   c.CreatedAt.UnixNano(),
		ExitCode:    st.ExitCode,
		Image:       &runtimeapi.ImageSpec{Image: c.ImageName, Annotations: c.Config.GetImage().GetAnnotations()},
		ImageRef:    c.ImageRef,
		ImageId:     c.ImageID,
		Reason:      st.Reason,
		Message:     st.Message,
		Labels:      c.Config.GetLabels(),
		Annotations: c.Config.GetAnnotations(),
		Mounts:      c.mounts,
		LogPath:     c.LogPath,
		User:        st.User,
	}
	if !st.StartedAt.IsZero() {
		out.StartedAt = st.StartedAt.UnixNano()
	}
	if !st.FinishedAt.IsZero() {
		out.FinishedAt = st.FinishedAt.UnixNano()
	}
	if st.Resources != nil {
		out.Resources = &runtimeapi.ContainerResources{Linux: st.Resources}
	}
	out.StopSignal = criSignal(c.StopSignal)
	return out
}
