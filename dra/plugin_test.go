package dra

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"

	"github.com/accel-cri/accel-cri/devices"
)

// fakeInventory is a devices.Manager whose devices the test sets.
type fakeInventory struct {
	mu   sync.Mutex
	devs []devices.Device
	subs []chan struct{}
}

func (f *fakeInventory) Devices() []devices.Device {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.devs)
}

func (f *fakeInventory) Subscribe() (<-chan struct{}, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan struct{}, 1)
	f.subs = append(f.subs, ch)
	return ch, func() {}
}

func (f *fakeInventory) set(devs ...devices.Device) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devs = devs
	for _, ch := range f.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// TestPlugin runs the plugin against a fake API server and talks to its
// DRA socket as the kubelet does: the node's slices appear, a claim is
// prepared to its CDI device, a vanished device gets its taint, and
// Stop removes the sockets.
func TestPlugin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: testNode, UID: "node-uid"}}
	held := claim("uid-1", "held", gpu(gpuA, "gpu"))
	client := fake.NewClientset(node, held)
	inv := &fakeInventory{}
	inv.set(gpuA, gpuB)
	slicesWatch, err := client.ResourceV1().ResourceSlices().Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer slicesWatch.Stop()

	p, err := StartPlugin(ctx, PluginConfig{
		NodeName: testNode, Client: client,
		PluginsDir: filepath.Join(dir, "plugins"), RegistryDir: filepath.Join(dir, "registry"),
		Shares: map[string]int{devices.ClassIntelGPU: 2},
	}, inv)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			p.Stop()
		}
	})
	for _, d := range Drivers {
		for _, sock := range []string{filepath.Join(dir, "plugins", d, "dra.sock"), filepath.Join(dir, "registry", d+"-reg.sock")} {
			if _, err := os.Stat(sock); err != nil {
				t.Fatalf("socket of %s: %v", d, err)
			}
		}
	}

	// The GPU driver's slice: both GPUs, shareable (replicas 2), owned by
	// the node; the other drivers publish an empty pool.
	gpuSlice := waitSlice(t, slicesWatch, func(s *resourceapi.ResourceSlice) bool {
		return s.Spec.Driver == DriverGPU && len(s.Spec.Devices) == 2
	})
	if s := gpuSlice.Spec; s.Pool.Name != testNode || s.NodeName == nil || *s.NodeName != testNode || len(gpuSlice.OwnerReferences) != 1 || gpuSlice.OwnerReferences[0].UID != node.UID {
		t.Fatalf("slice %+v", gpuSlice)
	}
	for _, d := range gpuSlice.Spec.Devices {
		shares := d.Capacity[CapacityShares].Value
		if d.AllowMultipleAllocations == nil || !*d.AllowMultipleAllocations || shares.Value() != 2 {
			t.Fatalf("device %s is not shareable by 2: %+v", d.Name, d)
		}
	}

	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "plugins", DriverGPU, "dra.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kubelet := drapb.NewDRAPluginClient(conn)
	claimWatch, err := client.ResourceV1().ResourceClaims("ns").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer claimWatch.Stop()
	ref := &drapb.Claim{Namespace: held.Namespace, Name: held.Name, Uid: string(held.UID)}
	resp, err := kubelet.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{ref}})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.Claims[string(held.UID)]
	if got.GetError() != "" || len(got.GetDevices()) != 1 || !slices.Equal(got.Devices[0].CdiDeviceIds, []string{"accel-cri.io/intel-gpu=0000:03:00.0"}) || got.Devices[0].DeviceName != DeviceName(gpuA) {
		t.Fatalf("prepare: %v", got)
	}
	waitClaimCondition(t, claimWatch, held, metav1.ConditionTrue, ReasonDevicePresent, "gpu-0000-03-00-0 is on node node-a")

	// A claim the API server does not have fails the call (the helper
	// reads every claim first) and prepares nothing.
	if _, err := kubelet.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{{Namespace: "ns", Name: "nope", Uid: "uid-x"}}}); err == nil {
		t.Fatal("prepared a claim that does not exist")
	}
	if _, ok := p.drivers[0].state.prepared()[DeviceName(gpuA)]; !ok || len(p.drivers[0].state.prepared()) != 1 {
		t.Fatalf("prepared devices after a failed call: %v", p.drivers[0].state.prepared())
	}

	// gpuA vanishes: its device stays, with the taint that keeps the
	// scheduler from allocating it again.
	vanished := gpuA
	vanished.Health = devices.Unhealthy
	inv.set(gpuB, vanished)
	waitSlice(t, slicesWatch, func(s *resourceapi.ResourceSlice) bool {
		if s.Spec.Driver != DriverGPU {
			return false
		}
		for _, d := range s.Spec.Devices {
			if d.Name == DeviceName(gpuA) {
				return len(d.Taints) == 1 && d.Taints[0].Key == TaintUnhealthy && d.Taints[0].Effect == resourceapi.DeviceTaintEffectNoSchedule
			}
		}
		return false
	})

	// The prepared claim's status says why its device is gone.
	waitClaimCondition(t, claimWatch, held, metav1.ConditionFalse, ReasonDeviceVanished,
		"accel-cri.io/intel-gpu=0000:03:00.0 vanished from node node-a")

	un, err := kubelet.NodeUnprepareResources(ctx, &drapb.NodeUnprepareResourcesRequest{Claims: []*drapb.Claim{ref}})
	if err != nil || un.Claims[string(held.UID)].GetError() != "" {
		t.Fatalf("unprepare: %v %v", un, err)
	}
	p.Stop()
	stopped = true
	for _, d := range Drivers {
		if _, err := os.Stat(filepath.Join(dir, "registry", d+"-reg.sock")); !os.IsNotExist(err) {
			t.Fatalf("registration socket of %s after Stop: %v", d, err)
		}
	}
}

