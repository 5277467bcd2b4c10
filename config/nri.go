package config

import (
	"fmt"
	"path/filepath"
	"time"
)

// NRIConfig is the [nri] table: the Node Resource Interface, through which
// NRI plugins (resource managers, device injectors, policy agents) see pods
// and containers come and go and adjust containers as they are created.
type NRIConfig struct {
	Enable bool `toml:"enable" json:"enable" comment:"Serve NRI. While no plugin is connected, pod and container calls skip it (no events are built)."`
	// SocketPath is resolved against State by NRISocket.
	SocketPath       string   `toml:"socket_path" json:"socket_path" comment:"Unix socket external NRI plugins connect to (mode 0600: a plugin can change every container).\nEmpty: nri.sock in the state directory (/run/accel-cri/nri.sock by default). Not NRI's usual\n/var/run/nri/nri.sock, where a containerd or CRI-O of the same node serves its own NRI: point\nplugins meant for accel-cri here (their --nri-socket or stub.WithSocketPath). A socket another\nprocess answers on is refused at start."`
	PluginPath       string   `toml:"plugin_path" json:"plugin_path" comment:"Directory of NRI plugins accel-cri launches itself at start (executables named <index>-<name>,\nrun in index order). A missing directory means none. NRI's conventional directory: each runtime\nlaunches its own instance of them."`
	PluginConfigPath string   `toml:"plugin_config_path" json:"plugin_config_path" comment:"Directory of the launched plugins' configurations (<index>-<name>.conf or <name>.conf)."`
	RegistrationTime Duration `toml:"plugin_registration_timeout" json:"plugin_registration_timeout" comment:"How long a connecting plugin has to register before it is disconnected."`
	RequestTime      Duration `toml:"plugin_request_timeout" json:"plugin_request_timeout" comment:"How long a plugin has to answer one event (containerd's and CRI-O's default: 2s). A plugin that\ntakes longer is disconnected and the CRI call goes on without it, so a hung plugin delays a\npod or container by at most this, once."`
	ExternalPlugins  bool     `toml:"external_plugins" json:"external_plugins" comment:"Accept plugins that connect on socket_path. false: only the plugins of plugin_path run, and no\nsocket is made (containerd's disable_connections)."`
	// DefaultValidator is last: a table.
	DefaultValidator NRIValidatorConfig `toml:"default_validator" json:"default_validator" comment:"NRI's built-in validator: refuses kinds of adjustments from every plugin, and can require plugins."`
}

// NRIValidatorConfig is [nri.default_validator], the keys of containerd's
// table of the same name.
type NRIValidatorConfig struct {
	Enable                           bool     `toml:"enable" json:"enable" comment:"Validate every container's adjustments with the rules below."`
	RejectOCIHookAdjustment          bool     `toml:"reject_oci_hook_adjustment" json:"reject_oci_hook_adjustment" comment:"Refuse adjustments that add OCI hooks (programs the OCI runtime runs as root on the host)."`
	RejectRuntimeDefaultSeccomp      bool     `toml:"reject_runtime_default_seccomp_adjustment" json:"reject_runtime_default_seccomp_adjustment" comment:"Refuse changes of a RuntimeDefault seccomp policy."`
	RejectUnconfinedSeccomp          bool     `toml:"reject_unconfined_seccomp_adjustment" json:"reject_unconfined_seccomp_adjustment" comment:"Refuse changes of an Unconfined seccomp policy."`
	RejectCustomSeccomp              bool     `toml:"reject_custom_seccomp_adjustment" json:"reject_custom_seccomp_adjustment" comment:"Refuse changes of a Localhost (custom) seccomp policy."`
	RejectNamespaceAdjustment        bool     `toml:"reject_namespace_adjustment" json:"reject_namespace_adjustment" comment:"Refuse changes of a container's Linux namespaces."`
	RejectSysctlAdjustment           bool     `toml:"reject_sysctl_adjustment" json:"reject_sysctl_adjustment" comment:"Refuse changes of a container's sysctls."`
	RequiredPlugins                  []string `toml:"required_plugins" json:"required_plugins" comment:"Plugins (by name) that must have seen a container for it to be created."`
	TolerateMissingPluginsAnnotation string   `toml:"tolerate_missing_plugins_annotation" json:"tolerate_missing_plugins_annotation" comment:"Annotation by which a pod tolerates missing required plugins (static pods need it when\nrequired_plugins is set)."`
}

// DefaultNRI is the default [nri] table.
func DefaultNRI() NRIConfig {
	return NRIConfig{
		Enable:           true,
		PluginPath:       "/opt/nri/plugins",
		PluginConfigPath: "/etc/nri/conf.d",
		RegistrationTime: Duration(5 * time.Second),
		RequestTime:      Duration(2 * time.Second),
		ExternalPlugins:  true,
		DefaultValidator: NRIValidatorConfig{RequiredPlugins: []string{}},
	}
}

// NRISocket is the NRI socket: socket_path, or nri.sock in the state
// directory (each accel-cri has its own state directory, so two never
// share a socket).
func (c *Config) NRISocket() string {
	if c.NRI.SocketPath != "" {
		return c.NRI.SocketPath
	}
	return filepath.Join(c.State, "nri.sock")
}

// maxSocketPath is the longest path a unix socket address holds
// (sun_path is 108 bytes with the terminating NUL).
const maxSocketPath = 107

func (c *Config) validateNRI() []error {
	n := c.NRI
	if !n.Enable {
		return nil
	}
	var errs []error
	for _, p := range []struct{ key, path string }{
		{"nri.socket_path", n.SocketPath}, {"nri.plugin_path", n.PluginPath}, {"nri.plugin_config_path", n.PluginConfigPath},
	} {
		if p.path != "" && (!filepath.IsAbs(p.path) || filepath.Clean(p.path) != p.path) {
			errs = append(errs, fmt.Errorf("%s: %q is not an absolute clean path", p.key, p.path))
		}
	}
	if n.PluginPath == "" {
		errs = append(errs, fmt.Errorf("nri.plugin_path: must be set"))
	}
	if sock := c.NRISocket(); n.ExternalPlugins {
		if len(sock) > maxSocketPath {
			errs = append(errs, fmt.Errorf("nri.socket_path: %q is longer than a unix socket path may be (%d bytes)", sock, maxSocketPath))
		}
		if sock == c.Socket || sock == c.DebugSocket {
			errs = append(errs, fmt.Errorf("nri.socket_path: %q is another socket of accel-cri", sock))
		}
	}
	if n.RegistrationTime <= 0 {
		errs = append(errs, fmt.Errorf("nri.plugin_registration_timeout: %s must be positive", time.Duration(n.RegistrationTime)))
	}
	if n.RequestTime <= 0 {
		errs = append(errs, fmt.Errorf("nri.plugin_request_timeout: %s must be positive", time.Duration(n.RequestTime)))
	}
	return errs
}
