package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/internal/bench/floor"
)

// fakeRuntime is an in-memory CRI runtime: pods with one container each,
// label filters, and a hook to fail a chosen call.
type fakeRuntime struct {
	mu     sync.Mutex
	nextID int
	pods   map[string]*runtimeapi.PodSandbox
	ctrs   map[string]string // container id → pod id
	images map[string]bool
	pulls  int
	// fail returns an error to inject for a call on a pod name, or nil.
	fail    func(call, podName string) error
	maxPods int // most pods alive at once
	inCall  int
	maxCall int // most calls in flight at once
}

func newFake() *fakeRuntime {
	return &fakeRuntime{pods: map[string]*runtimeapi.PodSandbox{}, ctrs: map[string]string{}, images: map[string]bool{}}
}

func (f *fakeRuntime) enter(call, pod string) error {
	f.mu.Lock()
	f.inCall++
	f.maxCall = max(f.maxCall, f.inCall)
	fail := f.fail
	f.mu.Unlock()
	// Long enough for concurrent callers to overlap.
	time.Sleep(time.Millisecond)
	f.mu.Lock()
	f.inCall--
	f.mu.Unlock()
	if fail != nil {
		return fail(call, pod)
	}
	return nil
}

func (f *fakeRuntime) podName(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.pods[id]; ok {
		return p.Metadata.Name
	}
	return ""
}

func (f *fakeRuntime) RunPodSandbox(ctx context.Context, c *runtimeapi.PodSandboxConfig, handler string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := f.enter("RunPodSandbox", c.Metadata.Name); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	id := fmt.Sprintf("pod%d", f.nextID)
	f.pods[id] = &runtimeapi.PodSandbox{Id: id, Metadata: c.Metadata, Labels: c.Labels, State: runtimeapi.PodSandboxState_SANDBOX_READY}
	f.maxPods = max(f.maxPods, len(f.pods))
	return id, nil
}

func (f *fakeRuntime) StopPodSandbox(ctx context.Context, id string) error {
	if err := f.enter("StopPodSandbox", f.podName(id)); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.pods[id]; ok {
		p.State = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	}
	return nil
}

func (f *fakeRuntime) RemovePodSandbox(ctx context.Context, id string) error {
	if err := f.enter("RemovePodSandbox", f.podName(id)); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.pods[id]; ok && p.State == runtimeapi.PodSandboxState_SANDBOX_READY {
		return errors.New("remove of a ready pod")
	}
	delete(f.pods, id)
	for c, p := range f.ctrs {
		if p == id {
			delete(f.ctrs, c)
		}
	}
	return nil
}

func (f *fakeRuntime) ListPodSandbox(ctx context.Context, filter *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*runtimeapi.PodSandbox
	for _, p := range f.pods {
		match := true
		for k, v := range filter.GetLabelSelector() {
			match = match && p.Labels[k] == v
		}
		if match {
			out = append(out, p)
		}
	}
	return out, nil
}

func (f *fakeRuntime) CreateContainer(ctx context.Context, podID string, c *runtimeapi.ContainerConfig, pc *runtimeapi.PodSandboxConfig) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := f.enter("CreateContainer", pc.Metadata.Name); err != nil {
		return "", err
	}
	if !f.images[c.Image.Image] {
		return "", fmt.Errorf("image %s not pulled", c.Image.Image)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	id := fmt.Sprintf("ctr%d", f.nextID)
	f.ctrs[id] = podID
	return id, nil
}

func (f *fakeRuntime) ctrPod(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.pods[f.ctrs[id]]; ok {
		return p.Metadata.Name
	}
	return ""
}

func (f *fakeRuntime) StartContainer(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return f.enter("StartContainer", f.ctrPod(id))
}

func (f *fakeRuntime) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) ([]byte, []byte, error) {
	if err := f.enter("ExecSync", f.ctrPod(id)); err != nil {
		return nil, nil, err
	}
	if len(cmd) > 0 && cmd[0] == "echo" {
		return []byte(strings.Join(cmd[1:], " ") + "\n"), nil, nil
	}
	return nil, nil, errors.New("unknown command")
}

