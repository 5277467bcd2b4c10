package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distribution/reference"
)

// writeKey writes a fresh ECDSA P-256 public key as PEM and returns its path
// and PEM bytes.
func writeKey(t *testing.T, dir, name string) (string, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func TestParse(t *testing.T) {
	dir := t.TempDir()
	key, keyPEM := writeKey(t, dir, "key.pub")
	key2, _ := writeKey(t, dir, "key2.pub")
	notKey := filepath.Join(dir, "not-a-key.pub")
	if err := os.WriteFile(notKey, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	keyData := base64.StdEncoding.EncodeToString(keyPEM)
	for _, tc := range []struct {
		desc, json string
		wantErr    string // "" for success
		check      func(t *testing.T, p *Policy)
	}{
		{desc: "accept anything", json: `{"default":[{"type":"insecureAcceptAnything"}]}`, check: func(t *testing.T, p *Policy) {
			if len(p.Default) != 1 || p.Default[0].Type != TypeAcceptAnything {
				t.Errorf("default %+v", p.Default)
			}
		}},
		{desc: "scoped sigstore key path", json: `{"default":[{"type":"reject"}],"transports":{"docker":{"r.example.com/media":[{"type":"sigstoreSigned","keyPath":"` + key + `","signedIdentity":{"type":"matchRepository"}}]}}}`, check: func(t *testing.T, p *Policy) {
			r := p.Docker["r.example.com/media"]
			if len(r) != 1 || len(r[0].Keys) != 1 || r[0].Identity.Type != IdentityMatchRepository || r[0].Keys[0].Source != key {
				t.Errorf("requirement %+v", r)
			}
			if len(p.keyFiles) != 1 || p.keyFiles[0] != key {
				t.Errorf("key files %v", p.keyFiles)
			}
		}},
		{desc: "key paths and default identity", json: `{"default":[{"type":"sigstoreSigned","keyPaths":["` + key + `","` + key2 + `"]}]}`, check: func(t *testing.T, p *Policy) {
			if len(p.Default[0].Keys) != 2 || p.Default[0].Identity.Type != IdentityMatchRepoDigestOrExact {
				t.Errorf("default %+v", p.Default)
			}
		}},
		{desc: "key data", json: `{"default":[{"type":"sigstoreSigned","keyData":"` + keyData + `"}]}`, check: func(t *testing.T, p *Policy) {
			if len(p.Default[0].Keys) != 1 || p.Default[0].Keys[0].Source != "keyData 0" {
				t.Errorf("default %+v", p.Default)
			}
		}},
		{desc: "exact repository", json: `{"default":[{"type":"sigstoreSigned","keyPath":"` + key + `","signedIdentity":{"type":"exactRepository","dockerRepository":"r.example.com/signed/app"}}]}`},
		{desc: "exact reference", json: `{"default":[{"type":"sigstoreSigned","keyPath":"` + key + `","signedIdentity":{"type":"exactReference","dockerReference":"r.example.com/app:1"}}]}`},
		{desc: "remap identity", json: `{"default":[{"type":"sigstoreSigned","keyPath":"` + key + `","signedIdentity":{"type":"remapIdentity","prefix":"mirror.example.com/team","signedPrefix":"r.example.com/team"}}]}`},
		{desc: "signedBy parses but is unsupported", json: `{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/etc/pki/key.gpg"}]}`, check: func(t *testing.T, p *Policy) {
			if !strings.Contains(p.Default[0].Unsupported, "GPG") {
				t.Errorf("unsupported %q", p.Default[0].Unsupported)
			}
		}},
		{desc: "keyless is unsupported", json: `{"default":[{"type":"sigstoreSigned","fulcio":{"caPath":"/x"},"rekorPublicKeyPath":"/y"}]}`, check: func(t *testing.T, p *Policy) {
			if !strings.Contains(p.Default[0].Unsupported, "keyless") {
				t.Errorf("unsupported %q", p.Default[0].Unsupported)
			}
		}},
		{desc: "wildcard and registry scopes", json: `{"default":[{"type":"reject"}],"transports":{"docker":{"*.example.com":[{"type":"insecureAcceptAnything"}],"127.0.0.1:5000":[{"type":"reject"}],"localhost":[{"type":"reject"}],"docker.io/library":[{"type":"reject"}],"":[{"type":"reject"}]}}}`},
		{desc: "other transports ignored", json: `{"default":[{"type":"reject"}],"transports":{"docker-daemon":{"":[{"type":"insecureAcceptAnything"}]}}}`, check: func(t *testing.T, p *Policy) {
			if len(p.Docker) != 0 {
				t.Errorf("docker scopes %v", p.Docker)
			}
		}},

		{desc: "not JSON", json: `{"default":`, wantErr: "unexpected EOF"},
		{desc: "empty file", json: ``, wantErr: "EOF"},
		{desc: "trailing data", json: `{"default":[{"type":"reject"}]} {}`, wantErr: "data after"},
		{desc: "no default", json: `{"transports":{}}`, wantErr: `"default" is missing`},
		{desc: "empty default", json: `{"default":[]}`, wantErr: "must not be empty"},
		{desc: "unknown top-level field", json: `{"default":[{"type":"reject"}],"defualt":[]}`, wantErr: "unknown field"},
		{desc: "unknown requirement field", json: `{"default":[{"type":"reject","keyPath":"/x"}]}`, wantErr: "unknown field"},
		{desc: "unknown requirement type", json: `{"default":[{"type":"acceptAll"}]}`, wantErr: `unknown requirement type "acceptAll"`},
		{desc: "missing type", json: `{"default":[{}]}`, wantErr: `"type" is missing`},
		{desc: "unknown transport", json: `{"default":[{"type":"reject"}],"transports":{"dockr":{}}}`, wantErr: `unknown transport "dockr"`},
		{desc: "unexpanded scope", json: `{"default":[{"type":"reject"}],"transports":{"docker":{"busybox":[{"type":"reject"}]}}}`, wantErr: `scope "busybox"`},
		{desc: "scope with scheme", json: `{"default":[{"type":"reject"}],"transports":{"docker":{"https://r.example.com":[{"type":"reject"}]}}}`, wantErr: "scheme"},
		{desc: "bad wildcard", json: `{"default":[{"type":"reject"}],"transports":{"docker":{"*.example.com/x":[{"type":"reject"}]}}}`, wantErr: "wildcard"},
		{desc: "no key", json: `{"default":[{"type":"sigstoreSigned"}]}`, wantErr: "exactly one of keyPath"},
		{desc: "two key kinds", json: `{"default":[{"type":"sigstoreSigned","keyPath":"` + key + `","keyData":"` + keyData + `"}]}`, wantErr: "exactly one of keyPath"},
		{desc: "empty key paths", json: `{"default":[{"type":"sigstoreSigned","keyPaths":[]}]}`, wantErr: "empty key list"},
		{desc: "relative key path", json: `{"default":[{"type":"sigstoreSigned","keyPath":"key.pub"}]}`, wantErr: "not absolute"},
		{desc: "missing key file", json: `{"default":[{"type":"sigstoreSigned","keyPath":"` + filepath.Join(dir, "missing.pub") + `"}]}`, wantErr: "missing.pub"},
		{desc: "key file not a key", json: `{"default":[{"type":"sigstoreSigned","keyPath":"` + notKey + `"}]}`, wantErr: "not-a-key.pub"},
		{desc: "key data not base64", json: `{"default":[{"type":"sigstoreSigned","keyData":"%%%"}]}`, wantErr: "not base64"},
		{desc: "key data not a key", json: `{"default":[{"type":"sigstoreSigned","keyData":"` + base64.StdEncoding.EncodeToString([]byte("hello")) + `"}]}`, wantErr: "keyData 0"},
		{desc: "keys and fulcio", json: `{"default":[{"type":"sigstoreSigned","keyPath":"` + key + `","fulcio":{}}]}`, wantErr: "exclude each other"},
		{desc: "unknown identity type", json: `{"default":[{"type":"sigstoreSigned","keyPath":"` + key + `","signedIdentity":{"type":"matchAnything"}}]}`, wantErr: "unknown signedIdentity type"},
		{desc: "identity field of another type", json: `{"default":[{"type":"sigstoreSigned","keyPath":"` + key + `","signedIdentity":{"type":"matchRepository","dockerReference":"r.io/a:1"}}]}`, wantErr: "takes no fields"},
		{desc: "exact reference without tag", json: `{"default":[{"type":"sigstoreSigned","keyPath":"` + key + `","signedIdentity":{"type":"exactReference","dockerReference":"r.example.com/app"}}]}`, wantErr: "no tag or digest"},
		{desc: "exact repository with tag", json: `{"default":[{"type":"sigstoreSigned","keyPath":"` + key + `","signedIdentity":{"type":"exactRepository","dockerRepository":"r.example.com/app:1"}}]}`, wantErr: "has a tag"},
		{desc: "remap without prefix", json: `{"default":[{"type":"sigstoreSigned","keyPath":"` + key + `","signedIdentity":{"type":"remapIdentity","signedPrefix":"r.example.com"}}]}`, wantErr: "remapIdentity"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p, err := Parse([]byte(tc.json))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse: err %v, want %q", err, tc.wantErr)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("error %v does not wrap ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tc.check != nil {
				tc.check(t, p)
			}
		})
	}
}

func TestParseFileBounds(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, []byte(`{"default":[{"type":"reject"}]}`+strings.Repeat(" ", maxPolicySize)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseFile(big); err == nil || !strings.Contains(err.Error(), "larger than") || !strings.Contains(err.Error(), big) {
		t.Errorf("big file: %v", err)
	}
	if _, err := ParseFile(filepath.Join(dir, "missing.json")); err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file: %v", err)
	}
}

func TestRequirementsScopes(t *testing.T) {
	p, err := Parse([]byte(`{"default":[{"type":"reject"}],"transports":{"docker":{
		"r.example.com/team/app:1": [{"type":"insecureAcceptAnything"}],
		"r.example.com/team/app": [{"type":"reject"}],
		"r.example.com/team": [{"type":"reject"}],
		"r.example.com": [{"type":"reject"}],
		"*.example.com": [{"type":"reject"}],
		"127.0.0.1:5000": [{"type":"reject"}],
		"docker.io/library/busybox": [{"type":"reject"}]
	}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ ref, scope string }{
		{"r.example.com/team/app:1", "r.example.com/team/app:1"},
		{"r.example.com/team/app:2", "r.example.com/team/app"},
		{"r.example.com/team/app@sha256:" + strings.Repeat("a", 64), "r.example.com/team/app"},
		{"r.example.com/team/other:1", "r.example.com/team"},
		{"r.example.com/x:1", "r.example.com"},
		{"mirror.example.com/x:1", "*.example.com"},
		{"a.b.example.com/x:1", "*.example.com"},
		{"127.0.0.1:5000/signed/app:1", "127.0.0.1:5000"},
		{"busybox", "docker.io/library/busybox"},
		{"quay.io/x/y:1", DefaultScope},
		{"example.com:443/x:1", DefaultScope}, // a registry with a port has no wildcard scope
	} {
		ref, err := reference.ParseDockerRef(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		if scope, _ := p.Requirements(ref); scope != tc.scope {
			t.Errorf("%s: scope %q, want %q", tc.ref, scope, tc.scope)
		}
	}
	p2, err := Parse([]byte(`{"default":[{"type":"reject"}],"transports":{"docker":{"":[{"type":"insecureAcceptAnything"}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := reference.ParseDockerRef("quay.io/x/y:1")
	if scope, reqs := p2.Requirements(ref); scope != `transports.docker[""]` || reqs[0].Type != TypeAcceptAnything {
		t.Errorf("transport default: %q %+v", scope, reqs)
	}
}

func TestMatchIdentity(t *testing.T) {
	const dg = "@sha256:0000000000000000000000000000000000000000000000000000000000000000"
	for _, tc := range []struct {
		desc      string
		rule      IdentityRule
		ref, sig  string
		wantMatch bool
	}{
		{"no claim matches anything", IdentityRule{Type: IdentityMatchRepoDigestOrExact}, "r.io/a:1", "", true},
		{"exact tag", IdentityRule{Type: IdentityMatchRepoDigestOrExact}, "r.io/a:1", "r.io/a:1", true},
		{"other tag", IdentityRule{Type: IdentityMatchRepoDigestOrExact}, "r.io/a:1", "r.io/a:2", false},
		{"repository only against a tag", IdentityRule{Type: IdentityMatchRepoDigestOrExact}, "r.io/a:1", "r.io/a", false},
		{"by digest: same repository", IdentityRule{Type: IdentityMatchRepoDigestOrExact}, "r.io/a" + dg, "r.io/a:7", true},
		{"by digest: other repository", IdentityRule{Type: IdentityMatchRepoDigestOrExact}, "r.io/a" + dg, "r.io/b", false},
		{"match repository", IdentityRule{Type: IdentityMatchRepository}, "r.io/a:1", "r.io/a", true},
		{"match repository: other", IdentityRule{Type: IdentityMatchRepository}, "r.io/a:1", "r.io/b", false},
		{"match repository: normalized claim", IdentityRule{Type: IdentityMatchRepository}, "docker.io/library/busybox:1", "busybox", true},
		{"exact reference", IdentityRule{Type: IdentityExactReference, Reference: "r.io/a:1"}, "mirror.io/a:1", "r.io/a:1", true},
		{"exact reference: other", IdentityRule{Type: IdentityExactReference, Reference: "r.io/a:1"}, "r.io/a:1", "r.io/a:2", false},
		{"exact repository", IdentityRule{Type: IdentityExactRepository, Reference: "r.io/a"}, "mirror.io/x:1", "r.io/a:9", true},
		{"exact repository: other", IdentityRule{Type: IdentityExactRepository, Reference: "r.io/a"}, "r.io/a:1", "r.io/b", false},
		{"remap", IdentityRule{Type: IdentityRemap, Prefix: "mirror.io/team", SignedPrefix: "r.io/team"}, "mirror.io/team/a:1", "r.io/team/a:1", true},
		{"remap: not at a boundary", IdentityRule{Type: IdentityRemap, Prefix: "mirror.io/te", SignedPrefix: "r.io/te"}, "mirror.io/team/a:1", "r.io/team/a:1", false},
		{"remap: prefix not matching keeps the ref", IdentityRule{Type: IdentityRemap, Prefix: "other.io", SignedPrefix: "r.io"}, "r.io/a:1", "r.io/a:1", true},
		{"garbage claim", IdentityRule{Type: IdentityMatchRepository}, "r.io/a:1", "NOT A REF", false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ref, err := reference.ParseDockerRef(tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			err = tc.rule.matchIdentity(ref, tc.sig)
			if (err == nil) != tc.wantMatch {
				t.Errorf("match %v (err %v), want %v", err == nil, err, tc.wantMatch)
			}
		})
	}
}
