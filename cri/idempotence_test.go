package cri

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// lifecycleRuntime answers the stop and remove calls with err and records
// the ids that reached it.
type lifecycleRuntime struct {
	Runtime
	err   error
	calls []string
}

func (f *lifecycleRuntime) record(call, id string) error {
	f.calls = append(f.calls, call+" "+id)
	return f.err
}
func (f *lifecycleRuntime) StopPod(_ context.Context, id string) error {
	return f.record("StopPod", id)
}
func (f *lifecycleRuntime) RemovePod(_ context.Context, id string) error {
	return f.record("RemovePod", id)
}
func (f *lifecycleRuntime) StopContainer(_ context.Context, id string, _ int64) error {
	return f.record("StopContainer", id)
}
func (f *lifecycleRuntime) RemoveContainer(_ context.Context, id string) error {
	return f.record("RemoveContainer", id)
}
func (f *lifecycleRuntime) ContainerStatus(_ context.Context, id string, _ bool) (*runtimeapi.ContainerStatus, map[string]string, error) {
	return nil, nil, f.record("ContainerStatus", id)
}
func (f *lifecycleRuntime) StartContainer(_ context.Context, id string) error {
	return f.record("StartContainer", id)
}

// stopRemove calls the four idempotent RPCs with id.
func stopRemove(s *Server, id string) map[string]codes.Code {
	ctx := context.Background()
	out := map[string]codes.Code{}
	_, out["StopPodSandbox"] = call(func() (*runtimeapi.StopPodSandboxResponse, error) {
		return s.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
	})
	_, out["RemovePodSandbox"] = call(func() (*runtimeapi.RemovePodSandboxResponse, error) {
		return s.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
	})
	_, out["StopContainer"] = call(func() (*runtimeapi.StopContainerResponse, error) {
		return s.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id})
	})
	_, out["RemoveContainer"] = call(func() (*runtimeapi.RemoveContainerResponse, error) {
		return s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
	})
	return out
}

// Stop and remove of an id that names nothing succeed, whatever its shape
// (the CRI contract; critest's Idempotence specs send UUIDs). An id
// accel-cri never hands out does not reach the runtime.
func TestStopRemoveIdempotent(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		desc       string
		id         string
		runtimeErr error
		want       codes.Code
		reaches    bool
	}{
		{desc: "unknown hex id", id: hex, runtimeErr: fmt.Errorf("pod %s: %w", hex, errdefs.ErrNotFound), want: codes.OK, reaches: true},
		{desc: "known id", id: hex, want: codes.OK, reaches: true},
		{desc: "UUID", id: "0b9e7ff2-5a4c-4a39-9c3e-1a5f0f3a1c7e", want: codes.OK},
		{desc: "path", id: "../../etc", want: codes.OK},
		{desc: "upper case", id: strings.ToUpper(hex), want: codes.OK},
		{desc: "too long", id: strings.Repeat("a", 129), want: codes.OK},
		{desc: "empty", id: "", want: codes.InvalidArgument},
		{desc: "runtime failure passes through", id: hex, runtimeErr: fmt.Errorf("containerd: %w", errdefs.ErrUnavailable), want: codes.Unavailable, reaches: true},
		{desc: "runtime error that is not NotFound", id: hex, runtimeErr: errors.New("boom"), want: codes.Unknown, reaches: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			rt := &lifecycleRuntime{err: tc.runtimeErr}
			s := NewServer(nil, rt)
			for rpc, code := range stopRemove(s, tc.id) {
				if code != tc.want {
					t.Errorf("%s: %v, want %v", rpc, code, tc.want)
				}
			}
			if reached := len(rt.calls) > 0; reached != tc.reaches {
				t.Errorf("runtime calls %v, want reached=%v", rt.calls, tc.reaches)
			}
		})
	}
}

// Status and start of an id accel-cri never hands out are NotFound, not
// InvalidArgument, and do not reach the runtime.
func TestMalformedIDIsNotFound(t *testing.T) {
	rt := &lifecycleRuntime{}
	s := NewServer(nil, rt)
	ctx := context.Background()
	for _, id := range []string{"0b9e7ff2-5a4c-4a39-9c3e-1a5f0f3a1c7e", "../../etc", strings.Repeat("f", 200)} {
		if _, code := call(func() (*runtimeapi.ContainerStatusResponse, error) {
			return s.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		}); code != codes.NotFound {
			t.Errorf("ContainerStatus(%q): %v, want NotFound", id, code)
		}
		if _, code := call(func() (*runtimeapi.StartContainerResponse, error) {
			return s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
		}); code != codes.NotFound {
			t.Errorf("StartContainer(%q): %v, want NotFound", id, code)
		}
	}
	if len(rt.calls) != 0 {
		t.Errorf("malformed ids reached the runtime: %v", rt.calls)
	}
}
