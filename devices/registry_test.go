package devices

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"tags.cncf.io/container-device-interface/pkg/cdi"
	cdispec "tags.cncf.io/container-device-interface/specs-go"

	"github.com/accel-cri/accel-cri/devices/devicetest"
)

// registryHost is a fake host with two Intel GPUs, a DFL FPGA and a static
// device, and a Manager over it that publishes into <dir>/cdi.
func registryHost(t *testing.T) (*devicetest.Host, *Manager, string) {
	t.Helper()
	needRoot(t)
	dir := t.TempDir()
	h := devicetest.NewHost(t, dir)
	h.AddDRMGPU(igpu)
	h.AddDRMGPU(dgpu)
	h.AddDFLFPGA(0, 0, "0000:08:00.0", "bfac4d851ee856fe8c95865ce1bbaa2d", "d8424dc4a4a3c413f89e433683f9040b", devicetest.Null)
	h.Mknod("xilinx_u30", devicetest.Null, 0o660, gidVideo)
	specDir := filepath.Join(dir, "cdi")
	m := New(WithSysfsRoot(h.Sysfs), WithDevRoot(h.Dev), WithNVMLLibrary("/nonexistent/libnvidia-ml.so.1"), WithCDIDir(specDir),
		WithStatic(StaticDevice{Name: "u30", Path: filepath.Join(h.Dev, "xilinx_u30")}))
	if err := m.Refresh(); err != nil {
		t.Fatal(err)
	}
	return h, m, specDir
}

func nodePaths(e cdispec.ContainerEdits) string {
	var p []string
	for _, n := range e.DeviceNodes {
		p = append(p, n.Path)
	}
	return strings.Join(p, " ")
}

func TestResolveCDI(t *testing.T) {
	_, m, _ := registryHost(t)
	for _, tc := range []struct {
		desc, name string
		nodes      string // the device's node paths
		wantErr    error
	}{
		{desc: "index", name: "accel-cri.io/intel-gpu=1", nodes: "/dev/dri/card1 /dev/dri/renderD129"},
		{desc: "PCI address alias", name: "accel-cri.io/intel-gpu=0000:00:02.0", nodes: "/dev/dri/card0 /dev/dri/renderD128"},
		{desc: "all of a class", name: "accel-cri.io/intel-gpu=all", nodes: "/dev/dri/card0 /dev/dri/renderD128 /dev/dri/card1 /dev/dri/renderD129"},
		{desc: "FPGA port alias", name: "accel-cri.io/fpga=dfl-port.0", nodes: "/dev/dfl-port.0"},
		{desc: "static by configured name", name: "accel-cri.io/device=u30", nodes: "/dev/xilinx_u30"},
		{desc: "unknown index", name: "accel-cri.io/intel-gpu=7", wantErr: errdefs.ErrNotFound},
		{desc: "unknown class", name: "accel-cri.io/amd-gpu=0", wantErr: errdefs.ErrNotFound},
		{desc: "another vendor", name: "nvidia.com/gpu=0", wantErr: errdefs.ErrNotFound},
		{desc: "malformed", name: "accel-cri.io/x=0", wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			d, err := m.ResolveCDI(tc.name)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := nodePaths(d.Edits); got != tc.nodes {
				t.Errorf("nodes %q, want %q", got, tc.nodes)
			}
			if class := strings.TrimPrefix(strings.SplitN(tc.name, "=", 2)[0], Vendor+"/"); d.Kind != Vendor+"/"+class {
				t.Errorf("kind %q", d.Kind)
			}
		})
	}
}