func (f *fakeRuntime) ListContainers(ctx context.Context, _ *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*runtimeapi.Container, 0, len(f.ctrs))
	for id := range f.ctrs {
		out = append(out, &runtimeapi.Container{Id: id})
	}
	return out, nil
}

func (f *fakeRuntime) ListContainerStats(ctx context.Context, _ *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return make([]*runtimeapi.ContainerStats, len(f.ctrs)), nil
}

func (f *fakeRuntime) ListPodSandboxStats(ctx context.Context, _ *runtimeapi.PodSandboxStatsFilter) ([]*runtimeapi.PodSandboxStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return make([]*runtimeapi.PodSandboxStats, len(f.pods)), nil
}

func (f *fakeRuntime) ImageStatus(ctx context.Context, img *runtimeapi.ImageSpec, _ bool) (*runtimeapi.ImageStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.images[img.Image] {
		return &runtimeapi.ImageStatusResponse{Image: &runtimeapi.Image{Id: img.Image}}, nil
	}
	return &runtimeapi.ImageStatusResponse{}, nil
}

func (f *fakeRuntime) PullImage(ctx context.Context, img *runtimeapi.ImageSpec, _ *runtimeapi.AuthConfig, _ *runtimeapi.PodSandboxConfig) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pulls++
	f.images[img.Image] = true
	return img.Image, nil
}

func (f *fakeRuntime) left() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pods)
}

