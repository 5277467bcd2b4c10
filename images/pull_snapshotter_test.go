package images

import (
	"testing"
)

// A pull for a runtime handler with a snapshotter of its own unpacks into
// that snapshotter, not the service's.
func TestPullWithSnapshotter(t *testing.T) {
	e := newEnv(t)
	reg := startRegistry(t, nil)
	s := e.service(t)

	reg.push("test/handler", "1", randomImage(t, 32<<10, 1))
	ref := reg.host + "/test/handler:1"
	got, err := s.Pull(e.ctx, ref, nil, WithPullSnapshotter("native"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := e.client.GetImage(e.ctx, got.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		snapshotter string
		want        bool
	}{{"native", true}, {DefaultSnapshotter, false}} {
		ok, err := img.IsUnpacked(e.ctx, tc.snapshotter)
		if err != nil {
			t.Fatal(err)
		}
		if ok != tc.want {
			t.Errorf("unpacked in %s = %v, want %v", tc.snapshotter, ok, tc.want)
		}
	}
}
