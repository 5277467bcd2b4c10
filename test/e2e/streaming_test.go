package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	utilexec "k8s.io/client-go/util/exec"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/accel-cri/accel-cri/sandbox"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// spdyExec is the executor kubelet's proxy and kubectl use towards a CRI
// streaming server.
func spdyExec(t *testing.T, rawURL string) remotecommand.Executor {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	tr, up, err := spdy.RoundTripperFor(&rest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ex, err := remotecommand.NewSPDYExecutorForTransports(tr, up, "POST", u)
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

// wsExec speaks WebSocket with the protocol the CRI streaming library
// serves (v4.channel.k8s.io).
func wsExec(t *testing.T, rawURL string) remotecommand.Executor {
	t.Helper()
	ex, err := remotecommand.NewWebSocketExecutorForProtocols(&rest.Config{}, "GET", rawURL, "v4.channel.k8s.io")
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

// fallbackExec is kubectl's default: WebSocket v5 first, SPDY when the
// upgrade fails.
func fallbackExec(t *testing.T, rawURL string) remotecommand.Executor {
	t.Helper()
	ws, err := remotecommand.NewWebSocketExecutor(&rest.Config{}, "GET", rawURL)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdyExec(t, rawURL), httpstream.IsUpgradeFailure)
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

func streamCtx(t *testing.T, ex remotecommand.Executor, o remotecommand.StreamOptions) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return ex.StreamWithContext(ctx, o)
}

func execExitCode(err error) int {
	var ee utilexec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitStatus()
	}
	return -1
}

// notifyBuffer is a buffer that wakes waiters when it grows.
type notifyBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	ch  chan struct{}
}

func newNotifyBuffer() *notifyBuffer { return &notifyBuffer{ch: make(chan struct{}, 1)} }

func (b *notifyBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	n, _ := b.buf.Write(p)
	b.mu.Unlock()
	select {
	case b.ch <- struct{}{}:
	default:
	}
	return n, nil
}

