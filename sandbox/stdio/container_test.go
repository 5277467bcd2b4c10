package stdio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"
	"golang.org/x/sys/unix"

	"github.com/accel-cri/accel-cri/sandbox/stdio/crilog"
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

// testShim holds the other ends of a ContainerIO's FIFOs, as a shim does.
type testShim struct {
	stdout, stderr *os.File // write ends
	stdin          *os.File // read end
	all            []*os.File
}

// closeOutput closes the shim's write ends: the process exited.
func (s *testShim) closeOutput() {
	s.stdout.Close()
	if s.stderr != nil {
		s.stderr.Close()
	}
}

// openShim opens what a shim opens of the FIFOs in cfg.
func openShim(t *testing.T, cfg cio.Config) *testShim {
	t.Helper()
	var all []*os.File
	open := func(path string, flag int) *os.File {
		if path == "" {
			return nil
		}
		f, err := os.OpenFile(path, flag, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		all = append(all, f)
		return f
	}
	s := &testShim{stdout: open(cfg.Stdout, os.O_WRONLY), stdin: open(cfg.Stdin, os.O_RDONLY|unix.O_NONBLOCK)}
	// Like runc's shim, it also holds a read end of its output FIFOs that it
	// never reads, so its writes do not fail while accel-cri is away.
	open(cfg.Stdout, os.O_RDONLY|unix.O_NONBLOCK)
	if !cfg.Terminal {
		s.stderr = open(cfg.Stderr, os.O_WRONLY)
		open(cfg.Stderr, os.O_RDONLY|unix.O_NONBLOCK)
	}
	s.all = all
	return s
}

// newTestIO makes a started container's IO: FIFOs made by the Creator and
// opened by a test shim.
func newTestIO(t *testing.T, tty, stdin, stdinOnce bool) (*ContainerIO, *testShim, string) {
	t.Helper()
	dir := t.TempDir()
	logPath := filepath.Join(dir, "c.log")
	c, err := New(filepath.Join(dir, "fifos"), logPath, Options{TTY: tty, Stdin: stdin, StdinOnce: stdinOnce})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		c.Wait(5 * time.Second)
	})
	tio, err := c.Creator()("id")
	if err != nil {
		t.Fatal(err)
	}
	shim := openShim(t, tio.Config())
	c.ReleaseHolds()
	return c, shim, logPath
}

