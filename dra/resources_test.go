package dra

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	"k8s.io/utils/ptr"

	"github.com/accel-cri/accel-cri/devices"
	"github.com/accel-cri/accel-cri/devices/devicetest"
)

const node = "node-a"

var (
	igpu = devicetest.DRMGPU{PCI: "0000:00:02.0", Vendor: "0x8086", Device: "0x4680", Driver: "i915", Card: 0, Render: 128,
		CardNum: devicetest.Null, RenderNum: devicetest.Null, NUMANode: "-1", Engines: []string{"rcs0", "bcs0", "vcs0", "vecs0"}}
	dgpu = devicetest.DRMGPU{PCI: "0000:03:00.0", Vendor: "0x8086", Device: "0x56a0", Driver: "xe", Card: 1, Render: 129,
		CardNum: devicetest.Null, RenderNum: devicetest.Null, NUMANode: "0", Engines: []string{"rcs", "bcs", "ccs"}}
	amd = devicetest.DRMGPU{PCI: "0000:05:00.0", Vendor: "0x1002", Device: "0x73bf", Driver: "amdgpu", Card: 2, Render: 130,
		CardNum: devicetest.Null, RenderNum: devicetest.Null, VRAM: 16 << 30, ModuleVersion: "6.10.5"}
	other = devicetest.DRMGPU{PCI: "0000:06:00.0", Vendor: "0x1a03", Device: "0x2000", Driver: "ast", Card: 3, Render: 131,
		CardNum: devicetest.Null, RenderNum: devicetest.Null}
	dfl = devicetest.DFLFPGA{Region: 0, Port: 0, PCI: "0000:08:00.0", InterfaceID: "bfac4d851ee856fe8c95865ce1bbaa2d",
		AFUID: "d8424dc4a4a3c413f89e433683f9040b", Num: devicetest.Null, PortFeatures: []string{"0x14"}, Class: true}
)

// nvidiaL4 is an NVIDIA GPU as NVML discovery fills it (devices' own tests
// check that against the go-nvml mock; its NVML option is not exported).
var nvidiaL4 = devices.Device{
	Class: devices.ClassNVIDIA, Name: "0", Aliases: []string{"GPU-8c8e1b34-0000-1111-2222-333344445555"},
	Vendor: "nvidia", Model: "NVIDIA L4", Driver: "nvidia", PCI: "00000000:41:00.0",
	UUID:          "GPU-8c8e1b34-0000-1111-2222-333344445555",
	Nodes:         []devices.Node{{HostPath: "/dev/nvidia0", Path: "/dev/nvidia0", Type: "c", Major: 195, Minor: 0}},
	DriverVersion: "535.104.05", Memory: 24 << 30, Media: &devices.Media{Encode: true, Decode: true},
	Health: devices.Healthy,
}

// fakeNode discovers a fake host with two Intel GPUs (the integrated one
// then unplugged: vanished, Unhealthy), an AMD GPU, another DRM device,
// a DFL FPGA, an intel-fpga FPGA and a static device, and adds the NVIDIA
// GPU. It returns the devices as devices.Manager.Devices gives them and the
// host.
func fakeNode(t *testing.T) ([]devices.Device, *devicetest.Host) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the fake host's device nodes need mknod (root)")
	}
	dir := t.TempDir()
	h := devicetest.NewHost(t, dir)
	for _, g := range []devicetest.DRMGPU{igpu, dgpu, amd, other} {
		h.AddDRMGPU(g)
	}
	h.AddDFLBusFPGA(dfl)
	h.AddOPAEFPGA(0, 1, "0x1234", "0x5678", devicetest.Null)
	h.Mknod("xilinx_u30", devicetest.Null, 0o600, 0)
	m := devices.New(devices.WithSysfsRoot(h.Sysfs), devices.WithDevRoot(h.Dev),
		devices.WithNVMLLibrary(filepath.Join(dir, "no-libnvidia-ml.so.1")), devices.WithLdCache(""),
		devices.WithCDIDir(filepath.Join(dir, "cdi")),
		devices.WithStatic(devices.StaticDevice{Name: "u30", Path: filepath.Join(h.Dev, "xilinx_u30")}))
	if err := m.Refresh(); err != nil {
		t.Fatal(err)
	}
	h.RemoveDRMGPU(igpu)
	if err := m.Refresh(); err != nil {
		t.Fatal(err)
	}
	return append(m.Devices(), nvidiaL4), h
}

