package images

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
)

func status(code int) error {
	return remoteerrors.ErrUnexpectedStatus{StatusCode: code, Status: fmt.Sprintf("%d X", code), RequestMethod: "GET", RequestURL: "https://r/v2/x/manifests/1"}
}

// wrapped imitates how containerd's client nests registry errors.
func wrapped(err error) error {
	return fmt.Errorf("failed to resolve reference \"r/x:1\": %w", err)
}

func TestClassifyRegistryError(t *testing.T) {
	type check func(error) bool
	for _, tc := range []struct {
		desc  string
		in    error
		class check
		name  string
	}{
		{desc: "401", in: wrapped(status(401)), class: errdefs.IsUnauthorized, name: "Unauthenticated"},
		{desc: "401 joined with registry errors", in: wrapped(errors.Join(status(401), docker.Errors{docker.ErrorCodeUnauthorized})), class: errdefs.IsUnauthorized, name: "Unauthenticated"},
		{desc: "403", in: wrapped(status(403)), class: errdefs.IsPermissionDenied, name: "PermissionDenied"},
		{desc: "404 status", in: wrapped(status(404)), class: errdefs.IsNotFound, name: "NotFound"},
		{desc: "containerd not found", in: wrapped(fmt.Errorf("r/x:1: %w", errdefs.ErrNotFound)), class: errdefs.IsNotFound, name: "NotFound"},
		{desc: "429", in: wrapped(status(429)), class: errdefs.IsResourceExhausted, name: "ResourceExhausted"},
		{desc: "503", in: wrapped(status(503)), class: errdefs.IsUnavailable, name: "Unavailable"},
		{desc: "502", in: wrapped(status(502)), class: errdefs.IsUnavailable, name: "Unavailable"},
		{desc: "no basic auth credentials", in: wrapped(fmt.Errorf("pull access denied: %w", fmt.Errorf("%w: no basic auth credentials", docker.ErrInvalidAuthorization))), class: errdefs.IsUnauthorized, name: "Unauthenticated"},
		{
			desc: "connection refused",
			in: wrapped(fmt.Errorf("failed to do request: %w", &net.OpError{Op: "dial", Net: "tcp",
				Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}})),
			class: errdefs.IsUnavailable, name: "Unavailable",
		},
		{desc: "dns", in: wrapped(&net.DNSError{Err: "no such host", Name: "nope.invalid", IsNotFound: true}), class: errdefs.IsUnavailable, name: "Unavailable"},
		{desc: "connection reset mid-body", in: wrapped(&net.OpError{Op: "read", Net: "tcp", Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}), class: errdefs.IsUnavailable, name: "Unavailable"},
		{desc: "host unreachable", in: wrapped(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.EHOSTUNREACH}), class: errdefs.IsUnavailable, name: "Unavailable"},
		{desc: "already invalid argument stays", in: fmt.Errorf("x: %w", errdefs.ErrInvalidArgument), class: errdefs.IsInvalidArgument, name: "InvalidArgument"},
		{desc: "caller cancelled stays cancelled", in: wrapped(context.Canceled), class: errdefs.IsCanceled, name: "Canceled"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got := classifyRegistryError(tc.in)
			if !tc.class(got) {
				t.Fatalf("classifyRegistryError(%v) = %v, not %s", tc.in, got, tc.name)
			}
			// The original error stays in the chain and in the message.
			if !errors.Is(got, tc.in) {
				t.Errorf("original error lost from the chain: %v", got)
			}
			if !strings.Contains(got.Error(), tc.in.Error()) {
				t.Errorf("message %q lost %q", got, tc.in)
			}
			// Only one class: the gRPC edge must not see two answers.
			for name, other := range map[string]check{
				"DeadlineExceeded": errdefs.IsDeadlineExceeded, "InvalidArgument": errdefs.IsInvalidArgument,
				"NotFound": errdefs.IsNotFound, "Unauthenticated": errdefs.IsUnauthorized,
				"PermissionDenied": errdefs.IsPermissionDenied, "Unavailable": errdefs.IsUnavailable,
			} {
				if name != tc.name && other(got) {
					t.Errorf("%v is also %s", got, name)
				}
			}
		})
	}

	t.Run("unplaceable errors are unchanged", func(t *testing.T) {
		in := errors.New("something odd")
		if got := classifyRegistryError(in); got != in {
			t.Errorf("got %v", got)
		}
		in = wrapped(status(418))
		if got := classifyRegistryError(in); got != in {
			t.Errorf("418: got %v", got)
		}
		if got := classifyRegistryError(nil); got != nil {
			t.Errorf("nil: got %v", got)
		}
	})
}

func TestStalledError(t *testing.T) {
	err := fmt.Errorf("pull image %q: %w", "x", &stalledError{timeout: 2 * time.Second})
	if !errdefs.IsDeadlineExceeded(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%v does not match DeadlineExceeded", err)
	}
	if errdefs.IsCanceled(err) {
		t.Errorf("%v matches Canceled", err)
	}
	if !strings.Contains(err.Error(), "pull progress timeout (2s)") {
		t.Errorf("message does not name the timeout: %v", err)
	}
}
