// Package dra owns the translation of the devices accel-cri discovers into
// resource.k8s.io/v1 objects for Dynamic Resource Allocation: the DRA
// driver of each device class (drivers.go), the devices' names in their
// pool (names.go), their attributes, capacity and taints (device.go), and
// the per-driver resourceslice.DriverResources a kubelet plugin publishes
// (resources.go). It is pure: it touches nothing on the host except, when
// given a sysfs root, reading the PCI topology (pcieRoot, numaNode) through
// k8s.io/dynamic-resource-allocation/deviceattribute. It must not talk to
// the API server or kubelet, and must not import sandbox or cri.
//
// # Worked example
//
// A node "node-a" with an Intel Arc GPU (xe, 0000:03:00.0, card1,
// renderD129) and a DFL FPGA port (dfl-port.0 on 0000:08:00.0):
//
//	devs := manager.Devices() // present devices, then vanished ones (Unhealthy)
//	res, err := dra.Resources("node-a", devs, dra.WithSysfsRoot("/sys"))
//	// res["gpu.accel-cri.io"].Pools["node-a"].Slices[0].Devices[0]:
//	//   name: gpu-0000-03-00-0
//	//   attributes:
//	//     resource.kubernetes.io/pciBusID: {string: "0000:03:00.0"}
//	//     resource.kubernetes.io/pcieRoot: {string: "pci0000:00"}
//	//     resource.kubernetes.io/numaNode: {int: 0}      (when sysfs has one)
//	//     class: {string: intel-gpu}   vendor: {string: intel}
//	//     model: {string: "0x56a0"}    driver: {string: xe}
//	//     cardMinor: {int: 1}          renderMinor: {int: 129}
//	// res["fpga.accel-cri.io"].Pools["node-a"].Slices[0].Devices[0]:
//	//   name: fpga-0000-08-00-0-dfl-port-0
//	//   attributes: port: dfl-port.0, interfaceID (the FME's), afuID,
//	//     featureIDs, pciBusID, pcieRoot, class, vendor, driver
//	// res["device.accel-cri.io"]: one pool with one empty slice (no
//	//   static devices: the driver runs and has nothing to offer)
//
// An NVIDIA GPU also has uuid, nvidiaMinor, driverVersion (a version:
// NVML's "535.104.05" becomes 535.104.5), videoEncode/videoDecode and the
// capacity memory; an amdgpu GPU memory (VRAM); an Intel GPU whose driver
// lists its engines videoEncode/videoDecode.
//
// A vanished device keeps its entry with the taint accel-cri.io/unhealthy
// (NoSchedule), so the scheduler stops allocating it and claims that
// tolerate the taint still see it. The DeviceClasses in deploy/dra select
// these devices by driver and attributes (their tests evaluate the CEL
// selectors against Resources' output with the scheduler's compiler).
package dra
