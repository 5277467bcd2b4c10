package devices

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	"github.com/accel-cri/accel-cri/devices/devicetest"
)

// fakeDriver installs an NVIDIA 550.54.15 driver's libraries under
// root/usr/lib/x86_64-linux-gnu as the installer does (the file and its
// soname link) and the graphics ICD files.
func fakeDriver(t *testing.T, root string) {
	libDir := filepath.Join(root, "usr/lib/x86_64-linux-gnu")
	for _, l := range []struct{ file, soname string }{
		{"libnvidia-ml.so.550.54.15", "libnvidia-ml.so.1"},
		{"libcuda.so.550.54.15", "libcuda.so.1"},
		{"libnvidia-encode.so.550.54.15", "libnvidia-encode.so.1"},
		{"libnvcuvid.so.550.54.15", "libnvcuvid.so.1"},
		// graphics: core libraries versioned with the driver (no link),
		// glvnd vendor libraries with their own sonames.
		{"libnvidia-glcore.so.550.54.15", ""},
		{"libnvidia-glsi.so.550.54.15", ""},
		{"libnvidia-tls.so.550.54.15", ""},
		{"libnvidia-eglcore.so.550.54.15", ""},
		{"libnvidia-glvkspirv.so.550.54.15", ""},
		{"libGLX_nvidia.so.550.54.15", "libGLX_nvidia.so.0"},
		{"libEGL_nvidia.so.550.54.15", "libEGL_nvidia.so.0"},
		{"libGLESv2_nvidia.so.550.54.15", "libGLESv2_nvidia.so.2"},
	} {
		if err := os.MkdirAll(libDir, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(libDir, l.file), []byte("ELF"), 0o644)
		if l.soname != "" {
			os.Symlink(l.file, filepath.Join(libDir, l.soname))
		}
	}
	// Tools: nvidia-smi in usr/bin, the MPS daemon through a link.
	bin := filepath.Join(root, "usr/bin")
	os.MkdirAll(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "nvidia-smi"), []byte("ELF"), 0o755)
	os.WriteFile(filepath.Join(bin, "nvidia-cuda-mps-control.550.54.15"), []byte("ELF"), 0o755)
	os.Symlink("nvidia-cuda-mps-control.550.54.15", filepath.Join(bin, "nvidia-cuda-mps-control"))
	egl := filepath.Join(root, "usr/share/glvnd/egl_vendor.d/10_nvidia.json")
	os.MkdirAll(filepath.Dir(egl), 0o755)
	os.WriteFile(egl, []byte(`{"file_format_version":"1.0.0","ICD":{"library_path":"libEGL_nvidia.so.0"}}`), 0o644)
}

