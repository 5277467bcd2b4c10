package sandbox

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PodFilter selects pods for ListPods; empty fields match everything.
type PodFilter struct {
	ID            string
	State         *PodState
	LabelSelector map[string]string
}

// ListPods lists pods matching f.
func (r *Runtime) ListPods(f PodFilter) []*runtimeapi.PodSandbox {
	var out []*runtimeapi.PodSandbox
	for _, p := range r.store.listPods() {
		st := r.store.podStatusOf(p)
		if !matchID(p.ID, f.ID) || (f.State != nil && st.State != *f.State) || !matchLabels(p.Config.GetLabels(), f.LabelSelector) {
			continue
		}
		out = append(out, p.listItem(st.State))
	}
	return out
}

// listItem is the pod's ListPodSandbox entry in state st. Entries are
// shared by all callers and never changed: a new one is made when the state
// changes, so the CRI server can keep each entry's encoding for as long as
// the entry lives.
func (p *Pod) listItem(st runtimeapi.PodSandboxState) *runtimeapi.PodSandbox {
	if it := p.item.Load(); it != nil && it.State == st {
		return it
	}
	it := &runtimeapi.PodSandbox{
		Id: p.ID, Metadata: p.Config.GetMetadata(), State: st, CreatedAt: p.CreatedAt.UnixNano(),
		Labels: p.Config.GetLabels(), Annotations: p.Config.GetAnnotations(), RuntimeHandler: p.RuntimeHandler,
	}
	p.item.Store(it)
	return it
}

func matchID(id, want string) bool {
	return want == "" || id == want || (len(want) < len(id) && id[:len(want)] == want)
}

func matchLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
