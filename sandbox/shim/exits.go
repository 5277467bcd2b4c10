package shim

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"k8s.io/klog/v2"
)

// containerd, when it starts, loads the shim of every task bundle and
// deletes the task of a shim that runs no process and is not a sandbox's
// ("cleaning leaked shim process", core/runtime/v2 loadShim), and with it
// the task's exit status. A task that exited while no containerd ran (a
// graceful stop of accel-cri stops its containerd; a containerd that died)
// is such a task. Its shim still holds the exit until then: StoppedExits
// reads it, so that the core can keep it before containerd starts.

// harvestParallel bounds the shims asked at once.
const harvestParallel = 8

// Exit is how a stopped task ended, as its shim holds it.
type Exit struct {
	// ID is the task's (the container's) id, Pid its init process.
	ID  string
	Pid uint32
	// Status is the exit status, At when the process exited.
	Status uint32
	At     time.Time
}

// StoppedExits asks the shim of every task bundle of the namespace for its
// task's state and returns the exits of the tasks that stopped. It only
// reads: bundles, and the task API's State. Bundles without a ttrpc v3
// shim on a unix socket (bootstrap.json), and shims that do not answer
// within the dial and call timeouts, are passed over. Meant for the moment
// no containerd of these bundles runs: one that runs may delete a task in
// between.
func (s *Shims) StoppedExits(ctx context.Context) []Exit {
	if s == nil || s.bundleRoot == "" {
		return nil
	}
	nsDir := filepath.Join(s.bundleRoot, s.namespace)
	entries, err := os.ReadDir(nsDir)
	if err != nil {
		if !os.IsNotExist(err) {
			klog.ErrorS(err, "Cannot list task bundles for their exits", "dir", nsDir)
		}
		return nil
	}
	// A pod's tasks share one shim: one connection per socket.
	bySocket := map[string][]string{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || !e.IsDir() {
			continue // being removed (containerd renames before it deletes)
		}
		socket, err := readSocket(filepath.Join(nsDir, e.Name()))
		if err != nil {
			klog.V(2).InfoS("Task bundle names no shim to ask for its exit", "task", e.Name(), "err", err)
			continue
		}
		bySocket[socket] = append(bySocket[socket], e.Name())
	}
	var (
		mu    sync.Mutex
		exits []Exit
		wg    sync.WaitGroup
		slots = make(chan struct{}, harvestParallel)
	)
	for socket, ids := range bySocket {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			found := stoppedIn(ctx, socket, ids)
			mu.Lock()
			exits = append(exits, found...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return exits
}

// stoppedIn asks the shim at socket for the state of tasks ids and returns
// the exits of the stopped ones. A shim that does not answer is asked no
// more.
func stoppedIn(ctx context.Context, socket string, ids []string) []Exit {
	client, err := dial(ctx, socket)
	if err != nil {
		klog.V(2).InfoS("Shim does not answer; its tasks' exits are not read", "socket", socket, "tasks", ids, "err", err)
		return nil
	}
	defer client.Close()
	svc := taskapi.NewTTRPCTaskClient(client)
	var exits []Exit
	for _, id := range ids {
		cctx, cancel := context.WithTimeout(ctx, dialTimeout)
		st, err := svc.State(cctx, &taskapi.StateRequest{ID: id})
		timedOut := cctx.Err() != nil
		cancel()
		if err != nil {
			klog.V(2).InfoS("Shim did not tell a task's state", "task", id, "socket", socket, "err", err)
			if timedOut || IsConnError(err) {
				return exits
			}
			continue // not its task (NotFound): another may be
		}
		if st.Status != tasktypes.Status_STOPPED {
			continue
		}
		e := Exit{ID: id, Pid: st.Pid, Status: st.ExitStatus}
		if st.ExitedAt != nil {
			e.At = st.ExitedAt.AsTime()
		}
		exits = append(exits, e)
	}
	return exits
}
