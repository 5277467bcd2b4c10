package sandbox

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	"k8s.io/klog/v2"
)

// containerd runtime types whose options accel-cri builds itself.
const (
	RuntimeTypeRunc  = "io.containerd.runc.v2"
	RuntimeTypeRunsc = "io.containerd.runsc.v1"
	RuntimeTypeKata  = "io.containerd.kata.v2"
	// runscOptionsType is the TypeUrl gVisor's shim expects in the CRI
	// runtime options (its config file is TOML of that type).
	runscOptionsType = "io.containerd.runsc.v1.options"
)

// HandlerConfig configures one runtime handler (RuntimeClass .handler).
// The fields mirror config.RuntimeConfig.
type HandlerConfig struct {
	Type                         string
	BinaryName                   string
	Root                         string
	ConfigPath                   string
	PrivilegedWithoutHostDevices bool
	SandboxPerContainer          bool
	PodAnnotations               []string
	ContainerAnnotations         []string
	Snapshotter                  string
}

// handler is a resolved runtime handler: what containerd is asked to run
// the pod's containers with, and what the pod's OCI specs get.
type handler struct {
	name        string
	runtimeType string
	// options are the shim options: *options.Options for runc.v2 (runc,
	// crun, runsc as an OCI binary), the CRI runtime options (config file)
	// for other shims, nil when there is nothing to pass.
	options     any
	snapshotter string
	// binary is the OCI runtime binary for runc.v2 handlers ("" otherwise).
	binary string
	// root is the OCI runtime's state dir for runc.v2 handlers.
	root                         string
	privilegedWithoutHostDevices bool
	sandboxPerContainer          bool
	podAnnotations               []string
	containerAnnotations         []string
	features                     HandlerFeatures
	// specVersion is the OCI spec version the runtime declares when it is
	// older than containerd's (crun 1.8: "1.0.0"); specs get it as their
	// ociVersion, which such runtimes check ("unknown version specified").
	specVersion string
	// kind is what this handler's runtime can do (handler_kind.go).
	kind runtimeKind
}

// infraless reports whether pods of this handler can do without a pause
// process: runc and crun join namespaces by path; a gVisor or VM sandbox,
// or a sandbox per container, is built around the pause container.
func (h *handler) infraless() bool {
	return h.kind.hostProcesses() && !h.sandboxPerContainer
}

// HandlerInfo is what Status reports about one handler.
type HandlerInfo struct {
	Name     string
	Type     string
	Features HandlerFeatures
}

// newHandler resolves cfg: defaults (root under stateDir, the global
// snapshotter), options per runtime type, and the features the runtime
// has (asked from `<binary> features` for runc.v2 handlers; none for other
// shims, whose guests decide: Kata's agent mounts volumes inside the VM,
// and what it does with a bind mount's options is not ours to promise).
func newHandler(name string, cfg HandlerConfig, stateDir, snapshotter string, systemdCgroup bool) (*handler, error) {
	h := &handler{
		name:                         name,
		runtimeType:                  cfg.Type,
		snapshotter:                  cfg.Snapshotter,
		privilegedWithoutHostDevices: cfg.PrivilegedWithoutHostDevices,
		sandboxPerContainer:          cfg.SandboxPerContainer,
		podAnnotations:               slices.Clone(cfg.PodAnnotations),
		containerAnnotations:         slices.Clone(cfg.ContainerAnnotations),
	}
	if h.runtimeType == "" {
		h.runtimeType = RuntimeTypeRunc
	}
	if h.snapshotter == "" {
		h.snapshotter = snapshotter
	}
	if !strings.HasPrefix(h.runtimeType, "io.containerd.") {
		return nil, fmt.Errorf("runtime handler %q: type %q is not a containerd runtime type", name, h.runtimeType)
	}
	switch h.runtimeType {
	case RuntimeTypeRunc:
		h.binary = cfg.BinaryName
		if h.binary == "" {
			h.binary = "runc"
		}
		h.root = cfg.Root
		if h.root == "" {
			h.root = filepath.Join(stateDir, "runtimes", name)
		}
		if err := os.MkdirAll(h.root, 0o711); err != nil {
			return nil, fmt.Errorf("runtime handler %q: %w", name, err)
		}
		// The OCI runtime keeps its state under accel-cri's state dir,
		// never in the host's /run/runc.
		h.options = &options.Options{BinaryName: h.binary, Root: h.root, SystemdCgroup: systemdCgroup}
		f, err := probeFeatures(h.binary)
		if err != nil {
			klog.InfoS("OCI runtime features unknown; recursive read-only mounts and user namespaces off", "handler", name, "err", err)
		}
		h.features = f
		// Bind mount options (CRI Mount.mount_options: nodev, noexec,
		// nosuid) are options every OCI runtime MUST implement
		// (runtime-spec config.md, Linux mount options); runc and crun
		// apply them to the host mount, so the kernel enforces them. A
		// runtime that answers `features` must list them; one without
		// that command (crun 1.8) is taken at the spec's word. gVisor's
		// runsc is left out: its sentry knows only ro, rw, noatime and
		// noexec on a mount and ignores nodev and nosuid with a warning
		// (runsc/boot mountFlags); Debian's runsc mounts such a volume
		// without nodev, and device nodes on it open. A pod asking for
		// them would run without.
		h.kind = kindOf(h.runtimeType, h.binary, h.root)
		h.features.MountOptions = h.kind.hostProcesses() && (err != nil || f.MountOptions)
		h.specVersion = olderSpecVersion(runtimeSpecVersion(h.binary), runtimespec.Version)
	case RuntimeTypeRunsc:
		if cfg.ConfigPath != "" {
			h.options = &runtimeoptions.Options{TypeUrl: runscOptionsType, ConfigPath: cfg.ConfigPath}
		}
	default:
		if cfg.ConfigPath != "" {
			h.options = &runtimeoptions.Options{ConfigPath: cfg.ConfigPath}
		}
	}
	if h.kind == nil {
		h.kind = kindOf(h.runtimeType, h.binary, h.root)
	}
	return h, nil
}

