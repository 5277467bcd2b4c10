package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// DevicesConfig is the [devices] table: discovery roots, CDI directories,
// static devices and the kubelet device plugin.
type DevicesConfig struct {
	CDISpecDirs  []string `toml:"cdi_spec_dirs" json:"cdi_spec_dirs" comment:"Directories CDI specs are read from, lowest priority first. CDI devices requested by containers\n(CRI cdi_devices, cdi.k8s.io/* annotations) are resolved against all of them, so specs written by\nother tools (nvidia-ctk cdi generate) work too. Empty: CDI is off and such containers are refused."`
	CDIOutputDir string   `toml:"cdi_output_dir" json:"cdi_output_dir" comment:"Directory accel-cri writes the CDI specs of the devices it finds into (vendor accel-cri.io,\nfiles accel-cri.io-<class>.json), refreshed when devices change. Empty: discovery and publishing are off."`
	SysfsRoot    string   `toml:"sysfs_root" json:"sysfs_root" comment:"Where sysfs is mounted; discovery reads class/drm, class/fpga_region, class/fpga,\nbus/platform/devices (dfl-port.N, dfl-fme.N) and bus/dfl/devices under it."`
	DevRoot      string   `toml:"dev_root" json:"dev_root" comment:"The host's device directory. Nodes found under it appear in containers under /dev at the same\nrelative path (except DRM nodes, renumbered from renderD128/card0 in the order they were requested)."`
	NVMLLibrary  string   `toml:"nvml_library" json:"nvml_library" comment:"NVIDIA management library opened to find NVIDIA GPUs. A host without it has no NVIDIA GPUs (logged once)."`
	// NVIDIADriverCapabilities decides the NVIDIA driver libraries mounted.
	NVIDIADriverCapabilities []string `toml:"nvidia_driver_capabilities" json:"nvidia_driver_capabilities" comment:"NVIDIA driver capabilities given to containers with NVIDIA GPUs: which driver libraries (found through the\nhost's ld cache) are mounted, and NVIDIA_DRIVER_CAPABILITIES. Any of compute (libcuda), utility (libnvidia-ml),\nvideo (NVENC/NVDEC: libnvidia-encode, libnvcuvid), graphics (OpenGL, EGL, GLES, Vulkan: libnvidia-glcore,\nlibGLX_nvidia, libEGL_nvidia, ... and the glvnd/Vulkan ICD files)."`
	// Static is a list of tables ([[devices.static]]).
	Static           []StaticDeviceConfig `toml:"static" json:"static" comment:"Devices nothing discovers, published as accel-cri.io/device=<name>: [[devices.static]] name = \"x\", path = \"/dev/x\".\nThe path must be a character or block device under dev_root."`
	Replicas         map[string]int       `toml:"replicas" json:"replicas" comment:"Device plugin sharing: how many containers may be allocated each device of a resource at once,\nby resource name without the accel-cri.io/ prefix (for example intel-gpu = 4). Default 1."`
	DevicePlugin     bool                 `toml:"device_plugin" json:"device_plugin" comment:"Register the found devices with kubelet as extended resources accel-cri.io/<class> through the\ndevice-plugin API; Allocate answers with CDI device names."`
	KubeletPluginDir string               `toml:"kubelet_plugin_dir" json:"kubelet_plugin_dir" comment:"kubelet's device-plugin directory (kubelet.sock lives here); watched to register again when kubelet restarts."`
	// DRA is the [devices.dra] table.
	DRA                                DRAConfig `toml:"dra" json:"dra" comment:"accel-cri as the node's Dynamic Resource Allocation driver (resource.k8s.io/v1): drivers gpu.accel-cri.io,\nfpga.accel-cri.io and device.accel-cri.io publish ResourceSlices and prepare claims (docs/devices.md, \"DRA\").\nOn when kubeconfig and node_name are set. The device plugin can run beside it."`
	DeviceOwnershipFromSecurityContext bool      `toml:"device_ownership_from_security_context" json:"device_ownership_from_security_context" comment:"Make device nodes (CRI devices and CDI devices) owned by the container's uid and gid (like containerd's\noption of the same name). Off: nodes keep the host's owner and mode, and the node's group is added to the\ncontainer's supplemental groups, which is enough for non-root media workloads."`
}

// DRAConfig is the [devices.dra] table: the DRA kubelet plugin.
type DRAConfig struct {
	Kubeconfig  string `toml:"kubeconfig" json:"kubeconfig" comment:"Kubeconfig of the identity that publishes the node's ResourceSlices and reads its claims: the kubelet's\n(system:node:<node>, which the Node authorizer allows exactly that) is the usual choice. Empty: DRA is off."`
	NodeName    string `toml:"node_name" json:"node_name" comment:"The node's name as the kubelet registers it (the pools and ResourceSlices are named after it)."`
	PluginsDir  string `toml:"kubelet_plugins_dir" json:"kubelet_plugins_dir" comment:"Where each driver's socket is made: <dir>/<driver>/dra.sock (the kubelet's plugins directory)."`
	RegistryDir string `toml:"kubelet_registry_dir" json:"kubelet_registry_dir" comment:"The kubelet's plugin registration directory; each driver registers there as <driver>-reg.sock."`
}

// Enabled reports whether the DRA kubelet plugin runs.
func (d DRAConfig) Enabled() bool { return d.Kubeconfig != "" }

