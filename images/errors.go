package images

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
)

// classifyRegistryError adds the errdefs class that tells the CRI layer what
// went wrong talking to a registry, keeping the original error in the chain
// (errors.As still finds remoteerrors.ErrUnexpectedStatus, *net.OpError...).
// Errors that already carry a class, or that it cannot place, come back
// unchanged.
func classifyRegistryError(err error) error {
	if err == nil || hasClass(err) {
		return err
	}
	var status remoteerrors.ErrUnexpectedStatus
	if errors.As(err, &status) {
		switch status.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("registry rejected the credentials (%w): %w", errdefs.ErrUnauthenticated, err)
		case http.StatusForbidden:
			return fmt.Errorf("registry denied access (%w): %w", errdefs.ErrPermissionDenied, err)
		case http.StatusNotFound:
			return fmt.Errorf("image not found in registry (%w): %w", errdefs.ErrNotFound, err)
		case http.StatusTooManyRequests:
			return fmt.Errorf("registry rate limit (%w): %w", errdefs.ErrResourceExhausted, err)
		case http.StatusRequestTimeout, http.StatusInternalServerError, http.StatusBadGateway,
			http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return fmt.Errorf("registry unavailable (%w): %w", errdefs.ErrUnavailable, err)
		}
		return err
	}
	if errors.Is(err, docker.ErrInvalidAuthorization) {
		// Anonymous pull from a registry that wants credentials, or a
		// token server that refused them.
		return fmt.Errorf("registry authorization failed (%w): %w", errdefs.ErrUnauthenticated, err)
	}
	if isUnreachable(err) {
		return fmt.Errorf("registry unreachable (%w): %w", errdefs.ErrUnavailable, err)
	}
	return err
}

// hasClass reports whether err already carries one of the classes the CRI
// layer maps (context errors included).
func hasClass(err error) bool {
	return errdefs.IsInvalidArgument(err) || errdefs.IsNotFound(err) ||
		errdefs.IsUnauthorized(err) || errdefs.IsPermissionDenied(err) ||
		errdefs.IsUnavailable(err) || errdefs.IsDeadlineExceeded(err) ||
		errdefs.IsCanceled(err) || errdefs.IsResourceExhausted(err) ||
		errdefs.IsNotImplemented(err) || errdefs.IsAlreadyExists(err) ||
		errdefs.IsFailedPrecondition(err)
}

// isUnreachable reports network failures that mean the registry could not be
// reached or dropped the connection: DNS, refused or reset connections,
// unreachable networks, dial and I/O timeouts.
func isUnreachable(err error) bool {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	for _, errno := range []syscall.Errno{
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
		syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EHOSTDOWN,
		syscall.ENETDOWN, syscall.ETIMEDOUT,
	} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout()
}

// stalledError is the cause of a pull cancelled by the progress timeout. It
// matches context.DeadlineExceeded, which errdefs.IsDeadlineExceeded and
// the gRPC edge map to DeadlineExceeded.
type stalledError struct {
	timeout time.Duration
}

func (e *stalledError) Error() string {
	return fmt.Sprintf("pull cancelled: no bytes received from the registry within the pull progress timeout (%s)", e.timeout)
}

func (e *stalledError) Is(target error) bool { return target == context.DeadlineExceeded }
