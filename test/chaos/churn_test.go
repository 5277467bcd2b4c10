//go:build chaos || soak

package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// kind is a CRI call the churn makes; in-flight calls are counted per kind
// so the killer can strike while one of them runs.
type kind int

const (
	kRun kind = iota
	kCreate
	kStart
	kStop
	kRemove
	kOther
	numKinds
)

var kindNames = [numKinds]string{"RunPodSandbox", "CreateContainer", "StartContainer", "StopPodSandbox", "RemovePodSandbox", "List/Status"}

func (k kind) String() string { return kindNames[k] }

// errInterrupted marks a call that failed while a kill was under way: it
// may or may not have taken effect, and the churn finds out which.
var errInterrupted = errors.New("interrupted by a kill")

// env is one accel-cri under churn, the client-side model of what it
// acknowledged, and the bookkeeping that lets a killer stop the world.
type env struct {
	*framework.AccelCRI
	t    testing.TB
	imgs framework.TestImages

	// world is held shared by every CRI call and exclusively by the
	// killer from the kill until the restarted accel-cri is verified.
	world    sync.RWMutex
	killing  atomic.Bool
	gen      atomic.Int64
	inflight [numKinds]atomic.Int32
	// interrupted counts calls cut short by a kill, per kind.
	interrupted [numKinds]atomic.Int64
	// kills counts SIGKILLs of accel-cri or containerd so far.
	kills atomic.Int64
	// ctrdKills counts SIGKILLs of the managed containerd.
	ctrdKills atomic.Int64

	model model
	// snapshotRetries counts creates retried after a snapshot id collision.
	snapshotRetries atomic.Int64
	// startsLost counts starts that failed after an attempt cut short.
	startsLost atomic.Int64
	// lifecycles counts pods run to removal.
	lifecycles atomic.Int64
	errMu      sync.Mutex
	errs       []string
}

func startEnv(t *testing.T) *env {
	t.Helper()
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	imgs := framework.PushTestImages(t, reg, "library/")
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{SandboxImage: imgs.Pause.Ref, WithCNI: true, Debug: true})
	// Registered after the framework's cleanup, so it runs first: a failed
	// run keeps accel-cri's and containerd's logs for the post-mortem.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		keep, err := os.MkdirTemp("", "acri-chaos-logs-")
		if err != nil {
			return
		}
		for _, f := range []string{a.LogPath, filepath.Join(a.State, "containerd", "containerd.log")} {
			if b, err := os.ReadFile(f); err == nil {
				_ = os.WriteFile(filepath.Join(keep, filepath.Base(f)), b, 0o644)
			}
		}
		t.Logf("logs kept in %s", keep)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := a.Images.PullImage(ctx, &runtimeapi.ImageSpec{Image: imgs.Busybox.Ref}, nil, nil); err != nil {
		t.Fatal(err)
	}
	return &env{AccelCRI: a, t: t, imgs: imgs, model: model{pods: map[string]*podModel{}}}
}

// call runs one CRI call under the shared world lock and counts it as in
// flight. A failure while a kill is under way is errInterrupted.
func (e *env) call(k kind, fn func(ctx context.Context, rs internalapi.RuntimeService) error) error {
	e.world.RLock()
	defer e.world.RUnlock()
	g := e.gen.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e.inflight[k].Add(1)
	err := fn(ctx, e.Runtime)
	e.inflight[k].Add(-1)
	if err != nil && (e.killing.Load() || e.gen.Load() != g) {
		e.interrupted[k].Add(1)
		return fmt.Errorf("%w: %v", errInterrupted, err)
	}
	return err
}

// retry repeats an idempotent step while kills interrupt it.
func (e *env) retry(k kind, step func(ctx context.Context, rs internalapi.RuntimeService) error) error {
	var err error
	for range 30 {
		if err = e.call(k, step); !errors.Is(err, errInterrupted) {
			return err
		}
	}
	return fmt.Errorf("%s still interrupted after 30 attempts: %w", k, err)
}

