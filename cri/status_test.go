package cri

import (
	"context"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/images"
	"github.com/accel-cri/accel-cri/sandbox"
)

// fakeHandlers is a Runtime with runtime handlers; every other method is
// the nil embedded interface (a test calling one panics).
type fakeHandlers struct {
	Runtime
	handlers     []sandbox.HandlerInfo
	snapshotters map[string]string
}

func (f *fakeHandlers) RuntimeReady(context.Context) error { return nil }
func (f *fakeHandlers) NetworkReady(context.Context) error { return nil }
func (f *fakeHandlers) Handlers() []sandbox.HandlerInfo    { return f.handlers }
func (f *fakeHandlers) HandlerSnapshotter(name string) (string, error) {
	if sn, ok := f.snapshotters[name]; ok {
		return sn, nil
	}
	return "", errdefs.ErrNotFound
}

// snapshotterImages records the snapshotter each pull asked for.
type snapshotterImages struct {
	fakeImages
	snapshotters []string
}

func (f *snapshotterImages) Pull(ctx context.Context, ref string, auth *images.AuthConfig, opts ...images.PullOption) (images.Image, error) {
	f.snapshotters = append(f.snapshotters, images.PullSnapshotter(opts...))
	return images.Image{ID: "sha256:abc"}, nil
}

func TestStatusHandlers(t *testing.T) {
	rt := &fakeHandlers{handlers: []sandbox.HandlerInfo{
		{Name: "", Features: sandbox.HandlerFeatures{RecursiveReadOnlyMounts: true}},
		{Name: "kata", Type: sandbox.RuntimeTypeKata},
		{Name: "runc", Features: sandbox.HandlerFeatures{RecursiveReadOnlyMounts: true, UserNamespaces: true}},
	}}
	s := NewServer(&fakeImages{}, rt)
	resp, err := s.Status(context.Background(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	hs := resp.GetRuntimeHandlers()
	if len(hs) != 3 || hs[0].GetName() != "" || !hs[0].GetFeatures().GetRecursiveReadOnlyMounts() ||
		hs[1].GetName() != "kata" || hs[1].GetFeatures().GetRecursiveReadOnlyMounts() ||
		hs[2].GetName() != "runc" || !hs[2].GetFeatures().GetUserNamespaces() {
		t.Errorf("handlers %v", hs)
	}
}

// RuntimeFeatures.mount_options is the node's promise: reported only when
// every handler applies bind mount options.
func TestStatusMountOptions(t *testing.T) {
	runc := sandbox.HandlerInfo{Name: "runc", Type: sandbox.RuntimeTypeRunc, Features: sandbox.HandlerFeatures{MountOptions: true}}
	def := runc
	def.Name = ""
	for _, tc := range []struct {
		desc     string
		handlers []sandbox.HandlerInfo
		want     bool
	}{
		{desc: "runc only", handlers: []sandbox.HandlerInfo{def, runc}, want: true},
		{desc: "runc and crun", handlers: []sandbox.HandlerInfo{def, {Name: "crun", Type: sandbox.RuntimeTypeRunc, Features: sandbox.HandlerFeatures{MountOptions: true}}, runc}, want: true},
		{desc: "runc and gVisor", handlers: []sandbox.HandlerInfo{def, runc, {Name: "runsc", Type: sandbox.RuntimeTypeRunc}}},
		{desc: "runc and Kata", handlers: []sandbox.HandlerInfo{def, {Name: "kata", Type: sandbox.RuntimeTypeKata}, runc}},
		{desc: "default without", handlers: []sandbox.HandlerInfo{{Name: "", Type: sandbox.RuntimeTypeKata}, {Name: "kata", Type: sandbox.RuntimeTypeKata}}},
		{desc: "no handlers"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			resp, err := NewServer(&fakeImages{}, &fakeHandlers{handlers: tc.handlers}).Status(context.Background(), &runtimeapi.StatusRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.GetFeatures().GetMountOptions(); got != tc.want {
				t.Errorf("features.mount_options = %v, want %v", got, tc.want)
			}
			if !resp.GetFeatures().GetSupplementalGroupsPolicy() {
				t.Error("features.supplemental_groups_policy lost")
			}
		})
	}
}

func TestPullImageRuntimeHandler(t *testing.T) {
	rt := &fakeHandlers{snapshotters: map[string]string{"kata": "devmapper"}}
	imgs := &snapshotterImages{}
	s := NewServer(imgs, rt)
	ctx := context.Background()
	for _, h := range []string{"", "kata"} {
		if _, err := s.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox", RuntimeHandler: h}}); err != nil {
			t.Fatalf("handler %q: %v", h, err)
		}
	}
	if len(imgs.snapshotters) != 2 || imgs.snapshotters[0] != "" || imgs.snapshotters[1] != "devmapper" {
		t.Errorf("snapshotters %q, want the default (\"\") then kata's", imgs.snapshotters)
	}
	_, err := s.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox", RuntimeHandler: "nope"}})
	if !errdefs.IsNotFound(err) || len(imgs.snapshotters) != 2 {
		t.Errorf("unknown handler: %v (pulls %d), want NotFound before any pull", err, len(imgs.snapshotters))
	}
}
