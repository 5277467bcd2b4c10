package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ContainerStats reports one container's resource use.
func (s *Server) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	if err := requireID("container_id", req.GetContainerId()); err != nil {
		return nil, err
	}
	st, err := s.runtime.ContainerStats(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatsResponse{Stats: st}, nil
}

func statsFilter(f *runtimeapi.ContainerStatsFilter) *runtimeapi.ContainerFilter {
	return &runtimeapi.ContainerFilter{Id: f.GetId(), PodSandboxId: f.GetPodSandboxId(), LabelSelector: f.GetLabelSelector()}
}

// ListContainerStats reports the resource use of matching containers.
func (s *Server) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	st, err := s.runtime.ListContainerStats(ctx, containerFilter(statsFilter(req.GetFilter())))
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListContainerStatsResponse{Stats: st}, nil
}

// StreamContainerStats is ListContainerStats in pages.
func (s *Server) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream runtimeapi.RuntimeService_StreamContainerStatsServer) error {
	st, err := s.runtime.ListContainerStats(stream.Context(), containerFilter(statsFilter(req.GetFilter())))
	if err != nil {
		return err
	}
	return sendPages(st, func(page []*runtimeapi.ContainerStats) error {
		return stream.Send(&runtimeapi.StreamContainerStatsResponse{ContainerStats: page})
	})
}

// PodSandboxStats reports one pod's resource use.
func (s *Server) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	if err := requireID("pod_sandbox_id", req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	st, err := s.runtime.PodStats(ctx, req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: st}, nil
}

func podStatsFilter(f *runtimeapi.PodSandboxStatsFilter) *runtimeapi.PodSandboxFilter {
	return &runtimeapi.PodSandboxFilter{Id: f.GetId(), LabelSelector: f.GetLabelSelector()}
}

// ListPodSandboxStats reports the resource use of matching pods.
func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	st, err := s.runtime.ListPodStats(ctx, podFilter(podStatsFilter(req.GetFilter())))
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: st}, nil
}

// StreamPodSandboxStats is ListPodSandboxStats in pages.
func (s *Server) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxStatsServer) error {
	st, err := s.runtime.ListPodStats(stream.Context(), podFilter(podStatsFilter(req.GetFilter())))
	if err != nil {
		return err
	}
	return sendPages(st, func(page []*runtimeapi.PodSandboxStats) error {
		return stream.Send(&runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: page})
	})
}

// ListMetricDescriptors describes the metrics ListPodSandboxMetrics reports.
func (s *Server) ListMetricDescriptors(ctx context.Context, req *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: s.runtime.MetricDescriptors()}, nil
}

// ListPodSandboxMetrics reports cAdvisor-style metrics of every ready pod.
func (s *Server) ListPodSandboxMetrics(ctx context.Context, req *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	m, err := s.runtime.PodMetrics(ctx)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: m}, nil
}

// StreamPodSandboxMetrics is ListPodSandboxMetrics in pages.
func (s *Server) StreamPodSandboxMetrics(req *runtimeapi.StreamPodSandboxMetricsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxMetricsServer) error {
	m, err := s.runtime.PodMetrics(stream.Context())
	if err != nil {
		return err
	}
	return sendPages(m, func(page []*runtimeapi.PodSandboxMetrics) error {
		return stream.Send(&runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: page})
	})
}
