package version

import (
	"testing"

	utilversion "k8s.io/apimachinery/pkg/util/version"
)

// kubelet shows a runtime version it cannot parse as a semantic version as
// "Unknown" in the node's status: every build's must parse.
func TestVersionIsSemantic(t *testing.T) {
	if _, err := utilversion.ParseSemantic(Version); err != nil {
		t.Errorf("Version %q: %v", Version, err)
	}
	if Commit == "" {
		t.Error("Commit is empty")
	}
	for _, v := range []string{devVersion, devVersion + "+0123456789ab", devVersion + "+0123456789ab.dirty"} {
		if _, err := utilversion.ParseSemantic(v); err != nil {
			t.Errorf("%q: %v", v, err)
		}
	}
}
