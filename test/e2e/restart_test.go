package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// accel-cri killed with SIGKILL (its managed containerd keeps running and is
// adopted by the next start) while
// pods run: after the restart every pod and container is listed with its
// state, a container that exited meanwhile reports its exit code and finish
// time, and running containers keep logging.
func TestRestartRecovery(t *testing.T) {
	e := startPodEnv(t)
	ctx := ctxT(t, 5*time.Minute)

	podID, pod := e.runPod(t, "survivor")
	ticker := e.busybox("ticker", `i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.1; done`)
	tid := e.RunContainer(t, podID, pod, ticker)
	quitter := e.busybox("quitter", `sleep 2; exit 7`)
	qid := e.RunContainer(t, podID, pod, quitter)
	created := framework.ContainerConfig("created", e.imgs.Busybox.Ref, "true")
	cid, err := e.Runtime.CreateContainer(ctx, podID, created, pod)
	if err != nil {
		t.Fatal(err)
	}
	framework.WaitLog(t, logPath(pod, ticker), "tick 3", 20*time.Second)
	before, err := e.Runtime.ContainerStatus(ctx, tid, false)
	if err != nil {
		t.Fatal(err)
	}
	podBefore, _ := e.Runtime.PodSandboxStatus(ctx, podID, false)
	execIn(t, e, tid, "before")

	killedAt := time.Now()
	e.Kill(t)
	time.Sleep(3 * time.Second) // quitter exits while nothing is watching
	e.Start(t)

	pods, err := e.Runtime.ListPodSandbox(ctx, nil)
	if err != nil || len(pods) != 1 || pods[0].Id != podID || pods[0].State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("pods after restart: %v, %v", pods, err)
	}
	podAfter, _ := e.Runtime.PodSandboxStatus(ctx, podID, false)
	if podAfter.Status.GetNetwork().GetIp() != podBefore.Status.GetNetwork().GetIp() || podAfter.Status.CreatedAt != podBefore.Status.CreatedAt {
		t.Errorf("pod status changed across restart: %v -> %v", podBefore.Status, podAfter.Status)
	}

	after := e.WaitContainer(t, tid, running, 5*time.Second)
	if after.StartedAt != before.Status.StartedAt {
		t.Errorf("running container's start time changed: %d -> %d", before.Status.StartedAt, after.StartedAt)
	}
	q := e.WaitContainer(t, qid, exited, 10*time.Second)
	if q.ExitCode != 7 || q.Reason != "Error" {
		t.Errorf("quitter: exit %d reason %q, want 7 Error", q.ExitCode, q.Reason)
	}
	if fin := time.Unix(0, q.FinishedAt); fin.Before(killedAt) || fin.After(time.Now()) {
		t.Errorf("quitter finished at %s, killed at %s", fin, killedAt)
	}
	if c := e.WaitContainer(t, cid, runtimeapi.ContainerState_CONTAINER_CREATED, 5*time.Second); c == nil {
		t.Fatal("created container lost")
	}
	// The ticker's output is attached again: new lines keep coming.
	n := strings.Count(framework.LogContent(t, logPath(pod, ticker)), "tick ")
	framework.WaitLog(t, logPath(pod, ticker), "tick "+strconv.Itoa(n+5), 20*time.Second)
	// Execs reach the recovered container's shim (found anew from its task
	// bundle, the old connection died with accel-cri).
	execIn(t, e, tid, "after-kill")
	// And the recovered container can be started, stopped and removed.
	if err := e.Runtime.StartContainer(ctx, cid); err != nil {
		t.Fatalf("start recovered created container: %v", err)
	}
	e.WaitContainer(t, cid, exited, 20*time.Second)
	if err := e.Runtime.StopContainer(ctx, tid, 1); err != nil {
		t.Fatal(err)
	}

	// A graceful restart (SIGTERM) adopts the running pod the same way.
	ticker2 := e.busybox("ticker2", `while true; do echo tock; sleep 0.1; done`)
	t2 := e.RunContainer(t, podID, pod, ticker2)
	e.Restart(t)
	e.WaitContainer(t, t2, running, 5*time.Second)
	execIn(t, e, t2, "after-restart")
	if err := e.Runtime.StopPodSandbox(ctx, podID); err != nil {
		t.Fatal(err)
	}
	if err := e.Runtime.RemovePodSandbox(ctx, podID); err != nil {
		t.Fatal(err)
	}
	if n := dirCount(t, filepath.Join(e.State, "sandbox", "netns")); n != 0 {
		t.Errorf("%d network namespaces left", n)
	}
}

// execIn runs echo word in container id and checks output and exit code.
func execIn(t *testing.T, e podEnv, id, word string) {
	t.Helper()
	out, errOut, err := e.Runtime.ExecSync(ctxT(t, time.Minute), id, []string{"sh", "-c", "echo " + word + "; exit 4"}, 10*time.Second)
	if execExitCode(err) != 4 || string(out) != word+"\n" || len(errOut) != 0 {
		t.Fatalf("ExecSync in %s: stdout %q stderr %q err %v; want %q, exit 4", id, out, errOut, err, word)
	}
}

