package sandbox

import (
	"testing"

	"github.com/accel-cri/accel-cri/internal/testutil"
)

// Shared helpers of the sandbox core's tests.

// checkErr fails unless err matches want (testutil.CheckErr).
func checkErr(t *testing.T, err, want error) bool {
	t.Helper()
	return testutil.CheckErr(t, err, want)
}

// addShownPod adds p to s as RunPodSandbox leaves a pod it finished.
func addShownPod(s *store, p *Pod) {
	s.addPod(p)
	s.showPod(p)
}
