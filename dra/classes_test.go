package dra

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/dynamic-resource-allocation/cel"

	"github.com/accel-cri/accel-cri/devices"
)

const classesFile = "../deploy/dra/deviceclasses.yaml"

// decodeAll decodes the objects of a shipped manifest strictly (an unknown
// or misspelt field is an error) with the Kubernetes scheme.
func decodeAll(t *testing.T, file string) []runtime.Object {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	codec := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var out []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, _, err := codec.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v\n%s", file, err, doc)
		}
		out = append(out, obj)
	}
	return out
}

// deviceClasses are the shipped DeviceClasses.
func deviceClasses(t *testing.T) []*resourceapi.DeviceClass {
	t.Helper()
	var out []*resourceapi.DeviceClass
	for _, obj := range decodeAll(t, classesFile) {
		dc, ok := obj.(*resourceapi.DeviceClass)
		if !ok {
			t.Fatalf("%s: %T, want resource.k8s.io/v1 DeviceClass", classesFile, obj)
		}
		out = append(out, dc)
	}
	return out
}

// TestRBAC: deploy/dra/rbac.yaml grants the nodes exactly the claim status
// writes of accel-cri's drivers, and binds it to every node.
func TestRBAC(t *testing.T) {
	objs := decodeAll(t, "../deploy/dra/rbac.yaml")
	if len(objs) != 2 {
		t.Fatalf("%d objects, want a ClusterRole and its binding", len(objs))
	}
	role, ok1 := objs[0].(*rbacv1.ClusterRole)
	binding, ok2 := objs[1].(*rbacv1.ClusterRoleBinding)
	if !ok1 || !ok2 {
		t.Fatalf("%T, %T", objs[0], objs[1])
	}
	if binding.RoleRef.Name != role.Name || binding.RoleRef.Kind != "ClusterRole" || len(binding.Subjects) != 1 ||
		binding.Subjects[0].Kind != rbacv1.GroupKind || binding.Subjects[0].Name != "system:nodes" {
		t.Errorf("binding %+v of role %s", binding, role.Name)
	}
	var drivers []string
	for _, r := range role.Rules {
		if !slices.Equal(r.APIGroups, []string{"resource.k8s.io"}) || len(r.Resources) != 1 {
			t.Errorf("rule %+v", r)
		}
		switch r.Resources[0] {
		case "resourceclaims/status":
		case "resourceclaims/driver":
			drivers = r.ResourceNames
		default:
			t.Errorf("rule on %s: more than the claims' status", r.Resources[0])
		}
		for _, v := range r.Verbs {
			if v == "*" || v == "create" || v == "delete" {
				t.Errorf("verb %s on %s", v, r.Resources[0])
			}
		}
	}
	if !slices.Equal(drivers, Drivers) {
		t.Errorf("resourceclaims/driver for %v, want the drivers %v", drivers, Drivers)
	}
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// TestDeviceClasses compiles each shipped class's selectors with the CEL
// compiler the scheduler's allocator uses and evaluates them against every
// device accel-cri publishes for the fake node: each class must select
// exactly its devices (the vanished one included: taints are the
// scheduler's business, not the class's), and serve the device plugin's
// resource of the same devices.
func TestDeviceClasses(t *testing.T) {
	devs, h := fakeNode(t)
	res, err := Resources(node, devs, WithSysfsRoot(h.Sysfs))
	if err != nil {
		t.Fatal(err)
	}
	type published struct {
		driver string
		dev    resourceapi.Device
	}
	var all []published
	for _, driver := range Drivers {
		for _, s := range res[driver].Pools[node].Slices {
			for _, d := range s.Devices {
				all = append(all, published{driver, d})
			}
		}
	}
	gpus := []string{"gpu-0000-00-02-0", "gpu-0000-03-00-0", "gpu-0000-05-00-0", "gpu-0000-06-00-0", "gpu-0000-41-00-0"}
	want := map[string]struct {
		devices  []string
		resource string // extendedResourceName; "" for none
	}{
		"gpu.accel-cri.io":              {gpus, ""},
		"nvidia-gpu.accel-cri.io":       {[]string{"gpu-0000-41-00-0"}, devices.ResourceName(devices.ClassNVIDIA)},
		"intel-gpu.accel-cri.io":        {[]string{"gpu-0000-00-02-0", "gpu-0000-03-00-0"}, devices.ResourceName(devices.ClassIntelGPU)},
		"amd-gpu.accel-cri.io":          {[]string{"gpu-0000-05-00-0"}, devices.ResourceName(devices.ClassAMDGPU)},
		"drm-gpu.accel-cri.io":          {[]string{"gpu-0000-06-00-0"}, devices.ResourceName(devices.ClassDRMGPU)},
		"video-encode-gpu.accel-cri.io": {[]string{"gpu-0000-00-02-0", "gpu-0000-41-00-0"}, ""},
		"fpga.accel-cri.io":             {[]string{"fpga-0000-08-00-0-dfl-port-0", "fpga-intel-fpga-port-1"}, devices.ResourceName(devices.ClassFPGA)},
		"device.accel-cri.io":           {[]string{"static-u30"}, devices.ResourceName(devices.ClassStatic)},
	}
	classes := deviceClasses(t)
	var names []string
	for _, dc := range classes {
		names = append(names, dc.Name)
	}
	if diff := cmp.Diff(keys(want), names, cmp.Transformer("sort", func(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s })); diff != "" {
		t.Errorf("classes in %s (-want +got):\n%s", classesFile, diff)
	}
	compiler := cel.GetCompiler(cel.Features{})
	for _, dc := range classes {
		t.Run(dc.Name, func(t *testing.T) {
			w, ok := want[dc.Name]
			if !ok {
				t.Skip("not expected")
			}
			if got := derefOr(dc.Spec.ExtendedResourceName); got != w.resource {
				t.Errorf("extendedResourceName %q, want %q", got, w.resource)
			}
			if len(dc.Spec.Selectors) == 0 {
				t.Fatal("no selectors")
			}
			var progs []cel.CompilationResult
			for _, s := range dc.Spec.Selectors {
				if s.CEL == nil {
					t.Fatal("a selector without CEL")
				}
				r := compiler.CompileCELExpression(s.CEL.Expression, cel.Options{})
				if r.Error != nil {
					t.Fatalf("compile %q: %v", s.CEL.Expression, r.Error)
				}
				if r.MaxCost > resourceapi.CELSelectorExpressionMaxCost {
					t.Errorf("%q: estimated cost %d over the limit", s.CEL.Expression, r.MaxCost)
				}
				progs = append(progs, r)
			}
			var got []string
			for _, p := range all {
				in := cel.Device{Driver: p.driver, Attributes: p.dev.Attributes, Capacity: p.dev.Capacity,
					AllowMultipleAllocations: p.dev.AllowMultipleAllocations}
				match := true
				for _, prog := range progs {
					ok, _, err := prog.DeviceMatches(context.Background(), in)
					if err != nil {
						t.Errorf("%q on %s/%s: %v", prog.Expression, p.driver, p.dev.Name, err)
					}
					match = match && ok
				}
				if match {
					got = append(got, p.dev.Name)
				}
			}
			slices.Sort(got)
			if diff := cmp.Diff(w.devices, got); diff != "" {
				t.Errorf("selected devices (-want +got):\n%s", diff)
			}
		})
	}
}

func derefOr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
