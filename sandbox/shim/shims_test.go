package shim

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func writeBootstrap(t *testing.T, dir, content string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bootstrap.json"), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestReadSocket(t *testing.T) {
	for _, tc := range []struct {
		desc, content string // content "" : no file
		want          string
	}{
		{desc: "runc shim of containerd 2", content: `{"version":3,"address":"unix:///run/containerd/s/abc","protocol":"ttrpc"}`, want: "/run/containerd/s/abc"},
		{desc: "plain path", content: `{"version":3,"address":"/run/s.sock","protocol":"TTRPC"}`, want: "/run/s.sock"},
		{desc: "task API v2 shim", content: `{"version":2,"address":"unix:///run/containerd/s/abc","protocol":"ttrpc"}`},
		{desc: "grpc shim", content: `{"version":3,"address":"unix:///run/x.sock","protocol":"grpc"}`},
		{desc: "vsock address", content: `{"version":3,"address":"vsock://3:1024","protocol":"ttrpc"}`},
		{desc: "abstract socket", content: `{"version":3,"address":"unix://@abstract","protocol":"ttrpc"}`},
		{desc: "legacy bare address", content: `unix:///run/containerd/s/abc`},
		{desc: "no bootstrap file"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			if tc.content != "" {
				writeBootstrap(t, dir, tc.content)
			}
			got, err := readSocket(dir)
			if tc.want == "" {
				if !errors.Is(err, ErrNotDirect) {
					t.Errorf("readSocket = %q, %v; want ErrNotDirect", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("readSocket = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// socketDir is a directory of the test's own for sockets, short enough
// for their paths to stay under 108 bytes.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}
