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

// FPGAs, in the two layouts the kernel has used (the same ones Intel's FPGA
// device plugin reads):
//
//   - DFL: /sys/class/fpga_region/regionN/dfl-port.M (afu_id) and
//     dfl-fme.M (the FME; its region's compat_id or pr/interface_id is the
//     interface id), nodes /dev/dfl-port.M and /dev/dfl-fme.M.
//   - intel-fpga (OPAE, older kernels): /sys/class/fpga/intel-fpga-dev.N/
//     intel-fpga-port.M (afu_id) and intel-fpga-fme.M (pr/interface_id),
//     nodes /dev/intel-fpga-port.M and /dev/intel-fpga-fme.M.
//
// DFL ports and FMEs are also found through the buses, for hosts whose
// class/fpga_region is missing or incomplete (all sources are merged: one
// device per /dev node; the first source's attributes win, the others
// add what it lacks):
//
//   - /sys/bus/platform/devices/dfl-port.M and dfl-fme.M: the FIU platform
//     devices themselves (Documentation/ABI/testing/sysfs-platform-dfl-port:
//     afu_id; sysfs-platform-dfl-fme: pr/interface_id), children of their
//     fpga_region.
//   - /sys/bus/dfl/devices/dfl_dev.K: the private features of a port or FME
//     (Documentation/ABI/testing/sysfs-bus-dfl). They are not ports
//     themselves; "type" is the FIU type of the port or FME they belong to
//     (0 FME, 1 PORT), "feature_id" the feature's id, and their parent
//     directory is that dfl-port.M or dfl-fme.M. A port's feature ids are
//     kept as the attribute "feature_ids".
//
// A Device is one port (what a workload uses). The FME, which reprograms
// the FPGA, is not given to containers; its interface id is kept as an
// attribute.

var (
	dflPortRE   = regexp.MustCompile(`^dfl-port\.[0-9]+$`)
	dflFMERE    = regexp.MustCompile(`^dfl-fme\.[0-9]+$`)
	opaePortRE  = regexp.MustCompile(`^intel-fpga-port\.[0-9]+$`)
	opaeFMERE   = regexp.MustCompile(`^intel-fpga-fme\.[0-9]+$`)
	fpgaRegions = []struct {
		class, glob string
		port, fme   *regexp.Regexp
		driver      string
	}{
		{"fpga_region", "region*", dflPortRE, dflFMERE, "dfl"},
		{"fpga", "intel-fpga-dev.*", opaePortRE, opaeFMERE, "intel-fpga"},
	}
)

func discoverFPGA(o *options) ([]Device, error) {
	var out []Device
	for _, l := range fpgaRegions {
		regions, err := filepath.Glob(filepath.Join(o.sysfsRoot, "class", l.class, l.glob))
		if err != nil {
			return nil, fmt.Errorf("fpga: %w", err)
		}
		sort.Strings(regions)
		for _, region := range regions {
			entries, err := os.ReadDir(region)
			if err != nil {
				continue
			}
			var ports []string
			interfaceID := ""
			for _, e := range entries {
				switch {
				case l.port.MatchString(e.Name()):
					ports = append(ports, e.Name())
				case l.fme.MatchString(e.Name()):
					interfaceID = fmeInterfaceID(filepath.Join(region, e.Name()))
				}
			}
			sort.Strings(ports)
			for _, p := range ports {
				n, err := statNode(o.devRoot, filepath.Join(o.devRoot, p))
				if err != nil {
					klog.V(2).InfoS("FPGA port in sysfs but not usable in the dev root; skipped", "port", p, "err", err)
					continue
				}
				d := Device{
					Class:  ClassFPGA,
					Vendor: "intel",
					Driver: l.driver,
					Nodes:  []Node{n},
					Attrs:  map[string]string{"port": p},
					Health: Healthy,
				}
				if pci, err := filepath.EvalSymlinks(filepath.Join(region, "device")); err == nil {
					d.PCI = filepath.Base(pci)
				}
				if afu := readAttr(filepath.Join(region, p, "afu_id")); afu != "" {
					d.Attrs["afu_id"] = afu
				}
				if interfaceID != "" {
					d.Attrs["interface_id"] = interfaceID
				}
				out = append(out, d)
			}
		}
	}
	seen := map[string]int{} // index in out by host node
	for i, d := range out {
		seen[d.Nodes[0].HostPath] = i
	}
	for _, d := range discoverDFLBus(o) {
		i, ok := seen[d.Nodes[0].HostPath]
		if !ok {
			seen[d.Nodes[0].HostPath] = len(out)
			out = append(out, d)
			continue
		}
		// Found before: attributes only the buses give are added.
		for k, v := range d.Attrs {
			if _, have := out[i].Attrs[k]; !have {
				out[i].Attrs[k] = v
			}
		}
	}
	for i := range out {
		out[i].Name = fmt.Sprint(i)
		out[i].Aliases = []string{strings.ReplaceAll(out[i].Attrs["port"], "/", "_")}
	}
	return out, nil
}