// retryTransient is retry that also waits out containerd's overlayfs
// snapshotter reusing, after containerd was SIGKILLed, a snapshot id whose
// directory survived ("rename .../snapshots/new-N .../snapshots/ID: file
// exists"): RunPodSandbox and CreateContainer fail until containerd's garbage collector removes the
// orphan directory. Only after a containerd kill; counted.
func (e *env) retryTransient(k kind, step func(ctx context.Context, rs internalapi.RuntimeService) error) error {
	for range 60 {
		err := e.retry(k, step)
		if err == nil || e.ctrdKills.Load() == 0 || !strings.Contains(err.Error(), "snapshots/") || !strings.Contains(err.Error(), "file exists") {
			return err
		}
		e.snapshotRetries.Add(1)
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("%s: snapshot id collision did not clear in 30s", k)
}

func (e *env) fail(format string, args ...any) {
	e.errMu.Lock()
	defer e.errMu.Unlock()
	e.errs = append(e.errs, fmt.Sprintf(format, args...))
}

func (e *env) failures() []string {
	e.errMu.Lock()
	defer e.errMu.Unlock()
	return append([]string(nil), e.errs...)
}

// The model: what the runtime acknowledged, and what a call in flight (or
// cut short) may have done.
type podState int

const (
	podRunning  podState = iota // RunPodSandbox sent, not acknowledged
	podReady                    // acknowledged
	podStopping                 // StopPodSandbox sent
	podStopped                  // acknowledged
	podRemoving                 // RemovePodSandbox sent
)

var podStateNames = []string{"running", "ready", "stopping", "stopped", "removing"}

type ctrState int

const (
	ctrCreating ctrState = iota
	ctrCreated
	ctrStarting
	ctrStarted
)

var ctrStateNames = []string{"creating", "created", "starting", "started"}

type podModel struct {
	uid, name string
	cfg       *runtimeapi.PodSandboxConfig
	id        string
	state     podState
	ctrs      []*ctrModel
}

type ctrModel struct {
	name string
	cfg  *runtimeapi.ContainerConfig
	id   string
	// exitCode is what the container exits with by itself; -1 runs until stopped.
	exitCode  int32
	state     ctrState
	ctrdKills int64 // containerd kills before the start was acknowledged
	// startLost: the start failed (StartError) after an earlier attempt
	// was cut short by a kill.
	startLost bool
}

type model struct {
	mu   sync.Mutex
	pods map[string]*podModel // by uid; removed pods are dropped
}

func (m *model) update(fn func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fn()
}

// lifecycle runs one pod through Run, two Creates and Starts (a container
// with an image volume that runs until stopped and one that exits by
// itself with a known code after a short random time), a short life, Stop
// and Remove. Every step survives kills: it is retried after finding out
// what the runtime did.
func (e *env) lifecycle(rng *rand.Rand, n int) error {
	name := fmt.Sprintf("churn-%d", n)
	cfg := e.PodConfig(e.t, name)
	uid := cfg.Metadata.Uid
	cfg.Labels["chaos-uid"] = uid
	pm := &podModel{uid: uid, name: name, cfg: cfg}
	e.model.update(func() { e.model.pods[uid] = pm })

	// Run: adopt the pod an interrupted Run made, else run it.
	err := e.retryTransient(kRun, func(ctx context.Context, rs internalapi.RuntimeService) error {
		found, err := rs.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"chaos-uid": uid}})
		if err != nil {
			return err
		}
		switch {
		case len(found) > 1:
			return fmt.Errorf("pod %s listed %d times", name, len(found))
		case len(found) == 1 && found[0].State != runtimeapi.PodSandboxState_SANDBOX_READY:
			return fmt.Errorf("pod %s half made: listed %s after an interrupted RunPodSandbox", name, found[0].State)
		case len(found) == 1:
			e.model.update(func() { pm.id, pm.state = found[0].Id, podReady })
			return nil
		}
		id, err := rs.RunPodSandbox(ctx, cfg, "")
		if err == nil {
			e.model.update(func() { pm.id, pm.state = id, podReady })
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("RunPodSandbox %s: %w", name, err)
	}

	sleeper := framework.ContainerConfig("sleeper", e.imgs.Busybox.Ref, "sleep", "3600")
	// An image volume: a view snapshot and a host mount per container,
	// which kills must not leave behind either.
	sleeper.Mounts = []*runtimeapi.Mount{{ContainerPath: "/image", Image: &runtimeapi.ImageSpec{Image: e.imgs.Busybox.Ref}, Readonly: true, ImageSubPath: "etc"}}
	code := int32(1 + rng.IntN(120))
	exiter := framework.ContainerConfig("exiter", e.imgs.Busybox.Ref, "sh", "-c", fmt.Sprintf("sleep %.2f; exit %d", 0.1+rng.Float64()*1.9, code))
	ctrs := []*ctrModel{{name: "sleeper", cfg: sleeper, exitCode: -1}, {name: "exiter", cfg: exiter, exitCode: code}}
	for _, cm := range ctrs {
		cm.cfg.Labels["chaos-name"] = cm.name
		e.model.update(func() { pm.ctrs = append(pm.ctrs, cm) })
		err := e.retryTransient(kCreate, func(ctx context.Context, rs internalapi.RuntimeService) error {
			found, err := rs.ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: pm.id, LabelSelector: map[string]string{"chaos-name": cm.name}})
			if err != nil {
				return err
			}
			switch {
			case len(found) > 1:
				return fmt.Errorf("container %s/%s listed %d times", name, cm.name, len(found))
			case len(found) == 1 && found[0].State != runtimeapi.ContainerState_CONTAINER_CREATED:
				return fmt.Errorf("container %s/%s is %s after an interrupted CreateContainer", name, cm.name, found[0].State)
			case len(found) == 1:
				e.model.update(func() { cm.id, cm.state = found[0].Id, ctrCreated })
				return nil
			}
			id, err := rs.CreateContainer(ctx, pm.id, cm.cfg, cfg)
			if err == nil {
				e.model.update(func() { cm.id, cm.state = id, ctrCreated })
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("CreateContainer %s/%s: %w", name, cm.name, err)
		}
	}
	for _, cm := range ctrs {
		e.model.update(func() { cm.state = ctrStarting })
		attempts := 0
		err := e.retry(kStart, func(ctx context.Context, rs internalapi.RuntimeService) error {
			attempts++
			st, err := rs.ContainerStatus(ctx, cm.id, false)
			if err != nil {
				return err
			}
			if attempts > 1 && st.GetStatus().GetReason() == "StartError" {
				// The interrupted start failed (containerd died under
				// it): a StartError is the honest answer.
				e.startsLost.Add(1)
				e.model.update(func() { cm.state, cm.startLost = ctrStarted, true })
				return nil
			}
			if st.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_CREATED {
				err := rs.StartContainer(ctx, cm.id)
				if err != nil && attempts > 1 && !errors.Is(err, errInterrupted) {
					// A start cut short can leave containerd's task
					// bundle behind, and the next start fails on it:
					// the container reports StartError and kubelet
					// recreates it. Counted, and documented.
					if st, serr := rs.ContainerStatus(ctx, cm.id, false); serr == nil && st.GetStatus().GetReason() == "StartError" {
						e.startsLost.Add(1)
						e.model.update(func() { cm.state, cm.startLost = ctrStarted, true })
						return nil
					}
				}
				if err != nil {
					return err
				}
			}
			e.model.update(func() { cm.state, cm.ctrdKills = ctrStarted, e.ctrdKills.Load() })
			return nil
		})
		if err != nil {
			return fmt.Errorf("StartContainer %s/%s: %w", name, cm.name, err)
		}
	}

	time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
	// The exiter's exit, when it has happened, is the one it chose.
	err = e.retry(kOther, func(ctx context.Context, rs internalapi.RuntimeService) error {
		st, err := rs.ContainerStatus(ctx, ctrs[1].id, false)
		if err != nil {
			return err
		}
		return checkExit(st.GetStatus(), ctrs[1], e.ctrdKills.Load(), false, nil)
	})
	if err != nil {
		return fmt.Errorf("%s/exiter: %w", name, err)
	}

	e.model.update(func() { pm.state = podStopping })
	if err := e.retry(kStop, func(ctx context.Context, rs internalapi.RuntimeService) error {
		err := rs.StopPodSandbox(ctx, pm.id)
		if err == nil {
			e.model.update(func() { pm.state = podStopped })
		}
		return err
	}); err != nil {
		return fmt.Errorf("StopPodSandbox %s: %w", name, err)
	}
	e.model.update(func() { pm.state = podRemoving })
	if err := e.retry(kRemove, func(ctx context.Context, rs internalapi.RuntimeService) error {
		err := rs.RemovePodSandbox(ctx, pm.id)
		if status.Code(err) == codes.NotFound {
			err = nil
		}
		if err == nil {
			e.model.update(func() { delete(e.model.pods, uid) })
		}
		return err
	}); err != nil {
		return fmt.Errorf("RemovePodSandbox %s: %w", name, err)
	}
	os.RemoveAll(cfg.LogDirectory)
	e.lifecycles.Add(1)
	return nil
}

