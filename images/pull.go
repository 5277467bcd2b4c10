package images

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/images/policy"
)

// Pull pulls ref from its registry (or a mirror from the registry
// configuration), unpacks it into the snapshotter (WithPullSnapshotter's, else
// the service's) and records it in
// containerd under the tag (when ref is a tag), the digest reference
// repo@sha256:<manifest digest> and the id sha256:<config digest>. It returns
// the image; its ID is the config digest.
//
// Errors carry an errdefs class the CRI layer maps: ErrInvalidArgument for a
// malformed ref or auth, ErrUnauthenticated for refused credentials,
// ErrPermissionDenied, ErrNotFound for an image the registry does not have,
// ErrUnavailable for an unreachable registry, and context.DeadlineExceeded
// when the pull progress timeout cancelled a stalled transfer.
func (s *Service) pull(ctx context.Context, ref string, auth *AuthConfig, opts ...PullOption) (Image, error) {
	po := pullOptionsOf(opts)
	snapshotter := po.snapshotter
	if snapshotter == "" {
		snapshotter = s.opts.snapshotter
	}
	named, err := parseRef(ref)
	if err != nil {
		return Image{}, err
	}
	name := named.String()
	// The signature policy is chosen before anything is fetched: an
	// unusable policy file refuses the pull without a registry request.
	pol, err := s.policyFor(po.namespace, name, PhasePull)
	if err != nil {
		return Image{}, fmt.Errorf("pull image %q: %w", name, err)
	}
	creds, err := newCredentials(auth, reference.Domain(named))
	if err != nil {
		return Image{}, fmt.Errorf("pull image %q: %w", name, err)
	}
	log := klog.FromContext(ctx).WithValues("image", name)

	// The lease keeps everything the pull writes (content, snapshots) from
	// garbage collection until the image records below reference it.
	lctx, done, err := s.client.WithLease(ctx, leases.WithRandomID(), leases.WithExpiration(pullLeaseExpiration))
	if err != nil {
		return Image{}, fmt.Errorf("pull image %q: create lease: %w", name, err)
	}
	defer func() {
		if err := done(context.WithoutCancel(lctx)); err != nil {
			log.Error(err, "Cannot delete the lease of a pull; it expires by itself", "expiresIn", pullLeaseExpiration)
		}
	}()

	img, err := s.fetch(lctx, named, creds, snapshotter, pol)
	if err != nil {
		return Image{}, fmt.Errorf("pull image %q: %w", name, err)
	}

	// The pull is done; record it even if the caller gives up now, so
	// containerd and the index agree.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(lctx), recordWriteTimeout)
	defer cancel()
	target := img.Target()
	info, err := s.describe(wctx, target)
	if err != nil {
		return Image{}, fmt.Errorf("pull image %q: %w", name, err)
	}
	dref, err := digestRef(named, target.Digest)
	if err != nil {
		return Image{}, fmt.Errorf("pull image %q: %w", name, err)
	}
	names := []string{info.id, dref}
	if _, ok := named.(reference.NamedTagged); ok {
		names = append(names, name)
	}

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	labels := map[string]string{ManagedLabel: "true"}
	is := s.client.ImageService()
	recs := make([]record, len(names))
	for i, n := range names {
		r, err := createOrUpdateRecord(wctx, is, n, target, labels)
		if err != nil {
			return Image{}, fmt.Errorf("pull image %q: %w", name, err)
		}
		recs[i] = record{target: r.Target, labels: r.Labels}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var e *entry
	for i, n := range names {
		e = s.indexAdd(info, n, recs[i])
	}
	s.refresh(e)
	s.invalidateFsUsage()
	log.Info("Pulled image", "id", info.id, "digest", target.Digest, "size", info.size)
	return cloneImage(e.image), nil
}

// fetch runs containerd's pull with accel-cri's resolver under the progress
// watchdog. It classifies the error for the CRI layer. With a signature
// policy, it resolves the reference first, verifies the digest it names with
// the same resolver (hosts.toml mirrors, the pull's credentials) and then
// pulls that digest, so the image pulled is the image verified and nothing is
// fetched, unpacked or kept for an image the policy refuses.
func (s *Service) fetch(ctx context.Context, named reference.Named, creds *registryCredentials, snapshotter string, pol *policy.Policy) (containerd.Image, error) {
	name := named.String()
	// Each pull builds its own HTTP transports; their idle keep-alive
	// connections (and the goroutines serving them) go when it ends, after
	// its context is cancelled.
	var transports idleClosers
	defer transports.closeIdle()
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watch := newProgressWatch(s.opts.pullProgressTimeout, cancel)
	stop := watch.start(pctx)
	defer stop()

	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: s.registryHosts(pctx, creds, func(c *http.Client) error {
			transports.add(c.Transport)
			return watch.updateClient(c)
		}),
	})
	pullName := name
	if pol != nil {
		_, desc, err := resolver.Resolve(pctx, name)
		if err != nil {
			return nil, s.fetchError(ctx, pctx, err)
		}
		if err := s.verify(pctx, pol, named, desc.Digest, resolver, PhasePull); err != nil {
			if pctx.Err() != nil && errors.Is(err, policy.ErrFetch) {
				// A signature fetch the watchdog or the caller cut
				// short is reported as such, with the refusal as its
				// detail.
				return nil, s.fetchError(ctx, pctx, err)
			}
			return nil, err
		}
		pullName = reference.TrimNamed(named).String() + "@" + desc.Digest.String()
	}
	img, err := s.client.Pull(pctx, pullName,
		containerd.WithResolver(resolver),
		containerd.WithPlatformMatcher(s.platform),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(snapshotter),
		containerd.WithPullLabels(map[string]string{ManagedLabel: "true"}),
	)
	if err == nil {
		return img, nil
	}
	return nil, s.fetchError(ctx, pctx, err)
}

