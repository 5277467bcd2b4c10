package signature_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"

	"github.com/accel-cri/accel-cri/images/signature"
	"github.com/accel-cri/accel-cri/images/signature/sigtest"
)

// env is an in-process registry holding one image, app:v1.
type env struct {
	repo     string
	dgst     digest.Digest
	resolver remotes.Resolver

	mu       sync.Mutex
	requests []string          // "GET /v2/..." as served since the last fetch began
	fixed    map[string][]byte // path -> OCI index served instead of the registry's
}

func newEnv(t *testing.T, referrers bool) *env {
	t.Helper()
	e := &env{fixed: map[string][]byte{}}
	reg := sigtest.NewRegistry(referrers)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.requests = append(e.requests, r.Method+" "+r.URL.Path)
		body, fixed := e.fixed[r.URL.Path]
		e.mu.Unlock()
		if fixed {
			var mt struct {
				MediaType string `json:"mediaType"`
			}
			_ = json.Unmarshal(body, &mt)
			w.Header().Set("Content-Type", mt.MediaType)
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			if r.Method == http.MethodGet {
				_, _ = w.Write(body)
			}
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	e.repo = strings.TrimPrefix(srv.URL, "http://") + "/app"
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.NewRepository(e.repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r.Tag("v1"), img); err != nil {
		t.Fatal(err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	e.dgst = digest.Digest(h.String())
	e.resolver = docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchLocalhost)),
	})
	return e
}

// requested says whether the registry was asked for a path containing s.
func (e *env) requested(s string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.requests {
		if strings.Contains(r, s) {
			return true
		}
	}
	return false
}

func (e *env) countRequests() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.requests)
}

func (e *env) fetch(t *testing.T, opts ...signature.FetchOption) signature.Found {
	t.Helper()
	e.mu.Lock()
	e.requests = nil
	e.mu.Unlock()
	found, err := signature.Fetch(context.Background(), e.resolver, e.repo, e.dgst, opts...)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return found
}

// pushBlob pushes b and returns its descriptor.
func (e *env) pushBlob(t *testing.T, b []byte, mt string) v1.Descriptor {
	t.Helper()
	r, _ := name.NewRepository(e.repo)
	if err := remote.WriteLayer(r, static.NewLayer(b, types.MediaType(mt))); err != nil {
		t.Fatal(err)
	}
	h, n, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return v1.Descriptor{MediaType: types.MediaType(mt), Digest: h, Size: n}
}

type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// put pushes m (marshalled) as a manifest of media type mt to tag, or by
// digest when tag is "", and returns its digest.
func (e *env) put(t *testing.T, tag string, m any, mt types.MediaType) v1.Hash {
	t.Helper()
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ := v1.SHA256(bytes.NewReader(raw))
	r, _ := name.NewRepository(e.repo)
	var ref name.Reference = r.Digest(h.String())
	if tag != "" {
		ref = r.Tag(tag)
	}
	if err := remote.Put(ref, rawManifest{raw, mt}); err != nil {
		t.Fatal(err)
	}
	return h
}

func (e *env) legacyTag() string { return "sha256-" + e.dgst.Encoded() + ".sig" }

// putLegacy pushes a legacy .sig manifest with the given layers.
func (e *env) putLegacy(t *testing.T, layers []v1.Descriptor) {
	t.Helper()
	cfg := e.pushBlob(t, []byte("{}"), string(types.OCIConfigJSON))
	e.put(t, e.legacyTag(), map[string]any{
		"schemaVersion": 2, "mediaType": types.OCIManifestSchema1, "config": cfg, "layers": layers,
	}, types.OCIManifestSchema1)
}