// TestInterruptedStartRecovery covers a StartContainer cut short by a crash
// of accel-cri after containerd had created the task: the restarted
// accel-cri still has the container as CREATED, and the retried start must
// succeed (not fail on the task containerd kept) and leave one shim.
func TestInterruptedStartRecovery(t *testing.T) {
	e := startPodEnv(t)
	ctx := ctxT(t, 5*time.Minute)

	podID, pod := e.runPod(t, "interrupted")
	cfg := e.busybox("late", `echo started; sleep 3600`)
	cid, err := e.Runtime.CreateContainer(ctx, podID, cfg, pod)
	if err != nil {
		t.Fatal(err)
	}
	// What containerd did for the StartContainer accel-cri did not live to
	// record: the task exists, created but not started.
	client, err := containerd.New(filepath.Join(e.State, "containerd", "containerd.sock"), containerd.WithDefaultNamespace("accel-cri"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctr, err := client.LoadContainer(ctx, cid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctr.NewTask(ctx, cio.NullIO); err != nil {
		t.Fatal(err)
	}
	e.Kill(t)
	e.Start(t)

	if err := e.Runtime.StartContainer(ctx, cid); err != nil {
		t.Fatalf("start after an interrupted start: %v", err)
	}
	e.WaitContainer(t, cid, running, 10*time.Second)
	framework.WaitLog(t, logPath(pod, cfg), "started", 20*time.Second)
	if shims := e.Shims(); len(shims) != 1 {
		t.Errorf("shims after the retried start: %q, want one", shims)
	}
	if err := e.Runtime.StopPodSandbox(ctx, podID); err != nil {
		t.Fatal(err)
	}
	if err := e.Runtime.RemovePodSandbox(ctx, podID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(e.Shims()) != 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if shims := e.Shims(); len(shims) != 0 {
		t.Errorf("shims left after removing the pod: %q", shims)
	}
	bundles, _ := filepath.Glob(filepath.Join(e.State, "containerd", "daemon", "io.containerd.runtime.v2.task", "accel-cri", "*"))
	if len(bundles) != 0 {
		t.Errorf("task bundles left: %v", bundles)
	}
}

// exitOnCue is a container that exits with code when told: when the test
// creates "go" in the host directory signals (cueExit), not before.
func (e podEnv) exitOnCue(t *testing.T, name, signals string, code int) *runtimeapi.ContainerConfig {
	t.Helper()
	if err := os.MkdirAll(signals, 0o755); err != nil {
		t.Fatal(err)
	}
	c := e.busybox(name, `while [ ! -e /signals/go ]; do sleep 0.1; done; exit `+strconv.Itoa(code))
	c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/signals", HostPath: signals}}
	return c
}

// cueExit tells the exitOnCue containers of signals to exit and waits
// until their processes (pids) are gone: their shims have reaped them.
func cueExit(t *testing.T, signals string, pids ...int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(signals, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
			if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); os.IsNotExist(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("container process %d did not exit when told", pid)
			}
		}
	}
}

// accel-cri stopped gracefully (SIGTERM: an operator's restart or upgrade,
// which stops the managed containerd too) while containers exit: the next
// start reports their own exit codes and times, not Unknown/255. containerd,
// starting, deletes the task of a shim whose process exited, exit and all;
// accel-cri reads the exits from the shims before it starts containerd.
// Both shapes of shim: an infra-less pod's, holding nothing but the exited
// task, and a pod's with a pause, which also holds the running pause.
func TestRestartExitWhileStopped(t *testing.T) {
	e := startPodEnv(t)
	ctx := ctxT(t, 5*time.Minute)
	signals := filepath.Join(e.Dir, "exit-signals")

	lightID, light := e.runPod(t, "light")
	pausedID, paused := e.runPod(t, "paused", func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	})
	alone := e.RunContainer(t, lightID, light, e.exitOnCue(t, "alone", signals, 9))
	withPause := e.RunContainer(t, pausedID, paused, e.exitOnCue(t, "with-pause", signals, 0))
	sleeper := e.RunContainer(t, pausedID, paused, e.busybox("sleeper", "sleep 3600"))
	pids := []int{containerPID(t, e, alone), containerPID(t, e, withPause)}

	e.Stop(t)
	stopped := time.Now()
	cueExit(t, signals, pids...)
	e.Start(t)

	for _, want := range []struct {
		id     string
		code   int32
		reason string
	}{{alone, 9, "Error"}, {withPause, 0, "Completed"}} {
		st := e.WaitContainer(t, want.id, exited, 30*time.Second)
		if st.ExitCode != want.code || st.Reason != want.reason {
			t.Errorf("container %s that exited while accel-cri was stopped: exit %d reason %q message %q, want %d %s\n%s",
				want.id, st.ExitCode, st.Reason, st.Message, want.code, want.reason, e.LogTail(30))
		}
		if fin := time.Unix(0, st.FinishedAt); fin.Before(stopped) || fin.After(time.Now()) {
			t.Errorf("container %s finished at %s, stopped at %s", want.id, fin, stopped)
		}
		// The kept exit is gone once it is in the container's checkpoint.
		if _, err := os.Stat(filepath.Join(e.State, "sandbox", "containers", want.id, "exit.json")); !os.IsNotExist(err) {
			t.Errorf("kept exit of %s left after the restart: %v", want.id, err)
		}
	}
	e.WaitContainer(t, sleeper, running, 10*time.Second)
	execIn(t, e, sleeper, "after-restart")

	// Reported again the same way after one more restart, then removed.
	e.Restart(t)
	if st := e.WaitContainer(t, alone, exited, 10*time.Second); st.ExitCode != 9 {
		t.Errorf("exit of %s after a second restart: %d %q", alone, st.ExitCode, st.Reason)
	}
	for _, id := range []string{lightID, pausedID} {
		if err := e.Runtime.StopPodSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := e.Runtime.RemovePodSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if n := dirCount(t, filepath.Join(e.State, "sandbox", "containers")); n != 0 {
		t.Errorf("%d container state dirs left", n)
	}
}
