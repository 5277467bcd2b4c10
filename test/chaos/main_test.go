//go:build chaos || soak

// Package chaos proves accel-cri's crash safety and resource hygiene with
// the real binary, its managed containerd, runc, CNI and a local registry:
// a churn of pod lifecycles during which accel-cri (and sometimes its
// containerd) is SIGKILLed at chosen moments, checked against what the
// client was told after every restart (build tag chaos, `make chaos`), and
// a long churn without kills that samples memory and fds (build tag soak,
// `make soak`). Both print their figures.
package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "chaos tests need root (containerd, mounts, network namespaces)")
		os.Exit(1)
	}
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "runc", framework.RegistryBinary, "go"} {
		if _, err := exec.LookPath(b); err != nil {
			fmt.Fprintf(os.Stderr, "chaos: %s not found: run hack/install-deps.sh (make deps)\n", b)
			os.Exit(1)
		}
	}
	framework.SweepStale(framework.StderrT{})
	code := m.Run()
	framework.CleanupBinaries()
	os.Exit(code)
}
