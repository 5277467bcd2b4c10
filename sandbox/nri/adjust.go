package nri

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/nri/pkg/api"
	nrigen "github.com/containerd/nri/pkg/runtime-tools/generate"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// This file applies the adjustment plugins asked for at CreateContainer to
// the container's OCI spec, as containerd does, through NRI's generator.
// Adjustments are checked first: one that would make a broken or
// misleading spec (a relative mount destination, a device outside /dev, an
// unknown rlimit, a change of the CRI annotations the runtime groups
// containers by) fails the CreateContainer instead.

// runtimeAnnotationPrefix marks the annotations the runtime itself sets
// (sandbox id, container type, ...): shims group a pod's containers by
// them, so no plugin may change them.
const runtimeAnnotationPrefix = "io.kubernetes.cri."

// adjuster applies adjustments with the runtime's host-specific steps.
type adjuster struct {
	// injectCDI applies CDI devices (the runtime's CDI injector); nil:
	// CDI is off and adjustments asking for CDI devices fail.
	injectCDI func(*rspec.Spec, []string) error
	// fixResources drops what this host cannot enforce (swap without swap
	// accounting, hugepages without hugetlb) or refuses it.
	fixResources func(*rspec.LinuxResources) error
	// checkSpec checks the adjusted spec as a whole (cgroups path form).
	checkSpec func(*rspec.Spec) error
}

// apply checks adj and applies it to spec. Failures wrap
// errdefs.ErrInvalidArgument (a bad adjustment) or the class the runtime's
// steps return.
func (a adjuster) apply(spec *rspec.Spec, adj *api.ContainerAdjustment) error {
	if adj == nil {
		return nil
	}
	if err := validateAdjustment(adj); err != nil {
		return fmt.Errorf("%w: NRI adjustment: %w", errdefs.ErrInvalidArgument, err)
	}
	gen := nrigen.SpecGenerator(&specGen{s: spec},
		nrigen.WithAnnotationFilter(protectRuntimeAnnotations),
		nrigen.WithCDIDeviceInjector(a.cdi),
		nrigen.WithResourceChecker(a.resources),
		nrigen.WithRdtResolver(rdtClass),
		nrigen.WithBlockIOResolver(noBlockIOClasses),
	)
	if err := gen.Adjust(adj); err != nil {
		return fmt.Errorf("NRI adjustment: %w", invalidUnlessClassed(err))
	}
	if spec.Process != nil {
		spec.Process.Rlimits = lastRlimitPerType(spec.Process.Rlimits)
	}
	if a.checkSpec != nil {
		if err := a.checkSpec(spec); err != nil {
			return fmt.Errorf("NRI adjustment: %w", invalidUnlessClassed(err))
		}
	}
	return nil
}

func (a adjuster) cdi(s *rspec.Spec, names []string) error {
	if a.injectCDI == nil {
		return fmt.Errorf("%w: CDI devices %v requested but CDI is not enabled on this node", errdefs.ErrFailedPrecondition, names)
	}
	return a.injectCDI(s, names)
}

func (a adjuster) resources(r *rspec.LinuxResources) error {
	if a.fixResources == nil || r == nil {
		return nil
	}
	return a.fixResources(r)
}

// invalidUnlessClassed wraps err as InvalidArgument unless it already
// carries an errdefs class (NotFound for an unknown CDI device, ...).
func invalidUnlessClassed(err error) error {
	for _, class := range []error{errdefs.ErrInvalidArgument, errdefs.ErrNotFound, errdefs.ErrFailedPrecondition, errdefs.ErrUnavailable} {
		if errors.Is(err, class) {
			return err
		}
	}
	return fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
}

func protectRuntimeAnnotations(m map[string]string) (map[string]string, error) {
	for k := range m {
		key, _ := api.IsMarkedForRemoval(k)
		if strings.HasPrefix(key, runtimeAnnotationPrefix) {
			return nil, fmt.Errorf("%w: annotation %q is the runtime's own; plugins may not change it", errdefs.ErrInvalidArgument, key)
		}
	}
	return m, nil
}

// rdtClass maps an RDT class to its CLOS, as containerd does.
func rdtClass(class string) (*rspec.LinuxIntelRdt, error) {
	if class == "" {
		return nil, nil
	}
	return &rspec.LinuxIntelRdt{ClosID: class}, nil
}

