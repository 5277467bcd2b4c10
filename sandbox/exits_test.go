package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/sandbox/shim"
)

// Exits are kept for app containers only (their state directory exists);
// a pod's pause task needs none and gets no directory made for it.
func TestKeepExits(t *testing.T) {
	state := t.TempDir()
	if err := os.MkdirAll(filepath.Join(state, "containers", "c1"), 0o700); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	n := keepExits(state, []shim.Exit{{ID: "c1", Pid: 42, Status: 9, At: at}, {ID: "pod1", Pid: 41, Status: 137}})
	if n != 1 {
		t.Errorf("kept %d exits, want 1", n)
	}
	var rec exitRecord
	if ok, err := readJSON(exitRecordPath(state, "c1"), &rec); err != nil || !ok {
		t.Fatalf("record of c1: %v, %v", ok, err)
	}
	if want := (exitRecord{ID: "c1", Pid: 42, ExitCode: 9, ExitedAt: at}); rec != want {
		t.Errorf("record %+v, want %+v", rec, want)
	}
	if _, err := os.Stat(filepath.Join(state, "containers", "pod1")); !os.IsNotExist(err) {
		t.Errorf("a pod's pause got a container directory: %v", err)
	}
	r := &Runtime{stateDir: state}
	if got, want := exitRecordPath(state, "c1"), filepath.Join(r.containerDir("c1"), exitRecordFile); got != want {
		t.Errorf("record at %s, not in the container's state directory %s", got, want)
	}
}

// lostTaskContainer is a containerd container of accel-cri whose task
// containerd no longer has (it deleted it as a leaked shim's).
type lostTaskContainer struct {
	containerd.Container // the rest: not called
	meta                 *containerMeta
}

func (c lostTaskContainer) ID() string { return c.meta.ID }

func (c lostTaskContainer) Extensions(context.Context) (map[string]typeurl.Any, error) {
	a, err := typeurl.MarshalAny(c.meta)
	return map[string]typeurl.Any{extContainerMeta: a}, err
}

func (c lostTaskContainer) Task(context.Context, cio.Attach) (containerd.Task, error) {
	return nil, fmt.Errorf("no running task found: %w", errdefs.ErrNotFound)
}

// A container recorded running whose task containerd deleted at its start
// reports the exit its shim kept (HarvestExits), once it is its task's;
// the record goes once the exit is in the checkpoint. Without one the exit
// is unknown (255), as before.
func TestRecoverContainerHarvestedExit(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, tc := range []struct {
		desc   string
		rec    *exitRecord
		pid    uint32 // recorded task pid
		code   int32
		reason string
		at     time.Time // zero: any time
	}{
		{desc: "the task's kept exit", rec: &exitRecord{ID: "c1", Pid: 42, ExitCode: 9, ExitedAt: at}, pid: 42, code: 9, reason: reasonError, at: at},
		{desc: "exit 0", rec: &exitRecord{ID: "c1", Pid: 42, ExitedAt: at}, pid: 42, code: 0, reason: reasonCompleted, at: at},
		{desc: "no pid recorded (an old checkpoint)", rec: &exitRecord{ID: "c1", Pid: 42, ExitCode: 3, ExitedAt: at}, code: 3, reason: reasonError, at: at},
		{desc: "no exit time kept", rec: &exitRecord{ID: "c1", Pid: 42, ExitCode: 137}, pid: 42, code: 137, reason: reasonError},
		{desc: "an earlier start's init", rec: &exitRecord{ID: "c1", Pid: 41, ExitCode: 137, ExitedAt: at}, pid: 42, code: exitCodeUnknown, reason: reasonUnknown},
		{desc: "nothing kept", pid: 42, code: exitCodeUnknown, reason: reasonUnknown},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			root, state := t.TempDir(), t.TempDir()
			r := &Runtime{rootDir: root, stateDir: state, store: newStore(root), events: newBroadcaster()}
			addShownPod(r.store, newPod(podMeta{ID: "pod1"}))
			meta := &containerMeta{ID: "c1", PodID: "pod1", Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}}}
			started := at.Add(-time.Minute)
			if err := writeJSON(r.store.containerStatusPath("c1"), containerStatus{State: runtimeapi.ContainerState_CONTAINER_RUNNING, PID: tc.pid, StartedAt: started}); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(r.containerDir("c1"), 0o700); err != nil {
				t.Fatal(err)
			}
			if tc.rec != nil {
				if err := writeJSON(exitRecordPath(state, "c1"), tc.rec); err != nil {
					t.Fatal(err)
				}
			}
			before := time.Now()
			if err := r.recoverContainer(t.Context(), lostTaskContainer{meta: meta}); err != nil {
				t.Fatal(err)
			}
			c := r.store.containerExact("c1")
			if c == nil {
				t.Fatal("container not recovered")
			}
			var disk containerStatus
			if ok, err := readJSON(r.store.containerStatusPath("c1"), &disk); err != nil || !ok {
				t.Fatalf("checkpoint: %v, %v", ok, err)
			}
			for what, st := range map[string]containerStatus{"status": r.store.containerStatusOf(c), "checkpoint": disk} {
				if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != tc.code || st.Reason != tc.reason || st.PID != 0 || !st.StartedAt.Equal(started) {
					t.Errorf("%s %+v, want exited %d %s", what, st, tc.code, tc.reason)
				}
				if !tc.at.IsZero() && !st.FinishedAt.Equal(tc.at) || tc.at.IsZero() && st.FinishedAt.Before(before) {
					t.Errorf("%s finished at %s, want %s (or now when none was kept)", what, st.FinishedAt, tc.at)
				}
			}
			select {
			case <-c.exited:
			default:
				t.Error("exit not closed")
			}
			if _, err := os.Stat(exitRecordPath(state, "c1")); !os.IsNotExist(err) {
				t.Errorf("kept exit left after recovery: %v", err)
			}
		})
	}
}
