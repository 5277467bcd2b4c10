package sandbox

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/sandbox/podns"
)

// A pod without a pause process (an "infra-less" pod, as CRI-O's
// drop_infra_ctr) holds its UTS and IPC namespaces with bind mounts
// (podns.Pin), as the network namespace always is. Its containers join the
// namespaces by path. A pod needs a pause process only where something must
// live in the pod for the whole pod life: a shared PID namespace (its init
// reaps zombies), a user namespace, and handlers whose sandbox is a process
// or a VM.

// The pod's own namespaces and files, as recorded in podMeta (the JSON of
// the pod's checkpoint): sandbox/podns owns them.
type (
	PinnedNamespaces = podns.Namespaces
	PodFiles         = podns.Files
)

// podNeedsInfra reports whether a pod needs a pause process (see above).
func podNeedsInfra(cfg *runtimeapi.PodSandboxConfig, h *handler, always bool) bool {
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	switch {
	case always, !h.infraless():
		return true
	case nsOpts.GetPid() == runtimeapi.NamespaceMode_POD:
		return true
	case ownUserns(nsOpts.GetUsernsOptions()):
		return true
	}
	return false
}
