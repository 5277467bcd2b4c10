package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/internal/bench/floor"
	"github.com/accel-cri/accel-cri/internal/cgroups"
)

// Runtime is the part of kubelet's CRI runtime client the benchmark uses;
// k8s.io/cri-client's RuntimeService satisfies it.
type Runtime interface {
	floor.Lister
	RunPodSandbox(ctx context.Context, config *runtimeapi.PodSandboxConfig, runtimeHandler string) (string, error)
	StopPodSandbox(ctx context.Context, podSandboxID string) error
	RemovePodSandbox(ctx context.Context, podSandboxID string) error
	CreateContainer(ctx context.Context, podSandboxID string, config *runtimeapi.ContainerConfig, sandboxConfig *runtimeapi.PodSandboxConfig) (string, error)
	StartContainer(ctx context.Context, containerID string) error
	ExecSync(ctx context.Context, containerID string, cmd []string, timeout time.Duration) (stdout []byte, stderr []byte, err error)
}

// Images is the part of kubelet's CRI image client the benchmark uses.
type Images interface {
	ImageStatus(ctx context.Context, image *runtimeapi.ImageSpec, verbose bool) (*runtimeapi.ImageStatusResponse, error)
	PullImage(ctx context.Context, image *runtimeapi.ImageSpec, auth *runtimeapi.AuthConfig, podSandboxConfig *runtimeapi.PodSandboxConfig) (string, error)
}

// Phase names, in lifecycle order. PodStart spans RunPodSandbox's call to
// StartContainer's return (what kubelet waits for before a pod runs);
// Lifecycle spans all six calls.
const (
	PhaseRunPodSandbox    = "RunPodSandbox"
	PhaseCreateContainer  = "CreateContainer"
	PhaseStartContainer   = "StartContainer"
	PhaseExecSync         = "ExecSync"
	PhaseStopPodSandbox   = "StopPodSandbox"
	PhaseRemovePodSandbox = "RemovePodSandbox"
	PhasePodStart         = "PodStart"
	PhaseLifecycle        = "Lifecycle"
)

// Phases lists the lifecycle phases in report order.
var Phases = []string{PhaseRunPodSandbox, PhaseCreateContainer, PhaseStartContainer, PhaseExecSync,
	PhaseStopPodSandbox, PhaseRemovePodSandbox, PhasePodStart, PhaseLifecycle}

// List operations of the steady state, in report order.
const (
	OpListPodSandbox      = "ListPodSandbox"
	OpListContainers      = "ListContainers"
	OpListContainerStats  = "ListContainerStats"
	OpListPodSandboxStats = "ListPodSandboxStats"
)

// ListOps lists the steady-state operations in report order.
var ListOps = []string{OpListPodSandbox, OpListContainers, OpListContainerStats, OpListPodSandboxStats}

// LabelRun is the pod label carrying the run id; cleanup selects by it.
const LabelRun = "accel-cri.io/bench-run"

// Config is one benchmark run.
type Config struct {
	// Label names the runtime in reports (e.g. "accel-cri").
	Label string
	// Image runs `sleep` in every pod's one container; pulled when absent.
	Image string
	// SandboxImage, when set, is pulled before the run, so no timed pod
	// pays for it.
	SandboxImage string
	// Pods is how many pod lifecycles run at each concurrency.
	Pods int
	// Concurrency lists the numbers of lifecycles in flight at once.
	Concurrency []int
	// ListPods is how many pods run during the steady-state polling (0
	// skips it); ListIterations how many times each List call is made.
	ListPods, ListIterations int
	// Warmup lifecycles run first, untimed.
	Warmup int
	// CgroupParent, when set, is the cgroupfs parent under which each pod
	// gets pod<uid> (as kubelet's cgroupfs driver does); Run removes those
	// directories again, as kubelet would.
	CgroupParent string
	// RuntimeHandler is passed to RunPodSandbox.
	RuntimeHandler string
	// LogDir holds the pods' log directories (a temp dir when empty).
	LogDir string
	// Procs are sampled during every phase.
	Procs []ProcGroup
	// Logf reports progress; nil is quiet.
	Logf func(format string, args ...any)
	// Hold, when set, is called with the steady-state pods running, after
	// their memory is sampled and before the polling: profiling (pprof,
	// smaps) sees the runtime exactly as the report does. Its error ends
	// the run.
	Hold func(ctx context.Context) error
	// Floor, when set, is called with the steady-state pods running, after
	// Hold, with the four List answers captured from the runtime. It polls
	// an ideal server answering them (package floor) and reports the
	// floor beneath the runtime's List latency. Its error ends the run.
	Floor func(ctx context.Context, answers *floor.Answers) (*FloorResult, error)
}

