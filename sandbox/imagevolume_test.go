package sandbox

import (
	"context"
	"errors"
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

// TestSpecContainerImageVolumes: an image volume is a read-only private
// bind of its mounted view (or of the sub path in it), idmapped in a pod
// with a user namespace of its own; what an image volume cannot be is
// refused before anything is made.
func TestSpecContainerImageVolumes(t *testing.T) {
	const view = "/state/imagevolumes/c1/0"
	idm := func(h uint32) []*runtimeapi.IDMapping { return []*runtimeapi.IDMapping{{HostId: h, Length: 65536}} }
	podUserns := &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: idm(100000), Gids: idm(200000)}
	imageMount := func(change ...func(*runtimeapi.Mount)) *runtimeapi.Mount {
		m := &runtimeapi.Mount{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: "sha256:" + hex64('a')}, Readonly: true}
		for _, c := range change {
			c(m)
		}
		return m
	}
	mounted := func(src string) []*imageVolume {
		return []*imageVolume{{Mount: 0, ImageID: "sha256:" + hex64('a'), Source: src}}
	}
	for _, tc := range []struct {
		desc        string
		mount       *runtimeapi.Mount
		extra       []*runtimeapi.Mount // after the image volume
		vols        []*imageVolume
		userns      *runtimeapi.UserNamespace
		unsupported bool // the handler has no idmapped mounts
		wantSrc     string
		wantOpts    []string
		wantUIDs    []runtimespec.LinuxIDMapping
		wantGIDs    []runtimespec.LinuxIDMapping
		wantErr     error
	}{
		{desc: "read-only bind of the view", mount: imageMount(), vols: mounted(view), wantSrc: view, wantOpts: []string{"rbind", "rprivate", "ro"}},
		{desc: "sub path", mount: imageMount(func(m *runtimeapi.Mount) { m.ImageSubPath = "etc" }), vols: mounted(view + "/etc"), wantSrc: view + "/etc", wantOpts: []string{"rbind", "rprivate", "ro"}},
		{desc: "recursive read-only", mount: imageMount(func(m *runtimeapi.Mount) { m.RecursiveReadOnly = true }), vols: mounted(view), wantSrc: view, wantOpts: []string{"rbind", "rprivate", "rro"}},
		{
			desc:  "propagation asked for is not applied",
			mount: imageMount(func(m *runtimeapi.Mount) { m.Propagation = runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL }),
			vols:  mounted(view), wantSrc: view, wantOpts: []string{"rbind", "rprivate", "ro"},
		},
		{
			desc: "pod with a user namespace: idmapped with the pod's mappings", userns: podUserns,
			mount: imageMount(), vols: mounted(view), wantSrc: view, wantOpts: []string{"rbind", "rprivate", "ro"},
			wantUIDs: []runtimespec.LinuxIDMapping{{HostID: 100000, Size: 65536}}, wantGIDs: []runtimespec.LinuxIDMapping{{HostID: 200000, Size: 65536}},
		},
		{
			desc: "kubelet's mappings on the mount", userns: podUserns,
			mount: imageMount(func(m *runtimeapi.Mount) { m.UidMappings, m.GidMappings = idm(300000), idm(400000) }),
			vols:  mounted(view), wantSrc: view, wantOpts: []string{"rbind", "rprivate", "ro"},
			wantUIDs: []runtimespec.LinuxIDMapping{{HostID: 300000, Size: 65536}}, wantGIDs: []runtimespec.LinuxIDMapping{{HostID: 400000, Size: 65536}},
		},
		{
			desc: "view mounted with idmapped layers: the bind is plain", userns: podUserns,
			mount: imageMount(), vols: []*imageVolume{{Mount: 0, Source: view, mappedLayers: true}},
			wantSrc: view, wantOpts: []string{"rbind", "rprivate", "ro"},
		},
		{desc: "idmapped without idmapped mounts", userns: podUserns, unsupported: true, mount: imageMount(), vols: mounted(view), wantErr: errdefs.ErrNotImplemented},
		{desc: "writable", mount: imageMount(func(m *runtimeapi.Mount) { m.Readonly = false }), vols: mounted(view), wantErr: errdefs.ErrInvalidArgument},
		{desc: "with a host path", mount: imageMount(func(m *runtimeapi.Mount) { m.HostPath = "/srv" }), vols: mounted(view), wantErr: errdefs.ErrInvalidArgument},
		{desc: "with mount options", mount: imageMount(func(m *runtimeapi.Mount) { m.MountOptions = []string{"noexec"} }), vols: mounted(view), wantErr: errdefs.ErrInvalidArgument},
		{desc: "sub path escaping", mount: imageMount(func(m *runtimeapi.Mount) { m.ImageSubPath = "etc/../../x" }), vols: mounted(view), wantErr: errdefs.ErrInvalidArgument},
		{desc: "relative container path", mount: imageMount(func(m *runtimeapi.Mount) { m.ContainerPath = "img" }), vols: mounted(view), wantErr: errdefs.ErrInvalidArgument},
		{desc: "not prepared", mount: imageMount(), wantErr: errdefs.ErrFailedPrecondition},
		{desc: "prepared but not mounted", mount: imageMount(), vols: mounted(""), wantErr: errdefs.ErrFailedPrecondition},
		{
			desc: "mounted before a host path below it", mount: imageMount(),
			extra: []*runtimeapi.Mount{{ContainerPath: "/img/cache", HostPath: "/tmp"}},
			vols:  mounted(view), wantSrc: view, wantOpts: []string{"rbind", "rprivate", "ro"},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p := podFilesParams(t)
			p.UsernsSupported = !tc.unsupported
			p.PodConfig.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: tc.userns},
			}}
			p.Config.Mounts = append([]*runtimeapi.Mount{tc.mount}, tc.extra...)
			p.ImageVolumes = tc.vols
			binds, err := planContainerMounts(p)
			if err == nil {
				err = resolveMountSources(binds, false)
			}
			var s *runtimespec.Spec
			if err == nil {
				s, err = applySpec(t, withBindMounts(binds))
			}
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			m, ok := findMount(s.Mounts, "/img")
			if !ok {
				t.Fatalf("no mount at /img in %v", s.Mounts)
			}
			if m.Source != tc.wantSrc || m.Type != "bind" || !slices.Equal(m.Options, tc.wantOpts) {
				t.Errorf("mount = %s %s %v, want %s bind %v", m.Source, m.Type, m.Options, tc.wantSrc, tc.wantOpts)
			}
			if !slices.Equal(m.UIDMappings, tc.wantUIDs) || !slices.Equal(m.GIDMappings, tc.wantGIDs) {
				t.Errorf("mappings = %v %v, want %v %v", m.UIDMappings, m.GIDMappings, tc.wantUIDs, tc.wantGIDs)
			}
			if s.Linux != nil && s.Linux.RootfsPropagation != "" {
				t.Errorf("rootfs propagation %q, want none", s.Linux.RootfsPropagation)
			}
			if i, j := slices.IndexFunc(s.Mounts, func(m runtimespec.Mount) bool { return m.Destination == "/img" }),
				slices.IndexFunc(s.Mounts, func(m runtimespec.Mount) bool { return m.Destination == "/img/cache" }); j >= 0 && j < i {
				t.Errorf("/img/cache is mounted before /img: %v", s.Mounts)
			}
		})
	}
}

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

func TestCleanImageSubPath(t *testing.T) {
	for _, tc := range []struct {
		sub, want string
		bad       bool
	}{
		{sub: "", want: ""},
		{sub: ".", want: ""},
		{sub: "./", want: ""},
		{sub: "etc", want: "etc"},
		{sub: "./etc//ssl/", want: "etc/ssl"},
		{sub: "a/./b", want: "a/b"},
		{sub: "..", bad: true},
		{sub: "a/../..", bad: true},
		{sub: "a/..", bad: true}, // stays inside, but kubelet refuses any backstep too
		{sub: "/etc", bad: true},
		{sub: "etc\x00", bad: true},
	} {
		got, err := cleanImageSubPath("f", tc.sub)
		if tc.bad {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("cleanImageSubPath(%q) = %q, %v; want InvalidArgument", tc.sub, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("cleanImageSubPath(%q) = %q, %v; want %q", tc.sub, got, err, tc.want)
		}
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
