package signature

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/sign"
)

// FuzzLegacyPayload: the simple-signing parser never panics, and what it
// accepts has a valid digest and cosign's type.
func FuzzLegacyPayload(f *testing.F) {
	f.Add(testPayload("registry.example/app", testDigest))
	f.Add([]byte(`{"critical":{"identity":{"docker-reference":""},"image":{"docker-manifest-digest":"sha256:x"},"type":"cosign container image signature"},"optional":null}`))
	f.Add([]byte(`{"critical":null}`))
	f.Add([]byte(`{"critical":{},"optional":{}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseLegacyPayload(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if p.digest.Validate() != nil {
			t.Fatalf("accepted invalid digest %q", p.digest)
		}
	})
}

// FuzzBundle: parsing and verifying arbitrary bundle JSON never panics
// and fails with one of the package's errors.
func FuzzBundle(f *testing.F) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	pb, err := sign.Bundle(&sign.DSSEData{Data: statementFor(cosignPredicateType, "", testDigest), PayloadType: inTotoPayloadType}, keypair{k, crypto.SHA256}, sign.BundleOptions{})
	if err != nil {
		f.Fatal(err)
	}
	b, err := bundle.NewBundle(pb)
	if err != nil {
		f.Fatal(err)
	}
	good, err := b.MarshalJSON()
	if err != nil {
		f.Fatal(err)
	}
	pemData := pubPEM(f, &k.PublicKey)
	key, err := ParsePublicKey(pemData, "k")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"x"}},"messageSignature":{"messageDigest":{"algorithm":"SHA2_256","digest":"AAAA"},"signature":"AAAA"}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		bdl, err := parseBundle(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		_, err = Candidate{Format: FormatBundle, Source: "fuzz", bundle: bdl}.Verify([]*PublicKey{key}, testDigest)
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrWrongKey) && !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("error %v wraps none of the package's errors", err)
		}
	})
}
