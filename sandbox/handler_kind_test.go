package sandbox

import "testing"

// withKind gives a handler literal of a test the kind newHandler would.
func withKind(h *handler) *handler {
	h.kind = kindOf(h.runtimeType, h.binary, h.root)
	return h
}

func TestKindOf(t *testing.T) {
	for _, tc := range []struct {
		desc                  string
		typ, binary, root     string
		host, direct, ociRoot bool
	}{
		{"runc", RuntimeTypeRunc, "/usr/local/sbin/runc", "/state/runtimes/runc", true, true, true},
		{"crun", RuntimeTypeRunc, "crun", "/state/runtimes/crun", true, true, true},
		{"runsc under the runc.v2 shim", RuntimeTypeRunc, "/usr/bin/runsc", "/state/runtimes/gvisor", false, true, true},
		{"gVisor's shim", RuntimeTypeRunsc, "", "", false, false, false},
		{"Kata", RuntimeTypeKata, "", "", false, false, false},
		{"another shim", "io.containerd.example.v1", "", "", false, false, false},
	} {
		k := kindOf(tc.typ, tc.binary, tc.root)
		bin, root := k.ociState()
		if k.hostProcesses() != tc.host || k.directExec() != tc.direct || (root != "") != tc.ociRoot {
			t.Errorf("%s: hostProcesses %v directExec %v ociState %q %q; want %v %v root:%v",
				tc.desc, k.hostProcesses(), k.directExec(), bin, root, tc.host, tc.direct, tc.ociRoot)
		}
		if tc.ociRoot && (bin != tc.binary || root != tc.root) {
			t.Errorf("%s: ociState %q %q, want %q %q", tc.desc, bin, root, tc.binary, tc.root)
		}
	}
}
