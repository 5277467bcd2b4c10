package signature

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	digest "github.com/opencontainers/go-digest"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	sigstoresig "github.com/sigstore/sigstore/pkg/signature"

	"github.com/accel-cri/accel-cri/internal/strictjson"
)

// Format is how a signature is stored in the registry.
type Format string

const (
	// FormatLegacy is cosign's tag <repo>:sha256-<hex>.sig, one
	// simple-signing payload per layer.
	FormatLegacy Format = "cosign-tag"
	// FormatBundle is a sigstore bundle attached as an OCI referrer.
	FormatBundle Format = "sigstore-bundle"
)

// What cosign writes.
const (
	legacyPayloadType   = "cosign container image signature"
	inTotoPayloadType   = "application/vnd.in-toto+json"
	cosignPredicateType = "https://sigstore.dev/cosign/sign/v1"
	inTotoStatementV1   = "https://in-toto.io/Statement/v1"
	inTotoStatementV01  = "https://in-toto.io/Statement/v0.1"
)

// Candidate is one signature found for a digest, not yet verified.
type Candidate struct {
	Format Format
	// Source says where it was found: "<repo>:sha256-<hex>.sig layer 1",
	// "referrer sha256:<manifest digest>".
	Source string

	payload   []byte // legacy: the simple-signing payload
	signature []byte // legacy: the decoded annotation
	bundle    *bundle.Bundle
}

// Verify checks that one of keys signed the candidate for dgst and returns
// the docker reference the signature claims ("" when it claims none, as
// cosign v3 bundles: then only the digest binds). Errors wrap ErrWrongKey,
// ErrDigestMismatch or ErrMalformed.
func (c Candidate) Verify(keys []*PublicKey, dgst digest.Digest) (string, error) {
	if len(keys) == 0 {
		return "", fmt.Errorf("%s: no keys to verify with: %w", c.Source, ErrWrongKey)
	}
	var (
		identity string
		err      error
	)
	switch c.Format {
	case FormatLegacy:
		identity, err = c.verifyLegacy(keys, dgst)
	case FormatBundle:
		identity, err = c.verifyBundle(keys, dgst)
	default:
		err = fmt.Errorf("unknown format %q: %w", c.Format, ErrMalformed)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", c.Source, err)
	}
	return identity, nil
}

func (c Candidate) verifyLegacy(keys []*PublicKey, dgst digest.Digest) (string, error) {
	signed := false
	for _, k := range keys {
		if k.legacy.VerifySignature(bytes.NewReader(c.signature), bytes.NewReader(c.payload)) == nil {
			signed = true
			break
		}
	}
	if !signed {
		return "", fmt.Errorf("no key of %s verifies the payload's signature: %w", sources(keys), ErrWrongKey)
	}
	p, err := parseLegacyPayload(c.payload)
	if err != nil {
		return "", err
	}
	if p.digest != dgst {
		return "", fmt.Errorf("payload signs %s, not %s: %w", p.digest, dgst, ErrDigestMismatch)
	}
	return p.identity, nil
}

type legacyPayload struct {
	identity string
	digest   digest.Digest
}

// parseLegacyPayload parses a simple-signing payload strictly (as
// containers/image does): the critical section has exactly its known
// fields, type is cosign's, the digest is valid; optional may hold anything.
func parseLegacyPayload(b []byte) (legacyPayload, error) {
	var top struct {
		Critical *json.RawMessage `json:"critical"`
		Optional *json.RawMessage `json:"optional"`
	}
	if err := strictjson.Unmarshal(b, &top); err != nil {
		return legacyPayload{}, fmt.Errorf("payload: %v: %w", err, ErrMalformed)
	}
	if top.Critical == nil {
		return legacyPayload{}, fmt.Errorf("payload has no critical section: %w", ErrMalformed)
	}
	var crit struct {
		Identity *struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image *struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type *string `json:"type"`
	}
	if err := strictjson.Unmarshal(*top.Critical, &crit); err != nil {
		return legacyPayload{}, fmt.Errorf("payload critical section: %v: %w", err, ErrMalformed)
	}
	switch {
	case crit.Type == nil || *crit.Type != legacyPayloadType:
		return legacyPayload{}, fmt.Errorf("payload type is not %q: %w", legacyPayloadType, ErrMalformed)
	case crit.Identity == nil:
		return legacyPayload{}, fmt.Errorf("payload has no critical.identity: %w", ErrMalformed)
	case crit.Image == nil:
		return legacyPayload{}, fmt.Errorf("payload has no critical.image: %w", ErrMalformed)
	}
	d, err := digest.Parse(crit.Image.DockerManifestDigest)
	if err != nil {
		return legacyPayload{}, fmt.Errorf("payload docker-manifest-digest %q: %v: %w", crit.Image.DockerManifestDigest, err, ErrMalformed)
	}
	return legacyPayload{identity: crit.Identity.DockerReference, digest: d}, nil
}

