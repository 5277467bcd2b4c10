package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// hostSnapshot is what a rejected request must not change. Everything in
// it is scoped to this test's accel-cri: other engineers run accel-cri,
// containerd and CNI on the same machine at the same time, so host-wide
// lists (all mounts, /var/run/netns, all cgroups) change under the test for
// reasons that have nothing to do with it.
type hostSnapshot struct {
	// mounts: /proc/self/mountinfo lines (without the mount ids, which
	// differ between readers) whose mount point or root is under the
	// instance's dir: its pod files, /dev/shm tmpfs, netns bind mounts and
	// overlay rootfs mounts.
	mounts []string
	// netns: the pod network namespaces of the instance (accel-cri keeps
	// them under <state>, never in /var/run/netns) and the nsfs mounts.
	netns []string
	// cni: host-local IP allocations of the test's network and CNI cached
	// results named after it.
	cni []string
	// files: path, mode and size of everything under <root>, <state>, the
	// pod log dirs and the test's own host dirs. containerd's own dirs
	// (<root>/containerd, <state>/containerd) are left out: its bbolt
	// database and task state change on reads and leases; its records are
	// compared through its API instead (images, containers).
	files []string
	// cgroups: the directories of the instance's cgroup parent in every
	// controller.
	cgroups []string
	// containerd records in accel-cri's namespace; snapshots of the
	// overlayfs snapshotter by key and kind (image volumes' views among
	// them).
	images, containers, snapshots []string
}

func takeSnapshot(t *testing.T, e podEnv, extraDirs ...string) hostSnapshot {
	t.Helper()
	var s hostSnapshot
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || !(strings.HasPrefix(f[4], e.Dir) || strings.HasPrefix(f[3], e.Dir)) {
			continue
		}
		line := strings.Join(f[2:], " ")
		s.mounts = append(s.mounts, line)
		if slices.Contains(f, "nsfs") {
			s.netns = append(s.netns, f[4])
		}
	}
	walk := func(root string, skip ...string) []string {
		var out []string
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if d.IsDir() && slices.Contains(skip, p) {
				return filepath.SkipDir
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			size := fi.Size()
			if d.IsDir() {
				size = 0 // directory sizes grow and never shrink on ext4
			}
			out = append(out, fmt.Sprintf("%s %v %d", p, fi.Mode(), size))
			if strings.Contains(p, "netns") && !d.IsDir() {
				s.netns = append(s.netns, p)
			}
			return nil
		})
		return out
	}
	s.files = append(s.files, walk(e.Root, filepath.Join(e.Root, "containerd"))...)
	s.files = append(s.files, walk(e.State, filepath.Join(e.State, "containerd"))...)
	s.files = append(s.files, walk(filepath.Join(e.Dir, "pods"))...)
	for _, d := range extraDirs {
		s.files = append(s.files, walk(d)...)
	}
	s.cni = walk(filepath.Join(e.Dir, "ipam"))
	results, _ := filepath.Glob("/var/lib/cni/results/" + e.NetworkName + "-*")
	s.cni = append(s.cni, results...)
	s.cgroups = cgroups.Local().Walk(e.CgroupRoot())
	s.images = containerdImages(t, e.AccelCRI)
	s.containers = containerdContainers(t, e.AccelCRI)
	s.snapshots = containerdSnapshots(t, e.AccelCRI)
	for _, l := range [][]string{s.mounts, s.netns, s.cni, s.files, s.cgroups} {
		slices.Sort(l)
	}
	return s
}

