package sandbox

import (
	"fmt"
	"io"
	"os"

	"github.com/containerd/containerd/v2/contrib/apparmor"
	"github.com/containerd/containerd/v2/pkg/cap"
	"github.com/containerd/containerd/v2/pkg/oci"

	"github.com/accel-cri/accel-cri/devices"
	"github.com/accel-cri/accel-cri/sandbox/spec"
)

// This file connects the runtime to sandbox/spec, which builds the OCI
// specs: the host facts the builder gets once, the handler's part of a
// spec, and the host side of a container's spec that the builder leaves to
// the runtime.

// CDIInjector resolves and applies CDI devices (devices.Injector).
type CDIInjector = spec.CDIInjector

// WithCDI sets the CDI injector; without one, containers that ask for CDI
// devices are refused.
func WithCDI(inj CDIInjector) Option { return func(r *Runtime) { r.cdi = inj } }

// WithDeviceOwnershipFromSecurityContext makes the device nodes of CRI
// devices owned by the container process's uid and gid instead of the host
// node's (containerd's device_ownership_from_security_context). The CDI
// injector has the same switch for CDI devices.
func WithDeviceOwnershipFromSecurityContext(on bool) Option {
	return func(r *Runtime) { r.deviceOwnershipFromSC = on }
}

// devRoot is where CRI device host paths must resolve to.
const devRoot = "/dev"

// newSpecBuilder returns the spec builder of this host, from the facts New
// found, and the real host's lookups.
func (r *Runtime) newSpecBuilder() (*spec.Builder, error) {
	caps, err := cap.Current()
	if err != nil {
		return nil, fmt.Errorf("read accel-cri's capabilities: %w", err)
	}
	h := spec.Host{
		Capabilities:                       caps,
		AppArmor:                           r.appArmor,
		CgroupV2:                           r.cgroupHost.V2(),
		Swap:                               r.cgroupHost.SwapAccounting,
		Hugetlb:                            r.cgroupHost.Hugetlb,
		CDI:                                r.cdi,
		DeviceOwnershipFromSecurityContext: r.deviceOwnershipFromSC,
		Hostname:                           os.Hostname,
		DeviceNode: func(p string) (string, devices.NodeInfo, error) {
			return devices.ResolveNode(devRoot, p)
		},
		Devices: oci.HostDevices,
		Open:    func(p string) (io.ReadCloser, error) { return os.Open(p) },
	}
	if r.oom != nil {
		h.OOM = r.oom
	}
	return spec.New(h), nil
}

// specHandler is what a spec needs of handler h, named name (the pod's
// RuntimeHandler).
func specHandler(name string, h *handler) spec.Handler {
	return spec.Handler{
		Name:                name,
		SpecVersion:         h.specVersion,
		UserNamespaces:      h.features.UserNamespaces,
		MountOptions:        h.features.MountOptions,
		SandboxPerContainer: h.sandboxPerContainer,
		NoHostDevices:       h.privilegedWithoutHostDevices,
	}
}

// prepareSpecHost makes what a container's spec needs on the host before
// the image volumes are mounted: its host paths resolved (missing CRI host
// paths created, as containerd does) and the default AppArmor profile
// loaded. It is the first change to the host: the plan checked everything
// it could.
func prepareSpecHost(plan *spec.Plan, privileged bool) error {
	if err := resolveMountSources(plan.Binds(), privileged); err != nil {
		return err
	}
	if name := plan.AppArmorProfile(); name != "" {
		if err := apparmor.LoadDefaultProfile(name); err != nil {
			return fmt.Errorf("load AppArmor profile %s: %w", name, err)
		}
	}
	return nil
}

// bindImageVolumes gives the binds of image volumes the mounts of vols.
func bindImageVolumes(binds []*spec.Bind, vols []*imageVolume) {
	for _, b := range binds {
		if !b.ImageVolume {
			continue
		}
		for _, v := range vols {
			if v.Mount == b.Mount {
				b.Source, b.LayersIDMapped = v.Source, v.mappedLayers
			}
		}
	}
}
