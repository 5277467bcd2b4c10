package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/sandbox/crilog"
)

// containerIO connects a container's stdio FIFOs (held open by its shim) to
// its CRI log file and to the clients attached to it. Output is always
// drained, also without a log file, so a container never blocks on a full
// pipe; attached clients get a copy through a fanout, which drops a client
// that cannot keep up instead of waiting for it. The FIFOs outlive
// accel-cri: after a restart the same FIFOs are attached again.
type containerIO struct {
	dir       string
	log       *crilog.Writer
	tty       bool
	stdinOnce bool
	stdinR    *io.PipeReader
	stdinW    *io.PipeWriter
	stdoutR   *io.PipeReader
	stdoutW   *io.PipeWriter
	stderrR   *io.PipeReader
	stderrW   *io.PipeWriter
	stdoutFan *fanout
	stderrFan *fanout
	copiers   sync.WaitGroup
	done      chan struct{} // closed when all output is drained and the log closed
	closeErr  sync.Once

	stdinMu     sync.Mutex
	stdinClosed bool         // stdin_once: the first attacher's stdin ended
	stdinCloser func() error // tells the shim to close the process's stdin
}

func newContainerIO(dir, logPath string, tty, stdin, stdinOnce bool) (*containerIO, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c := &containerIO{
		dir: dir, tty: tty, stdinOnce: stdinOnce, done: make(chan struct{}),
		stdoutFan: newFanout("stdout"), stderrFan: newFanout("stderr"),
	}
	if logPath != "" {
		w, err := crilog.Open(logPath, crilog.WithErrorHandler(func(err error) {
			klog.ErrorS(err, "Writing container log", "path", logPath)
		}))
		if err != nil {
			return nil, fmt.Errorf("open container log: %w", err)
		}
		c.log = w
	}
	if stdin {
		c.stdinR, c.stdinW = io.Pipe()
	}
	c.stdoutR, c.stdoutW = io.Pipe()
	c.stderrR, c.stderrW = io.Pipe()
	c.copy("stdout", c.stdoutR, c.stdoutFan)
	if !tty {
		c.copy("stderr", c.stderrR, c.stderrFan)
	} else {
		c.stderrFan.close()
	}
	go func() {
		c.copiers.Wait()
		if c.log != nil {
			logErr(c.log.Close(), "Close container log", "path", c.log.Path())
		}
		close(c.done)
	}()
	return c, nil
}

// copy drains one output pipe into the log, with a copy of every chunk to
// the attached clients; at the end of the output it ends their sessions.
func (c *containerIO) copy(stream string, r io.Reader, fan *fanout) {
	c.copiers.Add(1)
	r = io.TeeReader(r, fan)
	go func() {
		defer c.copiers.Done()
		defer fan.close()
		if c.log != nil {
			_ = c.log.Copy(stream, r)
			return
		}
		_, _ = io.Copy(io.Discard, r)
	}()
}

func (c *containerIO) streams() cio.Opt {
	var stdin io.Reader
	if c.stdinR != nil {
		stdin = c.stdinR
	}
	stderr := io.Writer(c.stderrW)
	opts := []cio.Opt{cio.WithStreams(stdin, c.stdoutW, stderr), cio.WithFIFODir(c.dir)}
	if c.tty {
		opts = append(opts, cio.WithTerminal)
	}
	return func(s *cio.Streams) {
		for _, o := range opts {
			o(s)
		}
	}
}

// creator makes new FIFOs for a new task.
func (c *containerIO) creator() cio.Creator { return cio.NewCreator(c.streams()) }

// attacher opens the FIFOs of an existing task (after a restart).
func (c *containerIO) attacher() cio.Attach { return cio.NewAttach(c.streams()) }

// follow closes the output pipes once containerd's copy from the FIFOs
// ends (the task exited and its shim closed them), so the log is flushed.
func (c *containerIO) follow(io cio.IO) {
	if io == nil {
		c.close()
		return
	}
	go func() {
		io.Wait()
		c.closeOutput()
	}()
}

func (c *containerIO) closeOutput() {
	c.stdoutW.Close()
	c.stderrW.Close()
}

// wait blocks until the output is drained, at most d.
func (c *containerIO) wait(d time.Duration) bool {
	select {
	case <-c.done:
		return true
	case <-time.After(d):
		return false
	}
}

// close ends everything: stdin and the output pipes.
func (c *containerIO) close() {
	c.closeErr.Do(func() {
		if c.stdinW != nil {
			c.stdinW.Close()
		}
		c.closeOutput()
	})
}

// setStdinCloser sets how the shim is told to close the process's stdin:
// the shim keeps the stdin FIFO open for writing itself (so a restarted
// accel-cri can reattach), so closing accel-cri's end alone is no EOF.
func (c *containerIO) setStdinCloser(f func() error) {
	c.stdinMu.Lock()
	c.stdinCloser = f
	c.stdinMu.Unlock()
}

// claimStdin returns the writer to the container's stdin, or nil when the
// container has no stdin or stdin_once closed it already.
func (c *containerIO) claimStdin() io.Writer {
	c.stdinMu.Lock()
	defer c.stdinMu.Unlock()
	if c.stdinW == nil || c.stdinClosed {
		return nil
	}
	return c.stdinW
}

// closeStdin closes the container's stdin for good: the process reads EOF.
func (c *containerIO) closeStdin() {
	c.stdinMu.Lock()
	if c.stdinW == nil || c.stdinClosed {
		c.stdinMu.Unlock()
		return
	}
	c.stdinClosed = true
	closer := c.stdinCloser
	c.stdinMu.Unlock()
	c.stdinW.Close()
	select {
	case <-c.done:
		return // the container's output ended: its task is gone
	default:
	}
	if closer != nil {
		logErr(closer(), "Close container stdin", "dir", c.dir)
	}
}

