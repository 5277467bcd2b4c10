package images

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// minIDPrefix is the shortest hex prefix accepted as a truncated image id, so
// that a one- or two-letter typo never names (and removes) an image.
const minIDPrefix = 4

// parseRef parses a user's image reference into containerd's normalized
// form: "busybox" is docker.io/library/busybox:latest, a reference with both
// a tag and a digest keeps only the digest. It does not accept image ids.
func parseRef(ref string) (reference.Named, error) {
	if ref == "" {
		return nil, fmt.Errorf("%w: image reference is empty", errdefs.ErrInvalidArgument)
	}
	if _, ok := parseID(ref); ok {
		return nil, fmt.Errorf("%w: %q is an image id, not a reference to pull", errdefs.ErrInvalidArgument, ref)
	}
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: parse image reference %q: %w", errdefs.ErrInvalidArgument, ref, err)
	}
	return named, nil
}

// digestRef is repo@dgst for the repository of named.
func digestRef(named reference.Named, dgst digest.Digest) (string, error) {
	c, err := reference.WithDigest(reference.TrimNamed(named), dgst)
	if err != nil {
		return "", fmt.Errorf("digest reference for %s@%s: %w", named.Name(), dgst, err)
	}
	return c.String(), nil
}

// parseID reports whether s is a full image id, "sha256:<64 hex>" (any
// algorithm the digest package knows) or a bare 64-hex sha256 id, and returns
// it in canonical "algo:hex" form.
func parseID(s string) (string, bool) {
	if strings.Contains(s, ":") {
		d, err := digest.Parse(s)
		if err != nil {
			return "", false
		}
		return d.String(), true
	}
	if len(s) == 64 && isLowerHex(s) {
		return "sha256:" + s, true
	}
	return "", false
}

// parseIDPrefix reports whether s looks like a truncated image id:
// "sha256:<hex>" or bare lower-case hex, at least minIDPrefix digits. It
// returns the prefix in "sha256:<hex>" form.
func parseIDPrefix(s string) (string, bool) {
	h := strings.TrimPrefix(s, "sha256:")
	if len(h) < minIDPrefix || len(h) > 64 || !isLowerHex(h) {
		return "", false
	}
	return "sha256:" + h, true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return s != ""
}

// recordKind classifies a containerd image record name.
type recordKind int

const (
	kindOther  recordKind = iota // a name accel-cri does not report (not normalized)
	kindID                       // "sha256:<config digest>"
	kindTag                      // normalized repo:tag
	kindDigest                   // normalized repo@digest
)

// classifyName tells what a containerd image record name is. Only normalized
// names count as tags or digests, so RepoTags and RepoDigests are always in
// the form Get and List accept and return.
func classifyName(name string) recordKind {
	if _, ok := parseID(name); ok && strings.Contains(name, ":") {
		return kindID
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil || named.String() != name {
		return kindOther
	}
	switch named.(type) {
	case reference.Canonical:
		return kindDigest
	case reference.NamedTagged:
		return kindTag
	}
	return kindOther
}

// repoOf returns the repository name of a normalized tag or digest reference.
func repoOf(name string) string {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return ""
	}
	return named.Name()
}