// exitStats counts what verification saw of exits.
type exitStats struct {
	// whileDown: exits that happened while accel-cri was down, reported
	// with their code and time.
	whileDown int
	// lost: exits reported as Unknown (255) because containerd was killed
	// and, restarting, deleted the exited task's shim with its status.
	lost int
	// lostInStop: containers killed by an interrupted pod stop whose
	// exit code was lost with the task (Unknown/255).
	lostInStop int
}

// checkExit checks an exited container's status against its model: the
// chosen code, a finish time after the start. 255 (Unknown) is accepted
// only when containerd was killed after the start was acknowledged; once
// the pod's stop was asked for, the stop's signals (SIGTERM 143, SIGKILL
// 137) may have ended it first.
func checkExit(st *runtimeapi.ContainerStatus, cm *ctrModel, ctrdKills int64, stopAsked bool, stats *exitStats) error {
	if st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || cm.exitCode < 0 || cm.startLost {
		return nil
	}
	if st.FinishedAt == 0 || st.FinishedAt < st.StartedAt {
		return fmt.Errorf("container %s exited with finish time %d, started %d", cm.id, st.FinishedAt, st.StartedAt)
	}
	if st.ExitCode == cm.exitCode || stopAsked && (st.ExitCode == 137 || st.ExitCode == 143) {
		return nil
	}
	if st.ExitCode == 255 && st.Reason == "Unknown" && ctrdKills > cm.ctrdKills {
		if stats != nil {
			stats.lost++
		}
		return nil
	}
	if st.ExitCode == 255 && st.Reason == "Unknown" && stopAsked {
		// Killed by a StopPodSandbox that a kill cut short while the
		// task was being deleted: the code (137) is lost, not the exit.
		if stats != nil {
			stats.lostInStop++
		}
		return nil
	}
	return fmt.Errorf("container %s exit code %d reason %q (%s), want %d", cm.id, st.ExitCode, st.Reason, st.Message, cm.exitCode)
}

