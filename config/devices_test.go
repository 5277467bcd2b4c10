package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDevicesConfig(t *testing.T) {
	for _, tc := range []struct {
		desc, toml, wantErr string
	}{
		{"defaults", "", ""},
		{"full table", `
[devices]
cdi_spec_dirs = ["/etc/cdi", "/var/run/cdi"]
cdi_output_dir = "/var/run/cdi"
device_plugin = true
device_ownership_from_security_context = true
nvidia_driver_capabilities = ["compute", "utility", "video", "graphics"]
replicas = { intel-gpu = 4 }
[[devices.static]]
name = "u30"
path = "/dev/xilinx_u30"
`, ""},
		{"relative spec dir", "[devices]\ncdi_spec_dirs = [\"cdi\"]\n", "devices.cdi_spec_dirs"},
		{"static outside dev root", "[devices]\n[[devices.static]]\nname = \"x\"\npath = \"/tmp/x\"\n", "not under dev_root"},
		{"bad static name", "[devices]\n[[devices.static]]\nname = \"a/b\"\npath = \"/dev/x\"\n", "must be a CDI device name"},
		{"unknown capability", "[devices]\nnvidia_driver_capabilities = [\"compute\", \"display\"]\n", `unknown capability "display"`},
		{"capability twice", "[devices]\nnvidia_driver_capabilities = [\"video\", \"video\"]\n", `"video" given twice`},
		{"no capability", "[devices]\nnvidia_driver_capabilities = []\n", "must name at least one capability"},
		{"zero replicas", "[devices]\nreplicas = { gpu = 0 }\n", "devices.replicas.gpu"},
		{"plugin without discovery", "[devices]\ndevice_plugin = true\ncdi_output_dir = \"\"\n", "needs cdi_output_dir"},
		{"unknown key", "[devices]\ncdi_dir = \"/x\"\n", "cdi_dir"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.toml")
			os.WriteFile(p, []byte(tc.toml), 0o644)
			cfg, err := Load(p, false)
			if err == nil {
				err = cfg.Validate()
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if tc.desc == "full table" && (cfg.Devices.Replicas["intel-gpu"] != 4 || len(cfg.Devices.Static) != 1 || !cfg.Devices.DevicePlugin ||
				strings.Join(cfg.Devices.NVIDIADriverCapabilities, ",") != "compute,utility,video,graphics") {
				t.Errorf("parsed %+v", cfg.Devices)
			}
			if tc.desc == "defaults" && strings.Join(cfg.Devices.NVIDIADriverCapabilities, ",") != "compute,utility,video" {
				t.Errorf("default nvidia_driver_capabilities %v", cfg.Devices.NVIDIADriverCapabilities)
			}
		})
	}
}
