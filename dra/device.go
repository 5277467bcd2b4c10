package dra

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/blang/semver/v4"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/dynamic-resource-allocation/deviceattribute"
	"k8s.io/utils/ptr"

	"github.com/accel-cri/accel-cri/devices"
)

// Attribute and capacity names in the driver's own domain (unqualified:
// CEL sees them as device.attributes["<driver>"].<name>). A name means the
// same thing and has the same type on every device of every driver.
const (
	AttrClass         = "class"         // string: the CDI class ("intel-gpu", "gpu", "fpga", "device")
	AttrVendor        = "vendor"        // string: "intel", "amd", "nvidia", "static", else the PCI vendor id
	AttrModel         = "model"         // string: PCI device id ("0x56a0") for DRM GPUs, NVML's name for NVIDIA
	AttrDriver        = "driver"        // string: kernel driver (i915, xe, amdgpu, nvidia, dfl, intel-fpga)
	AttrDriverVersion = "driverVersion" // version: the driver's version as semver, where it has one
	AttrUUID          = "uuid"          // string: NVIDIA UUID
	AttrCardMinor     = "cardMinor"     // int: N of /dev/dri/cardN
	AttrRenderMinor   = "renderMinor"   // int: N of /dev/dri/renderDN
	AttrNVIDIAMinor   = "nvidiaMinor"   // int: N of /dev/nvidiaN
	AttrVideoEncode   = "videoEncode"   // bool: hardware video encoding (NVENC), where known
	AttrVideoDecode   = "videoDecode"   // bool: hardware video decoding (NVDEC), where known
	AttrPort          = "port"          // string: FPGA port ("dfl-port.0")
	AttrInterfaceID   = "interfaceID"   // string: FPGA interface id of the region (the FME's)
	AttrAFUID         = "afuID"         // string: FPGA accelerator function id loaded in the port
	AttrFeatureIDs    = "featureIDs"    // string: the port's DFL private feature ids, comma-separated
	AttrName          = "name"          // string: a static device's configured name
	AttrPath          = "path"          // string: a static device's node in the container

	CapacityMemory = "memory" // the device's own memory (bytes)
	CapacityShares = "shares" // how many claims may share the device (WithShares); a claim takes 1 by default
)

// TaintUnhealthy is the key of the taint an unhealthy device carries (value
// "Unhealthy", effect NoSchedule): the scheduler allocates it no more;
// pods already using it keep running, as with the device plugin's
// Unhealthy (a DeviceTaintRule with NoExecute evicts them if wanted).
const TaintUnhealthy = "accel-cri.io/unhealthy"

// device is d as a resource.k8s.io/v1 Device.
func device(d devices.Device, o *options) resourceapi.Device {
	attrs := map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{}
	str := func(name, v string) {
		if v != "" && len(v) <= resourceapi.DeviceAttributeMaxValueLength {
			attrs[resourceapi.QualifiedName(name)] = resourceapi.DeviceAttribute{StringValue: ptr.To(v)}
		}
	}
	num := func(name string, v int64) {
		attrs[resourceapi.QualifiedName(name)] = resourceapi.DeviceAttribute{IntValue: ptr.To(v)}
	}
	boolean := func(name string, v bool) {
		attrs[resourceapi.QualifiedName(name)] = resourceapi.DeviceAttribute{BoolValue: ptr.To(v)}
	}
	str(AttrClass, d.Class)
	str(AttrVendor, d.Vendor)
	str(AttrModel, d.Model)
	str(AttrDriver, d.Driver)
	if v, ok := Semver(d.DriverVersion); ok {
		attrs[AttrDriverVersion] = resourceapi.DeviceAttribute{VersionValue: ptr.To(v)}
	}
	str(AttrUUID, d.UUID)
	for _, n := range d.Nodes {
		base := filepath.Base(n.Path)
		for prefix, name := range map[string]string{"card": AttrCardMinor, "renderD": AttrRenderMinor, "nvidia": AttrNVIDIAMinor} {
			if nr, err := strconv.ParseInt(strings.TrimPrefix(base, prefix), 10, 64); err == nil && strings.HasPrefix(base, prefix) {
				num(name, nr)
			}
		}
	}
	if d.Media != nil {
		boolean(AttrVideoEncode, d.Media.Encode)
		boolean(AttrVideoDecode, d.Media.Decode)
	}
	switch d.Class {
	case devices.ClassFPGA:
		str(AttrPort, d.Attrs["port"])
		str(AttrInterfaceID, d.Attrs["interface_id"])
		str(AttrAFUID, d.Attrs["afu_id"])
		str(AttrFeatureIDs, d.Attrs["feature_ids"])
	case devices.ClassStatic:
		str(AttrName, d.Name)
		if len(d.Nodes) > 0 {
			str(AttrPath, d.Nodes[0].Path)
		}
	}
	if pci := pciAddress(d.PCI); pci != "" {
		for _, a := range o.pciAttributes(pci) {
			attrs[a.Name] = a.Value
		}
	}
	out := resourceapi.Device{Name: DeviceName(d), Attributes: attrs}
	if d.Memory > 0 && d.Memory <= 1<<62 {
		out.Capacity = map[resourceapi.QualifiedName]resourceapi.DeviceCapacity{
			CapacityMemory: {Value: *resource.NewQuantity(int64(d.Memory), resource.BinarySI)},
		}
	}
	if n := o.shares[d.Class]; n > 1 {
		shareable(&out, int64(n))
	}
	if d.Health != devices.Healthy {
		out.Taints = []resourceapi.DeviceTaint{{
			Key: TaintUnhealthy, Value: string(devices.Unhealthy), Effect: resourceapi.DeviceTaintEffectNoSchedule,
		}}
	}
	return out
}

