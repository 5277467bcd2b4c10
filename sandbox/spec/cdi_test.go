package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/devices"
	"github.com/accel-cri/accel-cri/devices/devicetest"
)

// fakeCDI knows the names in known; Inject records the user it saw and
// adds one node per name.
type fakeCDI struct {
	known    map[string]bool
	injected []string
	sawUID   uint32
}

func (f *fakeCDI) Check(names []string) error {
	for _, n := range names {
		if !f.known[n] {
			return fmt.Errorf("%w: unknown CDI device %q", errdefs.ErrNotFound, n)
		}
	}
	return nil
}

func (f *fakeCDI) Inject(s *runtimespec.Spec, names []string) error {
	f.injected = append(f.injected, names...)
	f.sawUID = s.Process.User.UID
	for range names {
		s.Linux.Devices = append(s.Linux.Devices, runtimespec.LinuxDevice{Path: "/dev/dri/renderD128", Type: "c", Major: 226, Minor: 128})
	}
	return nil
}

func TestSpecCDI(t *testing.T) {
	for _, tc := range []struct {
		desc        string
		cdi         *fakeCDI
		field       []string
		annotations map[string]string
		want        []string
		wantErr     error
	}{
		{desc: "none", cdi: &fakeCDI{}},
		{desc: "field then annotations, deduplicated", cdi: &fakeCDI{known: map[string]bool{"accel-cri.io/gpu=0": true, "accel-cri.io/gpu=1": true}},
			field:       []string{"accel-cri.io/gpu=1"},
			annotations: map[string]string{"cdi.k8s.io/dp": "accel-cri.io/gpu=0,accel-cri.io/gpu=1"},
			want:        []string{"accel-cri.io/gpu=1", "accel-cri.io/gpu=0"}},
		{desc: "unknown name", cdi: &fakeCDI{}, field: []string{"accel-cri.io/gpu=9"}, wantErr: errdefs.ErrNotFound},
		{desc: "malformed annotation", cdi: &fakeCDI{}, annotations: map[string]string{"cdi.k8s.io/dp": "gpu"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "CDI off", field: []string{"accel-cri.io/gpu=0"}, wantErr: errdefs.ErrFailedPrecondition},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p := testContainer(t)
			b := testBuilder(t, func(h *Host) {
				if tc.cdi != nil {
					h.CDI = tc.cdi
				}
			})
			for _, n := range tc.field {
				p.Config.CDIDevices = append(p.Config.CDIDevices, &runtimeapi.CDIDevice{Name: n})
			}
			p.Config.Annotations = tc.annotations
			s, err := applyContainer(t, b, p)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			if !slices.Equal(tc.cdi.injected, tc.want) {
				t.Errorf("injected %v, want %v", tc.cdi.injected, tc.want)
			}
			if len(tc.want) > 0 && tc.cdi.sawUID != 1000 {
				t.Errorf("injection ran before the user was set (uid %d)", tc.cdi.sawUID)
			}
			if n := len(s.Linux.Devices); n != len(tc.want) {
				t.Errorf("%d devices, want %d", n, len(tc.want))
			}
		})
	}
}

func TestSpecDeviceOwnership(t *testing.T) {
	for _, on := range []bool{false, true} {
		p := testContainer(t)
		b := testBuilder(t, func(h *Host) { h.DeviceOwnershipFromSecurityContext = on })
		p.Config.Devices = []*runtimeapi.Device{{HostPath: "/dev/null", ContainerPath: "/dev/x", Permissions: "rw"}}
		s, err := applyContainer(t, b, p)
		if err != nil {
			t.Fatal(err)
		}
		var d *runtimespec.LinuxDevice
		for i := range s.Linux.Devices {
			if s.Linux.Devices[i].Path == "/dev/x" {
				d = &s.Linux.Devices[i]
			}
		}
		if d == nil {
			t.Fatalf("no /dev/x in %+v", s.Linux.Devices)
		}
		want := uint32(0)
		if on {
			want = 1000
		}
		if *d.UID != want || *d.GID != want {
			t.Errorf("ownership %v: node owned by %d:%d, want %d", on, *d.UID, *d.GID, want)
		}
	}
}

// The real injector with accel-cri's registry: a GPU the devices.Manager
// has resolves without its spec file; once it vanishes, CreateContainer's
// check and a spec applied after the check both fail with
// FailedPrecondition (the CRI code kubelet sees), not NotFound.
func TestSpecCDIRegistry(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("mknod needs root")
	}
	dir := t.TempDir()
	h := devicetest.NewHost(t, dir)
	gpu := devicetest.IntelArc
	h.AddDRMGPU(gpu)
	specDir := filepath.Join(dir, "cdi")
	m := devices.New(devices.WithSysfsRoot(h.Sysfs), devices.WithDevRoot(h.Dev), devices.WithNVMLLibrary(filepath.Join(dir, "libnvidia-ml.so.1")), devices.WithCDIDir(specDir))
	if err := m.Refresh(); err != nil {
		t.Fatal(err)
	}
	if err := devices.RemoveSpecs(specDir); err != nil {
		t.Fatal(err)
	}
	inj, err := devices.NewInjector([]string{specDir}, devices.WithRegistry(m))
	if err != nil {
		t.Fatal(err)
	}
	b := testBuilder(t, func(h *Host) { h.CDI = inj })
	p := testContainer(t)
	p.Config.CDIDevices = []*runtimeapi.CDIDevice{{Name: "accel-cri.io/intel-gpu=0000:03:00.0"}}

	s, err := applyContainer(t, b, p)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, d := range s.Linux.Devices {
		paths = append(paths, d.Path)
	}
	if !slices.Contains(paths, "/dev/dri/renderD128") || !slices.Contains(s.Process.User.AdditionalGids, 993) {
		t.Errorf("devices %v, groups %v", paths, s.Process.User.AdditionalGids)
	}

	plan, err := b.Container(p) // checked while the GPU is there
	if err != nil {
		t.Fatal(err)
	}
	h.RemoveDRMGPU(gpu)
	if err := m.Refresh(); err != nil {
		t.Fatal(err)
	}
	if _, err := applyPlan(t, plan); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "no longer on the node") {
		t.Errorf("injection after the GPU vanished: %v", err)
	}
	if _, err := b.Container(p); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("check after the GPU vanished: %v", err)
	}
}
