package streaming

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	utilexec "k8s.io/client-go/util/exec"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/accel-cri/accel-cri/config"
	"github.com/accel-cri/accel-cri/sandbox"
)

// fakeRuntime runs tiny "commands" in process:
//
//	cat        copies stdin to stdout
//	exit N     writes "bye" to stderr and exits with N
//	size       prints the first terminal size
//	block      waits until the session is cancelled
type fakeRuntime struct {
	mu       sync.Mutex
	attached []string
}

func (f *fakeRuntime) Exec(ctx context.Context, id string, cmd []string, o sandbox.StreamOptions) (int32, error) {
	switch cmd[0] {
	case "cat":
		_, err := io.Copy(o.Stdout, o.Stdin)
		return 0, err
	case "exit":
		n, _ := strconv.Atoi(cmd[1])
		if o.Stderr != nil {
			fmt.Fprint(o.Stderr, "bye")
		}
		return int32(n), nil
	case "size":
		select {
		case sz := <-o.Resize:
			fmt.Fprintf(o.Stdout, "%d %d", sz.Height, sz.Width)
		case <-ctx.Done():
		}
		return 0, nil
	case "block":
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return 127, nil
}

func (f *fakeRuntime) Attach(ctx context.Context, id string, o sandbox.StreamOptions) error {
	f.mu.Lock()
	f.attached = append(f.attached, fmt.Sprintf("stdin=%v stdout=%v stderr=%v", o.Stdin != nil, o.Stdout != nil, o.Stderr != nil))
	f.mu.Unlock()
	if o.Stdin == nil {
		fmt.Fprint(o.Stdout, "no stdin")
		return nil
	}
	_, err := io.Copy(o.Stdout, o.Stdin)
	return err
}

func (f *fakeRuntime) PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error {
	if port != 8080 {
		return fmt.Errorf("nothing listens on %d", port)
	}
	b, err := io.ReadAll(stream)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stream, "pod %s got %q", podID, b)
	return err
}

func startServer(t *testing.T, cfg Config) (*Server, *fakeRuntime) {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	rt := &fakeRuntime{}
	s, err := New(cfg, rt)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, rt
}