// Result is one run's measurements.
type Result struct {
	Label   string    `json:"label"`
	RunID   string    `json:"run_id"`
	Started time.Time `json:"started"`
	Image   string    `json:"image"`
	// Idle is the processes' memory after the warm-up, with no pod.
	Idle      []ProcUsage       `json:"idle"`
	Lifecycle []LifecycleResult `json:"lifecycle"`
	Steady    *SteadyResult     `json:"steady,omitempty"`
}

// LifecycleResult is the lifecycle of Pods pods at one concurrency.
type LifecycleResult struct {
	Concurrency int     `json:"concurrency"`
	Pods        int     `json:"pods"`
	WallSeconds float64 `json:"wall_seconds"`
	// PodsPerSecond is Pods over the wall time from the first call to the
	// last return.
	PodsPerSecond float64     `json:"pods_per_second"`
	Phases        []Named     `json:"phases"`
	Procs         []ProcUsage `json:"procs"`
}

// SteadyResult is kubelet's polling with Pods pods running.
type SteadyResult struct {
	Pods       int `json:"pods"`
	Iterations int `json:"iterations"`
	// StartSeconds is the time to start all pods (untimed per call).
	StartSeconds float64 `json:"start_seconds"`
	// Procs is memory with all pods running and CPU during the polling.
	Procs []ProcUsage `json:"procs"`
	Ops   []Named     `json:"ops"`
	// Floor is the same polling of an ideal server with the same answers.
	Floor *FloorResult `json:"floor,omitempty"`
}

// FloorResult is the polling of the ideal server (Config.Floor): its List
// latencies and its process's memory after the polling.
type FloorResult struct {
	Ops   []Named     `json:"ops"`
	Procs []ProcUsage `json:"procs"`
}

// Op returns the summary of one List call.
func (f *FloorResult) Op(name string) Summary {
	if f == nil {
		return Summary{}
	}
	return find(f.Ops, name)
}

// Named is a Summary with the name of what it measures.
type Named struct {
	Name string `json:"name"`
	Summary
}

// Phase returns the summary named name (zero if absent).
func (l LifecycleResult) Phase(name string) Summary { return find(l.Phases, name) }

// Op returns the steady-state summary named name (zero if absent).
func (s *SteadyResult) Op(name string) Summary {
	if s == nil {
		return Summary{}
	}
	return find(s.Ops, name)
}

func find(ns []Named, name string) Summary {
	for _, n := range ns {
		if n.Name == name {
			return n.Summary
		}
	}
	return Summary{}
}

func (c *Config) validate() error {
	if c.Image == "" {
		return errors.New("bench: no image")
	}
	if c.Pods < 0 || c.ListPods < 0 || c.ListIterations < 0 || c.Warmup < 0 {
		return errors.New("bench: negative count")
	}
	for _, n := range c.Concurrency {
		if n < 1 {
			return fmt.Errorf("bench: concurrency %d < 1", n)
		}
	}
	if c.ListPods > 0 && c.ListIterations == 0 {
		return errors.New("bench: list pods without list iterations")
	}
	if c.CgroupParent != "" && !strings.HasPrefix(c.CgroupParent, "/") {
		return fmt.Errorf("bench: cgroup parent %q is not a cgroupfs path", c.CgroupParent)
	}
	return nil
}

// runner is one Run in progress.
type runner struct {
	cfg    Config
	rt     Runtime
	runID  string
	ns     string
	logDir string
	logf   func(string, ...any)
}