func str(s string) resourceapi.DeviceAttribute {
	return resourceapi.DeviceAttribute{StringValue: ptr.To(s)}
}
func num(n int64) resourceapi.DeviceAttribute {
	return resourceapi.DeviceAttribute{IntValue: ptr.To(n)}
}
func ver(s string) resourceapi.DeviceAttribute {
	return resourceapi.DeviceAttribute{VersionValue: ptr.To(s)}
}
func yes(b bool) resourceapi.DeviceAttribute {
	return resourceapi.DeviceAttribute{BoolValue: ptr.To(b)}
}

type attrs = map[resourceapi.QualifiedName]resourceapi.DeviceAttribute

const (
	pciBusID = "resource.kubernetes.io/pciBusID"
	pcieRoot = "resource.kubernetes.io/pcieRoot"
	numaNode = "resource.kubernetes.io/numaNode"
)

func TestResources(t *testing.T) {
	devs, h := fakeNode(t)
	res, err := Resources(node, devs, WithSysfsRoot(h.Sysfs))
	if err != nil {
		t.Fatal(err)
	}
	unhealthy := []resourceapi.DeviceTaint{{Key: TaintUnhealthy, Value: "Unhealthy", Effect: resourceapi.DeviceTaintEffectNoSchedule}}
	memory := func(b int64) map[resourceapi.QualifiedName]resourceapi.DeviceCapacity {
		return map[resourceapi.QualifiedName]resourceapi.DeviceCapacity{CapacityMemory: {Value: *resource.NewQuantity(b, resource.BinarySI)}}
	}
	want := map[string][]resourceapi.Device{
		DriverGPU: {
			{Name: "gpu-0000-03-00-0", Attributes: attrs{
				AttrClass: str("intel-gpu"), AttrVendor: str("intel"), AttrModel: str("0x56a0"), AttrDriver: str("xe"),
				AttrCardMinor: num(1), AttrRenderMinor: num(129), AttrVideoEncode: yes(false), AttrVideoDecode: yes(false),
				pciBusID: str("0000:03:00.0"), pcieRoot: str("pci0000:00"), numaNode: num(0),
			}},
			{Name: "gpu-0000-05-00-0", Attributes: attrs{
				AttrClass: str("amd-gpu"), AttrVendor: str("amd"), AttrModel: str("0x73bf"), AttrDriver: str("amdgpu"),
				AttrDriverVersion: ver("6.10.5"), AttrCardMinor: num(2), AttrRenderMinor: num(130),
				pciBusID: str("0000:05:00.0"), pcieRoot: str("pci0000:00"),
			}, Capacity: memory(16 << 30)},
			{Name: "gpu-0000-06-00-0", Attributes: attrs{
				AttrClass: str("drm-gpu"), AttrVendor: str("0x1a03"), AttrModel: str("0x2000"), AttrDriver: str("ast"),
				AttrCardMinor: num(3), AttrRenderMinor: num(131),
				pciBusID: str("0000:06:00.0"), pcieRoot: str("pci0000:00"),
			}},
			{Name: "gpu-0000-41-00-0", Attributes: attrs{ // no sysfs entry: no pcieRoot
				AttrClass: str("gpu"), AttrVendor: str("nvidia"), AttrModel: str("NVIDIA L4"), AttrDriver: str("nvidia"),
				AttrDriverVersion: ver("535.104.5"), AttrUUID: str("GPU-8c8e1b34-0000-1111-2222-333344445555"),
				AttrNVIDIAMinor: num(0), AttrVideoEncode: yes(true), AttrVideoDecode: yes(true),
				pciBusID: str("0000:41:00.0"),
			}, Capacity: memory(24 << 30)},
			// Vanished: last, tainted, numa_node -1 gives no numaNode.
			{Name: "gpu-0000-00-02-0", Attributes: attrs{
				AttrClass: str("intel-gpu"), AttrVendor: str("intel"), AttrModel: str("0x4680"), AttrDriver: str("i915"),
				AttrCardMinor: num(0), AttrRenderMinor: num(128), AttrVideoEncode: yes(true), AttrVideoDecode: yes(true),
				pciBusID: str("0000:00:02.0"), pcieRoot: str("pci0000:00"),
			}, Taints: unhealthy},
		},
		DriverFPGA: {
			{Name: "fpga-0000-08-00-0-dfl-port-0", Attributes: attrs{
				AttrClass: str("fpga"), AttrVendor: str("intel"), AttrDriver: str("dfl"), AttrPort: str("dfl-port.0"),
				AttrInterfaceID: str(dfl.InterfaceID), AttrAFUID: str(dfl.AFUID), AttrFeatureIDs: str("0x14"),
				pciBusID: str("0000:08:00.0"), pcieRoot: str("pci0000:00"),
			}},
			{Name: "fpga-intel-fpga-port-1", Attributes: attrs{
				AttrClass: str("fpga"), AttrVendor: str("intel"), AttrDriver: str("intel-fpga"), AttrPort: str("intel-fpga-port.1"),
				AttrInterfaceID: str("0x1234"), AttrAFUID: str("0x5678"),
			}},
		},
		DriverStatic: {
			{Name: "static-u30", Attributes: attrs{
				AttrClass: str("device"), AttrVendor: str("static"), AttrName: str("u30"), AttrPath: str("/dev/xilinx_u30"),
			}},
		},
	}
	if len(res) != len(Drivers) {
		t.Errorf("drivers %v, want %v", keys(res), Drivers)
	}
	for driver, wantDevs := range want {
		pool, ok := res[driver].Pools[node]
		if !ok || len(res[driver].Pools) != 1 {
			t.Errorf("%s: pools %v, want one named %s", driver, keys(res[driver].Pools), node)
			continue
		}
		if len(pool.Slices) != 1 {
			t.Errorf("%s: %d slices, want 1", driver, len(pool.Slices))
			continue
		}
		if diff := cmp.Diff(wantDevs, pool.Slices[0].Devices); diff != "" {
			t.Errorf("%s devices (-want +got):\n%s", driver, diff)
		}
	}
	for driver, r := range res {
		checkValid(t, driver, r)
	}
}

