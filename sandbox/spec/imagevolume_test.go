package spec

import (
	"errors"
	"slices"
	"strings"
	"testing"

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
		m := &runtimeapi.Mount{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: "sha256:" + strings.Repeat("a", 64)}, Readonly: true}
		for _, c := range change {
			c(m)
		}
		return m
	}
	// vol is the image volume of CRI mount 0 as the core mounted it.
	type vol struct {
		source       string
		mappedLayers bool
	}
	mounted := func(src string) *vol { return &vol{source: src} }
	for _, tc := range []struct {
		desc        string
		mount       *runtimeapi.Mount
		extra       []*runtimeapi.Mount // after the image volume
		vol         *vol                // nil: not mounted
		userns      *runtimeapi.UserNamespace
		unsupported bool // the handler has no idmapped mounts
		wantSrc     string
		wantOpts    []string
		wantUIDs    []runtimespec.LinuxIDMapping
		wantGIDs    []runtimespec.LinuxIDMapping
		wantErr     error
	}{
		{desc: "read-only bind of the view", mount: imageMount(), vol: mounted(view), wantSrc: view, wantOpts: []string{"rbind", "rprivate", "ro"}},
		{desc: "sub path", mount: imageMount(func(m *runtimeapi.Mount) { m.ImageSubPath = "etc" }), vol: mounted(view + "/etc"), wantSrc: view + "/etc", wantOpts: []string{"rbind", "rprivate", "ro"}},
		{desc: "recursive read-only", mount: imageMount(func(m *runtimeapi.Mount) { m.RecursiveReadOnly = true }), vol: mounted(view), wantSrc: view, wantOpts: []string{"rbind", "rprivate", "rro"}},
		{
			desc:  "propagation asked for is not applied",
			mount: imageMount(func(m *runtimeapi.Mount) { m.Propagation = runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL }),
			vol:   mounted(view), wantSrc: view, wantOpts: []string{"rbind", "rprivate", "ro"},
		},
		{
			desc: "pod with a user namespace: idmapped with the pod's mappings", userns: podUserns,
			mount: imageMount(), vol: mounted(view), wantSrc: view, wantOpts: []string{"rbind", "rprivate", "ro"},
			wantUIDs: []runtimespec.LinuxIDMapping{{HostID: 100000, Size: 65536}}, wantGIDs: []runtimespec.LinuxIDMapping{{HostID: 200000, Size: 65536}},
		},
		{
			desc: "kubelet's mappings on the mount", userns: podUserns,
			mount: imageMount(func(m *runtimeapi.Mount) { m.UidMappings, m.GidMappings = idm(300000), idm(400000) }),
			vol:   mounted(view), wantSrc: view, wantOpts: []string{"rbind", "rprivate", "ro"},
			wantUIDs: []runtimespec.LinuxIDMapping{{HostID: 300000, Size: 65536}}, wantGIDs: []runtimespec.LinuxIDMapping{{HostID: 400000, Size: 65536}},
		},
		{
			desc: "view mounted with idmapped layers: the bind is plain", userns: podUserns,
			mount: imageMount(), vol: &vol{source: view, mappedLayers: true},
			wantSrc: view, wantOpts: []string{"rbind", "rprivate", "ro"},
		},
		{desc: "idmapped without idmapped mounts", userns: podUserns, unsupported: true, mount: imageMount(), vol: mounted(view), wantErr: errdefs.ErrNotImplemented},
		{desc: "writable", mount: imageMount(func(m *runtimeapi.Mount) { m.Readonly = false }), vol: mounted(view), wantErr: errdefs.ErrInvalidArgument},
		{desc: "with a host path", mount: imageMount(func(m *runtimeapi.Mount) { m.HostPath = "/srv" }), vol: mounted(view), wantErr: errdefs.ErrInvalidArgument},
		{desc: "with mount options", mount: imageMount(func(m *runtimeapi.Mount) { m.MountOptions = []string{"noexec"} }), vol: mounted(view), wantErr: errdefs.ErrInvalidArgument},
		{desc: "sub path escaping", mount: imageMount(func(m *runtimeapi.Mount) { m.ImageSubPath = "etc/../../x" }), vol: mounted(view), wantErr: errdefs.ErrInvalidArgument},
		{desc: "relative container path", mount: imageMount(func(m *runtimeapi.Mount) { m.ContainerPath = "img" }), vol: mounted(view), wantErr: errdefs.ErrInvalidArgument},
		{desc: "not mounted", mount: imageMount(), wantErr: errdefs.ErrFailedPrecondition},
		{desc: "mounted without a source", mount: imageMount(), vol: mounted(""), wantErr: errdefs.ErrFailedPrecondition},
		{
			desc: "mounted before a host path below it", mount: imageMount(),
			extra: []*runtimeapi.Mount{{ContainerPath: "/img/cache", HostPath: "/tmp"}},
			vol:   mounted(view), wantSrc: view, wantOpts: []string{"rbind", "rprivate", "ro"},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p := podFiles(t)
			p.Handler.UserNamespaces = !tc.unsupported
			p.PodConfig.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: tc.userns},
			}}
			p.Config.Mounts = append([]*runtimeapi.Mount{tc.mount}, tc.extra...)
			binds, err := planMounts(p)
			var s *runtimespec.Spec
			if err == nil {
				resolveBinds(binds)
				for _, b := range binds {
					if b.ImageVolume && b.Mount == 0 && tc.vol != nil {
						b.Source, b.LayersIDMapped = tc.vol.source, tc.vol.mappedLayers
					}
				}
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
