package cri

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func shortTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "acri-listen-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func TestListen(t *testing.T) {
	dir := shortTempDir(t)

	t.Run("creates socket with mode 0660", func(t *testing.T) {
		p := filepath.Join(dir, "sub", "a.sock")
		l, err := Listen(p)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o660 {
			t.Fatalf("mode = %v, want 0660", st.Mode().Perm())
		}
	})

	t.Run("root:root in a setgid directory of another group, umask restored", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Fatal("needs root (chown)")
		}
		sub := filepath.Join(dir, "setgid")
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(sub, 0, 1000); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(sub, 0o2755); err != nil {
			t.Fatal(err)
		}
		old := syscall.Umask(0o022)
		defer syscall.Umask(old)
		p := filepath.Join(sub, "c.sock")
		l, err := Listen(p)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if sys.Uid != 0 || sys.Gid != 0 || st.Mode().Perm() != 0o660 {
			t.Fatalf("socket %v uid %d gid %d, want 0660 root:root", st.Mode(), sys.Uid, sys.Gid)
		}
		if now := syscall.Umask(0o022); now != 0o022 {
			t.Fatalf("umask left at %#o", now)
		}
	})

	t.Run("socket in use is refused", func(t *testing.T) {
		p := filepath.Join(dir, "b.sock")
		l, err := Listen(p)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if _, err := Listen(p); err == nil || !strings.Contains(err.Error(), "in use") {
			t.Fatalf("second Listen: err = %v, want in use", err)
		}
	})

	t.Run("stale socket replaced", func(t *testing.T) {
		p := filepath.Join(dir, "c.sock")
		l, err := net.Listen("unix", p)
		if err != nil {
			t.Fatal(err)
		}
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close()
		l2, err := Listen(p)
		if err != nil {
			t.Fatalf("stale socket: %v", err)
		}
		l2.Close()
	})

	t.Run("regular file refused and kept", func(t *testing.T) {
		p := filepath.Join(dir, "d.sock")
		if err := os.WriteFile(p, []byte("data"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Listen(p); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Fatalf("err = %v, want not a socket", err)
		}
		if b, _ := os.ReadFile(p); string(b) != "data" {
			t.Fatal("file was changed")
		}
	})

	t.Run("relative path refused", func(t *testing.T) {
		if _, err := Listen("rel.sock"); err == nil {
			t.Fatal("want error")
		}
	})
}
