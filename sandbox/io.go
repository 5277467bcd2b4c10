package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/sandbox/crilog"
)

// containerIO connects the stdio FIFOs of a container's main process to its
// CRI log file and to the clients attached to it. accel-cri makes the FIFOs
// itself, in the container's state directory, and hands their paths to
// containerd in a cio.IO of its own, so containerd's client copies nothing:
// each output FIFO is read by one goroutine, from a descriptor in the Go
// poller, straight into the log and the fanout of attached clients. An
// idle stream holds no buffer (see drain), so a running container costs a
// goroutine and a few hundred bytes per stream.
//
// Output is always drained, also without a log file, so a container never
// blocks on a full pipe; attached clients get a copy through a fanout,
// which drops a client that cannot keep up instead of waiting for it. The
// FIFOs outlive accel-cri (the shim holds them open): after a restart the
// FIFOs containerd names for the task are opened again.
type containerIO struct {
	dir       string
	log       *crilog.Writer
	tty       bool
	stdin     bool // the container has a stdin
	stdinOnce bool
	stdoutFan *fanout
	stderrFan *fanout
	copiers   atomic.Int32  // output streams still being read
	done      chan struct{} // closed when all output is drained and the log closed

	mu      sync.Mutex
	closed  bool
	opened  bool       // the FIFOs are open and their copiers run
	config  cio.Config // the FIFOs given to containerd
	outputs []*os.File // read ends of stdout and stderr
	holds   []*os.File // write ends keeping a new task's output FIFOs from EOF until its shim has opened its own

	stdinMu     sync.Mutex
	stdinW      *os.File     // write end of the stdin FIFO; nil without stdin or once closed
	stdinCloser func() error // tells the shim to close the process's stdin
}

// FIFO names in a container's state directory.
const (
	fifoStdin  = "stdin"
	fifoStdout = "stdout"
	fifoStderr = "stderr"
)

