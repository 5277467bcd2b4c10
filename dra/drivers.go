package dra

import "github.com/accel-cri/accel-cri/devices"

// DRA driver names, one per kind of device. A driver is one kubelet plugin
// (its own socket and registration) and one set of ResourceSlices; the
// GPUs of all vendors share one driver because a claim for "a GPU" should
// be able to take any of them, and their vendor is an attribute.
const (
	// DriverGPU serves every GPU: NVIDIA (NVML), Intel and AMD (DRM), and
	// other DRM devices.
	DriverGPU = "gpu.accel-cri.io"
	// DriverFPGA serves FPGA ports (DFL and intel-fpga).
	DriverFPGA = "fpga.accel-cri.io"
	// DriverStatic serves the devices named in the config
	// ([[devices.static]]): arbitrary nodes accel-cri knows nothing about
	// beyond their name and path.
	DriverStatic = "device.accel-cri.io"
)

// Drivers are all drivers, in the order Resources reports them.
var Drivers = []string{DriverGPU, DriverFPGA, DriverStatic}

// Driver is the DRA driver of a device class ("" for an unknown class).
func Driver(class string) string {
	switch class {
	case devices.ClassNVIDIA, devices.ClassIntelGPU, devices.ClassAMDGPU, devices.ClassDRMGPU:
		return DriverGPU
	case devices.ClassFPGA:
		return DriverFPGA
	case devices.ClassStatic:
		return DriverStatic
	}
	return ""
}
