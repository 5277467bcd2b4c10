// Package version names this build of accel-cri: its version and git commit
// (set by the Makefile through -ldflags -X) and the containerd version it was
// built against (read from the module graph, so it cannot drift).
package version

import (
	"runtime/debug"
	"strings"
)

// Set at build time: -ldflags "-X github.com/accel-cri/accel-cri/internal/version.Commit=<git commit>"
// and, for a release (the Makefile does when HEAD has a v<semver> tag),
// "-X .../version.Version=<semver>". Version unset is 0.0.0-dev+<commit>,
// the commit from Commit or else from the Go toolchain's VCS stamp, so that
// it always parses as a semantic version: kubelet reports a runtime version
// it cannot parse as "Unknown" (the node's containerRuntimeVersion, kubectl
// get nodes -o wide).
var (
	Version = ""
	Commit  = ""
)

// devVersion is the version of a build from no release tag.
const devVersion = "0.0.0-dev"

func init() {
	rev, modified := vcs()
	if Commit == "" {
		Commit = "unknown"
		if rev != "" {
			Commit = rev
			if modified {
				Commit += "-dirty"
			}
		}
	}
	if Version == "" {
		Version = DevVersion(Commit)
	}
}

// DevVersion is the version of a build of commit from no release tag:
// 0.0.0-dev+<the commit's first 12 characters> (build metadata of a
// semantic version), or 0.0.0-dev when the commit is unknown.
func DevVersion(commit string) string {
	if commit == "" || commit == "unknown" {
		return devVersion
	}
	meta := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' {
			return r
		}
		return '-'
	}, commit[:min(12, len(commit))])
	if strings.HasSuffix(commit, "-dirty") {
		meta += ".dirty"
	}
	return devVersion + "+" + meta
}

// vcs returns the commit and modified flag the Go toolchain stamped.
func vcs() (rev string, modified bool) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", false
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	return rev, modified
}

// containerdModule is the module whose version is the containerd accel-cri expects.
const containerdModule = "github.com/containerd/containerd/v2"

// Containerd is the containerd version accel-cri was built against and
// expects from the daemon.
func Containerd() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, m := range bi.Deps {
		if m.Path == containerdModule {
			if m.Replace != nil {
				return m.Replace.Version
			}
			return m.Version
		}
	}
	return "unknown"
}
