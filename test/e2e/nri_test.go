package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// nriPlugin is an NRI plugin made with NRI's stub, run in the test process
// against accel-cri's NRI socket: it records every event and adjusts the
// containers it is told to (an environment variable and a bind mount).
type nriPlugin struct {
	env      string // NRI_E2E's value
	mountSrc string // mounted at /nri-data

	mu     sync.Mutex
	events []string // "<event> <id>"
	synced []string // container ids of Synchronize
	ready  chan struct{}
	stub   stub.Stub
}

func (p *nriPlugin) record(event, id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, event+" "+id)
}

// eventsOf lists the recorded events about id, in order.
func (p *nriPlugin) eventsOf(id string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, e := range p.events {
		if ev, eid, _ := strings.Cut(e, " "); eid == id {
			out = append(out, ev)
		}
	}
	return out
}

func (p *nriPlugin) Synchronize(_ context.Context, _ []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	p.mu.Lock()
	for _, c := range ctrs {
		p.synced = append(p.synced, c.GetId())
	}
	p.mu.Unlock()
	close(p.ready)
	return nil, nil
}

func (p *nriPlugin) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RunPodSandbox", pod.GetId())
	return nil
}

func (p *nriPlugin) StopPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("StopPodSandbox", pod.GetId())
	return nil
}

func (p *nriPlugin) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RemovePodSandbox", pod.GetId())
	return nil
}

func (p *nriPlugin) CreateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.record("CreateContainer", c.GetId())
	a := &api.ContainerAdjustment{}
	a.AddEnv("NRI_E2E", p.env)
	a.AddMount(&api.Mount{Destination: "/nri-data", Source: p.mountSrc, Type: "bind", Options: []string{"rbind", "ro"}})
	return a, nil, nil
}

func (p *nriPlugin) PostCreateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.record("PostCreateContainer", c.GetId())
	return nil
}

func (p *nriPlugin) StartContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.record("StartContainer", c.GetId())
	return nil
}

func (p *nriPlugin) PostStartContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.record("PostStartContainer", c.GetId())
	return nil
}

func (p *nriPlugin) UpdateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container, _ *api.LinuxResources) ([]*api.ContainerUpdate, error) {
	p.record("UpdateContainer", c.GetId())
	return nil, nil
}

func (p *nriPlugin) PostUpdateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.record("PostUpdateContainer", c.GetId())
	return nil
}

func (p *nriPlugin) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	p.record(fmt.Sprintf("StopContainer(exit=%d)", c.GetExitCode()), c.GetId())
	return nil, nil
}

func (p *nriPlugin) RemoveContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.record("RemoveContainer", c.GetId())
	return nil
}

// startNRIPlugin connects p to socket as plugin 10-<name> and waits for its
// Synchronize; Cleanup disconnects it.
func startNRIPlugin(t *testing.T, socket, name string, p *nriPlugin) {
	t.Helper()
	p.ready = make(chan struct{})
	s, err := stub.New(p, stub.WithPluginName(name), stub.WithPluginIdx("10"), stub.WithSocketPath(socket))
	if err != nil {
		t.Fatal(err)
	}
	p.stub = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		s.Stop()
		<-done
	})
	select {
	case <-p.ready:
	case err := <-done:
		t.Fatalf("NRI plugin stopped before it synchronized: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("NRI plugin not synchronized after 30s")
	}
}