// containerdContainers lists the container records (id and snapshot) in
// accel-cri's containerd namespace.
func containerdContainers(t *testing.T, a *framework.AccelCRI) []string {
	t.Helper()
	c, err := containerd.New(filepath.Join(a.State, "containerd", "containerd.sock"), containerd.WithDefaultNamespace("accel-cri"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cs, err := c.ContainerService().List(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, x := range cs {
		out = append(out, x.ID+" "+x.SnapshotKey)
	}
	slices.Sort(out)
	return out
}

// containerdSnapshots lists the snapshots (key and kind) of the overlayfs
// snapshotter in accel-cri's containerd namespace.
func containerdSnapshots(t *testing.T, a *framework.AccelCRI) []string {
	t.Helper()
	c, err := containerd.New(filepath.Join(a.State, "containerd", "containerd.sock"), containerd.WithDefaultNamespace("accel-cri"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out []string
	if err := c.SnapshotService("overlayfs").Walk(ctxT(t, 30*time.Second), func(_ context.Context, i snapshots.Info) error {
		out = append(out, i.Name+" "+i.Kind.String())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// compare fails the test for every part of the snapshot that changed.
func (before hostSnapshot) compare(t *testing.T, after hostSnapshot) {
	t.Helper()
	for _, d := range []struct {
		what          string
		before, after []string
	}{
		{"mounts", before.mounts, after.mounts},
		{"network namespaces", before.netns, after.netns},
		{"CNI allocations", before.cni, after.cni},
		{"files", before.files, after.files},
		{"cgroups", before.cgroups, after.cgroups},
		{"containerd images", before.images, after.images},
		{"containerd containers", before.containers, after.containers},
		{"containerd snapshots", before.snapshots, after.snapshots},
	} {
		if !slices.Equal(d.before, d.after) {
			var added, removed []string
			for _, x := range d.after {
				if !slices.Contains(d.before, x) {
					added = append(added, x)
				}
			}
			for _, x := range d.before {
				if !slices.Contains(d.after, x) {
					removed = append(removed, x)
				}
			}
			t.Errorf("%s changed by rejected requests:\nadded   %q\nremoved %q", d.what, added, removed)
		}
	}
}

func TestBadPodAndContainerInput(t *testing.T) {
	e := startPodEnv(t)
	ctx := ctxT(t, 5*time.Minute)
	podID, pod := e.runPod(t, "target")
	e.RunContainer(t, podID, pod, e.busybox("existing", "sleep 3600"))
	existingID := e.RunContainer(t, podID, pod, e.busybox("existing2", "sleep 3600"))

	// Host objects the hostile requests point at. They are made before
	// the first snapshot; the ones in /dev are removed by the test.
	outside := filepath.Join(e.Dir, "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"proc-link":     "/proc",
		"root-link":     "/",
		"sysrq-link":    "/proc/sysrq-trigger",
		"dangling-link": filepath.Join(outside, "created-through-link"),
	} {
		if err := os.Symlink(target, filepath.Join(outside, name)); err != nil {
			t.Fatal(err)
		}
	}
	devFile := "/dev/acri-not-a-device-" + podID[:8]
	if err := os.WriteFile(devFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(devFile) })
	// A device node outside /dev reached through a symlink inside /dev.
	foreignNode := filepath.Join(outside, "null")
	if err := syscall.Mknod(foreignNode, syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
		t.Fatal(err)
	}
	devLink := "/dev/acri-link-" + podID[:8]
	if err := os.Symlink(foreignNode, devLink); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(devLink) })

	podCases := []struct {
		desc   string
		mutate func(*runtimeapi.PodSandboxConfig)
		code   codes.Code
	}{
		{"no metadata", func(c *runtimeapi.PodSandboxConfig) { c.Metadata = nil }, codes.InvalidArgument},
		{"empty name", func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = "" }, codes.InvalidArgument},
		{"empty namespace", func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Namespace = "" }, codes.InvalidArgument},
		{"name with slash", func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Name = "a/b" }, codes.InvalidArgument},
		{"uid ..", func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Uid = ".." }, codes.InvalidArgument},
		{"relative log directory", func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "var/log/pods/x" }, codes.InvalidArgument},
		{"log directory with ..", func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = "/var/log/pods/../../etc" }, codes.InvalidArgument},
		{"bad hostname", func(c *runtimeapi.PodSandboxConfig) { c.Hostname = "-bad_host-" }, codes.InvalidArgument},
		{"container port out of range", func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 70000, HostPort: 8080}}
		}, codes.InvalidArgument},
		{"negative host port", func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 80, HostPort: -1}}
		}, codes.InvalidArgument},
		{"unknown protocol", func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 80, Protocol: 99}}
		}, codes.InvalidArgument},
		{"bad host IP", func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 80, HostPort: 8080, HostIp: "not-an-ip"}}
		}, codes.InvalidArgument},
		{"host sysctl", func(c *runtimeapi.PodSandboxConfig) { c.Linux.Sysctls = map[string]string{"kernel.panic": "1"} }, codes.InvalidArgument},
		{"DNS server not an IP", func(c *runtimeapi.PodSandboxConfig) { c.DnsConfig.Servers = []string{"dns.example"} }, codes.InvalidArgument},
		{"DNS option injecting a line", func(c *runtimeapi.PodSandboxConfig) { c.DnsConfig.Options = []string{"ndots:1\nnameserver 1.2.3.4"} }, codes.InvalidArgument},
		{"cgroup parent escaping", func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = "/kubepods/../../escape" }, codes.InvalidArgument},
		{"negative run_as_user", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: -1}
		}, codes.InvalidArgument},
		{"absurd pod CPU shares", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuShares: 1 << 40}
		}, codes.InvalidArgument},
		{"huge annotations", func(c *runtimeapi.PodSandboxConfig) {
			c.Annotations = map[string]string{"big": strings.Repeat("x", 1<<20)}
		}, codes.InvalidArgument},
		{"huge label key", func(c *runtimeapi.PodSandboxConfig) {
			c.Labels = map[string]string{strings.Repeat("k", 400): "v"}
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
		// An id accel-cri never hands out names nothing that exists.
		{"malformed pod id", "../../etc", func(*runtimeapi.ContainerConfig) {}, codes.NotFound},
		{"empty name", podID, func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = "" }, codes.InvalidArgument},
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
		{".. in container path", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data/../proc/sys", HostPath: outside}}
		}, codes.InvalidArgument},
		{".. in host path", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: outside + "/../../etc"}}
		}, codes.InvalidArgument},
		{"host / read-write", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/host", HostPath: "/"}}
		}, codes.InvalidArgument},
		{"host /proc read-write", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/hostproc", HostPath: "/proc"}}
		}, codes.InvalidArgument},
		{"symlink to host / read-write", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/host", HostPath: filepath.Join(outside, "root-link")}}
		}, codes.InvalidArgument},
		{"symlink to host /proc read-write", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/hostproc", HostPath: filepath.Join(outside, "proc-link")}}
		}, codes.InvalidArgument},
		{"symlink to /proc/sysrq-trigger read-write", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/sysrq", HostPath: filepath.Join(outside, "sysrq-link")}}
		}, codes.InvalidArgument},
		{"dangling symlink host path", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{
				{ContainerPath: "/fresh", HostPath: filepath.Join(outside, "fresh")}, // must not be created either
				{ContainerPath: "/data", HostPath: filepath.Join(outside, "dangling-link")},
			}
		}, codes.InvalidArgument},
		{"recursive read-only without read-only", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: outside, RecursiveReadOnly: true}}
		}, codes.InvalidArgument},
		// Malformed mount_options: the host path does not exist yet and
		// must not be created.
		{"mount option exec (widens)", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: filepath.Join(outside, "fresh-opts"), MountOptions: []string{"noexec", "exec"}}}
		}, codes.InvalidArgument},
		{"mount option dev (widens)", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: filepath.Join(outside, "fresh-opts"), MountOptions: []string{"dev"}}}
		}, codes.InvalidArgument},
		{"mount option suid (widens)", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: filepath.Join(outside, "fresh-opts"), MountOptions: []string{"nodev", "suid"}}}
		}, codes.InvalidArgument},
		{"mount option rw on a read-only mount", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: filepath.Join(outside, "fresh-opts"), Readonly: true, MountOptions: []string{"rw"}}}
		}, codes.InvalidArgument},
		{"unknown mount option", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: filepath.Join(outside, "fresh-opts"), MountOptions: []string{"noatime"}}}
		}, codes.InvalidArgument},
		{"empty mount option", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: filepath.Join(outside, "fresh-opts"), MountOptions: []string{""}}}
		}, codes.InvalidArgument},
		{"mount option with data", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: filepath.Join(outside, "fresh-opts"), MountOptions: []string{"mode=4777"}}}
		}, codes.InvalidArgument},
		{"mount option with white space", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: filepath.Join(outside, "fresh-opts"), MountOptions: []string{"noexec nodev"}}}
		}, codes.InvalidArgument},
		{"duplicate mount option", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: filepath.Join(outside, "fresh-opts"), MountOptions: []string{"nosuid", "nosuid"}}}
		}, codes.InvalidArgument},
		{"mount options on an image volume", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: c.Image.Image}, MountOptions: []string{"noexec"}}}
		}, codes.InvalidArgument},
		// Image volumes (Mount.image): refused by validation, by the image
		// lookup, or after their views were made and mounted (a sub path
		// is found only in the mounted image), which are then undone.
		{"image volume read-write", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: c.Image.Image}}}
		}, codes.InvalidArgument},
		{"image volume with a host path", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/img", HostPath: outside, Image: &runtimeapi.ImageSpec{Image: c.Image.Image}, Readonly: true}}
		}, codes.InvalidArgument},
		{"image volume of an unknown image", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: "sha256:" + strings.Repeat("0", 64)}, Readonly: true}}
		}, codes.NotFound},
		{"image volume sub path escaping", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: c.Image.Image}, Readonly: true, ImageSubPath: "etc/../../.."}}
		}, codes.InvalidArgument},
		{"image volume sub path missing", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: c.Image.Image}, Readonly: true, ImageSubPath: "not-in-the-image"}}
		}, codes.NotFound},
		{"image volume sub path a file", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: c.Image.Image}, Readonly: true, ImageSubPath: "etc/passwd"}}
		}, codes.InvalidArgument},
		{"image volume sub path a symlink to a file", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: c.Image.Image}, Readonly: true, ImageSubPath: "bin/sh"}}
		}, codes.InvalidArgument},
		{"second image volume fails after the first was mounted", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{
				{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: c.Image.Image}, Readonly: true, ImageSubPath: "etc"},
				{ContainerPath: "/img2", Image: &runtimeapi.ImageSpec{Image: c.Image.Image}, Readonly: true, ImageSubPath: "etc/none"},
			}
		}, codes.NotFound},
		{"image volume and a dangling symlink host path", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{
				{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: c.Image.Image}, Readonly: true},
				{ContainerPath: "/data", HostPath: filepath.Join(outside, "dangling-link")},
			}
		}, codes.InvalidArgument},
		{"sub path on a host path mount", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: outside, ImageSubPath: "etc"}}
		}, codes.InvalidArgument},
		{"device outside /dev", podID, func(c *runtimeapi.ContainerConfig) {
			c.Devices = []*runtimeapi.Device{{HostPath: "/etc/passwd", ContainerPath: "/dev/x", Permissions: "rw"}}
		}, codes.InvalidArgument},
		{"device container path outside /dev", podID, func(c *runtimeapi.ContainerConfig) {
			c.Devices = []*runtimeapi.Device{{HostPath: "/dev/null", ContainerPath: "/etc/x", Permissions: "rw"}}
		}, codes.InvalidArgument},
		{"device that is a regular file", podID, func(c *runtimeapi.ContainerConfig) {
			c.Devices = []*runtimeapi.Device{{HostPath: devFile, ContainerPath: "/dev/x", Permissions: "rw"}}
		}, codes.InvalidArgument},
		{"device symlink in /dev to a node outside /dev", podID, func(c *runtimeapi.ContainerConfig) {
			c.Devices = []*runtimeapi.Device{{HostPath: devLink, ContainerPath: "/dev/x", Permissions: "rw"}}
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
		{"absurd CPU period", podID, func(c *runtimeapi.ContainerConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuPeriod: 1 << 50}
		}, codes.InvalidArgument},
		{"cpuset overflowing", podID, func(c *runtimeapi.ContainerConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpusetCpus: "0-9223372036854775807"}
		}, codes.InvalidArgument},
		{"unknown capability", podID, func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"CAP_MAKE_COFFEE"}}
		}, codes.InvalidArgument},
		{"privileged in an unprivileged pod", podID, func(c *runtimeapi.ContainerConfig) { c.Linux.SecurityContext.Privileged = true }, codes.InvalidArgument},
		{"missing seccomp profile file", podID, func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/nonexistent/profile.json"}
		}, codes.NotFound},
		{"AppArmor profile on a host without AppArmor", podID, func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "my-profile"}
		}, codes.FailedPrecondition},
		{"CDI name with path separators", podID, func(c *runtimeapi.ContainerConfig) {
			c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.com/gpu=../../etc"}}
		}, codes.InvalidArgument},
		{"CDI one-letter vendor (panicked the CDI parser)", podID, func(c *runtimeapi.ContainerConfig) {
			c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "a/b=c"}}
		}, codes.InvalidArgument},
		{"CDI annotation with a bad name", podID, func(c *runtimeapi.ContainerConfig) {
			c.Annotations = map[string]string{"cdi.k8s.io/plugin": "vendor.com/gpu=/etc/passwd"}
		}, codes.InvalidArgument},
		{"unknown CDI device", podID, func(c *runtimeapi.ContainerConfig) {
			c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.example/gpu=0"}}
		}, codes.NotFound},
		{"env value not UTF-8", podID, func(c *runtimeapi.ContainerConfig) {
			c.Envs = []*runtimeapi.KeyValue{{Key: "A", Value: []byte("\xff\xfe")}}
		}, codes.InvalidArgument},
		{"env key with '='", podID, func(c *runtimeapi.ContainerConfig) {
			c.Envs = []*runtimeapi.KeyValue{{Key: "PATH=/evil", Value: []byte("x")}}
		}, codes.InvalidArgument},
		{"huge labels", podID, func(c *runtimeapi.ContainerConfig) {
			c.Labels = map[string]string{"big": strings.Repeat("x", 1<<20)}
		}, codes.InvalidArgument},
		{"unknown image", podID, func(c *runtimeapi.ContainerConfig) { c.Image.Image = "sha256:" + strings.Repeat("0", 64) }, codes.NotFound},
		{"empty image", podID, func(c *runtimeapi.ContainerConfig) { c.Image.Image = "" }, codes.InvalidArgument},
		{"duplicate name", podID, func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = "existing" }, codes.AlreadyExists},
	}
	// Pod configs (PodConfig makes a log dir per pod) are made before the
	// snapshot: only what accel-cri does is compared.
	podConfigs := make([]*runtimeapi.PodSandboxConfig, len(podCases))
	for i := range podCases {
		podConfigs[i] = e.PodConfig(t, "bad")
	}
	handlerPod := e.PodConfig(t, "handler")

	before := takeSnapshot(t, e, outside)
	// The running pod must show in every part, or the snapshot would
	// compare nothing.
	t.Logf("snapshot: %d mounts, %d netns, %d CNI entries, %d files, %d cgroups, %d images, %d containers, %d containerd snapshots",
		len(before.mounts), len(before.netns), len(before.cni), len(before.files), len(before.cgroups), len(before.images), len(before.containers), len(before.snapshots))
	if len(before.mounts) == 0 || len(before.netns) == 0 || len(before.cni) == 0 || len(before.files) == 0 || len(before.cgroups) == 0 || len(before.containers) == 0 || len(before.snapshots) == 0 {
		t.Fatalf("snapshot misses the running pod: %+v", before)
	}
	for i, tc := range podCases {
		t.Run("pod/"+tc.desc, func(t *testing.T) {
			cfg := podConfigs[i]
			tc.mutate(cfg)
			_, err := e.Runtime.RunPodSandbox(ctx, cfg, "")
			if status.Code(err) != tc.code {
				t.Fatalf("RunPodSandbox: %v, want %v", err, tc.code)
			}
		})
	}
	t.Run("pod/unknown runtime handler", func(t *testing.T) {
		if _, err := e.Runtime.RunPodSandbox(ctx, handlerPod, "no-such-handler"); status.Code(err) != codes.NotFound {
			t.Fatalf("RunPodSandbox: %v, want NotFound", err)
		}
	})
	t.Run("pod/name not UTF-8 on the wire", func(t *testing.T) {
		// The CRI client refuses to marshal invalid UTF-8, so the request
		// is sent as raw protobuf: gRPC refuses it before any handler.
		if code := rawRunPodSandbox(t, e.Socket, "\xff\xfe"); code != codes.Internal {
			t.Fatalf("RunPodSandbox with a non-UTF-8 name: %v, want Internal (unmarshal error)", code)
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
	unknown := strings.Repeat("b", 64)
	for _, tc := range []struct {
		desc string
		call func() error
		code codes.Code
	}{
		{"status of unknown container", func() error { _, err := e.Runtime.ContainerStatus(ctx, unknown, false); return err }, codes.NotFound},
		{"status of unknown pod", func() error { _, err := e.Runtime.PodSandboxStatus(ctx, unknown, false); return err }, codes.NotFound},
		{"start unknown container", func() error { return e.Runtime.StartContainer(ctx, unknown) }, codes.NotFound},
		{"stop with empty id", func() error { return e.Runtime.StopContainer(ctx, "", 0) }, codes.InvalidArgument},
		{"stop with negative timeout", func() error { return e.Runtime.StopContainer(ctx, strings.Repeat("c", 64), -1) }, codes.InvalidArgument},
		{"update unknown container", func() error {
			return e.Runtime.UpdateContainerResources(ctx, unknown, &runtimeapi.ContainerResources{Linux: &runtimeapi.LinuxContainerResources{CpuShares: 512}})
		}, codes.NotFound},
		{"update with negative memory", func() error {
			return e.Runtime.UpdateContainerResources(ctx, existingID, &runtimeapi.ContainerResources{Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -5}})
		}, codes.InvalidArgument},
		{"exec sync with a path as id", func() error {
			_, _, err := e.Runtime.ExecSync(ctx, "../../etc", []string{"true"}, time.Second)
			return err
		}, codes.NotFound},
		{"exec sync without a command", func() error { _, _, err := e.Runtime.ExecSync(ctx, existingID, nil, time.Second); return err }, codes.InvalidArgument},
		{"port forward to port 0", func() error {
			_, err := e.Runtime.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: podID, Port: []int32{0}})
			return err
		}, codes.InvalidArgument},
		{"port forward to port 70000", func() error {
			_, err := e.Runtime.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: podID, Port: []int32{70000}})
			return err
		}, codes.InvalidArgument},
		{"reopen log of unknown container", func() error { return e.Runtime.ReopenContainerLog(ctx, unknown) }, codes.NotFound},
		{"status of a container id that is a path", func() error { _, err := e.Runtime.ContainerStatus(ctx, "../../etc", false); return err }, codes.NotFound},
		{"start a container id that is a UUID", func() error { return e.Runtime.StartContainer(ctx, "0b9e7ff2-5a4c-4a39-9c3e-1a5f0f3a1c7e") }, codes.NotFound},
	} {
		t.Run("ids/"+tc.desc, func(t *testing.T) {
			if err := tc.call(); status.Code(err) != tc.code {
				t.Fatalf("%v, want %v", err, tc.code)
			}
		})
	}
	// Stop and remove of ids that name nothing, whatever their shape,
	// succeed and change nothing (CRI contract; critest "Idempotence").
	for _, id := range []string{unknown, "0b9e7ff2-5a4c-4a39-9c3e-1a5f0f3a1c7e", "../../etc", "UPPER", strings.Repeat("z", 4096)} {
		t.Run("ids/stop and remove of unknown "+truncateName(id), func(t *testing.T) {
			for name, call := range map[string]func() error{
				"StopContainer":    func() error { return e.Runtime.StopContainer(ctx, id, 0) },
				"RemoveContainer":  func() error { return e.Runtime.RemoveContainer(ctx, id) },
				"StopPodSandbox":   func() error { return e.Runtime.StopPodSandbox(ctx, id) },
				"RemovePodSandbox": func() error { return e.Runtime.RemovePodSandbox(ctx, id) },
			} {
				if err := call(); err != nil {
					t.Errorf("%s(%q): %v, want success", name, truncateName(id), err)
				}
			}
		})
	}
	before.compare(t, takeSnapshot(t, e, outside))
	if pods, _ := e.Runtime.ListPodSandbox(ctx, nil); len(pods) != 1 {
		t.Errorf("%d pods after rejected requests, want 1", len(pods))
	}
	if _, err := os.Lstat(filepath.Join(outside, "created-through-link")); err == nil {
		t.Error("a rejected mount created the target of a dangling symlink")
	}
	if _, err := os.Lstat(filepath.Join(outside, "fresh-opts")); err == nil {
		t.Error("a mount with malformed mount_options created its host path")
	}
}

