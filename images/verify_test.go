package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/accel-cri/accel-cri/images/policy"
)

func TestVerifiedName(t *testing.T) {
	d1 := digest.Digest("sha256:" + strings.Repeat("1", 64))
	d2 := digest.Digest("sha256:" + strings.Repeat("2", 64))
	img := Image{
		ID:          "sha256:" + strings.Repeat("c", 64),
		RepoTags:    []string{"r.io/a:1", "mirror.io/a:1"},
		RepoDigests: []string{"mirror.io/a@" + d2.String(), "r.io/a@" + d1.String()},
	}
	for _, tc := range []struct {
		desc, ref string
		img       Image
		wantRef   string
		wantDg    digest.Digest
		wantErr   string
	}{
		{desc: "tag: digest of the same repository", ref: "r.io/a:1", img: img, wantRef: "r.io/a:1", wantDg: d1},
		{desc: "digest reference keeps its digest", ref: "r.io/a@" + d2.String(), img: img, wantRef: "r.io/a@" + d2.String(), wantDg: d2},
		{desc: "image id: the first tag", ref: img.ID, img: img, wantRef: "r.io/a:1", wantDg: d1},
		{desc: "empty ref: the first tag", ref: "", img: img, wantRef: "r.io/a:1", wantDg: d1},
		{desc: "other repository: any digest of the image", ref: "other.io/b:2", img: img, wantRef: "other.io/b:2", wantDg: d2},
		{desc: "short name is normalized", ref: "busybox", img: Image{RepoDigests: []string{"docker.io/library/busybox@" + d1.String()}}, wantRef: "docker.io/library/busybox:latest", wantDg: d1},
		{desc: "no digest at all", ref: "r.io/a:1", img: Image{ID: "sha256:x", RepoTags: []string{"r.io/a:1"}}, wantErr: "no registry digest"},
		{desc: "no reference at all", ref: "sha256:" + strings.Repeat("c", 64), img: Image{ID: "sha256:x"}, wantErr: "no registry reference"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			named, dg, err := verifiedName(tc.ref, tc.img)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if named.String() != tc.wantRef || dg != tc.wantDg {
				t.Errorf("got %s %s, want %s %s", named, dg, tc.wantRef, tc.wantDg)
			}
		})
	}
}

func TestSignatureErrorAndResult(t *testing.T) {
	e := &SignatureError{Ref: "r.io/a:1", Digest: "sha256:ab", File: "/p.json", Scope: "r.io", Reason: fmt.Errorf("%w: scope \"r.io\" rejects every image", policy.ErrRejected)}
	want := `image r.io/a:1 (sha256:ab) refused by signature policy /p.json (scope "r.io"): rejected by signature policy: scope "r.io" rejects every image`
	if e.Error() != want {
		t.Errorf("message\n%s\nwant\n%s", e.Error(), want)
	}
	if !errors.Is(e, policy.ErrRejected) {
		t.Error("reason not unwrapped")
	}
	for _, tc := range []struct {
		d    policy.Decision
		want string
	}{
		{policy.Decision{Allowed: true, Verified: true}, ResultVerified},
		{policy.Decision{Allowed: true}, ResultAccepted},
		{policy.Decision{Reason: fmt.Errorf("x: %w", policy.ErrRejected)}, ResultRejected},
		{policy.Decision{Reason: fmt.Errorf("x: %w", policy.ErrFetch)}, ResultError},
		{policy.Decision{Reason: fmt.Errorf("x: %w", policy.ErrInvalid)}, ResultError},
	} {
		if got := resultOf(tc.d); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.d, got, tc.want)
		}
	}
}

// TestCheckSignatureWithoutDigest: an image that was never pulled from a
// registry runs where its scope accepts anything and is refused where a
// signature is required, without a registry request either way.
func TestCheckSignatureWithoutDigest(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("free.json", `{"default":[{"type":"insecureAcceptAnything"}]}`)
	write("strict.json", `{"default":[{"type":"reject"}],"transports":{"docker":{"r.io/open":[{"type":"insecureAcceptAnything"}]}}}`)
	s := &Service{opts: options{policy: policy.NewStore("", dir)}}
	imported := Image{ID: "sha256:" + strings.Repeat("c", 64), RepoTags: []string{"r.io/local:1"}}
	if err := s.CheckSignature(context.Background(), "free", "r.io/local:1", imported); err != nil {
		t.Errorf("accept-anything namespace: %v", err)
	}
	if err := s.CheckSignature(context.Background(), "none", "r.io/local:1", imported); err != nil {
		t.Errorf("namespace without a policy: %v", err)
	}
	var serr *SignatureError
	if err := s.CheckSignature(context.Background(), "strict", "r.io/local:1", imported); !errors.As(err, &serr) || !strings.Contains(err.Error(), "no registry digest") {
		t.Errorf("strict namespace: %v", err)
	}
	open := Image{ID: imported.ID, RepoTags: []string{"r.io/open/x:1"}}
	if err := s.CheckSignature(context.Background(), "strict", "r.io/open/x:1", open); err != nil {
		t.Errorf("strict namespace, open scope: %v", err)
	}
	if err := s.CheckSignature(context.Background(), "strict", imported.ID, Image{ID: imported.ID}); !errors.As(err, &serr) || !strings.Contains(err.Error(), "no registry reference") {
		t.Errorf("no reference: %v", err)
	}
}
