package sandbox

import (
	"fmt"

	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// containerSpecOpts builds an app container's spec options, to be applied
// on containerd's default spec (containerd.WithNewSpec) after the
// container's snapshot exists (containerd.WithNewSnapshot): users and groups
// may be looked up in the image's /etc/passwd and /etc/group.
//
// Building the options checks everything it can first; its only host side
// effect, last, is creating missing host paths of CRI mounts (as containerd
// does). Applying them reads the rootfs and /dev (privileged containers).
func containerSpecOpts(p containerSpecParams) ([]oci.SpecOpts, error) {
	cfg := p.Config
	sc := cfg.GetLinux().GetSecurityContext()
	podSC := p.PodConfig.GetLinux().GetSecurityContext()
	privileged := sc.GetPrivileged()
	if privileged && !podSC.GetPrivileged() {
		return nil, fmt.Errorf("%w: a privileged container needs a privileged pod", errdefs.ErrInvalidArgument)
	}

	hostname, err := podHostname(p.PodConfig)
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
	if p.CgroupV2 && !privileged {
		// A cgroup namespace hides the host's cgroup tree (containerd does
		// the same on v2; on v1 it breaks tools that expect the full tree).
		nss = append(nss, runtimespec.LinuxNamespace{Type: runtimespec.CgroupNamespace})
	}
	userns, err := containerUsernsOpt(podSC.GetNamespaceOptions().GetUsernsOptions(), sc.GetNamespaceOptions().GetUsernsOptions(), p.SandboxPID, p.UsernsSupported)
	if err != nil {
		return nil, err
	}
	binds, err := planContainerMounts(p)
	if err != nil {
		return nil, err
	}
	devs, err := resolveDevices(cfg.GetDevices())
	if err != nil {
		return nil, err
	}
	cdiNames, err := cdiDeviceNames(cfg, p.CDI)
	if err != nil {
		return nil, err
	}
	var caps *runtimespec.LinuxCapabilities
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
	} else if caps, err = containerCapabilities(sc.GetCapabilities()); err != nil {
		return nil, err
	}
	armor, err := appArmorOpt(sc, p.AppArmorEnabled)
	if err != nil {
		return nil, err
	}
	sec, err := seccompOpt("security_context.seccomp", sc.GetSeccomp(), sc.GetSeccompProfilePath(), privileged)
	if err != nil {
		return nil, err
	}
	res := cfg.GetLinux().GetResources()
	resources, err := withContainerResources(res, resourceFacts{cgroupV2: p.CgroupV2, swap: p.SwapAvailable, hugetlb: p.HugetlbAvailable})
	if err != nil {
		return nil, err
	}
	// Last: the only step that changes the host.
	if err := resolveMountSources(binds, privileged); err != nil {
		return nil, err
	}

	opts := []oci.SpecOpts{
		withCRIBase(),
		process,
		user,
		withNamespaces(nss),
	}
	if userns != nil {
		opts = append(opts, userns)
		if podSC.GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE {
			opts = append(opts, withHostSys()) // before the binds: the cgroup mount goes below it
		}
	}
	opts = append(opts,
		withBindMounts(binds),
		withProcPaths(sc),
		withDevices(devs),
		withCDIDevices(p.CDI, cdiNames), // after the user: groups and node owners follow it
	)
	if p.DeviceOwnershipFromSecurityContext {
		opts = append(opts, withDeviceOwner(devs))
	}
	if privileged {
		opts = append(opts, withPrivileged(!p.NoHostDevices)) // after mounts (cgroupfs rw) and devices
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
		withOOMScoreAdj(int(res.GetOomScoreAdj()), p.OOM),
	)
	if resources != nil {
		opts = append(opts, resources)
	}
	if sec != nil {
		opts = append(opts, sec) // after the capabilities: the default profile reads them
	}
	opts = append(opts, oci.WithAnnotations(containerAnnotations(p)))
	return opts, nil
}
