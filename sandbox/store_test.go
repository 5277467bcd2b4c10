package sandbox

import (
	"fmt"
	"sync"
	"testing"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A pod RunPodSandbox is still making (its NRI RunPodSandbox hook may be
// running) is the exit monitor's to find, not the CRI's: no lookup, list
// or id prefix reaches it until showPod.
func TestPodHiddenUntilShown(t *testing.T) {
	s := newStore(t.TempDir())
	cfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"}}
	p := newPod(podMeta{ID: "abcdef", Config: cfg})
	s.addPod(p)

	if _, err := s.pod("abcdef"); !errdefs.IsNotFound(err) {
		t.Errorf("pod(full id) of a pod being made = %v; want NotFound", err)
	}
	if _, err := s.pod("abc"); !errdefs.IsNotFound(err) {
		t.Errorf("pod(prefix) of a pod being made = %v; want NotFound", err)
	}
	if got := s.listPods(); len(got) != 0 {
		t.Errorf("listPods = %d pods while one is being made; want none", len(got))
	}
	if s.podExact("abcdef") != p {
		t.Error("podExact does not find the pod being made; the exit monitor needs it")
	}

	s.showPod(p)
	if got, err := s.pod("abc"); err != nil || got != p {
		t.Errorf("pod(prefix) after showPod = %v, %v; want the pod", got, err)
	}
	if got := s.listPods(); len(got) != 1 || got[0] != p {
		t.Errorf("listPods after showPod = %v; want the pod", got)
	}
}

// setPodStatus and setContainerStatus give a test's pod or container the
// status st, through the one update path.
func (s *store) setPodStatus(p *Pod, st podStatus) error {
	_, err := s.updatePod(p, func(podStatus) (podStatus, error) { return st, nil })
	return err
}

func (s *store) setContainerStatus(c *Container, st containerStatus) error {
	_, err := s.updateContainer(c, func(containerStatus) (containerStatus, error) { return st, nil })
	return err
}

// containerdCall stands for the containerd round trips (LoadContainer,
// Spec, Update, the task's Update) updateContainerResources makes between
// reading the status and recording the new resources.
const containerdCall = 200 * time.Microsecond

func newStatusRuntime(t *testing.T) *Runtime {
	return &Runtime{store: newStore(t.TempDir()), events: newBroadcaster()}
}

// runningContainer is a started container of r, pid 42.
func runningContainer(t *testing.T, r *Runtime, id string) *Container {
	t.Helper()
	c := newContainer(containerMeta{ID: id})
	r.store.addContainer(c)
	if err := r.store.setContainerStatus(c, containerStatus{State: runtimeapi.ContainerState_CONTAINER_RUNNING, PID: 42, StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	c.markStartDone()
	return c
}

func diskStatus(t *testing.T, s *store, id string) containerStatus {
	t.Helper()
	var st containerStatus
	if ok, err := readJSON(s.containerStatusPath(id), &st); err != nil || !ok {
		t.Fatalf("checkpoint of %s: %v, %v", id, ok, err)
	}
	return st
}

// UpdateContainerResources holds the container's lock, reads a running
// status, asks containerd, then records the resources; the exit monitor
// does not take that lock. An exit recorded in between used to be
// overwritten by RUNNING, and with the exit recorded once, lost: the
// container looked running for good. Both changes must survive, in memory
// and in the checkpoint, whichever lands first.
func TestStatusRaceResourceUpdateAgainstExit(t *testing.T) {
	r := newStatusRuntime(t)
	for i := range 200 {
		c := runningContainer(t, r, fmt.Sprint("c", i))
		res := &runtimeapi.LinuxContainerResources{CpuShares: int64(2 + i)}
		read := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { // updateContainerResources, containerd's part left out
			defer wg.Done()
			c.mu.Lock()
			defer c.mu.Unlock()
			if st := r.store.containerStatusOf(c); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
				t.Errorf("iteration %d: status %s before the update", i, st.State)
			}
			close(read)
			time.Sleep(containerdCall)
			if _, err := r.store.updateContainer(c, func(cur containerStatus) (containerStatus, error) {
				cur.Resources = res
				return cur, nil
			}); err != nil {
				t.Error(err)
			}
		}()
		go func() { // the exit monitor
			defer wg.Done()
			<-read
			r.recordExit(c, exitInfo{code: 3, at: time.Now(), pid: 42}.after)
		}()
		wg.Wait()
		for where, st := range map[string]containerStatus{"published": r.store.containerStatusOf(c), "checkpoint": diskStatus(t, r.store, c.ID)} {
			if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 3 || st.Resources.GetCpuShares() != res.CpuShares {
				t.Fatalf("iteration %d: %s status %s exit %d shares %d; want EXITED 3 with shares %d", i, where, st.State, st.ExitCode, st.Resources.GetCpuShares(), res.CpuShares)
			}
		}
	}
}

// An OOM event (the monitor's real path) racing the exit: the exit and the
// OOM mark both stay, in memory and in the checkpoint.
func TestStatusRaceOOMAgainstExit(t *testing.T) {
	r := newStatusRuntime(t)
	m := &monitor{r: r}
	for i := range 500 {
		c := runningContainer(t, r, fmt.Sprint("c", i))
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); <-start; m.handle(&eventtypes.TaskOOM{ContainerID: c.ID}) }()
		go func() {
			defer wg.Done()
			<-start
			r.recordExit(c, exitInfo{code: 137, at: time.Now(), pid: 42}.after)
		}()
		close(start)
		wg.Wait()
		for where, st := range map[string]containerStatus{"published": r.store.containerStatusOf(c), "checkpoint": diskStatus(t, r.store, c.ID)} {
			if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 || !st.OOMKilled {
				t.Fatalf("iteration %d: %s status %s exit %d oom %v; want EXITED 137 OOMKilled", i, where, st.State, st.ExitCode, st.OOMKilled)
			}
		}
	}
}

// UpdatePodSandboxResources (the real call, NRI off) racing the pause's
// exit: the pod must end NOTREADY without a pause, never READY again.
func TestStatusRacePodResourceUpdateAgainstPauseExit(t *testing.T) {
	r := newStatusRuntime(t)
	for i := range 1000 {
		p := newPod(podMeta{ID: fmt.Sprint("p", i)})
		addShownPod(r.store, p)
		if err := r.store.setPodStatus(p, podStatus{State: runtimeapi.PodSandboxState_SANDBOX_READY, PID: 7}); err != nil {
			t.Fatal(err)
		}
		res := &runtimeapi.LinuxContainerResources{CpuShares: int64(2 + i)}
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			// FailedPrecondition when the exit came first.
			_ = r.UpdatePodResources(t.Context(), p.ID, nil, res)
		}()
		go func() { defer wg.Done(); <-start; r.recordPodExit(p, pauseGone) }()
		close(start)
		wg.Wait()
		var disk podStatus
		if _, err := readJSON(r.store.podStatusPath(p.ID), &disk); err != nil {
			t.Fatal(err)
		}
		for where, st := range map[string]podStatus{"published": r.store.podStatusOf(p), "checkpoint": disk} {
			if st.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY || st.PID != 0 {
				t.Fatalf("iteration %d: %s pod status %s pid %d after the pause exited; want NOTREADY, pid 0", i, where, st.State, st.PID)
			}
		}
	}
}

