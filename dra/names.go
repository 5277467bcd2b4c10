package dra

import (
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/accel-cri/accel-cri/devices"
)

// maxNameLen is the length limit of a DNS label (a device name in a pool).
const maxNameLen = 63

// DeviceName is d's name in its driver's pool: a DNS label made from what
// identifies the hardware, so the same device keeps its name across
// restarts and rediscovery, and CDI indices and /dev numbering (which
// change when devices come and go) never enter it:
//
//   - GPUs: "gpu-" and the PCI address ("gpu-0000-03-00-0", NVML's 8-digit
//     domain shortened to 4 as in pciBusID); without one,
//     the NVIDIA UUID ("gpu-8c8e1b34-...", NVML's "GPU-" prefix lowercased);
//   - FPGA ports: "fpga-", the PCI address and the port
//     ("fpga-0000-08-00-0-dfl-port-0"), or the port alone without a PCI
//     address ("fpga-intel-fpga-port-1");
//   - static devices: "static-" and the configured name, with a hash of
//     the name added when it had to be changed to fit a DNS label (so two
//     names that map to the same label stay apart).
func DeviceName(d devices.Device) string {
	switch Driver(d.Class) {
	case DriverGPU:
		switch pci := pciAddress(d.PCI); {
		case pci != "":
			return label("gpu-"+pci, "")
		case d.UUID != "":
			if u := strings.ToLower(d.UUID); strings.HasPrefix(u, "gpu-") || strings.HasPrefix(u, "mig-") {
				return label(u, d.UUID)
			}
			return label("gpu-"+d.UUID, d.UUID)
		}
		return label("gpu-"+d.Class+"-"+d.Name, d.Class+"/"+d.Name)
	case DriverFPGA:
		port := d.Attrs["port"]
		if port == "" {
			port = d.Name
		}
		if pci := pciAddress(d.PCI); pci != "" {
			return label("fpga-"+pci+"-"+port, "")
		}
		return label("fpga-"+port, "")
	}
	return label("static-"+d.Name, d.Name)
}

// label turns s into a DNS label: lower case, every character other than
// [a-z0-9] a "-", runs of "-" folded, none at either end, at most 63
// characters. If id is set and the label is more than s lowered (a "_" or
// "." of a configured name became "-"), or if the label had to be cut, a
// hash of id (else s) is appended, so distinct inputs keep distinct names.
// PCI addresses and ports pass id "": their punctuation maps one-to-one.
func label(s, id string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
			continue
		}
		if !dash && b.Len() > 0 {
			b.WriteByte('-')
		}
		dash = true
	}
	out := strings.TrimRight(b.String(), "-")
	needHash := len(out) > maxNameLen
	if id != "" && strings.ToLower(s) != out {
		needHash = true
	}
	if !needHash {
		return out
	}
	if id == "" {
		id = s
	}
	h := fnv.New32a()
	h.Write([]byte(id))
	suffix := fmt.Sprintf("-%08x", h.Sum32())
	if len(out) > maxNameLen-len(suffix) {
		out = strings.TrimRight(out[:maxNameLen-len(suffix)], "-")
	}
	return out + suffix
}
