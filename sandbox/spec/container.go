package spec

import (
	"fmt"

	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Container is what an app container's spec is built from: the CRI configs
// and what the core decided for this container.
type Container struct {
	ID        string
	SandboxID string
	PodConfig *runtimeapi.PodSandboxConfig
	Config    *runtimeapi.ContainerConfig
	// Image is the container image's config; ImageName the reference the
	// container was created with (annotation).
	Image     ocispec.ImageConfig
	ImageName string
	// SandboxPID is the pause task's pid: the container joins its
	// namespaces through /proc/<pid>/ns/* (ipc, uts, pid when POD).
	SandboxPID uint32
	// Pinned are the namespaces of a pod without a pause process.
	Pinned Pinned
	// TargetPID is the pid of the target container for NamespaceMode_TARGET.
	TargetPID uint32
	// NetNSPath is the pod's network namespace; "" for host network pods.
	NetNSPath string
	// Pod files bind-mounted into each container (unless the container
	// mounts something at that path itself). ShmPath is "" for pods that
	// share the host IPC namespace (the host /dev/shm is used then).
	HostnamePath, HostsPath, ResolvPath, ShmPath string
	// CgroupsPath is the container's cgroup.
	CgroupsPath string
	// Handler is the pod's runtime handler.
	Handler Handler
	// PassedAnnotations are the pod and container annotations the handler
	// lets into the OCI spec; the CRI annotations win.
	PassedAnnotations map[string]string
}

// Plan is an app container's spec, checked, whose host side the core
// prepares before the spec is applied: the sources of its bind mounts and
// the AppArmor profile it uses.
type Plan struct {
	binds    []*Bind
	appArmor string
	opts     []oci.SpecOpts
}

// Binds are the container's bind mounts; the core gives each its Source
// (and LayersIDMapped) before the options are applied.
func (p *Plan) Binds() []*Bind { return p.binds }

// AppArmorProfile is accel-cri's default AppArmor profile when the spec
// uses it, for the core to load first (apparmor.LoadDefaultProfile); ""
// otherwise.
func (p *Plan) AppArmorProfile() string { return p.appArmor }

// Opts are the spec options, to be applied on containerd's default spec
// (containerd.WithNewSpec) after the container's snapshot exists
// (containerd.WithNewSnapshot): users and groups are looked up in the
// image's /etc/passwd and /etc/group. The last one keeps the finished spec
// in *dst (when dst is not nil), so the core has the spec containerd
// stores without reading it back.
func (p *Plan) Opts(dst **runtimespec.Spec) []oci.SpecOpts {
	opts := append([]oci.SpecOpts(nil), p.opts...)
	return append(opts, record(dst))
}

// Container checks an app container's request and plans its spec. It
// checks everything it can and changes nothing on the host.
func (b *Builder) Container(p Container) (*Plan, error) {
	cfg := p.Config
	sc := cfg.GetLinux().GetSecurityContext()
	podSC := p.PodConfig.GetLinux().GetSecurityContext()
	privileged := sc.GetPrivileged()
	if privileged && !podSC.GetPrivileged() {
		return nil, fmt.Errorf("%w: a privileged container needs a privileged pod", errdefs.ErrInvalidArgument)
	}

	hostname, err := b.podHostname(p.PodConfig)
	if err != nil {
		return nil, err
	}
	process, err := withContainerProcess(cfg, p.Image, hostname)
	if err != nil {
		return nil, err
	}
	user, err := withContainerUser(sc, p.Image)
	if err != nil {
		return nil, err
	}
	nss, err := containerNamespaces(podSC.GetNamespaceOptions(), sc.GetNamespaceOptions(), p.NetNSPath, p.SandboxPID, p.Pinned, p.TargetPID)
	if err != nil {
		return nil, err
	}
	if b.host.CgroupV2 && !privileged {
		// A cgroup namespace hides the host's cgroup tree (containerd does
		// the same on v2; on v1 it breaks tools that expect the full tree).
		nss = append(nss, runtimespec.LinuxNamespace{Type: runtimespec.CgroupNamespace})
	}
	userns, err := containerUsernsOpt(podSC.GetNamespaceOptions().GetUsernsOptions(), sc.GetNamespaceOptions().GetUsernsOptions(), p.SandboxPID, p.Handler.UserNamespaces)
	if err != nil {
		return nil, err
	}
	binds, err := planMounts(p)
	if err != nil {
		return nil, err
	}
	devs, err := b.resolveDevices(cfg.GetDevices())
	if err != nil {
		return nil, err
	}
	cdiNames, err := cdiDeviceNames(cfg, b.host.CDI)
	if err != nil {
		return nil, err
	}
	var caps *runtimespec.LinuxCapabilities
	var hostDevs []runtimespec.LinuxDevice
	if privileged {
		// Privileged containers get all capabilities; the names must still
		// be valid.
		c := sc.GetCapabilities()
		for _, l := range []struct {
			field string
			names []string
		}{
			{"capabilities.add_capabilities", c.GetAddCapabilities()},
			{"capabilities.drop_capabilities", c.GetDropCapabilities()},
			{"capabilities.add_ambient_capabilities", c.GetAddAmbientCapabilities()},
		} {
			if _, err := capNames(l.field, l.names); err != nil {
				return nil, err
			}
		}
		if !p.Handler.NoHostDevices {
			if hostDevs, err = b.host.Devices(); err != nil {
				return nil, fmt.Errorf("list host devices: %w", err)
			}
		}
	} else if caps, err = containerCapabilities(sc.GetCapabilities(), b.host.Capabilities); err != nil {
		return nil, err
	}
	armor, armorProfile, err := appArmorOpt(sc, b.host.AppArmor)
	if err != nil {
		return nil, err
	}
	sec, err := b.seccompOpt("security_context.seccomp", sc.GetSeccomp(), sc.GetSeccompProfilePath(), privileged)
	if err != nil {
		return nil, err
	}
	res := cfg.GetLinux().GetResources()
	resources, err := b.withContainerResources(res)
	if err != nil {
		return nil, err
	}

	// The host's /sys goes before the binds: the cgroup mount goes below it.
	opts := baseOpts(process, user, nss, userns, podSC.GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE)
	opts = append(opts,
		withBindMounts(binds),
		withProcPaths(sc),
		withDevices(devs),
		withCDIDevices(b.host.CDI, cdiNames), // after the user: groups and node owners follow it
	)
	if b.host.DeviceOwnershipFromSecurityContext {
		opts = append(opts, withDeviceOwner(devs))
	}
	if privileged {
		// After mounts (cgroupfs rw) and devices.
		opts = append(opts, withPrivileged(b.host.Capabilities, hostDevs, !p.Handler.NoHostDevices))
	} else {
		opts = append(opts, withCapabilities(caps))
	}
	if armor != nil {
		opts = append(opts, armor)
	}
	opts = append(opts,
		withNoNewPrivileges(sc.GetNoNewPrivs()),
		withRootfsReadonly(sc.GetReadonlyRootfs()),
		withCgroupsPath(p.CgroupsPath),
		withOOMScoreAdj(int(res.GetOomScoreAdj()), b.host.OOM),
	)
	if resources != nil {
		opts = append(opts, resources)
	}
	if sec != nil {
		opts = append(opts, sec) // after the capabilities: the default profile reads them
	}
	opts = append(opts, oci.WithAnnotations(containerAnnotations(p)))
	if p.Handler.SpecVersion != "" {
		opts = append(opts, withSpecVersion(p.Handler.SpecVersion))
	}
	return &Plan{binds: binds, appArmor: armorProfile, opts: opts}, nil
}
