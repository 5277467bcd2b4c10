package devices

import (
	"time"
)

// Default roots and locations. Every one can be changed with an Option so
// that tests run the production code against fake trees.
const (
	DefaultSysfsRoot     = "/sys"
	DefaultDevRoot       = "/dev"
	DefaultCDIOutputDir  = "/var/run/cdi"
	DefaultNVMLLibrary   = "libnvidia-ml.so.1"
	DefaultLdCache       = "/etc/ld.so.cache"
	DefaultDriverRoot    = "/"
	DefaultNVIDIALibPath = "/usr/local/nvidia/lib64"
	// Vendor is the CDI vendor of every spec accel-cri writes.
	Vendor = "accel-cri.io"
)

// StaticDevice is a device node named in the config for hardware that no
// discovery knows.
type StaticDevice struct {
	// Name is the CDI device name (class "device").
	Name string
	// Path is the host character (or block) device path, under the dev root.
	Path string
}

// options is what a Manager is built from; New fills the defaults in one
// place (options are applied over them).
type options struct {
	sysfsRoot   string
	devRoot     string
	driverRoot  string
	nvmlLibrary string
	ldCache     string
	nvidiaCaps  []string
	nvml        nvmlLib // nil: go-nvml over nvmlLibrary
	cdiDir      string
	static      []StaticDevice
	settle      time.Duration
	// containerLibDir is where NVIDIA driver libraries are mounted in
	// containers (LD_LIBRARY_PATH).
	containerLibDir string
}

func defaultOptions() options {
	return options{
		sysfsRoot:       DefaultSysfsRoot,
		devRoot:         DefaultDevRoot,
		driverRoot:      DefaultDriverRoot,
		nvmlLibrary:     DefaultNVMLLibrary,
		ldCache:         DefaultLdCache,
		nvidiaCaps:      DefaultNVIDIACapabilities,
		cdiDir:          DefaultCDIOutputDir,
		settle:          200 * time.Millisecond,
		containerLibDir: DefaultNVIDIALibPath,
	}
}

// Option configures a Manager.
type Option func(*options)

// WithSysfsRoot sets where sysfs is mounted ("/sys").
func WithSysfsRoot(dir string) Option { return func(o *options) { o.sysfsRoot = dir } }

// WithDevRoot sets the host's device directory ("/dev"). Device nodes
// found under it appear in containers under /dev at the same relative path.
func WithDevRoot(dir string) Option { return func(o *options) { o.devRoot = dir } }

// WithDriverRoot sets the root under which driver libraries are searched
// when the ld cache does not name them ("/").
func WithDriverRoot(dir string) Option { return func(o *options) { o.driverRoot = dir } }

// WithNVMLLibrary sets the NVML library go-nvml dlopens
// ("libnvidia-ml.so.1", found by the dynamic loader).
func WithNVMLLibrary(path string) Option { return func(o *options) { o.nvmlLibrary = path } }

// WithLdCache sets the ld cache read to find driver libraries
// ("/etc/ld.so.cache"; "" skips it).
func WithLdCache(path string) Option { return func(o *options) { o.ldCache = path } }

// WithNVIDIACapabilities sets the NVIDIA driver capabilities granted to
// containers (NVIDIACapabilities; DefaultNVIDIACapabilities): which driver
// libraries are mounted and NVIDIA_DRIVER_CAPABILITIES. Unknown names are
// ignored (the config validates them); none keeps the default.
func WithNVIDIACapabilities(caps ...string) Option {
	return func(o *options) {
		if len(caps) > 0 {
			o.nvidiaCaps = append([]string(nil), caps...)
		}
	}
}

// WithCDIDir sets the directory accel-cri writes its CDI specs into
// ("/var/run/cdi"; "" writes none).
func WithCDIDir(dir string) Option { return func(o *options) { o.cdiDir = dir } }

// WithStatic adds devices named in the config.
func WithStatic(devs ...StaticDevice) Option {
	return func(o *options) { o.static = append(o.static, devs...) }
}

// withNVML replaces go-nvml (tests pass the go-nvml mock).
func withNVML(l nvmlLib) Option { return func(o *options) { o.nvml = l } }

// WithSettle sets how long the watcher waits for a burst of device events
// to end before it rediscovers (200ms).
func WithSettle(d time.Duration) Option { return func(o *options) { o.settle = d } }