func (b *notifyBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until the buffer holds s.
func (b *notifyBuffer) waitFor(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for !strings.Contains(b.String(), s) {
		select {
		case <-b.ch:
		case <-deadline:
			t.Fatalf("output lacks %q after %s; it has %q", s, timeout, b.String())
		}
	}
}

type termSizes chan remotecommand.TerminalSize

func (q termSizes) Next() *remotecommand.TerminalSize {
	sz, ok := <-q
	if !ok {
		return nil
	}
	return &sz
}

// forward runs client-go's port forwarder to port in the pod and returns
// the local port; cleanup stops it.
func (e podEnv) forward(t *testing.T, podID string, port int) int {
	t.Helper()
	resp, err := e.Runtime.PortForward(ctxT(t, time.Minute), &runtimeapi.PortForwardRequest{PodSandboxId: podID, Port: []int32{int32(port)}})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(resp.Url)
	if err != nil {
		t.Fatal(err)
	}
	tr, up, err := spdy.RoundTripperFor(&rest.Config{})
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
	t.Cleanup(func() {
		close(stop)
		<-done
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("port-forward: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("port-forward not ready")
	}
	ports, err := pf.GetPorts()
	if err != nil {
		t.Fatal(err)
	}
	return int(ports[0].Local)
}

// getVia GETs / through a forwarded local port. (client-go's forwarder
// gives up the whole connection when one forwarded connection fails, as
// kubectl does: wait for the server with waitListening first.)
func getVia(t *testing.T, local int) string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", local))
	if err != nil {
		t.Fatalf("GET through port-forward: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET through port-forward: %s", resp.Status)
	}
	return string(b)
}

// waitListening waits until an HTTP server answers at addr as seen from
// inside the container.
func (e podEnv) waitListening(t *testing.T, id, addr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, err := e.Runtime.ExecSync(ctxT(t, time.Minute), id, []string{"wget", "-q", "-O", "/dev/null", "http://" + addr + "/"}, 10*time.Second)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing answers at %s in container %s: %v", addr, id[:12], err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// taskPids lists the processes of a container's task, asking containerd
// directly: exec processes still alive would show here.
func containerdTaskPids(t *testing.T, a *framework.AccelCRI, id string) []uint32 {
	t.Helper()
	c, err := containerd.New(filepath.Join(a.State, "containerd", "containerd.sock"), containerd.WithDefaultNamespace("accel-cri"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t, 30*time.Second)
	ctr, err := c.LoadContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	infos, err := task.Pids(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pids []uint32
	for _, p := range infos {
		pids = append(pids, p.Pid)
	}
	return pids
}

func procFDCount(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func procThreadCount(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

func TestStreaming(t *testing.T) {
	e := startPodEnv(t)
	ctx := ctxT(t, 15*time.Minute)
	podID, pod := e.runPod(t, "stream")
	target := e.RunContainer(t, podID, pod, e.busybox("target", "echo ready; exec sleep 3600"))
	framework.WaitLog(t, filepath.Join(pod.LogDirectory, "target.log"), "ready", 30*time.Second)

	t.Run("ExecSync: output, exit code, stderr", func(t *testing.T) {
		out, errOut, err := e.Runtime.ExecSync(ctx, target, []string{"echo", "hello"}, 10*time.Second)
		if err != nil || string(out) != "hello\n" || len(errOut) != 0 {
			t.Fatalf("echo: stdout %q stderr %q err %v", out, errOut, err)
		}
		out, errOut, err = e.Runtime.ExecSync(ctx, target, []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, 10*time.Second)
		if execExitCode(err) != 3 || string(out) != "out\n" || string(errOut) != "err\n" {
			t.Fatalf("exit 3: stdout %q stderr %q err %v", out, errOut, err)
		}
		// The exec runs as the container does: same working dir, env, user.
		out, _, err = e.Runtime.ExecSync(ctx, target, []string{"sh", "-c", "echo $PATH; id -u; pwd"}, 10*time.Second)
		if err != nil || !strings.Contains(string(out), "/bin") || !strings.Contains(string(out), "0\n/\n") {
			t.Errorf("exec environment: %q %v", out, err)
		}
	})

	t.Run("ExecSync: output past the cap is cut", func(t *testing.T) {
		n := sandbox.ExecSyncOutputLimit + 1<<20
		start := time.Now()
		out, errOut, err := e.Runtime.ExecSync(ctx, target, []string{"sh", "-c", fmt.Sprintf("head -c %d /dev/zero; echo small >&2", n)}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != sandbox.ExecSyncOutputLimit || string(errOut) != "small\n" {
			t.Fatalf("stdout %d bytes (want %d), stderr %q", len(out), sandbox.ExecSyncOutputLimit, errOut)
		}
		t.Logf("%d bytes of output, %d kept, in %s", n, len(out), time.Since(start))
		// Both streams at the cap still fit one CRI message (16 MiB).
		out, errOut, err = e.Runtime.ExecSync(ctx, target, []string{"sh", "-c", fmt.Sprintf("head -c %d /dev/zero; head -c %d /dev/zero >&2", n, n)}, time.Minute)
		if err != nil || len(out) != sandbox.ExecSyncOutputLimit || len(errOut) != sandbox.ExecSyncOutputLimit {
			t.Fatalf("both streams past the cap: stdout %d stderr %d bytes, %v", len(out), len(errOut), err)
		}
	})

	t.Run("ExecSync: a background child holding the output does not hold the call", func(t *testing.T) {
		// Its own container: the orphaned child is the container's to reap.
		id := e.RunContainer(t, podID, pod, e.busybox("bg", "exec sleep 3600"))
		start := time.Now()
		out, _, err := e.Runtime.ExecSync(ctx, id, []string{"sh", "-c", "sleep 60 & echo started-bg"}, time.Minute)
		if err != nil || string(out) != "started-bg\n" {
			t.Fatalf("stdout %q, %v", out, err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("ExecSync took %s", took)
		}
	})

	t.Run("ExecSync: timeout kills the command", func(t *testing.T) {
		start := time.Now()
		_, _, err := e.Runtime.ExecSync(ctx, target, []string{"sleep", "300"}, 2*time.Second)
		took := time.Since(start)
		if !errors.Is(err, remote.ErrCommandTimedOut) {
			t.Fatalf("err = %v, want a timeout (DeadlineExceeded)", err)
		}
		if took < 2*time.Second || took > 15*time.Second {
			t.Errorf("timed out after %s, want about 2s", took)
		}
		if pids := containerdTaskPids(t, e.AccelCRI, target); len(pids) != 1 {
			t.Errorf("container has processes %v after the timeout, want only its main process", pids)
		}
	})

	t.Run("Exec over SPDY: stdin, stdout, exit code", func(t *testing.T) {
		resp, err := e.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: target, Cmd: []string{"cat"}, Stdin: true, Stdout: true})
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := streamCtx(t, spdyExec(t, resp.Url), remotecommand.StreamOptions{Stdin: strings.NewReader("round\ntrip\n"), Stdout: &out}); err != nil {
			t.Fatal(err)
		}
		if out.String() != "round\ntrip\n" {
			t.Errorf("cat returned %q", out.String())
		}
		resp, err = e.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: target, Cmd: []string{"sh", "-c", "echo bye; echo oops >&2; exit 7"}, Stdout: true, Stderr: true})
		if err != nil {
			t.Fatal(err)
		}
		var errOut bytes.Buffer
		out.Reset()
		err = streamCtx(t, spdyExec(t, resp.Url), remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
		if execExitCode(err) != 7 || out.String() != "bye\n" || errOut.String() != "oops\n" {
			t.Errorf("exit 7: err %v stdout %q stderr %q", err, out.String(), errOut.String())
		}
	})

	t.Run("Exec over WebSocket and with kubectl's fallback executor", func(t *testing.T) {
		resp, err := e.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: target, Cmd: []string{"sh", "-c", "read l; echo got=$l; exit 5"}, Stdin: true, Stdout: true})
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		err = streamCtx(t, wsExec(t, resp.Url), remotecommand.StreamOptions{Stdin: strings.NewReader("ws-line\n"), Stdout: &out})
		if execExitCode(err) != 5 || out.String() != "got=ws-line\n" {
			t.Errorf("websocket: err %v stdout %q", err, out.String())
		}
		// The v5 WebSocket upgrade is refused without spending the URL's
		// token; the same URL then works over SPDY.
		resp, err = e.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: target, Cmd: []string{"cat"}, Stdin: true, Stdout: true})
		if err != nil {
			t.Fatal(err)
		}
		out.Reset()
		if err := streamCtx(t, fallbackExec(t, resp.Url), remotecommand.StreamOptions{Stdin: strings.NewReader("fallback\n"), Stdout: &out}); err != nil {
			t.Fatal(err)
		}
		if out.String() != "fallback\n" {
			t.Errorf("fallback: stdout %q", out.String())
		}
	})

	t.Run("Exec with a TTY follows resizes", func(t *testing.T) {
		script := `until [ "$(stty size)" = "45 123" ]; do sleep 0.1; done; echo size1=$(stty size)
until [ "$(stty size)" = "24 80" ]; do sleep 0.1; done; echo size2=$(stty size); [ -t 0 ] && echo is-a-tty`
		resp, err := e.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: target, Cmd: []string{"sh", "-c", script}, Stdin: true, Stdout: true, Tty: true})
		if err != nil {
			t.Fatal(err)
		}
		sizes := make(termSizes, 1)
		sizes <- remotecommand.TerminalSize{Width: 123, Height: 45}
		stdinR, stdinW := io.Pipe()
		defer stdinW.Close()
		out := newNotifyBuffer()
		done := make(chan error, 1)
		go func() {
			done <- streamCtx(t, spdyExec(t, resp.Url), remotecommand.StreamOptions{Stdin: stdinR, Stdout: out, Tty: true, TerminalSizeQueue: sizes})
		}()
		out.waitFor(t, "size1=45 123", 30*time.Second)
		sizes <- remotecommand.TerminalSize{Width: 80, Height: 24}
		out.waitFor(t, "is-a-tty", 30*time.Second)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		close(sizes)
		if !strings.Contains(out.String(), "size2=24 80") {
			t.Errorf("output %q", out.String())
		}
	})

	t.Run("Attach: two clients at once share output and stdin", func(t *testing.T) {
		c := e.busybox("echoer", "cat")
		c.Stdin = true
		id := e.RunContainer(t, podID, pod, c)
		attach := func(stdin bool) string {
			resp, err := e.Runtime.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id, Stdin: stdin, Stdout: true, Stderr: true})
			if err != nil {
				t.Fatal(err)
			}
			return resp.Url
		}
		inR, inW := io.Pipe()
		out1, out2 := newNotifyBuffer(), newNotifyBuffer()
		done1, done2 := make(chan error, 1), make(chan error, 1)
		go func() {
			done1 <- streamCtx(t, spdyExec(t, attach(true)), remotecommand.StreamOptions{Stdin: inR, Stdout: out1, Stderr: io.Discard})
		}()
		go func() {
			done2 <- streamCtx(t, spdyExec(t, attach(false)), remotecommand.StreamOptions{Stdout: out2, Stderr: io.Discard})
		}()
		// Both must be attached before the line is written: output from
		// before an attach is in the log only. Repeat until both see it.
		deadline := time.Now().Add(30 * time.Second)
		for i := 0; !strings.Contains(out1.String(), "ping") || !strings.Contains(out2.String(), "ping"); i++ {
			if time.Now().After(deadline) {
				t.Fatalf("attached clients got %q and %q", out1.String(), out2.String())
			}
			fmt.Fprintf(inW, "ping %d\n", i)
			time.Sleep(200 * time.Millisecond)
		}
		// Without stdin_once, closing its stdin detaches the first client;
		// the container keeps running and the second stays attached.
		inW.Close()
		select {
		case err := <-done1:
			if err != nil {
				t.Errorf("first attach: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("first attach did not end when its stdin closed")
		}
		if st := e.WaitContainer(t, id, running, time.Second); st.State != running {
			t.Fatal("container stopped")
		}
		if err := e.Runtime.StopContainer(ctx, id, 0); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done2:
			if err != nil {
				t.Errorf("second attach: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("second attach did not end with the container")
		}
		framework.WaitLog(t, filepath.Join(pod.LogDirectory, "echoer.log"), "ping", 10*time.Second)
	})

	t.Run("Attach: stdin_once closes the container's stdin", func(t *testing.T) {
		c := e.busybox("once", "echo started; cat; echo cat-done")
		c.Stdin, c.StdinOnce = true, true
		id := e.RunContainer(t, podID, pod, c)
		framework.WaitLog(t, filepath.Join(pod.LogDirectory, "once.log"), "started", 30*time.Second)
		resp, err := e.Runtime.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id, Stdin: true, Stdout: true, Stderr: true})
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := streamCtx(t, spdyExec(t, resp.Url), remotecommand.StreamOptions{Stdin: strings.NewReader("data\n"), Stdout: &out, Stderr: io.Discard}); err != nil {
			t.Fatal(err)
		}
		if out.String() != "data\ncat-done\n" {
			t.Errorf("attach output %q", out.String())
		}
		if st := e.WaitContainer(t, id, exited, 30*time.Second); st.ExitCode != 0 {
			t.Errorf("exit code %d", st.ExitCode)
		}
	})

	t.Run("Attach with a TTY", func(t *testing.T) {
		c := e.busybox("tty", `while true; do read l; echo "line=$l size=$(stty size)"; done`)
		c.Stdin, c.Tty = true, true
		id := e.RunContainer(t, podID, pod, c)
		resp, err := e.Runtime.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id, Stdin: true, Stdout: true, Tty: true})
		if err != nil {
			t.Fatal(err)
		}
		sizes := make(termSizes, 1)
		sizes <- remotecommand.TerminalSize{Width: 100, Height: 30}
		inR, inW := io.Pipe()
		out := newNotifyBuffer()
		done := make(chan error, 1)
		go func() {
			done <- streamCtx(t, spdyExec(t, resp.Url), remotecommand.StreamOptions{Stdin: inR, Stdout: out, Tty: true, TerminalSizeQueue: sizes})
		}()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(out.String(), "size=30 100") {
			if time.Now().After(deadline) {
				t.Fatalf("tty attach output %q", out.String())
			}
			io.WriteString(inW, "x\n")
			time.Sleep(200 * time.Millisecond)
		}
		close(sizes)
		inW.Close()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("tty attach did not end")
		}
	})

	t.Run("PortForward to IPv4 and IPv6 loopback servers", func(t *testing.T) {
		c := e.busybox("web", `mkdir -p /tmp/v4 /tmp/v6; echo hello-v4 > /tmp/v4/index.html; echo hello-v6 > /tmp/v6/index.html
httpd -p 8080 -h /tmp/v4; httpd -f -p '[::1]:8081' -h /tmp/v6`)
		id := e.RunContainer(t, podID, pod, c)
		e.waitListening(t, id, "127.0.0.1:8080")
		e.waitListening(t, id, "[::1]:8081")
		if got := getVia(t, e.forward(t, podID, 8080)); got != "hello-v4\n" {
			t.Errorf("port 8080: %q", got)
		}
		// 8081 listens on [::1] only: the 127.0.0.1 dial is refused and
		// the [::1] one used.
		if got := getVia(t, e.forward(t, podID, 8081)); got != "hello-v6\n" {
			t.Errorf("port 8081 ([::1] only): %q", got)
		}
	})

	t.Run("PortForward into a host-network pod", func(t *testing.T) {
		port, err := framework.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		hostPod, hostCfg := e.runPod(t, "hostnet", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
		})
		id := e.RunContainer(t, hostPod, hostCfg, e.busybox("web", fmt.Sprintf(`mkdir -p /tmp/w; echo hello-host > /tmp/w/index.html; exec httpd -f -p 127.0.0.1:%d -h /tmp/w`, port)))
		e.waitListening(t, id, fmt.Sprintf("127.0.0.1:%d", port))
		if got := getVia(t, e.forward(t, hostPod, port)); got != "hello-host\n" {
			t.Errorf("host-network pod: %q", got)
		}
		if err := e.Runtime.StopPodSandbox(ctx, hostPod); err != nil {
			t.Fatal(err)
		}
		if err := e.Runtime.RemovePodSandbox(ctx, hostPod); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("exec into a stopped container is FailedPrecondition", func(t *testing.T) {
		id := e.RunContainer(t, podID, pod, e.busybox("done", "true"))
		e.WaitContainer(t, id, exited, 30*time.Second)
		if _, _, err := e.Runtime.ExecSync(ctx, id, []string{"true"}, 0); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "not running") {
			t.Errorf("ExecSync: %v", err)
		}
		if _, err := e.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"true"}, Stdout: true}); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("Exec: %v", err)
		}
		if _, err := e.Runtime.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id, Stdout: true}); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("Attach: %v", err)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		unknown := strings.Repeat("ab", 32)
		cases := []struct {
			desc string
			call func() error
			code codes.Code
		}{
			{"ExecSync unknown container", func() error { _, _, err := e.Runtime.ExecSync(ctx, unknown, []string{"true"}, 0); return err }, codes.NotFound},
			{"Exec unknown container", func() error {
				_, err := e.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: unknown, Cmd: []string{"true"}, Stdout: true})
				return err
			}, codes.NotFound},
			{"Attach unknown container", func() error {
				_, err := e.Runtime.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: unknown, Stdout: true})
				return err
			}, codes.NotFound},
			{"ExecSync empty command", func() error { _, _, err := e.Runtime.ExecSync(ctx, target, nil, 0); return err }, codes.InvalidArgument},
			{"Exec empty command", func() error {
				_, err := e.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: target, Stdout: true})
				return err
			}, codes.InvalidArgument},
			{"Exec without streams", func() error {
				_, err := e.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: target, Cmd: []string{"true"}})
				return err
			}, codes.InvalidArgument},
			{"Exec tty with stderr", func() error {
				_, err := e.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: target, Cmd: []string{"true"}, Tty: true, Stdout: true, Stderr: true})
				return err
			}, codes.InvalidArgument},
			{"PortForward port 0", func() error {
				_, err := e.Runtime.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: podID, Port: []int32{0}})
				return err
			}, codes.InvalidArgument},
			{"PortForward port 70000", func() error {
				_, err := e.Runtime.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: podID, Port: []int32{70000}})
				return err
			}, codes.InvalidArgument},
			{"PortForward unknown pod", func() error {
				_, err := e.Runtime.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: unknown, Port: []int32{80}})
				return err
			}, codes.NotFound},
		}
		for _, tc := range cases {
			if err := tc.call(); status.Code(err) != tc.code {
				t.Errorf("%s: %v, want %v", tc.desc, err, tc.code)
			}
		}

		// Tokens are single use and unknown ones are refused by the
		// stream server itself.
		resp, err := e.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: target, Cmd: []string{"true"}, Stdout: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := streamCtx(t, spdyExec(t, resp.Url), remotecommand.StreamOptions{Stdout: io.Discard}); err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(resp.Url)
		bogus := *u
		bogus.Path = "/exec/notatokn"
		for name, target := range map[string]string{"used token": resp.Url, "bogus token": bogus.String()} {
			r, err := http.Post(target, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			r.Body.Close()
			if r.StatusCode != http.StatusNotFound {
				t.Errorf("%s: HTTP %d, want 404", name, r.StatusCode)
			}
			if err := streamCtx(t, spdyExec(t, target), remotecommand.StreamOptions{Stdout: io.Discard}); err == nil {
				t.Errorf("%s: stream succeeded", name)
			}
		}

		// Port-forward to a port where nothing listens: the client's
		// connection ends, the session too.
		local := e.forward(t, podID, 9999)
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", local))
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		if n, err := conn.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Errorf("read through a forward to a closed port: %d, %v", n, err)
		}
		conn.Close()
	})

	t.Run("sessions leave no fd, thread or exec process behind", func(t *testing.T) {
		web := e.busybox("leakweb", `mkdir -p /tmp/w; echo leak > /tmp/w/index.html; exec httpd -f -p 8090 -h /tmp/w`)
		webID := e.RunContainer(t, podID, pod, web)
		e.waitListening(t, webID, "127.0.0.1:8090")
		echo := e.busybox("leakcat", "cat")
		echo.Stdin = true
		echoID := e.RunContainer(t, podID, pod, echo)
		session := func(i int) {
			// Each one opens and ends an exec (SPDY and WebSocket), an
			// ExecSync, an attach and a port-forward connection.
			resp, err := e.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: target, Cmd: []string{"cat"}, Stdin: true, Stdout: true})
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := streamCtx(t, spdyExec(t, resp.Url), remotecommand.StreamOptions{Stdin: strings.NewReader("x"), Stdout: &out}); err != nil || out.String() != "x" {
				t.Fatalf("exec %d: %q %v", i, out.String(), err)
			}
			resp, err = e.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: target, Cmd: []string{"true"}, Stdout: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := streamCtx(t, wsExec(t, resp.Url), remotecommand.StreamOptions{Stdout: io.Discard}); err != nil {
				t.Fatalf("websocket exec %d: %v", i, err)
			}
			if _, _, err := e.Runtime.ExecSync(ctx, target, []string{"echo", "y"}, 10*time.Second); err != nil {
				t.Fatalf("ExecSync %d: %v", i, err)
			}
			ar, err := e.Runtime.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: echoID, Stdin: true, Stdout: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := streamCtx(t, spdyExec(t, ar.Url), remotecommand.StreamOptions{Stdin: strings.NewReader("z\n"), Stdout: io.Discard}); err != nil {
				t.Fatalf("attach %d: %v", i, err)
			}
		}
		pfSession := func(local int) {
			if got := getVia(t, local); got != "leak\n" {
				t.Fatalf("port-forward: %q", got)
			}
		}
		pid := e.PID()
		local := e.forward(t, podID, 8090)
		session(0)
		pfSession(local)
		settle := func() (int, int) {
			// Give closed connections a moment to be torn down.
			var fds, threads int
			for i := 0; i < 20; i++ {
				time.Sleep(250 * time.Millisecond)
				fds, threads = procFDCount(t, pid), procThreadCount(t, pid)
			}
			return fds, threads
		}
		fds0, threads0 := settle()
		start := time.Now()
		const n = 20
		for i := 1; i <= n; i++ {
			session(i)
			pfSession(local)
		}
		took := time.Since(start)
		fds1, threads1 := settle()
		t.Logf("accel-cri pid %d: %d sessions (%d exec, %d ExecSync, %d attach, %d port-forward connections) in %s; fds %d -> %d, threads %d -> %d",
			pid, 5*n, 2*n, n, n, n, took, fds0, fds1, threads0, threads1)
		if fds1 > fds0+3 {
			entries, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
			var targets []string
			for _, en := range entries {
				l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, en.Name()))
				targets = append(targets, l)
			}
			t.Errorf("accel-cri has %d fds after %d sessions, %d before: %v", fds1, 5*n, fds0, targets)
		}
		if threads1 > threads0+4 {
			t.Errorf("accel-cri has %d threads after the sessions, %d before", threads1, threads0)
		}
		for _, id := range []string{target, echoID} {
			if pids := containerdTaskPids(t, e.AccelCRI, id); len(pids) != 1 {
				t.Errorf("container %s has processes %v, want only its main process", id[:12], pids)
			}
		}
		if left, _ := os.ReadDir(filepath.Join(e.State, "sandbox", "containers", target, "exec")); len(left) != 0 {
			t.Errorf("exec FIFO directories left: %d", len(left))
		}
	})
}
