package shim

import (
	"context"
	"slices"
	"testing"
	"time"
)

// A stale task is killed and deleted in the shim of the first of its
// groups that answers, which is then asked to exit; groups without a shim
// are passed over.
func TestDeleteTask(t *testing.T) {
	s := New(Config{Namespace: "accel-cri", BundleRoot: t.TempDir(), Address: "/run/accel-cri/containerd.sock"})
	s.socketDir = socketDir(t)
	t.Cleanup(s.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	f := newFakeShim()
	serveFakeShim(t, s.groupSocket("c1"), f)
	if !s.DeleteTask(ctx, "c1", "pod1", "c1") {
		t.Fatal("the task was not deleted in the shim of its own group")
	}
	if got, want := f.Calls(), []string{"connect", "kill", "delete", "shutdown"}; !slices.Equal(got, want) {
		t.Errorf("calls %v, want %v", got, want)
	}
	if s.DeleteTask(ctx, "c2", "pod2", "c2") {
		t.Error("a task without a shim was reported deleted")
	}
	var none *Shims
	if none.DeleteTask(ctx, "c1", "pod1", "c1") {
		t.Error("a nil Shims deleted a task")
	}
}

// StartedFor matches the shim started for the task and the ones on its
// groups' sockets; OfGroup the group's own and its members' shims and the
// one on its socket. A nil Shims matches nothing.
func TestMatches(t *testing.T) {
	s := New(Config{Namespace: "accel-cri", BundleRoot: "/b", Address: "/run/accel-cri/containerd.sock"})
	proc := func(id string, groups ...string) Proc {
		p := Proc{id: id}
		for _, g := range groups {
			p.listening = append(p.listening, s.groupSocket(g))
		}
		return p
	}
	member := func(id string) bool { return id == "c1" || id == "c2" }
	for _, tc := range []struct {
		desc  string
		match Match
		p     Proc
		want  bool
	}{
		{"started for the task", s.StartedFor("c1", "pod1", "c1"), proc("c1"), true},
		{"on the pod's socket", s.StartedFor("c1", "pod1", "c1"), proc("x", "pod1"), true},
		{"on the task's own socket", s.StartedFor("c1", "pod1", "c1"), proc("x", "c1"), true},
		{"another task's", s.StartedFor("c1", "pod1", "c1"), proc("c3", "pod3"), false},
		{"the group's own task", s.OfGroup("pod1", member), proc("pod1"), true},
		{"a member's", s.OfGroup("pod1", member), proc("c2"), true},
		{"on the group's socket", s.OfGroup("pod1", member), proc("x", "pod1"), true},
		{"another group's", s.OfGroup("pod1", member), proc("c3", "pod3"), false},
		{"nil Shims, task", (*Shims)(nil).StartedFor("c1", "pod1"), proc("c1"), false},
		{"nil Shims, group", (*Shims)(nil).OfGroup("pod1", member), proc("pod1"), false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if got := tc.match(tc.p); got != tc.want {
				t.Errorf("match = %v, want %v", got, tc.want)
			}
		})
	}
}
