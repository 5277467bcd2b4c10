package devices

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/accel-cri/accel-cri/devices/devicetest"
)

const (
	gidVideo  = 44
	gidRender = 993
)

var (
	igpu = devicetest.DRMGPU{PCI: "0000:00:02.0", Vendor: "0x8086", Device: "0x4680", Driver: "i915", Card: 0, Render: 128,
		CardNum: devicetest.Null, RenderNum: devicetest.Null, CardGID: gidVideo, RenderGID: gidRender}
	dgpu = devicetest.DRMGPU{PCI: "0000:03:00.0", Vendor: "0x8086", Device: "0x56a0", Driver: "xe", Card: 1, Render: 129,
		CardNum: devicetest.Null, RenderNum: devicetest.Null, CardGID: gidVideo, RenderGID: gidRender,
		Engines: []string{"rcs", "bcs", "vcs", "vecs", "ccs"}}
	amd = devicetest.DRMGPU{PCI: "0000:05:00.0", Vendor: "0x1002", Device: "0x73bf", Driver: "amdgpu", Card: 2, Render: 130,
		CardNum: devicetest.Null, RenderNum: devicetest.Null, CardGID: gidVideo, RenderGID: gidRender,
		VRAM: 16 << 30, ModuleVersion: "6.10.5"}
)

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("mknod needs root")
	}
}