func newSigner(t *testing.T) (*sigtest.Signer, *signature.PublicKey) {
	t.Helper()
	s, err := sigtest.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	k, err := signature.ParsePublicKey(s.PublicKeyPEM(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return s, k
}

const otherDigest = digest.Digest("sha256:0000000000000000000000000000000000000000000000000000000000000001")

// verdict is what Verify said of one candidate.
type verdict struct {
	format   signature.Format
	identity string
	err      error
}

// TestFetchVerify pushes signatures with sigtest and reads them back with
// Fetch and Verify, on a registry with the referrers API and on one
// without (the sha256-<hex> fallback tag).
func TestFetchVerify(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		desc        string
		sign        func(t *testing.T, e *env, s, other *sigtest.Signer)
		want        []verdict // in Fetch's order: legacy layers, then referrers
		wantSkipped []string  // substrings, one per Skipped entry
	}{
		{
			desc: "unsigned",
			sign: func(*testing.T, *env, *sigtest.Signer, *sigtest.Signer) {},
		},
		{
			desc: "legacy",
			sign: func(t *testing.T, e *env, s, _ *sigtest.Signer) {
				must(t, s.SignLegacy(ctx, e.repo, e.dgst.String(), ""))
			},
			want: []verdict{{format: signature.FormatLegacy, identity: "<repo>"}},
		},
		{
			desc: "bundle",
			sign: func(t *testing.T, e *env, s, _ *sigtest.Signer) {
				must(t, s.SignBundle(ctx, e.repo, e.dgst.String()))
			},
			want: []verdict{{format: signature.FormatBundle}},
		},
		{
			desc: "both, and another key's",
			sign: func(t *testing.T, e *env, s, other *sigtest.Signer) {
				must(t, other.SignLegacy(ctx, e.repo, e.dgst.String(), ""))
				must(t, s.SignLegacy(ctx, e.repo, e.dgst.String(), ""))
				must(t, s.SignBundle(ctx, e.repo, e.dgst.String()))
			},
			want: []verdict{
				{format: signature.FormatLegacy, err: signature.ErrWrongKey},
				{format: signature.FormatLegacy, identity: "<repo>"},
				{format: signature.FormatBundle},
			},
		},
		{
			desc: "other key",
			sign: func(t *testing.T, e *env, _, other *sigtest.Signer) {
				must(t, other.SignLegacy(ctx, e.repo, e.dgst.String(), ""))
				must(t, other.SignBundle(ctx, e.repo, e.dgst.String()))
			},
			want: []verdict{
				{format: signature.FormatLegacy, err: signature.ErrWrongKey},
				{format: signature.FormatBundle, err: signature.ErrWrongKey},
			},
		},
		{
			desc: "identity of another repository",
			sign: func(t *testing.T, e *env, s, _ *sigtest.Signer) {
				must(t, s.SignLegacy(ctx, e.repo, e.dgst.String(), "registry.example/other:v2"))
			},
			want: []verdict{{format: signature.FormatLegacy, identity: "registry.example/other:v2"}},
		},
		{
			desc: "signatures for another digest",
			sign: func(t *testing.T, e *env, s, _ *sigtest.Signer) {
				p := sigtest.LegacyPayload(e.repo, otherDigest.String())
				sig, err := s.SignPayload(p)
				must(t, err)
				must(t, sigtest.PushLegacyRaw(ctx, e.repo, e.dgst.String(), p, sig))
				b, err := s.BundleJSON(otherDigest.String())
				must(t, err)
				must(t, sigtest.PushBundleRaw(ctx, e.repo, e.dgst.String(), b))
			},
			want: []verdict{
				{format: signature.FormatLegacy, err: signature.ErrDigestMismatch},
				{format: signature.FormatBundle, err: signature.ErrDigestMismatch},
			},
		},
		{
			desc: "signed payloads that are not cosign's",
			sign: func(t *testing.T, e *env, s, _ *sigtest.Signer) {
				for _, p := range []string{
					"not json",
					`{"critical":{"identity":{"docker-reference":"x"},"image":{"docker-manifest-digest":"` + e.dgst.String() + `"},"type":"atomic container signature"},"optional":{}}`,
					`{"critical":{"identity":{"docker-reference":"x"},"image":{"docker-manifest-digest":"` + e.dgst.String() + `"},"type":"cosign container image signature","extra":1}}`,
					string(sigtest.LegacyPayload(e.repo, e.dgst.String())) + `{}`,
				} {
					sig, err := s.SignPayload([]byte(p))
					must(t, err)
					must(t, sigtest.PushLegacyRaw(ctx, e.repo, e.dgst.String(), []byte(p), sig))
				}
			},
			want: []verdict{
				{format: signature.FormatLegacy, err: signature.ErrMalformed},
				{format: signature.FormatLegacy, err: signature.ErrMalformed},
				{format: signature.FormatLegacy, err: signature.ErrMalformed},
				{format: signature.FormatLegacy, err: signature.ErrMalformed},
			},
		},
		{
			desc: "bad base64, bundles not JSON or truncated",
			sign: func(t *testing.T, e *env, s, _ *sigtest.Signer) {
				must(t, sigtest.PushLegacyRaw(ctx, e.repo, e.dgst.String(), sigtest.LegacyPayload(e.repo, e.dgst.String()), "!!not base64!!"))
				b, err := s.BundleJSON(e.dgst.String())
				must(t, err)
				must(t, sigtest.PushBundleRaw(ctx, e.repo, e.dgst.String(), []byte("not json")))
				must(t, sigtest.PushBundleRaw(ctx, e.repo, e.dgst.String(), b[:len(b)/2]))
			},
			wantSkipped: []string{"signature annotation", "bundle", "bundle"},
		},
	} {
		for _, referrers := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/referrers API %v", tc.desc, referrers), func(t *testing.T) {
				e := newEnv(t, referrers)
				s, key := newSigner(t)
				other, _ := newSigner(t)
				tc.sign(t, e, s, other)
				found := e.fetch(t)
				var got []verdict
				for _, c := range found.Candidates {
					id, err := c.Verify([]*signature.PublicKey{key}, e.dgst)
					got = append(got, verdict{format: c.Format, identity: id, err: err})
				}
				if len(got) != len(tc.want) {
					t.Fatalf("verdicts %+v (skipped %v), want %+v", got, found.Skipped, tc.want)
				}
				for i, w := range tc.want {
					if w.identity == "<repo>" {
						w.identity = e.repo
					}
					g := got[i]
					if g.format != w.format || g.identity != w.identity || !errors.Is(g.err, w.err) || (w.err == nil) != (g.err == nil) {
						t.Errorf("candidate %d (%s): got %s %q %v, want %s %q %v", i, found.Candidates[i].Source, g.format, g.identity, g.err, w.format, w.identity, w.err)
					}
				}
				if len(found.Skipped) != len(tc.wantSkipped) {
					t.Fatalf("skipped %v, want %d entries like %q", found.Skipped, len(tc.wantSkipped), tc.wantSkipped)
				}
				for i, w := range tc.wantSkipped {
					if !errors.Is(found.Skipped[i], signature.ErrMalformed) || !strings.Contains(found.Skipped[i].Error(), w) {
						t.Errorf("skipped %d: %v, want ErrMalformed about %q", i, found.Skipped[i], w)
					}
				}
			})
		}
	}
}

