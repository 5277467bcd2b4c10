package devices

import (
	"path/filepath"
	"testing"

	"github.com/accel-cri/accel-cri/devices/devicetest"
)

// DFL ports found through class/fpga_region, /sys/bus/platform and
// /sys/bus/dfl are merged: one device per /dev node.
func TestDiscoverDFLBus(t *testing.T) {
	needRoot(t)
	h := devicetest.NewHost(t, t.TempDir())
	// In all three sources.
	h.AddDFLBusFPGA(devicetest.DFLFPGA{Region: 0, Port: 0, PCI: "0000:08:00.0", InterfaceID: "bfac4d851ee856fe8c95865ce1bbaa2d",
		AFUID: "d8424dc4a4a3c413f89e433683f9040b", Num: devicetest.Null, PortFeatures: []string{"0x14"}, FMEFeatures: []string{"0x9"},
		Class: true, Platform: true})
	// Only on the DFL bus (private features of the port and the FME).
	h.AddDFLBusFPGA(devicetest.DFLFPGA{Region: 2, Port: 1, PCI: "0000:09:00.0", InterfaceID: "ce48969398f05f33946d560708be108a",
		AFUID: "f7df405cbd7acf7222f144b0b93acd18", Num: devicetest.Null, PortFeatures: []string{"0x14", "0x15"}, FMEFeatures: []string{"0xa"},
		FirstFeature: 2})
	// Only on the platform bus, no private features.
	h.AddDFLBusFPGA(devicetest.DFLFPGA{Region: 4, Port: 2, PCI: "0000:0a:00.0", InterfaceID: "11111111111111111111111111111111",
		AFUID: "22222222222222222222222222222222", Num: devicetest.Null, Platform: true})
	// An FME feature alone does not make a port.
	h.AddDFLBusFPGA(devicetest.DFLFPGA{Region: 6, Port: 3, PCI: "0000:0b:00.0", InterfaceID: "3", AFUID: "4",
		Num: devicetest.Null, FMEFeatures: []string{"0x9"}, FirstFeature: 5})

	m := New(WithSysfsRoot(h.Sysfs), WithDevRoot(h.Dev), WithNVMLLibrary(filepath.Join(h.Root, "no", "libnvidia-ml.so.1")), WithCDIDir(""))
	inv, err := m.Discover()
	if err != nil {
		t.Fatal(err)
	}
	var fpgas []Device
	for _, d := range inv.Devices {
		if d.Class == ClassFPGA {
			fpgas = append(fpgas, d)
		}
	}
	want := []struct {
		port, pci, iface, afu, features string
	}{
		{"dfl-port.0", "0000:08:00.0", "bfac4d851ee856fe8c95865ce1bbaa2d", "d8424dc4a4a3c413f89e433683f9040b", "0x14"},
		{"dfl-port.1", "0000:09:00.0", "ce48969398f05f33946d560708be108a", "f7df405cbd7acf7222f144b0b93acd18", "0x14,0x15"},
		{"dfl-port.2", "0000:0a:00.0", "11111111111111111111111111111111", "22222222222222222222222222222222", ""},
	}
	if len(fpgas) != len(want) {
		t.Fatalf("found %d FPGAs, want %d: %+v", len(fpgas), len(want), fpgas)
	}
	for i, w := range want {
		d := fpgas[i]
		if d.Name != itoa(i) || d.Aliases[0] != w.port || d.Driver != "dfl" || d.PCI != w.pci {
			t.Errorf("FPGA %d: name %s aliases %v driver %s pci %s, want %s %s", i, d.Name, d.Aliases, d.Driver, d.PCI, w.port, w.pci)
		}
		if len(d.Nodes) != 1 || d.Nodes[0].Path != "/dev/"+w.port {
			t.Errorf("FPGA %d nodes %+v", i, d.Nodes)
		}
		if d.Attrs["interface_id"] != w.iface || d.Attrs["afu_id"] != w.afu {
			t.Errorf("FPGA %d ids %v", i, d.Attrs)
		}
		// Feature ids come from the DFL bus, also for the port found
		// in class/fpga_region first.
		if d.Attrs["feature_ids"] != w.features {
			t.Errorf("FPGA %d feature_ids %q, want %q", i, d.Attrs["feature_ids"], w.features)
		}
	}
}

func itoa(i int) string { return string(rune('0' + i)) }