// Run benchmarks the runtime behind rt and im. Before it returns, also on
// error or when ctx is cancelled, every pod it created is stopped and
// removed (selected by LabelRun) with a context of its own.
func Run(ctx context.Context, rt Runtime, im Images, cfg Config) (res *Result, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, rt: rt, runID: randHex(6), logf: cfg.Logf}
	if r.logf == nil {
		r.logf = func(string, ...any) {}
	}
	r.ns = "bench-" + r.runID
	r.logDir = cfg.LogDir
	if r.logDir == "" {
		d, err := os.MkdirTemp("", "accel-cri-bench-")
		if err != nil {
			return nil, err
		}
		r.logDir = d
		defer os.RemoveAll(d)
	}
	defer func() {
		if cerr := r.cleanup(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()

	for _, ref := range []string{cfg.SandboxImage, cfg.Image} {
		if ref == "" {
			continue
		}
		if err := ensureImage(ctx, im, ref); err != nil {
			return nil, err
		}
	}
	res = &Result{Label: cfg.Label, RunID: r.runID, Started: time.Now().UTC(), Image: cfg.Image}
	for i := range cfg.Warmup {
		if _, err := r.lifecycle(ctx, fmt.Sprintf("warmup-%d", i)); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	res.Idle = Snapshot(cfg.Procs)
	for _, c := range cfg.Concurrency {
		r.logf("%s: %d pod lifecycles at concurrency %d", cfg.Label, cfg.Pods, c)
		lr, err := r.lifecycles(ctx, c)
		if err != nil {
			return nil, err
		}
		res.Lifecycle = append(res.Lifecycle, lr)
	}
	if cfg.ListPods > 0 {
		r.logf("%s: steady state with %d pods, %d polls", cfg.Label, cfg.ListPods, cfg.ListIterations)
		sr, err := r.steady(ctx)
		if err != nil {
			return nil, err
		}
		res.Steady = sr
	}
	return res, nil
}

func ensureImage(ctx context.Context, im Images, ref string) error {
	spec := &runtimeapi.ImageSpec{Image: ref}
	st, err := im.ImageStatus(ctx, spec, false)
	if err != nil {
		return fmt.Errorf("image status %s: %w", ref, err)
	}
	if st.GetImage() != nil {
		return nil
	}
	if _, err := im.PullImage(ctx, spec, nil, nil); err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	return nil
}

// pod is one pod made by the benchmark.
type pod struct {
	id, ctr string
	cfg     *runtimeapi.PodSandboxConfig
}

// podConfig is a pod as kubelet sends it for a BestEffort pod with one
// container: kubelet's labels, a log directory, DNS, namespaces.
func (r *runner) podConfig(name string) (*runtimeapi.PodSandboxConfig, error) {
	uid := randHex(8)
	logDir := filepath.Join(r.logDir, r.ns+"_"+name+"_"+uid)
	if err := os.MkdirAll(filepath.Join(logDir, "sleeper"), 0o755); err != nil {
		return nil, err
	}
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: r.ns, Uid: uid},
		Hostname:     name,
		LogDirectory: logDir,
		DnsConfig:    &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{r.ns + ".svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5"}},
		Labels: map[string]string{
			"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": r.ns, "io.kubernetes.pod.uid": uid,
			LabelRun: r.runID,
		},
		Annotations: map[string]string{"kubernetes.io/config.source": "api"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD},
			},
		},
	}
	if r.cfg.CgroupParent != "" {
		cfg.Linux.CgroupParent = r.cfg.CgroupParent + "/pod" + uid
	}
	return cfg, nil
}

func (r *runner) containerConfig(p *runtimeapi.PodSandboxConfig) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "sleeper"},
		Image:    &runtimeapi.ImageSpec{Image: r.cfg.Image},
		Command:  []string{"sleep", "2147483647"},
		LogPath:  "sleeper/0.log",
		Labels: map[string]string{
			"io.kubernetes.container.name": "sleeper", "io.kubernetes.pod.name": p.Metadata.Name,
			"io.kubernetes.pod.namespace": r.ns, "io.kubernetes.pod.uid": p.Metadata.Uid,
		},
		Linux: &runtimeapi.LinuxContainerConfig{
			// BestEffort: kubelet's minimum shares and highest OOM score.
			Resources: &runtimeapi.LinuxContainerResources{CpuShares: 2, OomScoreAdj: 1000},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: p.Linux.SecurityContext.NamespaceOptions,
			},
		},
	}
}

// startPod runs a pod and its container and returns the times each call
// took, indexed like Phases.
func (r *runner) startPod(ctx context.Context, name string, took []time.Duration) (*pod, error) {
	cfg, err := r.podConfig(name)
	if err != nil {
		return nil, err
	}
	p := &pod{cfg: cfg}
	t0 := time.Now()
	if p.id, err = r.rt.RunPodSandbox(ctx, cfg, r.cfg.RuntimeHandler); err != nil {
		return p, fmt.Errorf("RunPodSandbox %s: %w", name, err)
	}
	t1 := time.Now()
	if p.ctr, err = r.rt.CreateContainer(ctx, p.id, r.containerConfig(cfg), cfg); err != nil {
		return p, fmt.Errorf("CreateContainer %s: %w", name, err)
	}
	t2 := time.Now()
	if err = r.rt.StartContainer(ctx, p.ctr); err != nil {
		return p, fmt.Errorf("StartContainer %s: %w", name, err)
	}
	t3 := time.Now()
	took[0], took[1], took[2], took[6] = t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), t3.Sub(t0)
	return p, nil
}

