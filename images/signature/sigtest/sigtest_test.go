package sigtest

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestPush checks what SignLegacy and SignBundle leave in a registry with
// and without the referrers API (the signature package's tests verify them).
func TestPush(t *testing.T) {
	for _, tc := range []struct {
		desc      string
		referrers bool
	}{
		{desc: "referrers API", referrers: true},
		{desc: "fallback tag", referrers: false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ctx := context.Background()
			srv := httptest.NewServer(NewRegistry(tc.referrers))
			t.Cleanup(srv.Close)
			repo := strings.TrimPrefix(srv.URL, "http://") + "/app"
			img, err := random.Image(64, 1)
			if err != nil {
				t.Fatal(err)
			}
			r, _ := name.NewRepository(repo)
			if err := remote.Write(r.Tag("v1"), img); err != nil {
				t.Fatal(err)
			}
			d, _ := img.Digest()
			s, err := NewSigner()
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if err := s.SignLegacy(ctx, repo, d.String(), ""); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.SignBundle(ctx, repo, d.String()); err != nil {
				t.Fatal(err)
			}
			sig, err := remote.Get(r.Tag("sha256-" + d.Hex + ".sig"))
			if err != nil {
				t.Fatal(err)
			}
			var m manifest
			if err := json.Unmarshal(sig.Manifest, &m); err != nil {
				t.Fatal(err)
			}
			if len(m.Layers) != 2 || m.Layers[1].Annotations[SignatureAnnotation] == "" {
				t.Errorf("legacy manifest %s: want 2 signed layers", sig.Manifest)
			}
			idx, err := remote.Referrers(r.Digest(d.String()))
			if err != nil {
				t.Fatal(err)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			if len(im.Manifests) != 1 || im.Manifests[0].ArtifactType != BundleMediaType {
				t.Errorf("referrers %+v: want one bundle", im.Manifests)
			}
			_, err = remote.Head(r.Tag("sha256-" + d.Hex))
			if gotTag := err == nil; gotTag == tc.referrers {
				t.Errorf("fallback tag present %v with referrers API %v", gotTag, tc.referrers)
			}
		})
	}
}
