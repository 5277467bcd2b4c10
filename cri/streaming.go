package cri

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Streamer hands out the URLs of the streaming server (package streaming)
// that kubelet connects to for exec, attach and port-forward.
type Streamer interface {
	GetExec(*runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error)
	GetAttach(*runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error)
	GetPortForward(*runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error)
}

// WithStreamer sets the streaming server; without one Exec, Attach and
// PortForward are Unimplemented.
func WithStreamer(st Streamer) Option { return func(s *Server) { s.streamer = st } }

// maxExecSyncTimeout bounds ExecSync's timeout (seconds), so a huge value
// cannot overflow the duration.
const maxExecSyncTimeout = 365 * 24 * 60 * 60

// ExecSync runs a command in a running container to its end and returns its
// output and exit code. A timeout that passes kills the command and returns
// DeadlineExceeded.
func (s *Server) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	if err := validateExecSync(req); err != nil {
		return nil, err
	}
	res, err := s.runtime.ExecSync(ctx, req.GetContainerId(), req.GetCmd(), time.Duration(req.GetTimeout())*time.Second)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ExecSyncResponse{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode}, nil
}

// Exec checks that the container runs and returns the URL of the exec
// stream.
func (s *Server) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if err := s.streamingReady(); err != nil {
		return nil, err
	}
	if err := validateExec(req); err != nil {
		return nil, err
	}
	id, err := s.runtime.RunningContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	return s.streamer.GetExec(&runtimeapi.ExecRequest{
		ContainerId: id, Cmd: req.GetCmd(), Tty: req.GetTty(), Stdin: req.GetStdin(), Stdout: req.GetStdout(), Stderr: req.GetStderr(),
	})
}

// Attach checks that the container runs and returns the URL of the attach
// stream.
func (s *Server) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if err := s.streamingReady(); err != nil {
		return nil, err
	}
	if err := validateAttach(req); err != nil {
		return nil, err
	}
	id, err := s.runtime.RunningContainer(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	return s.streamer.GetAttach(&runtimeapi.AttachRequest{
		ContainerId: id, Stdin: req.GetStdin(), Tty: req.GetTty(), Stdout: req.GetStdout(), Stderr: req.GetStderr(),
	})
}

// PortForward checks that the pod is ready and the ports are valid and
// returns the URL of the port-forward stream.
func (s *Server) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if err := s.streamingReady(); err != nil {
		return nil, err
	}
	if err := validatePortForward(req); err != nil {
		return nil, err
	}
	id, err := s.runtime.ReadyPod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	return s.streamer.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: id, Port: req.GetPort()})
}

func (s *Server) streamingReady() error {
	if s.streamer == nil {
		return fmt.Errorf("%w: no streaming server is configured", errdefs.ErrNotImplemented)
	}
	return nil
}

func validateExecSync(req *runtimeapi.ExecSyncRequest) error {
	if err := requireID("container_id", req.GetContainerId()); err != nil {
		return err
	}
	if err := validateCmd(req.GetCmd()); err != nil {
		return err
	}
	if t := req.GetTimeout(); t < 0 || t > maxExecSyncTimeout {
		return invalid("timeout %d: must be 0 (none) or a number of seconds up to %d", t, maxExecSyncTimeout)
	}
	return nil
}

func validateExec(req *runtimeapi.ExecRequest) error {
	if err := requireID("container_id", req.GetContainerId()); err != nil {
		return err
	}
	if err := validateCmd(req.GetCmd()); err != nil {
		return err
	}
	return validateStreams(req.GetStdin(), req.GetStdout(), req.GetStderr(), req.GetTty())
}

func validateAttach(req *runtimeapi.AttachRequest) error {
	if err := requireID("container_id", req.GetContainerId()); err != nil {
		return err
	}
	return validateStreams(req.GetStdin(), req.GetStdout(), req.GetStderr(), req.GetTty())
}

func validatePortForward(req *runtimeapi.PortForwardRequest) error {
	if err := requireID("pod_sandbox_id", req.GetPodSandboxId()); err != nil {
		return err
	}
	for _, p := range req.GetPort() {
		if p < 1 || p > 65535 {
			return invalid("port %d: must be in 1-65535", p)
		}
	}
	return nil
}

func validateCmd(cmd []string) error {
	if len(cmd) == 0 || cmd[0] == "" {
		return invalid("cmd: a command is required")
	}
	return nil
}

func validateStreams(stdin, stdout, stderr, tty bool) error {
	if !stdin && !stdout && !stderr {
		return invalid("one of stdin, stdout and stderr must be requested")
	}
	if tty && stderr {
		return invalid("tty and stderr cannot both be requested (a terminal has one output)")
	}
	return nil
}
