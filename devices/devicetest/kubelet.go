package devicetest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// Kubelet plays kubelet's side of the device-plugin API: it serves the
// Registration service on <Dir>/kubelet.sock and hands every registration
// to the test.
type Kubelet struct {
	pluginapi.UnimplementedRegistrationServer
	t   testing.TB
	Dir string
	// Registered receives each RegisterRequest.
	Registered chan *pluginapi.RegisterRequest
	g          *grpc.Server
}

// StartKubelet serves kubelet.sock in dir until the test ends or Stop.
func StartKubelet(t testing.TB, dir string) *Kubelet {
	t.Helper()
	k := &Kubelet{t: t, Dir: dir, Registered: make(chan *pluginapi.RegisterRequest, 16)}
	k.Start()
	t.Cleanup(k.Stop)
	return k
}

// Start (again) serves kubelet.sock, like a restarted kubelet: it removes
// every socket in the directory first, as kubelet does.
func (k *Kubelet) Start() {
	k.t.Helper()
	socks, _ := filepath.Glob(filepath.Join(k.Dir, "*.sock"))
	for _, s := range socks {
		os.Remove(s)
	}
	lis, err := net.Listen("unix", filepath.Join(k.Dir, "kubelet.sock"))
	if err != nil {
		k.t.Fatal(err)
	}
	k.g = grpc.NewServer()
	pluginapi.RegisterRegistrationServer(k.g, k)
	go k.g.Serve(lis)
}

// Stop stops serving and removes kubelet.sock.
func (k *Kubelet) Stop() {
	if k.g != nil {
		k.g.Stop()
		k.g = nil
	}
	os.Remove(filepath.Join(k.Dir, "kubelet.sock"))
}

// Register implements the Registration service.
func (k *Kubelet) Register(_ context.Context, r *pluginapi.RegisterRequest) (*pluginapi.Empty, error) {
	k.Registered <- r
	return &pluginapi.Empty{}, nil
}

// WaitRegistered waits for the registration of resource.
func (k *Kubelet) WaitRegistered(resource string, timeout time.Duration) *pluginapi.RegisterRequest {
	k.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case r := <-k.Registered:
			if r.ResourceName == resource {
				return r
			}
		case <-deadline:
			k.t.Fatalf("no registration of %s within %s", resource, timeout)
			return nil
		}
	}
}

// Dial connects to a registered plugin's endpoint.
func (k *Kubelet) Dial(r *pluginapi.RegisterRequest) pluginapi.DevicePluginClient {
	k.t.Helper()
	conn, err := grpc.NewClient("unix://"+filepath.Join(k.Dir, r.Endpoint), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		k.t.Fatal(err)
	}
	k.t.Cleanup(func() { conn.Close() })
	return pluginapi.NewDevicePluginClient(conn)
}
