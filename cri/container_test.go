package cri

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/devices"
	"github.com/accel-cri/accel-cri/devices/devicetest"
)

// cdiRuntime stands in for sandbox.Runtime's CreateContainer up to its CDI
// check (sandbox/spec's cdiDeviceNames): the errors are the real
// injector's.
type cdiRuntime struct {
	Runtime
	inj *devices.Injector
}

func (f *cdiRuntime) CreateContainer(_ context.Context, _ string, cfg *runtimeapi.ContainerConfig) (string, error) {
	var names []string
	for _, d := range cfg.GetCDIDevices() {
		names = append(names, d.GetName())
	}
	if err := f.inj.Check(names); err != nil {
		return "", err
	}
	return strings.Repeat("c", 64), nil
}

// CDI errors reach the CRI caller with their codes: a device of accel-cri's
// registry that vanished is FailedPrecondition, a name nothing defines
// NotFound.
func TestCreateContainerCDICodes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("mknod needs root")
	}
	dir := t.TempDir()
	h := devicetest.NewHost(t, dir)
	gone := devicetest.IntelArc
	h.AddDRMGPU(devicetest.IntelIGPU)
	h.AddDRMGPU(gone)
	specDir := filepath.Join(dir, "cdi")
	m := devices.New(devices.WithSysfsRoot(h.Sysfs), devices.WithDevRoot(h.Dev), devices.WithNVMLLibrary(filepath.Join(dir, "libnvidia-ml.so.1")), devices.WithCDIDir(specDir))
	if err := m.Refresh(); err != nil {
		t.Fatal(err)
	}
	h.RemoveDRMGPU(gone)
	if err := m.Refresh(); err != nil {
		t.Fatal(err)
	}
	inj, err := devices.NewInjector([]string{specDir}, devices.WithRegistry(m))
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(nil, &cdiRuntime{inj: inj})
	for _, tc := range []struct {
		desc, name string
		want       codes.Code
		msg        string
	}{
		{desc: "present", name: "accel-cri.io/intel-gpu=0000:00:02.0", want: codes.OK},
		{desc: "vanished", name: "accel-cri.io/intel-gpu=0000:03:00.0", want: codes.FailedPrecondition, msg: "accel-cri.io/intel-gpu=1 (0000:03:00.0) vanished and is no longer on the node"},
		{desc: "unknown", name: "accel-cri.io/intel-gpu=7", want: codes.NotFound, msg: `unknown CDI device "accel-cri.io/intel-gpu=7"`},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			cfg := validContainer()
			cfg.CDIDevices = []*runtimeapi.CDIDevice{{Name: tc.name}}
			_, err := s.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{
				PodSandboxId: strings.Repeat("b", 64), Config: cfg, SandboxConfig: validPod(),
			})
			st := status.Convert(ToStatus(err))
			if st.Code() != tc.want || !strings.Contains(st.Message(), tc.msg) {
				t.Errorf("code %v %q, want %v with %q", st.Code(), st.Message(), tc.want, tc.msg)
			}
		})
	}
}
