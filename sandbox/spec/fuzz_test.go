package spec

import (
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/internal/testutil"
)

// The fuzz target of this file feeds wire-decoded pod configs straight to
// the pause container's spec builder, without cri's validation in front:
// the builder must hold on its own. Nothing may panic, every refusal must
// be a classified errdefs error (an unclassified one reaches kubelet as
// Unknown), and what is accepted keeps its hostname sane and its sysctls
// as asked. App containers are fuzzed through the core
// (sandbox.FuzzContainerSpec), which prepares their host mounts.

const maxFuzzInput = 1 << 16

// classified reports whether err carries one of the errdefs classes the
// builder uses.
func classified(err error) bool {
	return errdefs.IsInvalidArgument(err) || errdefs.IsNotFound(err) || errdefs.IsFailedPrecondition(err) || errdefs.IsNotImplemented(err)
}

func FuzzPodSpec(f *testing.F) {
	f.Add(testutil.Marshal(f, testPodConfig()))
	f.Add(testutil.Marshal(f, &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{Sysctls: map[string]string{"kernel.panic": "1"}}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		cfg := &runtimeapi.PodSandboxConfig{}
		if proto.Unmarshal(data, cfg) != nil {
			return
		}
		p := testPod()
		p.Config = cfg
		opts, err := testBuilder(t, withOOMFloor0).Pod(p)
		if err != nil {
			if !classified(err) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		s, err := applySpec(t, append([]oci.SpecOpts{oci.WithRootFSPath(testRootfs(t))}, opts...)...)
		if err != nil {
			if !classified(err) && !strings.Contains(err.Error(), "no users found") && !strings.Contains(err.Error(), "no groups found") {
				t.Fatalf("unclassified error applying the spec: %v", err)
			}
			return
		}
		if s.Hostname != "" && strings.ContainsAny(s.Hostname, "/\x00\n") {
			t.Fatalf("hostname %q", s.Hostname)
		}
		// Sysctls pass through as asked (cri admits only namespaced ones).
		for k, v := range cfg.GetLinux().GetSysctls() {
			if got, ok := s.Linux.Sysctl[k]; !ok || got != v {
				t.Fatalf("sysctl %q=%q became %q (set %v)", k, v, got, ok)
			}
		}
	})
}
