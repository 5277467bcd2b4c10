package nri

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/nri/pkg/adaptation"
	nrilog "github.com/containerd/nri/pkg/log"
	validator "github.com/containerd/nri/plugins/default-validator/builtin"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// Config configures NRI; config.NRIConfig is its TOML form.
type Config struct {
	// SocketPath is where external plugins connect (mode 0600: a plugin
	// can change every container, so only root may connect).
	SocketPath string
	// PluginPath holds the plugins accel-cri launches itself
	// ("<index>-<name>" executables), PluginConfigPath their configs.
	PluginPath, PluginConfigPath string
	// RegistrationTimeout bounds a plugin's registration, RequestTimeout
	// each call into a plugin: a plugin that does not answer in time is
	// disconnected and the call goes on without it.
	RegistrationTimeout, RequestTimeout time.Duration
	// ExternalPlugins accepts connections on SocketPath; off, only the
	// launched plugins run and no socket is made.
	ExternalPlugins bool
	// Validator is NRI's built-in default validator of adjustments.
	Validator ValidatorConfig
	// RuntimeName and RuntimeVersion are told to plugins.
	RuntimeName, RuntimeVersion string
}

// ValidatorConfig configures NRI's built-in validator, which can refuse
// adjustments of some kinds (and require some plugins) for every container.
type ValidatorConfig struct {
	Enable                           bool
	RejectOCIHookAdjustment          bool
	RejectRuntimeDefaultSeccomp      bool
	RejectUnconfinedSeccomp          bool
	RejectCustomSeccomp              bool
	RejectNamespaceAdjustment        bool
	RejectSysctlAdjustment           bool
	RequiredPlugins                  []string
	TolerateMissingPluginsAnnotation string
}

// Runtime is what NRI needs from the sandbox core.
type Runtime interface {
	// Pods lists the pods for a plugin's Synchronize; Containers the
	// containers that are created or running, with their specs.
	Pods() []Pod
	Containers(ctx context.Context) []Container
	// UpdateContainerResources changes a container's resources through
	// the path of the CRI's UpdateContainerResources (without its NRI
	// events): update gets the current resources under the container's
	// lifecycle lock and returns the new ones.
	UpdateContainerResources(ctx context.Context, id string, update func(cur *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error)) error
	// EvictContainer stops a container as StopContainer does, at once.
	EvictContainer(ctx context.Context, id, reason string) error
}

// Option sets a runtime-specific step of applying adjustments.
type Option func(*NRI)

// WithCDIInjector applies the CDI devices plugins ask for (nil: refused).
func WithCDIInjector(f func(*rspec.Spec, []string) error) Option {
	return func(n *NRI) { n.adjust.injectCDI = f }
}

// WithResourceFixup adapts adjusted resources to the host (drop what the
// cgroup controllers cannot enforce, or refuse it).
func WithResourceFixup(f func(*rspec.LinuxResources) error) Option {
	return func(n *NRI) { n.adjust.fixResources = f }
}

// WithSpecCheck checks a container's spec after plugins adjusted it.
func WithSpecCheck(f func(*rspec.Spec) error) Option {
	return func(n *NRI) { n.adjust.checkSpec = f }
}

