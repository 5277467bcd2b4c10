package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/images"
	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/sandbox/nri"
	"github.com/accel-cri/accel-cri/sandbox/podnet"
	"github.com/accel-cri/accel-cri/sandbox/shim"
	"github.com/accel-cri/accel-cri/sandbox/spec"
	"github.com/accel-cri/accel-cri/sandbox/stats"
)

// ErrRuntimeNotReady reports that containerd does not answer.
var ErrRuntimeNotReady = errors.New("containerd is not serving")

// ImageSource is what the runtime needs from the image store: the image a
// container is created from, its signature check for the pod's namespace,
// and the sandbox image, pulled if absent.
type ImageSource interface {
	Get(ctx context.Context, ref string) (images.Image, error)
	Pull(ctx context.Context, ref string, auth *images.AuthConfig, opts ...images.PullOption) (images.Image, error)
	CheckSignature(ctx context.Context, namespace, ref string, img images.Image) error
}

// Runtime runs pods and containers on one containerd.
type Runtime struct {
	client       *containerd.Client
	network      *podnet.Network
	oom          *OOMScoreRange
	cgroupDriver string
	images       ImageSource
	sandboxImage string
	snapshotter  string
	rootDir      string // persistent: checkpoints
	stateDir     string // volatile: netns, pod files, fifos, runc root, temp mounts
	shmSize      int64
	appArmor     bool
	// cgroupHost is this host's cgroups: mounts, version, controllers.
	cgroupHost cgroups.Host
	namespace  string // containerd namespace, for event filters

	store   *store
	events  *broadcaster
	monitor *monitor
	// stats keeps the tasks' latest resource-use samples and answers the
	// stats calls; statsPeriod is its collection period (0: sample on
	// every stats call).
	stats       *stats.Collector
	statsPeriod time.Duration

	// handlerConfigs are the configured runtime handlers, resolved into
	// handlers by New; defaultHandler names the one for pods that name none.
	handlerConfigs map[string]HandlerConfig
	handlers       map[string]*handler
	defaultHandler string

	pullMu sync.Mutex // one sandbox image pull at a time

	// execCleanup counts exec processes being deleted after their session
	// returned (their output was still held open); Close waits for them.
	execCleanup sync.WaitGroup
	// shims are the runc shims of the managed containerd, talked to
	// directly: execs, stale tasks, orphans (nil: containerd is not ours).
	shims *shim.Shims

	// cdi resolves the CDI devices containers ask for (nil: CDI off).
	cdi CDIInjector
	// deviceOwnershipFromSC: CRI device nodes owned by the container user.
	deviceOwnershipFromSC bool
	// specs builds the OCI specs from this host's facts, found once.
	specs *spec.Builder
	// alwaysInfra gives every pod a pause process, even where pinned
	// namespaces would do (podNeedsInfra).
	alwaysInfra bool
	// unpacked caches, per snapshotter, the images whose layers are known
	// to be unpacked, so pod and container creation skip containerd's
	// image and snapshot lookups.
	unpacked sync.Map // snapshotter + "\x00" + image id -> rootfsImage

	// warm shortens the OCI runtime's first cgroup migration after an
	// idle spell (nil: not needed or not possible here).
	warm *cgroups.MigrationWarmer

	// bundleRoot and containerdAddress locate task bundles and shim
	// sockets of the managed containerd (WithTaskBundles).
	bundleRoot, containerdAddress string

	// nri relays lifecycle events to NRI plugins and applies their
	// adjustments (nil: NRI is off); nriConfig is WithNRI's (nri.go).
	nri       *nri.NRI
	nriConfig *nri.Config
}

// Option configures a Runtime.
type Option func(*Runtime)

// WithNetwork sets the pod network.
func WithNetwork(n *podnet.Network) Option { return func(r *Runtime) { r.network = n } }

// WithOOMScoreRange sets the OOM score range found at start.
func WithOOMScoreRange(o *OOMScoreRange) Option { return func(r *Runtime) { r.oom = o } }

// WithCgroupDriver sets the resolved cgroup driver.
func WithCgroupDriver(d string) Option { return func(r *Runtime) { r.cgroupDriver = d } }

// WithImages sets the image store containers are created from.
func WithImages(s ImageSource) Option { return func(r *Runtime) { r.images = s } }

// WithSandboxImage sets the pause image.
func WithSandboxImage(ref string) Option { return func(r *Runtime) { r.sandboxImage = ref } }

// WithSnapshotter sets the containerd snapshotter for root filesystems.
func WithSnapshotter(name string) Option { return func(r *Runtime) { r.snapshotter = name } }

// WithInfraContainer(true) gives every pod a pause process. By default a
// pod of a runc-style handler whose PID and user namespaces are not shared
// does without one: its UTS and IPC namespaces are pinned by bind mounts.
func WithInfraContainer(always bool) Option {
	return func(r *Runtime) { r.alwaysInfra = always }
}

// WithDirs sets the persistent and the volatile state directories.
func WithDirs(root, state string) Option {
	return func(r *Runtime) { r.rootDir, r.stateDir = root, state }
}

// WithNamespace names the containerd namespace the client uses.
func WithNamespace(ns string) Option { return func(r *Runtime) { r.namespace = ns } }

// WithHandlers sets the runtime handlers and the default one. Without it
// there is one handler, "runc".
func WithHandlers(handlers map[string]HandlerConfig, defaultName string) Option {
	return func(r *Runtime) { r.handlerConfigs, r.defaultHandler = handlers, defaultName }
}

