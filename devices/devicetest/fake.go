// Package devicetest builds fake hosts for device tests: a sysfs tree and a
// dev tree in a temp directory that mirror the kernel's layouts, with real
// character nodes made by mknod (reusing the numbers of harmless host
// devices). Only the hardware is fake: discovery reads them with its
// production code, selected by its root options.
package devicetest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Host is a fake sysfs and dev tree.
type Host struct {
	t     testing.TB
	Root  string
	Sysfs string
	Dev   string
}

// AccelCRIConfig is the [devices] table that points an accel-cri at this
// fake host: discovery reads its sysfs and dev trees, CDI specs go to and
// are read from cdiDir, NVML is absent. extra is appended to the table.
func (h *Host) AccelCRIConfig(cdiDir, extra string) string {
	return fmt.Sprintf(`
[devices]
cdi_spec_dirs = [%q]
cdi_output_dir = %q
sysfs_root = %q
dev_root = %q
nvml_library = "/nonexistent/libnvidia-ml.so.1"
%s
`, cdiDir, cdiDir, h.Sysfs, h.Dev, extra)
}

// NewHost makes the empty trees under dir (a test's temp dir).
func NewHost(t testing.TB, dir string) *Host {
	t.Helper()
	h := &Host{t: t, Root: dir, Sysfs: filepath.Join(dir, "sys"), Dev: filepath.Join(dir, "dev")}
	for _, d := range []string{
		filepath.Join(h.Sysfs, "class", "drm"),
		filepath.Join(h.Sysfs, "bus", "pci", "drivers"),
		filepath.Join(h.Sysfs, "devices", "pci0000:00"),
		h.Dev,
	} {
		h.mkdir(d)
	}
	return h
}

func (h *Host) mkdir(d string) {
	h.t.Helper()
	if err := os.MkdirAll(d, 0o755); err != nil {
		h.t.Fatal(err)
	}
}