// verify compares the runtime with the model; the caller holds world
// exclusively, so nothing is in flight. killedAt..upAt is the window in
// which accel-cri was down.
func (e *env) verify(killedAt, upAt time.Time) (exitStats, []string) {
	var stats exitStats
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pods, err := e.Runtime.ListPodSandbox(ctx, nil)
	if err != nil {
		return stats, []string{fmt.Sprintf("ListPodSandbox: %v", err)}
	}
	ctrs, err := e.Runtime.ListContainers(ctx, nil)
	if err != nil {
		return stats, []string{fmt.Sprintf("ListContainers: %v", err)}
	}
	e.model.mu.Lock()
	defer e.model.mu.Unlock()
	byUID := map[string][]*runtimeapi.PodSandbox{}
	ready := 0
	for _, p := range pods {
		uid := p.Labels["chaos-uid"]
		if e.model.pods[uid] == nil {
			bad("pod %s (%s) listed but the client never asked for it or saw it removed", p.Id, p.Metadata.GetName())
		}
		byUID[uid] = append(byUID[uid], p)
		if p.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			ready++
		}
	}
	ctrsByPod := map[string]map[string][]*runtimeapi.Container{}
	for _, c := range ctrs {
		if ctrsByPod[c.PodSandboxId] == nil {
			ctrsByPod[c.PodSandboxId] = map[string][]*runtimeapi.Container{}
		}
		ctrsByPod[c.PodSandboxId][c.Labels["chaos-name"]] = append(ctrsByPod[c.PodSandboxId][c.Labels["chaos-name"]], c)
	}
	for uid, pm := range e.model.pods {
		listed := byUID[uid]
		if len(listed) > 1 {
			bad("pod %s listed %d times", pm.name, len(listed))
			continue
		}
		var p *runtimeapi.PodSandbox
		if len(listed) == 1 {
			p = listed[0]
		}
		st := func() runtimeapi.PodSandboxState { return p.GetState() }
		switch pm.state {
		case podRunning:
			if p != nil && st() != runtimeapi.PodSandboxState_SANDBOX_READY {
				bad("pod %s half made: %s after an interrupted RunPodSandbox", pm.name, st())
			}
		case podReady:
			if p == nil || p.Id != pm.id || st() != runtimeapi.PodSandboxState_SANDBOX_READY {
				bad("pod %s acknowledged ready, listed as %v", pm.name, p)
			}
		case podStopping:
			if p == nil || p.Id != pm.id {
				bad("pod %s being stopped is not listed", pm.name)
			}
		case podStopped:
			if p == nil || p.Id != pm.id || st() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
				bad("pod %s acknowledged stopped, listed as %v", pm.name, p)
			}
		case podRemoving:
			if p != nil && st() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
				bad("pod %s being removed is %s", pm.name, st())
			}
		}
		if p == nil {
			continue
		}
		listedCtrs := ctrsByPod[p.Id]
		for _, cm := range pm.ctrs {
			cs := listedCtrs[cm.name]
			delete(listedCtrs, cm.name)
			if len(cs) > 1 {
				bad("container %s/%s listed %d times", pm.name, cm.name, len(cs))
				continue
			}
			if len(cs) == 0 {
				// An interrupted RemovePodSandbox removes the
				// containers before the pod.
				if cm.state != ctrCreating && pm.state != podRemoving {
					bad("container %s/%s (%s) lost", pm.name, cm.name, ctrStateNames[cm.state])
				}
				continue
			}
			c := cs[0]
			switch cm.state {
			case ctrCreating, ctrCreated:
				if c.State != runtimeapi.ContainerState_CONTAINER_CREATED {
					bad("container %s/%s %s, listed %s", pm.name, cm.name, ctrStateNames[cm.state], c.State)
				}
				continue
			case ctrStarting:
				continue
			}
			// Started.
			stopped := pm.state == podStopped || pm.state == podRemoving
			switch {
			case stopped && c.State != runtimeapi.ContainerState_CONTAINER_EXITED:
				bad("container %s/%s of a stopped pod is %s", pm.name, cm.name, c.State)
			case !stopped && c.State == runtimeapi.ContainerState_CONTAINER_CREATED:
				bad("container %s/%s acknowledged started, listed CREATED", pm.name, cm.name)
			case cm.exitCode < 0 && !cm.startLost && pm.state == podReady && c.State != runtimeapi.ContainerState_CONTAINER_RUNNING:
				bad("container %s/%s runs until stopped, listed %s", pm.name, cm.name, c.State)
			}
			if c.State != runtimeapi.ContainerState_CONTAINER_EXITED || cm.exitCode < 0 {
				continue
			}
			resp, err := e.Runtime.ContainerStatus(ctx, c.Id, false)
			if err != nil {
				bad("ContainerStatus %s/%s: %v", pm.name, cm.name, err)
				continue
			}
			if err := checkExit(resp.Status, cm, e.ctrdKills.Load(), pm.state >= podStopping, &stats); err != nil {
				bad("%s/%s: %v", pm.name, cm.name, err)
			}
			if fin := time.Unix(0, resp.Status.FinishedAt); fin.After(killedAt) && fin.Before(upAt) && resp.Status.ExitCode == cm.exitCode {
				stats.whileDown++
			}
		}
		for name, cs := range listedCtrs {
			for _, c := range cs {
				bad("container %s/%s (%s, %s) listed but never asked for", pm.name, name, c.Id, c.State)
			}
		}
	}
	// Every ready pod has its network namespace and IP; nothing beyond the
	// listed pods holds one.
	if n := countNetNS(e.AccelCRI); n < ready || n > len(pods) {
		bad("%d network namespaces for %d ready of %d listed pods", n, ready, len(pods))
	}
	if n := countIPs(e.AccelCRI); n < ready || n > len(pods) {
		bad("%d CNI IP allocations for %d ready of %d listed pods", n, ready, len(pods))
	}
	return stats, errs
}

