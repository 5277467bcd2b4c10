// Package config owns accel-cri's configuration: the TOML file format, its
// documented defaults, validation, and the precedence rule that command-line
// flags override the file. It must not start anything or touch the host
// beyond reading the config file.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// DefaultPath is where accel-cri looks for its config file when --config is
// not given. The file is optional at that path.
const DefaultPath = "/etc/accel-cri/config.toml"

// Config is the whole accel-cri configuration. Field comments are printed by
// `accel-cri config default`, so they are written for node operators.
type Config struct {
	Socket             string   `toml:"socket" json:"socket" comment:"Unix socket on which the CRI RuntimeService and ImageService are served.\nkubelet: --container-runtime-endpoint unix://<socket>. Created with mode 0660."`
	Root               string   `toml:"root" json:"root" comment:"Persistent state: the managed containerd's root, checkpoints. Must be on a filesystem that supports overlayfs."`
	State              string   `toml:"state" json:"state" comment:"Volatile state (tmpfs is fine): the managed containerd's state and socket, runc state, pod runtime files."`
	ContainerdAddr     string   `toml:"containerd_address" json:"containerd_address" comment:"Address of an existing containerd v2 daemon to use. Empty: accel-cri starts and supervises its\nown containerd (the managed default) with its root and state under root/state above."`
	ContainerdBinary   string   `toml:"containerd_binary" json:"containerd_binary" comment:"containerd binary for the managed daemon: a path, or a name looked up in PATH."`
	Namespace          string   `toml:"namespace" json:"namespace" comment:"containerd namespace that holds accel-cri's images, containers and leases. containerd's own CRI uses\n\"k8s.io\"; a different namespace lets both share one daemon."`
	Snapshotter        string   `toml:"snapshotter" json:"snapshotter" comment:"containerd snapshotter for image layers and container root filesystems."`
	SandboxImage       string   `toml:"sandbox_image" json:"sandbox_image" comment:"Image of the pause container that holds each pod's namespaces. Pinned: never removed by image GC."`
	RegistryConfDir    string   `toml:"registry_config_dir" json:"registry_config_dir" comment:"containerd-style hosts.toml tree (<dir>/<host[:port]>/hosts.toml) for registry mirrors,\nplain-HTTP and self-signed registries. Empty: registries are used directly over HTTPS\n(plain HTTP for localhost/127.0.0.1)."`
	PullProgressTime   Duration `toml:"image_pull_progress_timeout" json:"image_pull_progress_timeout" comment:"A pull that receives no bytes for this long is cancelled. \"0s\" disables the check."`
	SignaturePolicy    string   `toml:"signature_policy" json:"signature_policy" comment:"Default image signature policy, a containers-policy.json file (docs/security.md): applies to pulls\nof pods whose namespace has no file in signature_policy_dir, and to pulls without a pod. Empty: none.\nA file that does not parse refuses every pull under it (SignatureValidationFailed)."`
	SignaturePolicyDir string   `toml:"signature_policy_dir" json:"signature_policy_dir" comment:"Directory of per-namespace signature policies, <dir>/<pod namespace>.json, same format. Files are\nread again when they change. Empty: none. With neither key set, images are not verified."`
	CNIConfDir         string   `toml:"cni_conf_dir" json:"cni_conf_dir" comment:"Directory of CNI network configurations; the first (lexical) .conflist/.conf is used.\nStatus reports NetworkReady=false while it holds none."`
	CNIBinDirs         []string `toml:"cni_bin_dirs" json:"cni_bin_dirs" comment:"Directories searched for CNI plugin binaries."`
	PodShmSize         int64    `toml:"pod_shm_size" json:"pod_shm_size" comment:"Size in bytes of each pod's /dev/shm (a tmpfs shared by the pod's containers)."`
	InfraContainer     bool     `toml:"infra_container" json:"infra_container" comment:"Give every pod a pause (infra) container. When false (the default), a pod of a runc-style handler\nthat shares no PID or user namespace has none: its UTS and IPC namespaces are pinned by bind mounts\n(as CRI-O's drop_infra_ctr), which makes RunPodSandbox faster and saves a process per pod. Pods that\nshare a PID namespace, user-namespaced pods and VM/gVisor handlers always get one."`
	StreamingAddr      string   `toml:"streaming_address" json:"streaming_address" comment:"Address (host:port) of the exec/attach/port-forward streaming server. kubelet connects to the URLs it\nhands out, so the host must be reachable from kubelet. Port 0 picks a free port."`
	StreamingTLSCert   string   `toml:"streaming_tls_cert" json:"streaming_tls_cert" comment:"PEM certificate file for serving the streaming server over HTTPS. Set both streaming_tls_cert and\nstreaming_tls_key, or neither (plain HTTP)."`
	StreamingTLSKey    string   `toml:"streaming_tls_key" json:"streaming_tls_key" comment:"PEM private key file matching streaming_tls_cert."`
	MetricsAddr        string   `toml:"metrics_address" json:"metrics_address" comment:"Address (host:port) of the Prometheus metrics endpoint (HTTP, path /metrics). Empty: off.\nKeep it on loopback, for example \"127.0.0.1:9838\", unless a firewall guards the port: the\nmetrics name pods' runtime handlers, images and devices. See docs/operations.md."`
	StatsPeriod        Duration `toml:"stats_collection_period" json:"stats_collection_period" comment:"How often the CPU, memory, writable-layer and network use of every running container and pod is\nsampled for kubelet's stats calls, which then answer from memory; a sample is at most this old.\nkubelet's housekeeping runs every 10s. \"0s\": sample on every call instead (slower calls, no\nbackground work). Otherwise at least 1s."`
	CgroupDriver       string   `toml:"cgroup_driver" json:"cgroup_driver" comment:"Cgroup driver reported to kubelet and used for pod cgroups: \"auto\" (systemd when systemd is PID 1,\notherwise cgroupfs), \"cgroupfs\" or \"systemd\"."`
	LogLevel           string   `toml:"log_level" json:"log_level" comment:"Log verbosity: \"info\", \"debug\" or \"trace\"."`
	DebugSocket        string   `toml:"debug_socket" json:"debug_socket" comment:"Unix socket serving Go's net/http/pprof (profiles, heap, goroutine dump at\n/debug/pprof/goroutine?debug=2), mode 0600 for root only. Empty (the default): off. See docs/debugging.md."`
	DefaultRuntime     string   `toml:"default_runtime" json:"default_runtime" comment:"Runtime handler for pods that name none (RunPodSandbox runtime_handler \"\"). Must be a key of [runtimes]."`
	// Runtimes is last: TOML tables must follow the plain keys.
	Runtimes   map[string]RuntimeConfig `toml:"runtimes" json:"runtimes" comment:"Runtime handlers (Kubernetes RuntimeClass .handler), one table each: [runtimes.<handler>].\nThe name is a DNS label. See docs/runtime-handlers.md for crun, gVisor (runsc) and Kata examples."`
	Devices    DevicesConfig            `toml:"devices" json:"devices" comment:"Accelerators: discovery, CDI specs and injection, kubelet device plugin (docs/devices.md)."`
	NRI        NRIConfig                `toml:"nri" json:"nri" comment:"Node Resource Interface: NRI plugins see pods and containers come and go and adjust containers\nas they are created (docs/configuration.md#nri)."`
	Checkpoint CheckpointConfig         `toml:"checkpoint" json:"checkpoint" comment:"Checkpoint and restore of containers with CRIU (docs/checkpoint.md)."`
}