// NRI is accel-cri's NRI runtime side. A nil *NRI is NRI switched off.
type NRI struct {
	cfg    Config
	rt     Runtime
	nri    *adaptation.Adaptation
	adjust adjuster

	// plugins is the number of plugins NRI last reported; while 0, events
	// are not even built (no spec is read for them).
	plugins atomic.Int64

	// ctx ends at Close; async runs post-stop updates under it, counted
	// by wg, until closed.
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

var setLogger sync.Once

// New makes the NRI runtime side; Start starts it.
func New(cfg Config, rt Runtime, opts ...Option) (*NRI, error) {
	if cfg.RequestTimeout <= 0 || cfg.RegistrationTimeout <= 0 {
		return nil, fmt.Errorf("%w: NRI timeouts must be positive", errdefs.ErrInvalidArgument)
	}
	n := &NRI{cfg: cfg, rt: rt}
	for _, o := range opts {
		o(n)
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	// The library's logger is process-wide too, and read by the plugin
	// goroutines of every instance: set once.
	setLogger.Do(func() { nrilog.Set(klogLogger{}) })
	// The library keeps its timeouts process-wide.
	adaptation.SetPluginRegistrationTimeout(cfg.RegistrationTimeout)
	adaptation.SetPluginRequestTimeout(cfg.RequestTimeout)
	aopts := []adaptation.Option{
		adaptation.WithPluginPath(cfg.PluginPath),
		adaptation.WithPluginConfigPath(cfg.PluginConfigPath),
		adaptation.WithSocketPath(cfg.SocketPath),
		adaptation.WithMetrics(pluginCounter{&n.plugins}),
		adaptation.WithDefaultValidator(cfg.Validator.library()),
	}
	if !cfg.ExternalPlugins {
		aopts = append(aopts, adaptation.WithDisabledExternalConnections())
	}
	var err error
	n.nri, err = adaptation.New(cfg.RuntimeName, cfg.RuntimeVersion, n.synchronize, n.updateFromPlugin, aopts...)
	if err != nil {
		n.cancel()
		return nil, fmt.Errorf("NRI: %w", err)
	}
	return n, nil
}

func (v ValidatorConfig) library() *validator.DefaultValidatorConfig {
	return &validator.DefaultValidatorConfig{
		Enable:                                v.Enable,
		RejectOCIHookAdjustment:               v.RejectOCIHookAdjustment,
		RejectRuntimeDefaultSeccompAdjustment: v.RejectRuntimeDefaultSeccomp,
		RejectUnconfinedSeccompAdjustment:     v.RejectUnconfinedSeccomp,
		RejectCustomSeccompAdjustment:         v.RejectCustomSeccomp,
		RejectNamespaceAdjustment:             v.RejectNamespaceAdjustment,
		RejectSysctlAdjustment:                v.RejectSysctlAdjustment,
		RequiredPlugins:                       v.RequiredPlugins,
		TolerateMissingAnnotation:             v.TolerateMissingPluginsAnnotation,
	}
}

// Start launches the plugins of PluginPath, synchronizes them and listens
// for external ones. Call it once the runtime's state is recovered. A
// socket path another process answers on (a system containerd's NRI) or
// that is not a socket is refused: NRI would replace it.
func (n *NRI) Start(ctx context.Context) error {
	if n == nil {
		return nil
	}
	if n.cfg.ExternalPlugins {
		if err := claimSocketPath(ctx, n.cfg.SocketPath); err != nil {
			return err
		}
	}
	if err := n.nri.Start(); err != nil {
		return fmt.Errorf("start NRI: %w", err)
	}
	if n.cfg.ExternalPlugins {
		if err := os.Chmod(n.cfg.SocketPath, 0o600); err != nil {
			n.nri.Stop()
			return fmt.Errorf("NRI socket: %w", err)
		}
	}
	klog.InfoS("Serving NRI", "socket", n.socketOrNone(), "pluginPath", n.cfg.PluginPath, "plugins", n.plugins.Load())
	return nil
}

func (n *NRI) socketOrNone() string {
	if !n.cfg.ExternalPlugins {
		return ""
	}
	return n.cfg.SocketPath
}

// claimSocketPath refuses a path that is in use or not a socket; a stale
// socket is left for NRI to replace.
func claimSocketPath(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return os.MkdirAll(filepath.Dir(path), 0o711)
	}
	if err != nil {
		return fmt.Errorf("NRI socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%w: NRI socket path %s exists and is not a socket", errdefs.ErrAlreadyExists, path)
	}
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "unix", path)
	if err == nil {
		conn.Close()
		return fmt.Errorf("%w: NRI socket %s is in use by another process (a containerd or CRI-O of this node?); set [nri] socket_path", errdefs.ErrAlreadyExists, path)
	}
	return nil
}

