package sandbox

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/internal/fsutil"
	"github.com/accel-cri/accel-cri/sandbox/shim"
)

// Exits kept from the shims before containerd starts. A task that exits
// while no containerd runs (a graceful stop of accel-cri stops its managed
// containerd; the managed containerd died) keeps its exit in its shim only,
// and the next containerd deletes such a task as a leaked shim's when it
// loads the shims (core/runtime/v2 loadShim), exit and all: recovery, or
// the exit monitor's reconcile, then found no task and reported Unknown
// (255). HarvestExits, run before the managed containerd starts, reads
// those exits and writes each into its container's state directory
// (exit.json); keptExit gives it to whoever finds the task gone, and
// removes it once it is in the container's checkpoint. A record nobody
// needed goes with the container's state directory.

// exitRecordFile is the kept exit, in the container's state directory.
const exitRecordFile = "exit.json"

// exitRecord is a stopped task's exit as its shim held it.
type exitRecord struct {
	ID       string    `json:"id"`
	Pid      uint32    `json:"pid"`
	ExitCode int32     `json:"exitCode"`
	ExitedAt time.Time `json:"exitedAt,omitzero"`
}

// exitRecordPath is where container id's kept exit is, under the runtime's
// volatile state directory (Runtime.containerDir).
func exitRecordPath(stateDir, id string) string {
	return filepath.Join(stateDir, "containers", id, exitRecordFile)
}

// HarvestExits keeps the exits of the stopped tasks of the managed
// containerd's shims (see above). Call it while no containerd of those task
// bundles runs, before one starts; stateDir is the runtime's volatile state
// directory (WithDirs), shims locate the managed containerd's task bundles
// (WithTaskBundles, WithNamespace). Only app containers' exits are kept
// (their state directory exists); a pod's pause needs none. It never
// signals a shim or changes a task. It returns how many exits it kept.
func HarvestExits(ctx context.Context, stateDir string, shims shim.Config) int {
	s := shim.New(shims)
	defer s.Close()
	return keepExits(stateDir, s.StoppedExits(ctx))
}

// keepExits writes the exit records of the app containers among exits.
func keepExits(stateDir string, exits []shim.Exit) int {
	kept := 0
	for _, e := range exits {
		path := exitRecordPath(stateDir, e.ID)
		if _, err := os.Stat(filepath.Dir(path)); err != nil {
			continue
		}
		b, err := json.Marshal(exitRecord{ID: e.ID, Pid: e.Pid, ExitCode: int32(e.Status), ExitedAt: e.At})
		if err == nil {
			err = fsutil.ReplaceFile(path, b, 0o600)
		}
		if err != nil {
			klog.ErrorS(err, "Cannot keep the exit of a task that stopped while no containerd ran", "container", e.ID, "exitCode", e.Status)
			continue
		}
		klog.InfoS("Kept the exit of a task that stopped while no containerd ran", "container", e.ID, "exitCode", e.Status, "exitedAt", e.At)
		kept++
	}
	return kept
}

// keptExit returns the exit HarvestExits kept for container id's task
// whose pid the container's status records (0: not known), when its task
// is gone from containerd. A record of another process (the init of an
// earlier, cut-short start) is dropped. The caller checkpoints the exit,
// then drops the record (dropKeptExit); a crash in between keeps it for
// the next start.
func (r *Runtime) keptExit(id string, pid uint32) (exitInfo, bool) {
	path := exitRecordPath(r.stateDir, id)
	var rec exitRecord
	if found, err := readJSON(path, &rec); err != nil || !found {
		return exitInfo{}, false
	}
	if rec.ID != id || (pid != 0 && rec.Pid != pid) {
		klog.V(2).InfoS("Dropping a kept exit of another process than the container's task", "container", id, "pid", rec.Pid, "taskPid", pid)
		_ = os.Remove(path)
		return exitInfo{}, false
	}
	klog.InfoS("Exit of a task containerd no longer has, as its shim kept it", "container", id, "exitCode", rec.ExitCode, "exitedAt", rec.ExitedAt)
	return exitInfo{code: rec.ExitCode, at: rec.ExitedAt, pid: rec.Pid}, true
}

// dropKeptExit removes container id's kept exit once its checkpoint holds it.
func (r *Runtime) dropKeptExit(id string) { _ = os.Remove(exitRecordPath(r.stateDir, id)) }
