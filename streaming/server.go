// Package streaming serves kubelet's exec, attach and port-forward streams.
// It owns the HTTP server of k8s.io/cri-streaming (SPDY and WebSocket
// handling, single-use URL tokens) and the adapter from that library's
// runtime interface to accel-cri's sandbox package. It must not implement
// a streaming protocol itself, nor know about containerd.
//
// Use:
//
//	srv, err := streaming.New(streaming.Config{Addr: "127.0.0.1:0"}, runtime)
//	go srv.Serve()
//	defer srv.Close()
//	resp, err := srv.GetExec(&runtimeapi.ExecRequest{ContainerId: id, Cmd: cmd, Stdout: true})
//	// resp.Url is what kubelet connects to.
package streaming

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	crstreaming "k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/klog/v2"
	"k8s.io/streaming/pkg/httpstream/wsstream"
	utilexec "k8s.io/utils/exec"

	"github.com/accel-cri/accel-cri/sandbox"
)

// Defaults of Config, as kubelet's own streaming server has them.
const (
	DefaultStreamIdleTimeout     = 4 * time.Hour
	DefaultStreamCreationTimeout = remotecommand.DefaultStreamCreationTimeout
	// closeGrace bounds the wait for sessions to end after Close.
	closeGrace = 5 * time.Second
)

// DefaultAddr is where the server listens when Config.Addr is empty.
const DefaultAddr = "127.0.0.1:0"

// Config configures the streaming server.
type Config struct {
	// Addr is host:port to listen on; port 0 picks a free one. Empty is
	// DefaultAddr (loopback), never all interfaces: the URLs carry only a
	// token, so the server is exposed only when configured to be.
	Addr string
	// TLSCertFile and TLSKeyFile, both set, serve HTTPS.
	TLSCertFile, TLSKeyFile string
	// StreamIdleTimeout closes a connection with no traffic for this long.
	StreamIdleTimeout time.Duration
	// StreamCreationTimeout bounds how long a SPDY client takes to open its streams.
	StreamCreationTimeout time.Duration
}

// Runtime is what the server needs from the sandbox package.
type Runtime interface {
	Exec(ctx context.Context, containerID string, cmd []string, opts sandbox.StreamOptions) (int32, error)
	Attach(ctx context.Context, containerID string, opts sandbox.StreamOptions) error
	PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error
}

// Server is the streaming HTTP server.
type Server struct {
	lib  crstreaming.Server
	http *http.Server
	lis  net.Listener
	tls  bool
	base *url.URL

	streams  requestedStreams
	ctx      context.Context // ends every session on Close
	cancel   context.CancelFunc
	sessions sync.WaitGroup
}

// New listens on cfg.Addr and prepares the server; Serve serves it. The
// URLs it hands out name the address it actually listens on.
func New(cfg Config, rt Runtime) (*Server, error) {
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("streaming: TLS needs both a certificate and a key")
	}
	var tlsConfig *tls.Config
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("streaming: load TLS key pair: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if cfg.StreamIdleTimeout == 0 {
		cfg.StreamIdleTimeout = DefaultStreamIdleTimeout
	}
	if cfg.StreamCreationTimeout == 0 {
		cfg.StreamCreationTimeout = DefaultStreamCreationTimeout
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("streaming: listen on %s: %w", cfg.Addr, err)
	}
	s := &Server{lis: lis, tls: tlsConfig != nil}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.base = &url.URL{Scheme: "http", Host: lis.Addr().String()}
	if s.tls {
		s.base.Scheme = "https"
	}
	libCfg := crstreaming.DefaultConfig
	libCfg.Addr = lis.Addr().String()
	libCfg.BaseURL = s.base
	libCfg.StreamIdleTimeout = cfg.StreamIdleTimeout
	libCfg.StreamCreationTimeout = cfg.StreamCreationTimeout
	libCfg.TLSConfig = tlsConfig
	s.lib, err = crstreaming.NewServer(libCfg, &adapter{s: s, rt: rt})
	if err != nil {
		lis.Close()
		return nil, fmt.Errorf("streaming: %w", err)
	}
	s.http = &http.Server{
		Handler:           s,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          nil,
	}
	return s, nil
}

// URL is the server's base URL (scheme and the address it listens on).
func (s *Server) URL() string { return s.base.String() }

