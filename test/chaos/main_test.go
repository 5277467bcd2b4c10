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
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

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

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0)) }
