package sandbox

import (
	"context"
	"fmt"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/sandbox/stdio"
)

// Attach connects a client to the IO of a running container's main
// process: it gets the output from the moment it attached (the log has
// what came before), and its stdin goes to the container's stdin when the
// container has one. Several clients can be attached at once; each gets
// all the output, and their stdin is interleaved. With stdin_once the
// container's stdin is closed when the first client's stdin ends, and later
// clients get none. Attach returns when the output ends (the container
// exited), when the client goes away or closes its stdin, or when ctx ends;
// with an error (stdio.ErrDropped) when the client fell too far behind the
// output and was detached, so that it learns it missed some.
func (r *Runtime) Attach(ctx context.Context, id string, opts StreamOptions) error {
	id, err := r.RunningContainer(id)
	if err != nil {
		return err
	}
	c, err := r.store.container(id)
	if err != nil {
		return err
	}
	if c.io == nil {
		return fmt.Errorf("%w: container %s has no IO to attach to", errdefs.ErrFailedPrecondition, id)
	}
	done := make(chan struct{})
	defer close(done)
	if opts.TTY && c.io.TTY() && opts.Resize != nil {
		task, err := r.loadTask(ctx, id)
		if err != nil {
			return fmt.Errorf("attach to container %s: %w", id, err)
		}
		go forwardResize(context.WithoutCancel(ctx), opts.Resize, done, func(ctx context.Context, w, h uint32) error {
			return task.Resize(ctx, w, h)
		})
	}
	klog.V(4).InfoS("Attach", "container", id, "stdin", opts.Stdin != nil, "stdout", opts.Stdout != nil, "stderr", opts.Stderr != nil, "tty", opts.TTY)
	err = c.io.Attach(ctx, stdio.Attachment{Stdin: opts.Stdin, Stdout: opts.Stdout, Stderr: opts.Stderr})
	klog.V(4).InfoS("Attach ended", "container", id, "err", err)
	if err != nil {
		return fmt.Errorf("attach to container %s: %w", id, err)
	}
	return nil
}

// stdinCloser makes the shim close the stdin of the task's process.
func stdinCloser(task containerd.Task) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := task.CloseIO(ctx, containerd.WithStdinCloser)
		if errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
}
