package signature

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
)

// What cosign pushes.
const (
	simpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	signatureAnnotation    = "dev.cosignproject.cosign/signature"
	bundleArtifactType     = "application/vnd.dev.sigstore.bundle.v0.3+json"
	bundleMediaTypePrefix  = "application/vnd.dev.sigstore.bundle"
)

// Limits bound the work of a Fetch. Zero fields take the defaults.
type Limits struct {
	// MaxBlobSize bounds a payload or bundle (default 256 KiB).
	MaxBlobSize int64
	// MaxManifestSize bounds a signature manifest (default 1 MiB).
	MaxManifestSize int64
	// MaxCandidates bounds the signature entries looked at, usable or
	// not (default 32); the rest are counted in Found.Skipped.
	MaxCandidates int
}

// DefaultLimits are the limits of a Fetch without WithLimits.
var DefaultLimits = Limits{MaxBlobSize: 256 << 10, MaxManifestSize: 1 << 20, MaxCandidates: 32}

type fetchOptions struct {
	limits Limits
}

// FetchOption configures Fetch.
type FetchOption func(*fetchOptions)

// WithLimits sets the limits; zero fields keep the defaults.
func WithLimits(l Limits) FetchOption {
	return func(o *fetchOptions) {
		if l.MaxBlobSize > 0 {
			o.limits.MaxBlobSize = l.MaxBlobSize
		}
		if l.MaxManifestSize > 0 {
			o.limits.MaxManifestSize = l.MaxManifestSize
		}
		if l.MaxCandidates > 0 {
			o.limits.MaxCandidates = l.MaxCandidates
		}
	}
}

// Found is what Fetch gathered.
type Found struct {
	Candidates []Candidate
	// Skipped has one error per entry that was not usable, with its reason
	// (malformed, too big, over the candidate limit: how many were left
	// out).
	Skipped []error
}

// Fetch gathers the signatures of repo@dgst through resolver (a containerd
// resolver with the pull's hosts and credentials). repo is a normalized
// repository name without tag or digest ("127.0.0.1:5000/signed/app",
// "docker.io/library/busybox"). It reads the legacy cosign tag
// <repo>:sha256-<hex>.sig and the sigstore bundle referrers (the registry's
// referrers API, or the sha256-<hex> fallback tag). An absent tag or
// referrer list means no signatures of that kind; other registry errors are
// returned wrapped, keeping containerd's errdefs class.
func Fetch(ctx context.Context, resolver remotes.Resolver, repo string, dgst digest.Digest, opts ...FetchOption) (Found, error) {
	o := fetchOptions{limits: DefaultLimits}
	for _, opt := range opts {
		opt(&o)
	}
	if err := dgst.Validate(); err != nil {
		return Found{}, fmt.Errorf("image digest %q: %w", dgst, err)
	}
	f := &fetch{limits: o.limits, budget: o.limits.MaxCandidates}
	if err := f.legacy(ctx, resolver, repo, dgst); err != nil {
		return Found{}, err
	}
	if err := f.bundles(ctx, resolver, repo, dgst); err != nil {
		return Found{}, err
	}
	if f.over > 0 {
		f.found.Skipped = append(f.found.Skipped, fmt.Errorf("%d signature entries left out: over the limit of %d", f.over, o.limits.MaxCandidates))
	}
	return f.found, nil
}

type fetch struct {
	limits Limits
	budget int // entries still allowed
	over   int // entries left out
	found  Found
}

// take spends one entry of the budget; false when it is spent.
func (f *fetch) take() bool {
	if f.budget <= 0 {
		f.over++
		return false
	}
	f.budget--
	return true
}

func (f *fetch) skip(source string, err error) {
	f.found.Skipped = append(f.found.Skipped, fmt.Errorf("%s: %w", source, err))
}

