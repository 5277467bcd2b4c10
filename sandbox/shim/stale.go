package shim

import (
	"context"
	"errors"
	"io/fs"
	"syscall"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	"k8s.io/klog/v2"
)

// DeleteTask asks the shim of task id to kill and delete it, then to exit
// if it holds no other task (a shim's Shutdown is refused while it holds
// one). It is for a task containerd does not know, whose create was cut
// short. The shim is the one listening on the socket of the first of
// groups that answers the delete (a task's group is its pod, or the task
// itself for a handler with a sandbox per container). It reports whether a
// shim answered the delete.
func (s *Shims) DeleteTask(ctx context.Context, id string, groups ...string) bool {
	if s == nil {
		return false
	}
	for _, group := range groups {
		if s.deleteIn(ctx, group, id) {
			return true
		}
	}
	return false
}

// deleteIn deletes task id in the shim of group. A shim that does not
// answer Connect at once (one that never started serving, see orphans.go)
// is not asked more.
func (s *Shims) deleteIn(ctx context.Context, group, id string) bool {
	client, _, err := connect(ctx, s.groupSocket(group))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			klog.V(2).InfoS("Shim of a stale task does not answer", "container", id, "shim", group, "err", err)
		}
		return false
	}
	defer client.Close()
	svc := taskapi.NewTTRPCTaskClient(client)
	call := func(f func(context.Context) error) error {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		return f(cctx)
	}
	_ = call(func(ctx context.Context) error {
		_, err := svc.Kill(ctx, &taskapi.KillRequest{ID: id, Signal: uint32(syscall.SIGKILL), All: true})
		return err
	})
	derr := call(func(ctx context.Context) error {
		_, err := svc.Delete(ctx, &taskapi.DeleteRequest{ID: id})
		return err
	})
	_ = call(func(ctx context.Context) error {
		_, err := svc.Shutdown(ctx, &taskapi.ShutdownRequest{ID: id})
		return err
	})
	if derr != nil {
		klog.V(2).InfoS("Shim delete of a stale task", "container", id, "shim", group, "err", derr)
	}
	return derr == nil
}
