package devices

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"tags.cncf.io/container-device-interface/pkg/cdi"
	cdispec "tags.cncf.io/container-device-interface/specs-go"

	"github.com/accel-cri/accel-cri/internal/fsutil"
)

// Names of the CDI devices accel-cri publishes: per device its index (or
// configured name) and its aliases (UUID, PCI address, port), and "all"
// per class.
const AllDevices = "all"

// specFilePrefix names accel-cri's spec files: <dir>/accel-cri.io-<class>.json.
const specFilePrefix = Vendor + "-"

// Spec builds the CDI spec of one class from the devices of that class.
func Spec(class string, devs []Device, nv *NVIDIAShared, containerLibDir string) (*cdispec.Spec, error) {
	spec := &cdispec.Spec{Kind: Vendor + "/" + class}
	var all cdispec.ContainerEdits
	for _, d := range devs {
		edits := deviceEdits(d)
		for _, name := range append([]string{d.Name}, d.Aliases...) {
			spec.Devices = append(spec.Devices, cdispec.Device{Name: name, ContainerEdits: edits})
		}
		all.DeviceNodes = append(all.DeviceNodes, edits.DeviceNodes...)
		all.Env = mergeEnv(all.Env, edits.Env)
		all.AdditionalGIDs = addGIDs(all.AdditionalGIDs, edits.AdditionalGIDs...)
	}
	if len(devs) > 1 {
		spec.Devices = append(spec.Devices, cdispec.Device{Name: AllDevices, ContainerEdits: all})
	} else if len(devs) == 1 {
		spec.Devices = append(spec.Devices, cdispec.Device{Name: AllDevices, ContainerEdits: deviceEdits(devs[0])})
	}
	if class == ClassNVIDIA && nv != nil {
		spec.ContainerEdits = nvidiaEdits(nv, containerLibDir)
	}
	v, err := cdi.MinimumRequiredVersion(spec)
	if err != nil {
		return nil, err
	}
	spec.Version = v
	return spec, nil
}

// deviceEdits are one device's nodes with the host's numbers, mode and
// owner, read-write (no mknod), and the media groups of its nodes as
// supplemental groups.
func deviceEdits(d Device) cdispec.ContainerEdits {
	var e cdispec.ContainerEdits
	for _, n := range d.Nodes {
		e.DeviceNodes = append(e.DeviceNodes, cdiNode(n))
		if n.GID != 0 {
			e.AdditionalGIDs = addGIDs(e.AdditionalGIDs, n.GID)
		}
	}
	if d.Class == ClassNVIDIA && d.UUID != "" {
		e.Env = []string{"NVIDIA_VISIBLE_DEVICES=" + d.UUID}
	}
	return e
}

func cdiNode(n Node) *cdispec.DeviceNode {
	mode, uid, gid := n.Mode, n.UID, n.GID
	return &cdispec.DeviceNode{
		Path: n.Path, HostPath: n.HostPath, Type: n.Type, Major: n.Major, Minor: n.Minor,
		FileMode: &mode, Permissions: "rw", UID: &uid, GID: &gid,
	}
}

// nvidiaEdits are the class-wide NVIDIA edits: control nodes, the driver
// libraries of the granted capabilities bind-mounted read-only into
// containerLibDir under their sonames, and the environment CUDA and
// NVENC/NVDEC users expect.
func nvidiaEdits(nv *NVIDIAShared, containerLibDir string) cdispec.ContainerEdits {
	var e cdispec.ContainerEdits
	for _, n := range nv.ControlNodes {
		e.DeviceNodes = append(e.DeviceNodes, cdiNode(n))
	}
	for _, l := range nv.Libraries {
		dst := l.ContainerPath
		if dst == "" {
			dst = filepath.Join(containerLibDir, l.Name)
		}
		e.Mounts = append(e.Mounts, &cdispec.Mount{
			HostPath: l.HostPath, ContainerPath: dst,
			Type: "bind", Options: []string{"ro", "nosuid", "nodev", "bind"},
		})
	}
	e.Env = []string{
		"NVIDIA_DRIVER_CAPABILITIES=" + strings.Join(nv.Capabilities, ","),
		"LD_LIBRARY_PATH=" + containerLibDir,
	}
	if nv.DriverVersion != "" {
		e.Env = append(e.Env, "NVIDIA_DRIVER_VERSION="+nv.DriverVersion)
	}
	return e
}

func addGIDs(have []uint32, add ...uint32) []uint32 {
	for _, g := range add {
		found := false
		for _, h := range have {
			found = found || h == g
		}
		if !found {
			have = append(have, g)
		}
	}
	return have
}

// mergeEnv merges NAME=value lists; NVIDIA_VISIBLE_DEVICES values are
// joined with commas, other names keep the first value.
func mergeEnv(have, add []string) []string {
	for _, kv := range add {
		k, v, _ := strings.Cut(kv, "=")
		found := false
		for i, h := range have {
			hk, hv, _ := strings.Cut(h, "=")
			if hk == k {
				found = true
				if k == "NVIDIA_VISIBLE_DEVICES" {
					have[i] = k + "=" + hv + "," + v
				}
			}
		}
		if !found {
			have = append(have, kv)
		}
	}
	return have
}

// SpecFile is the path of a class's spec in dir.
func SpecFile(dir, class string) string {
	return filepath.Join(dir, specFilePrefix+class+".json")
}

// WriteSpecs writes one spec per class found into dir (atomically, so CDI
// caches watching the directory never read half a file) and removes
// accel-cri's specs of classes that have no devices any more.
func WriteSpecs(dir string, inv Inventory, containerLibDir string) error {
	if len(inv.Devices) > 0 {
		// Only created when there is something to publish: a node without
		// accelerators leaves the host's CDI directories alone.
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cdi spec dir: %w", err)
		}
	}
	byClass := map[string][]Device{}
	for _, d := range inv.Devices {
		byClass[d.Class] = append(byClass[d.Class], d)
	}
	classes := make([]string, 0, len(byClass))
	for c := range byClass {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	keep := map[string]bool{}
	for _, c := range classes {
		spec, err := Spec(c, byClass[c], inv.NVIDIA, containerLibDir)
		if err != nil {
			return fmt.Errorf("cdi spec %s: %w", c, err)
		}
		b, err := json.MarshalIndent(spec, "", "  ")
		if err != nil {
			return err
		}
		path := SpecFile(dir, c)
		keep[path] = true
		if old, err := os.ReadFile(path); err == nil && string(old) == string(b)+"\n" {
			continue
		}
		if err := fsutil.WriteFileAtomic(path, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write cdi spec %s: %w", path, err)
		}
	}
	old, _ := filepath.Glob(filepath.Join(dir, specFilePrefix+"*.json"))
	for _, p := range old {
		if !keep[p] {
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
				return err
			}
		}
	}
	return nil
}

// RemoveSpecs removes every spec accel-cri wrote into dir.
func RemoveSpecs(dir string) error {
	old, _ := filepath.Glob(filepath.Join(dir, specFilePrefix+"*.json"))
	for _, p := range old {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}