// TestNamesStable: the Intel dGPU is accel-cri.io/intel-gpu=1 while the iGPU
// is there and =0 after it vanished and the node restarted (rediscovery
// without the vanished one); its DRA name does not change.
func TestNamesStable(t *testing.T) {
	devs, h := fakeNode(t)
	before, err := Resources(node, devs, WithSysfsRoot(h.Sysfs))
	if err != nil {
		t.Fatal(err)
	}
	m := devices.New(devices.WithSysfsRoot(h.Sysfs), devices.WithDevRoot(h.Dev),
		devices.WithNVMLLibrary(filepath.Join(h.Root, "none.so")), devices.WithLdCache(""), devices.WithCDIDir(""),
		devices.WithStatic(devices.StaticDevice{Name: "u30", Path: filepath.Join(h.Dev, "xilinx_u30")}))
	inv, err := m.Discover()
	if err != nil {
		t.Fatal(err)
	}
	var cdi []string
	for _, d := range inv.Devices {
		cdi = append(cdi, d.CDIName())
	}
	if !strings.Contains(strings.Join(cdi, " "), "accel-cri.io/intel-gpu=0") || len(inv.Devices) != len(devs)-2 {
		t.Fatalf("rediscovery found %v", cdi)
	}
	after, err := Resources(node, append(inv.Devices, nvidiaL4), WithSysfsRoot(h.Sysfs))
	if err != nil {
		t.Fatal(err)
	}
	names := func(res map[string]resourceslice.DriverResources) map[string]bool {
		out := map[string]bool{}
		for driver, r := range res {
			for _, s := range r.Pools[node].Slices {
				for _, d := range s.Devices {
					if len(d.Taints) == 0 {
						out[driver+"/"+d.Name] = true
					}
				}
			}
		}
		return out
	}
	if diff := cmp.Diff(names(before), names(after)); diff != "" {
		t.Errorf("healthy device names changed across a restart (-before +after):\n%s", diff)
	}
}

func TestSlices(t *testing.T) {
	gpus := func(n, unhealthy int) []devices.Device {
		var out []devices.Device
		for i := range n {
			d := devices.Device{Class: devices.ClassIntelGPU, Name: fmt.Sprint(i), PCI: fmt.Sprintf("0000:%02x:%02x.0", i/32, i%32), Health: devices.Healthy}
			if i < unhealthy {
				d.Health = devices.Unhealthy
			}
			out = append(out, d)
		}
		return out
	}
	for _, tc := range []struct {
		desc      string
		devs      []devices.Device
		want      []int
		firstName string
	}{
		{"no devices: one empty slice", nil, []int{0}, ""},
		{"130 healthy: 128 and 2", gpus(130, 0), []int{128, 2}, "gpu-0000-00-00-0"},
		{"130 with a taint: 64 at most", gpus(130, 1), []int{64, 64, 2}, "gpu-0000-00-01-0"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			res, err := Resources(node, tc.devs)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, s := range res[DriverGPU].Pools[node].Slices {
				got = append(got, len(s.Devices))
			}
			if !cmp.Equal(got, tc.want) {
				t.Errorf("slice sizes %v, want %v", got, tc.want)
			}
			if s := res[DriverGPU].Pools[node].Slices[0].Devices; tc.firstName != "" && s[0].Name != tc.firstName {
				t.Errorf("first device %s, want %s (healthy first)", s[0].Name, tc.firstName)
			}
			for driver, r := range res {
				if len(r.Pools[node].Slices) == 0 {
					t.Errorf("%s publishes no slice", driver)
				}
			}
		})
	}
}

