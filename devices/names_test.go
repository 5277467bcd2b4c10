package devices

import (
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseQualifiedName(t *testing.T) {
	for _, tc := range []struct {
		desc, in            string
		vendor, class, name string
		wantErr             bool
	}{
		{desc: "qualified", in: "nvidia.com/gpu=0", vendor: "nvidia.com", class: "gpu", name: "0"},
		{desc: "colons and dots in the name", in: "accel-cri.io/fpga=port-0.1:a", vendor: "accel-cri.io", class: "fpga", name: "port-0.1:a"},
		{desc: "one-letter vendor", in: "a/gpu=0", wantErr: true},
		{desc: "one-letter class", in: "vendor.com/g=0", wantErr: true},
		{desc: "one-letter both", in: "a/b=c", wantErr: true},
		{desc: "path in the name", in: "vendor.com/gpu=../../etc", wantErr: true},
		{desc: "slash in the name", in: "vendor.com/gpu=a/b", wantErr: true},
		{desc: "no class", in: "vendor.com=0", wantErr: true},
		{desc: "empty", in: "", wantErr: true},
		{desc: "leading slash", in: "/gpu=0", wantErr: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			v, c, n, err := ParseQualifiedName(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil || v != tc.vendor || c != tc.class || n != tc.name {
				t.Fatalf("= %q %q %q %v", v, c, n, err)
			}
		})
	}
}

func TestNamesOneLetterAnnotation(t *testing.T) {
	// Before the check, cdi.ParseAnnotations panicked on this value.
	if _, err := Names(nil, map[string]string{"cdi.k8s.io/plugin": "vendor.com/gpu=0,a/b=c"}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("err = %v, want InvalidArgument", err)
	}
}