// StaticDeviceConfig names one device node.
type StaticDeviceConfig struct {
	Name string `toml:"name" json:"name"`
	Path string `toml:"path" json:"path"`
}

// DefaultDevices is the default [devices] table.
func DefaultDevices() DevicesConfig {
	return DevicesConfig{
		CDISpecDirs:              []string{"/etc/cdi", "/var/run/cdi"},
		CDIOutputDir:             "/var/run/cdi",
		SysfsRoot:                "/sys",
		DevRoot:                  "/dev",
		NVMLLibrary:              "libnvidia-ml.so.1",
		NVIDIADriverCapabilities: []string{"compute", "utility", "video"},
		Static:                   []StaticDeviceConfig{},
		Replicas:                 map[string]int{},
		DevicePlugin:             false,
		KubeletPluginDir:         "/var/lib/kubelet/device-plugins",
		DRA: DRAConfig{
			PluginsDir:  "/var/lib/kubelet/plugins",
			RegistryDir: "/var/lib/kubelet/plugins_registry",
		},
	}
}

func (d *DevicesConfig) validate() []error {
	var errs []error
	abs := func(key, p string, required bool) {
		key = "devices." + key
		switch {
		case p == "" && required:
			errs = append(errs, fmt.Errorf("%s: must be set", key))
		case p == "":
		case !filepath.IsAbs(p):
			errs = append(errs, fmt.Errorf("%s: %q is not an absolute path", key, p))
		case filepath.Clean(p) != p:
			errs = append(errs, fmt.Errorf("%s: %q is not a clean path", key, p))
		}
	}
	for _, p := range d.CDISpecDirs {
		abs("cdi_spec_dirs", p, true)
	}
	abs("cdi_output_dir", d.CDIOutputDir, false)
	abs("sysfs_root", d.SysfsRoot, true)
	abs("dev_root", d.DevRoot, true)
	abs("kubelet_plugin_dir", d.KubeletPluginDir, d.DevicePlugin)
	if d.NVMLLibrary == "" {
		errs = append(errs, errors.New("devices.nvml_library: must be set"))
	}
	if len(d.NVIDIADriverCapabilities) == 0 {
		errs = append(errs, errors.New("devices.nvidia_driver_capabilities: must name at least one capability"))
	}
	capSeen := map[string]bool{}
	for _, c := range d.NVIDIADriverCapabilities {
		switch {
		case !isNVIDIACapability(c):
			errs = append(errs, fmt.Errorf("devices.nvidia_driver_capabilities: unknown capability %q (one of %s)", c, strings.Join(NVIDIADriverCapabilities, ", ")))
		case capSeen[c]:
			errs = append(errs, fmt.Errorf("devices.nvidia_driver_capabilities: %q given twice", c))
		}
		capSeen[c] = true
	}
	seen := map[string]bool{}
	for i, s := range d.Static {
		key := fmt.Sprintf("devices.static[%d]", i)
		if s.Name == "" || strings.ContainsAny(s.Name, "/= ") {
			errs = append(errs, fmt.Errorf("%s.name: %q must be a CDI device name", key, s.Name))
		}
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("%s.name: %q given twice", key, s.Name))
		}
		seen[s.Name] = true
		abs(fmt.Sprintf("static[%d].path", i), s.Path, true)
		if d.DevRoot != "" && s.Path != "" && !strings.HasPrefix(s.Path, strings.TrimSuffix(d.DevRoot, "/")+"/") {
			errs = append(errs, fmt.Errorf("%s.path: %q is not under dev_root %s", key, s.Path, d.DevRoot))
		}
	}
	if d.DevicePlugin && d.CDIOutputDir == "" {
		errs = append(errs, errors.New("devices.device_plugin: needs cdi_output_dir (discovery and CDI specs)"))
	}
	abs("dra.kubeconfig", d.DRA.Kubeconfig, false)
	abs("dra.kubelet_plugins_dir", d.DRA.PluginsDir, d.DRA.Enabled())
	abs("dra.kubelet_registry_dir", d.DRA.RegistryDir, d.DRA.Enabled())
	if d.DRA.Enabled() {
		if d.CDIOutputDir == "" {
			errs = append(errs, errors.New("devices.dra: needs cdi_output_dir (discovery)"))
		}
		if errs1 := validation.IsDNS1123Subdomain(d.DRA.NodeName); len(errs1) > 0 {
			errs = append(errs, fmt.Errorf("devices.dra.node_name: %q is not a node name: %s", d.DRA.NodeName, strings.Join(errs1, "; ")))
		}
	} else if d.DRA.NodeName != "" {
		errs = append(errs, errors.New("devices.dra.node_name: set without devices.dra.kubeconfig (DRA stays off)"))
	}
	for r, n := range d.Replicas {
		if n < 1 {
			errs = append(errs, fmt.Errorf("devices.replicas.%s: %d must be at least 1", r, n))
		}
	}
	return errs
}

// NVIDIADriverCapabilities are the values devices.nvidia_driver_capabilities
// accepts (the capabilities the devices package implements).
var NVIDIADriverCapabilities = []string{"compute", "utility", "video", "graphics"}

func isNVIDIACapability(c string) bool {
	for _, k := range NVIDIADriverCapabilities {
		if c == k {
			return true
		}
	}
	return false
}
