package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/sandbox/podnet"
)

// ReadyPod resolves id (a full id or a unique prefix) to a ready pod's full
// id: NotFound for an unknown pod, FailedPrecondition for one not ready.
func (r *Runtime) ReadyPod(id string) (string, error) {
	p, err := r.store.pod(id)
	if err != nil {
		return "", err
	}
	if st := r.store.podStatusOf(p).State; st != runtimeapi.PodSandboxState_SANDBOX_READY {
		return "", fmt.Errorf("%w: pod sandbox %s is not ready", errdefs.ErrFailedPrecondition, p.ID)
	}
	return p.ID, nil
}

// PortForward connects to port on the pod's loopback, 127.0.0.1 or else
// [::1], inside the pod's network namespace (on the host for a host-network
// pod), and copies between that connection and stream until the pod side
// closes, or the client side ended and the pod side then closed, or ctx
// ends.
func (r *Runtime) PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error {
	if port < 1 || port > 65535 {
		return fmt.Errorf("%w: port %d is not in 1-65535", errdefs.ErrInvalidArgument, port)
	}
	id, err := r.ReadyPod(podID)
	if err != nil {
		return err
	}
	p, err := r.store.pod(id)
	if err != nil {
		return err
	}
	conn, err := podnet.DialLoopback(ctx, p.NetNSPath, port)
	if err != nil {
		return fmt.Errorf("port-forward to pod %s: %w", id, err)
	}
	defer conn.Close()
	klog.V(4).InfoS("Port-forward connected", "pod", id, "port", port, "remote", conn.RemoteAddr())
	return pipeConn(ctx, conn, stream)
}

// pipeConn copies both ways between the pod connection and the client
// stream. When the client finishes sending, the pod side is half-closed
// and its answer still copied; when the pod side closes, it is over.
func pipeConn(ctx context.Context, conn net.Conn, stream io.ReadWriteCloser) error {
	toPod := make(chan error, 1)
	fromPod := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, stream)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok && err == nil {
			_ = cw.CloseWrite()
		}
		toPod <- err
	}()
	go func() {
		_, err := io.Copy(stream, conn)
		fromPod <- err
	}()
	select {
	case err := <-fromPod:
		return ignoreClosed(err)
	case err := <-toPod:
		if err != nil {
			return ignoreClosed(err)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	// The client is done sending; the pod's answer may still come.
	select {
	case err := <-fromPod:
		return ignoreClosed(err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
