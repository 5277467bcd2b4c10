package images

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/images/policy"
	"github.com/accel-cri/accel-cri/images/signature"
)

// Phases of a signature check, as SignatureObserver reports them.
const (
	PhasePull   = "pull"
	PhaseCreate = "create"
)

// Results of a signature check, as SignatureObserver reports them.
const (
	// ResultVerified: a signature satisfied the policy.
	ResultVerified = "verified"
	// ResultAccepted: the policy's scope accepts the image without a
	// signature (insecureAcceptAnything).
	ResultAccepted = "accepted"
	// ResultRejected: the policy refused the image.
	ResultRejected = "rejected"
	// ResultError: the image was refused because the policy file or the
	// signatures could not be read (fail closed).
	ResultError = "error"
)

// recheckTimeout bounds CreateContainer's signature check, which has no
// progress watchdog of its own.
const recheckTimeout = 2 * time.Minute

// maxVerified bounds the cache of allowed decisions; when full it starts
// over (a decision is cheap to make again).
const maxVerified = 4096

// SignatureError is an image the signature policy refused. The CRI layer
// reports it with the CRI's SignatureValidationFailed error name, which
// kubelet shows as the container's waiting reason.
type SignatureError struct {
	// Ref is the reference the image was pulled or run by.
	Ref string
	// Digest is its manifest (or index) digest; "" when the refusal came
	// before it was known (an unusable policy file).
	Digest digest.Digest
	// File and Scope are the policy file and its scope that decided.
	File, Scope string
	// Reason wraps policy.ErrRejected, policy.ErrFetch or policy.ErrInvalid.
	Reason error
}

func (e *SignatureError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "image %s", e.Ref)
	if e.Digest != "" {
		fmt.Fprintf(&b, " (%s)", e.Digest)
	}
	b.WriteString(" refused by signature policy")
	if e.File != "" {
		fmt.Fprintf(&b, " %s", e.File)
	}
	if e.Scope != "" {
		fmt.Fprintf(&b, " (scope %q)", e.Scope)
	}
	fmt.Fprintf(&b, ": %v", e.Reason)
	return b.String()
}

func (e *SignatureError) Unwrap() error { return e.Reason }

// SignatureObserver is told about every signature decision (metrics). It
// must not block.
type SignatureObserver interface {
	// ObserveSignature reports one decision: phase is PhasePull or
	// PhaseCreate, result one of the Result constants.
	ObserveSignature(phase, result string)
}

// WithSignaturePolicy verifies images against the policies of store: at
// Pull, before anything is fetched beyond the manifest's digest, and at
// CheckSignature (CreateContainer). A nil or empty store verifies nothing.
func WithSignaturePolicy(store *policy.Store) Option {
	return func(o *options) { o.policy = store }
}

// WithSignatureObserver reports every signature decision to o.
func WithSignatureObserver(o SignatureObserver) Option {
	return func(opts *options) { opts.sigObserver = o }
}

// WithPullNamespace names the pod namespace a pull is for (the CRI's
// PullImageRequest.sandbox_config), which selects its signature policy.
func WithPullNamespace(ns string) PullOption {
	return func(o *pullOptions) { o.namespace = ns }
}

// verifyKey names one allowed decision: the parsed policy (a new parse is
// a new pointer), the reference (scope and identity depend on it) and the
// digest.
type verifyKey struct {
	policy *policy.Policy
	ref    string
	digest digest.Digest
}

// verifier holds the allowed decisions, so an image verified at pull is not
// fetched again at CreateContainer. Refusals are not kept: a signature
// pushed later, or a registry back up, counts at the next attempt.
type verifier struct {
	mu      sync.Mutex
	allowed map[verifyKey]policy.Decision
}

func (v *verifier) get(k verifyKey) (policy.Decision, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	d, ok := v.allowed[k]
	return d, ok
}

func (v *verifier) put(k verifyKey, d policy.Decision) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.allowed == nil || len(v.allowed) >= maxVerified {
		v.allowed = map[verifyKey]policy.Decision{}
	}
	v.allowed[k] = d
}

// policyFor returns the policy of namespace ns, nil when none applies. An
// unusable policy file is a SignatureError for ref.
func (s *Service) policyFor(ns, ref, phase string) (*policy.Policy, error) {
	p, err := s.opts.policy.For(ns)
	if err == nil {
		return p, nil
	}
	if errdefs.IsInvalidArgument(err) {
		return nil, err
	}
	s.observeSignature(phase, ResultError)
	klog.InfoS("Image refused: its signature policy cannot be used", "image", ref, "namespace", ns, "phase", phase, "err", err)
	return nil, &SignatureError{Ref: ref, Reason: err}
}

