package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/accel-cri/accel-cri/config"
	"github.com/accel-cri/accel-cri/devices"
	"github.com/accel-cri/accel-cri/devices/devicetest"
	"github.com/accel-cri/accel-cri/sandbox"
)

func TestDevicesCommand(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("mknod needs root")
	}
	dir := t.TempDir()
	h := devicetest.NewHost(t, dir)
	h.AddDRMGPU(devicetest.IntelIGPU)
	h.AddDFLFPGA(0, 0, "0000:08:00.0", "bfac4d851ee856fe8c95865ce1bbaa2d", "d8424dc4a4a3c413f89e433683f9040b", devicetest.Null)
	cfg := filepath.Join(dir, "config.toml")
	cdiDir := filepath.Join(dir, "cdi")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[devices]\nsysfs_root = %q\ndev_root = %q\nnvml_library = %q\ncdi_output_dir = %q\n",
		h.Sysfs, h.Dev, filepath.Join(dir, "libnvidia-ml.so.1"), cdiDir)), 0o644)

	var out, errOut bytes.Buffer
	if err := run([]string{"devices", "--config", cfg}, &out, &errOut); err != nil {
		t.Fatalf("devices: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{"CDI NAME", "accel-cri.io/intel-gpu=0", "accel-cri.io/intel-gpu=0000:00:02.0", "i915", "accel-cri.io/fpga=0", "dfl-port.0", "Healthy"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(cdiDir); err == nil {
		t.Errorf("the devices command wrote specs into %s", cdiDir)
	}

	out.Reset()
	if err := run([]string{"devices", "--config", cfg, "--json"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	var inv devices.Inventory
	if err := json.Unmarshal(out.Bytes(), &inv); err != nil || len(inv.Devices) != 2 || inv.Devices[1].Attrs["afu_id"] != "d8424dc4a4a3c413f89e433683f9040b" {
		t.Errorf("json: %v %+v", err, inv)
	}
}

// startDevices gives containers accel-cri's registry: a device of the live
// inventory resolves with its spec file deleted, one that vanished is
// FailedPrecondition, an unknown name NotFound.
func TestStartDevicesRegistry(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("mknod needs root")
	}
	dir := t.TempDir()
	h := devicetest.NewHost(t, dir)
	gone := devicetest.IntelArc
	h.AddDRMGPU(devicetest.IntelIGPU)
	h.AddDRMGPU(gone)
	cdiDir := filepath.Join(dir, "cdi")
	c := config.DefaultDevices()
	c.CDISpecDirs, c.CDIOutputDir = []string{cdiDir}, cdiDir
	c.SysfsRoot, c.DevRoot, c.NVMLLibrary = h.Sysfs, h.Dev, filepath.Join(dir, "libnvidia-ml.so.1")
	var inj sandbox.CDIInjector
	mgr, opt, err := startDevices(t.Context(), c, func(i sandbox.CDIInjector) sandbox.CDIInjector { inj = i; return i })
	if err != nil || mgr == nil || opt == nil || inj == nil {
		t.Fatalf("startDevices: %v %v %v %v", mgr, opt, inj, err)
	}
	if err := devices.RemoveSpecs(cdiDir); err != nil {
		t.Fatal(err)
	}
	if err := inj.Check([]string{"accel-cri.io/intel-gpu=0000:00:02.0", "accel-cri.io/intel-gpu=0000:03:00.0"}); err != nil {
		t.Errorf("live devices without spec files: %v", err)
	}
	h.RemoveDRMGPU(gone)
	if err := mgr.Refresh(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]error{
		"accel-cri.io/intel-gpu=0000:00:02.0": nil,
		"accel-cri.io/intel-gpu=0000:03:00.0": errdefs.ErrFailedPrecondition,
		"accel-cri.io/intel-gpu=9":            errdefs.ErrNotFound,
	} {
		if err := inj.Check([]string{name}); !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
}
