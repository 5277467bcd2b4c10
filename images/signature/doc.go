// Package signature owns fetching the cosign signatures of an image digest
// from its registry and verifying them against public keys: the legacy
// cosign tag (<repo>:sha256-<hex>.sig, simple-signing payloads with the
// signature in a layer annotation) and sigstore bundles v0.3 attached as
// OCI 1.1 referrers (or the sha256-<hex> fallback tag of registries without
// the referrers API), as cosign v3 pushes them.
//
// It touches nothing on the host (no files but the key LoadPublicKey reads),
// keeps nothing between calls, and bounds its work and memory: manifest and
// blob sizes are checked against their descriptors before reading and the
// reads are limited, the number of signatures looked at is capped, nested
// indexes are never followed. It must not import package images (its
// parent) nor anything about pods; what to do with a verified identity (the
// policy) is the caller's.
//
// # Use
//
//	key, err := signature.LoadPublicKey("/etc/accel-cri/keys/cosign.pub")
//	...
//	// resolver: a containerd remotes.Resolver with the pull's hosts and credentials
//	found, err := signature.Fetch(ctx, resolver, "registry.example/app", dgst)
//	for _, c := range found.Candidates {
//		identity, err := c.Verify([]*signature.PublicKey{key}, dgst)
//		if err == nil {
//			// signed by key; identity is the docker reference it claims
//			// ("" for cosign v3 bundles: only the digest binds)
//		}
//	}
//	// found.Skipped says why other entries were not usable.
package signature

import "errors"

// Errors the package's errors wrap.
var (
	// ErrBadKey: the key file is missing, not PEM, not a public key, or of
	// an unsupported algorithm or size.
	ErrBadKey = errors.New("bad public key")
	// ErrWrongKey: no given key verifies the signature.
	ErrWrongKey = errors.New("not signed by a trusted key")
	// ErrDigestMismatch: a valid signature, for another manifest digest.
	ErrDigestMismatch = errors.New("signature is for another digest")
	// ErrMalformed: not JSON, truncated, too big, bad base64, wrong media
	// type, ...
	ErrMalformed = errors.New("malformed signature")
)
