package nri

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// These tests run NRI against plugins made with NRI's own stub, over the
// real socket, with a fake runtime side.

// fakeRuntime is the sandbox core as NRI sees it.
type fakeRuntime struct {
	mu        sync.Mutex
	pods      []Pod
	ctrs      []Container
	resources map[string]*runtimeapi.LinuxContainerResources
	evicted   []string
}

func (f *fakeRuntime) Pods() []Pod {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.pods)
}

func (f *fakeRuntime) Containers(context.Context) []Container {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ctrs)
}

func (f *fakeRuntime) UpdateContainerResources(_ context.Context, id string, update func(*runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, ok := f.resources[id]
	if !ok {
		return errdefs.ErrNotFound
	}
	res, err := update(cur)
	if err != nil {
		return err
	}
	f.resources[id] = res
	return nil
}

func (f *fakeRuntime) EvictContainer(_ context.Context, id, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.evicted = append(f.evicted, id)
	return nil
}

func (f *fakeRuntime) resourcesOf(id string) *runtimeapi.LinuxContainerResources {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.resources[id]
}

// testPlugin is an NRI plugin whose answers the test sets.
type testPlugin struct {
	mu     sync.Mutex
	pods   []string
	ctrs   []string
	events []string
	synced chan struct{}

	syncWait func(context.Context) // blocks Synchronize while set
	runPod   func(*api.PodSandbox) error
	create   func(context.Context, *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error)
}

func (p *testPlugin) Synchronize(ctx context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	p.mu.Lock()
	for _, x := range pods {
		p.pods = append(p.pods, x.GetId())
	}
	for _, x := range ctrs {
		p.ctrs = append(p.ctrs, x.GetId())
	}
	wait := p.syncWait
	p.mu.Unlock()
	if wait != nil {
		wait(ctx)
	}
	close(p.synced)
	return nil, nil
}

func (p *testPlugin) record(ev string) {
	p.mu.Lock()
	p.events = append(p.events, ev)
	p.mu.Unlock()
}

func (p *testPlugin) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

func (p *testPlugin) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RunPodSandbox " + pod.GetId())
	if p.runPod != nil {
		return p.runPod(pod)
	}
	return nil
}

func (p *testPlugin) CreateContainer(ctx context.Context, _ *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.record("CreateContainer " + c.GetId())
	if p.create != nil {
		return p.create(ctx, c)
	}
	return nil, nil, nil
}

func (p *testPlugin) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	p.record("StopContainer " + c.GetId() + " " + c.GetState().String())
	return nil, nil
}

// shortDir is a temp dir short enough for a unix socket path.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "nri")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func testConfig(dir string) Config {
	return Config{
		SocketPath: filepath.Join(dir, "nri.sock"), PluginPath: filepath.Join(dir, "plugins"), PluginConfigPath: filepath.Join(dir, "conf.d"),
		RegistrationTimeout: 5 * time.Second, RequestTimeout: 2 * time.Second, ExternalPlugins: true,
		RuntimeName: "accel-cri", RuntimeVersion: "test",
	}
}

// startNRI starts NRI over rt with a socket of its own; Cleanup closes it.
func startNRI(t *testing.T, rt Runtime, cfg Config, opts ...Option) *NRI {
	t.Helper()
	n, err := New(cfg, rt, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

// connect runs p as a plugin on n's socket until the test ends, and waits
// for its Synchronize unless wait is false.
func connect(t *testing.T, n *NRI, p *testPlugin, name string, wait bool) {
	t.Helper()
	p.synced = make(chan struct{})
	s, err := stub.New(p, stub.WithPluginName(name), stub.WithPluginIdx("10"), stub.WithSocketPath(n.cfg.SocketPath))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		s.Stop()
		<-done
	})
	if !wait {
		return
	}
	select {
	case <-p.synced:
	case <-time.After(10 * time.Second):
		t.Fatal("plugin not synchronized after 10s")
	}
	waitFor(t, "the plugin to be counted", n.Active)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testPod(id string) Pod {
	return Pod{ID: id, Config: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "pod-" + id, Namespace: "ns", Uid: "u-" + id}}}
}

