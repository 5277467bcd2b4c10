package nri

import (
	"fmt"
	"slices"
	"strings"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// specGen is the plain OCI spec editor NRI's adjustment generator
// (github.com/containerd/nri/pkg/runtime-tools/generate) works through. It
// edits the spec in place, which the generator also reads and writes
// directly, so both see one spec. containerd keeps an editor of its own for
// the same reason: runtime-tools' generator would be a dependency for a few
// dozen setters.
type specGen struct{ s *rspec.Spec }

func (g *specGen) Spec() *rspec.Spec { return g.s }

func (g *specGen) process() *rspec.Process {
	if g.s.Process == nil {
		g.s.Process = &rspec.Process{}
	}
	return g.s.Process
}

func (g *specGen) linux() *rspec.Linux {
	if g.s.Linux == nil {
		g.s.Linux = &rspec.Linux{}
	}
	return g.s.Linux
}

func (g *specGen) resources() *rspec.LinuxResources {
	l := g.linux()
	if l.Resources == nil {
		l.Resources = &rspec.LinuxResources{}
	}
	return l.Resources
}

func (g *specGen) cpu() *rspec.LinuxCPU {
	r := g.resources()
	if r.CPU == nil {
		r.CPU = &rspec.LinuxCPU{}
	}
	return r.CPU
}

func (g *specGen) memory() *rspec.LinuxMemory {
	r := g.resources()
	if r.Memory == nil {
		r.Memory = &rspec.LinuxMemory{}
	}
	return r.Memory
}

func (g *specGen) hooks() *rspec.Hooks {
	if g.s.Hooks == nil {
		g.s.Hooks = &rspec.Hooks{}
	}
	return g.s.Hooks
}

func (g *specGen) AddAnnotation(key, value string) {
	if g.s.Annotations == nil {
		g.s.Annotations = map[string]string{}
	}
	g.s.Annotations[key] = value
}

func (g *specGen) RemoveAnnotation(key string) { delete(g.s.Annotations, key) }

// AddDevice adds a device node, replacing one at the same path.
func (g *specGen) AddDevice(d rspec.LinuxDevice) {
	l := g.linux()
	if i := slices.IndexFunc(l.Devices, func(o rspec.LinuxDevice) bool { return o.Path == d.Path }); i >= 0 {
		l.Devices[i] = d
		return
	}
	l.Devices = append(l.Devices, d)
}

func (g *specGen) RemoveDevice(path string) {
	if g.s.Linux == nil {
		return
	}
	g.s.Linux.Devices = slices.DeleteFunc(g.s.Linux.Devices, func(d rspec.LinuxDevice) bool { return d.Path == path })
}

// namespaceTypes are the namespace names NRI uses (the OCI ones).
var namespaceTypes = []rspec.LinuxNamespaceType{
	rspec.PIDNamespace, rspec.NetworkNamespace, rspec.MountNamespace, rspec.IPCNamespace,
	rspec.UTSNamespace, rspec.UserNamespace, rspec.CgroupNamespace, rspec.TimeNamespace,
}

func namespaceType(ns string) (rspec.LinuxNamespaceType, error) {
	if t := rspec.LinuxNamespaceType(ns); slices.Contains(namespaceTypes, t) {
		return t, nil
	}
	return "", fmt.Errorf("unknown namespace type %q", ns)
}

func (g *specGen) AddOrReplaceLinuxNamespace(ns, path string) error {
	t, err := namespaceType(ns)
	if err != nil {
		return err
	}
	l := g.linux()
	if i := slices.IndexFunc(l.Namespaces, func(n rspec.LinuxNamespace) bool { return n.Type == t }); i >= 0 {
		l.Namespaces[i].Path = path
		return nil
	}
	l.Namespaces = append(l.Namespaces, rspec.LinuxNamespace{Type: t, Path: path})
	return nil
}

func (g *specGen) RemoveLinuxNamespace(ns string) error {
	t, err := namespaceType(ns)
	if err != nil {
		return err
	}
	if g.s.Linux != nil {
		g.s.Linux.Namespaces = slices.DeleteFunc(g.s.Linux.Namespaces, func(n rspec.LinuxNamespace) bool { return n.Type == t })
	}
	return nil
}

func (g *specGen) AddPreStartHook(h rspec.Hook) {
	g.hooks().Prestart = append(g.hooks().Prestart, h) //nolint:staticcheck // NRI still offers prestart hooks
}

func (g *specGen) AddPostStartHook(h rspec.Hook) {
	g.hooks().Poststart = append(g.hooks().Poststart, h)
}

func (g *specGen) AddPostStopHook(h rspec.Hook) {
	g.hooks().Poststop = append(g.hooks().Poststop, h)
}

// AddProcessEnv sets name=value, replacing an earlier value of name.
func (g *specGen) AddProcessEnv(name, value string) {
	if name == "" {
		return
	}
	p := g.process()
	kv := name + "=" + value
	if i := slices.IndexFunc(p.Env, func(e string) bool { return strings.HasPrefix(e, name+"=") }); i >= 0 {
		p.Env[i] = kv
		return
	}
	p.Env = append(p.Env, kv)
}

func (g *specGen) ClearProcessEnv() {
	if g.s.Process != nil {
		g.s.Process.Env = []string{}
	}
}

func (g *specGen) SetProcessArgs(args []string) { g.process().Args = slices.Clone(args) }

func (g *specGen) SetProcessOOMScoreAdj(adj int) { g.process().OOMScoreAdj = &adj }

func (g *specGen) AddLinuxResourcesDevice(allow bool, devType string, major, minor *int64, access string) {
	r := g.resources()
	r.Devices = append(r.Devices, rspec.LinuxDeviceCgroup{Allow: allow, Type: devType, Major: major, Minor: minor, Access: access})
}

// AddLinuxResourcesHugepageLimit sets the limit of one page size.
func (g *specGen) AddLinuxResourcesHugepageLimit(pageSize string, limit uint64) {
	r := g.resources()
	if i := slices.IndexFunc(r.HugepageLimits, func(h rspec.LinuxHugepageLimit) bool { return h.Pagesize == pageSize }); i >= 0 {
		r.HugepageLimits[i].Limit = limit
		return
	}
	r.HugepageLimits = append(r.HugepageLimits, rspec.LinuxHugepageLimit{Pagesize: pageSize, Limit: limit})
}

func (g *specGen) AddLinuxResourcesUnified(key, val string) {
	r := g.resources()
	if r.Unified == nil {
		r.Unified = map[string]string{}
	}
	r.Unified[key] = val
}

func (g *specGen) AddMount(m rspec.Mount) { g.s.Mounts = append(g.s.Mounts, m) }

func (g *specGen) RemoveMount(dest string) {
	g.s.Mounts = slices.DeleteFunc(g.s.Mounts, func(m rspec.Mount) bool { return m.Destination == dest })
}

func (g *specGen) ClearMounts() { g.s.Mounts = []rspec.Mount{} }

func (g *specGen) Mounts() []rspec.Mount { return g.s.Mounts }

func (g *specGen) AddLinuxSysctl(key, value string) {
	l := g.linux()
	if l.Sysctl == nil {
		l.Sysctl = map[string]string{}
	}
	l.Sysctl[key] = value
}

func (g *specGen) RemoveLinuxSysctl(key string) {
	if g.s.Linux != nil {
		delete(g.s.Linux.Sysctl, key)
	}
}

func (g *specGen) SetLinuxCgroupsPath(path string) { g.linux().CgroupsPath = path }

func (g *specGen) SetLinuxRootPropagation(rp string) error {
	switch rp {
	case "", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable":
	default:
		return fmt.Errorf("rootfs propagation %q is not one of (r)private, (r)slave, (r)shared, (r)unbindable", rp)
	}
	g.linux().RootfsPropagation = rp
	return nil
}

func (g *specGen) SetLinuxResourcesCPUCpus(cpus string)        { g.cpu().Cpus = cpus }
func (g *specGen) SetLinuxResourcesCPUMems(mems string)        { g.cpu().Mems = mems }
func (g *specGen) SetLinuxResourcesCPUPeriod(period uint64)    { g.cpu().Period = &period }
func (g *specGen) SetLinuxResourcesCPUQuota(quota int64)       { g.cpu().Quota = &quota }
func (g *specGen) SetLinuxResourcesCPUShares(shares uint64)    { g.cpu().Shares = &shares }
func (g *specGen) SetLinuxResourcesCPURealtimePeriod(p uint64) { g.cpu().RealtimePeriod = &p }
func (g *specGen) SetLinuxResourcesCPURealtimeRuntime(t int64) { g.cpu().RealtimeRuntime = &t }
func (g *specGen) SetLinuxResourcesMemoryLimit(limit int64)    { g.memory().Limit = &limit }
func (g *specGen) SetLinuxResourcesMemorySwap(swap int64)      { g.memory().Swap = &swap }
