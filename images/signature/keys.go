package signature

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"

	sigstoresig "github.com/sigstore/sigstore/pkg/signature"
)

// maxKeyFile bounds what LoadPublicKey reads.
const maxKeyFile = 64 << 10

// PublicKey is a trusted public key.
type PublicKey struct {
	// Source is where the key came from: its file path or "keyData".
	Source string

	key crypto.PublicKey
	// legacy verifies cosign's simple-signing signatures (sha256 digest
	// of the payload, whatever the key).
	legacy sigstoresig.Verifier
	// bundle verifies bundles: the key's default hash (sha256, sha384 for
	// P-384, sha512 for P-521), then sha256 when that differs.
	bundle []sigstoresig.Verifier
}

// ParsePublicKey parses exactly one PKIX "PUBLIC KEY" PEM block: ECDSA
// P-256/384/521, RSA of at least 2048 bits, or Ed25519. Errors wrap
// ErrBadKey and name source.
func ParsePublicKey(pemData []byte, source string) (*PublicKey, error) {
	block, rest := pem.Decode(pemData)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block: %w", source, ErrBadKey)
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%s: PEM block is %q, want \"PUBLIC KEY\": %w", source, block.Type, ErrBadKey)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%s: more than one PEM block or trailing data: %w", source, ErrBadKey)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %v: %w", source, err, ErrBadKey)
	}
	k := &PublicKey{Source: source, key: pub}
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		var h crypto.Hash
		switch p.Curve {
		case elliptic.P256():
			h = crypto.SHA256
		case elliptic.P384():
			h = crypto.SHA384
		case elliptic.P521():
			h = crypto.SHA512
		default:
			return nil, fmt.Errorf("%s: ECDSA curve %s not supported: %w", source, p.Curve.Params().Name, ErrBadKey)
		}
		hashes := []crypto.Hash{h}
		if h != crypto.SHA256 {
			hashes = append(hashes, crypto.SHA256)
		}
		for _, h := range hashes {
			v, err := sigstoresig.LoadECDSAVerifier(p, h)
			if err != nil {
				return nil, fmt.Errorf("%s: %v: %w", source, err, ErrBadKey)
			}
			k.bundle = append(k.bundle, v)
		}
		if k.legacy, err = sigstoresig.LoadECDSAVerifier(p, crypto.SHA256); err != nil {
			return nil, fmt.Errorf("%s: %v: %w", source, err, ErrBadKey)
		}
	case *rsa.PublicKey:
		if p.N.BitLen() < 2048 {
			return nil, fmt.Errorf("%s: RSA key of %d bits, want at least 2048: %w", source, p.N.BitLen(), ErrBadKey)
		}
		v, err := sigstoresig.LoadRSAPKCS1v15Verifier(p, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("%s: %v: %w", source, err, ErrBadKey)
		}
		k.legacy, k.bundle = v, []sigstoresig.Verifier{v}
	case ed25519.PublicKey:
		v, err := sigstoresig.LoadED25519Verifier(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %v: %w", source, err, ErrBadKey)
		}
		k.legacy, k.bundle = v, []sigstoresig.Verifier{v}
	default:
		return nil, fmt.Errorf("%s: key type %T not supported: %w", source, pub, ErrBadKey)
	}
	return k, nil
}

// LoadPublicKey reads (at most 64 KiB of) the PEM file path and parses it
// with ParsePublicKey. Errors name the path and wrap ErrBadKey.
func LoadPublicKey(path string) (*PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("public key: %v: %w", err, ErrBadKey)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("public key %s: %v: %w", path, err, ErrBadKey)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("public key %s: larger than %d bytes: %w", path, maxKeyFile, ErrBadKey)
	}
	return ParsePublicKey(b, path)
}