func testContainer(id, pod string, spec *rspec.Spec) Container {
	return Container{ID: id, PodID: pod, Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "ctr-" + id}}, Spec: spec}
}

func TestSynchronizeAndUnsolicitedUpdates(t *testing.T) {
	rt := &fakeRuntime{
		pods:      []Pod{testPod("p1")},
		ctrs:      []Container{testContainer("c1", "p1", baseSpec())},
		resources: map[string]*runtimeapi.LinuxContainerResources{"c1": {CpuShares: 1024, CpusetCpus: "0-3"}},
	}
	n := startNRI(t, rt, testConfig(shortDir(t)))
	if n.Active() {
		t.Fatal("Active with no plugin connected")
	}
	p := &testPlugin{}
	connect(t, n, p, "sync", true)
	if !slices.Equal(p.pods, []string{"p1"}) || !slices.Equal(p.ctrs, []string{"c1"}) {
		t.Errorf("Synchronize got pods %v, containers %v; want [p1], [c1]", p.pods, p.ctrs)
	}

	// A plugin's own update request goes through the runtime's update path,
	// merged over what the container has.
	u := &api.ContainerUpdate{ContainerId: "c1"}
	u.SetLinuxCPUSetCPUs("1")
	failed, err := n.updateFromPlugin(context.Background(), []*api.ContainerUpdate{u, {ContainerId: "gone"}})
	if err != nil || len(failed) != 0 {
		t.Fatalf("updateFromPlugin = %v, %v; want no failures (a gone container is dropped)", failed, err)
	}
	if got := rt.resourcesOf("c1"); got.GetCpusetCpus() != "1" || got.GetCpuShares() != 1024 {
		t.Errorf("resources after the update = %v; want cpuset 1, shares kept", got)
	}
}

func TestCreateContainerAdjustsAndUpdatesOthers(t *testing.T) {
	rt := &fakeRuntime{resources: map[string]*runtimeapi.LinuxContainerResources{"old": {CpusetCpus: "0-3"}}}
	n := startNRI(t, rt, testConfig(shortDir(t)))
	p := &testPlugin{create: func(_ context.Context, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
		a := &api.ContainerAdjustment{}
		a.AddEnv("NRI_PLUGIN", "adjust")
		a.AddMount(&api.Mount{Destination: "/nri", Source: "/srv/nri", Type: "bind", Options: []string{"rbind", "ro"}})
		u := &api.ContainerUpdate{ContainerId: "old"}
		u.SetLinuxCPUSetCPUs("2-3")
		return a, []*api.ContainerUpdate{u}, nil
	}}
	connect(t, n, p, "adjust", true)

	spec := baseSpec()
	changed, err := n.CreateContainer(context.Background(), testPod("p1"), testContainer("new", "p1", spec))
	if err != nil || !changed {
		t.Fatalf("CreateContainer = %v, %v; want the spec changed", changed, err)
	}
	if !slices.Contains(spec.Process.Env, "NRI_PLUGIN=adjust") {
		t.Errorf("env = %v; want NRI_PLUGIN=adjust", spec.Process.Env)
	}
	if !slices.ContainsFunc(spec.Mounts, func(m rspec.Mount) bool { return m.Destination == "/nri" && m.Source == "/srv/nri" }) {
		t.Errorf("mounts = %v; want /nri from /srv/nri", spec.Mounts)
	}
	if got := rt.resourcesOf("old"); got.GetCpusetCpus() != "2-3" {
		t.Errorf("the other container's cpuset = %q; want 2-3", got.GetCpusetCpus())
	}
}

func TestPluginRefusalFailsTheCall(t *testing.T) {
	n := startNRI(t, &fakeRuntime{}, testConfig(shortDir(t)))
	p := &testPlugin{runPod: func(*api.PodSandbox) error { return errors.New("no pods today") }}
	connect(t, n, p, "refuse", true)
	err := n.RunPodSandbox(context.Background(), testPod("p1"))
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "no pods today") {
		t.Errorf("RunPodSandbox = %v; want FailedPrecondition with the plugin's reason", err)
	}
}

