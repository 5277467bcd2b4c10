package sandbox

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/accel-cri/accel-cri/sandbox/crilog"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// blockingWriter never returns from Write until released.
type blockingWriter struct{ release chan struct{} }

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	return 0, errors.New("released")
}

type failingWriter struct{}

func (failingWriter) Write(p []byte) (int, error) { return 0, errors.New("client gone") }

func newTestIO(t *testing.T, tty, stdin, stdinOnce bool) (*containerIO, string) {
	t.Helper()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "c.log")
	c, err := newContainerIO(filepath.Join(dir, "fifos"), logPath, tty, stdin, stdinOnce)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.close()
		c.wait(5 * time.Second)
	})
	return c, logPath
}

// attachAsync runs attach in a goroutine; the channel closes when it returns.
func attachAsync(c *containerIO, ctx context.Context, a attachment) chan struct{} {
	done := make(chan struct{})
	go func() {
		c.attach(ctx, a)
		close(done)
	}()
	return done
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still running", what)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func subscribers(f *fanout) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

func TestAttachFanOut(t *testing.T) {
	c, logPath := newTestIO(t, false, false, false)
	var out1, out2, err1 syncBuffer
	ctx := context.Background()
	a1 := attachAsync(c, ctx, attachment{Stdout: &out1, Stderr: &err1})
	a2 := attachAsync(c, ctx, attachment{Stdout: &out2})
	waitFor(t, "two stdout subscribers", func() bool { return subscribers(c.stdoutFan) == 2 })

	io.WriteString(c.stdoutW, "hello\n")
	io.WriteString(c.stderrW, "oops\n")
	io.WriteString(c.stdoutW, "world\n")
	c.closeOutput() // the container exited
	waitClosed(t, a1, "attach 1")
	waitClosed(t, a2, "attach 2")
	if out1.String() != "hello\nworld\n" || out2.String() != "hello\nworld\n" || err1.String() != "oops\n" {
		t.Errorf("attacher output: %q %q stderr %q", out1.String(), out2.String(), err1.String())
	}
	waitClosed(t, c.done, "log copy")
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	crilog.Parse(f, func(e crilog.Entry) error {
		lines = append(lines, e.Stream+":"+string(e.Content))
		return nil
	})
	if got := strings.Join(lines, ","); !strings.Contains(got, "stdout:hello") || !strings.Contains(got, "stdout:world") || !strings.Contains(got, "stderr:oops") {
		t.Errorf("log has %s", got)
	}
	// Attaching after the output ended returns at once.
	waitClosed(t, attachAsync(c, ctx, attachment{Stdout: &out1}), "attach after exit")
}

func TestAttachSlowOrGoneClientIsDropped(t *testing.T) {
	c, _ := newTestIO(t, false, false, false)
	slow := &blockingWriter{release: make(chan struct{})}
	defer close(slow.release)
	var fast syncBuffer
	ctx := context.Background()
	aSlow := attachAsync(c, ctx, attachment{Stdout: slow})
	aGone := attachAsync(c, ctx, attachment{Stdout: failingWriter{}})
	aFast := attachAsync(c, ctx, attachment{Stdout: &fast})
	waitFor(t, "three subscribers", func() bool { return subscribers(c.stdoutFan) == 3 })

	// Far more chunks than a client may lag behind: the container must
	// never wait for the slow client.
	chunk := strings.Repeat("x", 32<<10-1) + "\n"
	chunks := 2 * fanoutMaxLag / len(chunk)
	for i := 0; i < chunks; i++ {
		// Never blocks: the copier hands chunks on without waiting.
		io.WriteString(c.stdoutW, chunk)
		waitFor(t, "the fast client", func() bool { return len(fast.String()) == (i+1)*len(chunk) })
	}
	waitClosed(t, aSlow, "slow attach (dropped)")
	waitClosed(t, aGone, "attach whose client is gone")
	c.closeOutput()
	waitClosed(t, aFast, "fast attach")
	if n := len(fast.String()); n != chunks*len(chunk) {
		t.Errorf("fast client got %d bytes, want %d", n, chunks*len(chunk))
	}
}

func TestAttachStdin(t *testing.T) {
	c, _ := newTestIO(t, false, true, false)
	ctx := context.Background()
	in1R, in1W := io.Pipe()
	in2R, in2W := io.Pipe()
	var out syncBuffer
	a1 := attachAsync(c, ctx, attachment{Stdin: in1R, Stdout: &out})
	a2 := attachAsync(c, ctx, attachment{Stdin: in2R})

	got := make(chan string, 2)
	go func() {
		buf := make([]byte, 64)
		for i := 0; i < 2; i++ {
			n, _ := c.stdinR.Read(buf)
			got <- string(buf[:n])
		}
	}()
	io.WriteString(in1W, "from-1")
	io.WriteString(in2W, "from-2")
	seen := map[string]bool{<-got: true, <-got: true}
	if !seen["from-1"] || !seen["from-2"] {
		t.Errorf("container stdin got %v", seen)
	}
	// Without stdin_once, closing the client's stdin detaches it; the
	// container's stdin stays open for others.
	in1W.Close()
	waitClosed(t, a1, "attach whose stdin closed")
	if c.claimStdin() == nil {
		t.Fatal("container stdin closed by a client without stdin_once")
	}
	in2W.Close()
	waitClosed(t, a2, "second attach")
}

func TestAttachStdinOnce(t *testing.T) {
	c, _ := newTestIO(t, false, true, true)
	var closed atomic.Int32
	c.setStdinCloser(func() error { closed.Add(1); return nil })
	ctx := context.Background()
	inR, inW := io.Pipe()
	var out syncBuffer
	a1 := attachAsync(c, ctx, attachment{Stdin: inR, Stdout: &out})

	read := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(c.stdinR) // ends with EOF once stdin is closed
		read <- string(b)
	}()
	io.WriteString(inW, "only once")
	inW.Close()
	if got := <-read; got != "only once" {
		t.Errorf("container stdin got %q", got)
	}
	waitFor(t, "the shim told to close stdin", func() bool { return closed.Load() == 1 })
	if c.claimStdin() != nil {
		t.Fatal("stdin still offered after stdin_once closed it")
	}
	// The session lasts until the output ends, not until stdin closed.
	select {
	case <-a1:
		t.Fatal("stdin_once attach ended with its stdin")
	case <-time.After(100 * time.Millisecond):
	}
	// A later client's stdin goes nowhere (and is drained).
	a2 := attachAsync(c, ctx, attachment{Stdin: strings.NewReader("ignored"), Stdout: io.Discard})
	io.WriteString(c.stdoutW, "bye\n")
	c.closeOutput()
	waitClosed(t, a1, "attach 1")
	waitClosed(t, a2, "attach 2")
	if out.String() != "bye\n" {
		t.Errorf("stdout %q", out.String())
	}
	if closed.Load() != 1 {
		t.Errorf("stdin closed %d times", closed.Load())
	}
}