// logLines reads a CRI log back as "stream tag content" lines.
func logLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	err = crilog.Parse(f, func(e crilog.Entry) error {
		tag := crilog.TagFull
		if e.Partial {
			tag = crilog.TagPartial
		}
		lines = append(lines, e.Stream+" "+tag+" "+string(e.Content))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

// attachAsync runs attach in a goroutine; the channel closes when it
// returns, and an unexpected error fails the test.
func attachAsync(c *ContainerIO, ctx context.Context, a Attachment) chan struct{} {
	done, _ := attachAsyncErr(c, ctx, a)
	return done
}

// attachAsyncErr is attachAsync that gives Attach's error (read it after done).
func attachAsyncErr(c *ContainerIO, ctx context.Context, a Attachment) (chan struct{}, *error) {
	done := make(chan struct{})
	var err error
	go func() {
		err = c.Attach(ctx, a)
		close(done)
	}()
	return done, &err
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
	c, shim, logPath := newTestIO(t, false, false, false)
	var out1, out2, err1 syncBuffer
	ctx := context.Background()
	a1 := attachAsync(c, ctx, Attachment{Stdout: &out1, Stderr: &err1})
	a2 := attachAsync(c, ctx, Attachment{Stdout: &out2})
	waitFor(t, "two stdout subscribers", func() bool { return subscribers(c.stdoutFan) == 2 })

	io.WriteString(shim.stdout, "hello\n")
	io.WriteString(shim.stderr, "oops\n")
	io.WriteString(shim.stdout, "world\n")
	shim.closeOutput() // the container exited
	waitClosed(t, a1, "attach 1")
	waitClosed(t, a2, "attach 2")
	if out1.String() != "hello\nworld\n" || out2.String() != "hello\nworld\n" || err1.String() != "oops\n" {
		t.Errorf("Attacher output: %q %q stderr %q", out1.String(), out2.String(), err1.String())
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
	waitClosed(t, attachAsync(c, ctx, Attachment{Stdout: &out1}), "attach after exit")
}

func TestAttachSlowOrGoneClientIsDropped(t *testing.T) {
	c, shim, _ := newTestIO(t, false, false, false)
	slow := &blockingWriter{release: make(chan struct{})}
	defer close(slow.release)
	var fast syncBuffer
	ctx := context.Background()
	aSlow, slowErr := attachAsyncErr(c, ctx, Attachment{Stdout: slow})
	aGone, goneErr := attachAsyncErr(c, ctx, Attachment{Stdout: failingWriter{}})
	aFast, fastErr := attachAsyncErr(c, ctx, Attachment{Stdout: &fast})
	waitFor(t, "three subscribers", func() bool { return subscribers(c.stdoutFan) == 3 })

	// Far more chunks than a client may lag behind: the container must
	// never wait for the slow client.
	chunk := strings.Repeat("x", 32<<10-1) + "\n"
	chunks := 2 * fanoutMaxLag / len(chunk)
	for i := 0; i < chunks; i++ {
		// Never blocks: the copier hands chunks on without waiting.
		io.WriteString(shim.stdout, chunk)
		waitFor(t, "the fast client", func() bool { return len(fast.String()) == (i+1)*len(chunk) })
	}
	waitClosed(t, aSlow, "slow attach (dropped)")
	waitClosed(t, aGone, "attach whose client is gone")
	shim.closeOutput()
	waitClosed(t, aFast, "fast attach")
	if n := len(fast.String()); n != chunks*len(chunk) {
		t.Errorf("fast client got %d bytes, want %d", n, chunks*len(chunk))
	}
	// The dropped clients are told; the one that kept up is not.
	if !errors.Is(*slowErr, ErrDropped) || !errors.Is(*goneErr, ErrDropped) || *fastErr != nil {
		t.Errorf("Attach returned %v for the slow client, %v for the gone one, %v for the fast one; want ErrDropped, ErrDropped, nil", *slowErr, *goneErr, *fastErr)
	}
}

func TestAttachStdin(t *testing.T) {
	c, shim, _ := newTestIO(t, false, true, false)
	ctx := context.Background()
	in1R, in1W := io.Pipe()
	in2R, in2W := io.Pipe()
	var out syncBuffer
	a1 := attachAsync(c, ctx, Attachment{Stdin: in1R, Stdout: &out})
	a2 := attachAsync(c, ctx, Attachment{Stdin: in2R})

	got := make(chan string, 1)
	go func() {
		buf := make([]byte, len("from-1from-2"))
		n, _ := io.ReadFull(shim.stdin, buf) // the FIFO may join the two writes
		got <- string(buf[:n])
	}()
	io.WriteString(in1W, "from-1")
	io.WriteString(in2W, "from-2")
	if s := <-got; !strings.Contains(s, "from-1") || !strings.Contains(s, "from-2") {
		t.Errorf("container stdin got %q", s)
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
	c, shim, _ := newTestIO(t, false, true, true)
	var closed atomic.Int32
	c.SetStdinCloser(func() error { closed.Add(1); return nil })
	ctx := context.Background()
	inR, inW := io.Pipe()
	var out syncBuffer
	a1 := attachAsync(c, ctx, Attachment{Stdin: inR, Stdout: &out})

	read := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(shim.stdin) // ends with EOF once stdin is closed
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
	a2 := attachAsync(c, ctx, Attachment{Stdin: strings.NewReader("ignored"), Stdout: io.Discard})
	io.WriteString(shim.stdout, "bye\n")
	shim.closeOutput()
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
	c, shim, _ := newTestIO(t, true, false, false)
	var out, errOut syncBuffer
	a := attachAsync(c, context.Background(), Attachment{Stdout: &out, Stderr: &errOut})
	waitFor(t, "a subscriber", func() bool { return subscribers(c.stdoutFan) == 1 })
	io.WriteString(shim.stdout, "tty output")
	shim.closeOutput()
	waitClosed(t, a, "attach")
	if out.String() != "tty output" || errOut.String() != "" {
		t.Errorf("stdout %q stderr %q", out.String(), errOut.String())
	}
}

func TestAttachEndsWithContext(t *testing.T) {
	c, _, _ := newTestIO(t, false, false, false)
	ctx, cancel := context.WithCancel(context.Background())
	a := attachAsync(c, ctx, Attachment{Stdout: io.Discard})
	waitFor(t, "a subscriber", func() bool { return subscribers(c.stdoutFan) == 1 })
	cancel()
	waitClosed(t, a, "attach after cancel")
	waitFor(t, "the subscriber removed", func() bool { return subscribers(c.stdoutFan) == 0 })
}

func TestAttachLeavesNoGoroutine(t *testing.T) {
	c, shim, _ := newTestIO(t, false, true, false)
	go io.Copy(io.Discard, shim.stdin)
	base := runtime.NumGoroutine()
	for i := 0; i < 20; i++ {
		inR, inW := io.Pipe()
		a := attachAsync(c, context.Background(), Attachment{Stdin: inR, Stdout: io.Discard, Stderr: io.Discard})
		io.WriteString(shim.stdout, "x\n")
		io.WriteString(inW, "y")
		inW.Close()
		waitClosed(t, a, "attach")
	}
	waitFor(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= base })
	t.Logf("goroutines: %d before, %d after 20 attach sessions", base, runtime.NumGoroutine())
}

// The output goes from the FIFOs into the log, in the CRI format, and the
// drain ends (done) only once the shim closed its ends and everything it
// wrote is in the log.
func TestOutputToLog(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tty   bool
		write func(s *testShim)
		want  []string
	}{
		{
			name: "stdout and stderr",
			write: func(s *testShim) {
				io.WriteString(s.stdout, "hello\nwor")
				io.WriteString(s.stderr, "oops\r\n")
				io.WriteString(s.stdout, "ld\n\nno newline")
			},
			want: []string{"stdout F hello", "stderr F oops", "stdout F world", "stdout F ", "stdout P no newline"},
		},
		{
			name:  "tty",
			tty:   true,
			write: func(s *testShim) { io.WriteString(s.stdout, "line\r\n") },
			want:  []string{"stdout F line"},
		},
		{
			name: "long line split at the maximum",
			write: func(s *testShim) {
				io.WriteString(s.stdout, strings.Repeat("x", crilog.DefaultMaxLineSize+1)+"\n")
			},
			want: []string{"stdout P " + strings.Repeat("x", crilog.DefaultMaxLineSize), "stdout F x"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, shim, logPath := newTestIO(t, tc.tty, false, false)
			if tc.tty && shim.stderr != nil {
				t.Fatal("a tty container has a stderr FIFO")
			}
			tc.write(shim)
			select {
			case <-c.done:
				t.Fatal("output drained while the shim holds the FIFOs")
			case <-time.After(50 * time.Millisecond):
			}
			shim.closeOutput()
			waitClosed(t, c.done, "output drain")
			got := logLines(t, logPath)
			// The two streams interleave in any order; each keeps its own.
			for _, stream := range []string{"stdout", "stderr"} {
				var g, w []string
				for _, l := range got {
					if strings.HasPrefix(l, stream) {
						g = append(g, l)
					}
				}
				for _, l := range tc.want {
					if strings.HasPrefix(l, stream) {
						w = append(w, l)
					}
				}
				if !slices.Equal(g, w) {
					t.Errorf("%s entries %q, want %q", stream, g, w)
				}
			}
		})
	}
}

// A lot of output written right before the exit is all in the log when the
// drain ends.
func TestDrainIsCompleteAtExit(t *testing.T) {
	c, shim, logPath := newTestIO(t, false, false, false)
	const lines = 20000
	go func() {
		for i := range lines {
			fmt.Fprintf(shim.stdout, "line %d\n", i)
		}
		shim.closeOutput()
	}()
	waitClosed(t, c.done, "output drain")
	got := logLines(t, logPath)
	if len(got) != lines || got[lines-1] != fmt.Sprintf("stdout F line %d", lines-1) {
		t.Fatalf("%d entries, last %q", len(got), got[len(got)-1])
	}
}

// Until ReleaseHolds, the output does not end when nothing writes the
// FIFOs: the shim of a new task may open them after the Creator did.
func TestHoldsKeepNewOutputOpen(t *testing.T) {
	dir := t.TempDir()
	c, err := New(dir, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Creator()("id"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.done:
		t.Fatal("output ended before the shim opened the FIFOs")
	case <-time.After(50 * time.Millisecond):
	}
	c.ReleaseHolds()
	waitClosed(t, c.done, "output end without writers after the holds are gone")
}

// After a restart the same FIFOs are opened again: output the shim wrote
// while nobody read is in the new log, and the exit ends it.
func TestReattach(t *testing.T) {
	dir := t.TempDir()
	c1, shim, _ := newTestIO(t, false, true, false)
	cfg := taskIO{c1}.Config()
	c1.Close() // accel-cri went away; the shim keeps its ends
	waitClosed(t, c1.done, "first IO")
	io.WriteString(shim.stdout, "while down\n")

	logPath := filepath.Join(dir, "new.log")
	c2, err := New(filepath.Join(dir, "unused"), logPath, Options{Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	tio, err := c2.Attacher()(cio.NewFIFOSet(cfg, nil))
	if err != nil {
		t.Fatal(err)
	}
	if tio.Config() != cfg {
		t.Errorf("config %+v, want %+v", tio.Config(), cfg)
	}
	io.WriteString(shim.stderr, "after\n")
	w := c2.claimStdin()
	if w == nil {
		t.Fatal("no stdin after reattach")
	}
	io.WriteString(w, "in")
	buf := make([]byte, 2)
	waitFor(t, "stdin through the reopened FIFO", func() bool {
		n, _ := shim.stdin.Read(buf)
		return n == 2 && string(buf) == "in"
	})
	shim.closeOutput()
	waitClosed(t, c2.done, "reattached drain")
	got := logLines(t, logPath)
	slices.Sort(got)
	if want := []string{"stderr F after", "stdout F while down"}; !slices.Equal(got, want) {
		t.Errorf("log %q, want %q", got, want)
	}
}

// Reattaching to FIFOs the shim already closed (the task is exiting) ends
// at once; a FIFO that is gone is no error.
func TestReattachEndedOrMissing(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"stdout", "stderr"} {
		if err := unix.Mkfifo(filepath.Join(dir, name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, cfg := range []cio.Config{
		{Stdout: filepath.Join(dir, "stdout"), Stderr: filepath.Join(dir, "stderr")},
		{Stdout: filepath.Join(dir, "stdout"), Stderr: filepath.Join(dir, "gone")},
	} {
		c, err := New(dir, "", Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Attacher()(cio.NewFIFOSet(cfg, nil)); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, c.done, "drain of ended output")
		c.Close()
	}
}

// Closing IO that was never opened (the task was never created) ends it.
func TestCloseUnopened(t *testing.T) {
	c, err := New(t.TempDir(), filepath.Join(t.TempDir(), "c.log"), Options{Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitClosed(t, c.done, "unopened IO")
	if c.claimStdin() != nil {
		t.Error("stdin offered by closed IO")
	}
}

// A running container costs one goroutine per output stream and no other,
// and closing its IO leaves no goroutine and no descriptor behind.
func TestIOGoroutinesAndDescriptors(t *testing.T) {
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	for _, tc := range []struct {
		tty, stdin bool
		goroutines int
	}{{false, false, 2}, {false, true, 2}, {true, true, 1}} {
		runtime.GC()
		baseG, baseFD := runtime.NumGoroutine(), fds()
		dir := t.TempDir()
		c, err := New(dir, filepath.Join(dir, "c.log"), Options{TTY: tc.tty, Stdin: tc.stdin})
		if err != nil {
			t.Fatal(err)
		}
		tio, err := c.Creator()("id")
		if err != nil {
			t.Fatal(err)
		}
		shim := openShim(t, tio.Config())
		c.ReleaseHolds()
		if g := runtime.NumGoroutine() - baseG; g != tc.goroutines {
			t.Errorf("tty=%v stdin=%v: %d goroutines, want %d", tc.tty, tc.stdin, g, tc.goroutines)
		}
		shim.closeOutput()
		waitClosed(t, c.done, "drain")
		c.Close()
		for _, f := range shim.all {
			f.Close()
		}
		waitFor(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= baseG })
		if n := fds(); n != baseFD {
			t.Errorf("tty=%v stdin=%v: %d descriptors after close, %d before", tc.tty, tc.stdin, n, baseFD)
		}
	}
}
