package metrics

import (
	"context"
	"time"

	"google.golang.org/grpc"
)

// The interceptors go first in the chain (outermost), before
// cri.UnaryInterceptor: they then see the gRPC status that interceptor made
// of the handler's error, and a recovered panic as Internal.

// UnaryInterceptor times each unary CRI call and counts it by code.
func (m *Metrics) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	m.ObserveCRI(info.FullMethod, time.Since(start), err)
	return resp, err
}

// StreamInterceptor times each streaming CRI call (until it ends) and
// counts it by code.
func (m *Metrics) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	m.ObserveCRI(info.FullMethod, time.Since(start), err)
	return err
}
