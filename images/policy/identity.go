package policy

import (
	"fmt"
	"strings"

	"github.com/distribution/reference"
)

// matchIdentity checks the identity a signature claims against the rule and
// the reference the image is pulled by. A signature that claims no identity
// (cosign v3 bundles sign only the digest) matches every rule: the digest
// binds it, and the rule has nothing to compare. It returns nil or the
// reason of the mismatch.
func (r IdentityRule) matchIdentity(ref reference.Named, claimed string) error {
	if claimed == "" {
		return nil
	}
	sig, err := reference.ParseNormalizedNamed(claimed)
	if err != nil {
		return fmt.Errorf("the signature claims identity %q, which is not a docker reference: %w", claimed, err)
	}
	switch r.Type {
	case IdentityMatchRepository:
		if sig.Name() != ref.Name() {
			return fmt.Errorf("signature identity %q names repository %s, the image is %s (signedIdentity matchRepository)", claimed, sig.Name(), ref.Name())
		}
	case IdentityExactReference:
		if sig.String() != r.Reference {
			return fmt.Errorf("signature identity %q is not %s (signedIdentity exactReference)", claimed, r.Reference)
		}
	case IdentityExactRepository:
		if sig.Name() != r.Reference {
			return fmt.Errorf("signature identity %q is not in repository %s (signedIdentity exactRepository)", claimed, r.Reference)
		}
	case IdentityRemap:
		mapped := ref
		if s := ref.String(); hasPathPrefix(s, r.Prefix) {
			m, err := reference.ParseNamed(r.SignedPrefix + s[len(r.Prefix):])
			if err != nil {
				return fmt.Errorf("remapIdentity: %s with prefix %s replaced by %s is not a reference: %w", s, r.Prefix, r.SignedPrefix, err)
			}
			mapped = m
		}
		if err := matchRepoDigestOrExact(mapped, sig); err != nil {
			return fmt.Errorf("%w (signedIdentity remapIdentity %s -> %s)", err, r.Prefix, r.SignedPrefix)
		}
	default: // IdentityMatchRepoDigestOrExact
		if err := matchRepoDigestOrExact(ref, sig); err != nil {
			return fmt.Errorf("%w (signedIdentity matchRepoDigestOrExact; cosign signatures claim the repository: use matchRepository)", err)
		}
	}
	return nil
}

// matchRepoDigestOrExact: an image pulled by tag needs a signature for
// exactly that tag; one pulled by digest needs one for the same repository.
func matchRepoDigestOrExact(ref, sig reference.Named) error {
	if _, ok := ref.(reference.Digested); ok {
		if sig.Name() != ref.Name() {
			return fmt.Errorf("signature identity %q names repository %s, the image is %s", sig.String(), sig.Name(), ref.Name())
		}
		return nil
	}
	want := reference.TagNameOnly(ref).String()
	if sig.String() != want {
		return fmt.Errorf("signature identity %q is not %s", sig.String(), want)
	}
	return nil
}

// hasPathPrefix reports whether s starts with prefix at a path-component
// boundary ("r.io/a" is a prefix of "r.io/a/b" and "r.io/a:1", not of
// "r.io/ab").
func hasPathPrefix(s, prefix string) bool {
	if !strings.HasPrefix(s, prefix) {
		return false
	}
	if len(s) == len(prefix) {
		return true
	}
	switch s[len(prefix)] {
	case '/', ':', '@':
		return true
	}
	return false
}