// A plugin that does not answer holds a call for the request timeout at
// most; it is then disconnected and the call goes on without it.
func TestHungPluginBoundedByRequestTimeout(t *testing.T) {
	cfg := testConfig(shortDir(t))
	cfg.RequestTimeout = 500 * time.Millisecond
	n := startNRI(t, &fakeRuntime{}, cfg)
	release := make(chan struct{})
	p := &testPlugin{create: func(context.Context, *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
		<-release // hung: not even its deadline ends the wait
		a := &api.ContainerAdjustment{}
		a.AddEnv("LATE", "1")
		return a, nil, nil
	}}
	connect(t, n, p, "hung", true)
	t.Cleanup(func() { close(release) }) // before the plugin stops (cleanups run last first)

	spec := baseSpec()
	start := time.Now()
	changed, err := n.CreateContainer(context.Background(), testPod("p1"), testContainer("c1", "p1", spec))
	took := time.Since(start)
	if err != nil || changed {
		t.Errorf("CreateContainer = %v, %v; want it to go on without the hung plugin", changed, err)
	}
	if took > cfg.RequestTimeout+time.Second {
		t.Errorf("CreateContainer took %s; want at most the request timeout %s (and some slack)", took, cfg.RequestTimeout)
	}
	waitFor(t, "the hung plugin to be dropped", func() bool {
		// The library drops closed plugins as the next event passes.
		_ = n.RunPodSandbox(context.Background(), testPod("p2"))
		return !n.Active()
	})
}

// While a CRI call holds the sync block, a registering plugin waits for
// it: the plugin either finds the call's result in its Synchronize or gets
// the event, never neither.
func TestBlockSyncHoldsRegistration(t *testing.T) {
	rt := &fakeRuntime{}
	n := startNRI(t, rt, testConfig(shortDir(t)))
	ctx, unblock := n.BlockSync(context.Background())
	if nested, unblockNested := n.BlockSync(ctx); nested != ctx {
		t.Error("a nested BlockSync took the block again")
	} else {
		unblockNested()
	}
	p := &testPlugin{}
	connect(t, n, p, "late", false)
	select {
	case <-p.synced:
		t.Fatal("the plugin synchronized while the block was held")
	case <-time.After(300 * time.Millisecond):
	}
	rt.mu.Lock()
	rt.pods = append(rt.pods, testPod("made-meanwhile"))
	rt.mu.Unlock()
	unblock()
	select {
	case <-p.synced:
	case <-time.After(10 * time.Second):
		t.Fatal("the plugin did not synchronize after the block was released")
	}
	if !slices.Contains(p.pods, "made-meanwhile") {
		t.Errorf("Synchronize got pods %v; want the pod made under the block", p.pods)
	}
}

