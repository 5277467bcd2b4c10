package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/accel-cri/accel-cri/config"
)

func TestCommands(t *testing.T) {
	tests := []struct {
		desc    string
		args    []string
		want    []string
		wantErr string
	}{
		{desc: "version", args: []string{"version"}, want: []string{"accel-cri ", "commit: ", "containerd: v2.4.2"}},
		{desc: "config default", args: []string{"config", "default"}, want: []string{"socket = '/run/accel-cri/accel-cri.sock'", "# Unix socket", "image_pull_progress_timeout = '5m0s'"}},
		{desc: "config without default", args: []string{"config"}, wantErr: "usage: accel-cri config default"},
		{desc: "help", args: []string{"help"}, want: []string{"--containerd-address", "--registry-config-dir", "--metrics-address", "accel-cri config default", "accel-cri check"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(tc.args, &out, &errb)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.toml")
	os.WriteFile(file, []byte("socket = \"/from/file.sock\"\nroot = \"/from/file\"\n"), 0o600)
	tests := []struct {
		desc    string
		args    []string
		check   func(config.Config) bool
		wantErr string
	}{
		{desc: "file values", args: []string{"--config", file}, check: func(c config.Config) bool {
			return c.Socket == "/from/file.sock" && c.Root == "/from/file"
		}},
		{desc: "flag overrides file", args: []string{"--config", file, "--socket", "/flag.sock"}, check: func(c config.Config) bool {
			return c.Socket == "/flag.sock" && c.Root == "/from/file"
		}},
		{desc: "cni bin dir flag replaces list", args: []string{"--config", file, "--cni-bin-dir", "/x/cni"}, check: func(c config.Config) bool {
			return len(c.CNIBinDirs) == 1 && c.CNIBinDirs[0] == "/x/cni"
		}},
		{desc: "metrics off by default", args: []string{"--config", file}, check: func(c config.Config) bool { return c.MetricsAddr == "" }},
		{desc: "metrics address flag", args: []string{"--config", file, "--metrics-address", "127.0.0.1:9838"}, check: func(c config.Config) bool {
			return c.MetricsAddr == "127.0.0.1:9838"
		}},
		{desc: "metrics address without port", args: []string{"--config", file, "--metrics-address", "127.0.0.1"}, wantErr: "metrics_address"},
		{desc: "debug socket flag", args: []string{"--config", file, "--debug-socket", "/run/x/debug.sock"}, check: func(c config.Config) bool {
			return c.DebugSocket == "/run/x/debug.sock"
		}},
		{desc: "debug socket off by default", args: []string{"--config", file}, check: func(c config.Config) bool {
			return c.DebugSocket == ""
		}},
		{desc: "explicit missing config", args: []string{"--config", filepath.Join(dir, "none.toml")}, wantErr: "none.toml"},
		{desc: "invalid value", args: []string{"--config", file, "--socket", "rel.sock"}, wantErr: "socket"},
		{desc: "unknown flag", args: []string{"--nope"}, wantErr: "flag provided but not defined"},
		{desc: "unknown command", args: []string{"--config", file, "frobnicate"}, wantErr: "unknown command"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			c, err := parseFlags(tc.args, &bytes.Buffer{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Fatalf("config = %+v", c)
			}
		})
	}
}

// docs/configuration.md must show the default config exactly as printed.
func TestConfigReferenceCurrent(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run([]string{"config", "default"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), out.String()) {
		t.Fatal("docs/configuration.md is out of date: paste the output of `accel-cri config default` into it")
	}
}