func TestRunMeasuresEveryPhase(t *testing.T) {
	f := newFake()
	cfg := Config{Label: "fake", Image: "busybox", SandboxImage: "pause", Pods: 12, Concurrency: []int{1, 4}, ListPods: 7, ListIterations: 5, Warmup: 1,
		LogDir: t.TempDir(), Procs: []ProcGroup{{Name: "none", Pids: Pids()}}}
	res, err := Run(context.Background(), f, f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if f.pulls != 2 {
		t.Errorf("pulled %d images, want busybox and pause", f.pulls)
	}
	if len(res.Lifecycle) != 2 {
		t.Fatalf("%d lifecycle results, want 2", len(res.Lifecycle))
	}
	for i, l := range res.Lifecycle {
		if l.Concurrency != cfg.Concurrency[i] || l.Pods != 12 || l.PodsPerSecond <= 0 || l.WallSeconds <= 0 {
			t.Errorf("lifecycle %d: %+v", i, l)
		}
		if len(l.Phases) != len(Phases) {
			t.Fatalf("%d phases, want %d", len(l.Phases), len(Phases))
		}
		for pi, p := range l.Phases {
			if p.Name != Phases[pi] || p.N != 12 || p.P50Ms <= 0 || p.P50Ms > p.P99Ms {
				t.Errorf("c=%d phase %s: %+v", l.Concurrency, p.Name, p.Summary)
			}
		}
		// The whole lifecycle spans its parts.
		if l.Phase(PhaseLifecycle).MinMs < l.Phase(PhasePodStart).MinMs || l.Phase(PhasePodStart).MinMs < l.Phase(PhaseRunPodSandbox).MinMs {
			t.Errorf("c=%d: lifecycle shorter than pod start or pod start than RunPodSandbox", l.Concurrency)
		}
		if len(l.Procs) != 1 || l.Procs[0].Name != "none" {
			t.Errorf("procs %+v", l.Procs)
		}
	}
	if f.maxCall < 2 {
		t.Errorf("at most %d calls in flight, want concurrency 4 to overlap calls", f.maxCall)
	}
	s := res.Steady
	if s == nil || s.Pods != 7 || s.Iterations != 5 || len(s.Ops) != len(ListOps) {
		t.Fatalf("steady %+v", s)
	}
	for i, o := range s.Ops {
		if o.Name != ListOps[i] || o.N != 5 {
			t.Errorf("op %+v", o)
		}
	}
	if f.maxPods != 7 {
		t.Errorf("at most %d pods at once, want the 7 steady-state pods", f.maxPods)
	}
	if n := f.left(); n != 0 {
		t.Errorf("%d pods left", n)
	}
}

// Hold sees all steady-state pods running and none polled yet; its error
// ends the run, which still removes its pods.
func TestRunHold(t *testing.T) {
	for _, fail := range []bool{false, true} {
		f := newFake()
		held := 0
		cfg := Config{Image: "busybox", Pods: 2, Concurrency: []int{1}, ListPods: 5, ListIterations: 3, LogDir: t.TempDir(),
			Hold: func(context.Context) error {
				held++
				f.mu.Lock()
				defer f.mu.Unlock()
				if len(f.pods) != 5 {
					t.Errorf("%d pods running while held, want 5", len(f.pods))
				}
				if fail {
					return errors.New("stop here")
				}
				return nil
			}}
		res, err := Run(context.Background(), f, f, cfg)
		switch {
		case fail && (err == nil || !strings.Contains(err.Error(), "hold: stop here")):
			t.Errorf("hold failed: err %v, want it reported", err)
		case !fail && (err != nil || res.Steady == nil || res.Steady.Ops[0].N != 3):
			t.Errorf("hold passed: err %v, result %+v", err, res)
		}
		if held != 1 {
			t.Errorf("held %d times, want 1", held)
		}
		if n := f.left(); n != 0 {
			t.Errorf("%d pods left", n)
		}
	}
}

// Whatever fails, Run removes every pod it made and reports the error;
// pods of others on the same runtime stay.
func TestRunCleansUp(t *testing.T) {
	for _, tc := range []struct {
		desc     string
		failCall string
		failPod  string
		cancel   bool
		wantErr  string
	}{
		{"StartContainer fails mid-run", "StartContainer", "c4-5", false, "StartContainer c4-5"},
		{"ExecSync fails", "ExecSync", "c1-2", false, "ExecSync c1-2"},
		{"CreateContainer fails in the steady state", "CreateContainer", "steady-3", false, "CreateContainer steady-3"},
		{"RemovePodSandbox fails once", "RemovePodSandbox", "c1-0", false, "RemovePodSandbox c1-0"},
		{"context cancelled", "", "", true, "context canceled"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			f := newFake()
			// Someone else's pod, not the benchmark's.
			other, _ := f.RunPodSandbox(context.Background(), &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "other"}}, "")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var once sync.Once
			f.fail = func(call, pod string) error {
				if tc.cancel && call == "StartContainer" && pod == "c4-3" {
					cancel()
					return context.Canceled
				}
				if call == tc.failCall && pod == tc.failPod {
					var err error
					once.Do(func() { err = errors.New("injected") })
					return err
				}
				return nil
			}
			_, err := Run(ctx, f, f, Config{Image: "busybox", Pods: 8, Concurrency: []int{1, 4}, ListPods: 6, ListIterations: 2, LogDir: t.TempDir()})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Run error %v, want one naming %q", err, tc.wantErr)
			}
			pods, _ := f.ListPodSandbox(context.Background(), nil)
			if len(pods) != 1 || pods[0].Id != other {
				var names []string
				for _, p := range pods {
					names = append(names, p.Metadata.Name)
				}
				t.Errorf("pods left %v, want only %q", names, "other")
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		desc string
		cfg  Config
		ok   bool
	}{
		{"minimal", Config{Image: "b", Pods: 1, Concurrency: []int{1}}, true},
		{"no image", Config{Pods: 1}, false},
		{"zero concurrency", Config{Image: "b", Concurrency: []int{0}}, false},
		{"negative pods", Config{Image: "b", Pods: -1}, false},
		{"list pods without iterations", Config{Image: "b", ListPods: 3}, false},
		{"systemd slice parent", Config{Image: "b", CgroupParent: "kubepods.slice"}, false},
		{"cgroupfs parent", Config{Image: "b", CgroupParent: "/kubepods"}, true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if err := tc.cfg.validate(); (err == nil) != tc.ok {
				t.Errorf("validate() = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func TestPodConfigIsKubeletShaped(t *testing.T) {
	r := &runner{cfg: Config{Image: "busybox", CgroupParent: "/bench"}, runID: "r1", ns: "bench-r1", logDir: t.TempDir()}
	p, err := r.podConfig("c1-0")
	if err != nil {
		t.Fatal(err)
	}
	if p.Labels[LabelRun] != "r1" || p.Labels["io.kubernetes.pod.name"] != "c1-0" || p.Metadata.Namespace != "bench-r1" {
		t.Errorf("labels %v metadata %v", p.Labels, p.Metadata)
	}
	if want := "/bench/pod" + p.Metadata.Uid; p.Linux.CgroupParent != want {
		t.Errorf("cgroup parent %q, want %q", p.Linux.CgroupParent, want)
	}
	c := r.containerConfig(p)
	if c.Image.Image != "busybox" || c.Command[0] != "sleep" || c.LogPath != "sleeper/0.log" {
		t.Errorf("container %v", c)
	}
	q, _ := r.podConfig("c1-0")
	if q.Metadata.Uid == p.Metadata.Uid {
		t.Errorf("two pods share uid %s", p.Metadata.Uid)
	}
}

// Config.Floor gets the runtime's answers with the pods running, and its
// result lands in the steady state; its error ends the run.
func TestRunFloor(t *testing.T) {
	for _, fail := range []bool{false, true} {
		f := newFake()
		calls := 0
		cfg := Config{Image: "busybox", Pods: 1, Concurrency: []int{1}, ListPods: 4, ListIterations: 2, LogDir: t.TempDir(),
			Floor: func(ctx context.Context, a *floor.Answers) (*FloorResult, error) {
				calls++
				var pods runtimeapi.ListPodSandboxResponse
				if err := proto.Unmarshal(a.PodSandboxes, &pods); err != nil || len(pods.Items) != 4 {
					t.Errorf("floor got %d pods (%v), want the 4 running", len(pods.Items), err)
				}
				if fail {
					return nil, errors.New("no floor")
				}
				ops, err := Poll(ctx, f, 3, 4)
				return &FloorResult{Ops: ops}, err
			}}
		res, err := Run(context.Background(), f, f, cfg)
		switch {
		case fail && (err == nil || !strings.Contains(err.Error(), "floor: no floor")):
			t.Errorf("floor failed: err %v, want it reported", err)
		case !fail && (err != nil || res.Steady.Floor.Op(OpListPodSandboxStats).N != 3 || res.Steady.Op(OpListPodSandbox).N != 2):
			t.Errorf("floor passed: err %v, result %+v", err, res)
		}
		if calls != 1 {
			t.Errorf("floor called %d times, want 1", calls)
		}
		if n := f.left(); n != 0 {
			t.Errorf("%d pods left", n)
		}
	}
}

func TestPoll(t *testing.T) {
	f := newFake()
	ctx := context.Background()
	f.mu.Lock()
	for i := range 3 {
		pod := fmt.Sprint("pod", i)
		f.pods[pod] = &runtimeapi.PodSandbox{Id: pod, Metadata: &runtimeapi.PodSandboxMetadata{Name: pod}}
		f.ctrs[fmt.Sprint("ctr", i)] = pod
	}
	f.mu.Unlock()
	ops, err := Poll(ctx, f, 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != len(ListOps) {
		t.Fatalf("%d summaries, want %d", len(ops), len(ListOps))
	}
	for i, op := range ops {
		if op.Name != ListOps[i] || op.N != 5 {
			t.Errorf("summary %d: %s with %d calls, want %s with 5", i, op.Name, op.N, ListOps[i])
		}
	}
	// Fewer items than the pods polled for is an error (here every call
	// lists 3 pods' worth, and 4 are asked for).
	if _, err := Poll(ctx, f, 1, 4); err == nil || !strings.Contains(err.Error(), "ListPodSandbox listed 3, want at least 4") {
		t.Errorf("Poll with too few items: %v", err)
	}
}
