package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/moby/sys/mountinfo"
)

func TestUseTempMounts(t *testing.T) {
	state := t.TempDir()
	t.Cleanup(func() {
		_ = mount.SetTempMountLocation(os.TempDir())
		_ = mount.UnmountRecursive(state, 0)
	})
	// A temp mount an accel-cri killed mid-spec left behind.
	left := filepath.Join(state, "tmpmounts", "containerd-mount123")
	if err := os.MkdirAll(left, 0o700); err != nil {
		t.Fatal(err)
	}
	tmpfs := []mount.Mount{{Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}}}
	if err := mount.All(tmpfs, left); err != nil {
		t.Fatal(err)
	}

	if err := useTempMounts(state); err != nil {
		t.Fatal(err)
	}
	if mounted, err := mountinfo.Mounted(left); err == nil && mounted {
		t.Errorf("leftover %s still mounted", left)
	}
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Errorf("leftover %s not removed: %v", left, err)
	}
	// Temp mounts made from now on are under the state dir.
	err := mount.WithTempMount(context.Background(), tmpfs, func(root string) error {
		if !strings.HasPrefix(root, filepath.Join(state, "tmpmounts")+"/") {
			t.Errorf("temp mount at %s, want under %s/tmpmounts", root, state)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
