package devices

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
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
