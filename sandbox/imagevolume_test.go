package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestResolveImageSubPath: a sub path is looked up inside the image as if
// the image were the root; it must exist and be a directory, and the
// directory is named by its real path, so the bind follows no symlink of
// the host's.
func TestResolveImageSubPath(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"etc/ssl", "usr/lib", "outside-target"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A directory beside the image that an escaping link would reach.
	beside := t.TempDir()
	for name, target := range map[string]string{
		"lib":      "usr/lib",
		"etc/lib":  "../usr/lib",
		"abs":      "/usr/lib",
		"escape":   "../../../../../../" + beside,
		"climb":    "../" + filepath.Base(root) + "/etc",
		"dangling": "nowhere",
	} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		sub, want string
		wantErr   error
	}{
		{sub: "", want: root},
		{sub: "etc", want: root + "/etc"},
		{sub: "etc/ssl", want: root + "/etc/ssl"},
		{sub: "lib", want: root + "/usr/lib"},
		{sub: "etc/lib", want: root + "/usr/lib"},
		{sub: "missing", wantErr: errdefs.ErrNotFound},
		{sub: "etc/missing/deeper", wantErr: errdefs.ErrNotFound},
		{sub: "dangling", wantErr: errdefs.ErrNotFound},
		{sub: "etc/passwd", wantErr: errdefs.ErrInvalidArgument},
		{sub: "escape", wantErr: errdefs.ErrInvalidArgument},
		{sub: "climb", wantErr: errdefs.ErrInvalidArgument},
		{sub: "abs", wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.sub, func(t *testing.T) {
			got, err := resolveImageSubPath(root, tc.sub)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			if got != tc.want {
				t.Errorf("resolveImageSubPath(%q) = %q, want %q", tc.sub, got, tc.want)
			}
		})
	}
}

// TestStatusMounts: ContainerStatus reports each image volume's image with
// the id of the image it was made from; other mounts, and the config the
// container was created with, stay as they are.
func TestStatusMounts(t *testing.T) {
	cfg := &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{
		{ContainerPath: "/data", HostPath: "/srv"},
		{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: "registry.local/data:1", UserSpecifiedImage: "data:1"}, Readonly: true},
	}}
	if got := statusMounts(cfg, nil); len(got) != 2 || got[0] != cfg.Mounts[0] || got[1] != cfg.Mounts[1] {
		t.Errorf("without image volumes the mounts are not the config's: %v", got)
	}
	got := statusMounts(cfg, []*imageVolume{{Mount: 1, ImageID: "sha256:" + hex64('c')}})
	if got[0] != cfg.Mounts[0] {
		t.Error("host path mount was copied")
	}
	img := got[1].GetImage()
	if img.GetImageRef() != "sha256:"+hex64('c') || img.GetImage() != "registry.local/data:1" || img.GetUserSpecifiedImage() != "data:1" || got[1].GetContainerPath() != "/img" || !got[1].GetReadonly() {
		t.Errorf("image volume status = %v", got[1])
	}
	if cfg.Mounts[1].GetImage().GetImageRef() != "" {
		t.Error("the container's config was changed")
	}
}

func TestImageVolumeRefLabels(t *testing.T) {
	got := imageVolumeRefLabels([]*imageVolume{
		{Mount: 1, Snapshotter: "overlayfs", Key: "imagevolume-c1-1"},
		{Mount: 3, Snapshotter: "native", Key: "imagevolume-c1-3"},
	})
	want := map[string]string{
		"containerd.io/gc.ref.snapshot.overlayfs/imagevolume-1": "imagevolume-c1-1",
		"containerd.io/gc.ref.snapshot.native/imagevolume-3":    "imagevolume-c1-3",
	}
	if len(got) != len(want) {
		t.Fatalf("labels = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("labels = %v, want %v", got, want)
		}
	}
}

func hex64(c byte) string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

func TestWithMappedLayers(t *testing.T) {
	in := []mount.Mount{
		{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/l2:/l1"}},
		{Type: "bind", Source: "/l1", Options: []string{"ro", "rbind"}},
	}
	uids := []runtimespec.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	gids := []runtimespec.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 1000}, {ContainerID: 1000, HostID: 300000, Size: 10}}
	got := withMappedLayers(in, uids, gids)
	if want := []string{"lowerdir=/l2:/l1", "uidmap=0:100000:65536", "gidmap=0:200000:1000,1000:300000:10"}; !slices.Equal(got[0].Options, want) {
		t.Errorf("overlay options %q, want %q", got[0].Options, want)
	}
	if !slices.Equal(got[1].Options, []string{"ro", "rbind"}) {
		t.Errorf("bind options %q: a bind is idmapped by the OCI runtime, not here", got[1].Options)
	}
	if len(in[0].Options) != 1 {
		t.Errorf("the snapshotter's mounts were changed: %q", in[0].Options)
	}
}

func TestWhileUnavailable(t *testing.T) {
	unavailable := fmt.Errorf("remove: %w", errdefs.ErrUnavailable)
	t.Run("until containerd answers", func(t *testing.T) {
		calls := 0
		err := whileUnavailable(context.Background(), func() error {
			if calls++; calls < 3 {
				return unavailable
			}
			return nil
		})
		if err != nil || calls != 3 {
			t.Errorf("err %v after %d calls, want nil after 3", err, calls)
		}
	})
	t.Run("other errors at once", func(t *testing.T) {
		calls := 0
		err := whileUnavailable(context.Background(), func() error { calls++; return errdefs.ErrNotFound })
		if !errdefs.IsNotFound(err) || calls != 1 {
			t.Errorf("err %v after %d calls, want NotFound after 1", err, calls)
		}
	})
	t.Run("until the context ends", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := whileUnavailable(ctx, func() error { return unavailable })
		if !errdefs.IsUnavailable(err) || time.Since(start) < 400*time.Millisecond || time.Since(start) > 5*time.Second {
			t.Errorf("err %v after %s, want Unavailable after the context's 500ms", err, time.Since(start))
		}
	})
}
