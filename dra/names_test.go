package dra

import (
	"fmt"
	"hash/fnv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/accel-cri/accel-cri/devices"
)

func TestDeviceName(t *testing.T) {
	long := strings.Repeat("x", 80)
	for _, tc := range []struct {
		desc string
		dev  devices.Device
		want string
	}{
		{"DRM GPU by PCI address", devices.Device{Class: devices.ClassIntelGPU, Name: "1", PCI: "0000:03:00.0"}, "gpu-0000-03-00-0"},
		{"the index does not matter", devices.Device{Class: devices.ClassIntelGPU, Name: "0", PCI: "0000:03:00.0"}, "gpu-0000-03-00-0"},
		{"NVIDIA by PCI address when NVML has one", devices.Device{Class: devices.ClassNVIDIA, Name: "0", PCI: "00000000:41:00.0", UUID: "GPU-8C8E1B34-0000-1111-2222-333344445555"}, "gpu-0000-41-00-0"},
		{"NVIDIA by UUID without one", devices.Device{Class: devices.ClassNVIDIA, Name: "0", UUID: "GPU-8C8E1B34-0000-1111-2222-333344445555"}, "gpu-8c8e1b34-0000-1111-2222-333344445555"},
		{"MIG UUID", devices.Device{Class: devices.ClassNVIDIA, Name: "0", UUID: "MIG-8c8e1b34-0000-1111-2222-333344445555"}, "mig-8c8e1b34-0000-1111-2222-333344445555"},
		{"GPU with neither", devices.Device{Class: devices.ClassDRMGPU, Name: "2"}, "gpu-drm-gpu-2"},
		{"DFL port on a PCI device", devices.Device{Class: devices.ClassFPGA, Name: "0", PCI: "0000:08:00.0", Attrs: map[string]string{"port": "dfl-port.0"}}, "fpga-0000-08-00-0-dfl-port-0"},
		{"intel-fpga port without PCI address", devices.Device{Class: devices.ClassFPGA, Name: "1", Attrs: map[string]string{"port": "intel-fpga-port.1"}}, "fpga-intel-fpga-port-1"},
		{"static name that is a label", devices.Device{Class: devices.ClassStatic, Name: "u30"}, "static-u30"},
		{"static name changed to fit gets a hash", devices.Device{Class: devices.ClassStatic, Name: "u30_a"}, "static-u30-a-" + fnv32("u30_a")},
		{"its look-alike another hash", devices.Device{Class: devices.ClassStatic, Name: "u30.a"}, "static-u30-a-" + fnv32("u30.a")},
		{"static name in upper case only lowered", devices.Device{Class: devices.ClassStatic, Name: "U30"}, "static-u30"},
		{"long static name cut, with a hash", devices.Device{Class: devices.ClassStatic, Name: long}, "static-" + long[:63-len("static-")-9] + "-" + fnv32(long)},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got := DeviceName(tc.dev)
			if got != tc.want {
				t.Errorf("DeviceName = %q, want %q", got, tc.want)
			}
			if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
				t.Errorf("%q is no DNS label: %v", got, errs)
			}
		})
	}
}

func TestSemver(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"550.54.15", "550.54.15", true},
		{"535.104.05", "535.104.5", true}, // NVIDIA's zero-padded patch
		{"550.54", "550.54.0", true},
		{"6.10.5-k", "6.10.5-k", true}, // a DKMS build's own suffix is a pre-release
		{"1.0.0+build.3", "1.0.0+build.3", true},
		{"", "", false},
		{"5.15.0-01", "", false}, // numeric pre-release with a leading zero
		{"1.2.3.4", "", false},
		{"abc", "", false},
	} {
		got, ok := Semver(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Semver(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func fnv32(s string) string {
	h := fnv.New32a()
	h.Write([]byte(s))
	return fmt.Sprintf("%08x", h.Sum32())
}
