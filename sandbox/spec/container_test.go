package spec

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/pkg/cap"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// testContainer is an app container of testPodConfig's pod, with its pod
// files (podFiles).
func testContainer(t *testing.T) Container {
	p := podFiles(t)
	p.ID = "c1"
	p.SandboxID = "p1"
	p.PodConfig = testPodConfig()
	p.Config = &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
		Image:    &runtimeapi.ImageSpec{Image: "registry.local/app:1"},
		Args:     []string{"serve"},
		Envs:     []*runtimeapi.KeyValue{{Key: "MODE", Value: []byte("prod")}},
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{CpuShares: 256, MemoryLimitInBytes: 128 << 20, OomScoreAdj: -500},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				RunAsUser:    &runtimeapi.Int64Value{Value: 1000},
				Capabilities: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_BIND_SERVICE"}},
				NoNewPrivs:   true,
				Seccomp:      &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
				MaskedPaths:  []string{"/proc/kcore"},
			},
		},
	}
	p.Image = ocispec.ImageConfig{Entrypoint: []string{"/app"}, Cmd: []string{"help"}, Env: []string{"MODE=dev", "LANG=C"}, WorkingDir: "/srv"}
	p.ImageName = "registry.local/app:1"
	p.SandboxPID = 42
	p.NetNSPath = "/run/accel-cri/netns/p1"
	p.CgroupsPath = "/kubepods/pod1/c1"
	p.Handler.Name = "runc"
	return p
}

// withOOMFloor0 is a host that cannot lower oom_score_adj below 0.
func withOOMFloor0(h *Host) { h.OOM = oomFloor(0) }

// applyContainer builds p's spec with b and applies it (applyPlan).
func applyContainer(t *testing.T, b *Builder, p Container) (*oci.Spec, error) {
	t.Helper()
	plan, err := b.Container(p)
	if err != nil {
		return nil, err
	}
	return applyPlan(t, plan)
}

