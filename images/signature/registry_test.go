package signature_test

import (
	"context"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"

	"github.com/accel-cri/accel-cri/images/signature"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// TestDockerRegistry signs an image in Debian's docker-registry 2.8 (no
// referrers API, basic auth) with sigtest and reads both signatures back
// with Fetch through a containerd resolver holding the credentials. It
// starts a daemon: run it under flock /tmp/accel-e2e.lock.
func TestDockerRegistry(t *testing.T) {
	ctx := context.Background()
	reg := framework.StartRegistry(t, framework.RegistryOptions{Username: "sig", Password: "s3cret"})
	opts := reg.RemoteOptions(ctx)
	repo := reg.Host() + "/signed/app"
	r, err := name.NewRepository(repo)
	must(t, err)
	img, err := random.Image(256, 1)
	must(t, err)
	must(t, remote.Write(r.Tag("v1"), img, opts...))
	h, err := img.Digest()
	must(t, err)
	dgst := digest.Digest(h.String())

	s, key := newSigner(t)
	must(t, s.SignLegacy(ctx, repo, dgst.String(), "", opts...))
	must(t, s.SignBundle(ctx, repo, dgst.String(), opts...))
	// The registry has no referrers API: go-containerregistry kept the
	// fallback tag.
	if _, err := remote.Head(r.Tag("sha256-"+dgst.Encoded()), opts...); err != nil {
		t.Fatalf("fallback tag: %v", err)
	}

	found, err := signature.Fetch(ctx, credResolver(reg.Username, reg.Password), repo, dgst)
	must(t, err)
	if len(found.Candidates) != 2 || len(found.Skipped) != 0 {
		t.Fatalf("candidates %d, skipped %v; want 2, none", len(found.Candidates), found.Skipped)
	}
	formats := map[signature.Format]string{}
	for _, c := range found.Candidates {
		id, err := c.Verify([]*signature.PublicKey{key}, dgst)
		if err != nil {
			t.Fatalf("%s: %v", c.Source, err)
		}
		formats[c.Format] = id
	}
	if id, ok := formats[signature.FormatLegacy]; !ok || id != repo {
		t.Errorf("legacy identity %q (present %v), want %q", id, ok, repo)
	}
	if id, ok := formats[signature.FormatBundle]; !ok || id != "" {
		t.Errorf("bundle identity %q (present %v), want none", id, ok)
	}

	// Unsigned digest: nothing, no error. Wrong credentials: an error
	// that is not "no signatures".
	other, err := random.Image(64, 1)
	must(t, err)
	must(t, remote.Write(r.Tag("unsigned"), other, opts...))
	oh, _ := other.Digest()
	if f, err := signature.Fetch(ctx, credResolver(reg.Username, reg.Password), repo, digest.Digest(oh.String())); err != nil || len(f.Candidates)+len(f.Skipped) != 0 {
		t.Errorf("unsigned: %+v %v, want nothing", f, err)
	}
	if f, err := signature.Fetch(ctx, credResolver("nobody", "wrong"), repo, dgst); err == nil {
		t.Errorf("wrong credentials: %d candidates and no error", len(f.Candidates))
	} else {
		t.Logf("wrong credentials: %v", err)
	}
}

// credResolver is a containerd resolver for plain-HTTP 127.0.0.1 with
// basic credentials.
func credResolver(user, pass string) remotes.Resolver {
	return docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(
			docker.WithPlainHTTP(docker.MatchLocalhost),
			docker.WithAuthorizer(docker.NewDockerAuthorizer(docker.WithAuthCreds(func(string) (string, string, error) {
				return user, pass, nil
			})))),
	})
}