// Container events reach a plugin that synchronized while CreateContainer
// waited for the block.
func TestCreateDuringSynchronizeIsDelivered(t *testing.T) {
	n := startNRI(t, &fakeRuntime{}, testConfig(shortDir(t)))
	syncing := make(chan struct{})
	release := make(chan struct{})
	p := &testPlugin{syncWait: func(ctx context.Context) {
		close(syncing)
		select {
		case <-release:
		case <-ctx.Done():
		}
	}}
	connect(t, n, p, "slow-sync", false)
	<-syncing
	created := make(chan error, 1)
	go func() {
		ctx, unblock := n.BlockSync(context.Background())
		defer unblock()
		_, err := n.CreateContainer(ctx, testPod("p1"), testContainer("during", "p1", baseSpec()))
		created <- err
	}()
	select {
	case err := <-created:
		t.Fatalf("CreateContainer returned (%v) while a plugin was synchronizing", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	if ev := p.seen(); !slices.Contains(ev, "CreateContainer during") {
		t.Errorf("plugin events = %v; want CreateContainer of the container made during its Synchronize", ev)
	}
}

func TestStartRefusesSocketInUse(t *testing.T) {
	dir := shortDir(t)
	cfg := testConfig(dir)
	l, err := net.Listen("unix", cfg.SocketPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	n, err := New(cfg, &fakeRuntime{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	if err := n.Start(context.Background()); !errdefs.IsAlreadyExists(err) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("Start on a socket another process serves = %v; want AlreadyExists, in use", err)
	}
	if _, err := os.Stat(cfg.SocketPath); err != nil {
		t.Errorf("the other process's socket is gone: %v", err)
	}

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.SocketPath = file
	n2, err := New(cfg, &fakeRuntime{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n2.Close)
	if err := n2.Start(context.Background()); !errdefs.IsAlreadyExists(err) {
		t.Errorf("Start on a regular file = %v; want AlreadyExists", err)
	}
}

func TestSocketIsRootOnly(t *testing.T) {
	n := startNRI(t, &fakeRuntime{}, testConfig(shortDir(t)))
	fi, err := os.Stat(n.cfg.SocketPath)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode = %o; want 600", perm)
	}
	n.Close()
	if _, err := os.Stat(n.cfg.SocketPath); !os.IsNotExist(err) {
		t.Errorf("socket after Close: %v; want it removed", err)
	}
}

// A nil *NRI is NRI switched off: the runtime calls it unconditionally.
func TestNilNRIIsOff(t *testing.T) {
	var n *NRI
	ctx, unblock := n.BlockSync(context.Background())
	defer unblock()
	if n.Active() || n.Status() != nil {
		t.Error("nil NRI reports itself on")
	}
	if err := n.Start(ctx); err != nil {
		t.Error(err)
	}
	if err := n.RunPodSandbox(ctx, testPod("p")); err != nil {
		t.Error(err)
	}
	if changed, err := n.CreateContainer(ctx, testPod("p"), testContainer("c", "p", baseSpec())); changed || err != nil {
		t.Errorf("CreateContainer = %v, %v", changed, err)
	}
	res := &runtimeapi.LinuxContainerResources{CpuShares: 2}
	if got, err := n.UpdateContainer(ctx, testPod("p"), testContainer("c", "p", nil), res); got != res || err != nil {
		t.Errorf("UpdateContainer = %v, %v; want the request back", got, err)
	}
	n.StopContainer(ctx, testPod("p"), testContainer("c", "p", nil))
	n.Close()
}

// blockCheckingRuntime fails when an update or eviction NRI asks for would
// take the sync block again: those run while a block is held (a CRI call's,
// or Synchronize's), and a nested take would deadlock against a waiting
// Synchronize.
type blockCheckingRuntime struct {
	fakeRuntime
	n       *NRI
	retaken []string
}

func (b *blockCheckingRuntime) check(ctx context.Context, what string) {
	if nested, unblock := b.n.BlockSync(ctx); nested != ctx {
		b.retaken = append(b.retaken, what)
		unblock()
	}
}

func (b *blockCheckingRuntime) UpdateContainerResources(ctx context.Context, id string, update func(*runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error)) error {
	b.check(ctx, "update "+id)
	return b.fakeRuntime.UpdateContainerResources(ctx, id, update)
}

func (b *blockCheckingRuntime) EvictContainer(ctx context.Context, id, reason string) error {
	b.check(ctx, "evict "+id)
	return b.fakeRuntime.EvictContainer(ctx, id, reason)
}

func TestUpdatesAndEvictionsDoNotRetakeTheBlock(t *testing.T) {
	rt := &blockCheckingRuntime{fakeRuntime: fakeRuntime{resources: map[string]*runtimeapi.LinuxContainerResources{"c1": {}}}}
	n := startNRI(t, rt, testConfig(shortDir(t)))
	rt.n = n
	u := &api.ContainerUpdate{ContainerId: "c1"}
	u.SetLinuxCPUShares(2)
	n.evict(context.Background(), "test", []*api.ContainerEviction{{ContainerId: "c2", Reason: "test"}})
	n.applyUpdates(context.Background(), "test", []*api.ContainerUpdate{u})
	if _, err := n.updateFromPlugin(context.Background(), []*api.ContainerUpdate{u}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	n.async(func(ctx context.Context) { n.applyUpdates(ctx, "async", []*api.ContainerUpdate{u}); close(done) })
	<-done
	if len(rt.retaken) > 0 {
		t.Errorf("took the sync block again for %v", rt.retaken)
	}
	if !slices.Equal(rt.evicted, []string{"c2"}) || rt.resourcesOf("c1").GetCpuShares() != 2 {
		t.Errorf("evicted %v, c1 = %v; want c2 evicted and c1's shares 2", rt.evicted, rt.resourcesOf("c1"))
	}
}
