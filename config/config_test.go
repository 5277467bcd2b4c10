package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultRoundTrip(t *testing.T) {
	b, err := Marshal(Default())
	if err != nil {
		t.Fatal(err)
	}
	// Every key carries a comment for operators.
	lines := strings.Split(string(b), "\n")
	// A map entry's table ([runtimes.runc]) follows its map's table, which
	// carries the comment.
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		prev := ""
		if i > 0 {
			prev = strings.TrimSpace(lines[i-1])
		}
		if !strings.HasPrefix(prev, "#") && !(strings.HasPrefix(l, "[") && strings.HasPrefix(prev, "[")) {
			t.Errorf("key line %q has no comment above it", l)
		}
	}
	p := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Load(p, false)
	if err != nil {
		t.Fatal(err)
	}
	if got.PullProgressTime != Duration(5*time.Minute) || got.Socket != Default().Socket || len(got.CNIBinDirs) != 2 {
		t.Fatalf("round trip changed values: %+v", got)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		desc    string
		content string
		wantErr string
		check   func(*testing.T, Config)
	}{
		{desc: "override one key", content: "socket = \"/tmp/x.sock\"\nimage_pull_progress_timeout = \"30s\"\n", check: func(t *testing.T, c Config) {
			if c.Socket != "/tmp/x.sock" || c.PullProgressTime != Duration(30*time.Second) || c.Root != Default().Root {
				t.Errorf("got %+v", c)
			}
		}},
		{desc: "unknown key rejected", content: "sockett = \"/x\"\n", wantErr: "sockett"},
		{desc: "bad duration", content: "image_pull_progress_timeout = \"five\"\n", wantErr: "invalid duration"},
		{desc: "syntax error has position", content: "socket = \n", wantErr: ":1:"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.toml")
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(p, false)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestLoadMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent.toml")
	if _, err := Load(missing, true); err != nil {
		t.Fatalf("optional missing file: %v", err)
	}
	if _, err := Load(missing, false); err == nil {
		t.Fatal("explicit missing file: want error")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		desc    string
		mutate  func(*Config)
		wantErr string
	}{
		{desc: "default ok", mutate: func(*Config) {}},
		{desc: "relative socket", mutate: func(c *Config) { c.Socket = "run/x.sock" }, wantErr: "socket"},
		{desc: "unclean root", mutate: func(c *Config) { c.Root = "/var/lib/../x" }, wantErr: "root"},
		{desc: "relative registry dir", mutate: func(c *Config) { c.RegistryConfDir = "certs.d" }, wantErr: "registry_config_dir"},
		{desc: "no criu path", mutate: func(c *Config) { c.Checkpoint.CRIUPath = "" }, wantErr: "checkpoint.criu_path"},
		{desc: "relative signature policy", mutate: func(c *Config) { c.SignaturePolicy = "policy.json" }, wantErr: "signature_policy"},
		{desc: "unclean signature policy dir", mutate: func(c *Config) { c.SignaturePolicyDir = "/etc/accel-cri/../policy.d" }, wantErr: "signature_policy_dir"},
		{desc: "bad driver", mutate: func(c *Config) { c.CgroupDriver = "cgroupv3" }, wantErr: "cgroup_driver"},
		{desc: "bad log level", mutate: func(c *Config) { c.LogLevel = "loud" }, wantErr: "log_level"},
		{desc: "negative timeout", mutate: func(c *Config) { c.PullProgressTime = -1 }, wantErr: "image_pull_progress_timeout"},
		{desc: "negative stats period", mutate: func(c *Config) { c.StatsPeriod = -1 }, wantErr: "stats_collection_period"},
		{desc: "stats period under a second", mutate: func(c *Config) { c.StatsPeriod = Duration(500 * time.Millisecond) }, wantErr: "stats_collection_period"},
		{desc: "no binary without address", mutate: func(c *Config) { c.ContainerdBinary = "" }, wantErr: "containerd_binary"},
		{desc: "address without binary ok", mutate: func(c *Config) { c.ContainerdBinary = ""; c.ContainerdAddr = "/run/containerd/containerd.sock" }},
		{desc: "empty namespace", mutate: func(c *Config) { c.Namespace = "" }, wantErr: "namespace"},
		{desc: "streaming address without port", mutate: func(c *Config) { c.StreamingAddr = "127.0.0.1" }, wantErr: "streaming_address"},
		{desc: "streaming TLS cert without key", mutate: func(c *Config) { c.StreamingTLSCert = "/etc/accel-cri/tls.crt" }, wantErr: "set both or neither"},
		{desc: "streaming TLS key without cert", mutate: func(c *Config) { c.StreamingTLSKey = "/etc/accel-cri/tls.key" }, wantErr: "set both or neither"},
		{desc: "streaming TLS relative path", mutate: func(c *Config) { c.StreamingTLSCert, c.StreamingTLSKey = "tls.crt", "/k" }, wantErr: "streaming_tls_cert"},
		{desc: "metrics off ok", mutate: func(c *Config) { c.MetricsAddr = "" }},
		{desc: "metrics loopback ok", mutate: func(c *Config) { c.MetricsAddr = "127.0.0.1:9838" }},
		{desc: "metrics all interfaces ok", mutate: func(c *Config) { c.MetricsAddr = ":9838" }},
		{desc: "metrics ipv6 ok", mutate: func(c *Config) { c.MetricsAddr = "[::1]:9838" }},
		{desc: "metrics without port", mutate: func(c *Config) { c.MetricsAddr = "127.0.0.1" }, wantErr: "metrics_address"},
		{desc: "metrics port not a number", mutate: func(c *Config) { c.MetricsAddr = "127.0.0.1:http" }, wantErr: "metrics_address"},
		{desc: "metrics port too large", mutate: func(c *Config) { c.MetricsAddr = "127.0.0.1:70000" }, wantErr: "metrics_address"},
		{desc: "debug socket relative", mutate: func(c *Config) { c.DebugSocket = "debug.sock" }, wantErr: "debug_socket"},
		{desc: "debug socket is the CRI socket", mutate: func(c *Config) { c.DebugSocket = c.Socket }, wantErr: "debug_socket: must differ"},
		{desc: "debug socket ok", mutate: func(c *Config) { c.DebugSocket = "/run/accel-cri/debug.sock" }},
		{desc: "streaming TLS both ok", mutate: func(c *Config) {
			c.StreamingTLSCert, c.StreamingTLSKey = "/etc/accel-cri/tls.crt", "/etc/accel-cri/tls.key"
		}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			c := Default()
			tc.mutate(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestIsLoopbackAddr(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:9838", true},
		{"127.0.0.2:1", true},
		{"[::1]:9838", true},
		{"localhost:9838", true},
		{":9838", false},
		{"0.0.0.0:9838", false},
		{"10.0.0.1:9838", false},
		{"node.example:9838", false},
		{"garbage", false},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			if got := IsLoopbackAddr(tc.addr); got != tc.want {
				t.Fatalf("IsLoopbackAddr(%q) = %v, want %v", tc.addr, got, tc.want)
			}
		})
	}
}
