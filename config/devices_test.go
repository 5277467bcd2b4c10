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
		{"dra", "[devices.dra]\nkubeconfig = \"/etc/kubernetes/kubelet.conf\"\nnode_name = \"node-a.example\"\n", ""},
		{"dra without node name", "[devices.dra]\nkubeconfig = \"/etc/kubernetes/kubelet.conf\"\n", `devices.dra.node_name: ""`},
		{"dra bad node name", "[devices.dra]\nkubeconfig = \"/k\"\nnode_name = \"Node_A\"\n", `devices.dra.node_name: "Node_A" is not a node name`},
		{"dra relative kubeconfig", "[devices.dra]\nkubeconfig = \"k.conf\"\nnode_name = \"a\"\n", "devices.dra.kubeconfig"},
		{"dra without plugins dir", "[devices.dra]\nkubeconfig = \"/k\"\nnode_name = \"a\"\nkubelet_plugins_dir = \"\"\n", "devices.dra.kubelet_plugins_dir: must be set"},
		{"dra without discovery", "[devices]\ncdi_output_dir = \"\"\n[devices.dra]\nkubeconfig = \"/k\"\nnode_name = \"a\"\n", "devices.dra: needs cdi_output_dir"},
		{"dra node name alone", "[devices.dra]\nnode_name = \"a\"\n", "set without devices.dra.kubeconfig"},
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
