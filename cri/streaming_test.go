package cri

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/sandbox"
)

const (
	runningID = "aaaa000000000000000000000000000000000000000000000000000000000001"
	stoppedID = "aaaa000000000000000000000000000000000000000000000000000000000002"
	readyPod  = "bbbb000000000000000000000000000000000000000000000000000000000001"
	deadPod   = "bbbb000000000000000000000000000000000000000000000000000000000002"
)

// fakeStreamRuntime knows one running and one stopped container, one ready
// and one stopped pod; the rest of Runtime is not used here.
type fakeStreamRuntime struct {
	Runtime
	execSync []string
}

func (f *fakeStreamRuntime) RunningContainer(id string) (string, error) {
	switch id {
	case runningID, runningID[:12]:
		return runningID, nil
	case stoppedID:
		return "", fmt.Errorf("%w: container %s is not running", errdefs.ErrFailedPrecondition, id)
	}
	return "", fmt.Errorf("%w: container %q", errdefs.ErrNotFound, id)
}

func (f *fakeStreamRuntime) ReadyPod(id string) (string, error) {
	switch id {
	case readyPod:
		return readyPod, nil
	case deadPod:
		return "", fmt.Errorf("%w: pod sandbox %s is not ready", errdefs.ErrFailedPrecondition, id)
	}
	return "", fmt.Errorf("%w: pod sandbox %q", errdefs.ErrNotFound, id)
}

func (f *fakeStreamRuntime) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (sandbox.ExecSyncResult, error) {
	if _, err := f.RunningContainer(id); err != nil {
		return sandbox.ExecSyncResult{}, err
	}
	f.execSync = append(f.execSync, fmt.Sprintf("%s %s", strings.Join(cmd, " "), timeout))
	if cmd[0] == "sleep" {
		return sandbox.ExecSyncResult{}, fmt.Errorf("timed out: %w", context.DeadlineExceeded)
	}
	return sandbox.ExecSyncResult{Stdout: []byte("out"), Stderr: []byte("err"), ExitCode: 3}, nil
}

// fakeStreamer records the requests it issued URLs for.
type fakeStreamer struct{ got []string }

func (f *fakeStreamer) GetExec(r *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	f.got = append(f.got, "exec "+r.ContainerId)
	return &runtimeapi.ExecResponse{Url: "http://127.0.0.1:1/exec/t"}, nil
}

func (f *fakeStreamer) GetAttach(r *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	f.got = append(f.got, "attach "+r.ContainerId)
	return &runtimeapi.AttachResponse{Url: "http://127.0.0.1:1/attach/t"}, nil
}

func (f *fakeStreamer) GetPortForward(r *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	f.got = append(f.got, "portforward "+r.PodSandboxId)
	return &runtimeapi.PortForwardResponse{Url: "http://127.0.0.1:1/portforward/t"}, nil
}

// call runs a handler through the interceptor's error mapping.
func call[T any](f func() (T, error)) (T, codes.Code) {
	v, err := f()
	return v, status.Code(ToStatus(err))
}

func TestExecValidation(t *testing.T) {
	st := &fakeStreamer{}
	s := NewServer(nil, &fakeStreamRuntime{}, WithStreamer(st))
	ctx := context.Background()
	tests := []struct {
		desc string
		req  *runtimeapi.ExecRequest
		code codes.Code
	}{
		{"ok", &runtimeapi.ExecRequest{ContainerId: runningID, Cmd: []string{"sh"}, Stdin: true, Stdout: true}, codes.OK},
		{"prefix resolves to the full id", &runtimeapi.ExecRequest{ContainerId: runningID[:12], Cmd: []string{"sh"}, Stdout: true, Tty: true}, codes.OK},
		{"no container id", &runtimeapi.ExecRequest{Cmd: []string{"sh"}, Stdout: true}, codes.InvalidArgument},
		{"container id not hex", &runtimeapi.ExecRequest{ContainerId: "../etc", Cmd: []string{"sh"}, Stdout: true}, codes.NotFound},
		{"unknown container", &runtimeapi.ExecRequest{ContainerId: "cccc", Cmd: []string{"sh"}, Stdout: true}, codes.NotFound},
		{"stopped container", &runtimeapi.ExecRequest{ContainerId: stoppedID, Cmd: []string{"sh"}, Stdout: true}, codes.FailedPrecondition},
		{"empty command", &runtimeapi.ExecRequest{ContainerId: runningID, Stdout: true}, codes.InvalidArgument},
		{"empty program", &runtimeapi.ExecRequest{ContainerId: runningID, Cmd: []string{""}, Stdout: true}, codes.InvalidArgument},
		{"no stream", &runtimeapi.ExecRequest{ContainerId: runningID, Cmd: []string{"sh"}}, codes.InvalidArgument},
		{"tty with stderr", &runtimeapi.ExecRequest{ContainerId: runningID, Cmd: []string{"sh"}, Stdout: true, Stderr: true, Tty: true}, codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			n := len(st.got)
			resp, code := call(func() (*runtimeapi.ExecResponse, error) { return s.Exec(ctx, tc.req) })
			if code != tc.code {
				t.Fatalf("code %v, want %v", code, tc.code)
			}
			if code == codes.OK {
				if resp.GetUrl() == "" || st.got[n] != "exec "+runningID {
					t.Errorf("resp %v, streamer got %v", resp, st.got[n:])
				}
			} else if len(st.got) != n {
				t.Errorf("a URL was issued for a bad request: %v", st.got[n:])
			}
		})
	}
}

