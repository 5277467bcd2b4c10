package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// errNoCheckpoint answers the checkpoint RPCs until checkpoint and restore
// exist (CRIU-based, per container and per pod). kubelet treats
// Unimplemented as "this runtime cannot checkpoint" (its checkpoint API
// answers 501), so a clear Unimplemented is the contract's way to say no.
func errNoCheckpoint(rpc string) error {
	return fmt.Errorf("%w: %s: accel-cri does not checkpoint or restore containers yet", errdefs.ErrNotImplemented, rpc)
}

// CheckpointContainer is not supported yet: Unimplemented.
func (s *Server) CheckpointContainer(context.Context, *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	return nil, errNoCheckpoint("CheckpointContainer")
}

// CheckpointPod (CRI 1.37) is not supported yet: Unimplemented.
func (s *Server) CheckpointPod(context.Context, *runtimeapi.CheckpointPodRequest) (*runtimeapi.CheckpointPodResponse, error) {
	return nil, errNoCheckpoint("CheckpointPod")
}

// RestorePod (CRI 1.37) is not supported yet: Unimplemented. Nothing is
// created, so there is nothing for the caller to clean up.
func (s *Server) RestorePod(context.Context, *runtimeapi.RestorePodRequest) (*runtimeapi.RestorePodResponse, error) {
	return nil, errNoCheckpoint("RestorePod")
}