// legacy reads <repo>:sha256-<hex>.sig.
func (f *fetch) legacy(ctx context.Context, resolver remotes.Resolver, repo string, dgst digest.Digest) error {
	ref := repo + ":" + dgst.Algorithm().String() + "-" + dgst.Encoded() + ".sig"
	name, desc, err := resolver.Resolve(ctx, ref)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("resolving %s: %w", ref, err)
	}
	fetcher, err := resolver.Fetcher(ctx, name)
	if err != nil {
		return fmt.Errorf("fetcher for %s: %w", ref, err)
	}
	if !isManifest(desc.MediaType) {
		f.skip(ref, fmt.Errorf("media type %q is not an image manifest: %w", desc.MediaType, ErrMalformed))
		return nil
	}
	raw, err := readBounded(ctx, fetcher, desc, f.limits.MaxManifestSize)
	if err != nil {
		return f.entryError(ref, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		f.skip(ref, fmt.Errorf("manifest: %v: %w", err, ErrMalformed))
		return nil
	}
	for i, l := range m.Layers {
		source := fmt.Sprintf("%s layer %d", ref, i)
		// Every layer spends the budget, so a manifest of thousands of
		// layers costs at most MaxCandidates entries in Skipped too.
		if !f.take() {
			continue
		}
		sigB64, ok := l.Annotations[signatureAnnotation]
		if !ok {
			f.skip(source, fmt.Errorf("no %s annotation: %w", signatureAnnotation, ErrMalformed))
			continue
		}
		if l.MediaType != simpleSigningMediaType {
			f.skip(source, fmt.Errorf("media type %q, want %q: %w", l.MediaType, simpleSigningMediaType, ErrMalformed))
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(sigB64)
		if err != nil {
			f.skip(source, fmt.Errorf("signature annotation: %v: %w", err, ErrMalformed))
			continue
		}
		payload, err := readBounded(ctx, fetcher, l, f.limits.MaxBlobSize)
		if err != nil {
			if err := f.entryError(source, err); err != nil {
				return err
			}
			continue
		}
		f.found.Candidates = append(f.found.Candidates, Candidate{Format: FormatLegacy, Source: source, payload: payload, signature: sig})
	}
	return nil
}

// bundles reads the sigstore bundle referrers of repo@dgst.
func (f *fetch) bundles(ctx context.Context, resolver remotes.Resolver, repo string, dgst digest.Digest) error {
	ref := repo + "@" + dgst.String()
	fetcher, err := resolver.Fetcher(ctx, ref)
	if err != nil {
		return fmt.Errorf("fetcher for %s: %w", ref, err)
	}
	rf, ok := fetcher.(remotes.ReferrersFetcher)
	if !ok {
		f.skip(ref, fmt.Errorf("the resolver cannot list referrers (%T): %w", fetcher, errdefs.ErrNotImplemented))
		return nil
	}
	descs, err := rf.FetchReferrers(ctx, dgst, remotes.WithReferrerArtifactTypes(bundleArtifactType))
	if err != nil {
		// containerd turns an absent list into an empty one; a NotFound
		// here is a list over its size limit.
		if errdefs.IsNotFound(err) {
			f.skip("referrers of "+ref, fmt.Errorf("%v: %w", err, ErrMalformed))
			return nil
		}
		return fmt.Errorf("referrers of %s: %w", ref, err)
	}
	seen := map[digest.Digest]bool{}
	for _, d := range descs {
		if seen[d.Digest] {
			continue
		}
		seen[d.Digest] = true
		source := "referrer " + d.Digest.String()
		if !f.take() {
			continue
		}
		if !isManifest(d.MediaType) {
			// Never followed: an index may list itself or others, without end.
			f.skip(source, fmt.Errorf("media type %q is not an image manifest (indexes are not followed): %w", d.MediaType, ErrMalformed))
			continue
		}
		c, err := f.bundle(ctx, fetcher, d, dgst)
		if err != nil {
			if err := f.entryError(source, err); err != nil {
				return err
			}
			continue
		}
		c.Source = source
		f.found.Candidates = append(f.found.Candidates, c)
	}
	return nil
}

// bundle reads one referrer manifest and its bundle layer.
func (f *fetch) bundle(ctx context.Context, fetcher remotes.Fetcher, desc ocispec.Descriptor, dgst digest.Digest) (Candidate, error) {
	raw, err := readBounded(ctx, fetcher, desc, f.limits.MaxManifestSize)
	if err != nil {
		return Candidate{}, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return Candidate{}, fmt.Errorf("manifest: %v: %w", err, ErrMalformed)
	}
	if m.ArtifactType != bundleArtifactType && m.Config.MediaType != bundleArtifactType {
		return Candidate{}, fmt.Errorf("artifact type %q, want %q: %w", m.ArtifactType, bundleArtifactType, ErrMalformed)
	}
	if m.Subject == nil || m.Subject.Digest != dgst {
		return Candidate{}, fmt.Errorf("manifest's subject is not %s: %w", dgst, ErrDigestMismatch)
	}
	if len(m.Layers) != 1 {
		return Candidate{}, fmt.Errorf("%d layers, want one bundle: %w", len(m.Layers), ErrMalformed)
	}
	l := m.Layers[0]
	if !strings.HasPrefix(l.MediaType, bundleMediaTypePrefix) || !strings.HasSuffix(l.MediaType, "+json") {
		return Candidate{}, fmt.Errorf("layer media type %q is not a sigstore bundle: %w", l.MediaType, ErrMalformed)
	}
	b, err := readBounded(ctx, fetcher, l, f.limits.MaxBlobSize)
	if err != nil {
		return Candidate{}, err
	}
	bdl, err := parseBundle(b)
	if err != nil {
		return Candidate{}, err
	}
	return Candidate{Format: FormatBundle, bundle: bdl}, nil
}

// parseBundle parses and validates a bundle's JSON.
func parseBundle(b []byte) (*bundle.Bundle, error) {
	var bdl bundle.Bundle
	if err := bdl.UnmarshalJSON(b); err != nil {
		// protojson puts a non-breaking space in its messages on purpose;
		// this one ends up in a pod's status, so it gets a plain one.
		return nil, fmt.Errorf("bundle: %s: %w", strings.ReplaceAll(err.Error(), "\u00a0", " "), ErrMalformed)
	}
	if bdl.Bundle == nil || bdl.VerificationMaterial == nil {
		return nil, fmt.Errorf("bundle has no verification material: %w", ErrMalformed)
	}
	return &bdl, nil
}

// entryError records err for one entry in Skipped when it is about the
// entry (malformed, too big, absent) and returns it when it is the
// registry's.
func (f *fetch) entryError(source string, err error) error {
	if errors.Is(err, ErrMalformed) || errors.Is(err, ErrDigestMismatch) || errdefs.IsNotFound(err) {
		f.skip(source, err)
		return nil
	}
	return fmt.Errorf("%s: %w", source, err)
}

func isManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == images.MediaTypeDockerSchema2Manifest
}

