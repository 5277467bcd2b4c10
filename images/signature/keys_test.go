package signature

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func pemOf(t testing.TB, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pubPEM(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf(t, "PUBLIC KEY", der)
}

func TestParsePublicKey(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	ecPriv, _ := x509.MarshalECPrivateKey(p256)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(p256)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "t"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p256.PublicKey, p256)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc string
		pem  []byte
		want string // "" for success, else a substring of the error
	}{
		{desc: "ECDSA P-256", pem: pubPEM(t, &p256.PublicKey)},
		{desc: "ECDSA P-384", pem: pubPEM(t, &p384.PublicKey)},
		{desc: "ECDSA P-521", pem: pubPEM(t, &p521.PublicKey)},
		{desc: "RSA 2048", pem: pubPEM(t, &rsa2048.PublicKey)},
		{desc: "Ed25519", pem: pubPEM(t, edPub)},
		{desc: "surrounding whitespace", pem: append(append([]byte("\n\n"), pubPEM(t, &p256.PublicKey)...), "\n\n"...)},
		{desc: "empty", pem: nil, want: "no PEM block"},
		{desc: "not PEM", pem: []byte("ssh-ed25519 AAAA... user@host"), want: "no PEM block"},
		{desc: "EC private key", pem: pemOf(t, "EC PRIVATE KEY", ecPriv), want: `"EC PRIVATE KEY"`},
		{desc: "PKCS#8 private key", pem: pemOf(t, "PRIVATE KEY", pkcs8), want: `"PRIVATE KEY"`},
		{desc: "private key labelled public", pem: pemOf(t, "PUBLIC KEY", pkcs8), want: "test"},
		{desc: "certificate", pem: pemOf(t, "CERTIFICATE", cert), want: `"CERTIFICATE"`},
		{desc: "RSA 1024", pem: pubPEM(t, &rsa1024.PublicKey), want: "1024 bits"},
		{desc: "ECDSA P-224", pem: pubPEM(t, &p224.PublicKey), want: "P-224"},
		{desc: "two keys", pem: append(pubPEM(t, &p256.PublicKey), pubPEM(t, &p384.PublicKey)...), want: "more than one"},
		{desc: "garbage in the block", pem: pemOf(t, "PUBLIC KEY", []byte("garbage")), want: "test"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			k, err := ParsePublicKey(tc.pem, "test")
			if tc.want == "" {
				if err != nil || k.Source != "test" {
					t.Fatalf("ParsePublicKey: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "test") {
				t.Fatalf("ParsePublicKey: %v, want ErrBadKey naming the source and %q", err, tc.want)
			}
		})
	}
}

func TestLoadPublicKey(t *testing.T) {
	dir := t.TempDir()
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("cosign.pub", pubPEM(t, &p256.PublicKey))
	huge := write("huge.pub", append(pubPEM(t, &p256.PublicKey), make([]byte, maxKeyFile)...))
	notPEM := write("not.pub", []byte("hello"))
	for _, tc := range []struct {
		desc, path, want string
	}{
		{desc: "ok", path: good},
		{desc: "missing", path: filepath.Join(dir, "missing.pub"), want: "no such file"},
		{desc: "directory", path: dir, want: dir},
		{desc: "over 64 KiB", path: huge, want: "larger than"},
		{desc: "not PEM", path: notPEM, want: "no PEM block"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			k, err := LoadPublicKey(tc.path)
			if tc.want == "" {
				if err != nil || k.Source != tc.path {
					t.Fatalf("LoadPublicKey: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
				t.Fatalf("LoadPublicKey: %v, want ErrBadKey naming %s and %q", err, tc.path, tc.want)
			}
		})
	}
}
