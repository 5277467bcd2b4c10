package sandbox

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRemoveLeftoverCgroup(t *testing.T) {
	root := t.TempDir()
	old := cgroupRoot
	cgroupRoot = root
	t.Cleanup(func() { cgroupRoot = old })
	// v1 hierarchies: one with the empty leftover, one where it is busy
	// (a file inside: rmdir fails, as on a cgroup with processes), one
	// without it.
	empty := filepath.Join(root, "cpuset", "kubepods", "c1")
	busy := filepath.Join(root, "memory", "kubepods", "c1")
	for _, d := range []string{empty, busy, filepath.Join(root, "pids", "kubepods")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(busy, "tasks"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	removeLeftoverCgroup("/kubepods/c1")
	if _, err := os.Stat(empty); !os.IsNotExist(err) {
		t.Errorf("empty leftover %s not removed: %v", empty, err)
	}
	if _, err := os.Stat(busy); err != nil {
		t.Errorf("busy cgroup %s removed: %v", busy, err)
	}
	for _, bad := range []string{"kubepods.slice:cri:c1", "/", "/kubepods/../x"} {
		removeLeftoverCgroup(bad) // not cgroupfs paths: nothing to do, nothing removed
	}
	if _, err := os.Stat(filepath.Join(root, "pids", "kubepods")); err != nil {
		t.Errorf("parent removed: %v", err)
	}
}
