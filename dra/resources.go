package dra

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/dynamic-resource-allocation/resourceslice"

	"github.com/accel-cri/accel-cri/devices"
)

// Option configures Resources.
type Option func(*options)

type options struct {
	sysfsRoot string
	shares    map[string]int
}

// WithSysfsRoot lets Resources read the PCI topology under root (the
// configured sysfs_root, "/sys" on a host) for the pcieRoot and numaNode
// attributes. Without it only pciBusID is published.
func WithSysfsRoot(root string) Option { return func(o *options) { o.sysfsRoot = root } }

// WithShares lets the devices of a class be allocated to up to n claims at
// once (devices.replicas, the device plugin's sharing): such a device has
// AllowMultipleAllocations and the consumable capacity "shares" = n, of
// which a claim takes 1 unless it requests more (n is the whole device),
// and its memory becomes consumable too, 0 by default. n <= 1 leaves the
// class exclusive.
func WithShares(byClass map[string]int) Option { return func(o *options) { o.shares = byClass } }

// Resources translates a node's devices (devices.Manager.Devices: the
// present ones and the vanished ones, Unhealthy) into what each DRA driver
// publishes: every driver in Drivers gets one pool named after the node,
// with at least one slice (an empty pool says the driver runs and has no
// devices). In a slice, healthy devices come first, then by name (the
// scheduler takes the first that fits). A slice holds at most 128 devices,
// 64 when a device of the pool has a taint (the API's limits).
//
// Devices of unknown classes and devices whose names collide are left
// out and reported in the error; the rest is returned.
func Resources(nodeName string, devs []devices.Device, opts ...Option) (map[string]resourceslice.DriverResources, error) {
	if nodeName == "" {
		return nil, errors.New("dra: no node name for the pools")
	}
	var o options
	for _, f := range opts {
		f(&o)
	}
	var errs []error
	byDriver := map[string][]resourceapi.Device{}
	seen := map[string]string{} // driver/name → CDI name of the device
	for _, d := range devs {
		driver := Driver(d.Class)
		if driver == "" {
			errs = append(errs, fmt.Errorf("dra: %s: no DRA driver for class %q", d.CDIName(), d.Class))
			continue
		}
		dev := device(d, &o)
		key := driver + "/" + dev.Name
		if other, dup := seen[key]; dup {
			errs = append(errs, fmt.Errorf("dra: %s and %s have the same name %q in %s", other, d.CDIName(), dev.Name, driver))
			continue
		}
		seen[key] = d.CDIName()
		byDriver[driver] = append(byDriver[driver], dev)
	}
	out := map[string]resourceslice.DriverResources{}
	for _, driver := range Drivers {
		out[driver] = resourceslice.DriverResources{Pools: map[string]resourceslice.Pool{
			nodeName: {Slices: slicesOf(byDriver[driver])},
		}}
	}
	return out, errors.Join(errs...)
}

// slicesOf orders devs (healthy first, then by name) and cuts them into
// slices of the API's size.
func slicesOf(devs []resourceapi.Device) []resourceslice.Slice {
	slices.SortFunc(devs, func(a, b resourceapi.Device) int {
		return cmp.Or(cmp.Compare(len(a.Taints), len(b.Taints)), cmp.Compare(a.Name, b.Name))
	})
	size := resourceapi.ResourceSliceMaxDevices
	for _, d := range devs {
		if len(d.Taints) > 0 {
			size = resourceapi.ResourceSliceMaxDevicesWithAdvancedFeatures
		}
	}
	out := []resourceslice.Slice{{}}
	for _, d := range devs {
		if len(out[len(out)-1].Devices) == size {
			out = append(out, resourceslice.Slice{})
		}
		last := &out[len(out)-1]
		last.Devices = append(last.Devices, d)
	}
	return out
}
