package cri

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/accel-cri/accel-cri/images"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeImages records calls; handler tests check the wire translation only.
type fakeImages struct {
	imgs   map[string]images.Image
	pulls  []string
	auths  []*images.AuthConfig
	remove []string
}

func (f *fakeImages) Pull(_ context.Context, ref string, auth *images.AuthConfig, _ ...images.PullOption) (images.Image, error) {
	f.pulls = append(f.pulls, ref)
	f.auths = append(f.auths, auth)
	if img, ok := f.imgs[ref]; ok {
		return img, nil
	}
	return images.Image{}, fmt.Errorf("pull %s: %w", ref, errdefs.ErrNotFound)
}
func (f *fakeImages) Get(_ context.Context, ref string) (images.Image, error) {
	if img, ok := f.imgs[ref]; ok {
		return img, nil
	}
	return images.Image{}, errdefs.ErrNotFound
}
func (f *fakeImages) List(_ context.Context, filter string) ([]images.Image, error) {
	var out []images.Image
	for ref, img := range f.imgs {
		if filter == "" || filter == ref {
			out = append(out, img)
		}
	}
	return out, nil
}
func (f *fakeImages) Remove(_ context.Context, ref string) error {
	f.remove = append(f.remove, ref)
	return nil
}
func (f *fakeImages) FsUsage(context.Context) (images.FsUsage, error) {
	return images.FsUsage{Mountpoint: "/snap", UsedBytes: 10, InodesUsed: 2}, nil
}

func TestImageUser(t *testing.T) {
	tests := []struct {
		desc, user string
		uid        int64
		hasUID     bool
		name       string
	}{
		{desc: "empty", user: ""},
		{desc: "numeric", user: "1000", uid: 1000, hasUID: true},
		{desc: "numeric with group", user: "65535:65535", uid: 65535, hasUID: true},
		{desc: "root", user: "0", uid: 0, hasUID: true},
		{desc: "name", user: "app", name: "app"},
		{desc: "name with group", user: "app:staff", name: "app"},
		{desc: "negative is a name", user: "-1", name: "-1"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			uid, name := imageUser(tc.user)
			if (uid != nil) != tc.hasUID || (uid != nil && *uid != tc.uid) || name != tc.name {
				t.Fatalf("imageUser(%q) = %v, %q", tc.user, uid, name)
			}
		})
	}
}

func TestValidateImageRef(t *testing.T) {
	tests := []struct {
		desc, ref string
		ok        bool
	}{
		{desc: "plain", ref: "busybox", ok: true},
		{desc: "full", ref: "127.0.0.1:5000/library/busybox:latest", ok: true},
		{desc: "empty", ref: ""},
		{desc: "space", ref: "busy box"},
		{desc: "nul", ref: "busybox\x00"},
		{desc: "invalid utf8", ref: "busybox\xff"},
		{desc: "huge", ref: strings.Repeat("a", maxRefLen+1)},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			err := validateImageRef("image", tc.ref)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v", err)
			}
			if err != nil && status.Code(ToStatus(err)) != codes.InvalidArgument {
				t.Fatalf("code = %v", status.Code(ToStatus(err)))
			}
		})
	}
}

func testServer() (*Server, *fakeImages) {
	img := images.Image{
		ID:          "sha256:abc",
		RepoTags:    []string{"docker.io/library/busybox:latest"},
		RepoDigests: []string{"docker.io/library/busybox@sha256:def"},
		Size:        42,
		Spec:        ocispec.Image{Config: ocispec.ImageConfig{User: "1000:1000"}},
		ChainID:     "sha256:chain",
		Pinned:      true,
	}
	f := &fakeImages{imgs: map[string]images.Image{"busybox": img, "sha256:abc": img}}
	return NewServer(f, nil), f
}

func TestImageHandlers(t *testing.T) {
	ctx := context.Background()
	s, f := testServer()

	resp, err := s.PullImage(ctx, &runtimeapi.PullImageRequest{
		Image: &runtimeapi.ImageSpec{Image: "busybox"},
		Auth:  &runtimeapi.AuthConfig{Username: "u", Password: "p", RegistryToken: "t"},
	})
	if err != nil || resp.ImageRef != "sha256:abc" {
		t.Fatalf("PullImage = %v, %v", resp, err)
	}
	if a := f.auths[0]; a.Username != "u" || a.Password != "p" || a.RegistryToken != "t" {
		t.Fatalf("auth not passed through: %+v", a)
	}
	if _, err := s.PullImage(ctx, &runtimeapi.PullImageRequest{}); status.Code(ToStatus(err)) != codes.InvalidArgument {
		t.Fatalf("PullImage without image: %v", err)
	}
	if len(f.pulls) != 1 {
		t.Fatalf("invalid request reached the store: %v", f.pulls)
	}

	st, err := s.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.Image.Id != "sha256:abc" || st.Image.Uid.GetValue() != 1000 || !st.Image.Pinned || st.Image.Size != 42 {
		t.Fatalf("ImageStatus = %+v", st.Image)
	}
	if !strings.Contains(st.Info["info"], `"chainID":"sha256:chain"`) {
		t.Fatalf("verbose info = %v", st.Info)
	}
	absent, err := s.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "nothere"}})
	if err != nil || absent.Image != nil {
		t.Fatalf("absent image: %v, %v (want empty answer, no error)", absent, err)
	}

	list, err := s.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: "busybox"}}})
	if err != nil || len(list.Images) != 1 {
		t.Fatalf("ListImages = %v, %v", list, err)
	}

	if _, err := s.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{}); status.Code(ToStatus(err)) != codes.InvalidArgument {
		t.Fatalf("RemoveImage without image: %v", err)
	}

	fs, err := s.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil || fs.ImageFilesystems[0].FsId.Mountpoint != "/snap" || fs.ImageFilesystems[0].UsedBytes.Value != 10 {
		t.Fatalf("ImageFsInfo = %v, %v", fs, err)
	}
}
