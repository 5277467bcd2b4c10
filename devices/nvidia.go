package devices

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"k8s.io/klog/v2"
)

// nvmlLib is the part of NVML discovery uses. go-nvml's nvml.Interface
// and its mock (github.com/NVIDIA/go-nvml/pkg/nvml/mock) both satisfy it.
type nvmlLib interface {
	Init() nvml.Return
	Shutdown() nvml.Return
	DeviceGetCount() (int, nvml.Return)
	DeviceGetHandleByIndex(int) (nvml.Device, nvml.Return)
	SystemGetDriverVersion() (string, nvml.Return)
}

// errNoNVML reports a host without libnvidia-ml: normal on hosts without
// NVIDIA GPUs.
var errNoNVML = errors.New("NVML library not found")

// NVIDIAShared is what every NVIDIA GPU of a container needs besides its
// own /dev/nvidiaN: the control nodes and the driver libraries.
type NVIDIAShared struct {
	DriverVersion string
	ControlNodes  []Node
	Libraries     []Library
	// Capabilities are the driver capabilities granted
	// (NVIDIA_DRIVER_CAPABILITIES), in NVIDIACapabilities order.
	Capabilities []string
}

// Library is a driver file found on the host: a library, a graphics ICD
// file or a tool (nvidia-smi).
type Library struct {
	// Name is the name it is loaded by (its soname, "libcuda.so.1").
	Name string
	// HostPath is the file (symlinks resolved).
	HostPath string
	// Capability is the NVIDIA driver capability it belongs to.
	Capability string
	// ContainerPath, if set, is where it is mounted in containers (a
	// graphics ICD file); otherwise it is mounted under the container
	// library directory as Name.
	ContainerPath string
}

// NVIDIACapabilities are the driver capabilities accel-cri can grant, in
// the order they are listed in NVIDIA_DRIVER_CAPABILITIES.
var NVIDIACapabilities = []string{"compute", "utility", "video", "graphics"}

// DefaultNVIDIACapabilities are granted unless configured otherwise: what
// media stacks (NVENC/NVDEC through FFmpeg or GStreamer) and CUDA need.
var DefaultNVIDIACapabilities = []string{"compute", "utility", "video"}

// nvidiaLibraries are the libraries of each capability, by soname. A name
// ending in ".so" is versioned with the driver
// ("libnvidia-glcore.so.550.54.15"). The graphics set is the stable core
// of NVIDIA's container toolkit list (libnvidia-container's graphics_libs
// and graphics_libs_glvnd): OpenGL/GLX, EGL, GLES and Vulkan (SPIR-V).
var nvidiaLibraries = map[string][]string{
	"utility": {"libnvidia-ml.so.1"},
	"compute": {"libcuda.so.1", "libnvidia-ptxjitcompiler.so.1", "libnvidia-nvvm.so.4"},
	"video":   {"libnvidia-encode.so.1", "libnvcuvid.so.1", "libnvidia-opticalflow.so.1"},
	"graphics": {
		"libnvidia-glcore.so", "libnvidia-glsi.so", "libnvidia-tls.so", "libnvidia-eglcore.so",
		"libnvidia-glvkspirv.so", "libnvidia-rtcore.so",
		"libGLX_nvidia.so.0", "libEGL_nvidia.so.0", "libGLESv2_nvidia.so.2", "libGLESv1_CM_nvidia.so.1",
	},
}

// nvidiaGraphicsFiles are the ICD files that make libglvnd and the Vulkan
// loader in a container pick NVIDIA's libraries, mounted at the same path
// when the host (driver root) has them.
var nvidiaGraphicsFiles = []string{
	"usr/share/glvnd/egl_vendor.d/10_nvidia.json",
	"usr/share/vulkan/icd.d/nvidia_icd.json",
	"etc/vulkan/icd.d/nvidia_icd.json",
}

// nvidiaBinaries are the driver's tools of each capability, as NVIDIA's
// container toolkit mounts them: read-only at /usr/bin/<name>, so that a
// pod given a GPU can run nvidia-smi without the image shipping a copy
// that must match the host's driver.
var nvidiaBinaries = map[string][]string{
	"utility": {"nvidia-smi", "nvidia-debugdump"},
	"compute": {"nvidia-cuda-mps-control", "nvidia-cuda-mps-server"},
}

// binDirs are where the driver's tools are looked for under the driver root.
var binDirs = []string{"usr/bin", "usr/local/bin", "usr/local/nvidia/bin", "bin"}

// nvidiaControlNodes are shared by all GPUs; absent ones are skipped.
var nvidiaControlNodes = []string{"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"}