// attachment is one client attached to the container's IO.
type attachment struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// attach connects a client to the container's output (and its stdin, when
// the container has one) until the output ends, the client goes away
// (a write fails, or it was too slow and got dropped), the client closes
// its stdin (unless stdin_once: then the container's stdin is closed and
// the session lasts until the output ends), or ctx ends.
func (c *containerIO) attach(ctx context.Context, a attachment) {
	var subs []*subscriber
	if a.Stdout != nil {
		subs = append(subs, c.stdoutFan.subscribe(a.Stdout))
	}
	if a.Stderr != nil && !c.tty {
		subs = append(subs, c.stderrFan.subscribe(a.Stderr))
	}
	defer func() {
		for _, s := range subs {
			s.fan.remove(s, false)
		}
	}()

	var detached chan struct{} // closed when the client's stdin ends and that ends the session
	if a.Stdin != nil {
		if w := c.claimStdin(); w != nil {
			detached = make(chan struct{})
			go func() {
				_, err := io.Copy(w, a.Stdin)
				klog.V(4).InfoS("Attached stdin ended", "dir", c.dir, "err", err)
				if c.stdinOnce {
					c.closeStdin()
					return
				}
				close(detached)
			}()
		} else {
			// Nothing reads it, but an unread stream can stall the
			// client's connection: drain it (it ends with the connection).
			go func() { _, _ = io.Copy(io.Discard, a.Stdin) }()
		}
	}

	// A subscriber ends when its output ended and was written (done), or
	// when it was removed (stop): dropped, or by this attach returning.
	// A dropped one may still be stuck in a Write to a client that does
	// not read; that Write fails once the client's connection is closed.
	ended := make(chan *subscriber, len(subs))
	for _, s := range subs {
		go func() {
			select {
			case <-s.done:
			case <-s.stop:
			case <-ctx.Done():
				return
			}
			ended <- s
		}()
	}
	outputDone := c.done
	if len(subs) > 0 {
		outputDone = nil // the subscribers report the end of the output
	}
	for open := len(subs); open > 0 || len(subs) == 0; {
		select {
		case s := <-ended:
			if s.dropped.Load() {
				return // the client is gone or too slow
			}
			open--
			if open == 0 {
				return
			}
		case <-outputDone:
			return
		case <-detached:
			return
		case <-ctx.Done():
			return
		}
	}
}

// reopenLog opens the log path anew after kubelet rotated the file.
func (c *containerIO) reopenLog() error {
	if c.log == nil {
		return nil
	}
	return c.log.Reopen()
}

// An attached client may lag behind the output by fanoutMaxLag bytes (in
// at most fanoutQueue chunks) before it is dropped.
const (
	fanoutMaxLag = 4 << 20
	fanoutQueue  = 1024
)

// fanout copies one output stream of a container to any number of attached
// writers. Write never blocks and never fails: each writer has a bounded
// queue and a goroutine of its own, and a writer whose queue is full or whose
// Write failed is removed, so neither the container nor its log ever waits
// for a client.
type fanout struct {
	name   string
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

// subscriber is one attached writer of a fanout.
type subscriber struct {
	fan     *fanout
	w       io.Writer
	queue   chan []byte
	stop    chan struct{} // closed when removed: stop writing
	done    chan struct{} // closed when the writer goroutine has returned
	dropped atomic.Bool   // removed because it failed or lagged, not by its owner
	lag     atomic.Int64  // bytes queued and not written yet
}

func newFanout(name string) *fanout {
	return &fanout{name: name, subs: map[*subscriber]struct{}{}}
}

// subscribe adds w. Its done channel closes once the stream has ended and
// everything queued was written, or when it is removed. Subscribing to an
// ended stream returns a subscriber that is already done.
func (f *fanout) subscribe(w io.Writer) *subscriber {
	s := &subscriber{fan: f, w: w, queue: make(chan []byte, fanoutQueue), stop: make(chan struct{}), done: make(chan struct{})}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		close(s.done)
		return s
	}
	f.subs[s] = struct{}{}
	go s.run()
	return s
}

func (s *subscriber) run() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case b, ok := <-s.queue:
			if !ok {
				return
			}
			_, err := s.w.Write(b)
			s.lag.Add(-int64(len(b)))
			if err != nil {
				klog.V(4).InfoS("Attached client went away", "stream", s.fan.name, "err", err)
				s.fan.remove(s, true)
				return
			}
		}
	}
}

// Write hands a copy of p to every subscriber.
func (f *fanout) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.subs) == 0 {
		return len(p), nil
	}
	b := bytes.Clone(p)
	for s := range f.subs {
		if s.lag.Add(int64(len(b))) > fanoutMaxLag {
			klog.InfoS("Dropping an attached client that does not keep up with the output", "stream", f.name, "lag", s.lag.Load())
			f.removeLocked(s, true)
			continue
		}
		select {
		case s.queue <- b:
		default:
			klog.InfoS("Dropping an attached client that does not keep up with the output", "stream", f.name)
			f.removeLocked(s, true)
		}
	}
	return len(p), nil
}

// remove detaches s; dropped says it failed rather than left.
func (f *fanout) remove(s *subscriber, dropped bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removeLocked(s, dropped)
}

func (f *fanout) removeLocked(s *subscriber, dropped bool) {
	if _, ok := f.subs[s]; !ok {
		return
	}
	delete(f.subs, s)
	s.dropped.Store(dropped)
	close(s.stop)
}

// close ends the stream: subscribers write what they have queued, then end.
func (f *fanout) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.closed = true
	for s := range f.subs {
		delete(f.subs, s)
		close(s.queue)
	}
}
