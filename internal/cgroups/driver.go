package cgroups

import "strings"

// Cgroup drivers as kubelet names them.
const (
	DriverCgroupfs = "cgroupfs"
	DriverSystemd  = "systemd"
)

// ResolveDriver turns the configured driver ("auto", "cgroupfs",
// "systemd") into the one in use. "auto" picks systemd only when systemd is
// PID 1 (SystemdPID1), since the systemd driver needs systemd to create the
// scopes.
func ResolveDriver(configured string, systemdPID1 bool) string {
	switch configured {
	case DriverCgroupfs, DriverSystemd:
		return configured
	}
	if systemdPID1 {
		return DriverSystemd
	}
	return DriverCgroupfs
}

// SystemdPID1 reports whether PID 1 is systemd, by its /proc/1/comm.
func SystemdPID1(files Files) bool {
	b, err := files.ReadFile("/proc/1/comm")
	return err == nil && strings.TrimSpace(string(b)) == "systemd"
}
