package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

func spec(ref string) *runtimeapi.ImageSpec { return &runtimeapi.ImageSpec{Image: ref} }

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// containerdImages lists the image records in accel-cri's containerd
// namespace, bypassing accel-cri's own index.
func containerdImages(t *testing.T, a *framework.AccelCRI) []string {
	t.Helper()
	c, err := containerd.New(filepath.Join(a.State, "containerd", "containerd.sock"), containerd.WithDefaultNamespace("accel-cri"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	imgs, err := c.ImageService().List(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range imgs {
		names = append(names, i.Name)
	}
	slices.Sort(names)
	return names
}

func TestImageService(t *testing.T) {
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	imgs := framework.PushTestImages(t, reg, "library/")
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{SandboxImage: imgs.Pause.Ref})
	ctx := ctxT(t, 5*time.Minute)

	var busyboxID string
	t.Run("pull by tag returns the id status and list report", func(t *testing.T) {
		ref, err := a.Images.PullImage(ctx, spec(imgs.Busybox.Ref), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := a.Images.ImageStatus(ctx, spec(imgs.Busybox.Ref), false)
		if err != nil || st.Image == nil {
			t.Fatalf("ImageStatus: %v %v", st, err)
		}
		if st.Image.Id != ref || !strings.HasPrefix(ref, "sha256:") {
			t.Fatalf("PullImage ref %q, ImageStatus id %q", ref, st.Image.Id)
		}
		if !slices.Contains(st.Image.RepoTags, imgs.Busybox.Ref) {
			t.Errorf("RepoTags %v lack %s", st.Image.RepoTags, imgs.Busybox.Ref)
		}
		if !slices.Contains(st.Image.RepoDigests, imgs.Busybox.DigestRef()) {
			t.Errorf("RepoDigests %v lack %s", st.Image.RepoDigests, imgs.Busybox.DigestRef())
		}
		if st.Image.Size == 0 || st.Image.Pinned {
			t.Errorf("size %d pinned %v", st.Image.Size, st.Image.Pinned)
		}
		list, err := a.Images.ListImages(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(list, func(i *runtimeapi.Image) bool { return i.Id == ref }) {
			t.Fatalf("ListImages lacks %s", ref)
		}
		busyboxID = ref
	})

	t.Run("pull again is idempotent", func(t *testing.T) {
		ref, err := a.Images.PullImage(ctx, spec(imgs.Busybox.Ref), nil, nil)
		if err != nil || ref != busyboxID {
			t.Fatalf("second pull: %q %v (want %q)", ref, err, busyboxID)
		}
	})

	t.Run("status by id and by digest", func(t *testing.T) {
		for _, r := range []string{busyboxID, imgs.Busybox.DigestRef()} {
			st, err := a.Images.ImageStatus(ctx, spec(r), false)
			if err != nil || st.Image == nil || st.Image.Id != busyboxID {
				t.Fatalf("ImageStatus(%s) = %v, %v", r, st, err)
			}
		}
	})

	t.Run("verbose status", func(t *testing.T) {
		st, err := a.Images.ImageStatus(ctx, spec(imgs.Busybox.Ref), true)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(st.Info["info"], `"chainID":"sha256:`) || !strings.Contains(st.Info["info"], `"imageSpec"`) {
			t.Fatalf("verbose info = %v", st.Info)
		}
	})

	t.Run("absent image is an empty answer", func(t *testing.T) {
		st, err := a.Images.ImageStatus(ctx, spec(reg.Host()+"/library/absent:1"), false)
		if err != nil || st.Image != nil {
			t.Fatalf("ImageStatus absent = %v, %v", st, err)
		}
	})

	t.Run("sandbox image is pinned", func(t *testing.T) {
		ref, err := a.Images.PullImage(ctx, spec(imgs.Pause.Ref), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := a.Images.ImageStatus(ctx, spec(ref), false)
		if err != nil || st.Image == nil || !st.Image.Pinned {
			t.Fatalf("pause status = %v, %v", st, err)
		}
		if st.Image.Uid.GetValue() != 65535 {
			t.Errorf("pause uid = %v, want 65535", st.Image.Uid)
		}
	})

	t.Run("list with filter and streaming list", func(t *testing.T) {
		list, err := a.Images.ListImages(ctx, &runtimeapi.ImageFilter{Image: spec(imgs.Busybox.Ref)})
		if err != nil || len(list) != 1 || list[0].Id != busyboxID {
			t.Fatalf("filtered list = %v, %v", list, err)
		}
		all, err := a.StreamingImages.ListImages(ctx, nil)
		if err != nil || len(all) != 2 {
			t.Fatalf("streamed list = %d images, %v (want busybox and pause)", len(all), err)
		}
	})

	t.Run("image fs info", func(t *testing.T) {
		fs, err := a.Images.ImageFsInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		u := fs.ImageFilesystems[0]
		if !strings.HasPrefix(u.FsId.Mountpoint, a.Root) || u.UsedBytes.Value < 1<<20 || u.InodesUsed.Value < 10 {
			t.Fatalf("ImageFsInfo = %v (root %s)", u, a.Root)
		}
	})

	t.Run("bad input changes nothing", func(t *testing.T) {
		before := containerdImages(t, a)
		cases := []struct {
			desc, ref string
			code      codes.Code
		}{
			{desc: "malformed ref", ref: "UPPER/Case::bad", code: codes.InvalidArgument},
			{desc: "empty ref", ref: "", code: codes.InvalidArgument},
			{desc: "unknown image", ref: reg.Host() + "/library/absent:1", code: codes.NotFound},
			{desc: "unknown tag", ref: reg.Host() + "/library/busybox:nope", code: codes.NotFound},
			{desc: "unreachable registry", ref: "127.0.0.1:1/library/busybox:latest", code: codes.Unavailable},
		}
		for _, tc := range cases {
			t.Run(tc.desc, func(t *testing.T) {
				_, err := a.Images.PullImage(ctx, spec(tc.ref), nil, nil)
				if status.Code(err) != tc.code {
					t.Fatalf("PullImage(%q): %v, want %v", tc.ref, err, tc.code)
				}
			})
		}
		if after := containerdImages(t, a); !slices.Equal(before, after) {
			t.Fatalf("image store changed:\nbefore %v\nafter  %v", before, after)
		}
	})

	t.Run("remove by tag removes every reference and is idempotent", func(t *testing.T) {
		fsBefore, err := a.Images.ImageFsInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Images.RemoveImage(ctx, spec(imgs.Busybox.Ref)); err != nil {
			t.Fatal(err)
		}
		// kubelet's image GC re-reads usage right after removing: it must be fresh.
		fsAfter, err := a.Images.ImageFsInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if b, a := fsBefore.ImageFilesystems[0].UsedBytes.Value, fsAfter.ImageFilesystems[0].UsedBytes.Value; a >= b {
			t.Fatalf("image fs usage after remove %d, before %d: want less", a, b)
		}
		for _, r := range []string{imgs.Busybox.Ref, busyboxID, imgs.Busybox.DigestRef()} {
			st, err := a.Images.ImageStatus(ctx, spec(r), false)
			if err != nil || st.Image != nil {
				t.Fatalf("after remove, ImageStatus(%s) = %v, %v", r, st.Image, err)
			}
		}
		for _, n := range containerdImages(t, a) {
			if strings.Contains(n, "busybox") || n == busyboxID {
				t.Fatalf("containerd still holds %s", n)
			}
		}
		if err := a.Images.RemoveImage(ctx, spec(imgs.Busybox.Ref)); err != nil {
			t.Fatalf("second remove: %v", err)
		}
	})

	t.Run("remove by id and by digest", func(t *testing.T) {
		for _, by := range []string{"id", "digest"} {
			id, err := a.Images.PullImage(ctx, spec(imgs.Busybox.Ref), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := id
			if by == "digest" {
				r = imgs.Busybox.DigestRef()
			}
			if err := a.Images.RemoveImage(ctx, spec(r)); err != nil {
				t.Fatalf("remove by %s: %v", by, err)
			}
			if st, _ := a.Images.ImageStatus(ctx, spec(imgs.Busybox.Ref), false); st.GetImage() != nil {
				t.Fatalf("remove by %s left the tag", by)
			}
		}
	})

	t.Run("index survives a restart", func(t *testing.T) {
		a.Restart(t)
		st, err := a.Images.ImageStatus(ctx, spec(imgs.Pause.Ref), false)
		if err != nil || st.Image == nil || !st.Image.Pinned {
			t.Fatalf("after restart: %v, %v", st, err)
		}
	})
}

func TestImagePullAuth(t *testing.T) {
	reg := framework.StartRegistry(t, framework.RegistryOptions{Username: "acri", Password: "s3cret-pw"})
	imgs := framework.PushTestImages(t, reg, "private/")
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{})
	ctx := ctxT(t, 5*time.Minute)

	cases := []struct {
		desc string
		auth *runtimeapi.AuthConfig
		code codes.Code
	}{
		{desc: "anonymous", auth: nil, code: codes.Unauthenticated},
		{desc: "wrong password", auth: &runtimeapi.AuthConfig{Username: "acri", Password: "wrong"}, code: codes.Unauthenticated},
		{desc: "bad base64 auth", auth: &runtimeapi.AuthConfig{Auth: "%%%"}, code: codes.InvalidArgument},
		{desc: "username and password", auth: &runtimeapi.AuthConfig{Username: "acri", Password: "s3cret-pw"}, code: codes.OK},
		{desc: "auth field", auth: &runtimeapi.AuthConfig{Auth: base64.StdEncoding.EncodeToString([]byte("acri:s3cret-pw"))}, code: codes.OK},
		{desc: "credentials for another server are not sent", auth: &runtimeapi.AuthConfig{Username: "acri", Password: "s3cret-pw", ServerAddress: "other.example"}, code: codes.Unauthenticated},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			// Start from an empty store so the pull must really authenticate.
			if err := a.Images.RemoveImage(ctx, spec(imgs.Busybox.Ref)); err != nil {
				t.Fatal(err)
			}
			ref, err := a.Images.PullImage(ctx, spec(imgs.Busybox.Ref), tc.auth, nil)
			if status.Code(err) != tc.code {
				t.Fatalf("PullImage: %v, want %v", err, tc.code)
			}
			if tc.code == codes.OK && !strings.HasPrefix(ref, "sha256:") {
				t.Fatalf("ref %q", ref)
			}
			if tc.code != codes.OK {
				if st, _ := a.Images.ImageStatus(ctx, spec(imgs.Busybox.Ref), false); st.GetImage() != nil {
					t.Fatal("failed pull left an image")
				}
			}
		})
	}
}

func TestImagePullMirror(t *testing.T) {
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	imgs := framework.PushTestImages(t, reg, "library/")
	// The upstream server is a closed local port, so the pull can only
	// succeed through the mirror, and a failure never leaves the machine.
	hosts := fmt.Sprintf(`server = "http://127.0.0.1:1"

[host."http://%s"]
  capabilities = ["pull", "resolve"]
`, reg.Host())
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{RegistryHosts: map[string]string{"docker.io": hosts}})
	ctx := ctxT(t, 5*time.Minute)

	ref, err := a.Images.PullImage(ctx, spec("busybox"), nil, nil)
	if err != nil {
		t.Fatalf("pull through mirror: %v", err)
	}
	st, err := a.Images.ImageStatus(ctx, spec("docker.io/library/busybox:latest"), false)
	if err != nil || st.Image == nil || st.Image.Id != ref {
		t.Fatalf("status: %v %v", st, err)
	}
	if !slices.Contains(st.Image.RepoTags, "docker.io/library/busybox:latest") {
		t.Fatalf("RepoTags %v", st.Image.RepoTags)
	}
	if !strings.HasSuffix(st.Image.RepoDigests[0], "@"+imgs.Busybox.Digest) {
		t.Fatalf("RepoDigests %v, pushed digest %s", st.Image.RepoDigests, imgs.Busybox.Digest)
	}
}

// stallingProxy forwards to the registry but, for layer blobs, sends a few
// bytes and then nothing until the client gives up.
func stallingProxy(t *testing.T, target string) string {
	u, _ := url.Parse("http://" + target)
	rp := httputil.NewSingleHostReverseProxy(u)
	stop := make(chan struct{})
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method == http.MethodGet && strings.Contains(resp.Request.URL.Path, "/blobs/") && resp.ContentLength > 4096 {
			resp.Body = &stallingBody{r: resp.Body, left: 1024, stop: stop, ctx: resp.Request.Context()}
		}
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(func() { close(stop); srv.Close() })
	return strings.TrimPrefix(srv.URL, "http://")
}

type stallingBody struct {
	r    io.ReadCloser
	left int
	stop chan struct{}
	ctx  context.Context
}

func (b *stallingBody) Read(p []byte) (int, error) {
	if b.left > 0 {
		n, err := b.r.Read(p[:min(len(p), b.left)])
		b.left -= n
		return n, err
	}
	select {
	case <-b.stop:
	case <-b.ctx.Done():
	}
	return 0, io.ErrUnexpectedEOF
}

func (b *stallingBody) Close() error { return b.r.Close() }

func TestImagePullProgressTimeout(t *testing.T) {
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	framework.PushTestImages(t, reg, "library/")
	proxy := stallingProxy(t, reg.Host())
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{Config: "image_pull_progress_timeout = \"2s\"\n"})
	ctx := ctxT(t, 2*time.Minute)

	start := time.Now()
	_, err := a.Images.PullImage(ctx, spec(proxy+"/library/busybox:latest"), nil, nil)
	took := time.Since(start)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("stalled pull: %v, want DeadlineExceeded", err)
	}
	if took > 30*time.Second {
		t.Fatalf("stalled pull took %s to be cancelled (timeout 2s)", took)
	}
	if names := containerdImages(t, a); len(names) != 0 {
		t.Fatalf("stalled pull left image records %v", names)
	}
	t.Logf("stalled pull cancelled after %s: %v", took.Round(time.Millisecond), err)
}
