package nri

import (
	"maps"
	"slices"
	"time"

	"github.com/containerd/nri/pkg/api"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Pod is what plugins are told about a pod sandbox. The runtime fills it
// from its own records; nothing here reads the host.
type Pod struct {
	ID             string
	Config         *runtimeapi.PodSandboxConfig
	RuntimeHandler string
	// CgroupsPath is the pod's own cgroup (the pause's, or where it would be).
	CgroupsPath string
	// Namespaces are the pod's namespaces by path: the network namespace,
	// and the UTS and IPC namespaces a pause holds or accel-cri pinned.
	Namespaces []rspec.LinuxNamespace
	// PID is the pause process (0: the pod has none, or it exited).
	PID uint32
	IPs []string
	// Overhead and Resources are the pod-level resources kubelet last set
	// (UpdatePodSandboxResources); nil: those of the config.
	Overhead, Resources *runtimeapi.LinuxContainerResources
}

// Container is what plugins are told about a container.
type Container struct {
	ID, PodID string
	Config    *runtimeapi.ContainerConfig
	// Spec is the container's OCI spec (nil: unknown; plugins then see no
	// process, mounts or Linux details).
	Spec  *rspec.Spec
	State runtimeapi.ContainerState
	PID   uint32

	CreatedAt, StartedAt, FinishedAt time.Time
	ExitCode                         int32
	Reason, Message                  string

	// ImageName is the image as the CRI named it, ImageRef its digest
	// reference and ImageID its config digest.
	ImageName, ImageRef, ImageID string
}

// toPod is p in NRI's form.
func toPod(p Pod) *api.PodSandbox {
	md := p.Config.GetMetadata()
	overhead, resources := p.Overhead, p.Resources
	if overhead == nil {
		overhead = p.Config.GetLinux().GetOverhead()
	}
	if resources == nil {
		resources = p.Config.GetLinux().GetResources()
	}
	out := &api.PodSandbox{
		Id:             p.ID,
		Name:           md.GetName(),
		Uid:            md.GetUid(),
		Namespace:      md.GetNamespace(),
		Labels:         cloneOrEmpty(p.Config.GetLabels()),
		Annotations:    cloneOrEmpty(p.Config.GetAnnotations()),
		RuntimeHandler: p.RuntimeHandler,
		Linux: &api.LinuxPodSandbox{
			PodOverhead:  fromCRIResources(overhead),
			PodResources: fromCRIResources(resources),
			CgroupParent: p.Config.GetLinux().GetCgroupParent(),
			CgroupsPath:  p.CgroupsPath,
			Namespaces:   api.FromOCILinuxNamespaces(p.Namespaces),
		},
		Pid: p.PID,
		Ips: slices.Clone(p.IPs),
	}
	return out
}

// containerStates maps the CRI's container states to NRI's.
var containerStates = map[runtimeapi.ContainerState]api.ContainerState{
	runtimeapi.ContainerState_CONTAINER_CREATED: api.ContainerState_CONTAINER_CREATED,
	runtimeapi.ContainerState_CONTAINER_RUNNING: api.ContainerState_CONTAINER_RUNNING,
	runtimeapi.ContainerState_CONTAINER_EXITED:  api.ContainerState_CONTAINER_STOPPED,
	runtimeapi.ContainerState_CONTAINER_UNKNOWN: api.ContainerState_CONTAINER_UNKNOWN,
}

// toContainer is c in NRI's form. Labels and annotations are the CRI
// config's, with the spec's annotations (which carry the CRI grouping
// annotations and any passed to the handler) under them.
func toContainer(c Container) *api.Container {
	annotations := map[string]string{}
	if c.Spec != nil {
		maps.Copy(annotations, c.Spec.Annotations)
	}
	maps.Copy(annotations, c.Config.GetAnnotations())
	out := &api.Container{
		Id:            c.ID,
		PodSandboxId:  c.PodID,
		Name:          c.Config.GetMetadata().GetName(),
		State:         containerStates[c.State],
		Labels:        cloneOrEmpty(c.Config.GetLabels()),
		Annotations:   annotations,
		Pid:           c.PID,
		CreatedAt:     unixNano(c.CreatedAt),
		StartedAt:     unixNano(c.StartedAt),
		FinishedAt:    unixNano(c.FinishedAt),
		ExitCode:      c.ExitCode,
		StatusReason:  c.Reason,
		StatusMessage: c.Message,
	}
	for _, d := range c.Config.GetCDIDevices() {
		out.CDIDevices = append(out.CDIDevices, &api.CDIDevice{Name: d.GetName()})
	}
	if c.ImageName != "" || c.ImageRef != "" || c.ImageID != "" {
		out.Image = &api.Image{Name: c.ImageName, Digest: c.ImageRef, ConfigDigest: c.ImageID}
	}
	s := c.Spec
	if s == nil {
		return out
	}
	out.Mounts = api.FromOCIMounts(s.Mounts)
	out.Hooks = api.FromOCIHooks(s.Hooks)
	if p := s.Process; p != nil {
		out.Args = slices.Clone(p.Args)
		out.Env = slices.Clone(p.Env)
		for _, l := range p.Rlimits {
			out.Rlimits = append(out.Rlimits, &api.POSIXRlimit{Type: l.Type, Hard: l.Hard, Soft: l.Soft})
		}
		out.User = &api.User{Uid: p.User.UID, Gid: p.User.GID, AdditionalGids: slices.Clone(p.User.AdditionalGids)}
	}
	out.Linux = toLinuxContainer(c, s)
	return out
}

func toLinuxContainer(c Container, s *rspec.Spec) *api.LinuxContainer {
	l := &api.LinuxContainer{}
	if p := s.Process; p != nil {
		l.OomScoreAdj = api.Int(p.OOMScoreAdj)
		l.IoPriority = api.FromOCILinuxIOPriority(p.IOPriority)
		if p.Scheduler != nil {
			l.Scheduler = api.FromOCILinuxScheduler(p.Scheduler)
		}
	}
	if sp := c.Config.GetLinux().GetSecurityContext().GetSeccomp(); sp != nil {
		l.SeccompProfile = &api.SecurityProfile{
			ProfileType:  api.SecurityProfile_ProfileType(sp.GetProfileType()),
			LocalhostRef: sp.GetLocalhostRef(),
		}
	}
	x := s.Linux
	if x == nil {
		return l
	}
	l.Namespaces = api.FromOCILinuxNamespaces(x.Namespaces)
	l.Devices = api.FromOCILinuxDevices(x.Devices)
	l.Resources = api.FromOCILinuxResources(x.Resources, s.Annotations)
	l.CgroupsPath = x.CgroupsPath
	if len(x.Sysctl) > 0 {
		l.Sysctl = maps.Clone(x.Sysctl)
	}
	if len(x.NetDevices) > 0 {
		l.NetDevices = api.FromOCILinuxNetDevices(x.NetDevices)
	}
	if x.Seccomp != nil {
		l.SeccompPolicy = api.FromOCILinuxSeccomp(x.Seccomp)
	}
	if r := x.IntelRdt; r != nil {
		l.Rdt = &api.LinuxRdt{
			ClosId:           api.String(r.ClosID),
			Schemata:         api.RepeatedString(r.Schemata),
			EnableMonitoring: api.Bool(r.EnableMonitoring),
		}
	}
	return l
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func cloneOrEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return maps.Clone(m)
}