// shareable lets dev be allocated to up to n claims: a capacity "shares"
// of n, 1 per claim unless a claim asks for more (up to all n: exclusive),
// and memory a claim does not ask for is 0 (without a policy the
// scheduler would count a claim as taking all of it, and no second claim
// would fit).
func shareable(dev *resourceapi.Device, n int64) {
	dev.AllowMultipleAllocations = ptr.To(true)
	if dev.Capacity == nil {
		dev.Capacity = map[resourceapi.QualifiedName]resourceapi.DeviceCapacity{}
	}
	one, all := resource.NewQuantity(1, resource.DecimalSI), resource.NewQuantity(n, resource.DecimalSI)
	dev.Capacity[CapacityShares] = resourceapi.DeviceCapacity{
		Value: *all,
		RequestPolicy: &resourceapi.CapacityRequestPolicy{
			Default:    one,
			ValidRange: &resourceapi.CapacityRequestPolicyRange{Min: one, Max: all, Step: one},
		},
	}
	if mem, ok := dev.Capacity[CapacityMemory]; ok {
		zero := resource.NewQuantity(0, resource.BinarySI)
		mem.RequestPolicy = &resourceapi.CapacityRequestPolicy{
			Default:    zero,
			ValidRange: &resourceapi.CapacityRequestPolicyRange{Min: zero, Max: ptr.To(mem.Value.DeepCopy())},
		}
		dev.Capacity[CapacityMemory] = mem
	}
}

// pciAttributes are the standard attributes of a PCI device: pciBusID
// always; pcieRoot and numaNode when a sysfs root is set and the kernel's
// /sys/bus/pci/devices/<addr> says (a device without NUMA affinity has no
// numaNode).
func (o *options) pciAttributes(pci string) []deviceattribute.DeviceAttribute {
	id, err := deviceattribute.GetPCIBusIDAttribute(pci)
	if err != nil {
		return nil
	}
	out := []deviceattribute.DeviceAttribute{id}
	if o.sysfsRoot == "" {
		return out
	}
	fs := deviceattribute.WithFSFromRoot(o.sysfsRoot)
	if root, err := deviceattribute.GetPCIeRootAttributeByPCIBusID(pci, fs); err == nil {
		out = append(out, root)
	}
	if numa, err := deviceattribute.GetNUMANodeAttributeByPCIBusID(pci, deviceattribute.ScalarAttribute, fs); err == nil {
		out = append(out, numa)
	}
	return out
}

var pciRE = regexp.MustCompile(`^([0-9a-f]{4,8}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$`)

// pciAddress is a PCI address in the standard attribute's form
// (DDDD:BB:DD.F, lower case); NVML's 8-digit domains are shortened. "" if
// s is none.
func pciAddress(s string) string {
	m := pciRE.FindStringSubmatch(strings.ToLower(s))
	if m == nil {
		return ""
	}
	dom := strings.TrimLeft(m[1], "0")
	if len(dom) > 4 {
		return ""
	}
	return strings.Repeat("0", 4-len(dom)) + dom + ":" + m[2] + ":" + m[3] + "." + m[4]
}

// Semver is a driver version as a semantic version, the form a version
// attribute must have: a valid one as it is, else its numeric release with
// leading zeros dropped and missing parts zero (NVIDIA's "535.104.05" is
// 535.104.5, "550.54" 550.54.0). ok is false for anything else.
func Semver(v string) (string, bool) {
	if v == "" || len(v) > resourceapi.DeviceAttributeMaxValueLength {
		return "", false
	}
	if _, err := semver.Parse(v); err == nil {
		return v, true
	}
	parts := strings.Split(v, ".")
	if len(parts) > 3 {
		return "", false
	}
	for len(parts) < 3 {
		parts = append(parts, "0")
	}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return "", false
		}
		parts[i] = strconv.FormatUint(n, 10)
	}
	return strings.Join(parts, "."), true
}