// fmeInterfaceID is the FME's interface id: pr/interface_id (intel-fpga
// and early DFL) or the compat_id of its region (DFL).
func fmeInterfaceID(fme string) string {
	if id := readAttr(filepath.Join(fme, "pr", "interface_id")); id != "" {
		return id
	}
	m, _ := filepath.Glob(filepath.Join(fme, "dfl-fme-region.*", "fpga_region", "region*", "compat_id"))
	if len(m) > 0 {
		return readAttr(m[0])
	}
	return ""
}

// dflFIU is a DFL port or FME found on a bus.
type dflFIU struct {
	dir      string   // sysfs directory, symlinks resolved
	features []string // feature ids of its private features (dfl bus)
}

// discoverDFLBus finds DFL ports through /sys/bus/platform and /sys/bus/dfl,
// sorted by port name.
func discoverDFLBus(o *options) []Device {
	ports := map[string]*dflFIU{} // by port name
	fmes := map[string]string{}   // FME dir by parent (region) dir
	add := func(dir string) *dflFIU {
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return nil
		}
		name := filepath.Base(real)
		switch {
		case dflPortRE.MatchString(name):
			if ports[name] == nil {
				ports[name] = &dflFIU{dir: real}
			}
			return ports[name]
		case dflFMERE.MatchString(name):
			fmes[filepath.Dir(real)] = real
		}
		return nil
	}
	platform, _ := filepath.Glob(filepath.Join(o.sysfsRoot, "bus", "platform", "devices", "dfl-*"))
	sort.Strings(platform)
	for _, p := range platform {
		add(p)
	}
	features, _ := filepath.Glob(filepath.Join(o.sysfsRoot, "bus", "dfl", "devices", "dfl_dev.*"))
	sort.Strings(features)
	for _, f := range features {
		real, err := filepath.EvalSymlinks(f)
		if err != nil {
			continue
		}
		typ, err := parseHex(readAttr(filepath.Join(real, "type")))
		if err != nil {
			continue
		}
		parent := filepath.Dir(real)
		switch {
		case typ == 1 && dflPortRE.MatchString(filepath.Base(parent)):
			if fiu := add(parent); fiu != nil {
				if id := readAttr(filepath.Join(real, "feature_id")); id != "" {
					fiu.features = append(fiu.features, id)
				}
			}
		case typ == 0 && dflFMERE.MatchString(filepath.Base(parent)):
			add(parent)
		}
	}
	names := make([]string, 0, len(ports))
	for n := range ports {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return portNumber(names[i]) < portNumber(names[j]) })
	var out []Device
	for _, p := range names {
		fiu := ports[p]
		n, err := statNode(o.devRoot, filepath.Join(o.devRoot, p))
		if err != nil {
			klog.V(2).InfoS("FPGA port in sysfs but not usable in the dev root; skipped", "port", p, "err", err)
			continue
		}
		d := Device{
			Class: ClassFPGA, Vendor: "intel", Driver: "dfl",
			Nodes: []Node{n}, Attrs: map[string]string{"port": p}, Health: Healthy,
		}
		region := filepath.Dir(fiu.dir)
		if pci, err := filepath.EvalSymlinks(filepath.Join(region, "device")); err == nil {
			d.PCI = filepath.Base(pci)
		} else if pci := filepath.Base(filepath.Dir(filepath.Dir(region))); pciAddrRE.MatchString(pci) {
			d.PCI = pci // .../<pci>/fpga_region/regionN
		}
		if afu := readAttr(filepath.Join(fiu.dir, "afu_id")); afu != "" {
			d.Attrs["afu_id"] = afu
		}
		if fme := fmes[region]; fme != "" {
			if id := fmeInterfaceID(fme); id != "" {
				d.Attrs["interface_id"] = id
			}
		} else if m, _ := filepath.Glob(filepath.Join(region, "dfl-fme.*")); len(m) > 0 {
			if id := fmeInterfaceID(m[0]); id != "" {
				d.Attrs["interface_id"] = id
			}
		}
		if len(fiu.features) > 0 {
			d.Attrs["feature_ids"] = strings.Join(fiu.features, ",")
		}
		out = append(out, d)
	}
	return out
}

var pciAddrRE = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)

func parseHex(s string) (uint64, error) {
	return strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
}

func portNumber(name string) int {
	_, n, _ := strings.Cut(name, ".")
	v, _ := strconv.Atoi(n)
	return v
}
