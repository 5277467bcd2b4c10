package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// traces lists what is left of a stopped cluster: its supervisor (pid), the
// dirs it recorded (i; nil when it never came up) and every dir of
// os.TempDir() it marked as its own, processes naming one of them, mounts
// below them (the pods' netns and rootfs, the kubelet's root dir), its CNI
// bridge, cgroups, CNI cache entries and nat rules.
func traces(i *info, pid int) []string {
	var left []string
	if pid != 0 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil && framework.ProcessHasArg(pid, "supervise") {
			left = append(left, fmt.Sprintf("the supervisor, pid %d", pid))
		}
	}
	dirs := framework.OwnedBy(pid)
	if i != nil {
		dirs = append(dirs, i.Dirs...)
	}
	seen := map[string]bool{}
	for _, dir := range dirs {
		if dir == "" || seen[dir] {
			continue
		}
		seen[dir] = true
		if _, err := os.Stat(dir); err == nil {
			left = append(left, "dir "+dir)
		}
		for _, m := range framework.MountsUnder(dir) {
			left = append(left, "mount "+m)
		}
		for _, p := range framework.ProcessesNaming(dir + "/") {
			left = append(left, "process "+p)
		}
	}
	if i == nil {
		return left
	}
	if i.Bridge != "" {
		if _, err := os.Stat(filepath.Join("/sys/class/net", i.Bridge)); err == nil {
			left = append(left, "bridge "+i.Bridge)
		}
	}
	if i.CgroupRoot != "" {
		for _, c := range cgroups.Local().Walk(i.CgroupRoot) {
			left = append(left, "cgroup "+c)
		}
	}
	if i.Network != "" {
		cache, _ := filepath.Glob(filepath.Join("/var/lib/cni/results", i.Network+"-*"))
		for _, c := range cache {
			left = append(left, "CNI cache "+c)
		}
		nat, err := exec.Command("iptables-save", "-t", "nat").Output()
		if err != nil {
			left = append(left, "nat rules unknown: iptables-save: "+err.Error())
		}
		needle := fmt.Sprintf(`name: \"%s\"`, i.Network)
		for _, r := range strings.Split(string(nat), "\n") {
			if strings.Contains(r, needle) {
				left = append(left, "nat rule "+r)
			}
		}
	}
	return left
}
