package devices

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// CDI classes of the devices accel-cri finds.
const (
	ClassNVIDIA   = "gpu"       // NVIDIA GPUs (NVML)
	ClassIntelGPU = "intel-gpu" // Intel GPUs (DRM, i915 or xe)
	ClassAMDGPU   = "amd-gpu"   // AMD GPUs (DRM, amdgpu)
	ClassDRMGPU   = "drm-gpu"   // other DRM devices
	ClassFPGA     = "fpga"      // DFL and intel-fpga ports
	ClassStatic   = "device"    // devices named in the config
)

// Health is what the device plugin reports to kubelet.
type Health string

// Health values (the device-plugin API's words).
const (
	Healthy   Health = "Healthy"
	Unhealthy Health = "Unhealthy"
)

// Node is one device node on the host.
type Node struct {
	// HostPath is the node's path on the host (under the dev root).
	HostPath string
	// Path is where it appears in a container (under /dev).
	Path string
	// Type is "c" or "b"; Major, Minor its numbers.
	Type         string
	Major, Minor int64
	// Mode, UID and GID are the host node's permission bits and owner.
	Mode     os.FileMode
	UID, GID uint32
	// Group is the name of the node's group when it is a well-known
	// media group ("render", "video"); its GID is then added to the
	// container's supplemental groups.
	Group string
}

// Device is one accelerator (or static device) found on the host.
type Device struct {
	// Class is the CDI class; Name the CDI device name (the index within
	// the class, or the configured name for static devices).
	Class, Name string
	// Aliases are other CDI names of the same device (UUID, PCI address).
	Aliases []string
	// Vendor and Model describe the hardware ("nvidia", "intel", "0x8086"...).
	Vendor, Model string
	// Driver is the kernel driver (i915, xe, amdgpu, dfl-afu, nvidia).
	Driver string
	// PCI is the PCI address ("0000:03:00.0") where known; UUID the NVIDIA UUID.
	PCI, UUID string
	// Nodes are the device's own nodes; Shared nodes every device of the
	// class needs (NVIDIA control nodes).
	Nodes []Node
	// Attrs are extra identifiers (FPGA interface and AFU ids).
	Attrs map[string]string
	// DriverVersion is the kernel driver's version where the host says it
	// (NVML for NVIDIA; /sys/module/<driver>/version for out-of-tree DRM
	// drivers; in-tree drivers have none), as reported.
	DriverVersion string
	// Memory is the device's own memory in bytes (NVML's total; amdgpu's
	// mem_info_vram_total); 0 when unknown (integrated GPUs, Intel).
	Memory uint64
	// Media describes the video engines where discovery knows them (NVIDIA,
	// Intel on kernels that list engines); nil when it does not.
	Media *Media
	// Health is Unhealthy once the device vanished.
	Health Health
}

// Media is what discovery knows of a GPU's video engines.
type Media struct {
	// Encode and Decode report hardware video encoding and decoding:
	// NVENC/NVDEC for NVIDIA (NVML answers encoder capacity and decoder
	// utilization queries only on GPUs that have them), a video codec
	// engine (VCS) in the engines i915 or xe list for Intel.
	Encode, Decode bool
}

// CDIName is the fully qualified CDI name of the device by its index/name.
func (d Device) CDIName() string { return Vendor + "/" + d.Class + "=" + d.Name }

// ID is the device's stable identity: the class and its first alias (the
// UUID or PCI address) when it has one, else its name.
func (d Device) ID() string {
	if len(d.Aliases) > 0 {
		return d.Class + "/" + d.Aliases[0]
	}
	return d.Class + "/" + d.Name
}

// ErrNotDeviceNode reports a path that is not a character or block device.
var ErrNotDeviceNode = errors.New("not a device node")

// NodeInfo is what the kernel says about a device node.
type NodeInfo struct {
	Type         string // "c" or "b"
	Major, Minor int64
	Mode         os.FileMode // permission bits
	UID, GID     uint32
}

// StatNode reads the device node at path (following symlinks). A path that
// is not a device node is an error wrapping ErrNotDeviceNode.
func StatNode(path string) (NodeInfo, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return NodeInfo{}, err
	}
	info := NodeInfo{
		Major: int64(unix.Major(uint64(st.Rdev))),
		Minor: int64(unix.Minor(uint64(st.Rdev))),
		Mode:  os.FileMode(st.Mode &^ unix.S_IFMT),
		UID:   st.Uid,
		GID:   st.Gid,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		info.Type = "c"
	case unix.S_IFBLK:
		info.Type = "b"
	default:
		return NodeInfo{}, fmt.Errorf("%s is %w", path, ErrNotDeviceNode)
	}
	return info, nil
}

// ErrOutsideRoot reports a device path that resolves outside the dev root.
var ErrOutsideRoot = errors.New("outside")

// ResolveNode follows the symlinks of path and reads the device node it
// resolves to, which must be below root (the host's /dev): a symlink under
// /dev must not lend a node (or a regular file) from elsewhere on the host.
// It returns the resolved path. A path that does not exist is an error
// wrapping fs.ErrNotExist, one that resolves outside root wraps
// ErrOutsideRoot, one that is no device node ErrNotDeviceNode.
func ResolveNode(root, path string) (string, NodeInfo, error) {
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", NodeInfo{}, fmt.Errorf("resolve %q: %w", path, err)
	}
	if !underRoot(root, resolved) {
		return resolved, NodeInfo{}, fmt.Errorf("%q resolves to %q, %w %s", path, resolved, ErrOutsideRoot, root)
	}
	info, err := StatNode(resolved)
	if err != nil {
		return resolved, NodeInfo{}, fmt.Errorf("stat %q: %w", resolved, err)
	}
	return resolved, info, nil
}

// underRoot reports whether the resolved path p is below root.
func underRoot(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../")
}

// statNode reads a device node under devRoot.
func statNode(devRoot, hostPath string) (Node, error) {
	info, err := StatNode(hostPath)
	if err != nil {
		return Node{}, err
	}
	rel, err := filepath.Rel(devRoot, hostPath)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return Node{}, fmt.Errorf("%s is not under the dev root %s", hostPath, devRoot)
	}
	return Node{
		HostPath: hostPath,
		Path:     filepath.Join("/dev", rel),
		Type:     info.Type,
		Major:    info.Major,
		Minor:    info.Minor,
		Mode:     info.Mode,
		UID:      info.UID,
		GID:      info.GID,
		Group:    groupName(info.GID),
	}, nil
}

// groupName is the host's name for gid when it is one of the groups media
// stacks need ("render", "video"); "" otherwise. The GID is what matters,
// the name is shown by `accel-cri devices`.
func groupName(gid uint32) string {
	b, err := os.ReadFile("/etc/group")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, ":")
		if len(f) >= 3 && f[2] == fmt.Sprint(gid) {
			return f[0]
		}
	}
	return ""
}