// Serve serves until Close; it returns nil after Close.
func (s *Server) Serve() error {
	var err error
	if s.tls {
		err = s.http.ServeTLS(s.lis, "", "")
	} else {
		err = s.http.Serve(s.lis)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops listening, ends every session (exec processes are killed,
// attach sessions detached, port-forward connections closed) and waits a
// moment for them to finish.
func (s *Server) Close() error {
	s.cancel()
	err := s.http.Close()
	done := make(chan struct{})
	go func() { s.sessions.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeGrace):
		klog.InfoS("Streaming sessions still ending after close", "grace", closeGrace)
	}
	return err
}

// GetExec validates req and returns the single-use URL for it.
func (s *Server) GetExec(req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	resp, err := s.lib.GetExec(req)
	if err != nil {
		return nil, err
	}
	s.streams.add(resp.Url, requested{stdin: req.Stdin, stdout: req.Stdout, stderr: req.Stderr})
	return resp, nil
}

// GetAttach validates req and returns the single-use URL for it.
func (s *Server) GetAttach(req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	resp, err := s.lib.GetAttach(req)
	if err != nil {
		return nil, err
	}
	s.streams.add(resp.Url, requested{stdin: req.Stdin, stdout: req.Stdout, stderr: req.Stderr})
	return resp, nil
}

// ServeHTTP hands a request to the library with the streams its URL was
// issued for in its context: over WebSocket the library passes streams the
// client did not ask for as an empty stdin and a discarding output, and an
// attach must not take that stdin's EOF for the client closing its stdin.
//
// A WebSocket request offering none of the subprotocols the library serves
// (client-go's NewWebSocketExecutor offers only v5.channel.k8s.io, which
// the API server speaks and translates to SPDY for kubelet) is refused
// before its single-use token is spent, so a fallback executor can retry
// the same URL over SPDY.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if wsstream.IsWebSocketRequest(r) && !offersServedSubprotocol(r) {
		http.Error(w, fmt.Sprintf("none of the WebSocket subprotocols %q is served; use one of %q, or SPDY",
			r.Header.Values("Sec-WebSocket-Protocol"), servedWebSocketProtocols), http.StatusBadRequest)
		return
	}
	if req, ok := s.streams.take(r.URL.Path); ok {
		r = r.WithContext(context.WithValue(r.Context(), requestedKey{}, req))
	}
	s.lib.ServeHTTP(w, r)
}

// GetPortForward returns the single-use URL for req.
func (s *Server) GetPortForward(req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	return s.lib.GetPortForward(req)
}

// session derives a session's context: it ends with the request or Close.
func (s *Server) session(ctx context.Context) (context.Context, func()) {
	s.sessions.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
		s.sessions.Done()
	}
}

// adapter implements the library's runtime interface over Runtime.
type adapter struct {
	s  *Server
	rt Runtime
}

var _ crstreaming.Runtime = (*adapter)(nil)

func (a *adapter) Exec(ctx context.Context, containerID string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	ctx, end := a.s.session(ctx)
	defer end()
	code, err := a.rt.Exec(ctx, containerID, cmd, streamOptions(ctx, in, out, errOut, tty, resize))
	if err != nil {
		return err
	}
	if code != 0 {
		// The library reports an ExitError's code to the client.
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: int(code)}
	}
	return nil
}

func (a *adapter) Attach(ctx context.Context, containerID string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	ctx, end := a.s.session(ctx)
	defer end()
	return a.rt.Attach(ctx, containerID, streamOptions(ctx, in, out, errOut, tty, resize))
}

func (a *adapter) PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error {
	ctx, end := a.s.session(ctx)
	defer end()
	return a.rt.PortForward(ctx, podID, port, stream)
}

// streamOptions turns the library's streams into sandbox's, leaving out
// the ones the request did not ask for.
func streamOptions(ctx context.Context, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) sandbox.StreamOptions {
	want, known := ctx.Value(requestedKey{}).(requested)
	o := sandbox.StreamOptions{TTY: tty}
	if in != nil && (!known || want.stdin) {
		o.Stdin = in
	}
	if out != nil && (!known || want.stdout) {
		o.Stdout = out
	}
	if errOut != nil && (!known || want.stderr) {
		o.Stderr = errOut
	}
	if tty && resize != nil {
		o.Resize = convertResize(ctx, resize)
	}
	return o
}

// convertResize forwards size events until in closes or ctx ends.
func convertResize(ctx context.Context, in <-chan remotecommand.TerminalSize) <-chan sandbox.TerminalSize {
	out := make(chan sandbox.TerminalSize)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case sz, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- sandbox.TerminalSize{Width: sz.Width, Height: sz.Height}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// servedWebSocketProtocols are the WebSocket subprotocols k8s.io/cri-streaming
// serves for exec, attach and port-forward (besides none at all).
var servedWebSocketProtocols = []string{
	wsstream.ChannelWebSocketProtocol, wsstream.Base64ChannelWebSocketProtocol,
	"v4." + wsstream.ChannelWebSocketProtocol, "v4." + wsstream.Base64ChannelWebSocketProtocol,
}

// offersServedSubprotocol reports whether a WebSocket request asks for no
// subprotocol or for one that is served.
func offersServedSubprotocol(r *http.Request) bool {
	var offered []string
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				offered = append(offered, p)
			}
		}
	}
	if len(offered) == 0 {
		return true
	}
	for _, p := range offered {
		if slices.Contains(servedWebSocketProtocols, p) {
			return true
		}
	}
	return false
}

// requested is which streams an exec or attach URL was issued for.
type requested struct{ stdin, stdout, stderr bool }

type requestedKey struct{}

// requestedTTL is how long an unused URL is remembered; the library's
// tokens expire after a minute.
const requestedTTL = 2 * time.Minute

// requestedStreams remembers, by URL path, the streams of the URLs handed
// out and not used yet.
type requestedStreams struct {
	mu sync.Mutex
	m  map[string]requestedEntry
}

type requestedEntry struct {
	req     requested
	expires time.Time
}

func (r *requestedStreams) add(rawURL string, req requested) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]requestedEntry{}
	}
	for k, e := range r.m {
		if now.After(e.expires) {
			delete(r.m, k)
		}
	}
	r.m[u.Path] = requestedEntry{req: req, expires: now.Add(requestedTTL)}
}

func (r *requestedStreams) take(path string) (requested, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[path]
	delete(r.m, path)
	return e.req, ok
}