func (o *options) nvmlLib() nvmlLib {
	if o.nvml != nil {
		return o.nvml
	}
	return nvml.New(nvml.WithLibraryPath(o.nvmlLibrary))
}

// discoverNVIDIA lists NVIDIA GPUs through NVML. Without the library it
// returns errNoNVML and no devices.
func discoverNVIDIA(o *options) (devs []Device, shared *NVIDIAShared, err error) {
	lib := o.nvmlLib()
	if ret := initNVML(lib); ret != nvml.SUCCESS {
		if ret == nvml.ERROR_LIBRARY_NOT_FOUND {
			return nil, nil, errNoNVML
		}
		return nil, nil, fmt.Errorf("nvml init: %s", nvml.ErrorString(ret))
	}
	defer lib.Shutdown()
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, nil, fmt.Errorf("nvml device count: %s", nvml.ErrorString(ret))
	}
	driverVersion, _ := lib.SystemGetDriverVersion()
	for i := 0; i < n; i++ {
		h, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, nil, fmt.Errorf("nvml device %d: %s", i, nvml.ErrorString(ret))
		}
		uuid, ret := h.GetUUID()
		if ret != nvml.SUCCESS {
			return nil, nil, fmt.Errorf("nvml device %d uuid: %s", i, nvml.ErrorString(ret))
		}
		name, _ := h.GetName()
		minor, ret := h.GetMinorNumber()
		if ret != nvml.SUCCESS {
			return nil, nil, fmt.Errorf("nvml device %d minor number: %s", i, nvml.ErrorString(ret))
		}
		node, err := statNode(o.devRoot, filepath.Join(o.devRoot, fmt.Sprintf("nvidia%d", minor)))
		if err != nil {
			klog.InfoS("NVIDIA GPU without its device node; skipped", "index", i, "uuid", uuid, "err", err)
			continue
		}
		d := Device{
			Class: ClassNVIDIA, Name: fmt.Sprint(i), Aliases: []string{uuid},
			Vendor: "nvidia", Model: name, Driver: "nvidia", UUID: uuid,
			Nodes: []Node{node}, Health: Healthy,
		}
		if pci, ret := h.GetPciInfo(); ret == nvml.SUCCESS {
			d.PCI = pciBusID(pci)
		}
		d.DriverVersion = driverVersion
		if mem, ret := h.GetMemoryInfo(); ret == nvml.SUCCESS {
			d.Memory = mem.Total
		}
		d.Media = nvidiaMedia(h)
		devs = append(devs, d)
	}
	shared = &NVIDIAShared{DriverVersion: driverVersion}
	for _, c := range nvidiaControlNodes {
		if n, err := statNode(o.devRoot, filepath.Join(o.devRoot, c)); err == nil {
			shared.ControlNodes = append(shared.ControlNodes, n)
		}
	}
	caps, _ := filepath.Glob(filepath.Join(o.devRoot, "nvidia-caps", "nvidia-cap*"))
	for _, c := range caps {
		if n, err := statNode(o.devRoot, c); err == nil {
			shared.ControlNodes = append(shared.ControlNodes, n)
		}
	}
	shared.Capabilities = o.capabilities()
	shared.Libraries = findLibraries(o, shared.DriverVersion)
	return devs, shared, nil
}

// nvidiaMedia asks NVML whether the GPU has NVENC and NVDEC: the encoder
// capacity query (H.264) and the decoder utilization query answer
// NOT_SUPPORTED on GPUs without them. The capacity NVML reports is a
// percentage of what is left, not a number of sessions, so it is not kept.
func nvidiaMedia(h nvml.Device) *Media {
	_, enc := h.GetEncoderCapacity(nvml.ENCODER_QUERY_H264)
	_, _, dec := h.GetDecoderUtilization()
	if enc != nvml.SUCCESS && enc != nvml.ERROR_NOT_SUPPORTED && dec != nvml.SUCCESS && dec != nvml.ERROR_NOT_SUPPORTED {
		return nil // neither query answered: unknown
	}
	return &Media{Encode: enc == nvml.SUCCESS, Decode: dec == nvml.SUCCESS}
}

// initNVML calls Init, turning go-nvml's panic on a missing library (some
// versions panic instead of returning) into ERROR_LIBRARY_NOT_FOUND.
func initNVML(lib nvmlLib) (ret nvml.Return) {
	defer func() {
		if recover() != nil {
			ret = nvml.ERROR_LIBRARY_NOT_FOUND
		}
	}()
	return lib.Init()
}

