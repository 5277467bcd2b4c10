package devices

import (
	"fmt"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	cdispec "tags.cncf.io/container-device-interface/specs-go"
)

// This file is accel-cri's own CDI registry: names of vendor accel-cri.io
// (what the device plugin's Allocate and DRA's NodePrepareResources hand
// out) are resolved from the Manager's live inventory at CreateContainer,
// not from the spec files it writes, which another process may delete or
// leave behind after the hardware changed. The edits are Spec's, the same
// that go into the files; they are built on demand under the Manager's
// lock (a class has a handful of devices), so nothing cached can go stale
// or be shared between two containers' injections.

// CDIDevice is a CDI device the registry resolved.
type CDIDevice struct {
	// Kind is "accel-cri.io/<class>". ClassEdits, the class's own edits
	// (for NVIDIA: control nodes, driver libraries, environment), are
	// applied once per kind, as a spec file's spec-level edits are.
	Kind       string
	ClassEdits cdispec.ContainerEdits
	// Edits are the device's own (for "all": every live device's).
	Edits cdispec.ContainerEdits
}

// CDIRegistry resolves CDI names of vendor accel-cri.io from live state.
// The Manager is one.
type CDIRegistry interface {
	// ResolveCDI returns the edits of a qualified name. Errors wrap
	// errdefs.ErrNotFound for a name it does not know (the spec
	// directories may), errdefs.ErrFailedPrecondition for a device that
	// vanished, errdefs.ErrInvalidArgument for a malformed name.
	ResolveCDI(name string) (CDIDevice, error)
}

// ResolveCDI resolves "accel-cri.io/<class>=<name>", where name is a
// device's index (or configured name), one of its aliases (PCI address,
// UUID, FPGA port) or "all", against the devices present now.
func (m *Manager) ResolveCDI(name string) (CDIDevice, error) {
	vendor, class, dev, err := ParseQualifiedName(name)
	if err != nil {
		return CDIDevice{}, fmt.Errorf("%w: %v", errdefs.ErrInvalidArgument, err)
	}
	if vendor != Vendor {
		return CDIDevice{}, fmt.Errorf("%w: CDI device %q is not of vendor %s", errdefs.ErrNotFound, name, Vendor)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var live []Device
	for _, d := range m.inv.Devices {
		if d.Class == class {
			live = append(live, d)
		}
	}
	if len(live) > 0 {
		spec, err := Spec(class, live, m.inv.NVIDIA, m.o.containerLibDir)
		if err != nil {
			return CDIDevice{}, fmt.Errorf("CDI device %q: %w", name, err)
		}
		for _, d := range spec.Devices {
			if d.Name == dev {
				return CDIDevice{Kind: spec.Kind, ClassEdits: spec.ContainerEdits, Edits: d.ContainerEdits}, nil
			}
		}
	}
	if err := m.goneLocked(name, class, dev, len(live)); err != nil {
		return CDIDevice{}, err
	}
	return CDIDevice{}, fmt.Errorf("%w: CDI device %q: no such device on this node", errdefs.ErrNotFound, name)
}

// goneLocked is the FailedPrecondition error for a name that only a
// vanished device of class answers to (or "all" of a class that has
// nothing left), nil otherwise.
func (m *Manager) goneLocked(name, class, dev string, live int) error {
	var gone []Device
	for _, d := range m.gone {
		if d.Class == class {
			gone = append(gone, d)
		}
	}
	sort.Slice(gone, func(i, j int) bool { return gone[i].ID() < gone[j].ID() })
	if dev == AllDevices {
		if live > 0 || len(gone) == 0 {
			return nil
		}
		ids := make([]string, len(gone))
		for i, d := range gone {
			ids[i] = deviceID(d)
		}
		return fmt.Errorf("%w: CDI device %q: no %s/%s device is on the node any more (vanished: %s)",
			errdefs.ErrFailedPrecondition, name, Vendor, class, strings.Join(ids, ", "))
	}
	for _, d := range gone {
		for _, n := range append([]string{d.Name}, d.Aliases...) {
			if n == dev {
				return fmt.Errorf("%w: CDI device %q: %s (%s) vanished and is no longer on the node",
					errdefs.ErrFailedPrecondition, name, d.CDIName(), deviceID(d))
			}
		}
	}
	return nil
}
