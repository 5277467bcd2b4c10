package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Server serves /metrics over plain HTTP on its own listener.
type Server struct {
	lis net.Listener
	srv *http.Server
}

// Listen binds addr (host:port) for m; Serve serves it until Close.
func Listen(addr string, m *Metrics) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	return &Server{lis: lis, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// A scrape runs the collectors once; a minute is far beyond any.
		WriteTimeout: time.Minute,
		IdleTimeout:  2 * time.Minute,
	}}, nil
}

// Addr is the address the server listens on (the port chosen for port 0).
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// Serve serves until Close; it returns nil after Close.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.lis); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close stops the server, letting running scrapes finish for a few seconds.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		return s.srv.Close()
	}
	return nil
}
