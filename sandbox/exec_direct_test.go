package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	eventtypes "github.com/containerd/containerd/api/events"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/sandbox/shim"
)

// Only containers of runc-type handlers of the managed containerd are
// exec'd directly; everything else goes through containerd.
func TestDirectShimSocketSelection(t *testing.T) {
	bundles := t.TempDir()
	state := t.TempDir()
	handlers := map[string]*handler{}
	for name, cfg := range map[string]HandlerConfig{
		"runc":       {Type: RuntimeTypeRunc},
		"crun":       {Type: RuntimeTypeRunc, BinaryName: "crun"},
		"runsc":      {Type: RuntimeTypeRunsc},
		"kata":       {Type: RuntimeTypeKata},
		"runc-bound": {Type: RuntimeTypeRunc},
	} {
		h, err := newHandler(name, cfg, state, "overlayfs", false)
		if err != nil {
			t.Fatal(err)
		}
		handlers[name] = h
	}
	r := &Runtime{store: newStore(t.TempDir()), handlers: handlers, defaultHandler: "runc"}
	boot := `{"version":3,"address":"unix:///run/containerd/s/x","protocol":"ttrpc"}`
	for _, tc := range []struct {
		desc, handler string
		bootstrap     bool
		noBundleRoot  bool
		direct        bool
	}{
		{desc: "runc", handler: "runc", bootstrap: true, direct: true},
		{desc: "default handler", handler: "", bootstrap: true, direct: true},
		{desc: "crun through the runc shim", handler: "crun", bootstrap: true, direct: true},
		{desc: "gVisor shim", handler: "runsc", bootstrap: true},
		{desc: "kata shim", handler: "kata", bootstrap: true},
		{desc: "no bootstrap file", handler: "runc"},
		{desc: "external containerd", handler: "runc", bootstrap: true, noBundleRoot: true},
		{desc: "unknown handler", handler: "gone", bootstrap: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			id := newID()
			addShownPod(r.store, newPod(podMeta{ID: "pod-" + id, RuntimeHandler: tc.handler}))
			c := newContainer(containerMeta{ID: id, PodID: "pod-" + id})
			if tc.bootstrap {
				dir := filepath.Join(bundles, "ns", id)
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "bootstrap.json"), []byte(boot), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			r.shims = shim.New(shim.Config{Namespace: "ns", BundleRoot: bundles})
			if tc.noBundleRoot {
				r.shims = nil
			}
			got, err := r.directShimSocket(c)
			if tc.direct && (err != nil || got != "/run/containerd/s/x") {
				t.Errorf("directShimSocket = %q, %v; want the shim's socket", got, err)
			}
			if !tc.direct && !errors.Is(err, shim.ErrNotDirect) {
				t.Errorf("directShimSocket = %q, %v; want shim.ErrNotDirect (through containerd)", got, err)
			}
		})
	}
}

// The shim reports its exec processes' exits to containerd, which passes
// them on to the exit monitor: they must not end the container.
func TestMonitorIgnoresExecExits(t *testing.T) {
	r := &Runtime{store: newStore(t.TempDir())}
	c := newContainer(containerMeta{ID: "c1", PodID: "p1"})
	r.store.addContainer(c)
	if err := r.store.setContainerStatus(c, containerStatus{State: runtimeapi.ContainerState_CONTAINER_RUNNING, PID: 42}); err != nil {
		t.Fatal(err)
	}
	m := newMonitor(r)
	m.handle(&eventtypes.TaskExit{ContainerID: "c1", ID: "0123456789abcdef0123456789abcdef", Pid: 77, ExitStatus: 137})
	m.wg.Wait()
	select {
	case <-c.exited:
		t.Fatal("an exec's exit ended the container")
	default:
	}
	if st := r.store.containerStatusOf(c); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("state after an exec's exit: %s", st.State)
	}
}