// Duration is a time.Duration that reads and writes as a Go duration string
// ("5m0s") in TOML.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", b, err)
	}
	*d = Duration(v)
	return nil
}

// Default returns the configuration used when neither file nor flags say otherwise.
func Default() Config {
	return Config{
		Socket:           "/run/accel-cri/accel-cri.sock",
		Root:             "/var/lib/accel-cri",
		State:            "/run/accel-cri",
		ContainerdBinary: "containerd",
		Namespace:        "accel-cri",
		Snapshotter:      "overlayfs",
		SandboxImage:     "registry.k8s.io/pause:3.10.1",
		PullProgressTime: Duration(5 * time.Minute),
		CNIConfDir:       "/etc/cni/net.d",
		CNIBinDirs:       []string{"/usr/lib/cni", "/opt/cni/bin"},
		PodShmSize:       64 << 20,
		StatsPeriod:      Duration(10 * time.Second),
		StreamingAddr:    "127.0.0.1:0",
		CgroupDriver:     "auto",
		LogLevel:         "info",
		DefaultRuntime:   "runc",
		Runtimes:         map[string]RuntimeConfig{"runc": {Type: RuntimeTypeRunc, BinaryName: DefaultRuncBinary}},
		Devices:          DefaultDevices(),
		NRI:              DefaultNRI(),
		Checkpoint:       DefaultCheckpoint(),
	}
}

// Load reads the TOML file at path over the defaults. A missing file is an
// error unless optional is set (the default path is optional, an explicit
// --config is not). Unknown keys are rejected so typos do not pass silently.
func Load(path string, optional bool) (Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		if optional && errors.Is(err, fs.ErrNotExist) {
			return cfg, nil
		}
		return cfg, fmt.Errorf("read config %s: %w", path, err)
	}
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			return cfg, fmt.Errorf("config %s: %s", path, strings.TrimSpace(strict.String()))
		}
		var derr *toml.DecodeError
		if errors.As(err, &derr) {
			row, col := derr.Position()
			return cfg, fmt.Errorf("config %s:%d:%d: %w", path, row, col, err)
		}
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Marshal renders cfg as TOML with every key commented.
func Marshal(cfg Config) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# accel-cri configuration. Flags given on the command line override these values.\n\n")
	enc := toml.NewEncoder(&buf)
	enc.SetIndentTables(true)
	if err := enc.Encode(cfg); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Validate checks the values that accel-cri would otherwise trip over later,
