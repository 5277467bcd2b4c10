package sandbox

import (
	"os"
	"strings"
)

// Cgroup drivers as kubelet names them.
const (
	CgroupDriverCgroupfs = "cgroupfs"
	CgroupDriverSystemd  = "systemd"
)

// ResolveCgroupDriver turns the configured driver ("auto", "cgroupfs",
// "systemd") into the one in use. "auto" picks systemd only when systemd is
// PID 1, since the systemd driver needs systemd to create the scopes.
func ResolveCgroupDriver(configured, proc1Comm string) string {
	switch configured {
	case CgroupDriverCgroupfs, CgroupDriverSystemd:
		return configured
	}
	b, err := os.ReadFile(proc1Comm)
	if err == nil && strings.TrimSpace(string(b)) == "systemd" {
		return CgroupDriverSystemd
	}
	return CgroupDriverCgroupfs
}
