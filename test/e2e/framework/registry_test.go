package framework

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/accel-cri/accel-cri/hack/testimages"
)

// getManifestDigest pulls the manifest of ref back and returns its digest.
func getManifestDigest(ctx context.Context, ref string, opts ...remote.Option) (string, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", err
	}
	desc, err := remote.Get(r, append([]remote.Option{remote.WithContext(ctx)}, opts...)...)
	if err != nil {
		return "", err
	}
	return desc.Digest.String(), nil
}

func TestRegistryServesPushedImages(t *testing.T) {
	reg := StartRegistry(t, RegistryOptions{})
	if !strings.HasPrefix(reg.Host(), "127.0.0.1:") {
		t.Fatalf("Host() = %q, want 127.0.0.1:PORT", reg.Host())
	}
	imgs := PushTestImages(t, reg, "library/")
	if want := reg.Host() + "/library/busybox:latest"; imgs.Busybox.Ref != want {
		t.Errorf("busybox ref %q, want %q", imgs.Busybox.Ref, want)
	}
	if want := reg.Host() + "/library/pause:3.10"; imgs.Pause.Ref != want {
		t.Errorf("pause ref %q, want %q", imgs.Pause.Ref, want)
	}

	ctx := context.Background()
	for _, im := range []PushedImage{imgs.Busybox, imgs.Pause} {
		for _, ref := range []string{im.Ref, im.DigestRef()} {
			got, err := getManifestDigest(ctx, ref)
			if err != nil {
				t.Fatalf("get %s: %v", ref, err)
			}
			if got != im.Digest {
				t.Errorf("get %s: digest %s, pushed %s", ref, got, im.Digest)
			}
		}
	}

	// The pushed busybox is the one Busybox builds.
	bb, err := testimages.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := bb.Digest(); d.String() != imgs.Busybox.Digest {
		t.Errorf("pushed busybox %s, built %s", imgs.Busybox.Digest, d)
	}
}

func statusOf(t *testing.T, url, user, password string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestRegistryAuth(t *testing.T) {
	const user, password = "tester", "s3cret-pass"
	reg := StartRegistry(t, RegistryOptions{Username: user, Password: password})
	v2 := reg.URL() + "/v2/"
	if got := statusOf(t, v2, "", ""); got != http.StatusUnauthorized {
		t.Errorf("anonymous GET /v2/: %d, want 401", got)
	}
	if got := statusOf(t, v2, user, "wrong"); got != http.StatusUnauthorized {
		t.Errorf("wrong password GET /v2/: %d, want 401", got)
	}
	if got := statusOf(t, v2, "nobody", password); got != http.StatusUnauthorized {
		t.Errorf("wrong user GET /v2/: %d, want 401", got)
	}
	if got := statusOf(t, v2, user, password); got != http.StatusOK {
		t.Errorf("right password GET /v2/: %d, want 200", got)
	}

	ctx := context.Background()
	img, err := testimages.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Host() + "/auth/busybox:latest"
	if _, err := testimages.Push(ctx, img, ref); !isUnauthorized(err) {
		t.Errorf("anonymous push: %v, want 401", err)
	}
	if _, err := testimages.Push(ctx, img, ref, testimages.WithBasicAuth(user, "wrong")); !isUnauthorized(err) {
		t.Errorf("push with wrong password: %v, want 401", err)
	}
	digest, err := testimages.Push(ctx, img, ref, reg.RemoteOptions(ctx)...)
	if err != nil {
		t.Fatalf("push with credentials: %v", err)
	}
	if _, err := getManifestDigest(ctx, ref); !isUnauthorized(err) {
		t.Errorf("anonymous pull: %v, want 401", err)
	}
	got, err := getManifestDigest(ctx, ref, reg.RemoteOptions(ctx)...)
	if err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	if got != digest {
		t.Errorf("pulled %s, pushed %s", got, digest)
	}
}

func isUnauthorized(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusUnauthorized
}

// TestRegistryCleanup checks that the registry process and its directory are
// gone once the test that started it has finished.
func TestRegistryCleanup(t *testing.T) {
	var reg *Registry
	t.Run("start", func(t *testing.T) {
		reg = StartRegistry(t, RegistryOptions{})
	})
	if reg == nil {
		t.Fatal("no registry")
	}
	pid := reg.cmd.Process.Pid
	select {
	case <-reg.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("registry pid %d not stopped by cleanup", pid)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("registry pid %d: kill 0 = %v, want ESRCH", pid, err)
	}
	if _, err := os.Stat(reg.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("registry dir %s still there: %v", reg.Dir, err)
	}
	if _, err := http.Get(reg.URL() + "/v2/"); err == nil {
		t.Errorf("registry on %s still answers", reg.Host())
	}
}

func TestFreePort(t *testing.T) {
	p, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if p <= 0 || p > 65535 {
		t.Fatalf("FreePort() = %d", p)
	}
}

func TestDigestRef(t *testing.T) {
	for _, tc := range []struct{ ref, want string }{
		{"127.0.0.1:5000/library/busybox:latest", "127.0.0.1:5000/library/busybox@sha256:ab"},
		{"127.0.0.1:5000/library/busybox", "127.0.0.1:5000/library/busybox@sha256:ab"},
		{"127.0.0.1:5000/pause:3.10", "127.0.0.1:5000/pause@sha256:ab"},
	} {
		if got := (PushedImage{Ref: tc.ref, Digest: "sha256:ab"}).DigestRef(); got != tc.want {
			t.Errorf("DigestRef(%q) = %q, want %q", tc.ref, got, tc.want)
		}
	}
}
