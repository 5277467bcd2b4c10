package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// baselineRev is the accel-cri whose state this one must adopt on an
// upgrade: the last commit before sandbox/ was split into sub-packages
// (issue 19). Its pods' containerd records (labels, extensions), status
// checkpoints, pinned namespaces, pod files, FIFOs and netns paths are the
// layout every later accel-cri reads. Move it forward only to a revision
// whose state layout is the one being kept compatible.
const baselineRev = "b11e177fae40d3428f31d7cce93156b7ffe2ca88"

// An operator upgrades accel-cri in place (SIGTERM, start the new binary on
// the same --root and --state; the managed containerd and the shims keep
// running, as kubelet's pods do): every pod and container the old binary
// made is adopted with its identity, state, exit codes, network and logs,
// and can be driven to the end by the new one.
func TestUpgradeAdoption(t *testing.T) {
	old := framework.BinaryAt(t, baselineRev)
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	imgs := framework.PushTestImages(t, reg, "library/")
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{SandboxImage: imgs.Pause.Ref, WithCNI: true, Binary: old})
	e := podEnv{AccelCRI: a, imgs: imgs}
	ctx := ctxT(t, 10*time.Minute)
	if _, err := a.Images.PullImage(ctx, spec(imgs.Busybox.Ref), nil, nil); err != nil {
		t.Fatal(err)
	}

	// Made by the old binary: an infra-less pod (pinned UTS/IPC
	// namespaces) and a pod with a pause process (shared PID namespace),
	// with a running, an exited, a created container and one that exits
	// while no accel-cri runs.
	lightID, light := e.runPod(t, "light")
	pausedID, paused := e.runPod(t, "paused", func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	})
	ticker := e.busybox("ticker", `i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.1; done`)
	tid := e.RunContainer(t, lightID, light, ticker)
	quitter := e.busybox("quitter", `exit 7`)
	qid := e.RunContainer(t, lightID, light, quitter)
	sleeper := e.busybox("sleeper", `echo up; sleep 3600`)
	sid := e.RunContainer(t, pausedID, paused, sleeper)
	// late exits when the test says so, while no accel-cri runs, and
	// leaves a mark on the host when it is about to.
	signals := filepath.Join(a.Dir, "upgrade-signals")
	if err := os.MkdirAll(signals, 0o755); err != nil {
		t.Fatal(err)
	}
	late := e.busybox("late", `while [ ! -e /signals/go ]; do sleep 0.1; done; touch /signals/exiting; exit 9`)
	late.Mounts = []*runtimeapi.Mount{{ContainerPath: "/signals", HostPath: signals}}
	lid := e.RunContainer(t, pausedID, paused, late)
	created := framework.ContainerConfig("created", imgs.Busybox.Ref, "sh", "-c", "echo created-ran; sleep 3600")
	cid, err := a.Runtime.CreateContainer(ctx, pausedID, created, paused)
	if err != nil {
		t.Fatal(err)
	}
	framework.WaitLog(t, logPath(light, ticker), "tick 3", 30*time.Second)
	framework.WaitLog(t, logPath(paused, sleeper), "up", 30*time.Second)
	qBefore := e.WaitContainer(t, qid, exited, 30*time.Second)
	execIn(t, e, tid, "before")

	pods := map[string]*runtimeapi.PodSandboxStatus{}
	for _, id := range []string{lightID, pausedID} {
		st, err := a.Runtime.PodSandboxStatus(ctx, id, false)
		if err != nil {
			t.Fatal(err)
		}
		pods[id] = st.Status
	}
	ctrs := map[string]*runtimeapi.ContainerStatus{}
	for _, id := range []string{tid, qid, sid, cid} {
		st, err := a.Runtime.ContainerStatus(ctx, id, false)
		if err != nil {
			t.Fatal(err)
		}
		ctrs[id] = st.Status
	}

	// The upgrade: the old binary stops (SIGTERM), a container exits
	// while none runs, the new binary starts on the same state.
	a.Stop(t)
	if err := os.WriteFile(filepath.Join(signals, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(signals, "exiting")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the container told to exit during the upgrade did not")
		}
	}
	a.StartBinary(t, framework.Binary(t))

	// Identity and state are as the old binary reported them.
	list, err := a.Runtime.ListPodSandbox(ctx, nil)
	if err != nil || len(list) != 2 {
		t.Fatalf("pods after the upgrade: %v, %v", list, err)
	}
	for id, before := range pods {
		st, err := a.Runtime.PodSandboxStatus(ctx, id, false)
		if err != nil {
			t.Fatalf("pod %s after the upgrade: %v", id, err)
		}
		after := st.Status
		if after.State != runtimeapi.PodSandboxState_SANDBOX_READY || after.CreatedAt != before.CreatedAt ||
			after.GetNetwork().GetIp() != before.GetNetwork().GetIp() || after.GetMetadata().GetName() != before.GetMetadata().GetName() {
			t.Errorf("pod %s across the upgrade:\n before %v\n after  %v", id, before, after)
		}
	}
	for _, id := range []string{tid, sid} {
		after := e.WaitContainer(t, id, running, 10*time.Second)
		if after.StartedAt != ctrs[id].StartedAt || after.ImageRef != ctrs[id].ImageRef || after.LogPath != ctrs[id].LogPath {
			t.Errorf("running container %s across the upgrade:\n before %v\n after  %v", id, ctrs[id], after)
		}
	}
	q := e.WaitContainer(t, qid, exited, 10*time.Second)
	if q.ExitCode != 7 || q.Reason != "Error" || q.FinishedAt != qBefore.FinishedAt {
		t.Errorf("exited container across the upgrade: exit %d reason %q finished %d, want 7 Error %d", q.ExitCode, q.Reason, q.FinishedAt, qBefore.FinishedAt)
	}
	// The exit that happened around the upgrade is reported with its code.
	if l := e.WaitContainer(t, lid, exited, 30*time.Second); l.ExitCode != 9 {
		t.Errorf("container that exited during the upgrade: exit %d reason %q, want 9", l.ExitCode, l.Reason)
	}
	e.WaitContainer(t, cid, runtimeapi.ContainerState_CONTAINER_CREATED, 5*time.Second)

	// Output is attached again, execs reach the old binary's shims, and the
	// created container starts in the pod the old binary made.
	n := strings.Count(framework.LogContent(t, logPath(light, ticker)), "tick ")
	framework.WaitLog(t, logPath(light, ticker), "tick "+strconv.Itoa(n+5), 30*time.Second)
	execIn(t, e, tid, "after-upgrade")
	execIn(t, e, sid, "after-upgrade")
	if err := a.Runtime.StartContainer(ctx, cid); err != nil {
		t.Fatalf("start a container the old binary created: %v", err)
	}
	framework.WaitLog(t, logPath(paused, created), "created-ran", 30*time.Second)
	if err := a.Runtime.ReopenContainerLog(ctx, tid); err != nil {
		t.Errorf("reopen the log of an adopted container: %v", err)
	}

	// A new pod next to the adopted ones, then everything to the end.
	newID, newPod := e.runPod(t, "after")
	e.RunContainer(t, newID, newPod, e.busybox("fresh", "sleep 3600"))
	for _, id := range []string{lightID, pausedID, newID} {
		if err := a.Runtime.StopPodSandbox(ctx, id); err != nil {
			t.Fatalf("stop pod %s: %v\n%s", id, err, a.LogTail(30))
		}
	}
	for _, id := range []string{tid, sid, cid} {
		if st := e.WaitContainer(t, id, exited, 30*time.Second); st == nil {
			t.Fatalf("container %s not exited after its pod stopped", id)
		}
	}
	for _, id := range []string{lightID, pausedID, newID} {
		if err := a.Runtime.RemovePodSandbox(ctx, id); err != nil {
			t.Fatalf("remove pod %s: %v\n%s", id, err, a.LogTail(30))
		}
	}
	if list, err := a.Runtime.ListContainers(ctx, nil); err != nil || len(list) != 0 {
		t.Errorf("containers left after removing every pod: %v, %v", list, err)
	}
}