// Close disconnects the plugins (the launched ones are stopped), removes
// the socket, and waits for post-stop updates in flight.
func (n *NRI) Close() {
	if n == nil {
		return
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	n.mu.Unlock()
	n.nri.Stop()
	n.plugins.Store(0)
	n.cancel()
	n.wg.Wait()
	if n.cfg.ExternalPlugins {
		_ = os.Remove(n.cfg.SocketPath)
	}
}

// Status says what runs, for the CRI's verbose Status.
type Status struct {
	Socket     string `json:"socket,omitempty"`
	PluginPath string `json:"pluginPath"`
	Plugins    int    `json:"plugins"`
}

// Status reports the socket and how many plugins are registered (nil: off).
func (n *NRI) Status() *Status {
	if n == nil {
		return nil
	}
	return &Status{Socket: n.socketOrNone(), PluginPath: n.cfg.PluginPath, Plugins: int(n.plugins.Load())}
}

// Active reports whether any plugin is registered: the runtime skips
// building events (reading specs) otherwise.
func (n *NRI) Active() bool { return n != nil && n.plugins.Load() > 0 }

// syncHeld marks a context whose call already holds the sync block (or
// comes from NRI itself, which runs while one is held): nested calls must
// not take it again, a waiting synchronization would deadlock them.
type syncHeld struct{}

// BlockSync keeps plugins from synchronizing until the returned function
// is called. A CRI call that makes, changes or removes a pod or container
// holds it from before its NRI event until its result is in the store: a
// plugin registering meanwhile then either gets the event or finds the
// result in its Synchronize, never neither. While a plugin synchronizes,
// new holders wait, so it is held briefly, and taken before any lifecycle
// lock another call could be waiting for. Calls made under a held block
// (the containers StopPodSandbox stops) see the returned context and do
// not take it again: a waiting Synchronize would deadlock them.
func (n *NRI) BlockSync(ctx context.Context) (context.Context, func()) {
	if n == nil || ctx.Value(syncHeld{}) != nil {
		return ctx, func() {}
	}
	b := n.nri.BlockPluginSync()
	return context.WithValue(ctx, syncHeld{}, true), b.Unblock
}

// synchronize is NRI's SyncFn: it runs, with plugin synchronization
// blocked for CRI calls, when a plugin registers (and for the launched
// plugins at Start), hands the plugin the pods and containers that exist
// and applies the updates it answers with.
func (n *NRI) synchronize(ctx context.Context, cb adaptation.SyncCB) error {
	ctx = context.WithValue(ctx, syncHeld{}, true)
	lctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	ctrs := n.rt.Containers(lctx)
	cancel()
	pods := n.rt.Pods()
	apiPods := make([]*adaptation.PodSandbox, 0, len(pods))
	for _, p := range pods {
		apiPods = append(apiPods, toPod(p))
	}
	apiCtrs := make([]*adaptation.Container, 0, len(ctrs))
	for _, c := range ctrs {
		apiCtrs = append(apiCtrs, toContainer(c))
	}
	klog.V(2).InfoS("Synchronizing NRI plugin", "pods", len(apiPods), "containers", len(apiCtrs))
	updates, err := cb(ctx, apiPods, apiCtrs)
	if err != nil {
		return err
	}
	uctx, cancel := context.WithTimeout(ctx, asyncTimeout)
	defer cancel()
	n.applyUpdates(uctx, "Synchronize", updates)
	return nil
}

// updateFromPlugin is NRI's UpdateFn: container updates a plugin asks for
// on its own. It returns the updates that failed.
func (n *NRI) updateFromPlugin(ctx context.Context, updates []*adaptation.ContainerUpdate) ([]*adaptation.ContainerUpdate, error) {
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, syncHeld{}, true), asyncTimeout)
	defer cancel()
	failed := n.applyUpdates(ctx, "UpdateContainers", updates)
	if len(failed) > 0 {
		return failed, fmt.Errorf("NRI: %d container updates failed", len(failed))
	}
	return nil, nil
}

// klogLogger sends NRI's log to klog.
type klogLogger struct{}

func (klogLogger) Debugf(_ context.Context, format string, args ...any) {
	klog.V(4).InfoS("NRI: " + fmt.Sprintf(format, args...))
}

func (klogLogger) Infof(_ context.Context, format string, args ...any) {
	klog.V(1).InfoS("NRI: " + fmt.Sprintf(format, args...))
}

func (klogLogger) Warnf(_ context.Context, format string, args ...any) {
	klog.InfoS("NRI warning: " + fmt.Sprintf(format, args...))
}

func (klogLogger) Errorf(_ context.Context, format string, args ...any) {
	klog.ErrorS(nil, "NRI: "+fmt.Sprintf(format, args...))
}

// pluginCounter is the part of NRI's metrics accel-cri uses: how many
// plugins are registered.
type pluginCounter struct{ n *atomic.Int64 }

func (pluginCounter) RecordPluginInvocation(string, string, error)      {}
func (pluginCounter) RecordPluginLatency(string, string, time.Duration) {}
func (pluginCounter) RecordPluginAdjustments(string, string, *adaptation.ContainerAdjustment, int, int) {
}
func (c pluginCounter) UpdatePluginCount(count int) { c.n.Store(int64(count)) }
