package stdio

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/sandbox/stdio/crilog"
)

// ContainerIO connects the stdio FIFOs of a container's main process to its
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
type ContainerIO struct {
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

// Options are the stdio settings of a container's process.
type Options struct {
	TTY       bool // one output (stdout) through a terminal, no stderr
	Stdin     bool // the process has a stdin attached clients write into
	StdinOnce bool // the first attached client's end of stdin closes it
}

// New returns the IO of a container's main process, its FIFOs to be made
// in dir (the container's state directory) by Creator or opened anew by
// Attacher, and its output written to the CRI log at logPath (created or
// appended to; none when logPath is empty). Nothing is read before Creator
// or Attacher is used; Close releases what New opened.
func New(dir, logPath string, opts Options) (*ContainerIO, error) {
	c := &ContainerIO{
		dir: dir, tty: opts.TTY, stdin: opts.Stdin, stdinOnce: opts.StdinOnce, done: make(chan struct{}),
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

// TTY reports whether the process has a terminal.
func (c *ContainerIO) TTY() bool { return c.tty }

// Creator makes the FIFOs of a new task in the container's directory and
// opens them before containerd asks the shim to: the shim's open of an
// output FIFO for writing waits for a reader.
func (c *ContainerIO) Creator() cio.Creator {
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

// Attacher opens the FIFOs of a running task (after a restart), wherever
// the accel-cri that started it made them.
func (c *ContainerIO) Attacher() cio.Attach {
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
// reads do not end before the shim has opened its own: ReleaseHolds lets
// them go once the task started. A running task's shim holds its write ends
// already; if it has closed them, the reads end at once, as they should.
func (c *ContainerIO) open(cfg cio.Config, hold bool) (retErr error) {
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
func (c *ContainerIO) copy(f *os.File, stream string, fan *fanout) {
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
func (c *ContainerIO) finish() {
	if c.log != nil {
		if err := c.log.Close(); err != nil {
			klog.ErrorS(err, "Close container log", "path", c.log.Path())
		}
	}
	close(c.done)
}

// ReleaseHolds lets the output FIFOs of a new task end when its shim closes
// them: called once the task started (the shim opened them when it created
// the task).
func (c *ContainerIO) ReleaseHolds() {
	c.mu.Lock()
	holds := c.holds
	c.holds = nil
	c.mu.Unlock()
	for _, h := range holds {
		h.Close()
	}
}

// Wait blocks until the output is drained and the log closed, at most d;
// it reports whether it was.
func (c *ContainerIO) Wait(d time.Duration) bool {
	select {
	case <-c.done:
		return true
	case <-time.After(d):
		return false
	}
}

// Close ends everything: stdin, and the output streams where they are
// (what the FIFOs still buffer is not read). It can be called more than once.
func (c *ContainerIO) Close() {
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
type taskIO struct{ c *ContainerIO }

func (t taskIO) Config() cio.Config {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	return t.c.config
}

// Cancel is called when creating or starting the task failed, and before
// Wait when the handle deletes the task: the output stops there, as
// containerd's own cio closes its FIFOs.
func (t taskIO) Cancel() { t.c.Close() }

func (t taskIO) Wait() { <-t.c.done }

// Close releases the descriptors; the FIFOs go with the container's
// directory when the container is removed.
func (t taskIO) Close() error {
	t.c.Close()
	return nil
}

// SetStdinCloser sets how the shim is told to close the process's stdin:
// the shim keeps the stdin FIFO open for writing itself (so a restarted
// accel-cri can reattach), so closing accel-cri's end alone is no EOF.
func (c *ContainerIO) SetStdinCloser(f func() error) {
	c.stdinMu.Lock()
	c.stdinCloser = f
	c.stdinMu.Unlock()
}

// claimStdin returns the writer to the container's stdin, or nil when the
// container has no stdin or stdin_once closed it already.
func (c *ContainerIO) claimStdin() io.Writer {
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
func (c *ContainerIO) closeStdin() {
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
		if err := closer(); err != nil {
			klog.ErrorS(err, "Close container stdin", "dir", c.dir)
		}
	}
}

// ReopenLog opens the log path anew after kubelet rotated the file; without
// a log it does nothing.
func (c *ContainerIO) ReopenLog() error {
	if c.log == nil {
		return nil
	}
	return c.log.Reopen()
}
