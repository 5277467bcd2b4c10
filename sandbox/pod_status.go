package sandbox

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PodStatus reports a pod with its containers' statuses.
func (r *Runtime) PodStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.PodSandboxStatus, []*runtimeapi.ContainerStatus, map[string]string, error) {
	p, err := r.store.pod(id)
	if err != nil {
		return nil, nil, nil, err
	}
	st := r.podSandboxStatus(p)
	var cs []*runtimeapi.ContainerStatus
	for _, c := range r.store.podContainers(p.ID) {
		cs = append(cs, r.containerStatus(c))
	}
	var info map[string]string
	if verbose {
		pst := r.store.podStatusOf(p)
		info, err = jsonInfo(map[string]any{"info": map[string]any{
			"pid": pst.PID, "pause": !p.Infraless, "pinnedNamespaces": p.Pinned,
			"netns": p.NetNSPath, "cgroupsPath": p.CgroupsPath, "runtimeHandler": p.RuntimeHandler,
			"runtimeType": r.runtimeTypeOf(p.RuntimeHandler), "files": p.Files, "config": p.Config,
			"overhead": pst.Overhead, "resources": pst.Resources, "network": pst.Network,
		}})
		if err != nil {
			return nil, nil, nil, err
		}
	}
	return st, cs, info, nil
}

func (r *Runtime) podSandboxStatus(p *Pod) *runtimeapi.PodSandboxStatus {
	st := r.store.podStatusOf(p)
	out := &runtimeapi.PodSandboxStatus{
		Id:             p.ID,
		Metadata:       p.Config.GetMetadata(),
		State:          st.State,
		CreatedAt:      p.CreatedAt.UnixNano(),
		Labels:         p.Config.GetLabels(),
		Annotations:    p.Config.GetAnnotations(),
		RuntimeHandler: p.RuntimeHandler,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
			Options: p.Config.GetLinux().GetSecurityContext().GetNamespaceOptions(),
		}},
	}
	if st.Network.IP != "" {
		out.Network = &runtimeapi.PodSandboxNetworkStatus{Ip: st.Network.IP}
		for _, ip := range st.Network.AdditionalIPs {
			out.Network.AdditionalIps = append(out.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	return out
}
