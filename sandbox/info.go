package sandbox

import (
	"context"
	"encoding/json"
	"fmt"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/typeurl/v2"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// jsonInfo renders verbose info values as JSON strings, as the CRI asks.
func jsonInfo(m map[string]any) (map[string]string, error) {
	out := make(map[string]string, len(m))
	for k, v := range m {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("verbose info %s: %w", k, err)
		}
		out[k] = string(b)
	}
	return out, nil
}

// userOf is the identity the container's process runs as, as the spec
// resolved it (image user, run_as_*, supplemental groups).
func userOf(spec *runtimespec.Spec) *runtimeapi.ContainerUser {
	if spec == nil || spec.Process == nil {
		return nil
	}
	u := spec.Process.User
	groups := make([]int64, 0, len(u.AdditionalGids))
	for _, g := range u.AdditionalGids {
		groups = append(groups, int64(g))
	}
	return &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{
		Uid: int64(u.UID), Gid: int64(u.GID), SupplementalGroups: groups,
	}}
}

// withSpec replaces a container's stored spec.
func withSpec(spec *runtimespec.Spec) containerd.UpdateContainerOpts {
	return func(_ context.Context, _ *containerd.Client, c *containers.Container) error {
		a, err := typeurl.MarshalAny(spec)
		if err != nil {
			return err
		}
		c.Spec = a
		return nil
	}
}