func TestNVIDIACapabilities(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	h := devicetest.NewHost(t, dir)
	h.Mknod("nvidia0", devicetest.Null, 0o666, 0)
	h.Mknod("nvidiactl", devicetest.Null, 0o666, 0)
	driver := filepath.Join(dir, "driver")
	fakeDriver(t, driver)
	graphics := map[string]string{ // soname → container path
		"libnvidia-glcore.so.550.54.15":    "/usr/local/nvidia/lib64/libnvidia-glcore.so.550.54.15",
		"libnvidia-glsi.so.550.54.15":      "/usr/local/nvidia/lib64/libnvidia-glsi.so.550.54.15",
		"libnvidia-tls.so.550.54.15":       "/usr/local/nvidia/lib64/libnvidia-tls.so.550.54.15",
		"libnvidia-eglcore.so.550.54.15":   "/usr/local/nvidia/lib64/libnvidia-eglcore.so.550.54.15",
		"libnvidia-glvkspirv.so.550.54.15": "/usr/local/nvidia/lib64/libnvidia-glvkspirv.so.550.54.15",
		"libGLX_nvidia.so.0":               "/usr/local/nvidia/lib64/libGLX_nvidia.so.0",
		"libEGL_nvidia.so.0":               "/usr/local/nvidia/lib64/libEGL_nvidia.so.0",
		"libGLESv2_nvidia.so.2":            "/usr/local/nvidia/lib64/libGLESv2_nvidia.so.2",
		"10_nvidia.json":                   "/usr/share/glvnd/egl_vendor.d/10_nvidia.json",
	}
	for _, tc := range []struct {
		desc     string
		caps     []string // nil: default
		env      string
		want     []string // sonames that must be mounted
		graphics bool
	}{
		{"default", nil, "compute,utility,video", []string{"libnvidia-ml.so.1", "libcuda.so.1", "libnvidia-encode.so.1", "libnvcuvid.so.1"}, false},
		{"graphics", []string{"graphics", "utility", "video", "compute"}, "compute,utility,video,graphics",
			[]string{"libnvidia-ml.so.1", "libcuda.so.1", "libnvidia-encode.so.1", "libnvcuvid.so.1"}, true},
		{"utility only", []string{"utility"}, "utility", []string{"libnvidia-ml.so.1"}, false},
		{"graphics and utility", []string{"utility", "graphics"}, "utility,graphics", []string{"libnvidia-ml.so.1"}, true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			cdiDir := filepath.Join(t.TempDir(), "cdi")
			opts := []Option{WithSysfsRoot(h.Sysfs), WithDevRoot(h.Dev), WithDriverRoot(driver), WithLdCache(""),
				withNVML(fakeNVML(0)), WithCDIDir(cdiDir)}
			if tc.caps != nil {
				opts = append(opts, WithNVIDIACapabilities(tc.caps...))
			}
			m := New(opts...)
			if err := m.Refresh(); err != nil {
				t.Fatal(err)
			}
			inv, err := m.Discover()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]Library{}
			for _, l := range inv.NVIDIA.Libraries {
				got[l.Name] = l
			}
			for name := range graphics {
				if l, ok := got[name]; ok != tc.graphics || (ok && l.Capability != "graphics") {
					t.Errorf("graphics library %s: %+v found %v", name, l, ok)
				}
			}
			for _, name := range []string{"libcuda.so.1", "libnvidia-encode.so.1", "libnvidia-ml.so.1"} {
				if _, ok := got[name]; ok != slices.Contains(tc.want, name) {
					t.Errorf("library %s found %v", name, ok)
				}
			}
			if l := got["libnvidia-glcore.so.550.54.15"]; tc.graphics && l.HostPath != filepath.Join(driver, "usr/lib/x86_64-linux-gnu/libnvidia-glcore.so.550.54.15") {
				t.Errorf("glcore host path %q", l.HostPath)
			}

			inj, err := NewInjector([]string{cdiDir})
			if err != nil {
				t.Fatal(err)
			}
			s := baseSpec()
			if err := inj.Inject(s, []string{"accel-cri.io/gpu=0"}); err != nil {
				t.Fatal(err)
			}
			if v := envValue(s.Process.Env, "NVIDIA_DRIVER_CAPABILITIES"); v != tc.env {
				t.Errorf("NVIDIA_DRIVER_CAPABILITIES=%q, want %q", v, tc.env)
			}
			mounts := map[string]bool{}
			for _, mt := range s.Mounts {
				if strings.HasPrefix(mt.Destination, "/usr/") {
					mounts[mt.Destination] = slices.Contains(mt.Options, "ro")
				}
			}
			for _, l := range tc.want {
				if !mounts["/usr/local/nvidia/lib64/"+l] {
					t.Errorf("%s not mounted read-only: %v", l, mounts)
				}
			}
			for tool, capability := range map[string]string{"nvidia-smi": "utility", "nvidia-cuda-mps-control": "compute"} {
				want := strings.Contains(tc.env, capability)
				if ro, ok := mounts["/usr/bin/"+tool]; ok != want || (ok && !ro) {
					t.Errorf("%s mounted %v (read-only %v), want %v with %s", tool, ok, ro, want, tc.env)
				}
			}
			if _, ok := mounts["/usr/bin/nvidia-debugdump"]; ok {
				t.Error("nvidia-debugdump mounted: the host has none")
			}
			for _, dst := range graphics {
				if ro, ok := mounts[dst]; ok != tc.graphics || (ok && !ro) {
					t.Errorf("graphics mount %s: mounted %v read-only %v", dst, ok, ro)
				}
			}
		})
	}
}

// Libraries versioned with the driver are looked up in the ld cache by
// the driver's version first.
func TestLookupLibrary(t *testing.T) {
	cache := map[string]string{
		"libnvidia-glcore.so.535.1":     "/old/libnvidia-glcore.so.535.1",
		"libnvidia-glcore.so.550.54.15": "/lib/libnvidia-glcore.so.550.54.15",
		"libnvidia-glcore.so.999":       "/stale/libnvidia-glcore.so.999",
		"libEGL_nvidia.so.0":            "/lib/libEGL_nvidia.so.0",
	}
	for _, tc := range []struct{ name, version, soname, path string }{
		{"libnvidia-glcore.so", "550.54.15", "libnvidia-glcore.so.550.54.15", "/lib/libnvidia-glcore.so.550.54.15"},
		{"libnvidia-glcore.so", "", "libnvidia-glcore.so.999", "/stale/libnvidia-glcore.so.999"},
		{"libEGL_nvidia.so.0", "550.54.15", "libEGL_nvidia.so.0", "/lib/libEGL_nvidia.so.0"},
		{"libnvidia-tls.so", "550.54.15", "libnvidia-tls.so", ""},
	} {
		soname, p := lookupLibrary(cache, t.TempDir(), tc.name, tc.version)
		if p != tc.path || (p != "" && soname != tc.soname) {
			t.Errorf("%s (%s): %s %s, want %s %s", tc.name, tc.version, soname, p, tc.soname, tc.path)
		}
	}
}

func TestNVIDIAMedia(t *testing.T) {
	for _, tc := range []struct {
		desc     string
		enc, dec nvml.Return
		want     *Media
	}{
		{"NVENC and NVDEC", nvml.SUCCESS, nvml.SUCCESS, &Media{Encode: true, Decode: true}},
		{"no NVENC (A100)", nvml.ERROR_NOT_SUPPORTED, nvml.SUCCESS, &Media{Decode: true}},
		{"neither", nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_NOT_SUPPORTED, &Media{}},
		{"NVML does not answer: unknown", nvml.ERROR_UNKNOWN, nvml.ERROR_GPU_IS_LOST, nil},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			h := &mock.Device{
				GetEncoderCapacityFunc:    func(nvml.EncoderType) (int, nvml.Return) { return 100, tc.enc },
				GetDecoderUtilizationFunc: func() (uint32, uint32, nvml.Return) { return 0, 1000, tc.dec },
			}
			got := nvidiaMedia(h)
			if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
				t.Errorf("nvidiaMedia = %+v, want %+v", got, tc.want)
			}
		})
	}
}
