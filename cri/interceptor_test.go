package cri

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	crierrors "k8s.io/cri-api/pkg/errors"

	"github.com/accel-cri/accel-cri/images"
	"github.com/accel-cri/accel-cri/images/policy"
)

func TestToStatus(t *testing.T) {
	tests := []struct {
		desc string
		err  error
		want codes.Code
	}{
		{desc: "nil", err: nil, want: codes.OK},
		{desc: "invalid argument wrapped", err: fmt.Errorf("pull %q: %w", "x", errdefs.ErrInvalidArgument), want: codes.InvalidArgument},
		{desc: "not found", err: fmt.Errorf("image: %w", errdefs.ErrNotFound), want: codes.NotFound},
		{desc: "already exists", err: errdefs.ErrAlreadyExists, want: codes.AlreadyExists},
		{desc: "failed precondition", err: errdefs.ErrFailedPrecondition, want: codes.FailedPrecondition},
		{desc: "conflict", err: errdefs.ErrConflict, want: codes.FailedPrecondition},
		{desc: "unavailable", err: errdefs.ErrUnavailable, want: codes.Unavailable},
		{desc: "unauthorized", err: fmt.Errorf("registry said 401: %w", errdefs.ErrUnauthenticated), want: codes.Unauthenticated},
		{desc: "permission denied", err: errdefs.ErrPermissionDenied, want: codes.PermissionDenied},
		{desc: "deadline", err: fmt.Errorf("pull: %w", context.DeadlineExceeded), want: codes.DeadlineExceeded},
		{desc: "canceled", err: context.Canceled, want: codes.Canceled},
		{desc: "not implemented", err: errdefs.ErrNotImplemented, want: codes.Unimplemented},
		{desc: "existing status kept", err: status.Error(codes.ResourceExhausted, "x"), want: codes.ResourceExhausted},
		{desc: "plain error unknown", err: errors.New("boom"), want: codes.Unknown},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got := ToStatus(tc.err)
			if c := status.Code(got); c != tc.want {
				t.Fatalf("code = %v, want %v", c, tc.want)
			}
			if tc.err != nil && status.Convert(got).Message() != tc.err.Error() && tc.want != codes.ResourceExhausted {
				t.Fatalf("message %q lost the cause %q", status.Convert(got).Message(), tc.err)
			}
		})
	}
}

// TestToStatusSignature: a refused image is Unknown with a message that
// starts with the CRI's error name, which is what kubelet matches
// (evalCRIPullErr after cri-client strips Unknown's status prefix).
func TestToStatusSignature(t *testing.T) {
	serr := &images.SignatureError{Ref: "r.io/a:1", Digest: "sha256:abc", File: "/etc/p.json", Scope: "r.io",
		Reason: fmt.Errorf("%w: no signature found", policy.ErrRejected)}
	got := ToStatus(fmt.Errorf("pull image %q: %w", "r.io/a:1", serr))
	if status.Code(got) != codes.Unknown {
		t.Fatalf("code %v, want Unknown", status.Code(got))
	}
	msg := status.Convert(got).Message()
	if !strings.HasPrefix(msg, crierrors.ErrSignatureValidationFailed.Error()+": ") ||
		!strings.Contains(msg, "no signature found") || !strings.Contains(msg, "/etc/p.json") || !strings.Contains(msg, "sha256:abc") {
		t.Fatalf("message %q", msg)
	}
	// A policy error that is a user mistake in the request keeps its code.
	if c := status.Code(ToStatus(fmt.Errorf("pull: %w", errdefs.ErrInvalidArgument))); c != codes.InvalidArgument {
		t.Fatalf("invalid namespace: %v", c)
	}
}

func TestUnaryInterceptorRecoversPanic(t *testing.T) {
	_, err := UnaryInterceptor(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/x/Y"}, func(context.Context, any) (any, error) {
		panic("bad")
	})
	if status.Code(err) != codes.Internal {
		t.Fatalf("err = %v, want Internal", err)
	}
}
