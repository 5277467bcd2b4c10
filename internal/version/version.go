// Package version names this build of accel-cri: its version and git commit
// (set by the Makefile through -ldflags -X) and the containerd version it was
// built against (read from the module graph, so it cannot drift).
package version

import "runtime/debug"

// Set at build time: -ldflags "-X github.com/accel-cri/accel-cri/internal/version.Version=..."
var (
	Version = "dev"
	Commit  = "unknown"
)

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
