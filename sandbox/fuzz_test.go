package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/internal/testutil"
	"github.com/accel-cri/accel-cri/sandbox/spec"
)

// The fuzz target of this file feeds wire-decoded container configs
// straight to CreateContainer's spec path (sandbox/spec's plan, the host
// side of its mounts, the options applied), without cri's validation in
// front: it must hold on its own. It checks that
//   - nothing panics and every refusal is a classified errdefs error (an
//     unclassified one reaches kubelet as Unknown),
//   - an accepted unprivileged container gets no device node, device rule,
//     capability or writable host / or /proc it did not ask for,
//   - and bind mounts get no option beyond rbind, propagation, ro/rro/rw
//     and the nodev, noexec, nosuid that mount_options may add.
// Host side effects are confined: CRI mount host paths that do not exist
// are moved under a temp dir (missing ones are created) and Localhost
// seccomp profiles point at a fixed file (reading a FIFO named by the
// input would block). sandbox/spec fuzzes the pause container's spec.

const maxFuzzInput = 1 << 16

// classified reports whether err carries one of the errdefs classes the
// spec path uses.
func classified(err error) bool {
	return errdefs.IsInvalidArgument(err) || errdefs.IsNotFound(err) || errdefs.IsFailedPrecondition(err) || errdefs.IsNotImplemented(err)
}

// profileLocalhost is the prefix of a deprecated Localhost profile.
const profileLocalhost = "localhost/"

// confineHostPaths rewrites the parts of c that would touch the host
// beyond reading it.
func confineHostPaths(t *testing.T, c *runtimeapi.ContainerConfig) {
	root := t.TempDir()
	for _, m := range c.GetMounts() {
		if m == nil || m.GetHostPath() == "" {
			continue
		}
		if _, err := os.Lstat(m.GetHostPath()); err != nil {
			m.HostPath = filepath.Join(root, m.GetHostPath())
		}
	}
	sc := c.GetLinux().GetSecurityContext()
	if sc == nil {
		return
	}
	profile := filepath.Join(root, "seccomp.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if sc.GetSeccomp().GetProfileType() == runtimeapi.SecurityProfile_Localhost {
		sc.Seccomp.LocalhostRef = profile
	}
	if strings.HasPrefix(sc.GetSeccompProfilePath(), profileLocalhost) {
		sc.SeccompProfilePath = profileLocalhost + profile
	}
}