// TestFetchSizes: sizes are checked against descriptors before reading and
// reads are bounded when the registry sends something else.
func TestFetchSizes(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		size    func(real int64) int64
		fetched bool // whether the blob may be requested at all
		want    string
	}{
		{desc: "descriptor says 100 MiB", size: func(int64) int64 { return 100 << 20 }, want: "over the limit"},
		{desc: "registry sends more than the descriptor", size: func(int64) int64 { return 10 }, fetched: true, want: "more than"},
		{desc: "registry sends less than the descriptor", size: func(n int64) int64 { return n + 100 }, fetched: true, want: "truncated"},
		{desc: "negative size", size: func(int64) int64 { return -1 }, want: "over the limit"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			e := newEnv(t, false)
			s, _ := newSigner(t)
			p := bytes.Repeat([]byte(" "), 4096)
			p = append(sigtest.LegacyPayload(e.repo, e.dgst.String()), p...)
			sig, err := s.SignPayload(p)
			must(t, err)
			l := e.pushBlob(t, p, signatureSimpleSigning)
			l.Size = tc.size(l.Size)
			l.Annotations = map[string]string{"dev.cosignproject.cosign/signature": sig}
			e.putLegacy(t, []v1.Descriptor{l})
			found := e.fetch(t)
			if len(found.Candidates) != 0 || len(found.Skipped) != 1 || !errors.Is(found.Skipped[0], signature.ErrMalformed) || !strings.Contains(found.Skipped[0].Error(), tc.want) {
				t.Fatalf("found %d candidates, skipped %v; want one ErrMalformed about %q", len(found.Candidates), found.Skipped, tc.want)
			}
			if got := e.requested("GET /v2/app/blobs/" + l.Digest.String()); got != tc.fetched {
				t.Errorf("blob requested: %v, want %v", got, tc.fetched)
			}
		})
	}
	t.Run("manifest over MaxManifestSize", func(t *testing.T) {
		e := newEnv(t, false)
		s, _ := newSigner(t)
		must(t, s.SignLegacy(context.Background(), e.repo, e.dgst.String(), ""))
		found := e.fetch(t, signature.WithLimits(signature.Limits{MaxManifestSize: 16}))
		if len(found.Candidates) != 0 || len(found.Skipped) != 1 || !errors.Is(found.Skipped[0], signature.ErrMalformed) {
			t.Fatalf("found %d candidates, skipped %v; want one ErrMalformed", len(found.Candidates), found.Skipped)
		}
	})
	t.Run("bundle over MaxBlobSize", func(t *testing.T) {
		e := newEnv(t, true)
		s, _ := newSigner(t)
		must(t, s.SignBundle(context.Background(), e.repo, e.dgst.String()))
		found := e.fetch(t, signature.WithLimits(signature.Limits{MaxBlobSize: 100}))
		if len(found.Candidates) != 0 || len(found.Skipped) != 1 || !errors.Is(found.Skipped[0], signature.ErrMalformed) {
			t.Fatalf("found %d candidates, skipped %v; want one ErrMalformed", len(found.Candidates), found.Skipped)
		}
	})
}

const signatureSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"

// TestFetchBounded: a referrers list of thousands of entries costs at most
// MaxCandidates fetches, and nested indexes are never followed.
func TestFetchBounded(t *testing.T) {
	ctx := context.Background()
	t.Run("thousands of referrers", func(t *testing.T) {
		e := newEnv(t, false)
		s, key := newSigner(t)
		must(t, s.SignBundle(ctx, e.repo, e.dgst.String()))
		r, _ := name.NewRepository(e.repo)
		idx, err := remote.Referrers(r.Digest(e.dgst.String()))
		must(t, err)
		im, err := idx.IndexManifest()
		must(t, err)
		good := im.Manifests[0]
		const n = 5000
		entries := []v1.Descriptor{good}
		for i := range n - 1 {
			h := sha256.Sum256([]byte(fmt.Sprint(i)))
			entries = append(entries, v1.Descriptor{
				MediaType: types.OCIManifestSchema1, ArtifactType: sigtest.BundleMediaType, Size: 500,
				Digest: v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h)},
			})
		}
		// go-containerregistry's registry refuses an index of absent
		// manifests: serve the fallback tag from the test's handler.
		body, err := json.Marshal(map[string]any{
			"schemaVersion": 2, "mediaType": types.OCIImageIndex, "manifests": entries,
		})
		must(t, err)
		e.mu.Lock()
		e.fixed["/v2/app/manifests/sha256-"+e.dgst.Encoded()] = body
		e.mu.Unlock()
		found := e.fetch(t, signature.WithLimits(signature.Limits{MaxCandidates: 10}))
		if len(found.Candidates) != 1 {
			t.Fatalf("candidates %d, want 1", len(found.Candidates))
		}
		if _, err := found.Candidates[0].Verify([]*signature.PublicKey{key}, e.dgst); err != nil {
			t.Error(err)
		}
		// 9 absent manifests, then the count of the rest.
		if len(found.Skipped) != 10 || !strings.Contains(found.Skipped[9].Error(), fmt.Sprintf("%d signature entries left out", n-10)) {
			t.Errorf("skipped %d: last %v", len(found.Skipped), found.Skipped[len(found.Skipped)-1])
		}
		if got := e.countRequests(); got > 30 {
			t.Errorf("%d requests for a limit of 10 entries", got)
		}
	})
	t.Run("legacy manifest of thousands of layers", func(t *testing.T) {
		e := newEnv(t, false)
		const n = 5000
		layers := make([]map[string]any, n)
		for i := range layers {
			h := sha256.Sum256([]byte(fmt.Sprint(i)))
			layers[i] = map[string]any{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "size": 10, "digest": fmt.Sprintf("sha256:%x", h)}
		}
		body, err := json.Marshal(map[string]any{
			"schemaVersion": 2, "mediaType": types.OCIManifestSchema1,
			"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
			"layers": layers,
		})
		must(t, err)
		e.mu.Lock()
		e.fixed["/v2/app/manifests/sha256-"+e.dgst.Encoded()+".sig"] = body
		e.fixed[fmt.Sprintf("/v2/app/manifests/sha256:%x", sha256.Sum256(body))] = body
		e.mu.Unlock()
		found := e.fetch(t, signature.WithLimits(signature.Limits{MaxCandidates: 10}))
		// Layers without the signature annotation: 10 reasons, then the
		// count of the rest; nothing fetched for them.
		if len(found.Candidates) != 0 || len(found.Skipped) != 11 || !strings.Contains(found.Skipped[10].Error(), fmt.Sprintf("%d signature entries left out", n-10)) {
			t.Errorf("candidates %d, skipped %d: last %v", len(found.Candidates), len(found.Skipped), found.Skipped[len(found.Skipped)-1])
		}
		if got := e.countRequests(); got > 10 {
			t.Errorf("%d requests for a manifest without signatures", got)
		}
	})
	for _, referrers := range []bool{true, false} {
		t.Run(fmt.Sprintf("nested index, referrers API %v", referrers), func(t *testing.T) {
			e := newEnv(t, referrers)
			s, key := newSigner(t)
			must(t, s.SignBundle(ctx, e.repo, e.dgst.String()))
			r, _ := name.NewRepository(e.repo)
			idx, err := remote.Referrers(r.Digest(e.dgst.String()))
			must(t, err)
			im, err := idx.IndexManifest()
			must(t, err)
			h, err := sigtest.PushIndexReferrer(ctx, e.repo, e.dgst.String(), im.Manifests)
			must(t, err)
			found := e.fetch(t)
			if len(found.Candidates) != 1 {
				t.Fatalf("candidates %d, want 1 (skipped %v)", len(found.Candidates), found.Skipped)
			}
			if _, err := found.Candidates[0].Verify([]*signature.PublicKey{key}, e.dgst); err != nil {
				t.Error(err)
			}
			if len(found.Skipped) != 1 || !strings.Contains(found.Skipped[0].Error(), "not followed") {
				t.Errorf("skipped %v, want the index not followed", found.Skipped)
			}
			if e.requested("/manifests/" + h.String()) {
				t.Errorf("the nested index %s was fetched", h)
			}
		})
	}
}

// TestFetchRegistryErrors: errors of the registry other than not-found are
// returned with their class.
func TestFetchRegistryErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchLocalhost)),
	})
	repo := strings.TrimPrefix(srv.URL, "http://") + "/app"
	_, err := signature.Fetch(context.Background(), resolver, repo, otherDigest)
	if err == nil || errors.Is(err, signature.ErrMalformed) {
		t.Fatalf("Fetch from a failing registry: %v, want its error", err)
	}
	t.Log(err)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