func newContainerIO(dir, logPath string, tty, stdin, stdinOnce bool) (*containerIO, error) {
	c := &containerIO{
		dir: dir, tty: tty, stdin: stdin, stdinOnce: stdinOnce, done: make(chan struct{}),
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
	return c, nil
}

// creator makes the FIFOs of a new task in the container's directory and
// opens them before containerd asks the shim to: the shim's open of an
// output FIFO for writing waits for a reader.
func (c *containerIO) creator() cio.Creator {
	return func(string) (cio.IO, error) {
		cfg := cio.Config{Terminal: c.tty, Stdout: filepath.Join(c.dir, fifoStdout)}
		if !c.tty {
			cfg.Stderr = filepath.Join(c.dir, fifoStderr)
		}
		if c.stdin {
			cfg.Stdin = filepath.Join(c.dir, fifoStdin)
		}
		if err := os.MkdirAll(c.dir, 0o700); err != nil {
			return nil, err
		}
		for _, p := range []string{cfg.Stdin, cfg.Stdout, cfg.Stderr} {
			if p == "" {
				continue
			}
			// A start that failed before left its FIFOs (and maybe a
			// shim that still holds them): new ones share nothing.
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
			if err := unix.Mkfifo(p, 0o600); err != nil {
				return nil, fmt.Errorf("make FIFO %s: %w", p, err)
			}
		}
		if err := c.open(cfg, true); err != nil {
			return nil, err
		}
		return taskIO{c}, nil
	}
}

// attacher opens the FIFOs of a running task (after a restart), wherever
// the accel-cri that started it made them.
func (c *containerIO) attacher() cio.Attach {
	return func(fifos *cio.FIFOSet) (cio.IO, error) {
		if fifos == nil {
			return nil, errors.New("containerd names no FIFOs for the task")
		}
		if err := c.open(fifos.Config, false); err != nil {
			return nil, err
		}
		return taskIO{c}, nil
	}
}

// open opens the FIFOs of cfg and starts reading the output ones. For a new
// task (hold) it also holds a write end of each output FIFO, so that the
// reads do not end before the shim has opened its own: releaseHolds lets
// them go once the task started. A running task's shim holds its write ends
// already; if it has closed them, the reads end at once, as they should.
func (c *containerIO) open(cfg cio.Config, hold bool) (retErr error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.opened {
		return errors.New("container IO is closed or open already")
	}
	var outputs, holds []*os.File
	var stdinW *os.File
	defer func() {
		if retErr != nil {
			for _, f := range slices.Concat(outputs, holds, []*os.File{stdinW}) {
				if f != nil {
					f.Close()
				}
			}
		}
	}()
	type stream struct {
		name string
		path string
		fan  *fanout
	}
	streams := []stream{{crilog.Stdout, cfg.Stdout, c.stdoutFan}}
	if c.tty || cfg.Terminal {
		c.stderrFan.close()
	} else {
		streams = append(streams, stream{crilog.Stderr, cfg.Stderr, c.stderrFan})
	}
	var reading []stream
	for _, s := range streams {
		if s.path == "" {
			s.fan.close()
			continue
		}
		// Non-blocking: the open does not wait for a writer, and the
		// descriptor goes into the poller, so an idle read holds no thread.
		f, err := os.OpenFile(s.path, os.O_RDONLY|unix.O_NONBLOCK, 0)
		if errors.Is(err, fs.ErrNotExist) && !hold {
			// Nothing can write it any more: there is no output to drain.
			klog.InfoS("Container output FIFO is gone", "path", s.path)
			s.fan.close()
			continue
		}
		if err != nil {
			return fmt.Errorf("open %s FIFO: %w", s.name, err)
		}
		outputs = append(outputs, f)
		reading = append(reading, s)
		if hold {
			h, err := os.OpenFile(s.path, os.O_WRONLY|unix.O_NONBLOCK, 0)
			if err != nil {
				return fmt.Errorf("open %s FIFO: %w", s.name, err)
			}
			holds = append(holds, h)
		}
	}
	if c.stdin && cfg.Stdin != "" {
		w, err := openFIFOWriter(cfg.Stdin)
		if err != nil {
			return fmt.Errorf("open stdin FIFO: %w", err)
		}
		stdinW = w
	}

	c.config, c.opened, c.outputs, c.holds = cfg, true, outputs, holds
	c.stdinMu.Lock()
	c.stdinW = stdinW
	c.stdinMu.Unlock()
	if len(reading) == 0 {
		c.finish()
		return nil
	}
	c.copiers.Store(int32(len(reading)))
	for i, s := range reading {
		go c.copy(outputs[i], s.name, s.fan)
	}
	return nil
}

// openFIFOWriter opens the write end of a FIFO without waiting for its
// reader (the shim may open it later): a read-write descriptor of its own
// is the reader while the write-only one opens. Once that is closed, a
// write without the shim's reader fails (EPIPE) instead of filling a pipe
// nobody reads.
func openFIFOWriter(path string) (*os.File, error) {
	rw, err := os.OpenFile(path, os.O_RDWR|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer rw.Close()
	return os.OpenFile(path, os.O_WRONLY|unix.O_NONBLOCK, 0)
}

// copy drains one output FIFO into the log, with a copy of every chunk to
// the attached clients; at the end of the output it ends their sessions,
// and the last stream to end closes the log.
func (c *containerIO) copy(f *os.File, stream string, fan *fanout) {
	defer func() {
		if c.copiers.Add(-1) == 0 {
			c.finish()
		}
	}()
	defer fan.close()
	var log *crilog.StreamWriter
	if c.log != nil {
		log, _ = c.log.Stream(stream) // stream is Stdout or Stderr
	}
	err := drain(f, func(p []byte) {
		_, _ = fan.Write(p) // never fails
		if log != nil {
			_, _ = log.Write(p) // never fails: errors go to the handler
		}
	})
	if log != nil {
		_ = log.Close() // its first error went to the handler
	}
	// The shim closed its end (or close did): the descriptor is done.
	_ = f.Close()
	if err != nil {
		c.mu.Lock()
		closed := c.closed // the read failed because close closed f
		c.mu.Unlock()
		if !closed {
			klog.ErrorS(err, "Reading container output", "stream", stream, "dir", c.dir)
		}
	}
}

// finish closes the log and marks the output drained.
func (c *containerIO) finish() {
	if c.log != nil {
		logErr(c.log.Close(), "Close container log", "path", c.log.Path())
	}
	close(c.done)
}

// outputBufSize is the read size of an output stream with data. Buffers
// are pooled and held only while output flows, so it can be large.
const outputBufSize = 32 << 10

var outputBufs = sync.Pool{New: func() any {
	b := make([]byte, outputBufSize)
	return &b
}}

// drain reads f, a non-blocking FIFO in the poller, until EOF and hands
// every chunk to out. An idle stream holds no buffer: it waits in a
// one-byte read, and only once output arrives takes a pooled buffer, fills
// it with whatever else is ready without waiting, and gives it back when
// nothing more is. It returns nil at EOF, else the read error (also when f
// was closed).
func drain(f *os.File, out func([]byte)) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var first [1]byte
	for {
		n, err := f.Read(first[:])
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if n == 0 {
			continue
		}
		bp := outputBufs.Get().(*[]byte)
		b := *bp
		b[0] = first[0]
		k := 1
		for {
			m, rerr := readReady(rc, b[k:])
			k += m
			if (k == len(b) || m == 0 || rerr != nil) && k > 0 {
				out(b[:k])
				k = 0
			}
			if rerr != nil {
				outputBufs.Put(bp)
				if rerr == io.EOF {
					return nil
				}
				return rerr
			}
			if m == 0 {
				break
			}
		}
		outputBufs.Put(bp)
	}
}

// readReady reads what the descriptor has now, without waiting: 0, nil
// when nothing is ready, io.EOF when no writer is left.
func readReady(rc syscall.RawConn, p []byte) (int, error) {
	var n int
	var err error
	if cerr := rc.Read(func(fd uintptr) bool {
		for {
			n, err = unix.Read(int(fd), p)
			if err != unix.EINTR {
				return true // never wait in the poller here
			}
		}
	}); cerr != nil {
		return 0, cerr
	}
	switch {
	case err == unix.EAGAIN:
		return 0, nil
	case err != nil:
		return 0, err
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// releaseHolds lets the output FIFOs of a new task end when its shim closes
// them: called once the task started (the shim opened them when it created
// the task).
func (c *containerIO) releaseHolds() {
	c.mu.Lock()
	holds := c.holds
	c.holds = nil
	c.mu.Unlock()
	for _, h := range holds {
		h.Close()
	}
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

// close ends everything: stdin, and the output streams where they are
// (what the FIFOs still buffer is not read).
func (c *containerIO) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	files := slices.Concat(c.holds, c.outputs)
	c.holds = nil
	opened := c.opened
	c.mu.Unlock()
	c.stdinMu.Lock()
	if c.stdinW != nil {
		files = append(files, c.stdinW)
		c.stdinW = nil
	}
	c.stdinMu.Unlock()
	for _, f := range files {
		_ = f.Close() // a copier may have closed its own at EOF
	}
	if !opened {
		c.stdoutFan.close()
		c.stderrFan.close()
		c.finish()
	}
}

// taskIO is the cio.IO containerd's client keeps for the task: the FIFO
// paths, and none of the copying cio does.
type taskIO struct{ c *containerIO }

func (t taskIO) Config() cio.Config {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	return t.c.config
}

// Cancel is called when creating or starting the task failed, and before
// Wait when the handle deletes the task: the output stops there, as
// containerd's own cio closes its FIFOs.
func (t taskIO) Cancel() { t.c.close() }

func (t taskIO) Wait() { <-t.c.done }

// Close releases the descriptors; the FIFOs go with the container's
// directory when the container is removed.
func (t taskIO) Close() error {
	t.c.close()
	return nil
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
	if c.stdinW == nil {
		return nil // a nil *os.File would be a non-nil io.Writer
	}
	return c.stdinW
}

// closeStdin closes the container's stdin for good: the process reads EOF.
// The shim holds a write end of its own (so that a restarted accel-cri can
// reopen the FIFO): accel-cri's is closed first, then the shim is told.
func (c *containerIO) closeStdin() {
	c.stdinMu.Lock()
	w, closer := c.stdinW, c.stdinCloser
	c.stdinW = nil
	c.stdinMu.Unlock()
	if w == nil {
		return
	}
	w.Close()
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
