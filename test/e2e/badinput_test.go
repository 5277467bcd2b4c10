package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// hostSnapshot is what a rejected request must not change: mounts, network
// namespaces, files under accel-cri's directories, containerd's records.
type hostSnapshot struct {
	mounts, files, images []string
}

func takeSnapshot(t *testing.T, e podEnv) hostSnapshot {
	t.Helper()
	var s hostSnapshot
	b, _ := os.ReadFile("/proc/self/mounts")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], e.Dir) {
			s.mounts = append(s.mounts, f[1])
		}
	}
	for _, root := range []string{filepath.Join(e.Root, "sandbox"), filepath.Join(e.State, "sandbox")} {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil {
				s.files = append(s.files, p)
			}
			return nil
		})
	}
	s.images = containerdImages(t, e.AccelCRI)
	return s
}

func TestBadPodAndContainerInput(t *testing.T) {
	e := startPodEnv(t)
	ctx := ctxT(t, 5*time.Minute)
	podID, pod := e.runPod(t, "target")
	e.RunContainer(t, podID, pod, e.busybox("existing", "sleep 3600"))
	devFile := "/dev/acri-not-a-device-" + podID[:8]
	if err := os.WriteFile(devFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(devFile)
	outside := filepath.Join(e.Dir, "outside")
	os.MkdirAll(outside, 0o755)
	os.Symlink("/proc", filepath.Join(outside, "proc-link"))

	podCases := []struct {
		desc   string
		mutate func(*runtimeapi.PodSandboxConfig)
		code   codes.Code
	}{
		{"no metadata", func(c *runtimeapi.PodSandboxConfig) { c.Metadata = nil }, codes.InvalidArgument},
		{"empty name", func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = "" }, codes.InvalidArgument},
		{"name with slash", func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = "a/b" }, codes.InvalidArgument},
		{"relative log directory", func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "var/log/pods/x" }, codes.InvalidArgument},
		{"log directory with ..", func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "/var/log/pods/../../etc" }, codes.InvalidArgument},
		{"bad hostname", func(c *runtimeapi.PodSandboxConfig) { c.Hostname = "-bad_host-" }, codes.InvalidArgument},
		{"port out of range", func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 70000, HostPort: 8080}}
		}, codes.InvalidArgument},
		{"bad host IP", func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 80, HostPort: 8080, HostIp: "not-an-ip"}}
		}, codes.InvalidArgument},
		{"host sysctl", func(c *runtimeapi.PodSandboxConfig) { c.Linux.Sysctls = map[string]string{"kernel.panic": "1"} }, codes.InvalidArgument},
		{"DNS server not an IP", func(c *runtimeapi.PodSandboxConfig) { c.DnsConfig.Servers = []string{"dns.example"} }, codes.InvalidArgument},
		{"DNS option injecting a line", func(c *runtimeapi.PodSandboxConfig) { c.DnsConfig.Options = []string{"ndots:1\nnameserver 1.2.3.4"} }, codes.InvalidArgument},
		{"cgroup parent escaping", func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = "/kubepods/../../escape" }, codes.InvalidArgument},
		{"huge annotations", func(c *runtimeapi.PodSandboxConfig) {
			c.Annotations = map[string]string{"big": strings.Repeat("x", 1<<20)}
		}, codes.InvalidArgument},
		{"duplicate name", func(c *runtimeapi.PodSandboxConfig) { c.Metadata = pod.Metadata }, codes.AlreadyExists},
	}
	containerCases := []struct {
		desc   string
		podID  string
		mutate func(*runtimeapi.ContainerConfig)
		code   codes.Code
	}{
		{"unknown pod", strings.Repeat("a", 64), func(*runtimeapi.ContainerConfig) {}, codes.NotFound},
		{"malformed pod id", "../../etc", func(*runtimeapi.ContainerConfig) {}, codes.InvalidArgument},
		{"log path escaping the log directory", podID, func(c *runtimeapi.ContainerConfig) { c.LogPath = "../../escape.log" }, codes.InvalidArgument},
		{"absolute log path", podID, func(c *runtimeapi.ContainerConfig) { c.LogPath = "/etc/passwd" }, codes.InvalidArgument},
		{"mount over /proc", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/proc", HostPath: outside}}
		}, codes.InvalidArgument},
		{"mount over the rootfs root", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/", HostPath: outside}}
		}, codes.InvalidArgument},
		{"relative container path", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "data", HostPath: outside}}
		}, codes.InvalidArgument},
		{".. in host path", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: outside + "/../../etc"}}
		}, codes.InvalidArgument},
		{"recursive read-only without read-only", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: outside, RecursiveReadOnly: true}}
		}, codes.InvalidArgument},
		{"device outside /dev", podID, func(c *runtimeapi.ContainerConfig) {
			c.Devices = []*runtimeapi.Device{{HostPath: "/etc/passwd", ContainerPath: "/dev/x", Permissions: "rw"}}
		}, codes.InvalidArgument},
		{"device that is a regular file", podID, func(c *runtimeapi.ContainerConfig) {
			c.Devices = []*runtimeapi.Device{{HostPath: devFile, ContainerPath: "/dev/x", Permissions: "rw"}}
		}, codes.InvalidArgument},
		{"device with bad permissions", podID, func(c *runtimeapi.ContainerConfig) {
			c.Devices = []*runtimeapi.Device{{HostPath: "/dev/null", ContainerPath: "/dev/x", Permissions: "rwx"}}
		}, codes.InvalidArgument},
		{"negative memory", podID, func(c *runtimeapi.ContainerConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -1}
		}, codes.InvalidArgument},
		{"absurd oom_score_adj", podID, func(c *runtimeapi.ContainerConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{OomScoreAdj: 5000}
		}, codes.InvalidArgument},
		{"unknown capability", podID, func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"CAP_MAKE_COFFEE"}}
		}, codes.InvalidArgument},
		{"missing seccomp profile file", podID, func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/nonexistent/profile.json"}
		}, codes.NotFound},
		{"AppArmor profile on a host without AppArmor", podID, func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "my-profile"}
		}, codes.FailedPrecondition},
		{"CDI name with path separators", podID, func(c *runtimeapi.ContainerConfig) {
			c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.com/gpu=../../etc"}}
		}, codes.InvalidArgument},
		{"unknown image", podID, func(c *runtimeapi.ContainerConfig) { c.Image.Image = "sha256:" + strings.Repeat("0", 64) }, codes.NotFound},
		{"empty image", podID, func(c *runtimeapi.ContainerConfig) { c.Image.Image = "" }, codes.InvalidArgument},
		{"duplicate name", podID, func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = "existing" }, codes.AlreadyExists},
	}

	before := takeSnapshot(t, e)
	for _, tc := range podCases {
		t.Run("pod/"+tc.desc, func(t *testing.T) {
			cfg := e.PodConfig(t, "bad")
			tc.mutate(cfg)
			_, err := e.Runtime.RunPodSandbox(ctx, cfg, "")
			if status.Code(err) != tc.code {
				t.Fatalf("RunPodSandbox: %v, want %v", err, tc.code)
			}
		})
	}
	t.Run("pod/unknown runtime handler", func(t *testing.T) {
		if _, err := e.Runtime.RunPodSandbox(ctx, e.PodConfig(t, "handler"), "no-such-handler"); status.Code(err) != codes.NotFound {
			t.Fatalf("RunPodSandbox: %v, want NotFound", err)
		}
	})
	for _, tc := range containerCases {
		t.Run("container/"+tc.desc, func(t *testing.T) {
			c := e.busybox("bad", "true")
			tc.mutate(c)
			_, err := e.Runtime.CreateContainer(ctx, tc.podID, c, pod)
			if status.Code(err) != tc.code {
				t.Fatalf("CreateContainer: %v, want %v", err, tc.code)
			}
		})
	}
	t.Run("ids", func(t *testing.T) {
		for name, err := range map[string]error{
			"status of unknown container": func() error { _, err := e.Runtime.ContainerStatus(ctx, strings.Repeat("b", 64), false); return err }(),
			"status of unknown pod":       func() error { _, err := e.Runtime.PodSandboxStatus(ctx, strings.Repeat("b", 64), false); return err }(),
			"start unknown container":     e.Runtime.StartContainer(ctx, strings.Repeat("b", 64)),
		} {
			if status.Code(err) != codes.NotFound {
				t.Errorf("%s: %v, want NotFound", name, err)
			}
		}
		if err := e.Runtime.StopContainer(ctx, "", 0); status.Code(err) != codes.InvalidArgument {
			t.Errorf("stop with empty id: %v", err)
		}
		if err := e.Runtime.StopContainer(ctx, strings.Repeat("c", 64), -1); status.Code(err) != codes.InvalidArgument {
			t.Errorf("negative timeout: %v", err)
		}
	})
	after := takeSnapshot(t, e)
	for _, d := range []struct {
		what          string
		before, after []string
	}{{"mounts", before.mounts, after.mounts}, {"files", before.files, after.files}, {"images", before.images, after.images}} {
		if !slices.Equal(d.before, d.after) {
			t.Errorf("%s changed by rejected requests:\nbefore %v\nafter  %v", d.what, d.before, d.after)
		}
	}
	if pods, _ := e.Runtime.ListPodSandbox(ctx, nil); len(pods) != 1 {
		t.Errorf("%d pods after rejected requests, want 1", len(pods))
	}
}
