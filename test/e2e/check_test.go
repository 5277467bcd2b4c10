package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/accel-cri/accel-cri/config"
	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/sandbox"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// runCheck runs `accel-cri check` with args and returns its stdout and
// exit code.
func runCheck(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, framework.Binary(t), append([]string{"check"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), 0
	case errors.As(err, &exit):
		return stdout.String(), exit.ExitCode()
	}
	t.Fatalf("accel-cri check: %v\n%s", err, stderr.String())
	return "", 0
}

// line is the report line of item ("" when absent) and the fix under it.
func line(report, item string) (string, string) {
	lines := strings.Split(report, "\n")
	for i, l := range lines {
		if _, rest, ok := strings.Cut(l, "] "); ok && strings.HasPrefix(rest, item+": ") {
			fix := ""
			if i+1 < len(lines) && strings.HasPrefix(lines[i+1], "  fix: ") {
				fix = lines[i+1]
			}
			return l, fix
		}
	}
	return "", ""
}

// TestCheckOnThisNode runs the real `accel-cri check` here. What this
// node class cannot do must be reported as such: the test finds out the
// node's facts itself (oom_score_adj probe, runc features, cgroup mounts)
// and expects the matching line.
func TestCheckOnThisNode(t *testing.T) {
	dir := t.TempDir()
	// Searchable by others, as accel-cri's own dirs: else the check warns
	// that user-namespaced containers cannot reach their root filesystems.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	cniDir := filepath.Join(dir, "net.d")
	if err := os.MkdirAll(cniDir, 0o755); err != nil {
		t.Fatal(err)
	}
	conflist := `{"cniVersion":"1.0.0","name":"check","plugins":[{"type":"bridge","bridge":"accheck0","ipam":{"type":"host-local","subnet":"10.99.0.0/24"}},{"type":"portmap","capabilities":{"portMappings":true}}]}`
	if err := os.WriteFile(filepath.Join(cniDir, "10-check.conflist"), []byte(conflist), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "config.toml")
	cfg := fmt.Sprintf("root = %q\nstate = %q\nsocket = %q\ncni_conf_dir = %q\ncni_bin_dirs = [\"/usr/lib/cni\"]\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "cri.sock"), cniDir)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	report, code := runCheck(t, "--config", cfgPath)
	t.Logf("accel-cri check:\n%s", report)
	if code != 0 {
		t.Errorf("exit code %d on a node that runs accel-cri (the e2e suite does), want 0", code)
	}
	for _, item := range []string{"config", "root", "containerd", "runtime runc", "cni", "cgroups", "overlayfs", "seccomp", "user namespaces", "oom_score_adj", "kvm", "devices", "ip_forward", "signature policy", "criu"} {
		l, fix := line(report, item)
		if l == "" {
			t.Errorf("no line for %q", item)
			continue
		}
		if strings.HasPrefix(l, "[FAIL]") {
			t.Errorf("required item failed here: %s", l)
		}
		if !strings.HasPrefix(l, "[OK]") && fix == "" {
			t.Errorf("%q is not OK but has no fix line", item)
		}
	}
	// The containerd installed is the one accel-cri's client was built
	// with (`accel-cri version` reads it from its module graph).
	verOut, err := exec.Command(framework.Binary(t), "version").Output()
	if err != nil {
		t.Fatalf("accel-cri version: %v", err)
	}
	_, want, _ := strings.Cut(string(verOut), "containerd: ")
	want = strings.TrimSpace(want)
	if l, _ := line(report, "containerd"); want == "" || !strings.Contains(l, want+" (expected "+want+")") {
		t.Errorf("containerd line: %q, want %q installed and expected", l, want)
	}
	// The runc hack/install-deps.sh builds is the default and has no known
	// escapes.
	if l, _ := line(report, "runtime runc"); !strings.HasPrefix(l, "[OK]") || !strings.Contains(l, config.DefaultRuncBinary) {
		t.Errorf("runtime runc line: %q, want OK with %s", l, config.DefaultRuncBinary)
	}
	// The CRIU hack/install-deps.sh builds (hack/build-criu.sh) works on
	// this kernel, where Debian bookworm's 3.17 does not.
	if l, _ := line(report, "criu"); !strings.HasPrefix(l, "[OK]") || !strings.Contains(l, config.DefaultCRIUPath+" is CRIU 4.1.1") || !strings.Contains(l, "Looks good") {
		t.Errorf("criu line: %q, want OK with CRIU 4.1.1 at %s passing criu check", l, config.DefaultCRIUPath)
	}
	if l, _ := line(report, "cni"); !strings.HasPrefix(l, "[OK]") || !strings.Contains(l, `network "check"`) {
		t.Errorf("cni line: %q", l)
	}

	// oom_score_adj: the same probe accel-cri does at start.
	oom, err := sandbox.DetectOOMScoreRange("/proc/self/oom_score_adj")
	if err != nil {
		t.Fatal(err)
	}
	l, fix := line(report, "oom_score_adj")
	if oom.Restricted {
		t.Logf("this node forbids lowering oom_score_adj (min %d)", oom.Min)
		if !strings.HasPrefix(l, "[WARN]") || !strings.Contains(l, "not permitted") || !strings.Contains(l, fmt.Sprintf("clamps container values to %d", oom.Min)) || !strings.Contains(fix, "CAP_SYS_RESOURCE") {
			t.Errorf("negative oom_score_adj is not permitted here, the report says: %q / %q", l, fix)
		}
	} else if !strings.HasPrefix(l, "[OK]") {
		t.Errorf("oom_score_adj can be lowered here, the report says: %q", l)
	}

	// User namespaces: does runc do idmapped mounts?
	features, err := exec.Command(config.DefaultRuncBinary, "features").Output()
	if err != nil {
		t.Fatal(err)
	}
	f, err := sandbox.ParseFeatures(features)
	if err != nil {
		t.Fatal(err)
	}
	l, _ = line(report, "user namespaces")
	if !f.UserNamespaces {
		ver, _ := exec.Command(config.DefaultRuncBinary, "--version").Output()
		first, _, _ := strings.Cut(string(ver), "\n")
		t.Logf("runc here has no idmapped mounts (%s)", first)
		if !strings.HasPrefix(l, "[WARN]") || !strings.Contains(l, "no idmapped mounts") || !strings.Contains(l, first) {
			t.Errorf("runc without idmapped mounts, the report says: %q", l)
		}
	} else if !strings.HasPrefix(l, "[OK]") || !strings.Contains(l, "do idmapped mounts") {
		t.Errorf("runc does idmapped mounts, the report says: %q", l)
	}

	// cgroups: v1 or hybrid here is a warning, v2 is fine.
	l, _ = line(report, "cgroups")
	if !cgroups.Local().V2() {
		t.Log("this node runs cgroup v1")
		if !strings.HasPrefix(l, "[WARN]") || !(strings.Contains(l, "v1 (legacy)") || strings.Contains(l, "hybrid")) || !strings.Contains(l, "failCgroupV1") && !strings.Contains(l, "refuse cgroup v1") {
			t.Errorf("cgroup v1 node, the report says: %q", l)
		}
	} else if !strings.Contains(l, "v2 (unified)") {
		t.Errorf("cgroup v2 node, the report says: %q", l)
	}
}

func TestCheckFailsOnRequiredItem(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		desc string
		args []string
		want string
	}{
		{desc: "containerd socket missing", args: []string{"--containerd-address", filepath.Join(dir, "none.sock"), "--cni-conf-dir", dir}, want: "[FAIL] containerd:"},
		{desc: "containerd binary missing", args: []string{"--config", writeFile(t, dir, "bin.toml", "containerd_binary = \"/nonexistent/containerd\"\n"), "--cni-conf-dir", dir}, want: "[FAIL] containerd:"},
		{desc: "default runtime missing", args: []string{"--config", writeFile(t, dir, "rt.toml", "[runtimes.runc]\nbinary_name = \"/nonexistent/runc\"\n"), "--cni-conf-dir", dir}, want: "[FAIL] runtime runc:"},
		{desc: "invalid config", args: []string{"--metrics-address", "no-port"}, want: "[FAIL] config:"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			report, code := runCheck(t, tc.args...)
			if code != 1 || !strings.Contains(report, tc.want) || !strings.Contains(report, "  fix: ") {
				t.Fatalf("exit %d, report:\n%s\nwant exit 1 and %q with a fix", code, report, tc.want)
			}
		})
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