// The registry's edits are the spec files' edits, name by name: one place
// (Spec) builds both. NVIDIA has class-wide edits as well.
func TestRegistryMatchesSpecFiles(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	h := devicetest.NewHost(t, dir)
	h.AddDRMGPU(igpu)
	h.AddDRMGPU(amd)
	h.Mknod("nvidia0", devicetest.Null, 0o666, 0)
	h.Mknod("nvidia1", devicetest.Null, 0o666, 0)
	h.Mknod("nvidiactl", devicetest.Null, 0o666, 0)
	libDir := filepath.Join(dir, "driver", "usr/lib/x86_64-linux-gnu")
	os.MkdirAll(libDir, 0o755)
	os.WriteFile(filepath.Join(libDir, "libcuda.so.550.54.15"), []byte("ELF"), 0o644)
	os.Symlink("libcuda.so.550.54.15", filepath.Join(libDir, "libcuda.so.1"))
	specDir := filepath.Join(dir, "cdi")
	m := New(WithSysfsRoot(h.Sysfs), WithDevRoot(h.Dev), WithDriverRoot(filepath.Join(dir, "driver")), WithLdCache(""),
		withNVML(fakeNVML(0, 1)), WithCDIDir(specDir))
	if err := m.Refresh(); err != nil {
		t.Fatal(err)
	}
	cache, err := cdi.NewCache(cdi.WithSpecDirs(specDir), cdi.WithAutoRefresh(false))
	if err != nil {
		t.Fatal(err)
	}
	names := cache.ListDevices()
	if len(names) != 11 { // gpu 0,1,2 UUIDs,all; intel-gpu 0,pci,all; amd-gpu 0,pci,all
		t.Errorf("spec files name %d devices: %v", len(names), names)
	}
	asJSON := func(e cdispec.ContainerEdits) string {
		b, _ := json.Marshal(e)
		return string(b)
	}
	for _, n := range names {
		d, err := m.ResolveCDI(n)
		if err != nil {
			t.Errorf("%s: %v", n, err)
			continue
		}
		file := cache.GetDevice(n)
		if asJSON(d.Edits) != asJSON(file.ContainerEdits) {
			t.Errorf("%s: registry edits\n%s\nspec file\n%s", n, asJSON(d.Edits), asJSON(file.ContainerEdits))
		}
		if asJSON(d.ClassEdits) != asJSON(file.GetSpec().ContainerEdits) {
			t.Errorf("%s: registry class edits\n%s\nspec file\n%s", n, asJSON(d.ClassEdits), asJSON(file.GetSpec().ContainerEdits))
		}
		if strings.HasPrefix(n, Vendor+"/gpu=") && !strings.Contains(asJSON(d.ClassEdits), "libcuda.so.1") {
			t.Errorf("%s: no NVIDIA class edits: %s", n, asJSON(d.ClassEdits))
		}
	}

	// Without any spec file: NVIDIA GPUs in request order, the class's
	// edits once, next to a DRM GPU that is still renumbered.
	if err := RemoveSpecs(specDir); err != nil {
		t.Fatal(err)
	}
	inj, err := NewInjector([]string{specDir}, WithRegistry(m))
	if err != nil {
		t.Fatal(err)
	}
	s := baseSpec()
	if err := inj.Inject(s, []string{"accel-cri.io/gpu=1", "accel-cri.io/amd-gpu=0", "accel-cri.io/gpu=GPU-00000000-aaaa-bbbb-cccc-ddddeeeeffff"}); err != nil {
		t.Fatal(err)
	}
	if v := envValue(s.Process.Env, "NVIDIA_VISIBLE_DEVICES"); v != "GPU-00000001-aaaa-bbbb-cccc-ddddeeeeffff,GPU-00000000-aaaa-bbbb-cccc-ddddeeeeffff" {
		t.Errorf("NVIDIA_VISIBLE_DEVICES=%q", v)
	}
	if v := envValue(s.Process.Env, "LD_LIBRARY_PATH"); v != "/usr/local/nvidia/lib64:/opt/app/lib" {
		t.Errorf("LD_LIBRARY_PATH=%q", v)
	}
	var paths []string
	for _, d := range s.Linux.Devices {
		paths = append(paths, d.Path)
	}
	if strings.Join(paths, " ") != "/dev/nvidiactl /dev/nvidia1 /dev/dri/card0 /dev/dri/renderD128 /dev/nvidia0" {
		t.Errorf("devices %v", paths)
	}
	if len(s.Mounts) != 1 || s.Mounts[0].Destination != "/usr/local/nvidia/lib64/libcuda.so.1" || !slices.Contains(s.Mounts[0].Options, "ro") {
		t.Errorf("mounts %+v", s.Mounts)
	}
}