// An exit persisted but not yet published (the monitor drains the output
// first) stays in the checkpoint whatever else is written meanwhile: a
// resource update or an OOM mark. Publishing it then clears it.
func TestPendingExitSurvivesOtherWrites(t *testing.T) {
	r := newStatusRuntime(t)
	c := runningContainer(t, r, "c1")
	at := time.Now().Truncate(time.Millisecond)
	exit := exitInfo{code: 9, at: at, pid: 42}
	if err := r.store.persistExit(c, exit); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc  string
		write func()
	}{
		{desc: "resource update", write: func() {
			if _, err := r.store.updateContainer(c, func(st containerStatus) (containerStatus, error) {
				st.Resources = &runtimeapi.LinuxContainerResources{CpuShares: 300}
				return st, nil
			}); err != nil {
				t.Fatal(err)
			}
		}},
		{desc: "OOM mark", write: func() { (&monitor{r: r}).handle(&eventtypes.TaskOOM{ContainerID: c.ID}) }},
	} {
		tc.write()
		if got := r.store.containerStatusOf(c); got.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("after a %s: published %s, want still running until the exit is recorded", tc.desc, got.State)
		}
		disk := diskStatus(t, r.store, c.ID)
		if disk.State != runtimeapi.ContainerState_CONTAINER_EXITED || disk.ExitCode != 9 || !disk.FinishedAt.Equal(at) || disk.PID != 0 {
			t.Errorf("checkpoint after a %s = %s exit %d at %s pid %d; want the persisted exit (EXITED 9 at %s)", tc.desc, disk.State, disk.ExitCode, disk.FinishedAt, disk.PID, at)
		}
	}
	if disk := diskStatus(t, r.store, c.ID); disk.Resources.GetCpuShares() != 300 || !disk.OOMKilled || disk.Reason != reasonOOMKilled {
		t.Errorf("checkpoint %+v lost the other writes (shares 300, OOMKilled)", disk)
	}
	r.recordExit(c, exit.after)
	if got, disk := r.store.containerStatusOf(c), diskStatus(t, r.store, c.ID); got.State != runtimeapi.ContainerState_CONTAINER_EXITED || got.ExitCode != 9 || disk.ExitCode != 9 || c.pendingExit != nil {
		t.Errorf("after recordExit: published %+v, checkpoint %+v, pending %v", got, disk, c.pendingExit)
	}
	// An exit already published is final: a late persistExit changes nothing.
	if err := r.store.persistExit(c, exitInfo{code: 1, at: time.Now()}); err != nil || diskStatus(t, r.store, c.ID).ExitCode != 9 {
		t.Errorf("persistExit after the exit was recorded: %v, checkpoint exit %d; want 9", err, diskStatus(t, r.store, c.ID).ExitCode)
	}
}

// A resource update never brings an exited container back: only the
// resources change.
func TestResourceUpdateKeepsExit(t *testing.T) {
	r := newStatusRuntime(t)
	c := runningContainer(t, r, "c1")
	r.recordExit(c, exitInfo{code: 2, at: time.Now()}.after)
	st, err := r.store.updateContainer(c, func(cur containerStatus) (containerStatus, error) {
		cur.Resources = &runtimeapi.LinuxContainerResources{CpuShares: 4}
		return cur, nil
	})
	if err != nil || st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 2 {
		t.Errorf("update after the exit: %+v, %v; want EXITED 2", st, err)
	}
}