func TestResourcesErrors(t *testing.T) {
	if _, err := Resources("", nil); err == nil {
		t.Error("no node name: no error")
	}
	twin := nvidiaL4
	twin.Name = "1"
	res, err := Resources(node, []devices.Device{nvidiaL4, twin, {Class: "tpu", Name: "0"}})
	if err == nil || !strings.Contains(err.Error(), "same name") || !strings.Contains(err.Error(), `class "tpu"`) {
		t.Errorf("error %v, want the duplicate and the unknown class", err)
	}
	if n := len(res[DriverGPU].Pools[node].Slices[0].Devices); n != 1 {
		t.Errorf("%d GPUs published, want the first of the twins", n)
	}
}

var cIdentifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// checkValid checks what the API server's validation would refuse in a
// driver's resources: device names (DNS labels, unique in the pool),
// attribute and capacity names, their number, value lengths, one value per
// attribute, taints.
func checkValid(t *testing.T, driver string, r resourceslice.DriverResources) {
	t.Helper()
	for pool, p := range r.Pools {
		seen := map[string]bool{}
		for _, s := range p.Slices {
			max := resourceapi.ResourceSliceMaxDevices
			for _, d := range s.Devices {
				if len(d.Taints) > 0 {
					max = resourceapi.ResourceSliceMaxDevicesWithAdvancedFeatures
				}
			}
			if len(s.Devices) > max {
				t.Errorf("%s/%s: %d devices in a slice, at most %d", driver, pool, len(s.Devices), max)
			}
			for _, d := range s.Devices {
				if errs := validation.IsDNS1123Label(d.Name); len(errs) > 0 || seen[d.Name] {
					t.Errorf("%s/%s: device name %q: %v (duplicate: %v)", driver, pool, d.Name, errs, seen[d.Name])
				}
				seen[d.Name] = true
				if n := len(d.Attributes) + len(d.Capacity); n > resourceapi.ResourceSliceMaxAttributesAndCapacitiesPerDevice {
					t.Errorf("%s: %d attributes and capacities", d.Name, n)
				}
				names := map[resourceapi.QualifiedName]bool{}
				for n := range d.Attributes {
					names[n] = true
				}
				for n := range d.Capacity {
					names[n] = true
				}
				for n := range names {
					domain, id, ok := strings.Cut(string(n), "/")
					if !ok {
						domain, id = "", domain
					}
					if !cIdentifier.MatchString(id) || len(id) > resourceapi.DeviceMaxIDLength {
						t.Errorf("%s: attribute name %q", d.Name, n)
					}
					if domain != "" && len(validation.IsDNS1123Subdomain(domain)) > 0 {
						t.Errorf("%s: attribute domain %q", d.Name, n)
					}
				}
				for n, a := range d.Attributes {
					set := 0
					for _, v := range []bool{a.IntValue != nil, a.BoolValue != nil, a.StringValue != nil, a.VersionValue != nil} {
						if v {
							set++
						}
					}
					if set != 1 {
						t.Errorf("%s: attribute %s has %d values", d.Name, n, set)
					}
					for _, s := range []*string{a.StringValue, a.VersionValue} {
						if s != nil && len(*s) > resourceapi.DeviceAttributeMaxValueLength {
							t.Errorf("%s: attribute %s longer than 64", d.Name, n)
						}
					}
				}
				for _, tn := range d.Taints {
					if len(validation.IsQualifiedName(tn.Key)) > 0 || len(validation.IsValidLabelValue(tn.Value)) > 0 || tn.Effect == "" {
						t.Errorf("%s: taint %+v", d.Name, tn)
					}
				}
			}
		}
	}
}

func keys[M ~map[string]V, V any](m M) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
