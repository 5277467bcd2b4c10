package cri

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The checkpoint RPCs answer Unimplemented with a message that says so,
// and touch no runtime (the fake has none: a call into it would panic).
func TestCheckpointUnimplemented(t *testing.T) {
	s := NewServer(nil, &fakeStreamRuntime{})
	ctx := context.Background()
	for name, f := range map[string]func() error{
		"CheckpointContainer": func() error {
			_, err := s.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: runningID, Location: "/tmp/x.tar"})
			return err
		},
		"CheckpointPod": func() error {
			_, err := s.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: "abc", OutputPath: "/tmp/x", ContainerIds: []string{runningID}})
			return err
		},
		"RestorePod": func() error {
			_, err := s.RestorePod(ctx, &runtimeapi.RestorePodRequest{CheckpointPath: "/tmp/x"})
			return err
		},
	} {
		st := status.Convert(ToStatus(f()))
		if st.Code() != codes.Unimplemented {
			t.Errorf("%s: code %v, want Unimplemented", name, st.Code())
		}
		if !strings.Contains(st.Message(), name) || !strings.Contains(st.Message(), "checkpoint") {
			t.Errorf("%s: message %q does not say what is missing", name, st.Message())
		}
	}
}
