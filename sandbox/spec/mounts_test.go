package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podFiles makes the pod files a container mounts and returns params with
// them.
func podFilesParams(t *testing.T) containerSpecParams {
	t.Helper()
	dir := t.TempDir()
	p := containerSpecParams{
		HostnamePath: filepath.Join(dir, "hostname"),
		HostsPath:    filepath.Join(dir, "hosts"),
		ResolvPath:   filepath.Join(dir, "resolv.conf"),
		ShmPath:      filepath.Join(dir, "shm"),
	}
	for _, f := range []string{p.HostnamePath, p.HostsPath, p.ResolvPath} {
		if err := os.WriteFile(f, []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(p.ShmPath, 0o755); err != nil {
		t.Fatal(err)
	}
	p.PodConfig = &runtimeapi.PodSandboxConfig{}
	p.Config = &runtimeapi.ContainerConfig{}
	return p
}

// fakeMounts makes lookupMount answer with the given optional fields.
func fakeMounts(t *testing.T, optional string) {
	t.Helper()
	old := lookupMount
	lookupMount = func(string) (mount.Info, error) {
		return mount.Info{Mountpoint: "/", Optional: optional}, nil
	}
	t.Cleanup(func() { lookupMount = old })
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

// containerMounts plans, resolves and applies the mounts of p.
func containerMounts(t *testing.T, p containerSpecParams) ([]runtimespec.Mount, string, error) {
	t.Helper()
	binds, err := planContainerMounts(p)
	if err != nil {
		return nil, "", err
	}
	if err := resolveMountSources(binds, p.Config.GetLinux().GetSecurityContext().GetPrivileged()); err != nil {
		return nil, "", err
	}
	s := mustApply(t, withBindMounts(binds))
	return s.Mounts, s.Linux.RootfsPropagation, nil
}

func TestSpecContainerMounts(t *testing.T) {
	host := t.TempDir()
	real := filepath.Join(host, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(host, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	hostsFile := filepath.Join(host, "myhosts")
	if err := os.WriteFile(hostsFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc     string
		mounts   []*runtimeapi.Mount
		ro       bool   // container readonly rootfs
		hostIPC  bool   // pod shares the host IPC namespace
		optional string // propagation of the host mount
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
			desc:     "symlinked host path is resolved",
			mounts:   []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: link}},
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
			desc:     "host to container on a slave mount",
			mounts:   []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}},
			optional: "master:1",
			dst:      "/data",
			wantSrc:  real,
			wantOpts: []string{"rbind", "rslave", "rw"},
			wantProp: "rslave",
		},
		{
			desc:    "host to container on a private mount",
			mounts:  []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}},
			wantErr: errdefs.ErrFailedPrecondition,
		},
		{
			desc: "bidirectional on a shared mount",
			mounts: []*runtimeapi.Mount{
				{ContainerPath: "/a", HostPath: real, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
				{ContainerPath: "/data", HostPath: real, Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL},
			},
			optional: "shared:5",
			dst:      "/data",
			wantSrc:  real,
			wantOpts: []string{"rbind", "rshared", "rw"},
			wantProp: "rshared",
		},
		{
			desc:     "bidirectional on a slave mount",
			mounts:   []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: real, Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL}},
			optional: "master:1",
			wantErr:  errdefs.ErrFailedPrecondition,
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
			optional: "master:1",
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
			fakeMounts(t, tc.optional)
			p := podFilesParams(t)
			p.Config.Mounts = tc.mounts
			p.MountOptionsSupported = !tc.noOpts
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
			p := podFilesParams(t)
			p.UsernsSupported = !tc.unsupported
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