func FuzzContainerSpec(f *testing.F) {
	r := &Runtime{}
	b, err := r.newSpecBuilder()
	if err != nil {
		f.Fatal(err)
	}
	defaultCaps := fuzzDefaultCapabilities(f, b)
	f.Add(testutil.Marshal(f, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
		Args:     []string{"serve"},
		Mounts:   []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/nonexistent/data", Propagation: runtimeapi.MountPropagation_PROPAGATION_PRIVATE}},
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{CpuShares: 256, MemoryLimitInBytes: 128 << 20, OomScoreAdj: -500, CpusetCpus: "0"},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				RunAsUser:    &runtimeapi.Int64Value{Value: 1000},
				Capabilities: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_BIND_SERVICE"}},
				Seccomp:      &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
				MaskedPaths:  []string{"/proc/kcore"},
			},
		},
	}), false)
	f.Add(testutil.Marshal(f, &runtimeapi.ContainerConfig{
		Mounts:  []*runtimeapi.Mount{{ContainerPath: "/host", HostPath: "/"}, {ContainerPath: "/p", HostPath: "/proc", Readonly: true}},
		Devices: []*runtimeapi.Device{{ContainerPath: "/dev/x", HostPath: "/dev/null", Permissions: "rw"}},
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}, DropCapabilities: []string{"ALL"}},
		}},
	}), false)
	f.Add(testutil.Marshal(f, &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{Privileged: true}}}), true)
	f.Add(testutil.Marshal(f, &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{
		{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: "busybox"}, Readonly: true, ImageSubPath: "etc"},
		{ContainerPath: "/img/rw", Image: &runtimeapi.ImageSpec{Image: "busybox"}},
		{ContainerPath: "/img/opts", Image: &runtimeapi.ImageSpec{Image: "busybox"}, Readonly: true, MountOptions: []string{"noexec"}},
	}}), false)
	f.Add(testutil.Marshal(f, &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{
		{ContainerPath: "/m", HostPath: "/nonexistent/m", MountOptions: []string{"noexec", "nodev", "nosuid"}},
		{ContainerPath: "/n", HostPath: "/nonexistent/n", Readonly: true, MountOptions: []string{"rw", "suid"}},
	}}), false)
	f.Fuzz(func(t *testing.T, data []byte, privilegedPod bool) {
		if len(data) > maxFuzzInput {
			return
		}
		cfg := &runtimeapi.ContainerConfig{}
		if proto.Unmarshal(data, cfg) != nil {
			return
		}
		confineHostPaths(t, cfg)
		p := fuzzContainer(t)
		p.Config = cfg
		p.Handler.MountOptions = true // runc's handler
		p.PodConfig.Linux.SecurityContext.Privileged = privilegedPod
		plan, err := b.Container(p)
		if err == nil {
			err = resolveMountSources(plan.Binds(), cfg.GetLinux().GetSecurityContext().GetPrivileged())
		}
		if err != nil {
			if !classified(err) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		// Image volumes are mounted by the runtime before the spec is
		// applied; here each is an empty directory.
		var vols []*imageVolume
		for i, m := range cfg.GetMounts() {
			if m.GetImage().GetImage() != "" {
				vols = append(vols, &imageVolume{Mount: i, Source: t.TempDir()})
			}
		}
		bindImageVolumes(plan.Binds(), vols)
		s, err := fuzzApply(t, plan.Opts(nil))
		if err != nil {
			// Users and groups named by the request are looked up in the
			// image when the spec is applied.
			if !classified(err) && !strings.Contains(err.Error(), "no users found") && !strings.Contains(err.Error(), "no groups found") {
				t.Fatalf("unclassified error applying the spec: %v", err)
			}
			return
		}
		for _, m := range s.Mounts {
			if m.Type == "bind" && spec.IsSensitiveHostPath(m.Source) && !slices.Contains(m.Options, "ro") && !slices.Contains(m.Options, "rro") {
				t.Fatalf("writable bind of host %s at %s", m.Source, m.Destination)
			}
		}
		// An image volume is bound read-only, whatever the request says.
		for _, v := range vols {
			for _, m := range s.Mounts {
				if m.Source == v.Source && !slices.Contains(m.Options, "ro") && !slices.Contains(m.Options, "rro") {
					t.Fatalf("writable image volume at %s: %v", m.Destination, m.Options)
				}
			}
		}
		// Bind mounts carry only the options accel-cri derives (rbind,
		// propagation, ro/rro/rw) and the ones mount_options may add, each
		// once: nothing a request names can widen a volume (dev, suid,
		// exec) or change its type. Checked for privileged containers too.
		for _, m := range s.Mounts {
			if m.Type != "bind" {
				continue
			}
			for i, o := range m.Options {
				if !slices.Contains(bindSpecOptions, o) || slices.Index(m.Options, o) != i {
					t.Fatalf("bind mount at %s has options %q", m.Destination, m.Options)
				}
			}
		}
		for _, m := range cfg.GetMounts() {
			for i, o := range m.GetMountOptions() {
				if (o != "nodev" && o != "noexec" && o != "nosuid") || slices.Index(m.GetMountOptions(), o) != i {
					t.Fatalf("accepted mount options %q", m.GetMountOptions())
				}
			}
		}
		sc := cfg.GetLinux().GetSecurityContext()
		if sc.GetPrivileged() {
			if !privilegedPod {
				t.Fatal("privileged container accepted in an unprivileged pod")
			}
			return
		}
		var asked []string
		for _, d := range cfg.GetDevices() {
			asked = append(asked, filepath.Clean(d.GetContainerPath()))
		}
		for _, d := range s.Linux.Devices {
			if !slices.Contains(asked, d.Path) {
				t.Fatalf("device %s not asked for (asked %q)", d.Path, asked)
			}
		}
		if r := s.Linux.Resources; r != nil {
			for i, d := range r.Devices {
				if d.Allow && (d.Major == nil || d.Minor == nil || i == 0) {
					t.Fatalf("device rule %d allows more than one device: %+v", i, d)
				}
			}
		}
		added := sc.GetCapabilities().GetAddCapabilities()
		if len(added) == 0 && s.Process.Capabilities != nil {
			for _, c := range s.Process.Capabilities.Bounding {
				if !slices.Contains(defaultCaps, c) {
					t.Fatalf("capability %s not asked for", c)
				}
			}
			if len(s.Process.Capabilities.Ambient) > 0 && len(sc.GetCapabilities().GetAddAmbientCapabilities()) == 0 {
				t.Fatalf("ambient capabilities %v not asked for", s.Process.Capabilities.Ambient)
			}
		}
	})
}