// execCmd is the trivial command ExecSync runs; its output is checked.
var execCmd = []string{"echo", "bench"}

// lifecycle runs one pod through all six calls; took is indexed like
// Phases. A failed pod is removed before lifecycle returns.
func (r *runner) lifecycle(ctx context.Context, name string) (took []time.Duration, err error) {
	took = make([]time.Duration, len(Phases))
	start := time.Now()
	p, err := r.startPod(ctx, name, took)
	if p != nil {
		defer func() {
			if err != nil && p.id != "" {
				r.removePod(p)
			}
		}()
	}
	if err != nil {
		return nil, err
	}
	t := time.Now()
	out, _, err := r.rt.ExecSync(ctx, p.ctr, execCmd, 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("ExecSync %s: %w", name, err)
	}
	if string(out) != "bench\n" {
		return nil, fmt.Errorf("ExecSync %s: stdout %q, want %q", name, out, "bench\n")
	}
	took[3] = time.Since(t)
	t = time.Now()
	if err := r.rt.StopPodSandbox(ctx, p.id); err != nil {
		return nil, fmt.Errorf("StopPodSandbox %s: %w", name, err)
	}
	took[4] = time.Since(t)
	t = time.Now()
	if err := r.rt.RemovePodSandbox(ctx, p.id); err != nil {
		return nil, fmt.Errorf("RemovePodSandbox %s: %w", name, err)
	}
	took[5] = time.Since(t)
	took[7] = time.Since(start)
	r.podGone(p.cfg)
	return took, nil
}

// lifecycles runs cfg.Pods lifecycles with c in flight; the first error
// stops the others.
func (r *runner) lifecycles(ctx context.Context, c int) (LifecycleResult, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	all := make([][]time.Duration, r.cfg.Pods)
	next := make(chan int)
	var wg sync.WaitGroup
	var start, end time.Time
	procs, err := measure(ctx, r.cfg.Procs, func() error {
		start = time.Now()
		for range c {
			wg.Go(func() {
				for i := range next {
					took, err := r.lifecycle(ctx, fmt.Sprintf("c%d-%d", c, i))
					if err != nil {
						cancel(err)
						continue
					}
					all[i] = took
				}
			})
		}
	feed:
		for i := range r.cfg.Pods {
			select {
			case next <- i:
			case <-ctx.Done():
				break feed
			}
		}
		close(next)
		wg.Wait()
		end = time.Now()
		return context.Cause(ctx)
	})
	if err != nil {
		return LifecycleResult{}, fmt.Errorf("concurrency %d: %w", c, err)
	}
	wall := end.Sub(start)
	lr := LifecycleResult{Concurrency: c, Pods: r.cfg.Pods, WallSeconds: wall.Seconds(), Procs: procs}
	if wall > 0 {
		lr.PodsPerSecond = float64(r.cfg.Pods) / wall.Seconds()
	}
	for pi, name := range Phases {
		ds := make([]time.Duration, 0, len(all))
		for _, took := range all {
			ds = append(ds, took[pi])
		}
		lr.Phases = append(lr.Phases, Named{Name: name, Summary: Summarize(ds)})
	}
	return lr, nil
}

// steady starts cfg.ListPods pods, polls like kubelet's PLEG relist and
// stats provider, then removes the pods.
func (r *runner) steady(ctx context.Context) (*SteadyResult, error) {
	c := 1
	for _, n := range r.cfg.Concurrency {
		c = max(c, n)
	}
	sr := &SteadyResult{Pods: r.cfg.ListPods, Iterations: r.cfg.ListIterations}
	start := time.Now()
	if err := r.startPods(ctx, r.cfg.ListPods, c); err != nil {
		return nil, err
	}
	sr.StartSeconds = time.Since(start).Seconds()
	mem := Snapshot(r.cfg.Procs)
	if r.cfg.Hold != nil {
		if err := r.cfg.Hold(ctx); err != nil {
			return nil, fmt.Errorf("hold: %w", err)
		}
	}
	if r.cfg.Floor != nil {
		answers, err := floor.Capture(ctx, r.rt)
		if err != nil {
			return nil, fmt.Errorf("floor: capture the answers: %w", err)
		}
		if sr.Floor, err = r.cfg.Floor(ctx, answers); err != nil {
			return nil, fmt.Errorf("floor: %w", err)
		}
	}
	cpu, err := measure(ctx, r.cfg.Procs, func() error {
		var err error
		sr.Ops, err = Poll(ctx, r.rt, r.cfg.ListIterations, r.cfg.ListPods)
		return err
	})
	if err != nil {
		return nil, err
	}
	for i := range mem {
		mem[i].CPUSeconds = cpu[i].CPUSeconds
	}
	sr.Procs = mem
	if err := r.cleanup(); err != nil {
		return nil, err
	}
	return sr, nil
}