// truncateName keeps subtest names short.
func truncateName(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// rawRunPodSandbox sends a RunPodSandbox request whose metadata name is
// name, encoded by hand (proto3 marshalling refuses invalid UTF-8), and
// returns the gRPC code of the answer.
func rawRunPodSandbox(t *testing.T, socket, name string) codes.Code {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// PodSandboxMetadata{name=1, uid=2, namespace=3} inside
	// PodSandboxConfig{metadata=1} inside RunPodSandboxRequest{config=1}.
	var md []byte
	md = protowire.AppendTag(md, 1, protowire.BytesType)
	md = protowire.AppendString(md, name)
	md = protowire.AppendTag(md, 2, protowire.BytesType)
	md = protowire.AppendString(md, "uid")
	md = protowire.AppendTag(md, 3, protowire.BytesType)
	md = protowire.AppendString(md, "ns")
	var cfg []byte
	cfg = protowire.AppendTag(cfg, 1, protowire.BytesType)
	cfg = protowire.AppendBytes(cfg, md)
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	req = protowire.AppendBytes(req, cfg)
	var resp rawMessage
	err = conn.Invoke(ctxT(t, 30*time.Second), "/runtime.v1.RuntimeService/RunPodSandbox", rawMessage(req), &resp, grpc.ForceCodec(rawCodec{}))
	return status.Code(err)
}

// rawMessage and rawCodec pass protobuf bytes through gRPC unchanged.
type rawMessage []byte

type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	if m, ok := v.(rawMessage); ok {
		return m, nil
	}
	return *v.(*rawMessage), nil
}
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*rawMessage) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }
