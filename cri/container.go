package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/sandbox"
)

// CreateContainer creates a container in a pod.
func (s *Server) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	if err := requireID("pod_sandbox_id", req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	if err := validateContainerConfig(req.GetConfig(), req.GetSandboxConfig()); err != nil {
		return nil, err
	}
	id, err := s.runtime.CreateContainer(ctx, req.GetPodSandboxId(), req.GetConfig())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

// StartContainer starts a created container.
func (s *Server) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	if err := requireID("container_id", req.GetContainerId()); err != nil {
		return nil, err
	}
	if err := s.runtime.StartContainer(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtimeapi.StartContainerResponse{}, nil
}

// StopContainer stops a container with its stop signal, then SIGKILL after
// timeout seconds. Stopping a stopped or unknown container succeeds.
func (s *Server) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	if req.GetTimeout() < 0 {
		return nil, invalid("timeout %d: must not be negative", req.GetTimeout())
	}
	err := requireID("container_id", req.GetContainerId())
	if err == nil {
		err = s.runtime.StopContainer(ctx, req.GetContainerId(), req.GetTimeout())
	}
	if err := ignoreNotFound(err); err != nil {
		return nil, err
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

// RemoveContainer removes a container (stopping it first); idempotent.
func (s *Server) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	err := requireID("container_id", req.GetContainerId())
	if err == nil {
		err = s.runtime.RemoveContainer(ctx, req.GetContainerId())
	}
	if err := ignoreNotFound(err); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveContainerResponse{}, nil
}

// ContainerStatus reports one container; NotFound for unknown ids.
func (s *Server) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	if err := requireID("container_id", req.GetContainerId()); err != nil {
		return nil, err
	}
	st, info, err := s.runtime.ContainerStatus(ctx, req.GetContainerId(), req.GetVerbose())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatusResponse{Status: st, Info: info}, nil
}

func containerFilter(f *runtimeapi.ContainerFilter) sandbox.ContainerFilter {
	out := sandbox.ContainerFilter{ID: f.GetId(), PodID: f.GetPodSandboxId(), LabelSelector: f.GetLabelSelector()}
	if st := f.GetState(); st != nil {
		v := st.GetState()
		out.State = &v
	}
	return out
}

// ListContainers lists containers by id, pod, state and labels.
func (s *Server) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	return &runtimeapi.ListContainersResponse{Containers: s.runtime.ListContainers(containerFilter(req.GetFilter()))}, nil
}

// StreamContainers is ListContainers in pages.
func (s *Server) StreamContainers(req *runtimeapi.StreamContainersRequest, stream runtimeapi.RuntimeService_StreamContainersServer) error {
	return sendPages(s.runtime.ListContainers(containerFilter(req.GetFilter())), func(page []*runtimeapi.Container) error {
		return stream.Send(&runtimeapi.StreamContainersResponse{Containers: page})
	})
}

// UpdateContainerResources changes a container's limits.
func (s *Server) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	if err := requireID("container_id", req.GetContainerId()); err != nil {
		return nil, err
	}
	if req.GetLinux() == nil {
		return nil, invalid("linux resources are required")
	}
	if err := validateLinuxResources(req.GetLinux()); err != nil {
		return nil, err
	}
	if err := s.runtime.UpdateContainerResources(ctx, req.GetContainerId(), req.GetLinux()); err != nil {
		return nil, err
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

// ReopenContainerLog makes a running container write to a new log file
// after kubelet renamed the old one.
func (s *Server) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	if err := requireID("container_id", req.GetContainerId()); err != nil {
		return nil, err
	}
	if err := s.runtime.ReopenContainerLog(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}
