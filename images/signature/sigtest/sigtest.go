// Package sigtest signs images in a test registry the way cosign does, with
// a key made for the test, for tests of the packages that verify image
// signatures: the legacy cosign tag (<repo>:sha256-<hex>.sig) and the
// sigstore bundle v0.3 referrer cosign v3 pushes. It also pushes raw,
// possibly broken, signatures for bad-input tests. It must not be imported
// by non-test code.
//
//	s, _ := sigtest.NewSigner()
//	keyPath, _ := s.WritePublicKey(t.TempDir(), "cosign.pub")
//	_ = s.SignLegacy(ctx, "127.0.0.1:5000/app", "sha256:...", "")
//	_ = s.SignBundle(ctx, "127.0.0.1:5000/app", "sha256:...")
package sigtest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/sign"
)

// Media types and names cosign uses.
const (
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	SignatureAnnotation    = "dev.cosignproject.cosign/signature"
	BundleMediaType        = "application/vnd.dev.sigstore.bundle.v0.3+json"
	InTotoPayloadType      = "application/vnd.in-toto+json"
	CosignPredicateType    = "https://sigstore.dev/cosign/sign/v1"
	emptyMediaType         = "application/vnd.oci.empty.v1+json"
)

// Signer holds an ECDSA P-256 key made for one test.
type Signer struct {
	key *ecdsa.PrivateKey
}

// NewSigner makes a new key.
func NewSigner() (*Signer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Signer{key: k}, nil
}

// PublicKeyPEM is the public key as a PKIX "PUBLIC KEY" PEM block (cosign.pub).
func (s *Signer) PublicKeyPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(&s.key.PublicKey)
	if err != nil {
		panic(err) // a P-256 key always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// WritePublicKey writes PublicKeyPEM to dir/name (mode 0644) and returns its path.
func (s *Signer) WritePublicKey(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, s.PublicKeyPEM(), 0o644); err != nil {
		return "", err
	}
	return p, nil
}

// LegacyPayload is the simple-signing payload cosign signs for repo@dgst
// claiming identity.
func LegacyPayload(identity, dgst string) []byte {
	b, err := json.Marshal(map[string]any{
		"critical": map[string]any{
			"identity": map[string]string{"docker-reference": identity},
			"image":    map[string]string{"docker-manifest-digest": dgst},
			"type":     "cosign container image signature",
		},
		"optional": map[string]any{},
	})
	if err != nil {
		panic(err)
	}
	return b
}

// SignPayload is the base64 ECDSA signature over sha256(payload), as in the
// cosign signature annotation.
func (s *Signer) SignPayload(payload []byte) (string, error) {
	h := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, s.key, h[:])
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// SignLegacy pushes (appends to) the cosign legacy signature manifest
// <repo>:sha256-<hex>.sig for repo@dgst. identity "" means the repository
// itself (what cosign claims).
func (s *Signer) SignLegacy(ctx context.Context, repo string, dgst string, identity string, opts ...remote.Option) error {
	if identity == "" {
		identity = repo
	}
	payload := LegacyPayload(identity, dgst)
	sig, err := s.SignPayload(payload)
	if err != nil {
		return err
	}
	return PushLegacyRaw(ctx, repo, dgst, payload, sig, opts...)
}

// PushLegacyRaw appends a layer with payload and the signature annotation
// sigB64 to the legacy signature manifest <repo>:sha256-<hex>.sig.
func PushLegacyRaw(ctx context.Context, repo, dgst string, payload []byte, sigB64 string, opts ...remote.Option) error {
	r, err := name.NewRepository(repo)
	if err != nil {
		return err
	}
	opts = append(opts, remote.WithContext(ctx))
	tag := r.Tag(strings.Replace(dgst, ":", "-", 1) + ".sig")

	m := manifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1)}
	desc, err := remote.Get(tag, opts...)
	var terr *transport.Error
	switch {
	case err == nil:
		if err := json.Unmarshal(desc.Manifest, &m); err != nil {
			return fmt.Errorf("existing %s: %w", tag, err)
		}
	case errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound:
		cfg := []byte(`{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}`)
		if m.Config, err = pushBlob(r, cfg, string(types.OCIConfigJSON), opts); err != nil {
			return err
		}
	default:
		return err
	}
	l, err := pushBlob(r, payload, SimpleSigningMediaType, opts)
	if err != nil {
		return err
	}
	l.Annotations = map[string]string{SignatureAnnotation: sigB64}
	m.Layers = append(m.Layers, l)
	return putManifest(tag, m, opts)
}

// SignBundle pushes a sigstore bundle v0.3 referrer for repo@dgst as cosign
// v3 does: a DSSE envelope over an in-toto statement (predicate
// https://sigstore.dev/cosign/sign/v1, subject digest dgst, no name),
// verification material the public key's hint, no tlog entry nor timestamp.
// go-containerregistry keeps the fallback tag sha256-<hex> up to date when
// the registry lacks the referrers API.
func (s *Signer) SignBundle(ctx context.Context, repo string, dgst string, opts ...remote.Option) error {
	b, err := s.BundleJSON(dgst)
	if err != nil {
		return err
	}
	return PushBundleRaw(ctx, repo, dgst, b, opts...)
}