// waitClaimCondition waits for claim's one status.devices entry (its GPU)
// to carry the Healthy condition with status, reason and message.
func waitClaimCondition(t *testing.T, w watch.Interface, claim *resourceapi.ResourceClaim, status metav1.ConditionStatus, reason, message string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	var last any
	for {
		select {
		case ev := <-w.ResultChan():
			c, ok := ev.Object.(*resourceapi.ResourceClaim)
			if !ok || c.UID != claim.UID {
				continue
			}
			last = c.Status.Devices
			if len(c.Status.Devices) != 1 {
				continue
			}
			ds := c.Status.Devices[0]
			if ds.Driver != DriverGPU || ds.Pool != testNode || ds.Device != DeviceName(gpuA) || len(ds.Conditions) != 1 {
				t.Fatalf("claim device status %+v", ds)
			}
			cond := ds.Conditions[0]
			if cond.Type == ConditionHealthy && cond.Status == status && cond.Reason == reason && strings.Contains(cond.Message, message) {
				return
			}
		case <-timeout:
			t.Fatalf("claim %s: no %s=%s %s %q within 30 s; last status.devices %+v", claim.Name, ConditionHealthy, status, reason, message, last)
		}
	}
}

// waitSlice waits for an added or modified ResourceSlice that ok accepts.
func waitSlice(t *testing.T, w watch.Interface, ok func(*resourceapi.ResourceSlice) bool) *resourceapi.ResourceSlice {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-w.ResultChan():
			if s, isSlice := ev.Object.(*resourceapi.ResourceSlice); isSlice && ev.Type != watch.Deleted && ok(s) {
				return s
			}
		case <-timeout:
			t.Fatal("no such ResourceSlice within 30 s")
		}
	}
}

// TestPluginAPIServerDown: with the API server unreachable, StartPlugin
// returns at once and the drivers serve the kubelet (the first publish
// waits in the background), and Stop ends it all. accel-cri starts the
// plugin before it serves the CRI, and a node whose API server runs as a
// static pod needs the CRI to bring that API server up.
func TestPluginAPIServerDown(t *testing.T) {
	dir := t.TempDir()
	client, err := kubernetes.NewForConfig(&rest.Config{Host: "https://127.0.0.1:1", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	inv := &fakeInventory{}
	inv.set(gpuA)
	started := make(chan error, 1)
	var p *Plugin
	go func() {
		var err error
		p, err = StartPlugin(context.Background(), PluginConfig{
			NodeName: testNode, Client: client,
			PluginsDir: filepath.Join(dir, "plugins"), RegistryDir: filepath.Join(dir, "registry"),
		}, inv)
		started <- err
	}()
	select {
	case err := <-started:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("StartPlugin waits for the unreachable API server")
	}
	stopped := make(chan struct{})
	go func() { p.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("Stop hangs while the first publish waits for the API server")
	}
}
