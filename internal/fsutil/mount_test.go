package fsutil

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// TestUnmountUnder unmounts nested and stacked mounts, children first, and
// leaves a sibling with the same name prefix alone.
func TestUnmountUnder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("mounts need root (run the unit tests as root, as CI does)")
	}
	root := t.TempDir()
	dir := filepath.Join(root, "d")
	child := filepath.Join(dir, "a")
	sibling := filepath.Join(root, "d2")
	t.Cleanup(func() {
		for _, p := range []string{child, child, dir, sibling} {
			_ = unix.Unmount(p, unix.MNT_DETACH)
		}
	})
	mnt := func(path string) {
		t.Helper()
		if err := os.MkdirAll(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", path, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
	}
	mnt(dir)
	mnt(child)
	mnt(child) // stacked
	mnt(sibling)

	if err := UnmountUnder(dir); err != nil {
		t.Fatal(err)
	}
	if left, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir)); err != nil || len(left) != 0 {
		t.Errorf("still mounted under %s: %d (%v)", dir, len(left), err)
	}
	if m, err := mountinfo.Mounted(sibling); err != nil || !m {
		t.Errorf("sibling %s unmounted (%v)", sibling, err)
	}
	if err := UnmountUnder(dir); err != nil {
		t.Errorf("nothing mounted: %v", err)
	}
}