// runChurn runs lifecycles on workers goroutines until more() says stop;
// it returns when every worker has finished.
func (e *env) runChurn(workers int, seed uint64, more func(started int64) bool) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for {
				n := next.Add(1)
				if !more(n-1) || len(e.failures()) >= 10 {
					return
				}
				if err := e.lifecycle(rng, int(n)); err != nil {
					e.fail("lifecycle %d: %v", n, err)
				}
			}
		}()
	}
	wg.Wait()
}

// Resource counts of one accel-cri instance.

func countNetNS(a *framework.AccelCRI) int {
	entries, _ := os.ReadDir(filepath.Join(a.State, "sandbox", "netns"))
	n := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			n++
		}
	}
	return n
}

// countIPs counts host-local IPAM allocations in the network's data dir.
func countIPs(a *framework.AccelCRI) int {
	entries, _ := os.ReadDir(filepath.Join(a.Dir, "ipam", a.NetworkName))
	n := 0
	for _, e := range entries {
		if e.Name() != "lock" && !strings.HasPrefix(e.Name(), "last_reserved_ip") {
			n++
		}
	}
	return n
}

// countMounts counts the mounts below dir and those elsewhere made of
// dir's files (an overlay whose layers are there: the client's temp mounts
// of an image were in /tmp before they moved under the state dir).
func countMounts(dir string) int {
	b, _ := os.ReadFile("/proc/self/mounts")
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && (f[1] == dir || strings.HasPrefix(f[1], dir+"/") || strings.Contains(f[3], dir+"/")) {
			n++
		}
	}
	return n
}
