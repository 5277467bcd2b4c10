package framework

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// OwnedBy lists the dirs of os.TempDir() that MarkOwned marked as pid's.
func OwnedBy(pid int) []string {
	if pid <= 0 {
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

// MountsUnder lists this mount namespace's mount points at or below dir.
func MountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// ProcessesNaming lists the processes but this one whose command line
// mentions s, as "<pid>: <command line>".
func ProcessesNaming(s string) []string {
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

// ProcessHasArg reports whether pid's command line mentions s: only then is
// it one of the processes a test started with s (its dir) in its arguments.
func ProcessHasArg(pid int, s string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && bytes.Contains(b, []byte(s))
}
