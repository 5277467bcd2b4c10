package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/accel-cri/accel-cri/config"
)

func TestConfigLoads(t *testing.T) {
	cfg, err := config.Load("config.toml", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("deploy/config.toml is invalid: %v", err)
	}
	checks := []struct {
		desc string
		ok   bool
	}{
		{"socket is the documented one", cfg.Socket == "/run/accel-cri/accel-cri.sock"},
		{"metrics on loopback", cfg.MetricsAddr != "" && config.IsLoopbackAddr(cfg.MetricsAddr)},
		{"streaming on loopback", config.IsLoopbackAddr(cfg.StreamingAddr)},
		{"systemd cgroup driver (the unit runs under systemd)", cfg.CgroupDriver == "systemd"},
		{"NRI on accel-cri's own socket, not the node's /var/run/nri/nri.sock", cfg.NRI.Enable && cfg.NRISocket() == "/run/accel-cri/nri.sock"},
		{"managed containerd", cfg.ContainerdAddr == ""},
		{"runc is the default handler", cfg.DefaultRuntime == "runc" && cfg.Runtimes["runc"].Type == config.RuntimeTypeRunc},
		{"device plugin on", cfg.Devices.DevicePlugin},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("deploy/config.toml: %s", c.desc)
		}
	}
}

// unitKeys parses a systemd unit into section -> key -> values.
func unitKeys(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			section = l[1 : len(l)-1]
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || section == "" {
				t.Fatalf("bad unit line %q", l)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUnit(t *testing.T) {
	u := unitKeys(t, "accel-cri.service")
	want := []struct{ section, key, value string }{
		{"Service", "Type", "exec"},
		{"Service", "ExecStart", "/usr/local/bin/accel-cri --config /etc/accel-cri/config.toml"},
		{"Service", "KillMode", "process"},
		{"Service", "Delegate", "yes"},
		{"Service", "Restart", "always"},
		{"Service", "OOMScoreAdjust", "-999"},
		{"Service", "LimitNOFILE", "1048576"},
		{"Service", "LimitNPROC", "infinity"},
		{"Service", "TasksMax", "infinity"},
		{"Unit", "Before", "kubelet.service"},
		{"Unit", "StartLimitIntervalSec", "0"},
		{"Install", "WantedBy", "multi-user.target"},
	}
	for _, w := range want {
		got := u[w.section][w.key]
		if len(got) != 1 || got[0] != w.value {
			t.Errorf("[%s] %s = %q, want %q", w.section, w.key, got, w.value)
		}
	}
	// These would give the runtime its own mount namespace or be inherited
	// by every container (see the unit's comments).
	for _, key := range []string{"ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts", "NoNewPrivileges", "SystemCallFilter", "RestrictNamespaces", "CapabilityBoundingSet", "ProtectKernelTunables", "ProtectControlGroups", "MemoryDenyWriteExecute"} {
		if v, ok := u["Service"][key]; ok {
			t.Errorf("[Service] %s = %q is set; it breaks a node runtime", key, v)
		}
	}
	// The config the unit names is the one in deploy/.
	if !strings.Contains(u["Service"]["ExecStart"][0], config.DefaultPath) {
		t.Errorf("ExecStart does not read %s", config.DefaultPath)
	}
}

// TestUnitVerifies runs systemd-analyze verify where it exists, with
// ExecStart pointing at an executable that exists here (this test binary).
func TestUnitVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed; the key checks in TestUnit still ran")
		return
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("accel-cri.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(string(b), "/usr/local/bin/accel-cri ", self+" ")
	p := filepath.Join(t.TempDir(), "accel-cri.service")
	if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", p).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
