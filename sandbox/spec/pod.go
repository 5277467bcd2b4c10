package spec

import (
	"fmt"

	"github.com/containerd/containerd/v2/pkg/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// defaultSandboxOOMAdj is the pause process's oom_score_adj (raised to
// what the host permits).
const defaultSandboxOOMAdj = -998

// Pod is what the pause container's spec is built from: the CRI pod config
// plus what the core decided for this pod.
type Pod struct {
	ID     string
	Config *runtimeapi.PodSandboxConfig
	// Image is the sandbox (pause) image's config: entrypoint, cmd, env, user.
	Image ocispec.ImageConfig
	// ImageName is the sandbox image reference (annotation).
	ImageName string
	// NetNSPath is the pod's network namespace; "" when the pod uses the host network.
	NetNSPath string
	// CgroupsPath is the pod's cgroup.
	CgroupsPath string
	// UsernsPath is the pinned user namespace that owns the pod's network
	// namespace (user-namespaced pods with a network namespace of their
	// own), which the pause joins; "" makes a new one.
	UsernsPath string
	// Handler is the pod's runtime handler.
	Handler Handler
	// PassedAnnotations are the pod annotations the runtime handler lets
	// into the OCI spec (pod_annotations); the CRI annotations win.
	PassedAnnotations map[string]string
}

// Pod builds the pause container's spec options, to be applied on
// containerd's default spec (containerd.WithNewSpec) after the container's
// snapshot exists (containerd.WithNewSnapshot): the user may be looked up in
// the image's /etc/passwd.
//
// The pause process runs the sandbox image's entrypoint and cmd with a
// read-only rootfs, no_new_privs and the default capabilities. It holds the
// pod's namespaces (see podNamespaces; a user-namespaced pod's is the
// pinned owner of its network namespace), has the pod's hostname (not with
// host network), sysctls and cgroup, cpu.shares 2 and oom_score_adj -998
// (raised to what the host permits). Seccomp follows the pod security
// context; privileged pods run the pause process without seccomp (whatever
// profile they name) and get nothing else: the pause process needs no
// privileges.
func (b *Builder) Pod(p Pod) ([]oci.SpecOpts, error) {
	cfg := p.Config
	sc := cfg.GetLinux().GetSecurityContext()
	nsOpts := sc.GetNamespaceOptions()

	process, err := withPodProcess(p.Image)
	if err != nil {
		return nil, err
	}
	user, err := withPodUser(sc, p.Image)
	if err != nil {
		return nil, err
	}
	nss, err := podNamespaces(nsOpts, p.NetNSPath)
	if err != nil {
		return nil, err
	}
	userns, err := podUsernsOpt(nsOpts.GetUsernsOptions(), p.UsernsPath, p.Handler.UserNamespaces)
	if err != nil {
		return nil, err
	}
	sec, err := b.seccompOpt("security_context.seccomp", sc.GetSeccomp(), sc.GetSeccompProfilePath(), sc.GetPrivileged())
	if err != nil {
		return nil, fmt.Errorf("pod %w", err)
	}

	opts := baseOpts(process, user, nss, userns, nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE)
	if nsOpts.GetNetwork() != runtimeapi.NamespaceMode_NODE && cfg.GetHostname() != "" {
		if err := checkHostname(cfg.GetHostname()); err != nil {
			return nil, err
		}
		opts = append(opts, oci.WithHostname(cfg.GetHostname()))
	}
	opts = append(opts,
		withSysctls(cfg.GetLinux().GetSysctls()),
		withCgroupsPath(p.CgroupsPath),
		withSandboxCPUShares(),
		withRootfsReadonly(true),
		withNoNewPrivileges(true),
		withCapabilities(defaultCapabilitySet()),
	)
	if sec != nil {
		opts = append(opts, sec) // after the capabilities: the default profile reads them
	}
	opts = append(opts,
		withOOMScoreAdj(defaultSandboxOOMAdj, b.host.OOM),
		oci.WithAnnotations(podAnnotations(p)),
	)
	if p.Handler.SpecVersion != "" {
		opts = append(opts, withSpecVersion(p.Handler.SpecVersion))
	}
	return opts, nil
}