// handlerOf returns the handler named name ("" is the default handler).
func (r *Runtime) handlerOf(name string) (*handler, error) {
	if name == "" {
		name = r.defaultHandler
	}
	if h, ok := r.handlers[name]; ok {
		return h, nil
	}
	return nil, fmt.Errorf("%w: runtime handler %q is not configured (known: %s)", errdefs.ErrNotFound, name, strings.Join(slices.Sorted(maps.Keys(r.handlers)), ", "))
}

// HandlerSnapshotter is the snapshotter of the named handler, for pulls
// that name a runtime handler (ImageSpec.runtime_handler).
func (r *Runtime) HandlerSnapshotter(name string) (string, error) {
	h, err := r.handlerOf(name)
	if err != nil {
		return "", err
	}
	return h.snapshotter, nil
}

// Handlers lists the runtime handlers with their features: the default
// handler first under the name "" (as kubelet asks), then every handler by
// name.
func (r *Runtime) Handlers() []HandlerInfo {
	def := r.handlers[r.defaultHandler]
	out := []HandlerInfo{{Name: "", Type: def.runtimeType, Features: def.features}}
	for _, n := range slices.Sorted(maps.Keys(r.handlers)) {
		h := r.handlers[n]
		out = append(out, HandlerInfo{Name: n, Type: h.runtimeType, Features: h.features})
	}
	return out
}

// passAnnotations returns the annotations whose keys match one of the
// patterns: a key, or a prefix ending in "*".
func passAnnotations(annotations map[string]string, patterns []string) map[string]string {
	out := map[string]string{}
	for k, v := range annotations {
		for _, p := range patterns {
			if k == p || (strings.HasSuffix(p, "*") && strings.HasPrefix(k, strings.TrimSuffix(p, "*"))) {
				out[k] = v
				break
			}
		}
	}
	return out
}

// podSnapshotter is the snapshotter of a pod's handler; the global one when
// the pod or its handler is gone (a handler removed from the config).
func (r *Runtime) podSnapshotter(podID string) string {
	if p, err := r.store.pod(podID); err == nil {
		if h, err := r.handlerOf(p.RuntimeHandler); err == nil {
			return h.snapshotter
		}
	}
	return r.snapshotter
}

// runtimeTypeOf is the containerd runtime type of a handler, for verbose
// statuses ("" when the handler is no longer configured).
func (r *Runtime) runtimeTypeOf(name string) string {
	if h, err := r.handlerOf(name); err == nil {
		return h.runtimeType
	}
	return ""
}

// podHandlerName is the runtime handler a pod was created with.
func (r *Runtime) podHandlerName(podID string) string {
	if p, err := r.store.pod(podID); err == nil {
		return p.RuntimeHandler
	}
	return ""
}

// containerPassedAnnotations are the annotations a handler lets into a
// container's OCI spec: its pod's allowed pod annotations, then the
// container's allowed ones (which win on the same key).
func containerPassedAnnotations(h *handler, podAnnotations, ctrAnnotations map[string]string) map[string]string {
	out := passAnnotations(podAnnotations, h.podAnnotations)
	maps.Copy(out, passAnnotations(ctrAnnotations, h.containerAnnotations))
	return out
}

// killAndDeleteTask deletes a task, killing its processes first unless it has
// stopped already: OCI runtimes answer a kill of a stopped container
// differently (runsc: "sandbox is not running"), and the runc shim turns
// answers other than runc's into an unknown error.
func killAndDeleteTask(ctx context.Context, task containerd.Task) (*containerd.ExitStatus, error) {
	if st, err := task.Status(ctx); err == nil && st.Status == containerd.Stopped {
		return task.Delete(ctx)
	}
	return task.Delete(ctx, containerd.WithProcessKill)
}

// runtimeSpecVersion is the "spec: X" line of `<binary> --version` ("" when
// the binary does not say).
func runtimeSpecVersion(binary string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "--version").Output()
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "spec:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// olderSpecVersion returns declared when its major.minor is below ours'
// ("1.0.0" < "1.2.1"), else "".
func olderSpecVersion(declared, ours string) string {
	mm := func(v string) (int, int, bool) {
		parts := strings.SplitN(v, ".", 3)
		if len(parts) < 2 {
			return 0, 0, false
		}
		major, err1 := strconv.Atoi(parts[0])
		minor, err2 := strconv.Atoi(parts[1])
		return major, minor, err1 == nil && err2 == nil
	}
	dM, dm, ok1 := mm(declared)
	oM, om, ok2 := mm(ours)
	if !ok1 || !ok2 || dM != oM || dm >= om {
		return ""
	}
	return declared
}
