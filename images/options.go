package images

import (
	"time"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/accel-cri/accel-cri/images/policy"
)

// Defaults, filled in one place (see defaultOptions).
const (
	// DefaultSnapshotter is the snapshotter images are unpacked into.
	DefaultSnapshotter = "overlayfs"
	// DefaultPullProgressTimeout cancels a pull that has open registry
	// requests but receives no bytes for this long.
	DefaultPullProgressTimeout = 5 * time.Minute
)

// Option configures a Service.
type Option func(*options)

type options struct {
	registryConfigDir   string
	pullProgressTimeout time.Duration
	snapshotter         string
	pinned              []string
	imageFsPath         string
	platform            ocispec.Platform
	observer            PullObserver
	policy              *policy.Store
	sigObserver         SignatureObserver
}

func defaultOptions() options {
	return options{
		pullProgressTimeout: DefaultPullProgressTimeout,
		snapshotter:         DefaultSnapshotter,
		platform:            platforms.DefaultSpec(),
	}
}

// WithRegistryConfigDir sets the root of a containerd-style registry host
// configuration tree: <dir>/<host[:port]>/hosts.toml (or <dir>/<host>_<port>_/),
// plus the certificates it names, and <dir>/_default/ for every other host.
// "" (the default) means no configuration: every registry is reached
// directly, over HTTPS, or over plain HTTP when the host is localhost or a
// loopback address with a port other than 443.
func WithRegistryConfigDir(dir string) Option {
	return func(o *options) { o.registryConfigDir = dir }
}

// WithPullProgressTimeout cancels a pull whose registry requests transfer no
// bytes for d; the pull then fails with an error that matches
// context.DeadlineExceeded (errdefs.IsDeadlineExceeded). Time spent with no
// request open (for example while the last layer is being unpacked) does not
// count. 0 disables the check. Default DefaultPullProgressTimeout.
func WithPullProgressTimeout(d time.Duration) Option {
	return func(o *options) { o.pullProgressTimeout = d }
}

// WithSnapshotter sets the containerd snapshotter images are unpacked into.
// Default DefaultSnapshotter.
func WithSnapshotter(name string) Option {
	return func(o *options) { o.snapshotter = name }
}

// PullOption configures one Pull.
type PullOption func(*pullOptions)

type pullOptions struct {
	snapshotter string
	namespace   string
}

// WithPullSnapshotter unpacks this pull into the named snapshotter instead of
// the service's (a runtime handler with a snapshotter of its own, named by
// the CRI's ImageSpec.runtime_handler).
func WithPullSnapshotter(name string) PullOption {
	return func(o *pullOptions) { o.snapshotter = name }
}

// WithPinnedImages names images that are reported with Pinned=true (for
// example the sandbox image), so kubelet never garbage-collects them. Each is
// a reference ("registry.k8s.io/pause:3.10", "pause" is
// docker.io/library/pause:latest) or an image id ("sha256:..."). Options
// accumulate.
func WithPinnedImages(refs ...string) Option {
	return func(o *options) { o.pinned = append(o.pinned, refs...) }
}

// WithImageFsPath sets the directory whose usage FsUsage reports, normally the
// snapshotter's root (<containerd root>/io.containerd.snapshotter.v1.overlayfs).
// When unset, New asks containerd for the snapshotter plugin's root.
func WithImageFsPath(path string) Option {
	return func(o *options) { o.imageFsPath = path }
}

// WithPlatform sets the platform images are pulled and read for. Default
// platforms.DefaultSpec() (the platform of this binary).
func WithPlatform(p ocispec.Platform) Option {
	return func(o *options) { o.platform = p }
}

// PullSnapshotter is the snapshotter opts ask for ("" for the service's).
func PullSnapshotter(opts ...PullOption) string {
	return pullOptionsOf(opts).snapshotter
}

func pullOptionsOf(opts []PullOption) pullOptions {
	var o pullOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}