// WithStatsCollectionPeriod sets how often every running task's resource
// use is sampled for the stats calls; 0 samples on every call.
func WithStatsCollectionPeriod(d time.Duration) Option {
	return func(r *Runtime) { r.statsPeriod = d }
}

// defaultShmSize is the size of each pod's /dev/shm unless WithShmSize
// sets another.
const defaultShmSize int64 = 64 << 20

// WithShmSize sets the size of each pod's /dev/shm.
func WithShmSize(bytes int64) Option { return func(r *Runtime) { r.shmSize = bytes } }

// New returns a Runtime over a connected containerd client. Call Start to
// recover the state of earlier runs and follow task exits.
func New(client *containerd.Client, opts ...Option) (*Runtime, error) {
	r := &Runtime{
		client:       client,
		cgroupDriver: cgroups.DriverCgroupfs,
		snapshotter:  "overlayfs",
		shmSize:      defaultShmSize,
		namespace:    "accel-cri",
		statsPeriod:  stats.DefaultPeriod,
	}
	for _, o := range opts {
		o(r)
	}
	if r.bundleRoot != "" {
		r.shims = shim.New(shim.Config{Namespace: r.namespace, BundleRoot: r.bundleRoot, Address: r.containerdAddress})
	}
	if r.network == nil {
		return nil, errors.New("sandbox: a network is required")
	}
	if r.oom == nil {
		r.oom = &OOMScoreRange{Min: oomScoreAdjMin}
	}
	if r.rootDir == "" || r.stateDir == "" {
		return nil, errors.New("sandbox: root and state directories are required")
	}
	for _, d := range []string{r.rootDir, r.stateDir, r.netnsDir(), r.imageVolumesRoot()} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
	}
	if err := useTempMounts(r.stateDir); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	r.appArmor = appArmorEnabled()
	r.cgroupHost = *cgroups.Local()
	r.warm = r.cgroupHost.MigrationWarmer()
	if r.handlerConfigs == nil {
		r.handlerConfigs, r.defaultHandler = map[string]HandlerConfig{"runc": {Type: RuntimeTypeRunc}}, "runc"
	}
	r.handlers = map[string]*handler{}
	for name, hc := range r.handlerConfigs {
		h, err := newHandler(name, hc, r.stateDir, r.snapshotter, r.cgroupDriver == cgroups.DriverSystemd)
		if err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
		r.handlers[name] = h
	}
	if _, ok := r.handlers[r.defaultHandler]; !ok {
		return nil, fmt.Errorf("sandbox: default runtime handler %q is not configured", r.defaultHandler)
	}
	specs, err := r.newSpecBuilder()
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	r.specs = specs
	r.store = newStore(r.rootDir)
	r.events = newBroadcaster()
	r.stats = stats.New(statsSource{r}, r.client, stats.Config{Period: r.statsPeriod, CgroupRoot: cgroups.Root,
		CgroupV2: r.cgroupHost.V2(), SwapAccounting: r.cgroupHost.SwapAccounting, CgroupDriver: r.cgroupDriver})
	if err := r.newNRI(); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	return r, nil
}

func (r *Runtime) netnsDir() string              { return filepath.Join(r.stateDir, "netns") }
func (r *Runtime) podDir(id string) string       { return filepath.Join(r.stateDir, "pods", id) }
func (r *Runtime) containerDir(id string) string { return filepath.Join(r.stateDir, "containers", id) }

// Start rebuilds the store from containerd and the checkpoints, then follows
// task exits until ctx ends or Close. NRI starts last: the plugins it
// launches are synchronized with the recovered pods and containers.
func (r *Runtime) Start(ctx context.Context) error {
	if err := r.recover(ctx); err != nil {
		return err
	}
	r.monitor = newMonitor(r)
	r.monitor.start()
	r.stats.Start()
	if err := r.nri.Start(ctx); err != nil {
		r.Close()
		return err
	}
	return nil
}

// Close stops following events; containers keep running. NRI's plugins
// are disconnected first (the ones it launched are stopped).
func (r *Runtime) Close() {
	r.nri.Close()
	if r.monitor != nil {
		r.monitor.stop()
	}
	r.events.close()
	r.waitExecCleanup()
	r.stats.Close()
	r.shims.Close()
}

// RuntimeReady is nil when containerd answers its health service.
func (r *Runtime) RuntimeReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ok, err := r.client.IsServing(ctx)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRuntimeNotReady, err)
	}
	if !ok {
		return ErrRuntimeNotReady
	}
	return nil
}

// NetworkReady is nil when a CNI network is configured and ready.
func (r *Runtime) NetworkReady(ctx context.Context) error { return r.network.Ready(ctx) }

// CgroupDriver is the cgroup driver pods are created with.
func (r *Runtime) CgroupDriver() string { return r.cgroupDriver }

// OOMScoreRange is what this host permits for containers' oom_score_adj.
func (r *Runtime) OOMScoreRange() *OOMScoreRange { return r.oom }

func appArmorEnabled() bool {
	b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return err == nil && len(b) > 0 && b[0] == 'Y'
}

// logErr logs an error from a cleanup step that cannot fail the request.
func logErr(err error, msg string, kv ...any) {
	if err != nil {
		klog.ErrorS(err, msg, kv...)
	}
}
