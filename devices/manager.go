package devices

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"k8s.io/klog/v2"
)

// Inventory is what one discovery found.
type Inventory struct {
	Devices []Device
	// NVIDIA is nil when NVML is not present.
	NVIDIA *NVIDIAShared
}

// Manager discovers devices, publishes them as CDI specs and keeps both up
// to date while devices come and go (Run).
type Manager struct {
	o options

	mu      sync.Mutex
	inv     Inventory
	gone    map[string]Device // vanished devices, reported Unhealthy
	subs    map[chan struct{}]struct{}
	noNVML  sync.Once
	lastErr error
}

// New returns a Manager; nothing is read until Refresh or Run.
func New(opts ...Option) *Manager {
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	return &Manager{o: o, gone: map[string]Device{}, subs: map[chan struct{}]struct{}{}}
}

// Discover reads the host (through the configured roots) once. Errors of
// one source (NVML, a static device) are returned joined, with what the
// other sources found.
func (m *Manager) Discover() (Inventory, error) {
	var inv Inventory
	var errs []error
	nv, shared, err := discoverNVIDIA(&m.o)
	switch {
	case errors.Is(err, errNoNVML):
		m.noNVML.Do(func() {
			klog.InfoS("No NVIDIA management library (libnvidia-ml): no NVIDIA GPUs on this host", "library", m.o.nvmlLibrary)
		})
	case err != nil:
		errs = append(errs, fmt.Errorf("nvidia: %w", err))
	default:
		inv.Devices = append(inv.Devices, nv...)
		inv.NVIDIA = shared
	}
	drm, err := discoverDRM(&m.o)
	if err != nil {
		errs = append(errs, err)
	}
	inv.Devices = append(inv.Devices, drm...)
	fpga, err := discoverFPGA(&m.o)
	if err != nil {
		errs = append(errs, err)
	}
	inv.Devices = append(inv.Devices, fpga...)
	static, serrs := discoverStatic(&m.o)
	inv.Devices = append(inv.Devices, static...)
	errs = append(errs, serrs...)
	return inv, errors.Join(errs...)
}

// Refresh discovers again, remembers devices that vanished (Unhealthy),
// writes the CDI specs and tells subscribers when anything changed.
func (m *Manager) Refresh() error {
	inv, derr := m.Discover()
	m.mu.Lock()
	changed := !sameDevices(m.inv.Devices, inv.Devices)
	now := map[string]bool{}
	for _, d := range inv.Devices {
		now[d.ID()] = true
		delete(m.gone, d.ID())
	}
	for _, d := range m.inv.Devices {
		if !now[d.ID()] {
			d.Health = Unhealthy
			m.gone[d.ID()] = d
			klog.InfoS("Device vanished", "device", d.CDIName(), "id", d.ID())
		}
	}
	m.inv = inv
	m.lastErr = derr
	m.mu.Unlock()
	var werr error
	if m.o.cdiDir != "" {
		werr = WriteSpecs(m.o.cdiDir, inv, m.o.containerLibDir)
	}
	if changed {
		m.notify()
	}
	return errors.Join(derr, werr)
}

// Devices returns the present devices followed by vanished ones
// (Unhealthy), in a stable order.
func (m *Manager) Devices() []Device {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := append([]Device(nil), m.inv.Devices...)
	var gone []Device
	for _, d := range m.gone {
		gone = append(gone, d)
	}
	sort.Slice(gone, func(i, j int) bool { return gone[i].ID() < gone[j].ID() })
	return append(out, gone...)
}

// Inventory returns the last discovery's result.
func (m *Manager) Inventory() Inventory {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.inv
}

// Subscribe returns a channel that receives (coalesced) when the device
// set changes, and its cancel function.
func (m *Manager) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	m.mu.Lock()
	m.subs[ch] = struct{}{}
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		delete(m.subs, ch)
		m.mu.Unlock()
	}
}

func (m *Manager) notify() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for ch := range m.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Watch refreshes whenever the watched sysfs and dev directories change,
// until ctx ends. Call Refresh first for the initial state.
func (m *Manager) Watch(ctx context.Context) error { return m.watch(ctx) }

// sameDevices compares device sets by identity and nodes.
func sameDevices(a, b []Device) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID() != b[i].ID() || a[i].Name != b[i].Name || len(a[i].Nodes) != len(b[i].Nodes) {
			return false
		}
		for j := range a[i].Nodes {
			if a[i].Nodes[j] != b[i].Nodes[j] {
				return false
			}
		}
	}
	return true
}
