// Package debugserver owns accel-cri's debug socket: net/http/pprof
// (profiles, heap, and the goroutine dump at /debug/pprof/goroutine?debug=1
// or ?debug=2) served over HTTP on a unix socket that only root can open. It
// is off unless configured; it must not serve anything but diagnostics and
// never listens on TCP.
package debugserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Server is a running debug endpoint. Close stops it and removes its socket.
type Server struct {
	path string
	lis  net.Listener
	srv  *http.Server
	done chan error
}

// Start claims the socket at path (mode 0600, owned by the caller, i.e.
// root) and serves pprof on it until Close. A stale socket at path is
// replaced; a socket that answers, a symlink or any other file is refused.
func Start(path string) (*Server, error) {
	lis, err := listen(path)
	if err != nil {
		return nil, err
	}
	s := &Server{
		path: path,
		lis:  lis,
		srv:  &http.Server{Handler: Handler(), ReadHeaderTimeout: 10 * time.Second},
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(lis) }()
	return s, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Close stops serving: requests in flight get ctx's time to finish (a CPU
// profile may take its full duration), then connections are closed. The
// socket file is removed.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	if serr := <-s.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

// Handler serves the net/http/pprof endpoints under /debug/pprof/. It does
// not use http.DefaultServeMux, so nothing else registered there leaks in.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// listen binds the socket under a temporary name, makes it 0600 and only
// then renames it into place: no moment exists at which another user could
// connect. rename(2) replaces a path without following it, so a symlink
// planted after the check below is replaced, never followed.
func listen(path string) (net.Listener, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("debug socket %q: not an absolute path", path)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("debug socket %s: %w", path, err)
	}
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("debug socket %s: %w", path, err)
	case st.Mode().Type() == fs.ModeSymlink:
		return nil, fmt.Errorf("debug socket %s: is a symlink; refusing to follow it", path)
	case st.Mode().Type() != fs.ModeSocket:
		return nil, fmt.Errorf("debug socket %s: path exists and is not a socket (%s)", path, st.Mode().Type())
	default:
		if c, derr := net.DialTimeout("unix", path, time.Second); derr == nil {
			c.Close()
			return nil, fmt.Errorf("debug socket %s: in use: another process is serving it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("debug socket %s: remove stale socket: %w", path, err)
		}
	}
	tmp := filepath.Join(dir, "."+filepath.Base(path)+"."+strconv.Itoa(os.Getpid()))
	_ = os.Remove(tmp)
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("debug socket %s: %w", path, err)
	}
	ul := l.(*net.UnixListener)
	// The file is renamed below; Close removes the final path itself.
	ul.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		ul.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("debug socket %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(err)
	}
	if err := os.Lchown(tmp, os.Geteuid(), os.Getegid()); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	return ul, nil
}
