package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRuntimesLoad(t *testing.T) {
	content := `
default_runtime = "crun"
[runtimes.crun]
  binary_name = "crun"
  root = "/run/accel-cri/crun"
[runtimes.runsc]
  type = "io.containerd.runc.v2"
  binary_name = "/usr/local/sbin/runsc-accel"
  sandbox_per_container = true
  snapshotter = "native"
[runtimes.kata]
  type = "io.containerd.kata.v2"
  config_path = "/etc/kata-containers/configuration.toml"
  privileged_without_host_devices = true
  pod_annotations = ["io.katacontainers.*"]
`
	p := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.RuntimeNames(), ","); got != "crun,kata,runc,runsc" {
		t.Errorf("handlers %s: the default runc entry must stay next to the configured ones", got)
	}
	if k := c.Runtimes["kata"]; k.Type != RuntimeTypeKata || !k.PrivilegedWithoutHostDevices || k.PodAnnotations[0] != "io.katacontainers.*" {
		t.Errorf("kata: %+v", k)
	}
	if r := c.Runtimes["runsc"]; !r.SandboxPerContainer || r.Snapshotter != "native" {
		t.Errorf("runsc: %+v", r)
	}
}

func TestRuntimesValidate(t *testing.T) {
	tests := []struct {
		desc    string
		edit    func(*Config)
		wantErr string
	}{
		{desc: "default is valid", edit: func(*Config) {}},
		{desc: "type empty means runc", edit: func(c *Config) { c.Runtimes["crun"] = RuntimeConfig{BinaryName: "crun"} }},
		{desc: "other containerd shim type", edit: func(c *Config) { c.Runtimes["wasm"] = RuntimeConfig{Type: "io.containerd.wasmtime.v1"} }},
		{desc: "unknown default", edit: func(c *Config) { c.DefaultRuntime = "kata" }, wantErr: `default_runtime: "kata" is not a key`},
		{desc: "no handlers", edit: func(c *Config) { c.Runtimes = nil }, wantErr: "at least one runtime handler"},
		{desc: "name not a DNS label", edit: func(c *Config) { c.Runtimes["Kata_VM"] = RuntimeConfig{} }, wantErr: "not a DNS label"},
		{desc: "type not containerd", edit: func(c *Config) { c.Runtimes["x"] = RuntimeConfig{Type: "kata"} }, wantErr: "runtimes.x.type"},
		{desc: "type without version", edit: func(c *Config) { c.Runtimes["x"] = RuntimeConfig{Type: "io.containerd.kata"} }, wantErr: "runtimes.x.type"},
		{desc: "root relative", edit: func(c *Config) { c.Runtimes["x"] = RuntimeConfig{Root: "run/x"} }, wantErr: "runtimes.x.root"},
		{desc: "binary for another shim", edit: func(c *Config) {
			c.Runtimes["k"] = RuntimeConfig{Type: RuntimeTypeKata, BinaryName: "kata-runtime"}
		}, wantErr: "runtimes.k.binary_name"},
		{desc: "config_path for runc", edit: func(c *Config) { c.Runtimes["x"] = RuntimeConfig{ConfigPath: "/etc/x.toml"} }, wantErr: "runtimes.x.config_path"},
		{desc: "config_path relative", edit: func(c *Config) {
			c.Runtimes["k"] = RuntimeConfig{Type: RuntimeTypeKata, ConfigPath: "kata.toml"}
		}, wantErr: "runtimes.k.config_path"},
		{desc: "annotation glob in the middle", edit: func(c *Config) {
			c.Runtimes["k"] = RuntimeConfig{Type: RuntimeTypeKata, PodAnnotations: []string{"io.*.x"}}
		}, wantErr: "runtimes.k.pod_annotations"},
		{desc: "empty annotation", edit: func(c *Config) { c.Runtimes["k"] = RuntimeConfig{ContainerAnnotations: []string{""}} }, wantErr: "runtimes.k.container_annotations"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			c := Default()
			tc.edit(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}
