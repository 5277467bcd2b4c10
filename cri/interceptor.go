package cri

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	crierrors "k8s.io/cri-api/pkg/errors"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/images"
)

// UnaryInterceptor logs each call, recovers a panicking handler, and turns
// the handler's error into a gRPC status with the right code.
func UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			klog.ErrorS(nil, "CRI handler panicked", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
			resp, err = nil, status.Errorf(codes.Internal, "internal error in %s: %v", info.FullMethod, r)
		}
	}()
	resp, err = handler(ctx, req)
	err = ToStatus(err)
	logCall(info.FullMethod, start, err)
	return resp, err
}

// StreamInterceptor does for streaming calls what UnaryInterceptor does.
func StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			klog.ErrorS(nil, "CRI stream handler panicked", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
			err = status.Errorf(codes.Internal, "internal error in %s: %v", info.FullMethod, r)
		}
	}()
	err = ToStatus(handler(srv, ss))
	logCall(info.FullMethod, start, err)
	return err
}

func logCall(method string, start time.Time, err error) {
	d := time.Since(start)
	if err == nil {
		klog.V(5).InfoS("CRI call", "method", method, "duration", d)
		return
	}
	switch status.Code(err) {
	case codes.NotFound, codes.Canceled:
		klog.V(3).InfoS("CRI call failed", "method", method, "duration", d, "err", err)
	default:
		klog.ErrorS(err, "CRI call failed", "method", method, "duration", d)
	}
}

// ToStatus maps a domain error to a gRPC status error. Errors that already
// carry a gRPC code keep it; the errdefs classes of containerd and of
// accel-cri's packages map to their codes; context errors map to
// DeadlineExceeded/Canceled; anything else is Unknown.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var sig *images.SignatureError
	if errors.As(err, &sig) {
		// The CRI names this failure by its message, not its code:
		// kubelet's CRI client strips the status of an Unknown error and
		// evalCRIPullErr (pkg/kubelet/images/image_manager.go) shows an
		// error whose message starts with "SignatureValidationFailed" as
		// the container's waiting reason SignatureValidationFailed, as
		// for CRI-O. Any other code would show as ErrImagePull.
		return status.Error(codes.Unknown, crierrors.ErrSignatureValidationFailed.Error()+": "+err.Error())
	}
	return status.Error(codeOf(err), err.Error())
}

func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errdefs.IsDeadlineExceeded(err):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled), errdefs.IsCanceled(err):
		return codes.Canceled
	case errdefs.IsInvalidArgument(err):
		return codes.InvalidArgument
	case errdefs.IsNotFound(err):
		return codes.NotFound
	case errdefs.IsAlreadyExists(err):
		return codes.AlreadyExists
	case errdefs.IsFailedPrecondition(err), errdefs.IsConflict(err):
		return codes.FailedPrecondition
	case errdefs.IsUnavailable(err):
		return codes.Unavailable
	case errdefs.IsNotImplemented(err):
		return codes.Unimplemented
	case errdefs.IsUnauthorized(err):
		return codes.Unauthenticated
	case errdefs.IsPermissionDenied(err):
		return codes.PermissionDenied
	case errdefs.IsResourceExhausted(err):
		return codes.ResourceExhausted
	case errdefs.IsOutOfRange(err):
		return codes.OutOfRange
	case errdefs.IsAborted(err):
		return codes.Aborted
	case errdefs.IsDataLoss(err):
		return codes.DataLoss
	case errdefs.IsInternal(err):
		return codes.Internal
	}
	return codes.Unknown
}

// invalid returns an InvalidArgument error for a bad request field.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errdefs.ErrInvalidArgument, fmt.Sprintf(format, args...))
}

func isNotFound(err error) bool { return errdefs.IsNotFound(err) }
