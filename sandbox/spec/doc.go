// Package spec builds the OCI runtime specs of accel-cri's pause and app
// containers from CRI configs, as containerd spec options (oci.SpecOpts):
// one small option per concern (process, user, namespaces, mounts,
// devices, CDI devices, security, resources, annotations), each checked
// before anything is created.
//
// It is pure: it changes nothing on the host and reads nothing of it
// itself. What it needs to know of the node is a Host, filled once by the
// core at start: facts (capabilities, AppArmor, cgroup v2, swap and hugetlb
// controllers, the OOM score range, the CDI injector) and the lookups a
// spec depends on when it is built (the node's hostname, CRI device nodes,
// the host's devices for privileged containers, Localhost seccomp
// profiles). What has to happen on the host for a container is left to the
// core, which the plan names: the sources of its bind mounts (host paths
// resolved, missing ones created; image volumes mounted) and the default
// AppArmor profile (loaded). Applying the options reads the container's
// root filesystem through containerd's client (users and groups from
// /etc/passwd and /etc/group), containerd's default seccomp profile asks
// the kernel's version, and CDI devices are injected by the devices
// package (its CDI cache). The package never imports the sandbox core.
//
// # Worked example
//
// At start, the core fills the builder once:
//
//	b := spec.New(spec.Host{
//		Capabilities: caps, CgroupV2: true, Swap: true, Hugetlb: true, OOM: oomRange,
//		Hostname:     os.Hostname,
//		DeviceNode:   func(p string) (string, devices.NodeInfo, error) { return devices.ResolveNode("/dev", p) },
//		Devices:      oci.HostDevices,
//		Open:         func(p string) (io.ReadCloser, error) { return os.Open(p) },
//	})
//
// CreateContainer then plans the spec, prepares its host side and hands
// the options to containerd; the last option keeps the finished spec:
//
//	plan, err := b.Container(spec.Container{ID: id, SandboxID: podID, PodConfig: podCfg, Config: cfg, ...})
//	for _, bind := range plan.Binds() {
//		bind.Source = ... // the host path resolved (created when missing), or the image volume's mount
//	}
//	var s *runtimespec.Spec
//	ctr, err := client.NewContainer(ctx, id, containerd.WithNewSnapshot(...), containerd.WithNewSpec(plan.Opts(&s)...))
//	// s is the spec containerd stored: no ctr.Spec(ctx) round trip.
//
// A container asking for devices [{host_path: /dev/dri/renderD128,
// container_path: /dev/dri/renderD128, permissions: rw}] as user 1000 gets
// the node 226:128 with the host node's mode and owner (or uid and gid 1000
// with DeviceOwnershipFromSecurityContext), and the cgroup rule "c 226:128
// rw" after the default spec's deny-all.
package spec
