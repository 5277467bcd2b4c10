package shim

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The exits of stopped tasks are read from their shims, one connection per
// shim, and only read: running tasks, tasks a shim does not know, bundles
// without a shim to ask and shims that do not answer are passed over.
func TestStoppedExits(t *testing.T) {
	sockets, root := socketDir(t), t.TempDir()
	s := New(Config{Namespace: "accel-cri", BundleRoot: root, Address: "/run/accel-cri/containerd.sock"})
	t.Cleanup(s.Close)
	bundle := func(id, socket string) {
		t.Helper()
		dir := filepath.Join(root, "accel-cri", id)
		if socket == "" {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			return
		}
		writeBootstrap(t, dir, `{"version":3,"address":"unix://`+socket+`","protocol":"ttrpc"}`)
	}
	exitedAt := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)

	// A pod's shim: one task stopped, one running, one it forgot.
	pod := newFakeShim()
	pod.states = map[string]*taskapi.StateResponse{
		"quit": {ID: "quit", Pid: 101, Status: tasktypes.Status_STOPPED, ExitStatus: 9, ExitedAt: timestamppb.New(exitedAt)},
		"run":  {ID: "run", Pid: 102, Status: tasktypes.Status_RUNNING},
	}
	podSocket := filepath.Join(sockets, "pod")
	serveFakeShim(t, podSocket, pod)
	bundle("quit", podSocket)
	bundle("run", podSocket)
	bundle("forgot", podSocket)
	// A shim of its own: stopped, killed (no exit time kept).
	own := newFakeShim()
	own.states = map[string]*taskapi.StateResponse{"killed": {ID: "killed", Pid: 201, Status: tasktypes.Status_STOPPED, ExitStatus: 137}}
	ownSocket := filepath.Join(sockets, "own")
	serveFakeShim(t, ownSocket, own)
	bundle("killed", ownSocket)
	// A shim that never serves (it accepts nothing), a bundle without
	// bootstrap.json, one being removed, one whose shim is gone.
	l, err := net.Listen("unix", filepath.Join(sockets, "mute"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	bundle("mute", filepath.Join(sockets, "mute"))
	bundle("new", "")
	bundle(".removing", ownSocket)
	bundle("gone", filepath.Join(sockets, "gone"))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	got := s.StoppedExits(ctx)
	slices.SortFunc(got, func(a, b Exit) int { return strings.Compare(a.ID, b.ID) })
	want := []Exit{{ID: "killed", Pid: 201, Status: 137}, {ID: "quit", Pid: 101, Status: 9, At: exitedAt}}
	if !slices.EqualFunc(got, want, func(a, b Exit) bool {
		return a.ID == b.ID && a.Pid == b.Pid && a.Status == b.Status && a.At.Equal(b.At)
	}) {
		t.Errorf("exits %+v, want %+v", got, want)
	}
	if d := time.Since(start); d > 2*dialTimeout+time.Second {
		t.Errorf("took %s: a shim that does not answer held the others up", d)
	}
	// Read only: State, nothing else (no kill, delete or shutdown).
	calls := append(pod.Calls(), own.Calls()...)
	slices.Sort(calls)
	if wantCalls := []string{"state forgot", "state killed", "state quit", "state run"}; !slices.Equal(calls, wantCalls) {
		t.Errorf("shim calls %v, want %v", calls, wantCalls)
	}

	var none *Shims
	if got := none.StoppedExits(ctx); got != nil {
		t.Errorf("a nil Shims read exits: %v", got)
	}
}
