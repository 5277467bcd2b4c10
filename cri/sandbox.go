package cri

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/containerd/errdefs"

	"github.com/accel-cri/accel-cri/sandbox"
)

// listPage is how many items one message of a Stream* list carries.
const listPage = 100

// requireID checks a pod or container id from the wire before it is looked
// up. An empty id is InvalidArgument. An id accel-cri never hands out (ids
// are lower-case hex, a unique prefix of one is accepted) names nothing that
// exists: NotFound, as for any unknown id, so it never reaches the host.
// Stop and remove calls turn that NotFound into success (ignoreNotFound).
func requireID(field, id string) error {
	if id == "" {
		return invalid("%s is required", field)
	}
	if len(id) > 128 || !isHex(id) {
		return fmt.Errorf("%w: %s %q: no such object", errdefs.ErrNotFound, field, truncate(id, 80))
	}
	return nil
}

// ignoreNotFound makes StopPodSandbox, RemovePodSandbox, StopContainer and
// RemoveContainer idempotent, as the CRI contract (k8s.io/cri-api's
// api.proto) asks. StopPodSandbox: "If there are any running containers in
// the sandbox, they must be forcibly terminated. This call is idempotent,
// and must not return an error if all relevant resources have already been
// reclaimed." RemovePodSandbox: "This call is idempotent, and must not
// return an error if the sandbox has already been removed." StopContainer:
// "This call is idempotent, and must not return an error if the container
// has already been stopped." RemoveContainer: "This call is idempotent, and
// must not return an error if the container has already been removed."
// kubelet retries these calls after a runtime restart, and critest
// ("Idempotence ... should not return an error if not found") sends ids of
// any shape; containerd and CRI-O answer success. This is the one place
// that decides it: sandbox answers NotFound for an unknown pod or
// container, as for every other call.
func ignoreNotFound(err error) error {
	if isNotFound(err) {
		return nil
	}
	return err
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// RunPodSandbox creates and starts a pod sandbox.
func (s *Server) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	if err := validatePodSandboxConfig(req.GetConfig()); err != nil {
		return nil, err
	}
	id, err := s.runtime.RunPod(ctx, req.GetConfig(), req.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// StopPodSandbox stops a pod's containers and tears its network down.
// Unknown and stopped pods are not an error (kubelet retries).
func (s *Server) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	err := requireID("pod_sandbox_id", req.GetPodSandboxId())
	if err == nil {
		err = s.runtime.StopPod(ctx, req.GetPodSandboxId())
	}
	if err := ignoreNotFound(err); err != nil {
		return nil, err
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

// RemovePodSandbox removes a pod and everything it made; idempotent.
func (s *Server) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	err := requireID("pod_sandbox_id", req.GetPodSandboxId())
	if err == nil {
		err = s.runtime.RemovePod(ctx, req.GetPodSandboxId())
	}
	if err := ignoreNotFound(err); err != nil {
		return nil, err
	}
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

// PodSandboxStatus reports a pod and its containers.
func (s *Server) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	if err := requireID("pod_sandbox_id", req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	st, cs, info, err := s.runtime.PodStatus(ctx, req.GetPodSandboxId(), req.GetVerbose())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatusResponse{Status: st, ContainersStatuses: cs, Info: info, Timestamp: time.Now().UnixNano()}, nil
}

func podFilter(f *runtimeapi.PodSandboxFilter) sandbox.PodFilter {
	out := sandbox.PodFilter{ID: f.GetId(), LabelSelector: f.GetLabelSelector()}
	if st := f.GetState(); st != nil {
		v := st.GetState()
		out.State = &v
	}
	return out
}

// ListPodSandbox lists pods by id (prefix), state and labels.
func (s *Server) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	return &runtimeapi.ListPodSandboxResponse{Items: s.runtime.ListPods(podFilter(req.GetFilter()))}, nil
}

// StreamPodSandboxes is ListPodSandbox in pages.
func (s *Server) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream runtimeapi.RuntimeService_StreamPodSandboxesServer) error {
	return sendPages(s.runtime.ListPods(podFilter(req.GetFilter())), func(page []*runtimeapi.PodSandbox) error {
		return stream.Send(&runtimeapi.StreamPodSandboxesResponse{PodSandboxes: page})
	})
}

// UpdatePodSandboxResources records the pod-level resources kubelet set on
// the pod cgroup (kubelet owns that cgroup).
func (s *Server) UpdatePodSandboxResources(ctx context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	if err := requireID("pod_sandbox_id", req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	for field, r := range map[string]*runtimeapi.LinuxContainerResources{"overhead": req.GetOverhead(), "resources": req.GetResources()} {
		if r == nil {
			continue
		}
		if err := validateLinuxResources(r); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
	}
	if err := s.runtime.UpdatePodResources(ctx, req.GetPodSandboxId(), req.GetOverhead(), req.GetResources()); err != nil {
		return nil, err
	}
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}

// sendPages sends items in pages of listPage; nothing is sent for none.
func sendPages[T any](items []T, send func([]T) error) error {
	for len(items) > 0 {
		n := min(len(items), listPage)
		if err := send(items[:n]); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}