func (h *Host) write(p, content string) {
	h.t.Helper()
	h.mkdir(filepath.Dir(p))
	if err := os.WriteFile(p, []byte(content+"\n"), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h *Host) symlink(target, link string) {
	h.t.Helper()
	h.mkdir(filepath.Dir(link))
	rel, err := filepath.Rel(filepath.Dir(link), target)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := os.Symlink(rel, link); err != nil && !os.IsExist(err) {
		h.t.Fatal(err)
	}
}

// Num is a device number.
type Num struct{ Major, Minor uint32 }

// Numbers of host devices whose nodes are harmless to open read-write and
// that runc's default cgroup rules do not allow (so only an explicit rule
// lets a container open them).
var (
	Fuse        = Num{10, 229}
	LoopControl = Num{10, 237}
	KVM         = Num{10, 232}
	// Null is allowed by every container's default rules; use it where
	// the cgroup does not matter.
	Null = Num{1, 3}
)

// Two Intel GPUs for tests that need GPUs to exist and do not care about
// cgroup rules (their nodes have Null's numbers): an integrated one (i915,
// card0/renderD128) and an Arc (xe, card1/renderD129), with the usual
// video (44) and render (993) groups.
var (
	IntelIGPU = DRMGPU{PCI: "0000:00:02.0", Vendor: "0x8086", Device: "0x4680", Driver: "i915", Card: 0, Render: 128,
		CardNum: Null, RenderNum: Null, CardGID: 44, RenderGID: 993}
	IntelArc = DRMGPU{PCI: "0000:03:00.0", Vendor: "0x8086", Device: "0x56a0", Driver: "xe", Card: 1, Render: 129,
		CardNum: Null, RenderNum: Null, CardGID: 44, RenderGID: 993}
)

// Mknod makes a character node at rel under the dev root, owned by
// root:gid with mode.
func (h *Host) Mknod(rel string, n Num, mode uint32, gid int) string {
	h.t.Helper()
	p := filepath.Join(h.Dev, rel)
	h.mkdir(filepath.Dir(p))
	if err := unix.Mknod(p, unix.S_IFCHR|mode, int(unix.Mkdev(n.Major, n.Minor))); err != nil {
		h.t.Fatalf("mknod %s: %v", p, err)
	}
	if err := os.Chmod(p, os.FileMode(mode)); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Chown(p, 0, gid); err != nil {
		h.t.Fatal(err)
	}
	return p
}

// DRMGPU describes one PCI GPU with DRM nodes.
type DRMGPU struct {
	PCI    string // "0000:00:02.0"
	Vendor string // "0x8086"
	Device string // "0x56a0"
	Driver string // "i915", "xe", "amdgpu"
	Card   int    // cardN
	Render int    // renderDN (128...)
	// CardNum and RenderNum are the node numbers to reuse.
	CardNum, RenderNum Num
	// GID owns the nodes (render group for render nodes, video for card).
	CardGID, RenderGID int
	// VRAM, if set, is amdgpu's mem_info_vram_total (bytes).
	VRAM uint64
	// ModuleVersion, if set, is /sys/module/<Driver>/version (what
	// out-of-tree DKMS builds declare).
	ModuleVersion string
	// NUMANode, if set, is written to the PCI device's numa_node.
	NUMANode string
	// Engines are the engines the driver lists ("rcs0", "vcs0"): i915
	// under the card's engine/, xe (engine classes, "vcs") under the PCI
	// device's tile0/gt0/engines/.
	Engines []string
}

// pciDevice makes /sys/devices/pci0000:00/<addr> and the kernel's
// /sys/bus/pci/devices/<addr> link to it, and returns its directory.
func (h *Host) pciDevice(addr string) string {
	h.t.Helper()
	pci := filepath.Join(h.Sysfs, "devices", "pci0000:00", addr)
	h.mkdir(pci)
	link := filepath.Join(h.Sysfs, "bus", "pci", "devices", addr)
	if _, err := os.Lstat(link); err != nil {
		h.symlink(pci, link)
	}
	return pci
}

// AddDRMGPU adds the PCI device, its drm directory, the class links and
// the /dev/dri nodes (mode 0660), like the kernel and udev do.
func (h *Host) AddDRMGPU(g DRMGPU) {
	h.t.Helper()
	pci := h.pciDevice(g.PCI)
	h.write(filepath.Join(pci, "vendor"), g.Vendor)
	if g.VRAM != 0 {
		h.write(filepath.Join(pci, "mem_info_vram_total"), fmt.Sprint(g.VRAM))
	}
	if g.ModuleVersion != "" {
		h.write(filepath.Join(h.Sysfs, "module", g.Driver, "version"), g.ModuleVersion)
	}
	if g.NUMANode != "" {
		h.write(filepath.Join(pci, "numa_node"), g.NUMANode)
	}
	h.write(filepath.Join(pci, "device"), g.Device)
	drv := filepath.Join(h.Sysfs, "bus", "pci", "drivers", g.Driver)
	h.mkdir(drv)
	if _, err := os.Lstat(filepath.Join(pci, "driver")); err != nil {
		h.symlink(drv, filepath.Join(pci, "driver"))
	}
	for _, n := range []struct {
		name string
		num  Num
		gid  int
	}{
		{fmt.Sprintf("card%d", g.Card), g.CardNum, g.CardGID},
		{fmt.Sprintf("renderD%d", g.Render), g.RenderNum, g.RenderGID},
	} {
		dir := filepath.Join(pci, "drm", n.name)
		h.write(filepath.Join(dir, "dev"), fmt.Sprintf("%d:%d", n.num.Major, n.num.Minor))
		h.symlink(pci, filepath.Join(dir, "device"))
		h.symlink(dir, filepath.Join(h.Sysfs, "class", "drm", n.name))
		h.Mknod(filepath.Join("dri", n.name), n.num, 0o660, n.gid)
	}
	for _, e := range g.Engines {
		if g.Driver == "xe" {
			h.mkdir(filepath.Join(pci, "tile0", "gt0", "engines", e))
		} else {
			h.write(filepath.Join(pci, "drm", fmt.Sprintf("card%d", g.Card), "engine", e, "name"), e)
		}
	}
	// A connector, which discovery must skip.
	conn := filepath.Join(pci, "drm", fmt.Sprintf("card%d", g.Card), fmt.Sprintf("card%d-DP-1", g.Card))
	h.mkdir(conn)
	if _, err := os.Lstat(filepath.Join(h.Sysfs, "class", "drm", filepath.Base(conn))); err != nil {
		h.symlink(conn, filepath.Join(h.Sysfs, "class", "drm", filepath.Base(conn)))
	}
}

// RemoveDRMGPU removes a GPU's nodes and class links (hot unplug).
func (h *Host) RemoveDRMGPU(g DRMGPU) {
	h.t.Helper()
	for _, n := range []string{fmt.Sprintf("card%d", g.Card), fmt.Sprintf("renderD%d", g.Render), fmt.Sprintf("card%d-DP-1", g.Card)} {
		os.Remove(filepath.Join(h.Sysfs, "class", "drm", n))
		os.Remove(filepath.Join(h.Dev, "dri", n))
	}
}

// AddDFLFPGA adds a DFL FPGA region with one FME and one port:
// /sys/class/fpga_region/regionN/{dfl-fme.N,dfl-port.N} and /dev/dfl-port.N.
func (h *Host) AddDFLFPGA(region, port int, pci, interfaceID, afuID string, num Num) {
	h.t.Helper()
	pdev := h.pciDevice(pci)
	r := filepath.Join(pdev, fmt.Sprintf("fpga_region/region%d", region))
	h.mkdir(r)
	h.symlink(pdev, filepath.Join(r, "device"))
	fme := filepath.Join(r, fmt.Sprintf("dfl-fme.%d", port))
	h.write(filepath.Join(fme, fmt.Sprintf("dfl-fme-region.%d", port), "fpga_region", fmt.Sprintf("region%d", region+1), "compat_id"), interfaceID)
	h.write(filepath.Join(r, fmt.Sprintf("dfl-port.%d", port), "afu_id"), afuID)
	h.symlink(r, filepath.Join(h.Sysfs, "class", "fpga_region", fmt.Sprintf("region%d", region)))
	h.Mknod(fmt.Sprintf("dfl-fme.%d", port), num, 0o600, 0)
	h.Mknod(fmt.Sprintf("dfl-port.%d", port), num, 0o600, 0)
}

// AddOPAEFPGA adds an intel-fpga (OPAE) device with one FME and port.
func (h *Host) AddOPAEFPGA(dev, port int, interfaceID, afuID string, num Num) {
	h.t.Helper()
	d := filepath.Join(h.Sysfs, "class", "fpga", fmt.Sprintf("intel-fpga-dev.%d", dev))
	h.write(filepath.Join(d, fmt.Sprintf("intel-fpga-fme.%d", port), "pr", "interface_id"), interfaceID)
	h.write(filepath.Join(d, fmt.Sprintf("intel-fpga-port.%d", port), "afu_id"), afuID)
	h.Mknod(fmt.Sprintf("intel-fpga-port.%d", port), num, 0o600, 0)
}

// DFLFPGA describes a DFL FPGA as the kernel lays it out: the PCI device,
// its fpga_region/regionN, the FIU platform devices dfl-fme.M and
// dfl-port.M in it, their private features on the DFL bus, and the nodes
// /dev/dfl-fme.M and /dev/dfl-port.M.
type DFLFPGA struct {
	Region, Port int
	PCI          string // "0000:08:00.0"
	// InterfaceID is the FME's pr/interface_id, AFUID the port's afu_id.
	InterfaceID, AFUID string
	Num                Num
	// PortFeatures and FMEFeatures are the feature ids ("0x14") of the
	// private features, added as /sys/bus/dfl/devices/dfl_dev.K from
	// K = FirstFeature on: children of the port or FME, type 0x1 or 0x0.
	PortFeatures, FMEFeatures []string
	FirstFeature              int
	// Class adds the /sys/class/fpga_region link; Platform adds the
	// /sys/bus/platform/devices links of the port and FME.
	Class, Platform bool
}

// AddDFLBusFPGA adds f.
func (h *Host) AddDFLBusFPGA(f DFLFPGA) {
	h.t.Helper()
	pdev := h.pciDevice(f.PCI)
	r := filepath.Join(pdev, "fpga_region", fmt.Sprintf("region%d", f.Region))
	h.mkdir(r)
	h.symlink(pdev, filepath.Join(r, "device")) // the class device's parent
	fme := filepath.Join(r, fmt.Sprintf("dfl-fme.%d", f.Port))
	port := filepath.Join(r, fmt.Sprintf("dfl-port.%d", f.Port))
	h.write(filepath.Join(fme, "pr", "interface_id"), f.InterfaceID)
	h.write(filepath.Join(port, "afu_id"), f.AFUID)
	if f.Class {
		h.symlink(r, filepath.Join(h.Sysfs, "class", "fpga_region", fmt.Sprintf("region%d", f.Region)))
	}
	if f.Platform {
		h.symlink(fme, filepath.Join(h.Sysfs, "bus", "platform", "devices", filepath.Base(fme)))
		h.symlink(port, filepath.Join(h.Sysfs, "bus", "platform", "devices", filepath.Base(port)))
	}
	k := f.FirstFeature
	for _, fs := range []struct {
		parent, typ string
		ids         []string
	}{{fme, "0x0", f.FMEFeatures}, {port, "0x1", f.PortFeatures}} {
		for _, id := range fs.ids {
			d := filepath.Join(fs.parent, fmt.Sprintf("dfl_dev.%d", k))
			h.write(filepath.Join(d, "type"), fs.typ)
			h.write(filepath.Join(d, "feature_id"), id)
			h.symlink(d, filepath.Join(h.Sysfs, "bus", "dfl", "devices", filepath.Base(d)))
			k++
		}
	}
	h.Mknod(filepath.Base(fme), f.Num, 0o600, 0)
	h.Mknod(filepath.Base(port), f.Num, 0o600, 0)
}
