package cri

import (
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// validContainer is a container config as kubelet sends it.
func validContainer() *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata:   &runtimeapi.ContainerMetadata{Name: "app", Attempt: 2},
		Image:      &runtimeapi.ImageSpec{Image: "registry.local/app@sha256:" + strings.Repeat("a", 64)},
		Command:    []string{"/app"},
		Args:       []string{"--port=80"},
		WorkingDir: "/srv",
		Envs:       []*runtimeapi.KeyValue{{Key: "MODE", Value: []byte("prod")}, {Key: "EMPTY"}},
		Mounts: []*runtimeapi.Mount{
			{ContainerPath: "/etc/hosts", HostPath: "/var/lib/kubelet/pods/uid/etc-hosts"},
			{ContainerPath: "/dev/termination-log", HostPath: "/var/lib/kubelet/pods/uid/containers/app/abc"},
			{ContainerPath: "/data/", HostPath: "/srv/data/", Readonly: true, RecursiveReadOnly: true},
			{ContainerPath: "/mnt/shared", HostPath: "/mnt/shared", Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL, MountOptions: []string{"nosuid", "nodev"}},
			{ContainerPath: "/img", Image: &runtimeapi.ImageSpec{Image: "registry.local/data:1"}, Readonly: true, ImageSubPath: "sub/dir"},
		},
		Devices:     []*runtimeapi.Device{{ContainerPath: "/dev/dri/renderD128", HostPath: "/dev/dri/renderD128", Permissions: "rw"}},
		CDIDevices:  []*runtimeapi.CDIDevice{{Name: "nvidia.com/gpu=0"}, {Name: "vendor.example/fpga=port-0.1:a"}},
		Labels:      map[string]string{"io.kubernetes.container.name": "app"},
		Annotations: map[string]string{"io.kubernetes.container.hash": "abc"},
		LogPath:     "app/2.log",
		StopSignal:  runtimeapi.Signal_SIGNAL_SIGTERM,
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{
				CpuPeriod: 100000, CpuQuota: -1, CpuShares: 2, MemoryLimitInBytes: 64 << 20, OomScoreAdj: 1000,
				CpusetCpus: "0-3,5", CpusetMems: "0",
				HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB"}, {PageSize: "1GB", Limit: 1 << 30}},
			},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				Capabilities:       &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_BIND_SERVICE"}},
				RunAsUser:          &runtimeapi.Int64Value{Value: 1000},
				RunAsGroup:         &runtimeapi.Int64Value{Value: 1000},
				SupplementalGroups: []int64{2000},
				MaskedPaths:        []string{"/proc/kcore"},
				ReadonlyPaths:      []string{"/proc/sys"},
				Seccomp:            &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/var/lib/kubelet/seccomp/app.json"},
				Apparmor:           &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
				NamespaceOptions:   &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			},
		},
	}
}

