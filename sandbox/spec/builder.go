package spec

import (
	"context"
	"io"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/accel-cri/accel-cri/devices"
)

// Host is what the builder knows of the node: facts the core finds once at
// start, and the lookups a spec needs while it is built, which the core
// points at the real host (tests at fake roots). The package reads and
// changes nothing of the host itself.
type Host struct {
	// Capabilities are accel-cri's effective capabilities: what "ALL"
	// and privileged containers get (runc cannot give more).
	Capabilities []string
	// AppArmor is whether the kernel has AppArmor; a required profile on
	// a host without it is an error.
	AppArmor bool
	// CgroupV2 is whether the unified hierarchy is in use
	// (LinuxContainerResources.unified needs it); Swap whether the memory
	// swap controller exists (the swap limit defaults to the memory limit
	// then); Hugetlb whether the hugetlb controller exists (hugepage
	// limits are skipped without it).
	CgroupV2, Swap, Hugetlb bool
	// OOM clamps oom_score_adj to what this host permits; nil allows
	// the kernel's whole range.
	OOM OOMScores
	// CDI resolves the CDI devices containers ask for (cdi_devices and
	// cdi.k8s.io/* annotations); nil when CDI is off.
	CDI CDIInjector
	// DeviceOwnershipFromSecurityContext gives the nodes of CRI devices
	// to the container's user instead of the host node's owner
	// (containerd's device_ownership_from_security_context).
	DeviceOwnershipFromSecurityContext bool

	// Hostname returns the node's host name: the HOSTNAME of containers
	// whose pod sets none. Asked at every create (it may change).
	Hostname func() (string, error)
	// DeviceNode resolves the host path of a CRI device (symlinks
	// followed) and reads the device node there, which must be below the
	// host's /dev (devices.ResolveNode).
	DeviceNode func(path string) (string, devices.NodeInfo, error)
	// Devices lists the host's device nodes, which privileged containers
	// get (oci.HostDevices).
	Devices func() ([]runtimespec.LinuxDevice, error)
	// Open opens a Localhost seccomp profile for reading.
	Open func(path string) (io.ReadCloser, error)
}

// OOMScores clamps an oom_score_adj to the range this host permits
// (sandbox.OOMScoreRange).
type OOMScores interface {
	Clamp(want int) int
}

// Builder builds the OCI specs of pause and app containers from CRI
// configs and the facts of one host, gathered once.
type Builder struct {
	host Host
}

// New returns a builder for the host h.
func New(h Host) *Builder { return &Builder{host: h} }

// Handler is what a spec needs of the pod's runtime handler.
type Handler struct {
	// Name is recorded in the annotations.
	Name string
	// SpecVersion, when set, is the ociVersion the handler's OCI runtime
	// declares (older than the spec package's).
	SpecVersion string
	// UserNamespaces is whether the OCI runtime can run pods in a user
	// namespace (runc >= 1.2 with idmapped mounts); runc 1.1 cannot.
	UserNamespaces bool
	// MountOptions is whether it applies bind mount options (CRI
	// Mount.mount_options, HandlerFeatures.MountOptions).
	MountOptions bool
	// SandboxPerContainer leaves out the container-type annotation (each
	// container its own sandbox).
	SandboxPerContainer bool
	// NoHostDevices keeps the host's /dev out of privileged containers
	// (privileged_without_host_devices, VM handlers).
	NoHostDevices bool
}

// withSpecVersion sets the ociVersion the handler's runtime declares.
func withSpecVersion(v string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if v != "" {
			s.Version = v
		}
		return nil
	}
}

// baseOpts are the first options of a pause or app container's spec: the
// CRI base, the process, its user and its namespaces; with a user
// namespace (userns not nil) on the host network, the host's /sys.
func baseOpts(process, user oci.SpecOpts, nss []runtimespec.LinuxNamespace, userns oci.SpecOpts, hostNetwork bool) []oci.SpecOpts {
	opts := []oci.SpecOpts{withCRIBase(), process, user, withNamespaces(nss)}
	if userns != nil {
		opts = append(opts, userns)
		if hostNetwork {
			opts = append(opts, withHostSys())
		}
	}
	return opts
}

// record is the last option of a spec: it keeps the finished spec in *dst,
// the spec containerd stores, so the core need not read it back.
func record(dst **runtimespec.Spec) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if dst != nil {
			*dst = s
		}
		return nil
	}
}
