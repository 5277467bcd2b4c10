package policy

import (
	"errors"
	"testing"

	"github.com/distribution/reference"
)

// FuzzParse: any bytes either parse into a policy every image gets a
// non-empty requirement list from (and whose requirements are of a known
// type), or are refused with ErrInvalid. Nothing panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"default":[{"type":"insecureAcceptAnything"}]}`,
		`{"default":[{"type":"reject"}],"transports":{"docker":{"r.example.com/a":[{"type":"insecureAcceptAnything"}],"*.example.com":[{"type":"reject"}],"":[{"type":"reject"}]}}}`,
		`{"default":[{"type":"sigstoreSigned","keyData":"bm90IGEga2V5","signedIdentity":{"type":"matchRepository"}}]}`,
		`{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k"}]}`,
		`{"default":[{"type":"sigstoreSigned","fulcio":{},"signedIdentity":{"type":"remapIdentity","prefix":"a.io","signedPrefix":"b.io"}}]}`,
		`{"default":[]}`, `{}`, `[]`, `null`,
	} {
		f.Add([]byte(s))
	}
	refs := []string{"r.example.com/a:1", "busybox", "127.0.0.1:5000/x/y@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		for _, r := range refs {
			ref, err := reference.ParseDockerRef(r)
			if err != nil {
				t.Fatal(err)
			}
			scope, reqs := p.Requirements(ref)
			if scope == "" || len(reqs) == 0 {
				t.Fatalf("%s: scope %q with %d requirements", r, scope, len(reqs))
			}
			for _, req := range reqs {
				switch req.Type {
				case TypeAcceptAnything, TypeReject, TypeSignedBy:
				case TypeSigstoreSigned:
					if req.Unsupported == "" && len(req.Keys) == 0 {
						t.Fatalf("%s: sigstoreSigned without keys", r)
					}
				default:
					t.Fatalf("%s: requirement type %q", r, req.Type)
				}
			}
		}
	})
}