func TestValidateContainerConfig(t *testing.T) {
	sc := func(c *runtimeapi.ContainerConfig) *runtimeapi.LinuxContainerSecurityContext {
		return c.Linux.SecurityContext
	}
	for _, tc := range []struct {
		desc      string
		change    func(c *runtimeapi.ContainerConfig, pod *runtimeapi.PodSandboxConfig)
		nilConfig bool
		wantField string
	}{
		{desc: "valid", change: func(*runtimeapi.ContainerConfig, *runtimeapi.PodSandboxConfig) {}},
		{desc: "minimal", change: func(c *runtimeapi.ContainerConfig, pod *runtimeapi.PodSandboxConfig) {
			*c = runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "a"}, Image: &runtimeapi.ImageSpec{Image: "busybox"}}
		}},
		{desc: "privileged in a privileged pod", change: func(c *runtimeapi.ContainerConfig, pod *runtimeapi.PodSandboxConfig) {
			pod.Linux.SecurityContext.Privileged = true
			sc(c).Privileged = true
		}},
		{desc: "target pid", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			sc(c).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "c0"}
		}},
		{desc: "nil config", nilConfig: true, wantField: "config"},
		{desc: "no metadata", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.Metadata = nil }, wantField: "config.metadata"},
		{desc: "bad name", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.Metadata.Name = "a/b" }, wantField: "config.metadata.name"},
		{desc: "no image", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.Image = nil }, wantField: "config.image.image"},
		{desc: "command with NUL", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.Command = []string{"/a\x00b"} }, wantField: "config.command[0]"},
		{desc: "args not UTF-8", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.Args = []string{"ok", "\xff"} }, wantField: "config.args[1]"},
		{desc: "empty env key", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Envs = append(c.Envs, &runtimeapi.KeyValue{Value: []byte("x")})
		}, wantField: "config.envs[2].key"},
		{desc: "env key with =", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.Envs[0].Key = "A=B" }, wantField: "config.envs[0].key"},
		{desc: "env value with NUL", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.Envs[0].Value = []byte("a\x00") }, wantField: "config.envs[0].value"},
		{desc: "huge argv", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Args = []string{strings.Repeat("x", 3<<20)}
		}, wantField: "config"},
		{desc: "relative working dir", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.WorkingDir = "srv" }, wantField: "config.working_dir"},
		{desc: "relative mount container path", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[2].ContainerPath = "data"
		}, wantField: "config.mounts[2].container_path"},
		{desc: "mount over root", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.Mounts[2].ContainerPath = "/" }, wantField: "config.mounts[2].container_path"},
		{desc: "mount over /proc", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[2].ContainerPath = "/proc"
		}, wantField: "config.mounts[2].container_path"},
		{desc: "mount under /proc", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[2].ContainerPath = "/proc/sys/kernel"
		}, wantField: "config.mounts[2].container_path"},
		{desc: "mount container path with dot dot", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[2].ContainerPath = "/data/../proc"
		}, wantField: "config.mounts[2].container_path"},
		{desc: "host root read-write", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[3].HostPath = "/"
		}, wantField: "config.mounts[3].host_path"},
		{desc: "host /proc read-write", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[3].HostPath = "/proc"
		}, wantField: "config.mounts[3].host_path"},
		{desc: "host /proc/sysrq-trigger read-write", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[3].HostPath = "/proc/sysrq-trigger"
		}, wantField: "config.mounts[3].host_path"},
		{desc: "host root read-only", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[2].HostPath = "/"
		}},
		{desc: "host root read-write, privileged", change: func(c *runtimeapi.ContainerConfig, pod *runtimeapi.PodSandboxConfig) {
			pod.Linux.SecurityContext.Privileged = true
			sc(c).Privileged = true
			c.Mounts[3].HostPath = "/"
		}},
		{desc: "host /process is not /proc", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[3].HostPath = "/process"
		}},
		{desc: "mount twice at one path", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[2].ContainerPath = "/etc/hosts"
		}, wantField: "config.mounts[2].container_path"},
		{desc: "relative host path", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[0].HostPath = "etc-hosts"
		}, wantField: "config.mounts[0].host_path"},
		{desc: "host path with dot dot", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[0].HostPath = "/var/lib/kubelet/../../etc"
		}, wantField: "config.mounts[0].host_path"},
		{desc: "no host path", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.Mounts[0].HostPath = "" }, wantField: "config.mounts[0].host_path"},
		{desc: "recursive read-only without readonly", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[2].Readonly = false
		}, wantField: "config.mounts[2].recursive_read_only"},
		{desc: "recursive read-only with propagation", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[2].Propagation = runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER
		}, wantField: "config.mounts[2].recursive_read_only"},
		{desc: "unknown propagation", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.Mounts[3].Propagation = 5 }, wantField: "config.mounts[3].propagation"},
		{desc: "mount options: all three", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[2].MountOptions = []string{"noexec", "nodev", "nosuid"}
		}},
		{desc: "mount options: noexec on a writable mount", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[0].MountOptions = []string{"noexec"}
		}},
		{desc: "mount options: empty list", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[3].MountOptions = []string{}
		}},
		{desc: "mount options: empty string", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[2].MountOptions = []string{""}
		}, wantField: "config.mounts[2].mount_options[0]"},
		{desc: "mount options: dev widens", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[2].MountOptions = []string{"dev"}
		}, wantField: "config.mounts[2].mount_options[0]"},
		{desc: "mount options: suid widens", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[3].MountOptions = []string{"nodev", "suid"}
		}, wantField: "config.mounts[3].mount_options[1]"},
		{desc: "mount options: exec widens", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[2].MountOptions = []string{"exec"}
		}, wantField: "config.mounts[2].mount_options[0]"},
		{desc: "mount options: recursive rexec widens", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[2].MountOptions = []string{"rexec"}
		}, wantField: "config.mounts[2].mount_options[0]"},
		{desc: "mount options: defaults widens", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[2].MountOptions = []string{"defaults"}
		}, wantField: "config.mounts[2].mount_options[0]"},
		{desc: "mount options: rw on a read-only mount", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[2].MountOptions = []string{"rw"}
		}, wantField: "config.mounts[2].mount_options[0]"},
		{desc: "mount options: rw on a writable mount", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[3].MountOptions = []string{"rw"}
		}, wantField: "config.mounts[3].mount_options[0]"},
		{desc: "mount options: ro (readonly is the field)", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[3].MountOptions = []string{"ro"}
		}, wantField: "config.mounts[3].mount_options[0]"},
		{desc: "mount options: propagation", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[3].MountOptions = []string{"rshared"}
		}, wantField: "config.mounts[3].mount_options[0]"},
		{desc: "mount options: remount", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[3].MountOptions = []string{"remount"}
		}, wantField: "config.mounts[3].mount_options[0]"},
		{desc: "mount options: unknown", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[3].MountOptions = []string{"nosuid", "noexec", "noatime"}
		}, wantField: "config.mounts[3].mount_options[2]"},
		{desc: "mount options: upper case", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[3].MountOptions = []string{"NOEXEC"}
		}, wantField: "config.mounts[3].mount_options[0]"},
		{desc: "mount options: data", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[3].MountOptions = []string{"mode=4777"}
		}, wantField: "config.mounts[3].mount_options[0]"},
		{desc: "mount options: white space", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[3].MountOptions = []string{"noexec "}
		}, wantField: "config.mounts[3].mount_options[0]"},
		{desc: "mount options: two in one string", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[3].MountOptions = []string{"noexec,dev"}
		}, wantField: "config.mounts[3].mount_options[0]"},
		{desc: "mount options: NUL", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[3].MountOptions = []string{"noexec\x00"}
		}, wantField: "config.mounts[3].mount_options[0]"},
		{desc: "mount options: duplicate", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[2].MountOptions = []string{"noexec", "nodev", "noexec"}
		}, wantField: "config.mounts[2].mount_options[2]"},
		{desc: "mount options: on an image volume", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[4].MountOptions = []string{"noexec"}
		}, wantField: "config.mounts[4].mount_options"},
		{desc: "image sub path escaping", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.Mounts[4].ImageSubPath = "../x" }, wantField: "config.mounts[4].image_sub_path"},
		{desc: "image sub path escaping in the middle", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[4].ImageSubPath = "a/../../x"
		}, wantField: "config.mounts[4].image_sub_path"},
		{desc: "image sub path absolute", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.Mounts[4].ImageSubPath = "/etc" }, wantField: "config.mounts[4].image_sub_path"},
		{desc: "image sub path with NUL", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[4].ImageSubPath = "etc\x00"
		}, wantField: "config.mounts[4].image_sub_path"},
		{desc: "image sub path unclean but inside", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[4].ImageSubPath = "./etc//ssl/"
		}},
		{desc: "image volume by id", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[4].Image.Image = "sha256:" + strings.Repeat("b", 64)
		}},
		{desc: "image volume with recursive read-only", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[4].RecursiveReadOnly = true
		}},
		{desc: "image volume writable", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.Mounts[4].Readonly = false }, wantField: "config.mounts[4].readonly"},
		{desc: "image volume with a host path", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[4].HostPath = "/srv/data"
		}, wantField: "config.mounts[4].host_path"},
		{desc: "image volume reference with white space", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[4].Image.Image = "registry.local/data:1 --privileged"
		}, wantField: "config.mounts[4].image.image"},
		{desc: "image spec without image is a host path mount", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Mounts[4].Image.Image = ""
			c.Mounts[4].ImageSubPath = ""
		}, wantField: "config.mounts[4].host_path"},
		{desc: "sub path on a host path mount", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.Mounts[2].ImageSubPath = "x" }, wantField: "config.mounts[2].image_sub_path"},
		{desc: "device outside /dev", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Devices[0].HostPath = "/tmp/dev"
		}, wantField: "config.devices[0].host_path"},
		{desc: "device container path outside /dev", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Devices[0].ContainerPath = "/gpu"
		}, wantField: "config.devices[0].container_path"},
		{desc: "device /dev itself", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.Devices[0].HostPath = "/dev/" }, wantField: "config.devices[0].host_path"},
		{desc: "device dot dot", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.Devices[0].HostPath = "/dev/../etc/shadow"
		}, wantField: "config.devices[0].host_path"},
		{desc: "device permissions", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.Devices[0].Permissions = "rwx" }, wantField: "config.devices[0].permissions"},
		{desc: "device no permissions", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.Devices[0].Permissions = "" }, wantField: "config.devices[0].permissions"},
		{desc: "CDI name without class", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.CDIDevices[1].Name = "gpu0" }, wantField: "config.CDI_devices[1].name"},
		{desc: "CDI one-letter vendor (panics the CDI parser)", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.CDIDevices[0].Name = "a/gpu=0" }, wantField: "config.CDI_devices[0].name"},
		{desc: "CDI one-letter class (panics the CDI parser)", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.CDIDevices[0].Name = "nvidia.com/g=0"
		}, wantField: "config.CDI_devices[0].name"},
		{desc: "CDI name with path", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			c.CDIDevices[0].Name = "nvidia.com/gpu=../../x"
		}, wantField: "config.CDI_devices[0].name"},
		{desc: "bad label", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.Labels[""] = "x" }, wantField: "config.labels"},
		{desc: "absolute log path", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.LogPath = "/var/log/app.log" }, wantField: "config.log_path"},
		{desc: "log path escaping", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.LogPath = "../../etc/x.log" }, wantField: "config.log_path"},
		{desc: "log path unclean", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.LogPath = "app//2.log" }, wantField: "config.log_path"},
		{desc: "log path without log directory", change: func(_ *runtimeapi.ContainerConfig, pod *runtimeapi.PodSandboxConfig) { pod.LogDirectory = "" }, wantField: "config.log_path"},
		{desc: "unknown stop signal", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.StopSignal = 999 }, wantField: "config.stop_signal"},
		{desc: "bad resources", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { c.Linux.Resources.CpuShares = 1 }, wantField: "config.linux.resources.cpu_shares"},
		{desc: "privileged in an unprivileged pod", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { sc(c).Privileged = true }, wantField: "config.linux.security_context.privileged"},
		{desc: "negative uid", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { sc(c).RunAsUser.Value = -1 }, wantField: "config.linux.security_context.run_as_user"},
		{desc: "uid too big", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { sc(c).RunAsUser.Value = 1 << 32 }, wantField: "config.linux.security_context.run_as_user"},
		{desc: "group without user", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { sc(c).RunAsUser = nil }, wantField: "config.linux.security_context.run_as_group"},
		{desc: "group with username", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			sc(c).RunAsUser = nil
			sc(c).RunAsUsername = "app"
		}},
		{desc: "bad username", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { sc(c).RunAsUsername = "app:x" }, wantField: "config.linux.security_context.run_as_username"},
		{desc: "negative supplemental group", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			sc(c).SupplementalGroups = []int64{1, -1}
		}, wantField: "config.linux.security_context.supplemental_groups[1]"},
		{desc: "empty capability", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			sc(c).Capabilities.AddCapabilities = []string{""}
		}, wantField: "config.linux.security_context.capabilities.add_capabilities[0]"},
		{desc: "relative masked path", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			sc(c).MaskedPaths = []string{"proc/kcore"}
		}, wantField: "config.linux.security_context.masked_paths[0]"},
		{desc: "relative seccomp ref", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			sc(c).Seccomp.LocalhostRef = "app.json"
		}, wantField: "config.linux.security_context.seccomp.localhost_ref"},
		{desc: "seccomp ref for runtime default", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			sc(c).Seccomp.ProfileType = runtimeapi.SecurityProfile_RuntimeDefault
		}, wantField: "config.linux.security_context.seccomp.localhost_ref"},
		{desc: "apparmor ref with NUL", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			sc(c).Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "a\x00"}
		}, wantField: "config.linux.security_context.apparmor.localhost_ref"},
		{desc: "deprecated apparmor garbage", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) { sc(c).ApparmorProfile = "mine" }, wantField: "config.linux.security_context.apparmor_profile"},
		{desc: "target without id", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			sc(c).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET}
		}, wantField: "config.linux.security_context.namespace_options.target_id"},
		{desc: "target for network", change: func(c *runtimeapi.ContainerConfig, _ *runtimeapi.PodSandboxConfig) {
			sc(c).NamespaceOptions = &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_TARGET}
		}, wantField: "config.linux.security_context.namespace_options.network"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			pod := validPod()
			var c *runtimeapi.ContainerConfig
			if !tc.nilConfig {
				c = validContainer()
				tc.change(c, pod)
			}
			checkValidation(t, validateContainerConfig(c, pod), tc.wantField)
		})
	}
}

