// Package devices owns accel-cri's accelerators: discovery (NVIDIA GPUs
// through NVML, DRM GPUs from /sys/class/drm, FPGAs from DFL sysfs (class
// fpga_region, the platform and DFL buses) and intel-fpga sysfs, static
// devices from the config), publishing them as CDI specs (vendor
// accel-cri.io), resolving and injecting CDI devices into
// containers' OCI specs (Injector), the ownership of a container's device
// nodes (OwnNodes, for CDI and CRI devices alike), and the kubelet
// device-plugin API (Plugins). It must not edit OCI specs outside the CDI
// injection and node ownership; sandbox/spec calls both from its spec
// options, and resolves CRI device paths through ResolveNode.
//
// Every root (sysfs, /dev, the NVML library, the ld cache, the CDI spec
// directory) is an Option, so tests run the production code against fake
// trees (see devicetest).
//
// # Worked example
//
// A host with an Intel iGPU (i915, 0000:00:02.0: card0, renderD128) and a
// discrete Arc GPU (xe, 0000:03:00.0: card1, renderD129):
//
//	m := devices.New(devices.WithCDIDir("/var/run/cdi"))
//	if err := m.Refresh(); err != nil { ... } // discovery errors; found devices are published anyway
//	go m.Watch(ctx)                           // udev adding/removing /dev nodes → Refresh
//
// Refresh writes /var/run/cdi/accel-cri.io-intel-gpu.json with the devices
// "0", "0000:00:02.0", "1", "0000:03:00.0" and "all". Device "1" is:
//
//	{"name": "1", "containerEdits": {
//	  "deviceNodes": [
//	    {"path": "/dev/dri/card1", "hostPath": "/dev/dri/card1", "type": "c", "major": 226, "minor": 1,
//	     "fileMode": 432, "permissions": "rw", "uid": 0, "gid": 44},
//	    {"path": "/dev/dri/renderD129", "hostPath": "/dev/dri/renderD129", "type": "c", "major": 226, "minor": 129,
//	     "fileMode": 432, "permissions": "rw", "uid": 0, "gid": 993}],
//	  "additionalGids": [44, 993]}}
//
// A container asks for it by CDI name (CRI cdi_devices, or a cdi.k8s.io/*
// annotation such as the device plugin's Allocate returns):
//
//	inj, _ := devices.NewInjector([]string{"/etc/cdi", "/var/run/cdi"})
//	names, _ := devices.Names([]string{"accel-cri.io/intel-gpu=1"}, annotations)
//	err := inj.Inject(spec, names) // spec: the container's OCI spec, user already set
//
// The container then has exactly /dev/dri/card0 (226:1) and
// /dev/dri/renderD128 (226:129) — DRM nodes are renumbered in request
// order, so VAAPI and QSV find the GPU at their default renderD128 — device
// cgroup rules "c 226:1 rw" and "c 226:129 rw" after runc's defaults, and
// the supplemental groups 44 (video) and 993 (render), so a non-root
// process can open them. An unknown name fails with errdefs.ErrNotFound
// naming any spec file that could not be read.
//
// The daemon builds its Injector WithRegistry(m): accel-cri.io names are
// then resolved by m.ResolveCDI from the devices m has now, with the same
// edits Spec writes into the files, so a deleted or stale spec file does
// not matter to accel-cri's own containers; a device that vanished fails
// with errdefs.ErrFailedPrecondition naming it, and only a name m does not
// know is looked up in the spec directories.
//
// NVIDIA GPUs are published as accel-cri.io/gpu=<index>|<UUID>|all with
// /dev/nvidiaN per device and, for the class, the control nodes
// (nvidiactl, nvidia-uvm, nvidia-uvm-tools, nvidia-modeset, nvidia-caps),
// the driver libraries of the configured capabilities (by default compute,
// utility and video: libcuda, libnvidia-ml, libnvidia-encode and libnvcuvid
// for NVENC/NVDEC; graphics adds the OpenGL/EGL/GLES/Vulkan libraries and
// their glvnd/Vulkan ICD files) bind-mounted read-only into
// /usr/local/nvidia/lib64 under their sonames, LD_LIBRARY_PATH pointing
// there (an image's own LD_LIBRARY_PATH is kept after it),
// NVIDIA_VISIBLE_DEVICES (the requested UUIDs) and
// NVIDIA_DRIVER_CAPABILITIES (the configured capabilities, by default
// compute,utility,video).
package devices
