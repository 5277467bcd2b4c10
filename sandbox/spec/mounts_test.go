package spec

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podFiles returns a container of a pod whose pod files are under a
// temp dir (not made: the builder does not look at them).
func podFiles(t *testing.T) Container {
	t.Helper()
	dir := t.TempDir()
	return Container{
		HostnamePath: filepath.Join(dir, "hostname"),
		HostsPath:    filepath.Join(dir, "hosts"),
		ResolvPath:   filepath.Join(dir, "resolv.conf"),
		ShmPath:      filepath.Join(dir, "shm"),
		PodConfig:    &runtimeapi.PodSandboxConfig{},
		Config:       &runtimeapi.ContainerConfig{},
		Handler:      Handler{MountOptions: true},
	}
}

// findMount returns the spec's mount at dst.
func findMount(s []runtimespec.Mount, dst string) (runtimespec.Mount, bool) {
	for _, m := range s {
		if m.Destination == dst {
			return m, true
		}
	}
	return runtimespec.Mount{}, false
}

// containerMounts plans the mounts of p, resolves them (resolveBinds)
// and applies them.
func containerMounts(t *testing.T, p Container) ([]runtimespec.Mount, string, error) {
	t.Helper()
	binds, err := planMounts(p)
	if err != nil {
		return nil, "", err
	}
	resolveBinds(binds)
	s := mustApply(t, withBindMounts(binds))
	return s.Mounts, s.Linux.RootfsPropagation, nil
}