// readBounded fetches desc, refusing it unread when its descriptor says it
// is larger than max, reading at most its size and checking its digest.
func readBounded(ctx context.Context, fetcher remotes.Fetcher, desc ocispec.Descriptor, max int64) ([]byte, error) {
	if desc.Size < 0 || desc.Size > max {
		return nil, fmt.Errorf("%s of %d bytes, over the limit of %d: %w", desc.Digest, desc.Size, max, ErrMalformed)
	}
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("descriptor digest %q: %v: %w", desc.Digest, err, ErrMalformed)
	}
	rc, err := fetcher.Fetch(ctx, desc)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", desc.Digest, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, desc.Size+1))
	if errdefs.IsFailedPrecondition(err) {
		// containerd's reader stops a body longer than the descriptor.
		return nil, fmt.Errorf("%s: the registry sent more than the %d bytes of its descriptor (%v): %w", desc.Digest, desc.Size, err, ErrMalformed)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", desc.Digest, err)
	}
	switch {
	case int64(len(b)) > desc.Size:
		return nil, fmt.Errorf("%s: the registry sent more than the %d bytes of its descriptor: %w", desc.Digest, desc.Size, ErrMalformed)
	case int64(len(b)) < desc.Size:
		return nil, fmt.Errorf("%s: truncated, %d of %d bytes: %w", desc.Digest, len(b), desc.Size, ErrMalformed)
	}
	if got := desc.Digest.Algorithm().FromBytes(b); got != desc.Digest {
		return nil, fmt.Errorf("content digest %s does not match its descriptor's %s: %w", got, desc.Digest, ErrMalformed)
	}
	return b, nil
}
