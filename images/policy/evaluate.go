package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/accel-cri/accel-cri/images/signature"
)

var (
	// ErrRejected marks a decision the policy refused: a reject
	// requirement, or a sigstoreSigned one no signature satisfied.
	ErrRejected = errors.New("rejected by signature policy")
	// ErrFetch marks a refusal because the signatures could not be read
	// from the registry (it fails closed).
	ErrFetch = errors.New("cannot fetch signatures")
)

// Fetcher returns the signatures found for the image being decided.
type Fetcher func(ctx context.Context) (signature.Found, error)

// Decision is the outcome of Evaluate.
type Decision struct {
	// Allowed: every requirement of the scope is satisfied.
	Allowed bool
	// Verified: a signature was verified (false when the scope accepts
	// anything).
	Verified bool
	// File and Scope say which policy file and which of its scopes decided.
	File, Scope string
	// Signature says where the signature that satisfied the policy came
	// from, when one did.
	Signature string
	// Reason says why the image was refused; it wraps ErrRejected,
	// ErrFetch or ErrInvalid. Nil when allowed.
	Reason error
}

// Evaluate decides whether the image pulled by ref, whose manifest (or
// index) digest is dgst, satisfies the policy. fetch is called at most once,
// and only when a requirement needs signatures.
func (p *Policy) Evaluate(ctx context.Context, ref reference.Named, dgst digest.Digest, fetch Fetcher) Decision {
	scope, reqs := p.Requirements(ref)
	d := Decision{File: p.File, Scope: scope}
	var found *signature.Found
	for _, req := range reqs {
		switch {
		case req.Type == TypeAcceptAnything:
			continue
		case req.Type == TypeReject:
			d.Reason = fmt.Errorf("%w: scope %q rejects every image", ErrRejected, scope)
			return d
		case req.Unsupported != "":
			d.Reason = fmt.Errorf("%w: scope %q requires what cannot be verified: %s", ErrRejected, scope, req.Unsupported)
			return d
		}
		if found == nil {
			f, err := fetch(ctx)
			if err != nil {
				d.Reason = fmt.Errorf("%w of %s@%s: %w", ErrFetch, ref.Name(), dgst, err)
				return d
			}
			found = &f
		}
		src, err := req.satisfied(ref, dgst, *found)
		if err != nil {
			d.Reason = fmt.Errorf("%w: scope %q: %w", ErrRejected, scope, err)
			return d
		}
		d.Verified = true
		d.Signature = src
	}
	d.Allowed = true
	return d
}

// satisfied checks a sigstoreSigned requirement against the signatures
// found. It returns the source of one that satisfies it, or the reason none
// does, the most telling first: an identity mismatch of a signature made
// with a trusted key, a signature for another digest, a malformed one, one
// made with another key, no signature at all.
func (req Requirement) satisfied(ref reference.Named, dgst digest.Digest, found signature.Found) (string, error) {
	var identityErrs, digestErrs, malformed, wrongKey []error
	for _, c := range found.Candidates {
		claimed, err := c.Verify(req.Keys, dgst)
		switch {
		case err == nil:
			if err := req.Identity.matchIdentity(ref, claimed); err != nil {
				identityErrs = append(identityErrs, fmt.Errorf("%s: %w", c.Source, err))
				continue
			}
			return c.Source, nil
		case errors.Is(err, signature.ErrDigestMismatch):
			digestErrs = append(digestErrs, err) // Verify's errors name the signature
		case errors.Is(err, signature.ErrWrongKey):
			wrongKey = append(wrongKey, err)
		default:
			malformed = append(malformed, err)
		}
	}
	malformed = append(malformed, found.Skipped...)
	n := len(found.Candidates)
	switch {
	case len(identityErrs) > 0:
		return "", fmt.Errorf("identity mismatch: %w", join(identityErrs...))
	case len(digestErrs) > 0:
		return "", fmt.Errorf("%d signature(s) checked, none for digest %s: %w", n, dgst, join(append(digestErrs, malformed...)...))
	case len(wrongKey) > 0:
		return "", fmt.Errorf("%d signature(s) checked: not signed by a trusted key (%s)%s", n, keySources(req.Keys), alsoMalformed(malformed))
	case len(malformed) > 0:
		return "", fmt.Errorf("no usable signature: %w", join(malformed...))
	}
	return "", fmt.Errorf("no signature found for %s@%s (looked for the cosign tag and sigstore bundle referrers)", ref.Name(), dgst)
}

func keySources(keys []*signature.PublicKey) string {
	s := make([]string, len(keys))
	for i, k := range keys {
		s[i] = k.Source
	}
	return strings.Join(s, ", ")
}

func alsoMalformed(errs []error) string {
	if len(errs) == 0 {
		return ""
	}
	return "; also: " + join(errs...).Error()
}

// joined is errors.Join with the messages on one line (they end up in a
// pod's status).
type joined []error

func join(errs ...error) error { return joined(errs) }

func (j joined) Error() string {
	s := make([]string, len(j))
	for i, e := range j {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

func (j joined) Unwrap() []error { return j }
