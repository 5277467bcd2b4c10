package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// containerd runtime types accel-cri knows the options of. Other
// io.containerd.* types are accepted and get the generic CRI runtime
// options (config_path).
const (
	RuntimeTypeRunc  = "io.containerd.runc.v2"
	RuntimeTypeRunsc = "io.containerd.runsc.v1"
	RuntimeTypeKata  = "io.containerd.kata.v2"
)

// DefaultRuncBinary is the OCI runtime a runc.v2 handler runs when its
// binary_name is empty: runc >= 1.2 with seccomp, built by
// hack/install-deps.sh (runc 1.5). Distribution packages of runc may be older
// (Debian bookworm's 1.1 has no idmapped mounts, so no user namespaces, and
// known container escapes); `accel-cri check` reports the version.
const DefaultRuncBinary = "/usr/local/sbin/runc"

// RuntimeConfig is one runtime handler: how containerd starts the pods
// that name it (Kubernetes RuntimeClass .handler).
type RuntimeConfig struct {
	Type                         string   `toml:"type" json:"type" comment:"containerd runtime type (shim): \"io.containerd.runc.v2\" (runc and other runc-compatible OCI\nruntimes such as crun, or runsc without its own shim), \"io.containerd.runsc.v1\" (gVisor's shim),\n\"io.containerd.kata.v2\" (Kata Containers), or another io.containerd.<name>.v<N>. Empty: runc.v2."`
	BinaryName                   string   `toml:"binary_name" json:"binary_name" comment:"runc.v2 only: the OCI runtime binary the shim runs (name in PATH or absolute path). Empty:\n/usr/local/sbin/runc, where hack/install-deps.sh builds runc 1.5 (docs/install.md)."`
	Root                         string   `toml:"root" json:"root" comment:"runc.v2 only: the OCI runtime's state directory. Empty: <state>/sandbox/runtimes/<handler>."`
	ConfigPath                   string   `toml:"config_path" json:"config_path" comment:"Shims other than runc.v2: the shim's own config file (Kata's configuration.toml,\ngVisor's runsc.toml), passed as containerd's CRI runtime options. Empty: the shim's default."`
	PrivilegedWithoutHostDevices bool     `toml:"privileged_without_host_devices" json:"privileged_without_host_devices" comment:"Privileged containers of this handler get no host devices (only those the container asks for).\nSet it for VM handlers: the host's /dev means nothing inside the guest."`
	SandboxPerContainer          bool     `toml:"sandbox_per_container" json:"sandbox_per_container" comment:"Leave out the CRI annotation io.kubernetes.cri.container-type that makes a sandboxed OCI runtime\nput all containers of a pod into one sandbox: each container gets its own. Needed for runsc\nrun by the runc.v2 shim, which cannot see a container exit inside a shared gVisor sandbox."`
	PodAnnotations               []string `toml:"pod_annotations" json:"pod_annotations" comment:"Pod annotations (keys, or prefixes ending in \"*\" such as \"io.katacontainers.*\") copied into the OCI spec of\nthe pod's sandbox and of its containers, where the runtime reads them. Others are not passed."`
	ContainerAnnotations         []string `toml:"container_annotations" json:"container_annotations" comment:"Container annotations (keys or prefixes ending in \"*\") copied into that container's OCI spec."`
	Snapshotter                  string   `toml:"snapshotter" json:"snapshotter" comment:"containerd snapshotter for this handler's root filesystems (and for images pulled for it,\nImageSpec.runtime_handler). Empty: the global snapshotter."`
}

// OCIBinary is the OCI runtime binary the runc.v2 shim runs for this
// handler: binary_name, or DefaultRuncBinary when that is empty. Other
// runtime types choose their own binary: "".
func (rc RuntimeConfig) OCIBinary() string {
	if rc.Type != "" && rc.Type != RuntimeTypeRunc {
		return ""
	}
	if rc.BinaryName == "" {
		return DefaultRuncBinary
	}
	return rc.BinaryName
}

// dnsLabel is what Kubernetes accepts as a RuntimeClass handler.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// runtimeType is containerd's form of a shim name: io.containerd.<name>.v<N>.
var runtimeType = regexp.MustCompile(`^io\.containerd\.[a-z0-9_-]+(\.[a-z0-9_-]+)*\.v[0-9]+$`)

// RuntimeNames returns the handler names, sorted.
func (c *Config) RuntimeNames() []string {
	names := make([]string, 0, len(c.Runtimes))
	for n := range c.Runtimes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (c *Config) validateRuntimes() []error {
	var errs []error
	if len(c.Runtimes) == 0 {
		return []error{errors.New("runtimes: at least one runtime handler is required")}
	}
	if _, ok := c.Runtimes[c.DefaultRuntime]; !ok {
		errs = append(errs, fmt.Errorf("default_runtime: %q is not a key of [runtimes] (have %s)", c.DefaultRuntime, strings.Join(c.RuntimeNames(), ", ")))
	}
	for _, name := range c.RuntimeNames() {
		rc := c.Runtimes[name]
		key := "runtimes." + name
		if len(name) > 63 || !dnsLabel.MatchString(name) {
			errs = append(errs, fmt.Errorf("%s: handler name %q is not a DNS label (lower case letters, digits, '-', at most 63)", key, name))
		}
		typ := rc.Type
		if typ == "" {
			typ = RuntimeTypeRunc
		}
		if !runtimeType.MatchString(typ) {
			errs = append(errs, fmt.Errorf("%s.type: %q is not a containerd runtime type (io.containerd.<name>.v<N>)", key, rc.Type))
		}
		if typ != RuntimeTypeRunc {
			if rc.BinaryName != "" {
				errs = append(errs, fmt.Errorf("%s.binary_name: only for type %s (the %s shim chooses its own binary)", key, RuntimeTypeRunc, typ))
			}
			if rc.Root != "" {
				errs = append(errs, fmt.Errorf("%s.root: only for type %s", key, RuntimeTypeRunc))
			}
		} else if rc.ConfigPath != "" {
			errs = append(errs, fmt.Errorf("%s.config_path: not used by type %s", key, RuntimeTypeRunc))
		}
		if rc.Root != "" && (!filepath.IsAbs(rc.Root) || filepath.Clean(rc.Root) != rc.Root) {
			errs = append(errs, fmt.Errorf("%s.root: %q is not a clean absolute path", key, rc.Root))
		}
		if rc.ConfigPath != "" && !filepath.IsAbs(rc.ConfigPath) {
			errs = append(errs, fmt.Errorf("%s.config_path: %q is not an absolute path", key, rc.ConfigPath))
		}
		if strings.ContainsAny(rc.BinaryName, " \t\n") {
			errs = append(errs, fmt.Errorf("%s.binary_name: %q contains white space", key, rc.BinaryName))
		}
		for _, l := range []struct {
			field    string
			patterns []string
		}{{"pod_annotations", rc.PodAnnotations}, {"container_annotations", rc.ContainerAnnotations}} {
			for _, p := range l.patterns {
				if p == "" || strings.Contains(strings.TrimSuffix(p, "*"), "*") {
					errs = append(errs, fmt.Errorf("%s.%s: %q is not a key or a prefix ending in \"*\"", key, l.field, p))
				}
			}
		}
	}
	return errs
}