func TestAttachTTYHasNoStderr(t *testing.T) {
	c, _ := newTestIO(t, true, false, false)
	var out, errOut syncBuffer
	a := attachAsync(c, context.Background(), attachment{Stdout: &out, Stderr: &errOut})
	waitFor(t, "a subscriber", func() bool { return subscribers(c.stdoutFan) == 1 })
	io.WriteString(c.stdoutW, "tty output")
	c.closeOutput()
	waitClosed(t, a, "attach")
	if out.String() != "tty output" || errOut.String() != "" {
		t.Errorf("stdout %q stderr %q", out.String(), errOut.String())
	}
}

func TestAttachEndsWithContext(t *testing.T) {
	c, _ := newTestIO(t, false, false, false)
	ctx, cancel := context.WithCancel(context.Background())
	a := attachAsync(c, ctx, attachment{Stdout: io.Discard})
	waitFor(t, "a subscriber", func() bool { return subscribers(c.stdoutFan) == 1 })
	cancel()
	waitClosed(t, a, "attach after cancel")
	waitFor(t, "the subscriber removed", func() bool { return subscribers(c.stdoutFan) == 0 })
}

func TestAttachLeavesNoGoroutine(t *testing.T) {
	c, _ := newTestIO(t, false, true, false)
	go io.Copy(io.Discard, c.stdinR)
	base := runtime.NumGoroutine()
	for i := 0; i < 20; i++ {
		inR, inW := io.Pipe()
		a := attachAsync(c, context.Background(), attachment{Stdin: inR, Stdout: io.Discard, Stderr: io.Discard})
		io.WriteString(c.stdoutW, "x\n")
		io.WriteString(inW, "y")
		inW.Close()
		waitClosed(t, a, "attach")
	}
	waitFor(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= base })
	t.Logf("goroutines: %d before, %d after 20 attach sessions", base, runtime.NumGoroutine())
}

func TestCappedBuffer(t *testing.T) {
	b := newCappedBuffer(10)
	for _, s := range []string{"0123", "4567", "89ab", "cdef"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v: the writer must never see a short write", s, n, err)
		}
	}
	if got := string(b.Bytes()); got != "0123456789" || !b.Truncated() {
		t.Errorf("kept %q truncated %v", got, b.Truncated())
	}
	empty := newCappedBuffer(10)
	if empty.Bytes() != nil || empty.Truncated() {
		t.Error("empty buffer")
	}
}
