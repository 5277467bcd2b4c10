package devices

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"k8s.io/klog/v2"
)

// DRM GPUs: /sys/class/drm/{cardN,renderDN} link to the PCI device's drm
// directory; <entry>/device is the PCI device (vendor, device, driver).
// Nodes are <dev root>/dri/<entry>. One Device per PCI device, numbered per
// class in PCI address order. NVIDIA's DRM nodes are left to NVML.

var drmNodeRE = regexp.MustCompile(`^(card|renderD)[0-9]+$`)

// PCI vendor ids of DRM GPUs with a class of their own.
const (
	pciVendorIntel  = "0x8086"
	pciVendorAMD    = "0x1002"
	pciVendorNVIDIA = "0x10de"
)

func discoverDRM(o *options) ([]Device, error) {
	classDir := filepath.Join(o.sysfsRoot, "class", "drm")
	entries, err := os.ReadDir(classDir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("drm: %w", err)
	}
	byPCI := map[string]*Device{}
	for _, e := range entries {
		if !drmNodeRE.MatchString(e.Name()) {
			continue // connectors (card0-DP-1), version
		}
		devLink := filepath.Join(classDir, e.Name(), "device")
		pciDir, err := filepath.EvalSymlinks(devLink)
		if err != nil {
			klog.V(4).InfoS("DRM node without a device link; skipped", "node", e.Name(), "err", err)
			continue
		}
		addr := filepath.Base(pciDir)
		d := byPCI[addr]
		if d == nil {
			vendor := readAttr(filepath.Join(pciDir, "vendor"))
			if vendor == pciVendorNVIDIA {
				continue
			}
			d = &Device{
				Class:  drmClass(vendor),
				Vendor: vendorName(vendor),
				Model:  readAttr(filepath.Join(pciDir, "device")),
				Driver: linkBase(filepath.Join(pciDir, "driver")),
				PCI:    addr,
				Health: Healthy,
			}
			if d.Driver != "" {
				// Only out-of-tree builds (DKMS) declare a module version.
				d.DriverVersion = readAttr(filepath.Join(o.sysfsRoot, "module", d.Driver, "version"))
			}
			if vram, err := strconv.ParseUint(readAttr(filepath.Join(pciDir, "mem_info_vram_total")), 10, 64); err == nil {
				d.Memory = vram // amdgpu (Documentation/gpu/amdgpu: mem_info_vram_total)
			}
			if d.Class == ClassIntelGPU {
				d.Media = intelMedia(pciDir)
			}
			byPCI[addr] = d
		}
		if d.Class == ClassIntelGPU && d.Media == nil && strings.HasPrefix(e.Name(), "card") {
			d.Media = intelMedia(filepath.Join(classDir, e.Name()))
		}
		n, err := statNode(o.devRoot, filepath.Join(o.devRoot, "dri", e.Name()))
		if err != nil {
			klog.V(2).InfoS("DRM node in sysfs but not usable in the dev root; skipped", "node", e.Name(), "err", err)
			continue
		}
		d.Nodes = append(d.Nodes, n)
	}
	addrs := make([]string, 0, len(byPCI))
	for a, d := range byPCI {
		if len(d.Nodes) > 0 {
			addrs = append(addrs, a)
		}
	}
	sort.Strings(addrs)
	index := map[string]int{}
	var out []Device
	for _, a := range addrs {
		d := byPCI[a]
		sort.Slice(d.Nodes, func(i, j int) bool { return nodeOrder(d.Nodes[i].Path) < nodeOrder(d.Nodes[j].Path) })
		d.Name = fmt.Sprint(index[d.Class])
		index[d.Class]++
		d.Aliases = []string{a}
		out = append(out, *d)
	}
	return out, nil
}

// intelMedia reads the engines an Intel GPU's driver lists: i915 under the
// card's sysfs entry (engine/vcs0, vcs1, ...: drivers/gpu/drm/i915/gt/
// sysfs_engines.c), xe under the PCI device per GT (tile0/gt0/engines/vcs:
// xe_hw_engine_class_sysfs.c). A video codec engine (VCS, the VDBOX)
// decodes and encodes. nil when dir lists no engines (an older kernel, or
// dir is not the one of this driver).
func intelMedia(dir string) *Media {
	listed, _ := filepath.Glob(filepath.Join(dir, "engine", "*"))
	xe, _ := filepath.Glob(filepath.Join(dir, "tile*", "gt*", "engines", "*"))
	listed = append(listed, xe...)
	if len(listed) == 0 {
		return nil
	}
	m := &Media{}
	for _, e := range listed {
		if strings.HasPrefix(filepath.Base(e), "vcs") {
			m.Encode, m.Decode = true, true
		}
	}
	return m
}

// nodeOrder sorts card nodes before render nodes, then by number.
func nodeOrder(p string) string {
	b := filepath.Base(p)
	if strings.HasPrefix(b, "card") {
		return fmt.Sprintf("0%08s", strings.TrimPrefix(b, "card"))
	}
	return fmt.Sprintf("1%08s", strings.TrimPrefix(b, "renderD"))
}

func drmClass(vendor string) string {
	switch vendor {
	case pciVendorIntel:
		return ClassIntelGPU
	case pciVendorAMD:
		return ClassAMDGPU
	}
	return ClassDRMGPU
}

func vendorName(vendor string) string {
	switch vendor {
	case pciVendorIntel:
		return "intel"
	case pciVendorAMD:
		return "amd"
	case pciVendorNVIDIA:
		return "nvidia"
	}
	return vendor
}

// readAttr reads a one-line sysfs attribute ("" when absent).
func readAttr(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// linkBase is the last element of a symlink's target ("" when absent).
func linkBase(path string) string {
	t, err := os.Readlink(path)
	if err != nil {
		return ""
	}
	return filepath.Base(t)
}
