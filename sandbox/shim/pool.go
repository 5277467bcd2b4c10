package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/status"
)

// pool holds one ttrpc connection per shim socket, shared by the execs of
// all containers a shim serves. A connection is forgotten when it ends
// (the shim exited) or fails a call; close ends them all.
type pool struct {
	mu     sync.Mutex
	conns  map[string]*conn
	closed bool
}

type conn struct {
	socket string
	client *ttrpc.Client
	task   taskapi.TTRPCTaskService
}

func newPool() *pool { return &pool{conns: map[string]*conn{}} }

// get returns the connection to the shim at socket, connecting once.
func (s *pool) get(ctx context.Context, socket string) (*conn, error) {
	s.mu.Lock()
	if c := s.conns[socket]; c != nil {
		s.mu.Unlock()
		return c, nil
	}
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("%w: shutting down", ErrNotDirect)
	}
	c := &conn{socket: socket}
	// The client's receive loop ends when the shim closes the connection
	// (it exited): forget it then, so the next exec dials afresh.
	client, err := dial(ctx, socket, ttrpc.WithOnClose(func() { s.forget(c) }))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotDirect, err)
	}
	c.client = client
	c.task = taskapi.NewTTRPCTaskClient(c.client)

	s.mu.Lock()
	if s.closed || s.conns[socket] != nil {
		other := s.conns[socket]
		s.mu.Unlock()
		c.client.Close()
		if other == nil {
			return nil, fmt.Errorf("%w: shutting down", ErrNotDirect)
		}
		return other, nil
	}
	s.conns[socket] = c
	s.mu.Unlock()
	return c, nil
}

// forget removes c from the cache if it is still the cached one.
func (s *pool) forget(c *conn) {
	s.mu.Lock()
	if s.conns[c.socket] == c {
		delete(s.conns, c.socket)
	}
	s.mu.Unlock()
}

// drop forgets and closes a connection that failed a call.
func (s *pool) drop(c *conn) {
	s.forget(c)
	c.client.Close()
}

// close ends every connection; later gets fail.
func (s *pool) close() {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = map[string]*conn{}
	s.mu.Unlock()
	for _, c := range conns {
		c.client.Close()
	}
}

// IsConnError reports whether err says the connection to a shim broke
// (rather than the shim refusing the request).
func IsConnError(err error) bool {
	return errors.Is(err, ttrpc.ErrClosed) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// call runs f on the shim's connection; when the connection broke, it is
// dropped and f retried once on a fresh one. Shim errors come back as
// errdefs errors.
func (s *pool) call(ctx context.Context, socket string, f func(context.Context, taskapi.TTRPCTaskService) error) error {
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var c *conn
		if c, err = s.get(ctx, socket); err != nil {
			return err
		}
		if err = f(ctx, c.task); err == nil || !IsConnError(err) || ctx.Err() != nil {
			break
		}
		s.drop(c)
	}
	// Only the shim's own errors are statuses; conversion would flatten
	// connection and context errors into ErrUnknown.
	if _, ok := status.FromError(err); ok && err != nil {
		err = errgrpc.ToNative(err)
	}
	return err
}