func (c Candidate) verifyBundle(keys []*PublicKey, dgst digest.Digest) (string, error) {
	if dgst.Algorithm() != digest.SHA256 || dgst.Validate() != nil {
		return "", fmt.Errorf("image digest %q is not a valid sha256 digest: %w", dgst, ErrDigestMismatch)
	}
	want, _ := hex.DecodeString(dgst.Encoded())
	if c.bundle == nil || c.bundle.Bundle == nil {
		return "", fmt.Errorf("no bundle: %w", ErrMalformed)
	}

	// What the bundle is (malformed otherwise), what verifies its
	// signature alone (sigstore-go needs an artifact for a message
	// signature: its own digest claim), and what it claims to sign.
	var (
		identity    string
		sigOnly     verify.ArtifactPolicyOption
		digestCheck error
	)
	switch content := c.bundle.Content.(type) {
	case *protobundle.Bundle_DsseEnvelope:
		env := content.DsseEnvelope
		if env.GetPayloadType() != inTotoPayloadType {
			return "", fmt.Errorf("DSSE payload type %q, want %q: %w", env.GetPayloadType(), inTotoPayloadType, ErrMalformed)
		}
		stmt, err := parseStatement(env.GetPayload())
		if err != nil {
			return "", err
		}
		sigOnly = verify.WithoutArtifactUnsafe()
		identity, digestCheck = stmt.subjectFor(dgst)
	case *protobundle.Bundle_MessageSignature:
		md := content.MessageSignature.GetMessageDigest()
		if md.GetAlgorithm() != protocommon.HashAlgorithm_SHA2_256 || len(md.GetDigest()) != sha256.Size {
			return "", fmt.Errorf("message signature without a sha256 digest: %w", ErrMalformed)
		}
		sigOnly = verify.WithArtifactDigest("sha256", md.GetDigest())
		if !bytes.Equal(md.GetDigest(), want) {
			digestCheck = fmt.Errorf("message signature is over sha256:%x, not %s: %w", md.GetDigest(), dgst, ErrDigestMismatch)
		}
	default:
		return "", fmt.Errorf("bundle holds neither a DSSE envelope nor a message signature: %w", ErrMalformed)
	}

	var signer sigstoresig.Verifier
	var lastErr error
	for _, k := range keys {
		for _, v := range k.bundle {
			if _, err := verifyWith(c.bundle, v, sigOnly); err != nil {
				lastErr = err
				continue
			}
			signer = v
			break
		}
		if signer != nil {
			break
		}
	}
	if signer == nil {
		return "", fmt.Errorf("no key of %s verifies the bundle (%v): %w", sources(keys), lastErr, ErrWrongKey)
	}
	if digestCheck != nil {
		return "", digestCheck
	}
	// The full check with the artifact digest, as sigstore-go means it.
	if _, err := verifyWith(c.bundle, signer, verify.WithArtifactDigest("sha256", want)); err != nil {
		return "", fmt.Errorf("bundle does not verify for %s: %v: %w", dgst, err, ErrDigestMismatch)
	}
	return identity, nil
}

// verifyWith runs sigstore-go's verification with v as the only trusted
// key (the bundle's key hint is ignored), no transparency log and no
// timestamps: a key signature needs neither.
func verifyWith(b *bundle.Bundle, v sigstoresig.Verifier, artifact verify.ArtifactPolicyOption) (*verify.VerificationResult, error) {
	key := root.NewExpiringKey(v, time.Time{}, time.Time{})
	tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return key, nil })
	ver, err := verify.NewVerifier(tm, verify.WithNoObserverTimestamps())
	if err != nil {
		return nil, err
	}
	return ver.Verify(b, verify.NewPolicy(artifact, verify.WithKey()))
}

type statement struct {
	Type          string `json:"_type"`
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
}

// parseStatement parses an in-toto statement and checks it is cosign's
// signature statement.
func parseStatement(b []byte) (statement, error) {
	var s statement
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("in-toto statement: %v: %w", err, ErrMalformed)
	}
	if s.Type != inTotoStatementV1 && s.Type != inTotoStatementV01 {
		return s, fmt.Errorf("in-toto statement type %q: %w", s.Type, ErrMalformed)
	}
	if s.PredicateType != cosignPredicateType {
		return s, fmt.Errorf("predicate type %q, want %q: %w", s.PredicateType, cosignPredicateType, ErrMalformed)
	}
	if len(s.Subject) == 0 {
		return s, fmt.Errorf("in-toto statement has no subject: %w", ErrMalformed)
	}
	return s, nil
}

// subjectFor returns the name of the subject with digest dgst.
func (s statement) subjectFor(dgst digest.Digest) (string, error) {
	var others []string
	for _, sub := range s.Subject {
		for alg, h := range sub.Digest {
			if alg == string(dgst.Algorithm()) && h == dgst.Encoded() {
				return sub.Name, nil
			}
			others = append(others, alg+":"+h)
		}
	}
	return "", fmt.Errorf("statement signs %v, not %s: %w", others, dgst, ErrDigestMismatch)
}

func sources(keys []*PublicKey) []string {
	s := make([]string, 0, len(keys))
	for _, k := range keys {
		s = append(s, k.Source)
	}
	return s
}