func TestInjectFromRegistry(t *testing.T) {
	h, m, specDir := registryHost(t)
	otherDir := filepath.Join(h.Root, "etc-cdi")
	os.MkdirAll(otherDir, 0o755)
	os.WriteFile(filepath.Join(otherDir, "other.yaml"), []byte("cdiVersion: 0.6.0\nkind: vendor.example/thing\ndevices:\n- name: x\n  containerEdits:\n    env: [THING=x]\n    deviceNodes:\n    - {path: /dev/dri/renderD140, hostPath: "+filepath.Join(h.Dev, "xilinx_u30")+", type: c, major: 1, minor: 3}\n"), 0o644)
	dirs := []string{otherDir, specDir}
	intelSpec := SpecFile(specDir, ClassIntelGPU)
	published, err := os.ReadFile(intelSpec)
	if err != nil {
		t.Fatal(err)
	}
	inj, err := NewInjector(dirs, WithRegistry(m))
	if err != nil {
		t.Fatal(err)
	}
	paths := func(t *testing.T, names ...string) []string {
		t.Helper()
		s := baseSpec()
		if err := inj.Check(names); err != nil {
			t.Fatalf("check: %v", err)
		}
		if err := inj.Inject(s, names); err != nil {
			t.Fatal(err)
		}
		var p []string
		for _, d := range s.Linux.Devices {
			p = append(p, d.Path)
		}
		return p
	}

	t.Run("spec file deleted", func(t *testing.T) {
		if err := os.Remove(intelSpec); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.WriteFile(intelSpec, published, 0o644) })
		// The second GPU first: it becomes card0/renderD128.
		got := paths(t, "accel-cri.io/intel-gpu=0000:03:00.0", "accel-cri.io/intel-gpu=0")
		if strings.Join(got, " ") != "/dev/dri/card0 /dev/dri/renderD128 /dev/dri/card1 /dev/dri/renderD129" {
			t.Errorf("devices %v", got)
		}
		// Without the registry the name is gone with the file.
		plain, err := NewInjector(dirs)
		if err != nil {
			t.Fatal(err)
		}
		if err := plain.Check([]string{"accel-cri.io/intel-gpu=0"}); !errdefs.IsNotFound(err) {
			t.Errorf("spec dirs alone: %v", err)
		}
	})

	t.Run("stale spec file", func(t *testing.T) {
		stale := strings.ReplaceAll(string(published), "/dev/dri/card0", "/dev/stale-card")
		if err := os.WriteFile(intelSpec, []byte(stale), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.WriteFile(intelSpec, published, 0o644) })
		for _, tc := range []struct {
			desc string
			opts []InjectorOption
			want string
		}{
			{desc: "registry", opts: []InjectorOption{WithRegistry(m)}, want: "/dev/dri/card0 /dev/dri/renderD128"},
			{desc: "spec dirs alone", want: "/dev/stale-card /dev/dri/renderD128"},
		} {
			fresh, err := NewInjector(dirs, tc.opts...) // reads the stale file now
			if err != nil {
				t.Fatal(err)
			}
			s := baseSpec()
			if err := fresh.Inject(s, []string{"accel-cri.io/intel-gpu=0"}); err != nil {
				t.Fatalf("%s: %v", tc.desc, err)
			}
			var got []string
			for _, d := range s.Linux.Devices {
				got = append(got, d.Path)
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("%s: devices %v, want %s", tc.desc, got, tc.want)
			}
		}
	})

	t.Run("mixed with another vendor's spec, in request order", func(t *testing.T) {
		s := baseSpec()
		names := []string{"vendor.example/thing=x", "accel-cri.io/intel-gpu=1", "accel-cri.io/fpga=0"}
		if err := inj.Inject(s, names); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range s.Linux.Devices {
			got = append(got, d.Path)
		}
		// The foreign render node is requested first: renderD128. GPU 1's
		// card is the first card.
		if strings.Join(got, " ") != "/dev/dri/renderD128 /dev/dri/card0 /dev/dri/renderD129 /dev/dfl-port.0" {
			t.Errorf("devices %v", got)
		}
		if envValue(s.Process.Env, "THING") != "x" {
			t.Errorf("env %v", s.Process.Env)
		}
		if gids := s.Process.User.AdditionalGids; !slices.Contains(gids, gidRender) || !slices.Contains(gids, gidVideo) {
			t.Errorf("additional gids %v", gids)
		}
	})

	t.Run("ownership from the security context", func(t *testing.T) {
		own, _ := NewInjector(dirs, WithRegistry(m), WithOwnershipFromSecurityContext(true))
		s := baseSpec()
		if err := own.Inject(s, []string{"accel-cri.io/intel-gpu=1"}); err != nil {
			t.Fatal(err)
		}
		for _, d := range s.Linux.Devices {
			if *d.UID != 1000 || *d.GID != 1000 {
				t.Errorf("%s owner %d:%d", d.Path, *d.UID, *d.GID)
			}
		}
	})

	t.Run("unknown name: NotFound as without the registry", func(t *testing.T) {
		s := baseSpec()
		err := inj.Inject(s, []string{"accel-cri.io/intel-gpu=0", "accel-cri.io/intel-gpu=7"})
		if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), `unknown CDI device "accel-cri.io/intel-gpu=7"`) || !strings.Contains(err.Error(), specDir) {
			t.Errorf("error %v", err)
		}
		if !reflect.DeepEqual(s, baseSpec()) {
			t.Errorf("spec changed: %+v", s.Linux)
		}
		if err := inj.Check([]string{"accel-cri.io/intel-gpu=7"}); !errdefs.IsNotFound(err) {
			t.Errorf("check: %v", err)
		}
	})

	t.Run("another tool's accel-cri.io spec", func(t *testing.T) {
		os.WriteFile(filepath.Join(otherDir, "mine.yaml"), []byte("cdiVersion: 0.6.0\nkind: accel-cri.io/intel-gpu\ndevices:\n- name: extra\n  containerEdits:\n    env: [EXTRA=1]\n"), 0o644)
		t.Cleanup(func() { os.Remove(filepath.Join(otherDir, "mine.yaml")) })
		s := baseSpec()
		if err := inj.Inject(s, []string{"accel-cri.io/intel-gpu=extra", "accel-cri.io/intel-gpu=0"}); err != nil {
			t.Fatal(err)
		}
		if envValue(s.Process.Env, "EXTRA") != "1" || len(s.Linux.Devices) != 2 {
			t.Errorf("env %v devices %+v", s.Process.Env, s.Linux.Devices)
		}
	})

	t.Run("vanished device: FailedPrecondition, nothing applied", func(t *testing.T) {
		h.RemoveDRMGPU(dgpu)
		if err := m.Refresh(); err != nil {
			t.Fatal(err)
		}
		// Even a spec file that still names it does not bring it back.
		if err := os.WriteFile(intelSpec, published, 0o644); err != nil {
			t.Fatal(err)
		}
		fresh, err := NewInjector(dirs, WithRegistry(m))
		if err != nil {
			t.Fatal(err)
		}
		for _, names := range [][]string{
			{"accel-cri.io/intel-gpu=0", "accel-cri.io/intel-gpu=0000:03:00.0"},
			{"vendor.example/thing=x", "accel-cri.io/intel-gpu=1"}, // its index then
		} {
			s := baseSpec()
			err := fresh.Inject(s, names)
			if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "0000:03:00.0") ||
				!strings.Contains(err.Error(), "accel-cri.io/intel-gpu=1") || !strings.Contains(err.Error(), "no longer on the node") {
				t.Errorf("%v: error %v", names, err)
			}
			if !reflect.DeepEqual(s, baseSpec()) {
				t.Errorf("%v: spec changed: %+v %+v", names, s.Process, s.Linux)
			}
			if err := fresh.Check(names); !errdefs.IsFailedPrecondition(err) {
				t.Errorf("%v: check: %v", names, err)
			}
		}
		// "all" is what is left.
		s := baseSpec()
		if err := fresh.Inject(s, []string{"accel-cri.io/intel-gpu=all"}); err != nil || len(s.Linux.Devices) != 2 {
			t.Errorf("all: %v %+v", err, s.Linux.Devices)
		}
	})

	t.Run("it comes back", func(t *testing.T) {
		h.AddDRMGPU(dgpu)
		if err := m.Refresh(); err != nil {
			t.Fatal(err)
		}
		got := paths(t, "accel-cri.io/intel-gpu=0000:03:00.0")
		if strings.Join(got, " ") != "/dev/dri/card0 /dev/dri/renderD128" {
			t.Errorf("devices %v", got)
		}
	})

	t.Run("a class with nothing left", func(t *testing.T) {
		if err := os.Remove(filepath.Join(h.Dev, "xilinx_u30")); err != nil {
			t.Fatal(err)
		}
		if err := m.Refresh(); err == nil {
			t.Error("no discovery error for the missing static device")
		}
		for _, n := range []string{"accel-cri.io/device=u30", "accel-cri.io/device=all"} {
			err := inj.Check([]string{n})
			if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "u30") {
				t.Errorf("%s: %v", n, err)
			}
		}
	})
}
