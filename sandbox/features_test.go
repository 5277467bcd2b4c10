package sandbox

import "testing"

func TestParseFeatures(t *testing.T) {
	tests := []struct {
		desc string
		in   string
		want HandlerFeatures
		err  bool
	}{
		{desc: "runc 1.1 (rro, no idmap)", in: `{"mountOptions":["ro","rro","bind"],"linux":{"namespaces":["user"]}}`, want: HandlerFeatures{RecursiveReadOnlyMounts: true}},
		{desc: "runc 1.2+ with idmap", in: `{"mountOptions":["rro"],"linux":{"mountExtensions":{"idmap":{"enabled":true}}}}`, want: HandlerFeatures{RecursiveReadOnlyMounts: true, UserNamespaces: true}},
		{desc: "idmap disabled", in: `{"mountOptions":[],"linux":{"mountExtensions":{"idmap":{"enabled":false}}}}`},
		{desc: "runc 1.5: rro, idmap and the bind mount flags", in: `{"mountOptions":["nodev","noexec","nosuid","ro","rro"],"linux":{"mountExtensions":{"idmap":{"enabled":true}}}}`,
			want: HandlerFeatures{RecursiveReadOnlyMounts: true, UserNamespaces: true, MountOptions: true}},
		{desc: "a runtime without nosuid", in: `{"mountOptions":["nodev","noexec","ro"]}`},
		{desc: "no mount options listed", in: `{"linux":{}}`},
		{desc: "garbage", in: `not json`, err: true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := parseFeatures([]byte(tc.in))
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("got %+v, %v", got, err)
			}
		})
	}
}

// The probe against the installed runc must agree with its version: the
// Debian runc 1.1 has rro but no idmapped mounts.
func TestProbeFeaturesRunc(t *testing.T) {
	f, err := probeFeatures("runc")
	if err != nil {
		t.Fatal(err)
	}
	if !f.RecursiveReadOnlyMounts || !f.MountOptions {
		t.Errorf("runc reports no rro or no nodev/noexec/nosuid support: %+v", f)
	}
	t.Logf("runc features: %+v", f)
}
