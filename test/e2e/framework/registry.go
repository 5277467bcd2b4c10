// Package framework holds helpers for accel-cri's end-to-end tests.
package framework

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"

	"github.com/accel-cri/accel-cri/hack/testimages"
)

// RegistryBinary is Debian's docker-registry (distribution 2.8), package
// docker-registry.
const RegistryBinary = "/usr/bin/docker-registry"

// RegistryOptions configures StartRegistry.
type RegistryOptions struct {
	// Username and Password, when both set, turn on htpasswd (basic) auth.
	Username, Password string
	// Binary overrides RegistryBinary.
	Binary string
	// StartTimeout bounds the wait for GET /v2/ to answer (default 30s).
	StartTimeout time.Duration
}

// Registry is a docker-registry process started by StartRegistry. It serves
// plain HTTP on 127.0.0.1.
type Registry struct {
	// Username and Password are the credentials when auth is on, else empty.
	Username, Password string
	// Dir is the registry's temporary directory: config.yml, htpasswd,
	// registry.log and data/ (the storage root).
	Dir string
	// LogPath is the file the registry's stdout and stderr go to.
	LogPath string

	host   string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has been waited for
}

// Host returns "127.0.0.1:PORT".
func (r *Registry) Host() string { return r.host }

// URL returns "http://127.0.0.1:PORT".
func (r *Registry) URL() string { return "http://" + r.host }

// Auth reports whether the registry requires basic auth.
func (r *Registry) Auth() bool { return r.Username != "" }

// RemoteOptions returns go-containerregistry options that talk to this
// registry with its credentials (anonymous when auth is off).
func (r *Registry) RemoteOptions(ctx context.Context) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx)}
	if r.Auth() {
		opts = append(opts, testimages.WithBasicAuth(r.Username, r.Password))
	}
	return opts
}

// StartRegistry runs docker-registry on 127.0.0.1 at a free port with storage
// in a temporary directory, and waits until GET /v2/ answers (200, or 401
// when auth is on). It fails the test if the registry cannot be started.
//
// A t.Cleanup stops the process (SIGTERM, then SIGKILL after 5s) and removes
// its directory, also when the test fails; on failure it logs the tail of the
// registry's output first.
func StartRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	if (opts.Username == "") != (opts.Password == "") {
		t.Fatalf("StartRegistry: Username and Password go together")
	}
	if strings.ContainsAny(opts.Username, ":\n") {
		t.Fatalf("StartRegistry: bad user name %q", opts.Username)
	}
	bin := opts.Binary
	if bin == "" {
		bin = RegistryBinary
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("StartRegistry: %v (install Debian's docker-registry package: hack/install-deps.sh)", err)
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}

	// The free port may be taken between FreePort and the registry's bind:
	// try a few ports before giving up.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		dir := t.TempDir() // removed by the testing package after our cleanup
		r := &Registry{Username: opts.Username, Password: opts.Password, Dir: dir, LogPath: filepath.Join(dir, "registry.log")}
		err := r.start(t, bin, timeout)
		if err == nil {
			return r
		}
		lastErr = err
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	t.Fatalf("StartRegistry: %v", lastErr)
	return nil
}

var errAddrInUse = errors.New("address already in use")

func (r *Registry) start(t testing.TB, bin string, timeout time.Duration) error {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		return err
	}
	r.host = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	data := filepath.Join(r.Dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return err
	}
	htpasswd := ""
	if r.Auth() {
		htpasswd = filepath.Join(r.Dir, "htpasswd")
		// MinCost: the registry checks the hash on every request, and these are
		// throwaway test credentials.
		hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
		if err != nil {
			return fmt.Errorf("htpasswd: %w", err)
		}
		if err := os.WriteFile(htpasswd, []byte(r.Username+":"+string(hash)+"\n"), 0o600); err != nil {
			return err
		}
	}
	cfgPath := filepath.Join(r.Dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(registryConfig(r.host, data, htpasswd)), 0o600); err != nil {
		return err
	}
	logf, err := os.OpenFile(r.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy

	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Dir = r.Dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = registryEnv()
	// Kill the registry if the test binary dies without running cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	r.cmd = cmd
	r.exited = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() { r.stop(t) })

	if err := r.waitReady(timeout); err != nil {
		tail := tailFile(r.LogPath, 4096)
		if strings.Contains(tail, "address already in use") {
			return fmt.Errorf("registry on %s: %w", r.host, errAddrInUse)
		}
		return fmt.Errorf("registry on %s: %w\nregistry log:\n%s", r.host, err, tail)
	}
	return nil
}

