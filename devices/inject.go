package devices

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	"k8s.io/klog/v2"
	"tags.cncf.io/container-device-interface/pkg/cdi"
	cdispec "tags.cncf.io/container-device-interface/specs-go"
)

// DefaultCDISpecDirs are the directories CDI specs are read from, lowest
// priority first (a device defined in both is taken from the later).
var DefaultCDISpecDirs = []string{"/etc/cdi", "/var/run/cdi"}

// Injector resolves CDI device names against every spec in its spec
// directories (accel-cri's own and any other vendor's, such as NVIDIA's
// nvidia-ctk output) and applies them to OCI specs. With a registry
// (WithRegistry), accel-cri.io names are resolved from the live inventory
// first.
type Injector struct {
	cache *cdi.Cache
	// registry resolves accel-cri.io names first (WithRegistry); nil:
	// every name comes from the spec directories.
	registry CDIRegistry
	// ownershipFromSecurityContext makes injected nodes owned by the
	// container's uid/gid (containerd's device_ownership_from_security_context).
	ownershipFromSecurityContext bool
}

// InjectorOption configures an Injector.
type InjectorOption func(*Injector)

// WithOwnershipFromSecurityContext makes the device nodes of a container
// owned by the container process's uid and gid instead of the host node's.
func WithOwnershipFromSecurityContext(on bool) InjectorOption {
	return func(i *Injector) { i.ownershipFromSecurityContext = on }
}

// WithRegistry resolves names of vendor accel-cri.io from r (the
// Manager's live inventory) before the spec directories: a device r knows
// is injected from r, one that vanished fails with
// errdefs.ErrFailedPrecondition, and only a name r does not know is looked
// up in the spec files (other tools may write accel-cri.io specs).
func WithRegistry(r CDIRegistry) InjectorOption {
	return func(i *Injector) { i.registry = r }
}

// NewInjector returns an Injector over specDirs. The cache follows the
// directories with inotify; a malformed spec file is skipped (its error is
// reported with any unresolvable name) and the other specs keep working.
func NewInjector(specDirs []string, opts ...InjectorOption) (*Injector, error) {
	// The watch is started by Configure, which holds the cache's lock:
	// NewCache with auto-refresh starts the watching goroutine and then
	// fills the cache without it (container-device-interface v1.1.1), a
	// data race with the goroutine's first refresh.
	c, err := cdi.NewCache(cdi.WithSpecDirs(specDirs...), cdi.WithAutoRefresh(false))
	if err != nil && c == nil {
		return nil, fmt.Errorf("cdi cache: %w", err)
	}
	if err := c.Configure(cdi.WithAutoRefresh(true)); err != nil {
		return nil, fmt.Errorf("cdi cache: %w", err)
	}
	i := &Injector{cache: c}
	for _, o := range opts {
		o(i)
	}
	return i, nil
}

