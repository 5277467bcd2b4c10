package signature

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"testing"

	digest "github.com/opencontainers/go-digest"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/sign"
)

const testDigest = digest.Digest("sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b")

func testPayload(identity string, d digest.Digest) []byte {
	return []byte(`{"critical":{"identity":{"docker-reference":"` + identity + `"},"image":{"docker-manifest-digest":"` + d.String() + `"},"type":"cosign container image signature"},"optional":{"creator":"x"}}`)
}

// TestVerifyLegacyAlgorithms: cosign signs the legacy payload's sha256 with
// any kind of key.
func TestVerifyLegacyAlgorithms(t *testing.T) {
	payload := testPayload("registry.example/app", testDigest)
	h := sha256.Sum256(payload)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	p384Sig, _ := ecdsa.SignASN1(rand.Reader, p384, h[:])
	rsaSig, _ := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, h[:])
	edSig := ed25519.Sign(edPriv, payload)
	for _, tc := range []struct {
		desc string
		pub  crypto.PublicKey
		sig  []byte
	}{
		{desc: "ECDSA P-384", pub: &p384.PublicKey, sig: p384Sig},
		{desc: "RSA 2048", pub: &rsaKey.PublicKey, sig: rsaSig},
		{desc: "Ed25519", pub: edPub, sig: edSig},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			k, err := ParsePublicKey(pubPEM(t, tc.pub), "k")
			if err != nil {
				t.Fatal(err)
			}
			c := Candidate{Format: FormatLegacy, Source: "test", payload: payload, signature: tc.sig}
			id, err := c.Verify([]*PublicKey{k}, testDigest)
			if err != nil || id != "registry.example/app" {
				t.Fatalf("Verify: %q %v", id, err)
			}
			c.signature = append([]byte{}, tc.sig...)
			c.signature[len(c.signature)/2] ^= 1
			if _, err := c.Verify([]*PublicKey{k}, testDigest); !errors.Is(err, ErrWrongKey) {
				t.Fatalf("Verify of a flipped signature: %v, want ErrWrongKey", err)
			}
		})
	}
}

// keypair signs bundles with an ECDSA key of any curve.
type keypair struct {
	k *ecdsa.PrivateKey
	h crypto.Hash
}

func (k keypair) GetHashAlgorithm() protocommon.HashAlgorithm {
	if k.h == crypto.SHA384 {
		return protocommon.HashAlgorithm_SHA2_384
	}
	return protocommon.HashAlgorithm_SHA2_256
}
func (k keypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	if k.k.Curve == elliptic.P384() {
		return protocommon.PublicKeyDetails_PKIX_ECDSA_P384_SHA_384
	}
	return protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256
}
func (k keypair) GetHint() []byte                { return []byte("ignored-hint") }
func (k keypair) GetKeyAlgorithm() string        { return "ECDSA" }
func (k keypair) GetPublicKey() crypto.PublicKey { return &k.k.PublicKey }
func (k keypair) GetPublicKeyPem() (string, error) {
	der, err := x509.MarshalPKIXPublicKey(&k.k.PublicKey)
	return base64.StdEncoding.EncodeToString(der), err
}
func (k keypair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	hh := k.h.New()
	hh.Write(data)
	d := hh.Sum(nil)
	s, err := ecdsa.SignASN1(rand.Reader, k.k, d)
	return s, d, err
}