// bindSpecOptions are the options a bind mount of a container spec may
// have.
var bindSpecOptions = []string{"rbind", "rprivate", "rslave", "rshared", "ro", "rro", "rw", "nodev", "noexec", "nosuid"}

// fuzzContainer is a container of a pod whose pod files exist.
func fuzzContainer(t *testing.T) spec.Container {
	dir := t.TempDir()
	p := spec.Container{
		ID: "c1", SandboxID: "p1", SandboxPID: 42, NetNSPath: "/run/accel-cri/netns/p1", CgroupsPath: "/kubepods/pod1/c1",
		PodConfig: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "uid-1"},
			Hostname: "web-0",
			Linux:    &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{}},
		},
		HostnamePath: filepath.Join(dir, "hostname"), HostsPath: filepath.Join(dir, "hosts"),
		ResolvPath: filepath.Join(dir, "resolv.conf"), ShmPath: filepath.Join(dir, "shm"),
		Handler: spec.Handler{Name: "runc"},
	}
	p.Image.Entrypoint = []string{"/app"}
	for _, f := range []string{p.HostnamePath, p.HostsPath, p.ResolvPath} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(p.ShmPath, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// fuzzApply applies opts as containerd.WithNewSpec does, over a rootfs
// whose /etc/passwd and /etc/group know root only.
func fuzzApply(t testing.TB, opts []oci.SpecOpts) (*oci.Spec, error) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, line := range map[string]string{"passwd": "root:x:0:0:root:/root:/bin/sh\n", "group": "root:x:0:\n"} {
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx := namespaces.WithNamespace(t.Context(), "accel-cri")
	return oci.GenerateSpec(ctx, nil, &containers.Container{ID: "c1"}, append([]oci.SpecOpts{oci.WithRootFSPath(root)}, opts...)...)
}

// fuzzDefaultCapabilities are the capabilities a container that asks for
// none gets.
func fuzzDefaultCapabilities(f *testing.F, b *spec.Builder) []string {
	dir := f.TempDir()
	plan, err := b.Container(spec.Container{
		ID: "c1", SandboxID: "p1", SandboxPID: 42, NetNSPath: "/run/accel-cri/netns/p1",
		PodConfig:    &runtimeapi.PodSandboxConfig{Hostname: "web-0"},
		Config:       &runtimeapi.ContainerConfig{Args: []string{"/app"}},
		HostnamePath: dir, HostsPath: dir, ResolvPath: dir, ShmPath: dir,
	})
	if err != nil {
		f.Fatal(err)
	}
	for _, bind := range plan.Binds() {
		bind.Source = bind.HostPath
	}
	s, err := fuzzApply(f, plan.Opts(nil))
	if err != nil {
		f.Fatal(err)
	}
	return s.Process.Capabilities.Bounding
}
