package policy

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/accel-cri/accel-cri/images/signature"
	"github.com/accel-cri/accel-cri/images/signature/sigtest"
)

// TestEvaluate decides real signatures, made in the test by keys it
// generates and pushed to an in-process registry (with and without the
// referrers API), fetched through containerd's resolver.
func TestEvaluate(t *testing.T) {
	for _, referrers := range []bool{false, true} {
		t.Run(map[bool]string{false: "fallback-tag", true: "referrers-api"}[referrers], func(t *testing.T) {
			testEvaluate(t, referrers)
		})
	}
}

func testEvaluate(t *testing.T, referrers bool) {
	ctx := context.Background()
	srv := httptest.NewServer(sigtest.NewRegistry(referrers))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	trusted, err := sigtest.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	other, err := sigtest.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyPath, err := trusted.WritePublicKey(dir, "trusted.pub")
	if err != nil {
		t.Fatal(err)
	}
	// push makes a fresh image in repo and returns its digest.
	push := func(repo string) digest.Digest {
		t.Helper()
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		r, err := name.NewRepository(host + "/" + repo)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(r.Tag("1"), img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		return digest.Digest(d.String())
	}
	images := map[string]digest.Digest{}
	for _, repo := range []string{"legacy", "bundle", "unsigned", "otherkey", "wrongid", "otherdigest", "accept", "reject", "gpg"} {
		images[repo] = push(repo)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(trusted.SignLegacy(ctx, host+"/legacy", images["legacy"].String(), ""))
	must(trusted.SignBundle(ctx, host+"/bundle", images["bundle"].String()))
	must(other.SignLegacy(ctx, host+"/otherkey", images["otherkey"].String(), ""))
	must(other.SignBundle(ctx, host+"/otherkey", images["otherkey"].String()))
	must(trusted.SignLegacy(ctx, host+"/wrongid", images["wrongid"].String(), host+"/legacy"))
	// A trusted signature of another image, copied under this digest.
	payload := sigtest.LegacyPayload(host+"/otherdigest", images["legacy"].String())
	sig, err := trusted.SignPayload(payload)
	must(err)
	must(sigtest.PushLegacyRaw(ctx, host+"/otherdigest", images["otherdigest"].String(), payload, sig))

	p, err := Parse([]byte(`{"default":[{"type":"reject"}],"transports":{"docker":{
		"` + host + `": [{"type":"sigstoreSigned","keyPath":"` + keyPath + `","signedIdentity":{"type":"matchRepository"}}],
		"` + host + `/accept": [{"type":"insecureAcceptAnything"}],
		"` + host + `/reject": [{"type":"reject"}],
		"` + host + `/gpg": [{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k.gpg"}]
	}}}`))
	must(err)
	p.File = filepath.Join(dir, "policy.json")
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchAllHosts)),
	})
	for _, tc := range []struct {
		repo     string
		allowed  bool
		verified bool
		fetched  bool
		wantIs   error
		reason   string
		scope    string
	}{
		{repo: "legacy", allowed: true, verified: true, fetched: true, scope: host},
		{repo: "bundle", allowed: true, verified: true, fetched: true, scope: host},
		{repo: "unsigned", fetched: true, wantIs: ErrRejected, reason: "no signature found"},
		{repo: "otherkey", fetched: true, wantIs: ErrRejected, reason: "not signed by a trusted key (" + keyPath + ")"},
		{repo: "wrongid", fetched: true, wantIs: ErrRejected, reason: "identity mismatch"},
		{repo: "otherdigest", fetched: true, wantIs: ErrRejected, reason: "none for digest"},
		{repo: "accept", allowed: true, scope: host + "/accept"},
		{repo: "reject", wantIs: ErrRejected, reason: "rejects every image"},
		{repo: "gpg", wantIs: ErrRejected, reason: "GPG"},
	} {
		t.Run(tc.repo, func(t *testing.T) {
			ref, err := reference.ParseDockerRef(host + "/" + tc.repo + ":1")
			must(err)
			fetches := 0
			d := p.Evaluate(ctx, ref, images[tc.repo], func(ctx context.Context) (signature.Found, error) {
				fetches++
				return signature.Fetch(ctx, resolver, ref.Name(), images[tc.repo])
			})
			if d.Allowed != tc.allowed || d.Verified != tc.verified || (fetches == 1) != tc.fetched || fetches > 1 {
				t.Fatalf("decision %+v after %d fetches, want allowed %v verified %v fetched %v", d, fetches, tc.allowed, tc.verified, tc.fetched)
			}
			if d.File != p.File {
				t.Errorf("file %q", d.File)
			}
			if tc.scope != "" && d.Scope != tc.scope {
				t.Errorf("scope %q, want %q", d.Scope, tc.scope)
			}
			if tc.allowed {
				if d.Reason != nil {
					t.Errorf("allowed with reason %v", d.Reason)
				}
				if tc.verified && d.Signature == "" {
					t.Error("verified without naming the signature")
				}
				return
			}
			if !errors.Is(d.Reason, tc.wantIs) || !strings.Contains(d.Reason.Error(), tc.reason) {
				t.Errorf("reason %v, want %v containing %q", d.Reason, tc.wantIs, tc.reason)
			}
		})
	}

	t.Run("fetch-error", func(t *testing.T) {
		ref, _ := reference.ParseDockerRef(host + "/legacy:1")
		d := p.Evaluate(ctx, ref, images["legacy"], func(context.Context) (signature.Found, error) {
			return signature.Found{}, errors.New("registry down")
		})
		if d.Allowed || !errors.Is(d.Reason, ErrFetch) || !strings.Contains(d.Reason.Error(), "registry down") {
			t.Errorf("decision %+v", d)
		}
	})
	t.Run("matchRepoDigestOrExact-refuses-cosign-claims-by-tag", func(t *testing.T) {
		strict, err := Parse([]byte(`{"default":[{"type":"sigstoreSigned","keyPath":"` + keyPath + `"}]}`))
		must(err)
		ref, _ := reference.ParseDockerRef(host + "/legacy:1")
		d := strict.Evaluate(ctx, ref, images["legacy"], func(ctx context.Context) (signature.Found, error) {
			return signature.Fetch(ctx, resolver, ref.Name(), images["legacy"])
		})
		if d.Allowed || !strings.Contains(d.Reason.Error(), "use matchRepository") {
			t.Errorf("decision %+v", d)
		}
		// By digest, the repository claim is enough.
		byDigest, _ := reference.ParseDockerRef(host + "/legacy@" + images["legacy"].String())
		d = strict.Evaluate(ctx, byDigest, images["legacy"], func(ctx context.Context) (signature.Found, error) {
			return signature.Fetch(ctx, resolver, byDigest.Name(), images["legacy"])
		})
		if !d.Allowed {
			t.Errorf("by digest: %+v", d)
		}
	})
}
