package fsutil

import (
	"os"
	"strings"
)

// CgroupMounts lists where the cgroup hierarchies are mounted: each cgroup
// v1 hierarchy, and the v2 root (also on a hybrid host), as /proc/self/mounts
// shows them.
func CgroupMounts() []string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && (f[2] == "cgroup" || f[2] == "cgroup2") {
			out = append(out, f[1])
		}
	}
	return out
}
