package devices

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/accel-cri/accel-cri/devices/devicetest"
)

func TestDevicePlugin(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	h := devicetest.NewHost(t, dir)
	h.AddDRMGPU(igpu)
	h.AddDRMGPU(dgpu)
	kdir := filepath.Join(dir, "device-plugins")
	m := New(WithSysfsRoot(h.Sysfs), WithDevRoot(h.Dev), WithNVMLLibrary("/nonexistent/libnvidia-ml.so.1"), WithCDIDir(filepath.Join(dir, "cdi")), WithSettle(20*time.Millisecond))
	if err := m.Refresh(); err != nil {
		t.Fatal(err)
	}
	kl := devicetest.StartKubelet(t, mkdir(t, kdir))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go m.Watch(ctx)
	go NewPlugins(m, kdir, map[string]int{ClassIntelGPU: 2}).Run(ctx)

	reg := kl.WaitRegistered("accel-cri.io/intel-gpu", 10*time.Second)
	if reg.Version != pluginapi.Version || reg.Endpoint != "accel-cri-intel-gpu.sock" {
		t.Errorf("registration %+v", reg)
	}
	client := kl.Dial(reg)
	stream, err := client.ListAndWatch(ctx, &pluginapi.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range first.Devices {
		ids = append(ids, d.ID+"="+d.Health)
	}
	want := []string{"0000:00:02.0::0=Healthy", "0000:00:02.0::1=Healthy", "0000:03:00.0::0=Healthy", "0000:03:00.0::1=Healthy"}
	if !slices.Equal(ids, want) {
		t.Errorf("devices %v, want %v", ids, want)
	}

	resp, err := client.Allocate(ctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{
		{DevicesIds: []string{"0000:03:00.0::1"}},
		{DevicesIds: []string{"0000:00:02.0::0", "0000:00:02.0::1"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.ContainerResponses[0].CdiDevices; len(got) != 1 || got[0].Name != "accel-cri.io/intel-gpu=0000:03:00.0" {
		t.Errorf("allocation 0: %v", got)
	}
	if got := resp.ContainerResponses[1].CdiDevices; len(got) != 1 || got[0].Name != "accel-cri.io/intel-gpu=0000:00:02.0" {
		t.Errorf("allocation 1 (replicas of one device): %v", got)
	}
	if _, err := client.Allocate(ctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{"nope"}}}}); err == nil {
		t.Error("allocating an unknown device succeeded")
	}

	// A device vanishes: ListAndWatch reports it Unhealthy.
	h.RemoveDRMGPU(dgpu)
	for {
		r, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var unhealthy []string
		for _, d := range r.Devices {
			if d.Health == pluginapi.Unhealthy {
				unhealthy = append(unhealthy, d.ID)
			}
		}
		if strings.Join(unhealthy, ",") == "0000:03:00.0::0,0000:03:00.0::1" {
			break
		}
	}

	// kubelet restarts: the plugin registers again.
	kl.Stop()
	kl.Start()
	reg = kl.WaitRegistered("accel-cri.io/intel-gpu", 10*time.Second)
	if _, err := kl.Dial(reg).GetDevicePluginOptions(ctx, &pluginapi.Empty{}); err != nil {
		t.Errorf("plugin after kubelet restart: %v", err)
	}
}

func mkdir(t *testing.T, d string) string {
	t.Helper()
	if err := osMkdirAll(d); err != nil {
		t.Fatal(err)
	}
	return d
}

func osMkdirAll(d string) error { return os.MkdirAll(d, 0o755) }