// verify decides whether the image named by ref with digest dgst may be
// pulled or run under pol, fetching its signatures through resolver when
// the policy needs them and the decision is not cached.
func (s *Service) verify(ctx context.Context, pol *policy.Policy, ref reference.Named, dgst digest.Digest, resolver remotes.Resolver, phase string) error {
	key := verifyKey{policy: pol, ref: ref.String(), digest: dgst}
	log := klog.FromContext(ctx).WithValues("image", ref.String(), "digest", dgst, "policy", pol.File, "phase", phase)
	if d, ok := s.verified.get(key); ok {
		s.observeSignature(phase, resultOf(d))
		log.V(2).Info("Image signature policy satisfied (cached)", "scope", d.Scope, "signature", d.Signature)
		return nil
	}
	d := pol.Evaluate(ctx, ref, dgst, func(ctx context.Context) (signature.Found, error) {
		return signature.Fetch(ctx, resolver, ref.Name(), dgst)
	})
	result := resultOf(d)
	s.observeSignature(phase, result)
	if d.Allowed {
		s.verified.put(key, d)
		log.Info("Image signature policy satisfied", "scope", d.Scope, "result", result, "signature", d.Signature)
		return nil
	}
	log.Info("Image refused by signature policy", "scope", d.Scope, "result", result, "reason", d.Reason.Error())
	return &SignatureError{Ref: ref.String(), Digest: dgst, File: d.File, Scope: d.Scope, Reason: d.Reason}
}

func resultOf(d policy.Decision) string {
	switch {
	case d.Allowed && d.Verified:
		return ResultVerified
	case d.Allowed:
		return ResultAccepted
	case errors.Is(d.Reason, policy.ErrFetch), errors.Is(d.Reason, policy.ErrInvalid):
		return ResultError
	}
	return ResultRejected
}

func (s *Service) observeSignature(phase, result string) {
	if o := s.opts.sigObserver; o != nil {
		o.ObserveSignature(phase, result)
	}
}

// CheckSignature verifies an image that is present before a container of
// a pod in namespace ns runs it (CreateContainer): an image pulled before
// the policy existed, or for another namespace, is verified now; one
// verified under the same policy before is not fetched again. ref is the
// reference the pod names (the CRI's user_specified_image, else the
// container's image field); when it is an image id the image's own
// references are used. Signatures are fetched anonymously through the
// registry configuration (mirrors): CreateContainer carries no credentials.
func (s *Service) CheckSignature(ctx context.Context, ns, ref string, img Image) error {
	if !s.opts.policy.Enabled() {
		return nil
	}
	named, dgst, err := verifiedName(ref, img)
	display := ref
	if named != nil {
		display = named.String()
	}
	pol, perr := s.policyFor(ns, display, PhaseCreate)
	if pol == nil || perr != nil {
		return perr
	}
	if err != nil {
		// An image with no registry digest (imported, say) has no
		// signature to find; it runs only where the policy asks for none.
		if pol.AcceptsAnything(named) {
			s.observeSignature(PhaseCreate, ResultAccepted)
			return nil
		}
		s.observeSignature(PhaseCreate, ResultRejected)
		return &SignatureError{Ref: display, File: pol.File, Reason: fmt.Errorf("%w: %w", policy.ErrRejected, err)}
	}
	ctx, cancel := context.WithTimeout(ctx, recheckTimeout)
	defer cancel()
	var transports idleClosers
	defer transports.closeIdle()
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: s.registryHosts(ctx, nil, func(c *http.Client) error {
			transports.add(c.Transport)
			return nil
		}),
	})
	return s.verify(ctx, pol, named, dgst, resolver, PhaseCreate)
}

// verifiedName picks the reference and the registry digest an image is
// checked by: ref when it is a reference (tag or digest), else the image's
// first tag, else its first digest reference. The digest is the one the
// image was pulled by in that repository, else any of its digests (all
// records of one image share the target).
func verifiedName(ref string, img Image) (reference.Named, digest.Digest, error) {
	var named reference.Named
	if _, isID := parseID(ref); !isID && ref != "" {
		if n, err := reference.ParseDockerRef(ref); err == nil {
			named = n
		}
	}
	if named == nil {
		for _, r := range append(append([]string{}, img.RepoTags...), img.RepoDigests...) {
			if n, err := reference.ParseDockerRef(r); err == nil {
				named = n
				break
			}
		}
	}
	if named == nil {
		return nil, "", fmt.Errorf("image %s has no registry reference to verify its signature by", img.ID)
	}
	if d, ok := named.(reference.Digested); ok {
		return named, d.Digest(), nil
	}
	var other digest.Digest
	for _, r := range img.RepoDigests {
		n, err := reference.ParseDockerRef(r)
		if err != nil {
			continue
		}
		d, ok := n.(reference.Digested)
		if !ok {
			continue
		}
		if n.Name() == named.Name() {
			return named, d.Digest(), nil
		}
		if other == "" {
			other = d.Digest()
		}
	}
	if other == "" {
		return named, "", fmt.Errorf("image %s (%s) has no registry digest to verify its signature by (it was not pulled from a registry)", named, img.ID)
	}
	return named, other, nil
}
