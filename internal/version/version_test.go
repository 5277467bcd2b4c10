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
	for _, tc := range []struct{ commit, want string }{
		{"", "0.0.0-dev"},
		{"unknown", "0.0.0-dev"},
		{"7b9943d1334f8db91b07f602b9551cf37134eb72", "0.0.0-dev+7b9943d1334f"},
		{"7b9943d1334f8db91b07f602b9551cf37134eb72-dirty", "0.0.0-dev+7b9943d1334f.dirty"},
		{"7b9943d", "0.0.0-dev+7b9943d"},
		{"a_b.c/d", "0.0.0-dev+a-b-c-d"},
	} {
		got := DevVersion(tc.commit)
		if got != tc.want {
			t.Errorf("DevVersion(%q) = %q, want %q", tc.commit, got, tc.want)
		}
		if _, err := utilversion.ParseSemantic(got); err != nil {
			t.Errorf("DevVersion(%q) = %q: %v", tc.commit, got, err)
		}
	}
}
