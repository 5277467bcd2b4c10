package sandbox

import (
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRI annotations that sandboxed runtime shims (Kata, gVisor) and tools read
// to group a pod's containers and find their pod.
const (
	AnnotationContainerType          = "io.kubernetes.cri.container-type"
	AnnotationSandboxID              = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxName            = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNamespace       = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxUID             = "io.kubernetes.cri.sandbox-uid"
	AnnotationSandboxLogDir          = "io.kubernetes.cri.sandbox-log-directory"
	AnnotationSandboxCPUPeriod       = "io.kubernetes.cri.sandbox-cpu-period"
	AnnotationSandboxCPUQuota        = "io.kubernetes.cri.sandbox-cpu-quota"
	AnnotationSandboxCPUShares       = "io.kubernetes.cri.sandbox-cpu-shares"
	AnnotationSandboxMemory          = "io.kubernetes.cri.sandbox-memory"
	AnnotationContainerName          = "io.kubernetes.cri.container-name"
	AnnotationImageName              = "io.kubernetes.cri.image-name"
	AnnotationSandboxImageName       = "io.kubernetes.cri.podsandbox.image-name"
	AnnotationRuntimeHandler         = "io.kubernetes.cri.runtime-handler"
	ContainerTypeSandbox             = "sandbox"
	ContainerTypeContainer           = "container"
	defaultSandboxOOMAdj             = -998
	defaultShmSize             int64 = 64 << 20
)

// podSpecParams is what the pause container's spec is built from: the CRI
// pod config plus the host facts accel-cri decided for this pod.
type podSpecParams struct {
	ID     string
	Config *runtimeapi.PodSandboxConfig
	// Image is the sandbox (pause) image's config: entrypoint, cmd, env, user.
	Image ocispec.ImageConfig
	// ImageName is the sandbox image reference (annotation).
	ImageName string
	// NetNSPath is the pod's network namespace; "" when the pod uses the host network.
	NetNSPath string
	// CgroupsPath is the pod's cgroup (see cgroupsPath).
	CgroupsPath string
	// OOM clamps oom_score_adj to what this host permits.
	OOM *OOMScoreRange
	// RuntimeHandler is recorded in the annotations.
	RuntimeHandler string
	// UsernsSupported is whether the OCI runtime can run pods in a user
	// namespace (runc >= 1.2 with idmapped mounts). runc 1.1.5 cannot.
	UsernsSupported bool
	// UsernsPath is the pinned user namespace that owns the pod's network
	// namespace (user-namespaced pods with a network namespace of their
	// own), which the pause joins; "" makes a new one.
	UsernsPath string
	// PassedAnnotations are the pod annotations the runtime handler lets
	// into the OCI spec (pod_annotations); the CRI annotations win.
	PassedAnnotations map[string]string
}

// containerSpecParams is what an app container's spec is built from.
type containerSpecParams struct {
	ID        string
	SandboxID string
	PodConfig *runtimeapi.PodSandboxConfig
	Config    *runtimeapi.ContainerConfig
	// Image is the container image's config; ImageName the reference the
	// container was created with (annotation).
	Image     ocispec.ImageConfig
	ImageName string
	// SandboxPID is the pause task's pid: the container joins its
	// namespaces through /proc/<pid>/ns/* (ipc, uts, pid when POD).
	SandboxPID uint32
	// Pinned are the namespaces of a pod without a pause process.
	Pinned PinnedNamespaces
	// TargetPID is the pid of the target container for NamespaceMode_TARGET.
	TargetPID uint32
	// NetNSPath is the pod's network namespace; "" for host network pods.
	NetNSPath string
	// Pod files bind-mounted into each container (unless the container
	// mounts something at that path itself). ShmPath is "" for pods that
	// share the host IPC namespace (the host /dev/shm is used then).
	HostnamePath, HostsPath, ResolvPath, ShmPath string
	CgroupsPath                                  string
	OOM                                          *OOMScoreRange
	RuntimeHandler                               string
	// AppArmorEnabled is whether the kernel has AppArmor; a required
	// profile on a host without it is an error.
	AppArmorEnabled bool
	// Host facts, detected once at start (see runtime.go):
	// UsernsSupported as for podSpecParams; CgroupV2 whether the unified
	// hierarchy is in use (LinuxContainerResources.unified needs it);
	// SwapAvailable whether the memory swap controller exists (swap limit
	// defaults to the memory limit then); HugetlbAvailable whether the
	// hugetlb controller exists (hugepage limits are skipped without it).
	UsernsSupported  bool
	CgroupV2         bool
	SwapAvailable    bool
	HugetlbAvailable bool
	// MountOptionsSupported is whether the pod's handler applies bind
	// mount options (CRI Mount.mount_options, HandlerFeatures.MountOptions).
	MountOptionsSupported bool
	// Runtime handler rules: PassedAnnotations are the pod and container
	// annotations the handler lets into the OCI spec; SandboxPerContainer
	// leaves out the container-type annotation (each container its own
	// sandbox); NoHostDevices keeps the host's /dev out of privileged
	// containers (privileged_without_host_devices, VM handlers).
	PassedAnnotations   map[string]string
	SandboxPerContainer bool
	NoHostDevices       bool
	// CDI resolves the container's CDI devices (cdi_devices and
	// cdi.k8s.io/* annotations); nil when CDI is off.
	CDI CDIInjector
	// DeviceOwnershipFromSecurityContext gives CRI device nodes to the
	// container's user (see WithDeviceOwnershipFromSecurityContext).
	DeviceOwnershipFromSecurityContext bool
	// ImageVolumes are the container's image volumes (Mount.image), one
	// per such mount; their sources are read when the spec is applied.
	ImageVolumes []*imageVolume
}