// fakeNVML is the go-nvml mock with GPUs of the given minor numbers.
func fakeNVML(minors ...int) *mock.Interface {
	var devs []nvml.Device
	for i, m := range minors {
		uuid := "GPU-0000000" + string(rune('0'+i)) + "-aaaa-bbbb-cccc-ddddeeeeffff"
		devs = append(devs, &mock.Device{
			GetUUIDFunc:               func() (string, nvml.Return) { return uuid, nvml.SUCCESS },
			GetNameFunc:               func() (string, nvml.Return) { return "NVIDIA L4", nvml.SUCCESS },
			GetMinorNumberFunc:        func() (int, nvml.Return) { return m, nvml.SUCCESS },
			GetPciInfoFunc:            func() (nvml.PciInfo, nvml.Return) { return nvml.PciInfo{}, nvml.ERROR_NOT_SUPPORTED },
			GetMemoryInfoFunc:         func() (nvml.Memory, nvml.Return) { return nvml.Memory{Total: 24 << 30}, nvml.SUCCESS },
			GetEncoderCapacityFunc:    func(nvml.EncoderType) (int, nvml.Return) { return 100, nvml.SUCCESS },
			GetDecoderUtilizationFunc: func() (uint32, uint32, nvml.Return) { return 0, 1000, nvml.SUCCESS },
		})
	}
	return &mock.Interface{
		InitFunc:                   func() nvml.Return { return nvml.SUCCESS },
		ShutdownFunc:               func() nvml.Return { return nvml.SUCCESS },
		DeviceGetCountFunc:         func() (int, nvml.Return) { return len(devs), nvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(i int) (nvml.Device, nvml.Return) { return devs[i], nvml.SUCCESS },
		SystemGetDriverVersionFunc: func() (string, nvml.Return) { return "550.54.15", nvml.SUCCESS },
	}
}

func TestDiscoverFakeHost(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	h := devicetest.NewHost(t, dir)
	h.AddDRMGPU(dgpu) // added first: order must come from PCI addresses
	h.AddDRMGPU(igpu)
	h.AddDRMGPU(amd)
	h.AddDFLFPGA(0, 0, "0000:08:00.0", "bfac4d851ee856fe8c95865ce1bbaa2d", "d8424dc4a4a3c413f89e433683f9040b", devicetest.Null)
	h.AddOPAEFPGA(0, 1, "ce48969398f05f33946d560708be108a", "f7df405cbd7acf7222f144b0b93acd18", devicetest.Null)
	h.Mknod("nvidia0", devicetest.Null, 0o666, 0)
	h.Mknod("nvidia1", devicetest.Null, 0o666, 0)
	h.Mknod("nvidiactl", devicetest.Null, 0o666, 0)
	h.Mknod("nvidia-uvm", devicetest.Null, 0o666, 0)
	h.Mknod("nvidia-caps/nvidia-cap1", devicetest.Null, 0o400, 0)
	h.Mknod("xilinx_u30", devicetest.Null, 0o660, gidVideo)
	libDir := filepath.Join(dir, "driver", "usr/lib/x86_64-linux-gnu")
	os.MkdirAll(libDir, 0o755)
	for _, l := range []string{"libnvidia-ml.so.550.54.15", "libcuda.so.550.54.15", "libnvidia-encode.so.550.54.15", "libnvcuvid.so.550.54.15"} {
		os.WriteFile(filepath.Join(libDir, l), []byte("ELF"), 0o644)
		soname := l[:strings.Index(l, ".so.")] + ".so.1"
		os.Symlink(l, filepath.Join(libDir, soname))
	}

	m := New(WithSysfsRoot(h.Sysfs), WithDevRoot(h.Dev), WithDriverRoot(filepath.Join(dir, "driver")), WithLdCache(""),
		withNVML(fakeNVML(0, 1)), WithCDIDir(filepath.Join(dir, "cdi")),
		WithStatic(StaticDevice{Name: "u30", Path: filepath.Join(h.Dev, "xilinx_u30")}))
	inv, err := m.Discover()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Device{}
	for _, d := range inv.Devices {
		got[d.CDIName()] = d
	}
	want := []struct {
		name, alias, driver string
		nodes               []string
	}{
		{"accel-cri.io/gpu=0", "GPU-00000000-aaaa-bbbb-cccc-ddddeeeeffff", "nvidia", []string{"/dev/nvidia0"}},
		{"accel-cri.io/gpu=1", "GPU-00000001-aaaa-bbbb-cccc-ddddeeeeffff", "nvidia", []string{"/dev/nvidia1"}},
		{"accel-cri.io/intel-gpu=0", "0000:00:02.0", "i915", []string{"/dev/dri/card0", "/dev/dri/renderD128"}},
		{"accel-cri.io/intel-gpu=1", "0000:03:00.0", "xe", []string{"/dev/dri/card1", "/dev/dri/renderD129"}},
		{"accel-cri.io/amd-gpu=0", "0000:05:00.0", "amdgpu", []string{"/dev/dri/card2", "/dev/dri/renderD130"}},
		{"accel-cri.io/fpga=0", "dfl-port.0", "dfl", []string{"/dev/dfl-port.0"}},
		{"accel-cri.io/fpga=1", "intel-fpga-port.1", "intel-fpga", []string{"/dev/intel-fpga-port.1"}},
		{"accel-cri.io/device=u30", "", "", []string{"/dev/xilinx_u30"}},
	}
	if len(inv.Devices) != len(want) {
		t.Errorf("found %d devices, want %d: %+v", len(inv.Devices), len(want), inv.Devices)
	}
	for _, w := range want {
		d, ok := got[w.name]
		if !ok {
			t.Errorf("%s not found", w.name)
			continue
		}
		if w.alias != "" && (len(d.Aliases) == 0 || d.Aliases[0] != w.alias) {
			t.Errorf("%s aliases %v, want %s", w.name, d.Aliases, w.alias)
		}
		if d.Driver != w.driver {
			t.Errorf("%s driver %q, want %q", w.name, d.Driver, w.driver)
		}
		var nodes []string
		for _, n := range d.Nodes {
			nodes = append(nodes, n.Path)
			if !strings.HasPrefix(n.HostPath, h.Dev) || n.Major != 1 || n.Minor != 3 {
				t.Errorf("%s node %+v", w.name, n)
			}
		}
		if strings.Join(nodes, ",") != strings.Join(w.nodes, ",") {
			t.Errorf("%s nodes %v, want %v", w.name, nodes, w.nodes)
		}
	}
	if nv := got["accel-cri.io/gpu=0"]; nv.Memory != 24<<30 || nv.DriverVersion != "550.54.15" || nv.Media == nil || !nv.Media.Encode || !nv.Media.Decode {
		t.Errorf("NVIDIA memory, driver version, media: %d %q %+v", nv.Memory, nv.DriverVersion, nv.Media)
	}
	if a := got["accel-cri.io/amd-gpu=0"]; a.Memory != 16<<30 || a.DriverVersion != "6.10.5" {
		t.Errorf("amdgpu VRAM and module version: %d %q", a.Memory, a.DriverVersion)
	}
	if i := got["accel-cri.io/intel-gpu=0"]; i.Memory != 0 || i.DriverVersion != "" || i.Media != nil {
		t.Errorf("i915 (in-tree, integrated): memory %d, driver version %q, media %+v; want none known", i.Memory, i.DriverVersion, i.Media)
	}
	if x := got["accel-cri.io/intel-gpu=1"]; x.Media == nil || !x.Media.Encode || !x.Media.Decode {
		t.Errorf("xe GPU with a vcs engine class: media %+v, want encode and decode", x.Media)
	}
	if r := got["accel-cri.io/intel-gpu=0"].Nodes[1]; r.GID != gidRender || r.Mode != 0o660 {
		t.Errorf("render node owner/mode: %+v", r)
	}
	if f := got["accel-cri.io/fpga=0"]; f.Attrs["afu_id"] != "d8424dc4a4a3c413f89e433683f9040b" || f.Attrs["interface_id"] != "bfac4d851ee856fe8c95865ce1bbaa2d" {
		t.Errorf("DFL ids: %v", f.Attrs)
	}
	if f := got["accel-cri.io/fpga=1"]; f.Attrs["afu_id"] != "f7df405cbd7acf7222f144b0b93acd18" || f.Attrs["interface_id"] != "ce48969398f05f33946d560708be108a" {
		t.Errorf("intel-fpga ids: %v", f.Attrs)
	}
	nv := inv.NVIDIA
	if nv == nil || nv.DriverVersion != "550.54.15" || len(nv.ControlNodes) != 3 {
		t.Fatalf("NVIDIA shared: %+v", nv)
	}
	libs := map[string]string{}
	for _, l := range nv.Libraries {
		libs[l.Name] = l.Capability
	}
	for name, c := range map[string]string{"libnvidia-ml.so.1": "utility", "libcuda.so.1": "compute", "libnvidia-encode.so.1": "video", "libnvcuvid.so.1": "video"} {
		if libs[name] != c {
			t.Errorf("library %s: capability %q, want %q (found %v)", name, libs[name], c, libs)
		}
	}

	// The published specs are valid CDI and name every device.
	if err := m.Refresh(); err != nil {
		t.Fatal(err)
	}
	cache, err := cdi.NewCache(cdi.WithSpecDirs(filepath.Join(dir, "cdi")), cdi.WithAutoRefresh(false))
	if err != nil {
		t.Fatalf("cdi cache: %v (%v)", err, cache.GetErrors())
	}
	for _, n := range []string{"accel-cri.io/gpu=0", "accel-cri.io/gpu=GPU-00000001-aaaa-bbbb-cccc-ddddeeeeffff", "accel-cri.io/gpu=all",
		"accel-cri.io/intel-gpu=0000:03:00.0", "accel-cri.io/intel-gpu=all", "accel-cri.io/fpga=dfl-port.0", "accel-cri.io/device=u30"} {
		if cache.GetDevice(n) == nil {
			t.Errorf("CDI device %s not in specs (have %v)", n, cache.ListDevices())
		}
	}

	// NVIDIA: both GPUs visible, control nodes, video libraries read-only,
	// the image's LD_LIBRARY_PATH kept after the driver's.
	inj, err := NewInjector([]string{filepath.Join(dir, "cdi")})
	if err != nil {
		t.Fatal(err)
	}
	s := baseSpec()
	if err := inj.Inject(s, []string{"accel-cri.io/gpu=1", "accel-cri.io/gpu=0"}); err != nil {
		t.Fatal(err)
	}
	if v := envValue(s.Process.Env, "NVIDIA_VISIBLE_DEVICES"); v != "GPU-00000001-aaaa-bbbb-cccc-ddddeeeeffff,GPU-00000000-aaaa-bbbb-cccc-ddddeeeeffff" {
		t.Errorf("NVIDIA_VISIBLE_DEVICES=%q", v)
	}
	if v := envValue(s.Process.Env, "NVIDIA_DRIVER_CAPABILITIES"); v != "compute,utility,video" {
		t.Errorf("NVIDIA_DRIVER_CAPABILITIES=%q", v)
	}
	if v := envValue(s.Process.Env, "LD_LIBRARY_PATH"); v != "/usr/local/nvidia/lib64:/opt/app/lib" {
		t.Errorf("LD_LIBRARY_PATH=%q", v)
	}
	var paths []string
	for _, d := range s.Linux.Devices {
		paths = append(paths, d.Path)
	}
	for _, p := range []string{"/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-caps/nvidia-cap1"} {
		if !slices.Contains(paths, p) {
			t.Errorf("node %s missing: %v", p, paths)
		}
	}
	mounts := map[string][]string{}
	for _, mt := range s.Mounts {
		mounts[mt.Destination] = mt.Options
	}
	for _, l := range []string{"libnvidia-encode.so.1", "libnvcuvid.so.1", "libcuda.so.1", "libnvidia-ml.so.1"} {
		o, ok := mounts["/usr/local/nvidia/lib64/"+l]
		if !ok || !slices.Contains(o, "ro") {
			t.Errorf("library %s mount %v (all %v)", l, o, mounts)
		}
	}
}

func TestDiscoverWithoutNVML(t *testing.T) {
	needRoot(t)
	h := devicetest.NewHost(t, t.TempDir())
	h.AddDRMGPU(igpu)
	m := New(WithSysfsRoot(h.Sysfs), WithDevRoot(h.Dev), WithNVMLLibrary(filepath.Join(h.Root, "no", "libnvidia-ml.so.1")), WithCDIDir(""))
	for range 2 { // says so once, no error
		inv, err := m.Discover()
		if err != nil {
			t.Fatal(err)
		}
		if inv.NVIDIA != nil || len(inv.Devices) != 1 || inv.Devices[0].Class != ClassIntelGPU {
			t.Fatalf("inventory %+v", inv)
		}
	}
}

func TestStaticDeviceErrors(t *testing.T) {
	needRoot(t)
	h := devicetest.NewHost(t, t.TempDir())
	os.WriteFile(filepath.Join(h.Dev, "plain"), nil, 0o644)
	h.Mknod("ok", devicetest.Null, 0o666, 0)
	m := New(WithSysfsRoot(h.Sysfs), WithDevRoot(h.Dev), WithNVMLLibrary("/nonexistent/libnvidia-ml.so.1"), WithCDIDir(""),
		WithStatic(StaticDevice{Name: "plain", Path: filepath.Join(h.Dev, "plain")},
			StaticDevice{Name: "outside", Path: "/dev/null"},
			StaticDevice{Name: "ok", Path: filepath.Join(h.Dev, "ok")}))
	inv, err := m.Discover()
	if err == nil || !strings.Contains(err.Error(), "not a device node") || !strings.Contains(err.Error(), "not under the dev root") {
		t.Errorf("error %v", err)
	}
	if len(inv.Devices) != 1 || inv.Devices[0].Name != "ok" {
		t.Errorf("devices %+v", inv.Devices)
	}
}

func TestDeviceVanishes(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	h := devicetest.NewHost(t, dir)
	h.AddDRMGPU(igpu)
	h.AddDRMGPU(dgpu)
	cdiDir := filepath.Join(dir, "cdi")
	m := New(WithSysfsRoot(h.Sysfs), WithDevRoot(h.Dev), WithNVMLLibrary("/nonexistent/libnvidia-ml.so.1"), WithCDIDir(cdiDir), WithSettle(20*time.Millisecond))
	if err := m.Refresh(); err != nil {
		t.Fatal(err)
	}
	changed, cancel := m.Subscribe()
	defer cancel()
	ctx := t.Context()
	go m.Watch(ctx)
	time.Sleep(100 * time.Millisecond) // watcher set up

	h.RemoveDRMGPU(dgpu)
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("no change after the device vanished")
	}
	var healthy, unhealthy []string
	for _, d := range m.Devices() {
		if d.Health == Healthy {
			healthy = append(healthy, d.Aliases[0])
		} else {
			unhealthy = append(unhealthy, d.Aliases[0])
		}
	}
	if strings.Join(healthy, ",") != "0000:00:02.0" || strings.Join(unhealthy, ",") != "0000:03:00.0" {
		t.Errorf("healthy %v unhealthy %v", healthy, unhealthy)
	}
	b, err := os.ReadFile(SpecFile(cdiDir, ClassIntelGPU))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "0000:03:00.0") || strings.Contains(string(b), "renderD129") {
		t.Errorf("spec still names the vanished GPU:\n%s", b)
	}

	// It comes back: healthy again, same name.
	h.AddDRMGPU(dgpu)
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("no change after the device came back")
	}
	for _, d := range m.Devices() {
		if d.Health != Healthy {
			t.Errorf("%s still %s", d.ID(), d.Health)
		}
	}
}

func TestIntelMedia(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		files []string // under the dir given to intelMedia
		want  *Media
	}{
		{"i915 with video engines", []string{"engine/rcs0/name", "engine/bcs0/name", "engine/vcs0/name", "engine/vcs1/name", "engine/vecs0/name"}, &Media{Encode: true, Decode: true}},
		{"i915 without (compute only)", []string{"engine/rcs0/name", "engine/bcs0/name", "engine/ccs0/name"}, &Media{}},
		{"xe with the vcs class", []string{"tile0/gt0/engines/rcs/x", "tile0/gt1/engines/vcs/x"}, &Media{Encode: true, Decode: true}},
		{"no engines listed (older kernel)", []string{"vendor"}, nil},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tc.files {
				p := filepath.Join(dir, f)
				os.MkdirAll(filepath.Dir(p), 0o755)
				os.WriteFile(p, nil, 0o644)
			}
			got := intelMedia(dir)
			if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
				t.Errorf("intelMedia = %+v, want %+v", got, tc.want)
			}
		})
	}
}