func TestSpecContainerMountsHost(t *testing.T) {
	t.Run("missing host path is created as a directory", func(t *testing.T) {
		p := podFilesParams(t)
		missing := filepath.Join(t.TempDir(), "a", "b")
		p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: missing}}
		if _, _, err := containerMounts(t, p); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(missing); err != nil || !fi.IsDir() {
			t.Fatalf("host path not created as a directory: %v", err)
		}
	})
	t.Run("missing pod file", func(t *testing.T) {
		p := podFilesParams(t)
		if err := os.Remove(p.HostsPath); err != nil {
			t.Fatal(err)
		}
		_, _, err := containerMounts(t, p)
		checkErr(t, err, errdefs.ErrFailedPrecondition)
		if _, err := os.Stat(p.HostsPath); err == nil {
			t.Error("pod file was created")
		}
	})
	t.Run("no shm path for a private ipc pod", func(t *testing.T) {
		p := podFilesParams(t)
		p.ShmPath = ""
		_, err := planContainerMounts(p)
		checkErr(t, err, errdefs.ErrFailedPrecondition)
	})
	t.Run("defaults replaced, cgroup added, parents first", func(t *testing.T) {
		p := podFilesParams(t)
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
		p := podFilesParams(t)
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
}

// TestSpecContainerMountsHostile covers host paths that must be refused
// before anything on the host is created: the checks run on resolved
// symlinks, not only on the path as sent.
func TestSpecContainerMountsHostile(t *testing.T) {
	host := t.TempDir()
	for name, target := range map[string]string{
		"root-link":     "/",
		"proc-link":     "/proc",
		"procsys-link":  "/proc/sys",
		"dangling-link": filepath.Join(host, "nowhere", "evil"),
		"etc-link":      "/etc",
	} {
		if err := os.Symlink(target, filepath.Join(host, name)); err != nil {
			t.Fatal(err)
		}
	}
	fresh := filepath.Join(host, "fresh") // must not be created by a rejected request
	for _, tc := range []struct {
		desc       string
		mount      *runtimeapi.Mount
		privileged bool
		wantErr    error
	}{
		{desc: "host root read-write", mount: &runtimeapi.Mount{ContainerPath: "/host", HostPath: "/"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "host /proc read-write", mount: &runtimeapi.Mount{ContainerPath: "/hostproc", HostPath: "/proc"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "host /proc/sys read-write", mount: &runtimeapi.Mount{ContainerPath: "/hostsys", HostPath: "/proc/sys"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "symlink to / read-write", mount: &runtimeapi.Mount{ContainerPath: "/host", HostPath: filepath.Join(host, "root-link")}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "symlink to /proc read-write", mount: &runtimeapi.Mount{ContainerPath: "/host", HostPath: filepath.Join(host, "proc-link")}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "symlink to /proc/sys read-write", mount: &runtimeapi.Mount{ContainerPath: "/host", HostPath: filepath.Join(host, "procsys-link")}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "dangling symlink", mount: &runtimeapi.Mount{ContainerPath: "/x", HostPath: filepath.Join(host, "dangling-link")}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "below a dangling symlink", mount: &runtimeapi.Mount{ContainerPath: "/x", HostPath: filepath.Join(host, "dangling-link", "sub")}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "host root read-only", mount: &runtimeapi.Mount{ContainerPath: "/host", HostPath: "/", Readonly: true}},
		{desc: "symlink to /proc read-only", mount: &runtimeapi.Mount{ContainerPath: "/host", HostPath: filepath.Join(host, "proc-link"), Readonly: true}},
		{desc: "host root read-write, privileged", mount: &runtimeapi.Mount{ContainerPath: "/host", HostPath: "/"}, privileged: true},
		{desc: "symlink to /etc read-write", mount: &runtimeapi.Mount{ContainerPath: "/hostetc", HostPath: filepath.Join(host, "etc-link")}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p := podFilesParams(t)
			// A missing host path listed first: a rejected request must not
			// have created it.
			p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/fresh", HostPath: fresh}, tc.mount}
			p.Config.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{Privileged: tc.privileged}}
			_, _, err := containerMounts(t, p)
			if !checkErr(t, err, tc.wantErr) {
				if _, err := os.Lstat(fresh); err == nil {
					t.Errorf("rejected request created %s", fresh)
				}
				if _, err := os.Lstat(filepath.Join(host, "nowhere")); err == nil {
					t.Errorf("rejected request created the dangling symlink's target")
				}
				return
			}
			os.Remove(fresh)
		})
	}
}