func TestAttachValidation(t *testing.T) {
	st := &fakeStreamer{}
	s := NewServer(nil, &fakeStreamRuntime{}, WithStreamer(st))
	tests := []struct {
		desc string
		req  *runtimeapi.AttachRequest
		code codes.Code
	}{
		{"ok", &runtimeapi.AttachRequest{ContainerId: runningID, Stdin: true, Stdout: true, Stderr: true}, codes.OK},
		{"no container id", &runtimeapi.AttachRequest{Stdout: true}, codes.InvalidArgument},
		{"unknown container", &runtimeapi.AttachRequest{ContainerId: "cccc", Stdout: true}, codes.NotFound},
		{"stopped container", &runtimeapi.AttachRequest{ContainerId: stoppedID, Stdout: true}, codes.FailedPrecondition},
		{"no stream", &runtimeapi.AttachRequest{ContainerId: runningID}, codes.InvalidArgument},
		{"tty with stderr", &runtimeapi.AttachRequest{ContainerId: runningID, Stderr: true, Tty: true}, codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, code := call(func() (*runtimeapi.AttachResponse, error) { return s.Attach(context.Background(), tc.req) })
			if code != tc.code {
				t.Fatalf("code %v, want %v", code, tc.code)
			}
		})
	}
}

func TestPortForwardValidation(t *testing.T) {
	st := &fakeStreamer{}
	s := NewServer(nil, &fakeStreamRuntime{}, WithStreamer(st))
	tests := []struct {
		desc string
		req  *runtimeapi.PortForwardRequest
		code codes.Code
	}{
		{"ok", &runtimeapi.PortForwardRequest{PodSandboxId: readyPod, Port: []int32{80, 65535, 1}}, codes.OK},
		{"no ports (kubelet names them in the stream)", &runtimeapi.PortForwardRequest{PodSandboxId: readyPod}, codes.OK},
		{"no pod id", &runtimeapi.PortForwardRequest{Port: []int32{80}}, codes.InvalidArgument},
		{"unknown pod", &runtimeapi.PortForwardRequest{PodSandboxId: "cccc", Port: []int32{80}}, codes.NotFound},
		{"stopped pod", &runtimeapi.PortForwardRequest{PodSandboxId: deadPod, Port: []int32{80}}, codes.FailedPrecondition},
		{"port 0", &runtimeapi.PortForwardRequest{PodSandboxId: readyPod, Port: []int32{0}}, codes.InvalidArgument},
		{"port 70000", &runtimeapi.PortForwardRequest{PodSandboxId: readyPod, Port: []int32{80, 70000}}, codes.InvalidArgument},
		{"negative port", &runtimeapi.PortForwardRequest{PodSandboxId: readyPod, Port: []int32{-1}}, codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, code := call(func() (*runtimeapi.PortForwardResponse, error) { return s.PortForward(context.Background(), tc.req) })
			if code != tc.code {
				t.Fatalf("code %v, want %v", code, tc.code)
			}
		})
	}
}

func TestExecSync(t *testing.T) {
	rt := &fakeStreamRuntime{}
	s := NewServer(nil, rt)
	tests := []struct {
		desc string
		req  *runtimeapi.ExecSyncRequest
		code codes.Code
	}{
		{"ok", &runtimeapi.ExecSyncRequest{ContainerId: runningID, Cmd: []string{"echo", "hi"}, Timeout: 5}, codes.OK},
		{"timeout passes", &runtimeapi.ExecSyncRequest{ContainerId: runningID, Cmd: []string{"sleep", "9"}, Timeout: 1}, codes.DeadlineExceeded},
		{"empty command", &runtimeapi.ExecSyncRequest{ContainerId: runningID}, codes.InvalidArgument},
		{"negative timeout", &runtimeapi.ExecSyncRequest{ContainerId: runningID, Cmd: []string{"true"}, Timeout: -1}, codes.InvalidArgument},
		{"huge timeout", &runtimeapi.ExecSyncRequest{ContainerId: runningID, Cmd: []string{"true"}, Timeout: 1 << 40}, codes.InvalidArgument},
		{"unknown container", &runtimeapi.ExecSyncRequest{ContainerId: "cccc", Cmd: []string{"true"}}, codes.NotFound},
		{"stopped container", &runtimeapi.ExecSyncRequest{ContainerId: stoppedID, Cmd: []string{"true"}}, codes.FailedPrecondition},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			resp, code := call(func() (*runtimeapi.ExecSyncResponse, error) { return s.ExecSync(context.Background(), tc.req) })
			if code != tc.code {
				t.Fatalf("code %v, want %v", code, tc.code)
			}
			if code == codes.OK && (string(resp.Stdout) != "out" || string(resp.Stderr) != "err" || resp.ExitCode != 3) {
				t.Errorf("resp %v", resp)
			}
		})
	}
	if rt.execSync[0] != "echo hi 5s" {
		t.Errorf("runtime got %v", rt.execSync)
	}
}

func TestStreamingUnconfigured(t *testing.T) {
	s := NewServer(nil, &fakeStreamRuntime{})
	_, code := call(func() (*runtimeapi.ExecResponse, error) {
		return s.Exec(context.Background(), &runtimeapi.ExecRequest{ContainerId: runningID, Cmd: []string{"sh"}, Stdout: true})
	})
	if code != codes.Unimplemented {
		t.Errorf("code %v, want Unimplemented", code)
	}
}
