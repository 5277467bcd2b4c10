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