// waitEvents waits until the plugin saw want about id, in this order.
func waitEvents(t *testing.T, p *nriPlugin, id string, want []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := p.eventsOf(id)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("NRI events of %s = %v; want %v", id, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNRIPlugin(t *testing.T) {
	e := startPodEnv(t)
	ctx := ctxT(t, 10*time.Minute)

	st, err := e.Runtime.Status(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	var nriInfo struct{ Socket string }
	if err := json.Unmarshal([]byte(st.GetInfo()["nri"]), &nriInfo); err != nil || nriInfo.Socket != e.NRISocket() {
		t.Fatalf("verbose Status nri = %q (%v); want socket %s", st.GetInfo()["nri"], err, e.NRISocket())
	}

	data := filepath.Join(e.Dir, "nri-data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "msg"), []byte("mounted-by-nri\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &nriPlugin{env: "adjusted", mountSrc: data}
	startNRIPlugin(t, e.NRISocket(), "e2e", p)

	podID, pod := e.runPod(t, "nri")
	waitEvents(t, p, podID, []string{"RunPodSandbox"})

	t.Run("a plugin's adjustments reach the container", func(t *testing.T) {
		cfg := e.busybox("adjusted", "echo env=$NRI_E2E; cat /nri-data/msg; sleep 3600")
		id := e.RunContainer(t, podID, pod, cfg)
		framework.WaitLog(t, logPath(pod, cfg), "env=adjusted\nmounted-by-nri", 30*time.Second)
		// Exec uses the adjusted process too.
		stdout, _, err := e.Runtime.ExecSync(ctx, id, []string{"sh", "-c", "echo $NRI_E2E"}, 10*time.Second)
		if err != nil || strings.TrimSpace(string(stdout)) != "adjusted" {
			t.Errorf("exec sees NRI_E2E = %q (%v); want adjusted", stdout, err)
		}

		// kubelet's update goes past the plugins; the plugin's own update
		// goes through the same path and shows in the status.
		if err := e.Runtime.UpdateContainerResources(ctx, id, &runtimeapi.ContainerResources{Linux: &runtimeapi.LinuxContainerResources{CpuShares: 512}}); err != nil {
			t.Fatal(err)
		}
		u := &api.ContainerUpdate{ContainerId: id}
		u.SetLinuxCPUShares(768)
		if failed, err := p.stub.UpdateContainers([]*api.ContainerUpdate{u}); err != nil || len(failed) > 0 {
			t.Fatalf("plugin's UpdateContainers = %v, %v", failed, err)
		}
		cs, err := e.Runtime.ContainerStatus(ctx, id, false)
		if err != nil {
			t.Fatal(err)
		}
		if got := cs.GetStatus().GetResources().GetLinux().GetCpuShares(); got != 768 {
			t.Errorf("cpu shares after the plugin's update = %d; want 768", got)
		}

		if err := e.Runtime.StopContainer(ctx, id, 0); err != nil {
			t.Fatal(err)
		}
		if err := e.Runtime.RemoveContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		waitEvents(t, p, id, []string{
			"CreateContainer", "PostCreateContainer", "StartContainer", "PostStartContainer",
			"UpdateContainer", "PostUpdateContainer", "StopContainer(exit=137)", "RemoveContainer",
		})
	})

	t.Run("a container that exits by itself is reported stopped", func(t *testing.T) {
		cfg := e.busybox("quits", "exit 3")
		id := e.RunContainer(t, podID, pod, cfg)
		e.WaitContainer(t, id, exited, 30*time.Second)
		waitEvents(t, p, id, []string{"CreateContainer", "PostCreateContainer", "StartContainer", "PostStartContainer", "StopContainer(exit=3)"})
		if err := e.Runtime.RemoveContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		waitEvents(t, p, id, []string{"CreateContainer", "PostCreateContainer", "StartContainer", "PostStartContainer", "StopContainer(exit=3)", "RemoveContainer"})
	})

	t.Run("a plugin connecting later is synchronized with what runs", func(t *testing.T) {
		cfg := e.busybox("running", "sleep 3600")
		id := e.RunContainer(t, podID, pod, cfg)
		late := &nriPlugin{env: "late", mountSrc: data}
		startNRIPlugin(t, e.NRISocket(), "late", late)
		if !slices.Contains(late.synced, id) {
			t.Errorf("Synchronize of a later plugin got containers %v; want %s among them", late.synced, id)
		}
	})

	if err := e.Runtime.StopPodSandbox(ctx, podID); err != nil {
		t.Fatal(err)
	}
	if err := e.Runtime.StopPodSandbox(ctx, podID); err != nil {
		t.Fatal(err)
	}
	if err := e.Runtime.RemovePodSandbox(ctx, podID); err != nil {
		t.Fatal(err)
	}
	waitEvents(t, p, podID, []string{"RunPodSandbox", "StopPodSandbox", "RemovePodSandbox"})
}
