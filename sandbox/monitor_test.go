package sandbox

import (
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestExitedStatus(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	running := containerStatus{State: runtimeapi.ContainerState_CONTAINER_RUNNING, PID: 42, StartedAt: at.Add(-time.Minute)}
	for _, tc := range []struct {
		desc       string
		st         containerStatus
		exit       exitInfo
		wantCode   int32
		wantReason string
	}{
		{desc: "success", st: running, exit: exitInfo{code: 0, at: at}, wantCode: 0, wantReason: reasonCompleted},
		{desc: "error code", st: running, exit: exitInfo{code: 7, at: at}, wantCode: 7, wantReason: reasonError},
		{desc: "oom wins", st: func() containerStatus { s := running; s.OOMKilled = true; return s }(), exit: exitInfo{code: 137, at: at}, wantCode: 137, wantReason: reasonOOMKilled},
		{desc: "unknown", st: running, exit: exitInfo{code: exitCodeUnknown, at: at, unknown: true}, wantCode: exitCodeUnknown, wantReason: reasonUnknown},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got := exitedStatus(tc.st, tc.exit)
			if got.State != runtimeapi.ContainerState_CONTAINER_EXITED || got.PID != 0 || got.ExitCode != tc.wantCode || got.Reason != tc.wantReason || !got.FinishedAt.Equal(at) || !got.StartedAt.Equal(tc.st.StartedAt) {
				t.Errorf("exitedStatus = %+v, want exited, code %d, reason %s, finished %s", got, tc.wantCode, tc.wantReason, at)
			}
		})
	}
	if got := exitedStatus(running, exitInfo{code: 1}); got.FinishedAt.IsZero() {
		t.Error("an exit without a time got no finish time")
	}
}

// The exit reaches the checkpoint before the task (containerd's only
// record of it) is deleted, without publishing it yet: a crash in between
// must not turn a known exit into Unknown (found by the chaos suite).
func TestPersistExitCheckpointsBeforePublishing(t *testing.T) {
	s := newStore(t.TempDir())
	c := newContainer(containerMeta{ID: "c1"})
	running := containerStatus{State: runtimeapi.ContainerState_CONTAINER_RUNNING, PID: 42, StartedAt: time.Now().Add(-time.Second)}
	if err := s.setContainerStatus(c, running); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Truncate(time.Millisecond)
	if err := s.persistExit(c, exitInfo{code: 9, at: at}); err != nil {
		t.Fatal(err)
	}
	var disk containerStatus
	if ok, err := readJSON(s.containerStatusPath(c.ID), &disk); err != nil || !ok {
		t.Fatalf("checkpoint: %v, %v", ok, err)
	}
	if disk.State != runtimeapi.ContainerState_CONTAINER_EXITED || disk.ExitCode != 9 || !disk.FinishedAt.Equal(at) || disk.Reason != reasonError {
		t.Errorf("checkpoint after persistExit = %+v, want exited 9 at %s", disk, at)
	}
	if got := s.containerStatusOf(c); got.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("published status %s, want still running until the exit is recorded", got.State)
	}
}

func TestStaleExit(t *testing.T) {
	running := containerStatus{State: runtimeapi.ContainerState_CONTAINER_RUNNING, PID: 42}
	for _, tc := range []struct {
		desc string
		st   containerStatus
		exit *exitInfo
		want bool
	}{
		{desc: "the task's exit", st: running, exit: &exitInfo{code: 27, pid: 42}},
		{desc: "an earlier init's exit after the new task started", st: running, exit: &exitInfo{code: 137, pid: 41}, want: true},
		{desc: "an exit while the start is retried", st: containerStatus{State: runtimeapi.ContainerState_CONTAINER_CREATED}, exit: &exitInfo{code: 137, pid: 41}, want: true},
		{desc: "an exit after the exit was recorded", st: containerStatus{State: runtimeapi.ContainerState_CONTAINER_EXITED, ExitCode: 27}, exit: &exitInfo{code: 137, pid: 41}, want: true},
		{desc: "no pid in the event", st: running, exit: &exitInfo{code: 3}},
		{desc: "no recorded pid (an old checkpoint)", st: containerStatus{State: runtimeapi.ContainerState_CONTAINER_RUNNING}, exit: &exitInfo{code: 3, pid: 7}},
		{desc: "only containerd knows the exit", st: running},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if got := staleExit(tc.st, tc.exit); got != tc.want {
				t.Errorf("staleExit = %v, want %v", got, tc.want)
			}
		})
	}
}

// A stale init's exit reported for a running container changes nothing:
// no exit checkpointed, none recorded, the task left alone (the Runtime
// has no containerd client: touching the task would panic).
func TestHandleContainerExitIgnoresStaleInit(t *testing.T) {
	r := &Runtime{store: newStore(t.TempDir())}
	c := newContainer(containerMeta{ID: "c1"})
	running := containerStatus{State: runtimeapi.ContainerState_CONTAINER_RUNNING, PID: 42, StartedAt: time.Now()}
	if err := r.store.setContainerStatus(c, running); err != nil {
		t.Fatal(err)
	}
	c.markStartDone()
	r.handleContainerExit(t.Context(), c, &exitInfo{code: 137, at: time.Now(), pid: 41})
	if got := r.store.containerStatusOf(c); got.State != runtimeapi.ContainerState_CONTAINER_RUNNING || got.PID != 42 {
		t.Errorf("status after a stale exit = %+v, want running pid 42", got)
	}
	var disk containerStatus
	if ok, err := readJSON(r.store.containerStatusPath(c.ID), &disk); err != nil || !ok || disk.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("checkpoint after a stale exit: %+v (%v, %v), want running", disk, ok, err)
	}
	select {
	case <-c.exited:
		t.Error("exit recorded")
	default:
	}
}
