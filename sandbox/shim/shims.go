package shim

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/ttrpc"
)

// taskAPIVersion is the shim bootstrap version whose shims serve the task
// API v3 (containerd.task.v3.Task), the only one spoken directly.
const taskAPIVersion = 3

// dialTimeout bounds connecting to a shim's socket (and, for a shim asked
// who it is, its answer).
const dialTimeout = 2 * time.Second

// callTimeout bounds each call to a shim during cleanup.
const callTimeout = 5 * time.Second

// defaultSocketDir is where the runc shim makes its sockets when
// containerd names no socket directory (containerd's defaults.DefaultStateDir
// + "/s"; the managed containerd names none).
const defaultSocketDir = "/run/containerd/s"

// ErrNotDirect says a shim cannot be driven directly: the exec has to go
// through containerd.
var ErrNotDirect = errors.New("no direct shim connection")

// Config locates the runc shims of the managed containerd.
type Config struct {
	// Namespace is the containerd namespace of the tasks.
	Namespace string
	// BundleRoot is where containerd keeps task bundles
	// (<state>/io.containerd.runtime.v2.task) and Address its socket
	// address, which name a task's bundle and its shim's socket.
	BundleRoot, Address string
}

// Shims are the runc shims of the managed containerd's tasks in one
// namespace, and the connections to them. A nil *Shims does nothing (see
// the package doc).
type Shims struct {
	namespace, bundleRoot, address string
	// socketDir is where the runc shims make their sockets ("": the
	// shim's default).
	socketDir string
	pool      *pool
	// reapMu serialises Reap.
	reapMu sync.Mutex
}

// New returns the shims of cfg's containerd.
func New(cfg Config) *Shims {
	return &Shims{namespace: cfg.Namespace, bundleRoot: cfg.BundleRoot, address: cfg.Address, pool: newPool()}
}

// Close ends every connection to a shim; later execs go through
// containerd.
func (s *Shims) Close() {
	if s != nil {
		s.pool.close()
	}
}

// Bundle returns the directory of task id's bundle ("" when bundles are
// unknown). It may not exist.
func (s *Shims) Bundle(id string) string {
	if s == nil || s.bundleRoot == "" {
		return ""
	}
	return filepath.Join(s.bundleRoot, s.namespace, id)
}

// bootstrap is what containerd writes into a task's bundle as
// bootstrap.json (core/runtime/v2: the shim's start response, or the
// sandbox's shim for a task grouped into it).
type bootstrap struct {
	Version  int    `json:"version"`
	Address  string `json:"address"`
	Protocol string `json:"protocol"`
}

// Socket returns the unix socket path of the shim serving task id, for
// direct execs, from the bootstrap.json containerd wrote into the task's
// bundle. It fails (wrapping ErrNotDirect) when bundles are unknown and for
// anything but a ttrpc shim of version 3 on a filesystem unix socket. Only
// runc-type shims are meant: others (gVisor's, a VM's) may speak another
// task API or hide exec processes differently.
func (s *Shims) Socket(id string) (string, error) {
	bundle := s.Bundle(id)
	if bundle == "" {
		return "", fmt.Errorf("%w: task bundles unknown (not the managed containerd)", ErrNotDirect)
	}
	return readSocket(bundle)
}

// readBootstrap reads bundle's bootstrap.json.
func readBootstrap(bundle string) (bootstrap, error) {
	var p bootstrap
	b, err := os.ReadFile(filepath.Join(bundle, "bootstrap.json"))
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("bootstrap.json of %s: %w", bundle, err)
	}
	return p, nil
}

// socketPath returns the address as a filesystem unix socket path, and
// whether it is one.
func (p bootstrap) socketPath() (string, bool) {
	path, _ := strings.CutPrefix(p.Address, "unix://")
	return path, filepath.IsAbs(path)
}

// readSocket returns the shim socket bundle's bootstrap.json names.
func readSocket(bundle string) (string, error) {
	p, err := readBootstrap(bundle)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNotDirect, err)
	}
	if p.Version != taskAPIVersion || !strings.EqualFold(p.Protocol, "ttrpc") {
		return "", fmt.Errorf("%w: shim of %s speaks %s version %d", ErrNotDirect, bundle, p.Protocol, p.Version)
	}
	path, ok := p.socketPath()
	if !ok {
		return "", fmt.Errorf("%w: shim address %q of %s is not a unix socket path", ErrNotDirect, p.Address, bundle)
	}
	return path, nil
}

// groupSocket is the socket the runc shim of task group listens on.
func (s *Shims) groupSocket(group string) string {
	dir := s.socketDir
	if dir == "" {
		dir = defaultSocketDir
	}
	return socketIn(dir, s.address, s.namespace, group)
}

// socketIn is where the runc shim of task group listens: containerd's
// shim library names it by the hash of containerd's address, the namespace
// and the group, in the shim socket directory (/run/containerd/s unless
// containerd names another, whatever containerd's state directory).
func socketIn(dir, containerdAddress, namespace, group string) string {
	sum := sha256.Sum256([]byte(filepath.Join(containerdAddress, namespace, group)))
	return filepath.Join(dir, fmt.Sprintf("%x", sum))
}

// dial connects to the shim listening on socket, within dialTimeout.
func dial(ctx context.Context, socket string, opts ...ttrpc.ClientOpts) (*ttrpc.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, err
	}
	return ttrpc.NewClient(conn, opts...), nil
}

// connect dials the shim listening on socket and asks for its pid (task
// API Connect, answered without any task), both within dialTimeout: a shim
// that does not answer at once (one that never started serving) is not
// asked more. The caller closes the client.
func connect(ctx context.Context, socket string) (*ttrpc.Client, int, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	client, err := dial(ctx, socket)
	if err != nil {
		return nil, 0, err
	}
	resp, err := taskapi.NewTTRPCTaskClient(client).Connect(ctx, &taskapi.ConnectRequest{})
	if err != nil {
		client.Close()
		return nil, 0, err
	}
	return client, int(resp.ShimPid), nil
}

// pidAt returns the pid of the shim listening on socket (connect).
func pidAt(ctx context.Context, socket string) (int, error) {
	client, pid, err := connect(ctx, socket)
	if err != nil {
		return 0, err
	}
	client.Close()
	return pid, nil
}