// registryConfig is a docker-registry 2.8 configuration that needs no
// network beyond its own listener: filesystem storage, no redirects, no
// notifications, no proxy, no debug server, quiet logs.
func registryConfig(addr, root, htpasswd string) string {
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	var b strings.Builder
	fmt.Fprintf(&b, `version: 0.1
log:
  level: warn
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %q
  secret: %q
  headers:
    X-Content-Type-Options: [nosniff]
`, root, addr, hex.EncodeToString(secret))
	if htpasswd != "" {
		fmt.Fprintf(&b, `auth:
  htpasswd:
    realm: accel-cri-test
    path: %q
`, htpasswd)
	}
	return b.String()
}

// registryEnv is the environment of the registry: the test's, minus
// REGISTRY_* variables, which would override the config file.
func registryEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			env = append(env, kv)
		}
	}
	return env
}

// waitReady waits until GET /v2/ answers 200 (401 with auth), the process
// exits, or timeout passes. There is no readiness event to wait on, so it
// retries with a short, bounded interval.
func (r *Registry) waitReady(timeout time.Duration) error {
	want := http.StatusOK
	if r.Auth() {
		want = http.StatusUnauthorized
	}
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		resp, err := client.Get(r.URL() + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
			last = fmt.Errorf("GET /v2/: %s, want %d", resp.Status, want)
		} else {
			last = err
		}
		select {
		case <-r.exited:
			return fmt.Errorf("registry exited before it was ready: %v", r.cmd.ProcessState)
		case <-deadline.C:
			return fmt.Errorf("registry not ready after %v: %w", timeout, last)
		case <-tick.C:
		}
	}
}

// stop ends the process this Registry started: SIGTERM, then SIGKILL after
// 5 seconds. On test failure it logs the tail of the registry's output.
func (r *Registry) stop(t testing.TB) {
	select {
	case <-r.exited:
	default:
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(5 * time.Second):
			_ = r.cmd.Process.Kill()
			<-r.exited
		}
	}
	if t.Failed() {
		t.Logf("docker-registry on %s, log %s (tail):\n%s", r.host, r.LogPath, tailFile(r.LogPath, 4096))
	}
}

// tailFile returns about the last n bytes of a file, starting at a line.
func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	off := max(st.Size()-n, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	if off > 0 {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	if len(buf) == 0 {
		return "(empty)"
	}
	return string(buf)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// PushedImage is a test image pushed to a registry.
type PushedImage struct {
	// Ref is the tagged reference, e.g. "127.0.0.1:PORT/library/busybox:latest".
	Ref string
	// Digest is the manifest digest, "sha256:...".
	Digest string
}

// DigestRef returns the reference pinned by digest: "HOST/REPO@sha256:...".
func (p PushedImage) DigestRef() string {
	repo := p.Ref
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	return repo + "@" + p.Digest
}

// TestImages are the images PushTestImages pushed.
type TestImages struct {
	Busybox PushedImage // PREFIX + "busybox:latest"
	Pause   PushedImage // PREFIX + "pause:3.10"
}

// ModuleRoot returns the accel-cri module root: the first directory with a
// go.mod at or above the current directory (a test's package directory).
func ModuleRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("ModuleRoot: %v", err)
	}
	root, err := testimages.FindModuleRoot(wd)
	if err != nil {
		t.Fatalf("ModuleRoot: %v", err)
	}
	return root
}

// PushTestImages builds busybox and pause (pause from hack/pause of the
// module root) and pushes them to reg as PREFIX+"busybox:latest" and
// PREFIX+"pause:3.10", with reg's credentials. prefix is a repository path
// prefix such as "library/" (may be empty). It fails the test on error.
func PushTestImages(t testing.TB, reg *Registry, prefix string) TestImages {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pauseBin, err := testimages.BuildPause(ctx, ModuleRoot(t), t.TempDir())
	if err != nil {
		t.Fatalf("PushTestImages: %v", err)
	}
	imgs, err := testimages.All(ctx, pauseBin)
	if err != nil {
		t.Fatalf("PushTestImages: %v", err)
	}
	pushed := map[string]PushedImage{}
	for _, im := range imgs {
		ref := reg.Host() + "/" + prefix + im.Name + ":" + im.Tag
		d, err := testimages.Push(ctx, im.Image, ref, reg.RemoteOptions(ctx)...)
		if err != nil {
			t.Fatalf("PushTestImages: %v", err)
		}
		pushed[im.Name] = PushedImage{Ref: ref, Digest: d}
	}
	return TestImages{Busybox: pushed[testimages.BusyboxName], Pause: pushed[testimages.PauseName]}
}