// so a bad config fails at start with the key named.
func (c *Config) Validate() error {
	var errs []error
	abs := func(key, p string, required bool) {
		if p == "" {
			if required {
				errs = append(errs, fmt.Errorf("%s: must be set", key))
			}
			return
		}
		if !filepath.IsAbs(p) {
			errs = append(errs, fmt.Errorf("%s: %q is not an absolute path", key, p))
		} else if filepath.Clean(p) != p {
			errs = append(errs, fmt.Errorf("%s: %q is not a clean path", key, p))
		}
	}
	abs("socket", c.Socket, true)
	abs("root", c.Root, true)
	abs("state", c.State, true)
	abs("registry_config_dir", c.RegistryConfDir, false)
	abs("signature_policy", c.SignaturePolicy, false)
	abs("signature_policy_dir", c.SignaturePolicyDir, false)
	abs("cni_conf_dir", c.CNIConfDir, true)
	for _, d := range c.CNIBinDirs {
		abs("cni_bin_dirs", d, true)
	}
	if c.ContainerdAddr == "" && c.ContainerdBinary == "" {
		errs = append(errs, errors.New("containerd_binary: must be set when containerd_address is empty"))
	}
	if c.Namespace == "" {
		errs = append(errs, errors.New("namespace: must be set"))
	}
	if c.Snapshotter == "" {
		errs = append(errs, errors.New("snapshotter: must be set"))
	}
	if c.SandboxImage == "" {
		errs = append(errs, errors.New("sandbox_image: must be set"))
	}
	if c.PodShmSize < 4096 {
		errs = append(errs, fmt.Errorf("pod_shm_size: %d is less than one page (4096)", c.PodShmSize))
	}
	if c.StatsPeriod < 0 || (c.StatsPeriod > 0 && c.StatsPeriod < Duration(time.Second)) {
		errs = append(errs, fmt.Errorf("stats_collection_period: %s must be 0s or at least 1s", time.Duration(c.StatsPeriod)))
	}
	if c.PullProgressTime < 0 {
		errs = append(errs, errors.New("image_pull_progress_timeout: must not be negative"))
	}
	if c.StreamingAddr == "" {
		errs = append(errs, errors.New("streaming_address: must be set"))
	} else if _, _, err := net.SplitHostPort(c.StreamingAddr); err != nil {
		errs = append(errs, fmt.Errorf("streaming_address: %w", err))
	}
	if c.MetricsAddr != "" {
		if err := validateHostPort(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("metrics_address: %w", err))
		}
	}
	if (c.StreamingTLSCert == "") != (c.StreamingTLSKey == "") {
		errs = append(errs, errors.New("streaming_tls_cert, streaming_tls_key: set both or neither"))
	}
	abs("streaming_tls_cert", c.StreamingTLSCert, false)
	abs("streaming_tls_key", c.StreamingTLSKey, false)
	abs("debug_socket", c.DebugSocket, false)
	if c.DebugSocket != "" && c.DebugSocket == c.Socket {
		errs = append(errs, errors.New("debug_socket: must differ from socket"))
	}
	switch c.CgroupDriver {
	case "auto", "cgroupfs", "systemd":
	default:
		errs = append(errs, fmt.Errorf("cgroup_driver: %q is not one of auto, cgroupfs, systemd", c.CgroupDriver))
	}
	if _, err := ParseLogLevel(c.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("log_level: %w", err))
	}
	errs = append(errs, c.validateRuntimes()...)
	errs = append(errs, c.Devices.validate()...)
	errs = append(errs, c.validateNRI()...)
	errs = append(errs, c.validateCheckpoint()...)
	return errors.Join(errs...)
}

// ParseLogLevel maps a log level name to a klog verbosity.
func ParseLogLevel(level string) (int, error) {
	switch level {
	case "info", "":
		return 0, nil
	case "debug":
		return 4, nil
	case "trace":
		return 6, nil
	}
	return 0, fmt.Errorf("%q is not one of info, debug, trace", level)
}

// validateHostPort accepts host:port with a numeric port; the host may be
// empty (all addresses), an IP or a name.
func validateHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port %q is not a number in 0-65535", addr, port)
	}
	return nil
}

// IsLoopbackAddr reports whether the host of addr (host:port) is a loopback
// address or "localhost"; an empty host (all interfaces) is not.
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
