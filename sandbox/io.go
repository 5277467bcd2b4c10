package sandbox

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/sandbox/crilog"
)

// containerIO connects a container's stdio FIFOs (held open by its shim) to
// its CRI log file. Output is always drained, also without a log file, so a
// container never blocks on a full pipe. The FIFOs outlive accel-cri: after a
// restart the same FIFOs are attached again.
type containerIO struct {
	dir      string
	log      *crilog.Writer
	tty      bool
	stdinR   *io.PipeReader
	stdinW   *io.PipeWriter
	stdoutR  *io.PipeReader
	stdoutW  *io.PipeWriter
	stderrR  *io.PipeReader
	stderrW  *io.PipeWriter
	copiers  sync.WaitGroup
	done     chan struct{} // closed when all output is drained and the log closed
	closeErr sync.Once
}

func newContainerIO(dir, logPath string, tty, stdin bool) (*containerIO, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c := &containerIO{dir: dir, tty: tty, done: make(chan struct{})}
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
	c.copy("stdout", c.stdoutR)
	if !tty {
		c.copy("stderr", c.stderrR)
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

func (c *containerIO) copy(stream string, r io.Reader) {
	c.copiers.Add(1)
	go func() {
		defer c.copiers.Done()
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

// reopenLog opens the log path anew after kubelet rotated the file.
func (c *containerIO) reopenLog() error {
	if c.log == nil {
		return nil
	}
	return c.log.Reopen()
}
