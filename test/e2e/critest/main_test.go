// Package critest runs the CRI conformance suite, critest (cri-tools
// v1.37.0), against accel-cri: a local docker-registry serves stand-ins for
// every image critest pulls under their upstream names
// (hack/testimages/critest.go), accel-cri pulls them through hosts.toml
// mirrors, and the test fails on every failed spec and on every spec skipped
// for a reason the skip table in critest_test.go does not name.
// docs/conformance.md has the commands, the skip list and the counts.
package critest

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// requiredBinaries are installed by hack/install-deps.sh --test; a missing
// one is a broken setup, not a reason to skip.
var requiredBinaries = []string{"containerd", "containerd-shim-runc-v2", "runc", framework.RegistryBinary, "go", "nsenter", "ipcmk"}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "critest needs root (containerd, mounts, network namespaces); run via `make test` or `make critest`")
		os.Exit(1)
	}
	for _, b := range requiredBinaries {
		if _, err := exec.LookPath(b); err != nil {
			fmt.Fprintf(os.Stderr, "critest e2e: %s not found: run hack/install-deps.sh --test (make deps)\n", b)
			os.Exit(1)
		}
	}
	// The CRI client logs the end of the event stream the test cancels as an
	// error; the test reports what matters itself.
	klog.SetLogger(logr.Discard())
	framework.SweepStale(framework.StderrT{})
	code := m.Run()
	framework.CleanupBinaries()
	os.Exit(code)
}