// Poll makes the four List calls in turn, iterations times, as kubelet's
// relist and stats provider would, and summarizes each call's latency.
// Every answer must list at least minItems items: other pods on the runtime
// may add to a list, never take from ours.
func Poll(ctx context.Context, l floor.Lister, iterations, minItems int) ([]Named, error) {
	ops := []func() (int, error){
		func() (int, error) { x, err := l.ListPodSandbox(ctx, nil); return len(x), err },
		func() (int, error) { x, err := l.ListContainers(ctx, nil); return len(x), err },
		func() (int, error) { x, err := l.ListContainerStats(ctx, nil); return len(x), err },
		func() (int, error) { x, err := l.ListPodSandboxStats(ctx, nil); return len(x), err },
	}
	took := make([][]time.Duration, len(ops))
	for range iterations {
		for oi, op := range ops {
			t := time.Now()
			n, err := op()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ListOps[oi], err)
			}
			took[oi] = append(took[oi], time.Since(t))
			if n < minItems {
				return nil, fmt.Errorf("%s listed %d, want at least %d", ListOps[oi], n, minItems)
			}
		}
	}
	var out []Named
	for oi, name := range ListOps {
		out = append(out, Named{Name: name, Summary: Summarize(took[oi])})
	}
	return out, nil
}

// startPods starts n pods (untimed) with c in flight.
func (r *runner) startPods(ctx context.Context, n, c int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			took := make([]time.Duration, len(Phases))
			for i := range next {
				if _, err := r.startPod(ctx, fmt.Sprintf("steady-%d", i), took); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

// cleanupTimeout bounds removing what a run left; it runs on a context of
// its own, since the run's may be cancelled.
const cleanupTimeout = 5 * time.Minute

// cleanup stops and removes every pod of this run, by its label.
func (r *runner) cleanup() error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	pods, err := r.rt.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{LabelRun: r.runID}})
	if err != nil {
		return fmt.Errorf("bench cleanup: list pods: %w", err)
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	next := make(chan *runtimeapi.PodSandbox)
	for range cleanupWorkers {
		wg.Go(func() {
			for p := range next {
				err := r.rt.StopPodSandbox(ctx, p.Id)
				if err != nil {
					err = fmt.Errorf("bench cleanup: stop pod %s: %w", p.Id, err)
				} else if err = r.rt.RemovePodSandbox(ctx, p.Id); err != nil {
					err = fmt.Errorf("bench cleanup: remove pod %s: %w", p.Id, err)
				} else {
					r.podGone(&runtimeapi.PodSandboxConfig{Metadata: p.Metadata})
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, p := range pods {
		next <- p
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

// cleanupWorkers is how many pods cleanup removes at once: kubelet's
// pod workers remove pods in parallel too.
const cleanupWorkers = 8

// removePod is the best-effort removal of a pod whose lifecycle failed;
// cleanup retries whatever is left.
func (r *runner) removePod(p *pod) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if r.rt.StopPodSandbox(ctx, p.id) == nil && r.rt.RemovePodSandbox(ctx, p.id) == nil {
		r.podGone(p.cfg)
	}
}

// podGone removes what kubelet would remove after a pod: its log
// directory and, with the cgroupfs driver, its pod cgroup in every
// hierarchy (runc creates the parent and leaves it).
func (r *runner) podGone(cfg *runtimeapi.PodSandboxConfig) {
	md := cfg.GetMetadata()
	if md == nil {
		return
	}
	_ = os.RemoveAll(filepath.Join(r.logDir, md.Namespace+"_"+md.Name+"_"+md.Uid))
	if r.cfg.CgroupParent == "" || md.Uid == "" {
		return
	}
	for _, dir := range cgroups.Local().Dirs(filepath.Join(r.cfg.CgroupParent, "pod"+md.Uid)) {
		// Only empty directories can go; a child cgroup the runtime left
		// is its own bug and stays visible.
		_ = syscall.Rmdir(dir)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
