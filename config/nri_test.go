package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNRIDefaults(t *testing.T) {
	c := Default()
	n := c.NRI
	if !n.Enable || !n.ExternalPlugins || n.DefaultValidator.Enable {
		t.Errorf("defaults = %+v; want NRI on, external plugins accepted, validator off", n)
	}
	if n.RequestTime != Duration(2*time.Second) || n.RegistrationTime != Duration(5*time.Second) {
		t.Errorf("timeouts = %s, %s; want containerd's 2s, 5s", time.Duration(n.RequestTime), time.Duration(n.RegistrationTime))
	}
	// Not /var/run/nri/nri.sock: a containerd or CRI-O of the node serves
	// its own NRI there.
	if got := c.NRISocket(); got != "/run/accel-cri/nri.sock" {
		t.Errorf("NRISocket() = %q; want /run/accel-cri/nri.sock", got)
	}
	c.State = "/tmp/instance/state"
	if got := c.NRISocket(); got != "/tmp/instance/state/nri.sock" {
		t.Errorf("NRISocket() with state %s = %q; want the state dir's nri.sock", c.State, got)
	}
	c.NRI.SocketPath = "/run/x/nri.sock"
	if got := c.NRISocket(); got != "/run/x/nri.sock" {
		t.Errorf("NRISocket() with socket_path = %q", got)
	}
}

func TestNRILoad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.toml")
	content := `
[nri]
  socket_path = "/run/accel-cri/plugins.sock"
  plugin_request_timeout = "10s"
  external_plugins = false
  [nri.default_validator]
    enable = true
    reject_oci_hook_adjustment = true
    required_plugins = ["topology"]
`
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p, false)
	if err != nil {
		t.Fatal(err)
	}
	n := c.NRI
	if n.SocketPath != "/run/accel-cri/plugins.sock" || n.RequestTime != Duration(10*time.Second) || n.ExternalPlugins {
		t.Errorf("[nri] = %+v", n)
	}
	if v := n.DefaultValidator; !v.Enable || !v.RejectOCIHookAdjustment || len(v.RequiredPlugins) != 1 {
		t.Errorf("[nri.default_validator] = %+v", v)
	}
	// Keys not set keep their defaults.
	if n.PluginPath != "/opt/nri/plugins" || !n.Enable {
		t.Errorf("unset keys lost their defaults: %+v", n)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestNRIValidate(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		mutate  func(*Config)
		wantErr string
	}{
		{"relative socket", func(c *Config) { c.NRI.SocketPath = "nri.sock" }, "nri.socket_path"},
		{"unclean plugin path", func(c *Config) { c.NRI.PluginPath = "/opt/nri/../x" }, "nri.plugin_path"},
		{"no plugin path", func(c *Config) { c.NRI.PluginPath = "" }, "nri.plugin_path: must be set"},
		{"socket too long for sun_path", func(c *Config) { c.NRI.SocketPath = "/" + strings.Repeat("x", 110) }, "longer than a unix socket"},
		{"default socket under a long state dir", func(c *Config) { c.State = "/" + strings.Repeat("s", 100) }, "longer than a unix socket"},
		{"the CRI socket", func(c *Config) { c.NRI.SocketPath = c.Socket }, "another socket of accel-cri"},
		{"zero request timeout", func(c *Config) { c.NRI.RequestTime = 0 }, "nri.plugin_request_timeout"},
		{"negative registration timeout", func(c *Config) { c.NRI.RegistrationTime = Duration(-time.Second) }, "nri.plugin_registration_timeout"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := Default()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Validate = %v; want an error mentioning %q", err, tc.wantErr)
			}
			// Off, none of it matters.
			c.NRI.Enable = false
			if err := c.Validate(); err != nil && strings.Contains(err.Error(), "nri.") {
				t.Errorf("Validate with NRI off = %v; want no nri error", err)
			}
		})
	}
}