// fetchError classifies an error of a pull's registry requests: the
// progress watchdog's cancellation (pctx's cause), the caller's cancellation
// (ctx), or the registry's answer.
func (s *Service) fetchError(ctx, pctx context.Context, err error) error {
	var stalled *stalledError
	if errors.As(context.Cause(pctx), &stalled) {
		return fmt.Errorf("%w (last error: %v)", stalled, err)
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		return fmt.Errorf("%w: %v", ctxErr, err)
	}
	return classifyRegistryError(err)
}

// registryHosts configures the registry endpoints of one pull: hosts.toml
// from the registry configuration directory (mirrors, TLS, plain HTTP),
// containerd's defaults otherwise, and the pull's credentials for the
// reference's own registry. updateClient sees every HTTP client.
func (s *Service) registryHosts(ctx context.Context, creds *registryCredentials, updateClient config.UpdateClientFunc) docker.RegistryHosts {
	hostOpts := config.HostOptions{
		Credentials:  creds.forHost,
		UpdateClient: updateClient,
	}
	if s.opts.registryConfigDir != "" {
		hostOpts.HostDir = config.HostDirFromRoot(s.opts.registryConfigDir)
	}
	hosts := withoutHostlessEndpoints(config.ConfigureHosts(ctx, hostOpts))
	if creds == nil || creds.bearer == "" {
		return hosts
	}
	return func(host string) ([]docker.RegistryHost, error) {
		rhs, err := hosts(host)
		if err != nil {
			return nil, err
		}
		for i := range rhs {
			if creds.matches(rhs[i].Host) {
				rhs[i].Authorizer = &bearerAuthorizer{host: rhs[i].Host, token: creds.bearer, next: rhs[i].Authorizer}
			}
		}
		return rhs, nil
	}
}

// withoutHostlessEndpoints drops the endpoints of a hosts.toml whose
// [host."..."] key names no host (containerd's parser turns a key like "#"
// into an endpoint with an empty host, and a pull would then fail with a
// confusing URL error). When no endpoint is left the error names the file's
// directory.
func withoutHostlessEndpoints(hosts docker.RegistryHosts) docker.RegistryHosts {
	return func(host string) ([]docker.RegistryHost, error) {
		rhs, err := hosts(host)
		if err != nil {
			return nil, err
		}
		out := rhs[:0]
		for _, h := range rhs {
			if h.Host == "" {
				klog.InfoS("Ignoring a registry endpoint without a host in hosts.toml", "registry", host, "scheme", h.Scheme, "path", h.Path)
				continue
			}
			out = append(out, h)
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%w: registry configuration for %s has no endpoint with a host", errdefs.ErrFailedPrecondition, host)
		}
		return out, nil
	}
}

// idleClosers collects the HTTP transports of one pull.
type idleClosers struct {
	mu sync.Mutex
	ts []interface{ CloseIdleConnections() }
}

func (c *idleClosers) add(rt http.RoundTripper) {
	t, ok := rt.(interface{ CloseIdleConnections() })
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ts = append(c.ts, t)
}

func (c *idleClosers) closeIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.ts {
		t.CloseIdleConnections()
	}
	c.ts = nil
}