// BundleJSON is the bundle SignBundle pushes.
func (s *Signer) BundleJSON(dgst string) ([]byte, error) {
	alg, hexDigest, ok := strings.Cut(dgst, ":")
	if !ok {
		return nil, fmt.Errorf("digest %q has no algorithm", dgst)
	}
	stmt, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"digest": map[string]string{alg: hexDigest}}},
		"predicateType": CosignPredicateType,
		"predicate":     map[string]any{},
	})
	if err != nil {
		return nil, err
	}
	pb, err := sign.Bundle(&sign.DSSEData{Data: stmt, PayloadType: InTotoPayloadType}, keypair{s}, sign.BundleOptions{})
	if err != nil {
		return nil, err
	}
	bdl, err := bundle.NewBundle(pb)
	if err != nil {
		return nil, err
	}
	return bdl.MarshalJSON()
}

// PushBundleRaw pushes bundleJSON as a referrer of repo@dgst: a manifest of
// artifactType application/vnd.dev.sigstore.bundle.v0.3+json with that one
// layer.
func PushBundleRaw(ctx context.Context, repo, dgst string, bundleJSON []byte, opts ...remote.Option) error {
	r, err := name.NewRepository(repo)
	if err != nil {
		return err
	}
	opts = append(opts, remote.WithContext(ctx))
	subj, err := remote.Head(r.Digest(dgst), opts...)
	if err != nil {
		return fmt.Errorf("subject %s@%s: %w", repo, dgst, err)
	}
	cfg, err := pushBlob(r, []byte("{}"), emptyMediaType, opts)
	if err != nil {
		return err
	}
	l, err := pushBlob(r, bundleJSON, BundleMediaType, opts)
	if err != nil {
		return err
	}
	m := manifest{
		SchemaVersion: 2,
		MediaType:     string(types.OCIManifestSchema1),
		ArtifactType:  BundleMediaType,
		Config:        cfg,
		Layers:        []v1.Descriptor{l},
		Subject:       &v1.Descriptor{MediaType: subj.MediaType, Digest: subj.Digest, Size: subj.Size},
		Annotations: map[string]string{
			"dev.sigstore.bundle.content":       "dsse-envelope",
			"dev.sigstore.bundle.predicateType": CosignPredicateType,
		},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	h := sha256.Sum256(raw)
	return putManifest(r.Digest(fmt.Sprintf("sha256:%x", h)), m, opts)
}

// PushIndexReferrer pushes an image index listing entries as a referrer of
// repo@dgst with the bundle artifact type, for tests that readers never
// follow nested indexes, and returns its digest.
func PushIndexReferrer(ctx context.Context, repo, dgst string, entries []v1.Descriptor, opts ...remote.Option) (v1.Hash, error) {
	r, err := name.NewRepository(repo)
	if err != nil {
		return v1.Hash{}, err
	}
	opts = append(opts, remote.WithContext(ctx))
	subj, err := remote.Head(r.Digest(dgst), opts...)
	if err != nil {
		return v1.Hash{}, err
	}
	idx := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests:     entries,
		Subject:       &v1.Descriptor{MediaType: subj.MediaType, Digest: subj.Digest, Size: subj.Size},
	}
	raw, err := json.Marshal(struct {
		v1.IndexManifest
		ArtifactType string `json:"artifactType"`
	}{idx, BundleMediaType})
	if err != nil {
		return v1.Hash{}, err
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return v1.Hash{}, err
	}
	return h, remote.Put(r.Digest(h.String()), rawManifest{raw, types.OCIImageIndex}, opts...)
}

// manifest is an OCI image manifest with the 1.1 fields.
type manifest struct {
	SchemaVersion int64             `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        v1.Descriptor     `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Subject       *v1.Descriptor    `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

func putManifest(ref name.Reference, m manifest, opts []remote.Option) error {
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return remote.Put(ref, rawManifest{raw, types.MediaType(m.MediaType)}, opts...)
}

func pushBlob(r name.Repository, b []byte, mt string, opts []remote.Option) (v1.Descriptor, error) {
	if err := remote.WriteLayer(r, static.NewLayer(b, types.MediaType(mt)), opts...); err != nil {
		return v1.Descriptor{}, err
	}
	h, n, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: types.MediaType(mt), Digest: h, Size: n}, nil
}

// keypair is sign.Keypair over the Signer's key.
type keypair struct{ s *Signer }

func (k keypair) GetHashAlgorithm() protocommon.HashAlgorithm {
	return protocommon.HashAlgorithm_SHA2_256
}
func (k keypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256
}
func (k keypair) GetHint() []byte {
	der, _ := x509.MarshalPKIXPublicKey(&k.s.key.PublicKey)
	h := sha256.Sum256(der)
	return []byte(base64.StdEncoding.EncodeToString(h[:]))
}
func (k keypair) GetKeyAlgorithm() string          { return "ECDSA" }
func (k keypair) GetPublicKey() crypto.PublicKey   { return &k.s.key.PublicKey }
func (k keypair) GetPublicKeyPem() (string, error) { return string(k.s.PublicKeyPEM()), nil }
func (k keypair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	h := sha256.Sum256(data)
	sig, err := ecdsa.SignASN1(rand.Reader, k.s.key, h[:])
	return sig, h[:], err
}