func TestValidateLinuxResources(t *testing.T) {
	for _, tc := range []struct {
		desc      string
		r         *runtimeapi.LinuxContainerResources
		wantField string
	}{
		{desc: "nil"},
		{desc: "unset", r: &runtimeapi.LinuxContainerResources{}},
		{desc: "typical", r: &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 20000, CpuShares: 102, MemoryLimitInBytes: 128 << 20, MemorySwapLimitInBytes: 256 << 20, OomScoreAdj: -997}},
		{desc: "unlimited swap", r: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 20, MemorySwapLimitInBytes: -1}},
		{desc: "unified", r: &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "max", "cpu.weight": "100"}}},
		{desc: "period too small", r: &runtimeapi.LinuxContainerResources{CpuPeriod: 999}, wantField: "linux.cpu_period"},
		{desc: "negative period", r: &runtimeapi.LinuxContainerResources{CpuPeriod: -1}, wantField: "linux.cpu_period"},
		{desc: "quota too small", r: &runtimeapi.LinuxContainerResources{CpuQuota: 500}, wantField: "linux.cpu_quota"},
		{desc: "negative quota", r: &runtimeapi.LinuxContainerResources{CpuQuota: -2}, wantField: "linux.cpu_quota"},
		{desc: "shares 1", r: &runtimeapi.LinuxContainerResources{CpuShares: 1}, wantField: "linux.cpu_shares"},
		{desc: "shares too big", r: &runtimeapi.LinuxContainerResources{CpuShares: 262145}, wantField: "linux.cpu_shares"},
		{desc: "negative memory", r: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -1}, wantField: "linux.memory_limit_in_bytes"},
		{desc: "swap below memory", r: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 2 << 20, MemorySwapLimitInBytes: 1 << 20}, wantField: "linux.memory_swap_limit_in_bytes"},
		{desc: "bad swap", r: &runtimeapi.LinuxContainerResources{MemorySwapLimitInBytes: -2}, wantField: "linux.memory_swap_limit_in_bytes"},
		{desc: "oom too low", r: &runtimeapi.LinuxContainerResources{OomScoreAdj: -1001}, wantField: "linux.oom_score_adj"},
		{desc: "oom too high", r: &runtimeapi.LinuxContainerResources{OomScoreAdj: 1001}, wantField: "linux.oom_score_adj"},
		{desc: "cpuset garbage", r: &runtimeapi.LinuxContainerResources{CpusetCpus: "0-"}, wantField: "linux.cpuset_cpus"},
		{desc: "cpuset reversed", r: &runtimeapi.LinuxContainerResources{CpusetCpus: "3-1"}, wantField: "linux.cpuset_cpus"},
		{desc: "cpuset trailing comma", r: &runtimeapi.LinuxContainerResources{CpusetMems: "0,"}, wantField: "linux.cpuset_mems"},
		{desc: "cpuset plus", r: &runtimeapi.LinuxContainerResources{CpusetCpus: "+1"}, wantField: "linux.cpuset_cpus"},
		{desc: "hugepage size", r: &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2M"}}}, wantField: "linux.hugepage_limits[0].page_size"},
		{desc: "hugepage twice", r: &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB"}, {PageSize: "2MB"}}}, wantField: "linux.hugepage_limits[1].page_size"},
		{desc: "unified path", r: &runtimeapi.LinuxContainerResources{Unified: map[string]string{"../memory.high": "1"}}, wantField: "linux.unified"},
		{desc: "unified newline", r: &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "1\n2"}}, wantField: `linux.unified["memory.high"]`},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			checkValidation(t, validateLinuxResources(tc.r), tc.wantField)
		})
	}
}