// noBlockIOClasses refuses block I/O classes: accel-cri has no class
// configuration, and dropping a plugin's request silently would be worse.
func noBlockIOClasses(class string) (*rspec.LinuxBlockIO, error) {
	if class == "" {
		return nil, nil
	}
	return nil, fmt.Errorf("%w: block I/O class %q requested, but this node defines no block I/O classes", errdefs.ErrFailedPrecondition, class)
}

// lastRlimitPerType keeps one rlimit per type, the last given: the
// generator appends a plugin's rlimits after the container's own, and a
// runtime may take the first of two.
func lastRlimitPerType(in []rspec.POSIXRlimit) []rspec.POSIXRlimit {
	out := make([]rspec.POSIXRlimit, 0, len(in))
	for i, l := range in {
		if !slices.ContainsFunc(in[i+1:], func(o rspec.POSIXRlimit) bool { return o.Type == l.Type }) {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return in
	}
	return out
}

// rlimitTypes are the POSIX rlimits Linux knows.
var rlimitTypes = []string{
	"RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_LOCKS",
	"RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE", "RLIMIT_NPROC",
	"RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK",
}

// validateAdjustment checks what the generator would copy into the spec
// unchecked.
func validateAdjustment(adj *api.ContainerAdjustment) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, m := range adj.GetMounts() {
		dest, removed := m.IsMarkedForRemoval()
		if !absClean(dest) {
			bad("mount destination %q is not an absolute clean path", dest)
		}
		if !removed && m.GetSource() == "" && m.GetType() == "" {
			bad("mount at %s has neither a source nor a type", dest)
		}
	}
	for _, e := range adj.GetEnv() {
		key, _ := e.IsMarkedForRemoval()
		if key == "" || strings.ContainsAny(key, "=\x00") || strings.Contains(e.GetValue(), "\x00") {
			bad("environment variable %q is not a valid name", key)
		}
	}
	if args := adj.GetArgs(); len(args) > 0 && args[0] == "" {
		bad("args: the command is empty")
	}
	for _, h := range hookList(adj.GetHooks()) {
		if !path.IsAbs(h.GetPath()) {
			bad("hook path %q is not absolute", h.GetPath())
		}
	}
	for _, d := range adj.GetLinux().GetDevices() {
		p, removed := d.IsMarkedForRemoval()
		if !strings.HasPrefix(p, "/dev/") || !absClean(p) {
			bad("device path %q is not a clean path under /dev", p)
		}
		if !removed && !slices.Contains([]string{"c", "b", "u", "p"}, d.GetType()) {
			bad("device %s: type %q is not one of c, b, u, p", p, d.GetType())
		}
	}
	for _, d := range adj.GetCDIDevices() {
		if d.GetName() == "" {
			bad("empty CDI device name")
		}
	}
	for _, l := range adj.GetRlimits() {
		if !slices.Contains(rlimitTypes, l.GetType()) {
			bad("rlimit type %q is not a Linux rlimit", l.GetType())
		} else if l.GetSoft() > l.GetHard() {
			bad("rlimit %s: soft limit %d is above the hard limit %d", l.GetType(), l.GetSoft(), l.GetHard())
		}
	}
	if v := adj.GetLinux().GetOomScoreAdj(); v != nil && (v.GetValue() < -1000 || v.GetValue() > 1000) {
		bad("oom_score_adj %d is outside -1000..1000", v.GetValue())
	}
	for _, n := range adj.GetLinux().GetNamespaces() {
		if _, removed := n.IsMarkedForRemoval(); !removed && n.GetPath() != "" && !path.IsAbs(n.GetPath()) {
			bad("namespace %s: path %q is not absolute", n.GetType(), n.GetPath())
		}
	}
	for k := range adj.GetLinux().GetSysctl() {
		if key, _ := api.IsMarkedForRemoval(k); key == "" || strings.ContainsAny(key, "= \x00") {
			bad("sysctl %q is not a valid name", key)
		}
	}
	return errors.Join(errs...)
}

func hookList(h *api.Hooks) []*api.Hook {
	if h == nil {
		return nil
	}
	return slices.Concat(h.GetPrestart(), h.GetCreateRuntime(), h.GetCreateContainer(), h.GetStartContainer(), h.GetPoststart(), h.GetPoststop())
}

func absClean(p string) bool { return path.IsAbs(p) && path.Clean(p) == p }
