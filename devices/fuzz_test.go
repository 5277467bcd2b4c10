package devices

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"tags.cncf.io/container-device-interface/pkg/parser"
)

// FuzzCDINames checks the CDI names a container asks for (CRI cdi_devices
// and cdi.k8s.io/* annotations): Names fails only with InvalidArgument and
// returns each asked name once; Check over spec dirs without specs answers
// InvalidArgument for a malformed name and NotFound for a well-formed one;
// a name the parser accepts has no path separator or NUL in its device
// part and splits back into the same vendor, class and name.
func FuzzCDINames(f *testing.F) {
	f.Add("vendor.com/gpu=0", "cdi.k8s.io/plugin", "nvidia.com/gpu=all")
	f.Add("accel-cri.io/fpga=port-0.1:a", "cdi.k8s.io/x", "a/b=c,a/b=c")
	f.Add("vendor.com/gpu=../../etc", "cdi.k8s.io/x", "")
	f.Add("vendor.com/gpu=a/b", "not-cdi", "x")
	f.Add("/gpu=0", "cdi.k8s.io/", "=")
	dir := f.TempDir()
	inj, err := NewInjector([]string{dir})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, field, annKey, annValue string) {
		names, err := Names([]string{field}, map[string]string{annKey: annValue})
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("Names error %v is not InvalidArgument", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, n := range names {
			if seen[n] {
				t.Fatalf("%q listed twice in %q", n, names)
			}
			seen[n] = true
		}
		if !seen[field] {
			t.Fatalf("field name %q missing from %q", field, names)
		}
		for _, n := range names {
			err := inj.Check([]string{n})
			vendor, class, name, perr := ParseQualifiedName(n)
			if perr != nil {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("Check(%q) = %v, want InvalidArgument (%v)", n, err, perr)
				}
				continue
			}
			if !errdefs.IsNotFound(err) {
				t.Fatalf("Check(%q) = %v, want NotFound", n, err)
			}
			if strings.ContainsAny(name, "/\x00") || strings.ContainsAny(class, "/\x00") || strings.ContainsAny(vendor, "/\x00") {
				t.Fatalf("accepted CDI name %q: vendor %q class %q name %q", n, vendor, class, name)
			}
			if parser.QualifiedName(vendor, class, name) != n {
				t.Fatalf("%q splits into %q %q %q, which join to %q", n, vendor, class, name, parser.QualifiedName(vendor, class, name))
			}
		}
	})
}
