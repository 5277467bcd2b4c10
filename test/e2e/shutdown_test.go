package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// containerPID reads the host pid of a container's process from the
// verbose ContainerStatus.
func containerPID(t *testing.T, e podEnv, id string) int {
	t.Helper()
	resp, err := e.Runtime.ContainerStatus(ctxT(t, 30*time.Second), id, true)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil || info.PID == 0 {
		t.Fatalf("verbose status of %s has no pid (%v): %v", id, err, resp.Info)
	}
	return info.PID
}

// SIGTERM while RunPodSandbox, CreateContainer, ExecSync (short and longer
// than the grace period) and ListContainers are in flight: accel-cri stops
// taking calls, lets those in flight finish for the grace period, cancels
// the rest, and exits 0. Every call either completed or failed with
// Unavailable/Canceled; nothing is half made; the running container keeps
// its process and the next start adopts it (status, logs, exec).
func TestGracefulShutdownInFlight(t *testing.T) {
	e := startPodEnv(t)
	ctx := ctxT(t, 5*time.Minute)

	podID, pod := e.runPod(t, "keeper")
	ticker := e.busybox("ticker", `i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.1; done`)
	tid := e.RunContainer(t, podID, pod, ticker)
	framework.WaitLog(t, logPath(pod, ticker), "tick 3", 20*time.Second)
	pid := containerPID(t, e, tid)

	type result struct {
		call, id string
		err      error
		took     time.Duration
	}
	var mu sync.Mutex
	var results []result
	var wg sync.WaitGroup
	launch := func(call string, f func() (string, error)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			id, err := f()
			mu.Lock()
			results = append(results, result{call: call, id: id, err: err, took: time.Since(start)})
			mu.Unlock()
		}()
	}
	rt := e.Runtime
	for i := range 4 {
		cfg := e.PodConfig(t, fmt.Sprintf("inflight-%d", i))
		launch("RunPodSandbox", func() (string, error) { return rt.RunPodSandbox(ctx, cfg, "") })
	}
	for i := range 3 {
		cfg := e.busybox(fmt.Sprintf("late-%d", i), "sleep 3600")
		launch("CreateContainer", func() (string, error) { return rt.CreateContainer(ctx, podID, cfg, pod) })
	}
	for range 3 {
		launch("ExecSync 3s", func() (string, error) {
			_, _, err := rt.ExecSync(ctx, tid, []string{"sleep", "3"}, 30*time.Second)
			return "", err
		})
	}
	// Longer than the grace period (10s): cancelled, and its process killed.
	launch("ExecSync 40s", func() (string, error) {
		_, _, err := rt.ExecSync(ctx, tid, []string{"sleep", "40"}, time.Minute)
		return "", err
	})
	for range 4 {
		launch("ListContainers", func() (string, error) {
			_, err := rt.ListContainers(ctx, nil)
			return "", err
		})
	}
	// Most calls are still running when the signal comes.
	time.Sleep(150 * time.Millisecond)
	termAt := time.Now()
	if err := e.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := e.Wait(45 * time.Second); err != nil {
		t.Fatalf("accel-cri after SIGTERM: %v\n%s", err, e.LogTail(30))
	}
	stopTook := time.Since(termAt)
	wg.Wait()

	madePods, madeCtrs := map[string]bool{}, map[string]bool{}
	completed, refused := 0, 0
	for _, r := range results {
		switch code := status.Code(r.err); {
		case r.err == nil:
			completed++
			switch r.call {
			case "RunPodSandbox":
				madePods[r.id] = true
			case "CreateContainer":
				madeCtrs[r.id] = true
			}
		case code == codes.Unavailable || code == codes.Canceled:
			refused++
		default:
			t.Errorf("%s ended with %s (%v) after %s, want success, Unavailable or Canceled", r.call, code, r.err, r.took)
		}
		t.Logf("%-15s took %6s: %v", r.call, r.took.Round(time.Millisecond), r.err)
	}
	t.Logf("SIGTERM to exit: %s; %d calls completed, %d refused or cancelled", stopTook.Round(time.Millisecond), completed, refused)
	if completed == 0 {
		t.Error("no call in flight completed during the grace period")
	}

	// The container's process outlived accel-cri and its containerd.
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || !strings.HasPrefix(string(b), "sh") {
		t.Fatalf("container process %d gone across the stop: %q, %v", pid, b, err)
	}

	e.Start(t)
	// Adopted: same process, still running, logging, exec works.
	st := e.WaitContainer(t, tid, running, 10*time.Second)
	if got := containerPID(t, e, tid); got != pid {
		t.Errorf("container pid %d after the restart, was %d", got, pid)
	}
	if st.StartedAt == 0 {
		t.Error("adopted container has no start time")
	}
	n := strings.Count(framework.LogContent(t, logPath(pod, ticker)), "tick ")
	framework.WaitLog(t, logPath(pod, ticker), fmt.Sprintf("tick %d", n+3), 20*time.Second)
	out, _, err := e.Runtime.ExecSync(ctx, tid, []string{"echo", "adopted"}, 10*time.Second)
	if err != nil || strings.TrimSpace(string(out)) != "adopted" {
		t.Errorf("exec after the restart: %q, %v", out, err)
	}
	// The cancelled long exec left no process behind.
	execs, _, err := e.Runtime.ExecSync(ctx, tid, []string{"sh", "-c", "ps -o args | grep -c '^sleep 40' || true"}, 10*time.Second)
	if err != nil || strings.TrimSpace(string(execs)) != "0" {
		t.Errorf("sleep 40 processes left in the container: %q, %v", execs, err)
	}

	// Nothing half made: every pod listed is the keeper or one whose
	// RunPodSandbox succeeded, and ready; the containers are the ticker
	// and those whose CreateContainer succeeded.
	pods, err := e.Runtime.ListPodSandbox(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		if p.Id != podID && !madePods[p.Id] {
			t.Errorf("pod %s (%s) listed, but its RunPodSandbox failed", p.Id, p.Metadata.Name)
		}
		if p.State != runtimeapi.PodSandboxState_SANDBOX_READY {
			t.Errorf("pod %s is %s after the restart", p.Metadata.Name, p.State)
		}
	}
	if len(pods) != 1+len(madePods) {
		t.Errorf("%d pods listed, want the keeper and %d made", len(pods), len(madePods))
	}
	if n := dirCount(t, e.State+"/sandbox/netns"); n != len(pods) {
		t.Errorf("%d network namespaces for %d pods", n, len(pods))
	}
	ctrs, err := e.Runtime.ListContainers(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range ctrs {
		if c.Id != tid && !madeCtrs[c.Id] {
			t.Errorf("container %s (%s, %s) listed, but its CreateContainer failed", c.Id, c.Metadata.Name, c.State)
		}
		if c.Id != tid && c.State != runtimeapi.ContainerState_CONTAINER_CREATED {
			t.Errorf("container %s is %s, want created", c.Metadata.Name, c.State)
		}
	}
	if len(ctrs) != 1+len(madeCtrs) {
		t.Errorf("%d containers listed, want the ticker and %d made", len(ctrs), len(madeCtrs))
	}
}
