// Package e2e runs accel-cri end to end: the real binary with its managed
// containerd v2, runc, CNI plugins and a local docker-registry, driven over
// the CRI socket by kubelet's own client (k8s.io/cri-client).
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// requiredBinaries are installed by hack/install-deps.sh; a missing one is a
// broken setup, not a reason to skip.
var requiredBinaries = []string{"containerd", "containerd-shim-runc-v2", "runc", framework.RegistryBinary, "go"}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e tests need root (containerd, mounts, network namespaces); run via `make test`")
		os.Exit(1)
	}
	for _, b := range requiredBinaries {
		if _, err := exec.LookPath(b); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %s not found: run hack/install-deps.sh (make deps)\n", b)
			os.Exit(1)
		}
	}
	framework.SweepStale(framework.StderrT{})
	code := m.Run()
	framework.CleanupBinaries()
	os.Exit(code)
}