// TestSpecContainerMounts: the bind mounts a container's spec gets (the
// core resolves their host side, see sandbox/hostmounts_test.go).
func TestSpecContainerMounts(t *testing.T) {
	const real, hostsFile = "/srv/real", "/srv/myhosts"
	for _, tc := range []struct {
		desc     string
		mounts   []*runtimeapi.Mount
		ro       bool   // container readonly rootfs
		hostIPC  bool   // pod shares the host IPC namespace
		noOpts   bool   // the handler does not apply mount_options
		dst      string // mount to check
		wantSrc  string
		wantOpts []string
		wantProp string // rootfs propagation
		wantErr  error
	}{
		{desc: "pod hosts file read-write", dst: etcHosts, wantSrc: "hosts", wantOpts: []string{"rbind", "rprivate", "rw", "nosuid", "nodev", "noexec"}},
		{desc: "pod hosts file read-only with readonly rootfs", ro: true, dst: etcHosts, wantSrc: "hosts", wantOpts: []string{"rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"}},
		{desc: "pod resolv.conf", dst: resolvConf, wantSrc: "resolv.conf", wantOpts: []string{"rbind", "rprivate", "rw", "nosuid", "nodev", "noexec"}},
		{desc: "pod hostname", dst: etcHostname, wantSrc: "hostname", wantOpts: []string{"rbind", "rprivate", "rw", "nosuid", "nodev", "noexec"}},
		{desc: "pod shm stays writable", ro: true, dst: devShm, wantSrc: "shm", wantOpts: []string{"rbind", "rprivate", "rw", "nosuid", "nodev", "noexec"}},
		{desc: "host ipc uses the host shm", hostIPC: true, dst: devShm, wantSrc: "/dev/shm", wantOpts: []string{"rbind", "rprivate", "rw", "nosuid", "nodev", "noexec"}},
		{
			desc:     "CRI mount over /etc/hosts replaces the pod file",
			mounts:   []*runtimeapi.Mount{{ContainerPath: etcHosts, HostPath: hostsFile, Readonly: true}},
			dst:      etcHosts,
			wantSrc:  hostsFile,
			wantOpts: []string{"rbind", "rprivate", "ro"},
		},
		{
			desc:     "paths cleaned",
			mounts:   []*runtimeapi.Mount{{ContainerPath: "/data/", HostPath: "/srv//real/"}},
			dst:      "/data",
			wantSrc:  real,
			wantOpts: []string{"rbind", "rprivate", "rw"},
		},
		{
			desc:     "recursive read-only",
			mounts:   []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real, Readonly: true, RecursiveReadOnly: true}},
			dst:      "/data",
			wantSrc:  real,
			wantOpts: []string{"rbind", "rprivate", "rro"},
		},
		{
			desc:    "recursive read-only needs readonly",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real, RecursiveReadOnly: true}},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			desc:    "recursive read-only needs private propagation",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real, Readonly: true, RecursiveReadOnly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			desc:     "host to container",
			mounts:   []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}},
			dst:      "/data",
			wantSrc:  real,
			wantOpts: []string{"rbind", "rslave", "rw"},
			wantProp: "rslave",
		},
		{
			desc: "bidirectional",
			mounts: []*runtimeapi.Mount{
				{ContainerPath: "/a", HostPath: real, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
				{ContainerPath: "/data", HostPath: real, Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL},
			},
			dst:      "/data",
			wantSrc:  real,
			wantOpts: []string{"rbind", "rshared", "rw"},
			wantProp: "rshared",
		},
		{
			desc:    "unknown propagation",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real, Propagation: 9}},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			desc:    "relative container path",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "data", HostPath: real}},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			desc:     "mount options on a writable mount",
			mounts:   []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real, MountOptions: []string{"noexec", "nodev", "nosuid"}}},
			dst:      "/data",
			wantSrc:  real,
			wantOpts: []string{"rbind", "rprivate", "rw", "noexec", "nodev", "nosuid"},
		},
		{
			desc:     "mount options with read-only",
			mounts:   []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real, Readonly: true, MountOptions: []string{"nosuid"}}},
			dst:      "/data",
			wantSrc:  real,
			wantOpts: []string{"rbind", "rprivate", "ro", "nosuid"},
		},
		{
			desc:     "mount options with recursive read-only",
			mounts:   []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real, Readonly: true, RecursiveReadOnly: true, MountOptions: []string{"nodev", "noexec"}}},
			dst:      "/data",
			wantSrc:  real,
			wantOpts: []string{"rbind", "rprivate", "rro", "nodev", "noexec"},
		},
		{
			desc:     "mount options with host to container propagation",
			mounts:   []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER, MountOptions: []string{"noexec"}}},
			dst:      "/data",
			wantSrc:  real,
			wantOpts: []string{"rbind", "rslave", "rw", "noexec"},
			wantProp: "rslave",
		},
		{
			desc:     "mount options on a CRI mount over /etc/hosts",
			mounts:   []*runtimeapi.Mount{{ContainerPath: etcHosts, HostPath: hostsFile, MountOptions: []string{"noexec"}}},
			dst:      etcHosts,
			wantSrc:  hostsFile,
			wantOpts: []string{"rbind", "rprivate", "rw", "noexec"},
		},
		{
			desc:     "mount options of one mount stay on it",
			mounts:   []*runtimeapi.Mount{{ContainerPath: "/a", HostPath: real, MountOptions: []string{"noexec"}}, {ContainerPath: "/data", HostPath: real}},
			dst:      "/data",
			wantSrc:  real,
			wantOpts: []string{"rbind", "rprivate", "rw"},
		},
		{
			desc:    "mount option that widens",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real, MountOptions: []string{"noexec", "exec"}}},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			desc:    "mount option rw on a read-only mount",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real, Readonly: true, MountOptions: []string{"rw"}}},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			desc:    "mount option with data",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real, MountOptions: []string{"uid=0"}}},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			desc:    "empty mount option",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real, MountOptions: []string{""}}},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			desc:    "duplicate mount option",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real, MountOptions: []string{"nodev", "nodev"}}},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			desc:    "mount options on a handler that does not apply them",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real, MountOptions: []string{"noexec"}}},
			noOpts:  true,
			wantErr: errdefs.ErrNotImplemented,
		},
		{
			desc:     "no mount options on a handler that does not apply them",
			mounts:   []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real}},
			noOpts:   true,
			dst:      "/data",
			wantSrc:  real,
			wantOpts: []string{"rbind", "rprivate", "rw"},
		},
		{
			desc:    "idmapped mount needs runc support",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real, UidMappings: []*runtimeapi.IDMapping{{Length: 1}}}},
			wantErr: errdefs.ErrNotImplemented,
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p := podFiles(t)
			p.Config.Mounts = tc.mounts
			p.Handler.MountOptions = !tc.noOpts
			p.Config.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{ReadonlyRootfs: tc.ro}}
			if tc.hostIPC {
				p.PodConfig.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
					NamespaceOptions: &runtimeapi.NamespaceOption{Ipc: runtimeapi.NamespaceMode_NODE},
				}}
			}
			mounts, prop, err := containerMounts(t, p)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			m, ok := findMount(mounts, tc.dst)
			if !ok {
				t.Fatalf("no mount at %s in %v", tc.dst, mounts)
			}
			wantSrc := tc.wantSrc
			if !filepath.IsAbs(wantSrc) {
				wantSrc = filepath.Join(filepath.Dir(p.HostsPath), wantSrc)
			}
			if m.Source != wantSrc || m.Type != "bind" || !slices.Equal(m.Options, tc.wantOpts) {
				t.Errorf("mount = %s %s %v, want %s bind %v", m.Source, m.Type, m.Options, wantSrc, tc.wantOpts)
			}
			if prop != tc.wantProp {
				t.Errorf("rootfs propagation = %q, want %q", prop, tc.wantProp)
			}
			n := 0
			for _, m := range mounts {
				if m.Destination == tc.dst {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%d mounts at %s, want 1", n, tc.dst)
			}
		})
	}
}

