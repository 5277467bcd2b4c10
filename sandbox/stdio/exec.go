package stdio

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"
	"k8s.io/klog/v2"
)

// ExecIO is the IO of one exec session, the cio.IO to give the shim: its
// FIFOs in the directory NewExecIO was given and the copies between them
// and the client's streams. Close removes the FIFOs.
type ExecIO struct {
	cio.IO
	output *execOutput // copies once started; nil: cio copies already
	stdin  *eofReader  // nil without stdin
}

// NewExecIO makes the FIFOs of exec id in dir for a client's streams, a
// nil one not asked for. The runc shim needs both output FIFOs (a terminal
// needs stdout): output nobody asked for is discarded, and stderr is
// ignored with a terminal (it has one output). Without stdin the output
// FIFOs are read by execOutput once Start is called; with stdin,
// containerd's cio opens the stdin FIFO's writer once the shim has its
// read end, and copies all the streams.
func NewExecIO(dir, id string, tty bool, stdin io.Reader, stdout, stderr io.Writer) (*ExecIO, error) {
	e := &ExecIO{}
	in, out, errOut := io.Reader(nil), io.Writer(io.Discard), io.Writer(io.Discard)
	if stdin != nil {
		e.stdin = newEOFReader(stdin)
		in = e.stdin
	}
	if stdout != nil {
		out = stdout
	}
	if stderr != nil {
		errOut = stderr
	}
	if tty {
		errOut = nil
	}
	if e.stdin == nil {
		o, err := newExecOutput(dir, id, tty, out, errOut)
		if err != nil {
			return nil, err
		}
		e.IO, e.output = o, o
		return e, nil
	}
	streams := []cio.Opt{cio.WithStreams(in, out, errOut), cio.WithFIFODir(dir)}
	if tty {
		streams = append(streams, cio.WithTerminal)
	}
	pio, err := cio.NewCreator(streams...)(id)
	if err != nil {
		return nil, err
	}
	e.IO = pio
	return e, nil
}

// Start begins copying the output: call it once the process started (the
// shim has opened its ends of the FIFOs).
func (e *ExecIO) Start() {
	if e.output != nil {
		e.output.start()
	}
}

// StdinEOF is closed when the client's stdin ended (EOF or an error); nil
// without stdin.
func (e *ExecIO) StdinEOF() <-chan struct{} {
	if e.stdin == nil {
		return nil
	}
	return e.stdin.eof
}

// WaitOutput waits until the output copy ended, at most d (a background
// child can hold the output open after the process exited; the deletion
// of the process, which follows, closes the output).
func (e *ExecIO) WaitOutput(d time.Duration) {
	drained := make(chan struct{})
	go func() {
		e.Wait() // returns at the latest when the process is deleted
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(d):
		klog.V(2).InfoS("Exec output still open after the process exited; returning without the rest")
	}
}

// eofReader reports when its reader ended (EOF or an error).
type eofReader struct {
	r    io.Reader
	eof  chan struct{}
	once sync.Once
}

func newEOFReader(r io.Reader) *eofReader { return &eofReader{r: r, eof: make(chan struct{})} }

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.once.Do(func() { close(e.eof) })
	}
	return n, err
}

// execOutput is the output side of an exec session without stdin: the
// stdout (and, without a terminal, stderr) FIFOs the shim writes into, read
// by one goroutine each once the process started. It does less than
// containerd's cio for the same job: no temporary directory, no goroutine
// per FIFO open (the read ends are opened non-blocking before the shim
// opens its write ends in Start, and read only after Start returned, so a
// read never sees "no writer yet" as EOF), small pooled copy buffers.
// It implements cio.IO so containerd's path can use it too.
type execOutput struct {
	cfg       cio.Config
	files     []*os.File
	dests     []io.Writer
	wg        sync.WaitGroup
	startOnce sync.Once
	closeOnce sync.Once
}

// execCopyBuffers are the buffers output is copied through; probes print
// little, and a pipe hands out at most 64 KiB per read anyway.
var execCopyBuffers = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// newExecOutput makes the FIFOs of exec id in dir and opens their read
// ends. stderr is ignored with a terminal (it has one output).
func newExecOutput(dir, id string, tty bool, stdout, stderr io.Writer) (_ *execOutput, retErr error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("exec output: %w", err)
	}
	o := &execOutput{cfg: cio.Config{Terminal: tty}}
	defer func() {
		if retErr != nil {
			o.Close()
		}
	}()
	streams := []struct {
		path *string
		name string
		dest io.Writer
	}{{&o.cfg.Stdout, "stdout", stdout}, {&o.cfg.Stderr, "stderr", stderr}}
	if tty {
		streams = streams[:1]
	}
	for _, s := range streams {
		path := filepath.Join(dir, id+"-"+s.name)
		if err := syscall.Mkfifo(path, 0o600); err != nil {
			return nil, fmt.Errorf("exec output: mkfifo %s: %w", path, err)
		}
		*s.path = path
		// Non-blocking: a FIFO's read end opens at once (no writer needed)
		// and reads go through the runtime's poller, not a blocked thread.
		f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("exec output: %w", err)
		}
		o.files = append(o.files, f)
		o.dests = append(o.dests, s.dest)
	}
	return o, nil
}

// start copies the output into its writers until the shim closes its
// ends. Call it once the process started: the shim's write ends are open.
func (o *execOutput) start() {
	o.startOnce.Do(func() {
		for i, f := range o.files {
			o.wg.Add(1)
			go func() {
				defer o.wg.Done()
				buf := execCopyBuffers.Get().(*[]byte)
				defer execCopyBuffers.Put(buf)
				// Errors end the copy: a closed file (Cancel) or a
				// failing writer (a gone client) leave nothing to do.
				_, _ = io.CopyBuffer(struct{ io.Writer }{o.dests[i]}, struct{ io.Reader }{f}, *buf)
			}()
		}
	})
}

// Config is the FIFO paths to give the shim.
func (o *execOutput) Config() cio.Config { return o.cfg }

// Cancel ends the copies: closing the read ends wakes blocked reads.
func (o *execOutput) Cancel() {
	o.startOnce.Do(func() {}) // nothing starts after a cancel
	for _, f := range o.files {
		_ = f.Close()
	}
}

// Wait returns when the copies ended.
func (o *execOutput) Wait() { o.wg.Wait() }

// Close ends the copies and removes the FIFOs.
func (o *execOutput) Close() error {
	var errs []error
	o.closeOnce.Do(func() {
		o.Cancel()
		for _, p := range []string{o.cfg.Stdout, o.cfg.Stderr} {
			if p == "" {
				continue
			}
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	})
	return errors.Join(errs...)
}