func execURL(t *testing.T, s *Server, req *runtimeapi.ExecRequest) *url.URL {
	t.Helper()
	if req.ContainerId == "" {
		req.ContainerId = "c1"
	}
	resp, err := s.GetExec(req)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(resp.Url)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func spdyExecutor(t *testing.T, cfg *rest.Config, u *url.URL) remotecommand.Executor {
	t.Helper()
	tr, up, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := remotecommand.NewSPDYExecutorForTransports(tr, up, "POST", u)
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

// wsExecutor speaks the WebSocket protocol the CRI streaming library
// serves (v4.channel.k8s.io; v5 is the API server's).
func wsExecutor(t *testing.T, cfg *rest.Config, u *url.URL) remotecommand.Executor {
	t.Helper()
	ex, err := remotecommand.NewWebSocketExecutorForProtocols(cfg, "GET", u.String(), "v4.channel.k8s.io")
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

func stream(t *testing.T, ex remotecommand.Executor, o remotecommand.StreamOptions) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return ex.StreamWithContext(ctx, o)
}

func TestExecSPDYAndWebSocket(t *testing.T) {
	s, _ := startServer(t, Config{})
	clients := map[string]func(*testing.T, *rest.Config, *url.URL) remotecommand.Executor{
		"spdy": spdyExecutor, "websocket": wsExecutor,
		"fallback from websocket v5 to spdy": func(t *testing.T, cfg *rest.Config, u *url.URL) remotecommand.Executor {
			ws, err := remotecommand.NewWebSocketExecutor(cfg, "GET", u.String())
			if err != nil {
				t.Fatal(err)
			}
			// kubectl's rule: fall back when the WebSocket upgrade failed.
			ex, err := remotecommand.NewFallbackExecutor(ws, spdyExecutor(t, cfg, u), httpstream.IsUpgradeFailure)
			if err != nil {
				t.Fatal(err)
			}
			return ex
		},
	}
	for name, newExec := range clients {
		t.Run(name, func(t *testing.T) {
			t.Run("exit code and stderr", func(t *testing.T) {
				u := execURL(t, s, &runtimeapi.ExecRequest{Cmd: []string{"exit", "3"}, Stdout: true, Stderr: true})
				var out, errOut bytes.Buffer
				err := stream(t, newExec(t, &rest.Config{}, u), remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
				var exitErr utilexec.ExitError
				if !errors.As(err, &exitErr) || exitErr.ExitStatus() != 3 {
					t.Fatalf("err = %v, want exit code 3", err)
				}
				if errOut.String() != "bye" {
					t.Errorf("stderr = %q", errOut.String())
				}
			})
			t.Run("exit 0", func(t *testing.T) {
				u := execURL(t, s, &runtimeapi.ExecRequest{Cmd: []string{"exit", "0"}, Stdout: true})
				if err := stream(t, newExec(t, &rest.Config{}, u), remotecommand.StreamOptions{Stdout: io.Discard}); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
	t.Run("stdin round trip over spdy", func(t *testing.T) {
		u := execURL(t, s, &runtimeapi.ExecRequest{Cmd: []string{"cat"}, Stdin: true, Stdout: true})
		var out bytes.Buffer
		if err := stream(t, spdyExecutor(t, &rest.Config{}, u), remotecommand.StreamOptions{Stdin: strings.NewReader("hello\n"), Stdout: &out}); err != nil {
			t.Fatal(err)
		}
		if out.String() != "hello\n" {
			t.Errorf("stdout = %q", out.String())
		}
	})
	t.Run("terminal size", func(t *testing.T) {
		u := execURL(t, s, &runtimeapi.ExecRequest{Cmd: []string{"size"}, Stdout: true, Tty: true})
		var out bytes.Buffer
		q := &sizeQueue{sizes: make(chan remotecommand.TerminalSize, 1)}
		q.sizes <- remotecommand.TerminalSize{Width: 123, Height: 45}
		if err := stream(t, spdyExecutor(t, &rest.Config{}, u), remotecommand.StreamOptions{Stdout: &out, Tty: true, TerminalSizeQueue: q}); err != nil {
			t.Fatal(err)
		}
		if out.String() != "45 123" {
			t.Errorf("stdout = %q, want %q", out.String(), "45 123")
		}
	})
}

type sizeQueue struct {
	sizes chan remotecommand.TerminalSize
}

func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	sz, ok := <-q.sizes
	if !ok {
		return nil
	}
	return &sz
}

func TestAttachStreamsAsRequested(t *testing.T) {
	s, rt := startServer(t, Config{})
	for _, tc := range []struct {
		desc string
		ws   bool
	}{{"spdy", false}, {"websocket", true}} {
		t.Run(tc.desc, func(t *testing.T) {
			resp, err := s.GetAttach(&runtimeapi.AttachRequest{ContainerId: "c1", Stdout: true})
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(resp.Url)
			ex := spdyExecutor(t, &rest.Config{}, u)
			if tc.ws {
				ex = wsExecutor(t, &rest.Config{}, u)
			}
			var out bytes.Buffer
			if err := stream(t, ex, remotecommand.StreamOptions{Stdout: &out}); err != nil {
				t.Fatal(err)
			}
			// Over WebSocket the library hands an EOF-only stdin for a
			// stream not requested; the runtime must see none.
			if out.String() != "no stdin" {
				t.Errorf("stdout = %q", out.String())
			}
		})
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, a := range rt.attached {
		if a != "stdin=false stdout=true stderr=false" {
			t.Errorf("runtime got %s", a)
		}
	}
}

func portForward(t *testing.T, cfg *rest.Config, u *url.URL, port int, send string) (string, error) {
	t.Helper()
	tr, up, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dialer := spdy.NewDialer(up, &http.Client{Transport: tr}, "POST", u)
	stop, ready := make(chan struct{}), make(chan struct{})
	pf, err := portforward.New(dialer, []string{"0:" + strconv.Itoa(port)}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	defer func() {
		close(stop)
		<-done
	}()
	select {
	case <-ready:
	case err := <-done:
		return "", err
	case <-time.After(30 * time.Second):
		t.Fatal("port-forward not ready")
	}
	ports, err := pf.GetPorts()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, send); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(conn)
	return string(b), err
}

func TestPortForward(t *testing.T) {
	s, _ := startServer(t, Config{})
	resp, err := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(resp.Url)
	got, err := portForward(t, &rest.Config{}, u, 8080, "ping")
	if err != nil {
		t.Fatal(err)
	}
	if got != `pod p1 got "ping"` {
		t.Errorf("got %q", got)
	}
}

func TestBadTokens(t *testing.T) {
	s, _ := startServer(t, Config{})
	u := execURL(t, s, &runtimeapi.ExecRequest{Cmd: []string{"exit", "0"}, Stdout: true})
	if err := stream(t, spdyExecutor(t, &rest.Config{}, u), remotecommand.StreamOptions{Stdout: io.Discard}); err != nil {
		t.Fatal(err)
	}
	bogus := *u
	bogus.Path = "/exec/AAAAAAAA"
	for name, target := range map[string]*url.URL{"reused": u, "bogus": &bogus} {
		t.Run(name, func(t *testing.T) {
			resp, err := http.Post(target.String(), "", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("status %d, want 404", resp.StatusCode)
			}
			err = stream(t, spdyExecutor(t, &rest.Config{}, target), remotecommand.StreamOptions{Stdout: io.Discard})
			if err == nil {
				t.Error("stream with a used token succeeded")
			}
		})
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certPEM := writeSelfSigned(t, dir)
	s, _ := startServer(t, Config{TLSCertFile: filepath.Join(dir, "tls.crt"), TLSKeyFile: filepath.Join(dir, "tls.key")})
	if !strings.HasPrefix(s.URL(), "https://") {
		t.Fatalf("URL %s is not https", s.URL())
	}
	u := execURL(t, s, &runtimeapi.ExecRequest{Cmd: []string{"exit", "0"}, Stdout: true})
	cfg := &rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: certPEM}}
	if err := stream(t, spdyExecutor(t, cfg, u), remotecommand.StreamOptions{Stdout: io.Discard}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Addr: "127.0.0.1:0", TLSCertFile: filepath.Join(dir, "tls.crt")}, &fakeRuntime{}); err == nil {
		t.Error("a certificate without a key was accepted")
	}
	if _, err := New(Config{Addr: "127.0.0.1:0", TLSCertFile: filepath.Join(dir, "nope"), TLSKeyFile: filepath.Join(dir, "tls.key")}, &fakeRuntime{}); err == nil {
		t.Error("a missing certificate was accepted")
	}
}

func writeSelfSigned(t *testing.T, dir string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "accel-cri streaming"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	os.WriteFile(filepath.Join(dir, "tls.crt"), certPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certPEM
}

func TestCloseEndsSessions(t *testing.T) {
	rt := &fakeRuntime{}
	s, err := New(Config{Addr: "127.0.0.1:0"}, rt)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	u := execURL(t, s, &runtimeapi.ExecRequest{Cmd: []string{"block"}, Stdout: true})
	done := make(chan error, 1)
	go func() {
		done <- stream(t, spdyExecutor(t, &rest.Config{}, u), remotecommand.StreamOptions{Stdout: io.Discard})
	}()
	time.Sleep(200 * time.Millisecond) // let the session start
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > closeGrace {
		t.Errorf("Close took %s", d)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the session outlived Close")
	}
}

// TestNoGoroutineLeft runs sessions of every kind and checks that the
// server's goroutines come back to where they were.
func TestNoGoroutineLeft(t *testing.T) {
	s, _ := startServer(t, Config{})
	session := func() {
		u := execURL(t, s, &runtimeapi.ExecRequest{Cmd: []string{"cat"}, Stdin: true, Stdout: true})
		if err := stream(t, spdyExecutor(t, &rest.Config{}, u), remotecommand.StreamOptions{Stdin: strings.NewReader("x"), Stdout: io.Discard}); err != nil {
			t.Fatal(err)
		}
		u = execURL(t, s, &runtimeapi.ExecRequest{Cmd: []string{"exit", "2"}, Stdout: true})
		_ = stream(t, wsExecutor(t, &rest.Config{}, u), remotecommand.StreamOptions{Stdout: io.Discard})
		resp, _ := s.GetAttach(&runtimeapi.AttachRequest{ContainerId: "c1", Stdin: true, Stdout: true})
		au, _ := url.Parse(resp.Url)
		if err := stream(t, spdyExecutor(t, &rest.Config{}, au), remotecommand.StreamOptions{Stdin: strings.NewReader("y"), Stdout: io.Discard}); err != nil {
			t.Fatal(err)
		}
		pr, _ := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "p1"})
		pu, _ := url.Parse(pr.Url)
		if _, err := portForward(t, &rest.Config{}, pu, 8080, "z"); err != nil {
			t.Fatal(err)
		}
	}
	session() // warm up: HTTP keep-alive pools, lazily started goroutines
	http.DefaultClient.CloseIdleConnections()
	base := settledGoroutines(0)
	for i := 0; i < 10; i++ {
		session()
	}
	n := settledGoroutines(base)
	t.Logf("goroutines: %d before, %d after 40 sessions", base, n)
	if n > base+2 {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("%d goroutines after 40 sessions, %d before:\n%s", n, base, buf)
	}
}

// settledGoroutines waits (up to 10s) for the goroutine count to reach
// want or stop changing, and returns it.
func settledGoroutines(want int) int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		m := runtime.NumGoroutine()
		if (want > 0 && m <= want) || (want == 0 && m == n) {
			return m
		}
		n = m
	}
	return n
}

// TestDefaultAddrIsLoopback: without an address the server listens on
// loopback only, and so does accel-cri's default configuration.
func TestDefaultAddrIsLoopback(t *testing.T) {
	for _, addr := range []string{"", config.Default().StreamingAddr} {
		s, err := New(Config{Addr: addr}, &fakeRuntime{})
		if err != nil {
			t.Fatal(err)
		}
		host, _, err := net.SplitHostPort(s.lis.Addr().String())
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			t.Errorf("address %q: listening on %s, want loopback", addr, host)
		}
		if strings.HasPrefix(s.URL(), "https://") {
			t.Errorf("address %q: TLS without a certificate", addr)
		}
	}
}
