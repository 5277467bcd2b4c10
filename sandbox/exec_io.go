package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/containerd/containerd/v2/pkg/cio"
)

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
