package devices

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"k8s.io/klog/v2"
)

// captureKlog sends klog's output to a buffer for the test.
func captureKlog(t *testing.T) *bytes.Buffer {
	t.Helper()
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	if err := fs.Set("logtostderr", "false"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	klog.SetOutput(&buf)
	t.Cleanup(func() {
		klog.SetOutput(os.Stderr)
		_ = fs.Set("logtostderr", "true")
	})
	return &buf
}

// TestCDISpecTrust: a spec is used only when it and its directory are
// root-owned and not group or world writable; otherwise its devices are
// NotFound and the reason is logged.
func TestCDISpecTrust(t *testing.T) {
	needRoot(t)
	const spec = "cdiVersion: 0.6.0\nkind: vendor.example/thing\ndevices:\n- name: x\n  containerEdits:\n    env: [THING=x]\n"
	for _, tc := range []struct {
		desc       string
		setup      func(t *testing.T, dir, file string)
		wantReason string // "" means trusted
	}{
		{desc: "root-owned 0644 in a 0755 dir", setup: func(*testing.T, string, string) {}},
		{desc: "world-writable dir", setup: func(t *testing.T, dir, _ string) { chmod(t, dir, 0o777) }, wantReason: "writable by group or others"},
		{desc: "group-writable file", setup: func(t *testing.T, _, file string) { chmod(t, file, 0o664) }, wantReason: "writable by group or others"},
		{desc: "file owned by a user", setup: func(t *testing.T, _, file string) { chown(t, file, 1000) }, wantReason: "owned by uid 1000"},
		{desc: "dir owned by a user", setup: func(t *testing.T, dir, _ string) { chown(t, dir, 1000) }, wantReason: "owned by uid 1000"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "cdi")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, "thing.yaml")
			if err := os.WriteFile(file, []byte(spec), 0o644); err != nil {
				t.Fatal(err)
			}
			tc.setup(t, dir, file)
			logs := captureKlog(t)
			inj, err := NewInjector([]string{dir})
			if err != nil {
				t.Fatal(err)
			}
			err = inj.Check([]string{"vendor.example/thing=x"})
			if tc.wantReason == "" {
				if err != nil {
					t.Fatalf("trusted spec refused: %v", err)
				}
				return
			}
			if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), tc.wantReason) {
				t.Fatalf("err = %v, want NotFound naming %q", err, tc.wantReason)
			}
			klog.Flush()
			if !strings.Contains(logs.String(), "Ignoring a CDI spec") || !strings.Contains(logs.String(), tc.wantReason) {
				t.Fatalf("no logged reason; logs:\n%s", logs)
			}
		})
	}
}

func chmod(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func chown(t *testing.T, p string, uid int) {
	t.Helper()
	if err := os.Chown(p, uid, 0); err != nil {
		t.Fatal(err)
	}
}