func bundleCandidate(t *testing.T, content sign.Content, kp sign.Keypair) Candidate {
	t.Helper()
	pb, err := sign.Bundle(content, kp, sign.BundleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundle.NewBundle(pb)
	if err != nil {
		t.Fatal(err)
	}
	return Candidate{Format: FormatBundle, Source: "test", bundle: b}
}

func statementFor(predicate, name string, d digest.Digest) []byte {
	n := ""
	if name != "" {
		n = `"name":"` + name + `",`
	}
	return []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{` + n + `"digest":{"sha256":"` + d.Encoded() + `"}}],"predicateType":"` + predicate + `","predicate":{}}`)
}

// TestVerifyBundle: key-based bundles as cosign v3 and cosign sign-blob
// make them, checked for the key, the digest and the statement.
func TestVerifyBundle(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key := func(k *ecdsa.PrivateKey) *PublicKey {
		pk, err := ParsePublicKey(pubPEM(t, &k.PublicKey), "k")
		if err != nil {
			t.Fatal(err)
		}
		return pk
	}
	dsse := func(payloadType string, stmt []byte) sign.Content {
		return &sign.DSSEData{Data: stmt, PayloadType: payloadType}
	}
	want, _ := hex.DecodeString(testDigest.Encoded())
	for _, tc := range []struct {
		desc     string
		content  sign.Content
		blob     []byte // a message signature over this digest instead of content
		kp       keypair
		keys     []*PublicKey
		identity string
		err      error
	}{
		{desc: "cosign v3", content: dsse(inTotoPayloadType, statementFor(cosignPredicateType, "", testDigest)), kp: keypair{p256, crypto.SHA256}, keys: []*PublicKey{key(p256)}},
		{desc: "subject name", content: dsse(inTotoPayloadType, statementFor(cosignPredicateType, "registry.example/app", testDigest)), kp: keypair{p256, crypto.SHA256}, keys: []*PublicKey{key(p256)}, identity: "registry.example/app"},
		{desc: "second of two keys, hint ignored", content: dsse(inTotoPayloadType, statementFor(cosignPredicateType, "", testDigest)), kp: keypair{p256, crypto.SHA256}, keys: []*PublicKey{key(other), key(p256)}},
		{desc: "P-384 with sha384", content: dsse(inTotoPayloadType, statementFor(cosignPredicateType, "", testDigest)), kp: keypair{p384, crypto.SHA384}, keys: []*PublicKey{key(p384)}},
		{desc: "P-384 with sha256", content: dsse(inTotoPayloadType, statementFor(cosignPredicateType, "", testDigest)), kp: keypair{p384, crypto.SHA256}, keys: []*PublicKey{key(p384)}},
		{desc: "other key", content: dsse(inTotoPayloadType, statementFor(cosignPredicateType, "", testDigest)), kp: keypair{other, crypto.SHA256}, keys: []*PublicKey{key(p256)}, err: ErrWrongKey},
		{desc: "no keys", content: dsse(inTotoPayloadType, statementFor(cosignPredicateType, "", testDigest)), kp: keypair{p256, crypto.SHA256}, err: ErrWrongKey},
		{desc: "other digest", content: dsse(inTotoPayloadType, statementFor(cosignPredicateType, "", digest.Digest("sha256:"+testDigest.Encoded()[1:]+"0"))), kp: keypair{p256, crypto.SHA256}, keys: []*PublicKey{key(p256)}, err: ErrDigestMismatch},
		{desc: "other predicate", content: dsse(inTotoPayloadType, statementFor("https://slsa.dev/provenance/v1", "", testDigest)), kp: keypair{p256, crypto.SHA256}, keys: []*PublicKey{key(p256)}, err: ErrMalformed},
		{desc: "other payload type", content: dsse("application/json", statementFor(cosignPredicateType, "", testDigest)), kp: keypair{p256, crypto.SHA256}, keys: []*PublicKey{key(p256)}, err: ErrMalformed},
		{desc: "payload not JSON", content: dsse(inTotoPayloadType, []byte("nope")), kp: keypair{p256, crypto.SHA256}, keys: []*PublicKey{key(p256)}, err: ErrMalformed},
		{desc: "sign-blob of the manifest", blob: want, kp: keypair{p256, crypto.SHA256}, keys: []*PublicKey{key(p256)}},
		{desc: "sign-blob of something else", blob: make([]byte, 32), kp: keypair{p256, crypto.SHA256}, keys: []*PublicKey{key(p256)}, err: ErrDigestMismatch},
		{desc: "sign-blob, other key", blob: want, kp: keypair{other, crypto.SHA256}, keys: []*PublicKey{key(p256)}, err: ErrWrongKey},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var c Candidate
			if tc.blob != nil {
				c = messageBundle(t, tc.kp.k, tc.blob)
			} else {
				c = bundleCandidate(t, tc.content, tc.kp)
			}
			id, err := c.Verify(tc.keys, testDigest)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) || id != tc.identity {
				t.Fatalf("Verify: %q %v, want %q %v", id, err, tc.identity, tc.err)
			}
			t.Log(err)
		})
	}
}

// messageBundle is a cosign sign-blob bundle of the manifest whose digest
// is d: a message signature over d (ECDSA signs the digest, so the manifest
// itself is not needed).
func messageBundle(t *testing.T, k *ecdsa.PrivateKey, d []byte) Candidate {
	t.Helper()
	sig, err := ecdsa.SignASN1(rand.Reader, k, d)
	if err != nil {
		t.Fatal(err)
	}
	pb := &protobundle.Bundle{
		MediaType: "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: "h"}},
		},
		Content: &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: d},
			Signature:     sig,
		}},
	}
	b, err := bundle.NewBundle(pb)
	if err != nil {
		t.Fatal(err)
	}
	return Candidate{Format: FormatBundle, Source: "test", bundle: b}
}

func TestVerifyZeroCandidate(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pk, err := ParsePublicKey(pubPEM(t, &k.PublicKey), "k")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []Candidate{{}, {Format: FormatBundle}, {Format: FormatLegacy}} {
		if _, err := c.Verify([]*PublicKey{pk}, testDigest); err == nil {
			t.Errorf("%+v verified", c)
		}
	}
}
