package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/accel-cri/accel-cri/internal/cgroups"
)

// traces lists what is left of a stopped cluster: its supervisor (pid), the
// dirs it recorded (i; nil when it never came up) and every dir of
// os.TempDir() it marked as its own, processes naming one of them, mounts
// below them (the pods' netns and rootfs, the kubelet's root dir), its CNI
// bridge, cgroups, CNI cache entries and nat rules.
func traces(i *info, pid int) []string {
	var left []string
	if pid != 0 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil && processHasArg(pid, "supervise") {
			left = append(left, fmt.Sprintf("the supervisor, pid %d", pid))
		}
	}
	dirs := ownedDirs(pid)
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
		for _, m := range mountsUnder(dir) {
			left = append(left, "mount "+m)
		}
		for _, p := range procsWithArg(dir + "/") {
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

// ownedDirs returns the dirs of os.TempDir() whose owner mark
// (framework.MarkOwned) names pid.
func ownedDirs(pid int) []string {
	if pid == 0 {
		return nil
	}
	var out []string
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "acri-*"))
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, "owner")); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(pid) {
			out = append(out, d)
		}
	}
	return out
}

// mountsUnder lists this mount namespace's mount points at or below dir.
func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// procsWithArg lists the processes whose command line mentions s.
func procsWithArg(s string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(b, []byte(s)) {
			out = append(out, fmt.Sprintf("%d: %s", pid, strings.Join(strings.Fields(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))), " ")))
		}
	}
	return out
}

func processHasArg(pid int, s string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && bytes.Contains(b, []byte(s))
}
