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
)

// DefaultCDISpecDirs are the directories CDI specs are read from, lowest
// priority first (a device defined in both is taken from the later).
var DefaultCDISpecDirs = []string{"/etc/cdi", "/var/run/cdi"}

// Injector resolves CDI device names against every spec in its spec
// directories (accel-cri's own and any other vendor's, such as NVIDIA's
// nvidia-ctk output) and applies them to OCI specs.
type Injector struct {
	cache *cdi.Cache
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

// NewInjector returns an Injector over specDirs. The cache follows the
// directories with inotify; a malformed spec file is skipped (its error is
// reported with any unresolvable name) and the other specs keep working.
func NewInjector(specDirs []string, opts ...InjectorOption) (*Injector, error) {
	c, err := cdi.NewCache(cdi.WithSpecDirs(specDirs...), cdi.WithAutoRefresh(true))
	if err != nil && c == nil {
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

// Check reports names that no spec defines (NotFound, with the errors of
// malformed spec files) and malformed names (InvalidArgument). The cache
// is refreshed once before a name is declared unknown.
func (i *Injector) Check(names []string) error {
	var unknown []string
	for _, n := range names {
		if _, _, _, err := ParseQualifiedName(n); err != nil {
			return fmt.Errorf("%w: CDI device %q: %v", errdefs.ErrInvalidArgument, n, err)
		}
		if i.cache.GetDevice(n) == nil {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) == 0 {
		return i.checkTrusted(names)
	}
	_ = i.cache.Refresh()
	unknown = unknown[:0:0]
	for _, n := range names {
		if i.cache.GetDevice(n) == nil {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) == 0 {
		return i.checkTrusted(names)
	}
	return fmt.Errorf("%w: unknown CDI device %s (spec dirs %s)%s", errdefs.ErrNotFound,
		strings.Join(quote(unknown), ", "), strings.Join(i.cache.GetSpecDirectories(), ", "), specErrorsNow(i.cache.GetSpecDirectories()))
}

// specErrorsNow names the spec files that cannot be read, from a scan made
// now: the cache learns of changes through inotify and may not have seen
// a file written a moment ago, which is often the very reason a name is
// unknown.
func specErrorsNow(dirs []string) string {
	c, _ := cdi.NewCache(cdi.WithSpecDirs(dirs...), cdi.WithAutoRefresh(false))
	if c == nil {
		return ""
	}
	return specErrors(c)
}

// checkTrusted refuses (NotFound, as if the spec were not there) devices
// whose spec file a non-root user could have written; see untrustedSpec.
func (i *Injector) checkTrusted(names []string) error {
	for _, n := range names {
		d := i.cache.GetDevice(n)
		if d == nil {
			continue
		}
		path := d.GetSpec().GetPath()
		if reason := untrustedSpec(path); reason != "" {
			klog.InfoS("Ignoring a CDI spec that is not root-owned and protected", "device", n, "spec", path, "reason", reason)
			return fmt.Errorf("%w: CDI device %q: spec %s ignored: %s", errdefs.ErrNotFound, n, path, reason)
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
	if err := i.Check(names); err != nil {
		return err
	}
	var oldLD string
	if spec.Process != nil {
		oldLD = envValue(spec.Process.Env, "LD_LIBRARY_PATH")
	}
	if _, err := i.cache.InjectDevices(spec, names...); err != nil {
		return fmt.Errorf("inject CDI devices: %w", err)
	}
	var visible []string
	var nodes []string
	for _, n := range names {
		d := i.cache.GetDevice(n)
		if d == nil {
			continue
		}
		for _, dn := range d.ContainerEdits.DeviceNodes {
			nodes = append(nodes, dn.Path)
		}
		if v := envValue(d.ContainerEdits.Env, "NVIDIA_VISIBLE_DEVICES"); v != "" {
			visible = append(visible, v)
		}
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