func TestSpecContainer(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		s, err := applyContainer(t, testBuilder(t, withOOMFloor0), testContainer(t))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(s.Process.Args, []string{"/app", "serve"}) || s.Process.Cwd != "/srv" {
			t.Errorf("args %q cwd %q", s.Process.Args, s.Process.Cwd)
		}
		if !slices.Equal(s.Process.Env, []string{defaultPathEnv, "HOSTNAME=web-0", "MODE=prod", "LANG=C"}) {
			t.Errorf("env = %q", s.Process.Env)
		}
		if u := s.Process.User; u.UID != 1000 || u.GID != 1000 || !slices.Equal(u.AdditionalGids, []uint32{10, 29, 1000}) {
			t.Errorf("user = %+v", u)
		}
		if got := nsString(s.Linux.Namespaces); got != "ipc=/proc/42/ns/ipc mount network=/run/accel-cri/netns/p1 pid=/proc/42/ns/pid uts=/proc/42/ns/uts" {
			t.Errorf("namespaces = %s", got)
		}
		if c := s.Process.Capabilities; !slices.Equal(c.Bounding, []string{"CAP_NET_BIND_SERVICE"}) || len(c.Ambient) != 0 {
			t.Errorf("capabilities = %+v", c)
		}
		if !s.Process.NoNewPrivileges || s.Root.Readonly {
			t.Errorf("no_new_privs %v readonly %v", s.Process.NoNewPrivileges, s.Root.Readonly)
		}
		if !slices.Equal(s.Linux.MaskedPaths, []string{"/proc/kcore"}) || len(s.Linux.ReadonlyPaths) == 0 {
			t.Errorf("masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
		}
		if s.Linux.Seccomp == nil {
			t.Error("no seccomp profile")
		}
		if *s.Process.OOMScoreAdj != 0 || s.Linux.CgroupsPath != "/kubepods/pod1/c1" || *s.Linux.Resources.CPU.Shares != 256 || *s.Linux.Resources.Memory.Limit != 128<<20 {
			t.Errorf("oom %d cgroup %q resources %+v", *s.Process.OOMScoreAdj, s.Linux.CgroupsPath, s.Linux.Resources)
		}
		for _, dst := range []string{etcHostname, etcHosts, resolvConf, devShm, sysFSCgroup} {
			if _, ok := findMount(s.Mounts, dst); !ok {
				t.Errorf("no mount at %s", dst)
			}
		}
		want := map[string]string{
			AnnotationContainerType:    ContainerTypeContainer,
			AnnotationSandboxID:        "p1",
			AnnotationSandboxName:      "web",
			AnnotationSandboxNamespace: "default",
			AnnotationSandboxUID:       "uid-1",
			AnnotationContainerName:    "app",
			AnnotationImageName:        "registry.local/app:1",
			AnnotationRuntimeHandler:   "runc",
		}
		if !maps.Equal(s.Annotations, want) {
			t.Errorf("annotations = %v, want %v", s.Annotations, want)
		}
	})
	t.Run("user namespace", func(t *testing.T) {
		ns := &runtimeapi.UserNamespace{
			Mode: runtimeapi.NamespaceMode_POD,
			Uids: []*runtimeapi.IDMapping{{HostId: 100000, Length: 65536}},
			Gids: []*runtimeapi.IDMapping{{HostId: 100000, Length: 65536}},
		}
		for _, tc := range []struct {
			desc    string
			hostNet bool
			wantNS  string
			wantSys string // type of the /sys mount
		}{
			{desc: "pod network", wantNS: "ipc=/proc/42/ns/ipc mount network=/run/accel-cri/netns/p1 pid=/proc/42/ns/pid user=/proc/42/ns/user uts=/proc/42/ns/uts", wantSys: "sysfs"},
			{desc: "host network binds the host's /sys", hostNet: true, wantNS: "ipc=/proc/42/ns/ipc mount pid=/proc/42/ns/pid user=/proc/42/ns/user", wantSys: "bind"},
		} {
			t.Run(tc.desc, func(t *testing.T) {
				p := testContainer(t)
				p.Handler.UserNamespaces = true
				p.PodConfig.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{UsernsOptions: ns}
				if tc.hostNet {
					p.NetNSPath = ""
					p.PodConfig.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
				}
				p.Config.Linux.SecurityContext.NamespaceOptions = p.PodConfig.Linux.SecurityContext.NamespaceOptions
				s, err := applyContainer(t, testBuilder(t), p)
				if err != nil {
					t.Fatal(err)
				}
				if got := nsString(s.Linux.Namespaces); got != tc.wantNS {
					t.Errorf("namespaces = %s, want %s", got, tc.wantNS)
				}
				sys := slices.IndexFunc(s.Mounts, func(m runtimespec.Mount) bool { return m.Destination == "/sys" })
				cg := slices.IndexFunc(s.Mounts, func(m runtimespec.Mount) bool { return m.Destination == sysFSCgroup })
				if sys < 0 {
					t.Fatalf("no mount at /sys in %v", s.Mounts)
				}
				if cg < sys || s.Mounts[sys].Type != tc.wantSys {
					t.Errorf("/sys at %d (%+v), cgroup at %d: want a %s mount before the cgroup one", sys, s.Mounts[sys], cg, tc.wantSys)
				}
				if n := len(slices.DeleteFunc(slices.Clone(s.Mounts), func(m runtimespec.Mount) bool { return m.Destination != "/sys" })); n != 1 {
					t.Errorf("%d mounts at /sys", n)
				}
			})
		}
	})
	t.Run("planning changes nothing on the host", func(t *testing.T) {
		p := testContainer(t)
		missing := filepath.Join(t.TempDir(), "must-not-exist")
		p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: missing}}
		plan, err := testBuilder(t).Container(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(missing); err == nil {
			t.Error("the plan created a host path")
		}
		for _, b := range plan.Binds() {
			if b.Source != "" {
				t.Errorf("bind %s has a source before the core resolved it", b.Field)
			}
		}
	})
	t.Run("handler's spec version", func(t *testing.T) {
		p := testContainer(t)
		p.Handler.SpecVersion = "1.0.0"
		s, err := applyContainer(t, testBuilder(t), p)
		if err != nil {
			t.Fatal(err)
		}
		if s.Version != "1.0.0" {
			t.Errorf("ociVersion = %q, want the handler's", s.Version)
		}
	})
	t.Run("privileged", func(t *testing.T) {
		p := testContainer(t)
		p.PodConfig.Linux.SecurityContext.Privileged = true
		p.Config.Linux.SecurityContext.Privileged = true
		s, err := applyContainer(t, testBuilder(t), p)
		if err != nil {
			t.Fatal(err)
		}
		current, _ := cap.Current()
		if !slices.Equal(s.Process.Capabilities.Bounding, current) || s.Linux.Seccomp != nil || len(s.Linux.MaskedPaths) != 0 {
			t.Errorf("caps %v seccomp %v masked %v", s.Process.Capabilities.Bounding, s.Linux.Seccomp != nil, s.Linux.MaskedPaths)
		}
		if m, _ := findMount(s.Mounts, sysFSCgroup); slices.Contains(m.Options, "ro") {
			t.Errorf("cgroupfs read-only: %v", m.Options)
		}
	})
	t.Run("device and mount", func(t *testing.T) {
		p := testContainer(t)
		root := t.TempDir()
		dev := filepath.Join(root, "null")
		if err := mknodNull(dev); err != nil {
			t.Fatal(err)
		}
		host := filepath.Join(t.TempDir(), "new")
		p.Config.Devices = []*runtimeapi.Device{{HostPath: dev, ContainerPath: "/dev/accel0", Permissions: "rw"}}
		p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: host, Readonly: true}}
		p.Config.Linux.SecurityContext.ReadonlyRootfs = true
		s, err := applyContainer(t, testBuilder(t, func(h *Host) { h.DeviceNode = devNode(root) }), p)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(s.Linux.Devices, func(d runtimespec.LinuxDevice) bool { return d.Path == "/dev/accel0" && d.Major == 1 && d.Minor == 3 }) {
			t.Errorf("devices = %+v", s.Linux.Devices)
		}
		if m, ok := findMount(s.Mounts, "/data"); !ok || !slices.Contains(m.Options, "ro") {
			t.Errorf("data mount = %+v", m)
		}
		if m, _ := findMount(s.Mounts, etcHosts); !slices.Contains(m.Options, "ro") || !s.Root.Readonly {
			t.Errorf("hosts mount %v with readonly rootfs", m.Options)
		}
	})
	for _, tc := range []struct {
		desc    string
		change  func(*Container)
		wantErr error
	}{
		{desc: "privileged container in an unprivileged pod", change: func(p *Container) { p.Config.Linux.SecurityContext.Privileged = true }, wantErr: errdefs.ErrInvalidArgument},
		{desc: "no command", change: func(p *Container) { p.Image = ocispec.ImageConfig{}; p.Config.Args = nil }, wantErr: errdefs.ErrInvalidArgument},
		{desc: "unknown capability", change: func(p *Container) {
			p.Config.Linux.SecurityContext.Capabilities.AddCapabilities = []string{"TELEPORT"}
		}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "apparmor localhost without apparmor", change: func(p *Container) {
			p.Config.Linux.SecurityContext.Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "x"}
		}, wantErr: errdefs.ErrFailedPrecondition},
		{desc: "unified on cgroup v1", change: func(p *Container) {
			p.Config.Linux.Resources.Unified = map[string]string{"memory.high": "1"}
		}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "sandbox not running", change: func(p *Container) { p.SandboxPID = 0 }, wantErr: errdefs.ErrFailedPrecondition},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p := testContainer(t)
			p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/must-not-exist"}}
			tc.change(&p)
			_, err := testBuilder(t).Container(p)
			checkErr(t, err, tc.wantErr)
		})
	}
}