func pciBusID(p nvml.PciInfo) string {
	var b []byte
	for _, c := range p.BusIdLegacy {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	if len(b) == 0 {
		for _, c := range p.BusId {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
	}
	return strings.ToLower(string(b))
}

// capabilities are the configured driver capabilities, known ones only,
// in NVIDIACapabilities order.
func (o *options) capabilities() []string {
	var out []string
	for _, c := range NVIDIACapabilities {
		for _, want := range o.nvidiaCaps {
			if want == c {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// findLibraries finds the libraries of the granted capabilities: from the
// ld cache first (ldconfig -p), then in the usual library directories
// under the driver root. With graphics, the ICD files are added.
func findLibraries(o *options, driverVersion string) []Library {
	cache := ldCache(o.ldCache)
	var out []Library
	for _, capability := range o.capabilities() {
		for _, name := range nvidiaLibraries[capability] {
			soname, p := lookupLibrary(cache, o.driverRoot, name, driverVersion)
			if p == "" {
				klog.V(2).InfoS("NVIDIA driver library not found", "library", name, "capability", capability)
				continue
			}
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				continue
			}
			out = append(out, Library{Name: soname, HostPath: real, Capability: capability})
		}
		for _, name := range nvidiaBinaries[capability] {
			if p := findBinary(o.driverRoot, name); p != "" {
				out = append(out, Library{Name: name, HostPath: p, Capability: capability, ContainerPath: "/usr/bin/" + name})
			}
		}
		if capability != "graphics" {
			continue
		}
		for _, f := range nvidiaGraphicsFiles {
			real, err := filepath.EvalSymlinks(filepath.Join(o.driverRoot, f))
			if err != nil {
				continue
			}
			out = append(out, Library{Name: filepath.Base(f), HostPath: real, Capability: capability, ContainerPath: "/" + f})
		}
	}
	return out
}

// findBinary is the regular file name resolves to in the first of binDirs
// under root that has it ("" if none).
func findBinary(root, name string) string {
	for _, d := range binDirs {
		real, err := filepath.EvalSymlinks(filepath.Join(root, d, name))
		if err != nil {
			continue
		}
		if fi, err := os.Stat(real); err == nil && fi.Mode().IsRegular() {
			return real
		}
	}
	return ""
}

// lookupLibrary returns the soname and host path of a library. A name
// ending in ".so" is versioned with the driver: name.<driverVersion>, else
// any name.<version> (the highest).
func lookupLibrary(cache map[string]string, root, name, driverVersion string) (soname, path string) {
	if !strings.HasSuffix(name, ".so") {
		if p := cache[name]; p != "" {
			return name, p
		}
		if p := searchLibrary(root, name); p != "" {
			return name, p
		}
		return name, ""
	}
	if driverVersion != "" {
		v := name + "." + driverVersion
		if p := cache[v]; p != "" {
			return v, p
		}
	}
	var keys []string
	for k := range cache {
		if strings.HasPrefix(k, name+".") {
			keys = append(keys, k)
		}
	}
	if len(keys) > 0 {
		sort.Strings(keys)
		k := keys[len(keys)-1]
		return k, cache[k]
	}
	if p := searchLibrary(root, name); p != "" {
		return filepath.Base(p), p
	}
	return name, ""
}

// ldCache maps sonames to paths from `ldconfig -p` over the given cache
// file (64-bit x86 entries only). An unreadable cache maps nothing.
func ldCache(file string) map[string]string {
	out := map[string]string{}
	if file == "" {
		return out
	}
	if _, err := os.Stat(file); err != nil {
		return out
	}
	ldconfig, err := exec.LookPath("ldconfig")
	if err != nil {
		ldconfig = "/sbin/ldconfig"
	}
	b, err := exec.Command(ldconfig, "-p", "-C", file).Output()
	if err != nil {
		klog.V(2).InfoS("Reading the ld cache failed", "cache", file, "err", err)
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// "\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1"
		l := strings.TrimSpace(sc.Text())
		name, rest, ok := strings.Cut(l, " (")
		if !ok || !strings.Contains(rest, "x86-64") {
			continue
		}
		_, p, ok := strings.Cut(rest, "=> ")
		if ok && out[name] == "" {
			out[name] = strings.TrimSpace(p)
		}
	}
	return out
}

var libDirs = []string{"usr/lib/x86_64-linux-gnu", "usr/lib64", "lib/x86_64-linux-gnu", "lib64", "usr/lib"}

// searchLibrary finds name (or name with a longer version suffix) in the
// library directories under root.
func searchLibrary(root, name string) string {
	for _, d := range libDirs {
		p := filepath.Join(root, d, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
		m, _ := filepath.Glob(p + ".*")
		if len(m) > 0 {
			sort.Strings(m)
			return m[len(m)-1]
		}
	}
	return ""
}
