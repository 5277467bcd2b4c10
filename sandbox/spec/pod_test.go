package spec

import (
	"maps"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func testPodConfig() *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "uid-1"},
		Hostname:     "web-0",
		LogDirectory: "/var/log/pods/default_web_uid-1",
		Annotations:  map[string]string{"user": "annotation"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: "/kubepods/pod1",
			Sysctls:      map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"},
			Resources:    &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 200000, CpuShares: 2048, MemoryLimitInBytes: 1 << 30},
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
			},
		},
	}
}

func testPod() Pod {
	return Pod{
		ID:          "p1",
		Config:      testPodConfig(),
		Image:       ocispec.ImageConfig{Entrypoint: []string{"/pause"}, User: "65535:65535"},
		ImageName:   "registry.local/pause:3.10",
		NetNSPath:   "/run/accel-cri/netns/p1",
		CgroupsPath: "/kubepods/pod1/p1",
		Handler:     Handler{Name: "runc"},
	}
}

func TestSpecPod(t *testing.T) {
	s := func(t *testing.T, p Pod) *oci.Spec {
		opts, err := testBuilder(t, withOOMFloor0).Pod(p)
		if err != nil {
			t.Fatal(err)
		}
		return mustApply(t, append([]oci.SpecOpts{oci.WithRootFSPath(testRootfs(t))}, opts...)...)
	}
	t.Run("defaults", func(t *testing.T) {
		s := s(t, testPod())
		if !slices.Equal(s.Process.Args, []string{"/pause"}) || s.Process.User.UID != 65535 || s.Process.User.GID != 65535 {
			t.Errorf("process = %q as %d:%d", s.Process.Args, s.Process.User.UID, s.Process.User.GID)
		}
		if s.Hostname != "web-0" {
			t.Errorf("hostname = %q", s.Hostname)
		}
		if got := nsString(s.Linux.Namespaces); got != "ipc mount network=/run/accel-cri/netns/p1 pid uts" {
			t.Errorf("namespaces = %s", got)
		}
		if !s.Root.Readonly || !s.Process.NoNewPrivileges {
			t.Errorf("readonly rootfs %v, no_new_privs %v", s.Root.Readonly, s.Process.NoNewPrivileges)
		}
		if s.Process.OOMScoreAdj == nil || *s.Process.OOMScoreAdj != 0 {
			t.Errorf("oom_score_adj = %v, want -998 raised to 0", s.Process.OOMScoreAdj)
		}
		if s.Linux.CgroupsPath != "/kubepods/pod1/p1" || *s.Linux.Resources.CPU.Shares != sandboxCPUShares {
			t.Errorf("cgroup %q shares %d", s.Linux.CgroupsPath, *s.Linux.Resources.CPU.Shares)
		}
		if s.Linux.Sysctl["net.ipv4.ip_unprivileged_port_start"] != "0" {
			t.Errorf("sysctls = %v", s.Linux.Sysctl)
		}
		if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != runtimespec.ActErrno {
			t.Errorf("no default seccomp profile")
		}
		if len(s.Process.Rlimits) != 0 || slices.ContainsFunc(s.Mounts, func(m runtimespec.Mount) bool { return m.Destination == "/run" }) {
			t.Errorf("default rlimits or /run mount kept")
		}
		want := map[string]string{
			AnnotationContainerType:    ContainerTypeSandbox,
			AnnotationSandboxID:        "p1",
			AnnotationSandboxName:      "web",
			AnnotationSandboxNamespace: "default",
			AnnotationSandboxUID:       "uid-1",
			AnnotationSandboxLogDir:    "/var/log/pods/default_web_uid-1",
			AnnotationSandboxImageName: "registry.local/pause:3.10",
			AnnotationRuntimeHandler:   "runc",
			AnnotationSandboxCPUPeriod: "100000",
			AnnotationSandboxCPUQuota:  "200000",
			AnnotationSandboxCPUShares: "2048",
			AnnotationSandboxMemory:    "1073741824",
		}
		if !maps.Equal(s.Annotations, want) {
			t.Errorf("annotations = %v, want %v", s.Annotations, want)
		}
	})
	t.Run("handler's spec version", func(t *testing.T) {
		p := testPod()
		if s := s(t, p); s.Version != runtimespec.Version {
			t.Errorf("ociVersion = %q, want %q", s.Version, runtimespec.Version)
		}
		p.Handler.SpecVersion = "1.0.2-dev"
		if s := s(t, p); s.Version != "1.0.2-dev" {
			t.Errorf("ociVersion = %q, want the handler's", s.Version)
		}
	})
	t.Run("host network", func(t *testing.T) {
		p := testPod()
		p.NetNSPath = ""
		p.Config.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE}
		s := s(t, p)
		if s.Hostname != "" {
			t.Errorf("hostname %q set with host network", s.Hostname)
		}
		if got := nsString(s.Linux.Namespaces); got != "mount" {
			t.Errorf("namespaces = %s", got)
		}
	})
	t.Run("user namespace", func(t *testing.T) {
		ns := &runtimeapi.UserNamespace{
			Mode: runtimeapi.NamespaceMode_POD,
			Uids: []*runtimeapi.IDMapping{{HostId: 100000, Length: 65536}},
			Gids: []*runtimeapi.IDMapping{{HostId: 200000, Length: 65536}},
		}
		sysfs := runtimespec.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}}
		hostSys := runtimespec.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "rro", "nosuid", "nodev", "noexec"}}
		for _, tc := range []struct {
			desc    string
			hostNet bool
			pinned  string
			wantNS  string
			wantSys runtimespec.Mount
		}{
			{desc: "pod network: the pinned owner of the netns", pinned: "/run/p1/ns/user", wantNS: "ipc mount network=/run/accel-cri/netns/p1 pid user=/run/p1/ns/user uts", wantSys: sysfs},
			{desc: "host network: a new one and the host's /sys", hostNet: true, wantNS: "ipc mount pid user", wantSys: hostSys},
		} {
			t.Run(tc.desc, func(t *testing.T) {
				p := testPod()
				p.Handler.UserNamespaces, p.UsernsPath = true, tc.pinned
				p.Config.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{UsernsOptions: ns}
				if tc.hostNet {
					p.NetNSPath = ""
					p.Config.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
				}
				s := s(t, p)
				if got := nsString(s.Linux.Namespaces); got != tc.wantNS {
					t.Errorf("namespaces = %s, want %s", got, tc.wantNS)
				}
				wantU := []runtimespec.LinuxIDMapping{{HostID: 100000, Size: 65536}}
				wantG := []runtimespec.LinuxIDMapping{{HostID: 200000, Size: 65536}}
				if !slices.Equal(s.Linux.UIDMappings, wantU) || !slices.Equal(s.Linux.GIDMappings, wantG) {
					t.Errorf("mappings = %v %v", s.Linux.UIDMappings, s.Linux.GIDMappings)
				}
				m, ok := findMount(s.Mounts, "/sys")
				if !ok || m.Type != tc.wantSys.Type || m.Source != tc.wantSys.Source || !slices.Equal(m.Options, tc.wantSys.Options) {
					t.Errorf("/sys = %+v, want %+v", m, tc.wantSys)
				}
			})
		}
	})
	t.Run("run as user and privileged", func(t *testing.T) {
		p := testPod()
		sc := p.Config.Linux.SecurityContext
		sc.RunAsUser = &runtimeapi.Int64Value{Value: 1000}
		sc.SupplementalGroups = []int64{5000}
		sc.Privileged = true
		s := s(t, p)
		if u := s.Process.User; u.UID != 1000 || u.GID != 1000 || !slices.Equal(u.AdditionalGids, []uint32{1000, 5000}) {
			t.Errorf("user = %+v", u)
		}
		if s.Linux.Seccomp != nil {
			t.Errorf("privileged pod has a seccomp profile")
		}
	})
	for _, tc := range []struct {
		desc    string
		change  func(*Pod)
		wantErr error
	}{
		{desc: "user namespace without idmapped mounts", change: func(p *Pod) {
			p.Config.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{
				Mode: runtimeapi.NamespaceMode_POD,
				Uids: []*runtimeapi.IDMapping{{HostId: 100000, Length: 65536}},
				Gids: []*runtimeapi.IDMapping{{HostId: 100000, Length: 65536}},
			}}
		}, wantErr: errdefs.ErrNotImplemented},
		{desc: "no entrypoint", change: func(p *Pod) { p.Image = ocispec.ImageConfig{} }, wantErr: errdefs.ErrFailedPrecondition},
		{desc: "missing seccomp profile", change: func(p *Pod) {
			p.Config.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/nonexistent/profile.json"}
		}, wantErr: errdefs.ErrNotFound},
		{desc: "run_as_group alone", change: func(p *Pod) {
			p.Config.Linux.SecurityContext.RunAsGroup = &runtimeapi.Int64Value{Value: 1}
		}, wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p := testPod()
			tc.change(&p)
			_, err := testBuilder(t).Pod(p)
			checkErr(t, err, tc.wantErr)
		})
	}
}
