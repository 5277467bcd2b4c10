package framework

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/accel-cri/accel-cri/internal/cgroups"
)

// RunscFlags are the runsc flags that work on this machine class (see
// docs/runtime-handlers.md): the ptrace platform needs no KVM, and the host
// network mode lets every container's gVisor sandbox use the pod's network
// namespace.
const RunscFlags = "--platform=ptrace --network=host"

// OCIRuntimes returns the crun and runsc binaries to configure as accel-cri
// runtime handlers on this machine class, writing wrappers into dir (a
// test's own temp dir) where the plain binaries do not work here:
//   - runsc runs with RunscFlags;
//   - crun 1.8 refuses every container on a cgroup v1 host whose v2
//     hierarchy holds a controller (hugetlb here): "cgroups in hybrid mode
//     not supported, drop all controllers from cgroupv2". It runs when that
//     hierarchy is hidden from it, in a mount namespace of its own; it then
//     uses the v1 controllers like runc.
//
// It fails the test when crun or runsc is not installed
// (hack/install-deps.sh installs both).
func OCIRuntimes(t testing.TB, dir string) (crun, runsc string) {
	t.Helper()
	for _, bin := range []string{"crun", "runsc"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not installed (hack/install-deps.sh installs it): %v", bin, err)
		}
	}
	runsc = writeScript(t, filepath.Join(dir, "runsc-accel"), fmt.Sprintf("#!/bin/sh\nexec runsc %s \"$@\"\n", RunscFlags))
	crun = "crun"
	if HybridWithV2Controllers() {
		unified := cgroups.Local().Unified
		t.Logf("cgroup hybrid mode with v2 controllers: crun runs with %s hidden", unified)
		crun = writeScript(t, filepath.Join(dir, "crun-accel"),
			"#!/bin/sh\nexec unshare -m --propagation unchanged sh -c 'umount -l "+unified+" && exec crun \"$@\"' crun \"$@\"\n")
	}
	return crun, runsc
}

// HybridWithV2Controllers reports a cgroup v1 host whose unified (v2)
// hierarchy has controllers.
func HybridWithV2Controllers() bool {
	h := cgroups.Local()
	return h.Version == cgroups.Hybrid && len(h.UnifiedControllers) > 0
}

func writeScript(t testing.TB, path, script string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}