// TestSpecContainerMountsUserns: in a user-namespaced pod the pod files are
// idmapped to the pod's root (as containerd's CRI does), /dev/shm is not,
// and CRI mounts carry the mappings kubelet sends.
func TestSpecContainerMountsUserns(t *testing.T) {
	real := t.TempDir()
	idm := func(h uint32) []*runtimeapi.IDMapping { return []*runtimeapi.IDMapping{{HostId: h, Length: 65536}} }
	podUserns := &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: idm(100000), Gids: idm(200000)}
	uids := []runtimespec.LinuxIDMapping{{HostID: 100000, Size: 65536}}
	gids := []runtimespec.LinuxIDMapping{{HostID: 200000, Size: 65536}}
	for _, tc := range []struct {
		desc               string
		userns             *runtimeapi.UserNamespace
		unsupported        bool
		mounts             []*runtimeapi.Mount
		dst                string
		wantUIDs, wantGIDs []runtimespec.LinuxIDMapping
		wantErr            error
	}{
		{desc: "hosts file idmapped", userns: podUserns, dst: etcHosts, wantUIDs: uids, wantGIDs: gids},
		{desc: "hostname idmapped", userns: podUserns, dst: etcHostname, wantUIDs: uids, wantGIDs: gids},
		{desc: "resolv.conf idmapped", userns: podUserns, dst: resolvConf, wantUIDs: uids, wantGIDs: gids},
		{desc: "shm not idmapped", userns: podUserns, dst: devShm},
		{desc: "host user namespace: nothing idmapped", dst: etcHosts},
		{desc: "node mode: nothing idmapped", userns: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}, dst: resolvConf},
		{
			desc: "CRI mount with kubelet's mappings", userns: podUserns,
			mounts: []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real, UidMappings: idm(100000), GidMappings: idm(200000)}},
			dst:    "/data", wantUIDs: uids, wantGIDs: gids,
		},
		{
			desc: "CRI mount without mappings stays plain", userns: podUserns,
			mounts: []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real}},
			dst:    "/data",
		},
		{desc: "pod files need idmapped mounts", userns: podUserns, unsupported: true, wantErr: errdefs.ErrNotImplemented},
		{
			desc: "pod with two mappings", userns: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: append(idm(100000), idm(300000)...), Gids: idm(200000)},
			wantErr: errdefs.ErrNotImplemented,
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p := podFiles(t)
			p.Handler.UserNamespaces = !tc.unsupported
			p.PodConfig.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: tc.userns},
			}}
			p.Config.Mounts = tc.mounts
			mounts, _, err := containerMounts(t, p)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			m, ok := findMount(mounts, tc.dst)
			if !ok {
				t.Fatalf("no mount at %s in %v", tc.dst, mounts)
			}
			if !slices.Equal(m.UIDMappings, tc.wantUIDs) || !slices.Equal(m.GIDMappings, tc.wantGIDs) {
				t.Errorf("%s mappings = %v %v, want %v %v", tc.dst, m.UIDMappings, m.GIDMappings, tc.wantUIDs, tc.wantGIDs)
			}
		})
	}
}

func TestSpecContainerMountsLayout(t *testing.T) {
	t.Run("no shm path for a private ipc pod", func(t *testing.T) {
		p := podFiles(t)
		p.ShmPath = ""
		_, err := planMounts(p)
		checkErr(t, err, errdefs.ErrFailedPrecondition)
	})
	t.Run("defaults replaced, cgroup added, parents first", func(t *testing.T) {
		p := podFiles(t)
		src := t.TempDir()
		p.Config.Mounts = []*runtimeapi.Mount{
			{ContainerPath: "/data/sub/deeper", HostPath: src},
			{ContainerPath: "/data", HostPath: src},
			{ContainerPath: "/data/sub", HostPath: src},
		}
		mounts, _, err := containerMounts(t, p)
		if err != nil {
			t.Fatal(err)
		}
		var dsts []string
		for _, m := range mounts {
			dsts = append(dsts, m.Destination)
		}
		if m, _ := findMount(mounts, devShm); m.Type != "bind" {
			t.Errorf("default /dev/shm tmpfs not replaced: %v", m)
		}
		if m, ok := findMount(mounts, sysFSCgroup); !ok || m.Type != "cgroup" || !slices.Contains(m.Options, "ro") {
			t.Errorf("cgroup mount = %v (found %v)", m, ok)
		}
		order := strings.Join(slices.DeleteFunc(dsts, func(d string) bool { return !strings.HasPrefix(d, "/data") }), " ")
		if order != "/data /data/sub /data/sub/deeper" {
			t.Errorf("mount order = %s", order)
		}
	})
	t.Run("a /dev mount drops the default mounts under /dev", func(t *testing.T) {
		p := podFiles(t)
		p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/dev", HostPath: t.TempDir()}}
		mounts, _, err := containerMounts(t, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mounts {
			if strings.HasPrefix(m.Destination, "/dev/") && m.Type != "bind" {
				t.Errorf("default mount %s %s kept", m.Destination, m.Type)
			}
		}
	})
	t.Run("a bind without a source is not applied", func(t *testing.T) {
		binds, err := planMounts(podFiles(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := applySpec(t, withBindMounts(binds)); err == nil {
			t.Error("applied without sources")
		}
	})
}
