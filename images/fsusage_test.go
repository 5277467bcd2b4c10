package images

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestFsUsage(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "snapshots")
	s := &Service{fsPath: root} // fsMaxAge 0: every call walks
	ctx := context.Background()

	t.Run("missing directory reports zeros", func(t *testing.T) {
		u, err := s.FsUsage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if u.Mountpoint != root || u.UsedBytes != 0 || u.InodesUsed != 0 || u.Timestamp.IsZero() {
			t.Errorf("FsUsage = %+v", u)
		}
	})

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "1", "fs", "etc"), 0o755))
	must(os.WriteFile(filepath.Join(root, "1", "fs", "big"), make([]byte, 100_000), 0o644))
	must(os.WriteFile(filepath.Join(root, "1", "fs", "etc", "small"), []byte("x"), 0o644))
	must(os.Link(filepath.Join(root, "1", "fs", "big"), filepath.Join(root, "1", "fs", "etc", "big-link")))
	must(os.Symlink("big", filepath.Join(root, "1", "fs", "sym")))

	t.Run("counts blocks and inodes, hard links once", func(t *testing.T) {
		u, err := s.FsUsage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// root, 1, fs, etc, big (+ its link), small, sym
		if u.InodesUsed != 7 {
			t.Errorf("InodesUsed = %d, want 7", u.InodesUsed)
		}
		// du -x counts the same: allocated blocks, hard links once.
		out, err := exec.Command("du", "-sx", "-B1", root).Output()
		if err != nil {
			t.Fatalf("du: %v", err)
		}
		want, err := strconv.ParseUint(strings.Fields(string(out))[0], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if u.UsedBytes != want {
			t.Errorf("UsedBytes = %d, du says %d", u.UsedBytes, want)
		}
		if u.UsedBytes < 100_000 {
			t.Errorf("UsedBytes = %d, less than the big file", u.UsedBytes)
		}
	})

	t.Run("recent result is reused", func(t *testing.T) {
		c := &Service{fsPath: root, fsMaxAge: time.Hour}
		u1, err := c.FsUsage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		must(os.WriteFile(filepath.Join(root, "1", "fs", "new"), make([]byte, 50_000), 0o644))
		u2, err := c.FsUsage(ctx)
		if err != nil || u2 != u1 {
			t.Errorf("second FsUsage = %+v, %v; want the cached %+v", u2, err, u1)
		}
		if u3, _ := s.FsUsage(ctx); u3.InodesUsed != u1.InodesUsed+1 {
			t.Errorf("uncached FsUsage = %+v, want one more inode than %+v", u3, u1)
		}
	})

	t.Run("unknown path is a failed precondition", func(t *testing.T) {
		_, err := (&Service{}).FsUsage(ctx)
		if !errdefs.IsFailedPrecondition(err) {
			t.Errorf("FsUsage without path = %v", err)
		}
	})
}