// Names returns the CDI devices a container asks for: the CRI
// cdi_devices field first, then the cdi.k8s.io/* annotations (kubelet's
// device plugins set those), without duplicates. Malformed annotations
// are InvalidArgument.
func Names(fieldNames []string, annotations map[string]string) ([]string, error) {
	for k, v := range annotations {
		if !strings.HasPrefix(k, cdi.AnnotationPrefix) {
			continue
		}
		// cdi.ParseAnnotations parses with the CDI parser, which panics on
		// some names (see ParseQualifiedName): check them first.
		for _, n := range strings.Split(v, ",") {
			if _, _, _, err := ParseQualifiedName(n); err != nil {
				return nil, fmt.Errorf("%w: CDI annotation %s: %v", errdefs.ErrInvalidArgument, k, err)
			}
		}
	}
	_, annotated, err := cdi.ParseAnnotations(annotations)
	if err != nil {
		return nil, fmt.Errorf("%w: CDI annotations: %v", errdefs.ErrInvalidArgument, err)
	}
	seen := map[string]bool{}
	var out []string
	for _, n := range append(append([]string(nil), fieldNames...), annotated...) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// Check reports names that neither the registry nor any spec defines
// (NotFound, with the errors of malformed spec files), devices of the
// registry that vanished (FailedPrecondition) and malformed names
// (InvalidArgument): exactly what Inject would fail with before it
// changes the spec.
func (i *Injector) Check(names []string) error {
	_, err := i.resolve(names)
	return err
}

// resolved is one requested CDI device: the edits of its spec (or of its
// class, from the registry), applied once per key, and its own.
type resolved struct {
	key         any // *cdi.Spec, or the registry's kind
	spec, edits *cdispec.ContainerEdits
}

// resolve finds every name, from the registry first for accel-cri.io
// names when there is one, else from the spec directories, in request
// order. It fails before anything is applied.
func (i *Injector) resolve(names []string) ([]resolved, error) {
	vendors := make([]string, len(names))
	for k, n := range names {
		v, _, _, err := ParseQualifiedName(n)
		if err != nil {
			return nil, fmt.Errorf("%w: CDI device %q: %v", errdefs.ErrInvalidArgument, n, err)
		}
		vendors[k] = v
	}
	out := make([]resolved, len(names))
	var fromSpecs []int // indices of names left to the spec directories
	for k, n := range names {
		if i.registry == nil || vendors[k] != Vendor {
			fromSpecs = append(fromSpecs, k)
			continue
		}
		d, err := i.registry.ResolveCDI(n)
		switch {
		case err == nil:
			out[k] = resolved{key: registryKind(d.Kind), spec: &d.ClassEdits, edits: &d.Edits}
		case errdefs.IsNotFound(err):
			fromSpecs = append(fromSpecs, k)
		default:
			return nil, err
		}
	}
	if len(fromSpecs) == 0 {
		return out, nil
	}
	rest := make([]string, len(fromSpecs))
	for j, k := range fromSpecs {
		rest[j] = names[k]
	}
	devs, err := i.fromSpecs(rest)
	if err != nil {
		return nil, err
	}
	for j, k := range fromSpecs {
		d := devs[j]
		out[k] = resolved{key: d.GetSpec(), spec: &d.GetSpec().ContainerEdits, edits: &d.ContainerEdits}
	}
	return out, nil
}

// registryKind keys the class edits of registry devices apart from any
// spec file's.
type registryKind string

// fromSpecs looks names up in the spec directories' cache. A name it
// misses is looked up again in a scan made now: the cache learns of
// changes through inotify and may not have seen a file written a moment
// ago (its Refresh does not rescan in auto-refresh mode). A name neither
// knows is NotFound, naming the spec files that could not be read.
// Devices of untrusted spec files are refused.
func (i *Injector) fromSpecs(names []string) ([]*cdi.Device, error) {
	lookup := func(c *cdi.Cache) ([]*cdi.Device, []string) {
		devs := make([]*cdi.Device, len(names))
		var unknown []string
		for k, n := range names {
			if devs[k] = c.GetDevice(n); devs[k] == nil {
				unknown = append(unknown, n)
			}
		}
		return devs, unknown
	}
	devs, unknown := lookup(i.cache)
	if len(unknown) > 0 {
		dirs := i.cache.GetSpecDirectories()
		now, _ := cdi.NewCache(cdi.WithSpecDirs(dirs...), cdi.WithAutoRefresh(false))
		var skipped string
		if now != nil {
			devs, unknown = lookup(now)
			skipped = specErrors(now)
		}
		if len(unknown) > 0 {
			return nil, fmt.Errorf("%w: unknown CDI device %s (spec dirs %s)%s", errdefs.ErrNotFound,
				strings.Join(quote(unknown), ", "), strings.Join(dirs, ", "), skipped)
		}
	}
	if err := checkTrusted(names, devs); err != nil {
		return nil, err
	}
	return devs, nil
}

// checkTrusted refuses (NotFound, as if the spec were not there) devices
// whose spec file a non-root user could have written; see untrustedSpec.
func checkTrusted(names []string, devs []*cdi.Device) error {
	for k, d := range devs {
		path := d.GetSpec().GetPath()
		if reason := untrustedSpec(path); reason != "" {
			klog.InfoS("Ignoring a CDI spec that is not root-owned and protected", "device", names[k], "spec", path, "reason", reason)
			return fmt.Errorf("%w: CDI device %q: spec %s ignored: %s", errdefs.ErrNotFound, names[k], path, reason)
		}
	}
	return nil
}

func quote(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}

// specErrors names the spec files a cache could not read.
func specErrors(c *cdi.Cache) string {
	errs := c.GetErrors()
	if len(errs) == 0 {
		return ""
	}
	var files []string
	for f := range errs {
		files = append(files, f)
	}
	sort.Strings(files)
	var b strings.Builder
	b.WriteString("; skipped spec files:")
	for _, f := range files {
		fmt.Fprintf(&b, " %s: %v;", f, errors.Join(errs[f]...))
	}
	return strings.TrimSuffix(b.String(), ";")
}

// Inject applies the CDI devices to spec, after the process user is set.
// Then:
//   - DRM render nodes (/dev/dri/renderD*) are renumbered in request order
//     from renderD128, and card nodes from card0, so that the first
//     requested GPU is what VAAPI and QSV open by default on any host;
//   - NVIDIA_VISIBLE_DEVICES lists every requested NVIDIA GPU;
//   - an LD_LIBRARY_PATH the image had is kept after the driver's;
//   - with ownership from the security context, the nodes are owned by
//     the process's uid and gid.
func (i *Injector) Inject(spec *runtimespec.Spec, names []string) error {
	if len(names) == 0 {
		return nil
	}
	devs, err := i.resolve(names)
	if err != nil {
		return err
	}
	var oldLD string
	if spec.Process != nil {
		oldLD = envValue(spec.Process.Env, "LD_LIBRARY_PATH")
	}
	// As cdi.Cache.InjectDevices: in request order, a spec's (class's)
	// edits before its first device's, all applied at once.
	edits := &cdi.ContainerEdits{ContainerEdits: &cdispec.ContainerEdits{}}
	specs := map[any]bool{}
	var visible []string
	var nodes []string
	for _, d := range devs {
		if !specs[d.key] {
			specs[d.key] = true
			edits.Append(&cdi.ContainerEdits{ContainerEdits: d.spec})
		}
		edits.Append(&cdi.ContainerEdits{ContainerEdits: d.edits})
		for _, dn := range d.edits.DeviceNodes {
			nodes = append(nodes, dn.Path)
		}
		if v := envValue(d.edits.Env, "NVIDIA_VISIBLE_DEVICES"); v != "" {
			visible = append(visible, v)
		}
	}
	if err := edits.Apply(spec); err != nil {
		return fmt.Errorf("inject CDI devices: %w", err)
	}
	if i.ownershipFromSecurityContext {
		// Before the renumbering: nodes holds the paths as injected.
		OwnNodes(spec, nodes)
	}
	if spec.Linux != nil {
		renameDRM(spec.Linux.Devices, nodes)
	}
	if spec.Process != nil {
		if len(visible) > 0 {
			spec.Process.Env = setEnv(spec.Process.Env, "NVIDIA_VISIBLE_DEVICES", strings.Join(visible, ","))
		}
		if ld := envValue(spec.Process.Env, "LD_LIBRARY_PATH"); oldLD != "" && ld != oldLD && !strings.Contains(ld, oldLD) {
			spec.Process.Env = setEnv(spec.Process.Env, "LD_LIBRARY_PATH", ld+":"+oldLD)
		}
	}
	return nil
}

var (
	renderRE = regexp.MustCompile(`^/dev/dri/renderD[0-9]+$`)
	cardRE   = regexp.MustCompile(`^/dev/dri/card[0-9]+$`)
)

// renameDRM renumbers the DRM nodes of the injected devices (requested in
// order: their container paths) from renderD128 and card0, in place.
func renameDRM(devs []runtimespec.LinuxDevice, requested []string) {
	rename := map[string]string{}
	render, card := 128, 0
	for _, p := range requested {
		if _, done := rename[p]; done {
			continue
		}
		switch {
		case renderRE.MatchString(p):
			rename[p] = fmt.Sprintf("/dev/dri/renderD%d", render)
			render++
		case cardRE.MatchString(p):
			rename[p] = fmt.Sprintf("/dev/dri/card%d", card)
			card++
		}
	}
	for k := range devs {
		if to, ok := rename[path.Clean(devs[k].Path)]; ok {
			devs[k].Path = to
		}
	}
}

func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

func setEnv(env []string, key, value string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k != key {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}
