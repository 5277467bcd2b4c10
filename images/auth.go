package images

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
)

// dockerHub is the registry name the image reference uses for Docker Hub;
// dockerHubAliases are the other names the same registry goes by in CRI
// ServerAddress values (docker config files) and as endpoint hosts.
const dockerHub = "docker.io"

var dockerHubAliases = map[string]bool{
	"docker.io":               true,
	"index.docker.io":         true,
	"registry-1.docker.io":    true,
	"registry.hub.docker.com": true,
}

// registryCredentials are the credentials of one pull, bound to the registry
// the image reference names. They are offered only to that registry's own
// endpoint, never to mirrors from hosts.toml and never to any other host a
// request is redirected to: a mirror is a different party, and kubelet picked
// the credentials for the image's registry.
type registryCredentials struct {
	// registry is the normalized registry host ("docker.io", "127.0.0.1:5000").
	registry string
	// username and secret go to containerd's authorizer. An empty username
	// with a secret makes the secret an identity (refresh) token.
	username, secret string
	// bearer is a registry token, sent as is.
	bearer string
}

// newCredentials selects the credentials of auth for the registry the image
// reference names (reference.Domain: "docker.io" for Docker Hub). It returns
// nil for an anonymous pull, including when auth.ServerAddress names another
// registry. Precedence, as docker's own client: RegistryToken, then
// IdentityToken, then Username/Password, then Auth (base64 "user:password").
func newCredentials(auth *AuthConfig, registry string) (*registryCredentials, error) {
	if auth == nil {
		return nil, nil
	}
	registry = normalizeRegistryHost(registry)
	if auth.ServerAddress != "" {
		host, err := serverAddressHost(auth.ServerAddress)
		if err != nil {
			return nil, err
		}
		if host != registry {
			return nil, nil
		}
	}
	c := &registryCredentials{registry: registry}
	switch {
	case auth.RegistryToken != "":
		c.bearer = auth.RegistryToken
	case auth.IdentityToken != "":
		c.secret = auth.IdentityToken
	case auth.Username != "":
		c.username, c.secret = auth.Username, auth.Password
	case auth.Auth != "":
		user, pass, err := decodeAuth(auth.Auth)
		if err != nil {
			return nil, err
		}
		c.username, c.secret = user, pass
	default:
		return nil, nil
	}
	return c, nil
}

// decodeAuth decodes the CRI/docker-config "auth" field, base64("user:password").
func decodeAuth(s string) (string, string, error) {
	s = strings.TrimSpace(s)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		// docker config files written by some tools drop the padding.
		var rawErr error
		if b, rawErr = base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "=")); rawErr != nil {
			return "", "", fmt.Errorf("%w: auth: not valid base64: %v", errdefs.ErrInvalidArgument, err)
		}
	}
	user, pass, ok := strings.Cut(string(b), ":")
	if !ok {
		return "", "", fmt.Errorf("%w: auth: decoded value is not of the form user:password", errdefs.ErrInvalidArgument)
	}
	if user == "" {
		return "", "", fmt.Errorf("%w: auth: decoded value has an empty user name", errdefs.ErrInvalidArgument)
	}
	return user, pass, nil
}

// serverAddressHost returns the normalized registry host of a CRI
// ServerAddress, which comes as a bare host[:port] ("myregistry:5000"), a URL
// ("https://index.docker.io/v1/") or host/path.
func serverAddressHost(addr string) (string, error) {
	host := addr
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		if err != nil {
			return "", fmt.Errorf("%w: auth: server address %q: %v", errdefs.ErrInvalidArgument, addr, err)
		}
		host = u.Host
	} else if i := strings.IndexByte(host, '/'); i >= 0 {
		host = host[:i]
	}
	if host == "" || strings.ContainsAny(host, " \t\r\n@?#") {
		return "", fmt.Errorf("%w: auth: server address %q names no registry host", errdefs.ErrInvalidArgument, addr)
	}
	return normalizeRegistryHost(host), nil
}

// normalizeRegistryHost lower-cases a registry host and folds Docker Hub's
// names into "docker.io".
func normalizeRegistryHost(host string) string {
	host = strings.ToLower(host)
	if dockerHubAliases[host] {
		return dockerHub
	}
	return host
}

// forHost is the containerd HostOptions.Credentials callback: host is the
// endpoint a request went to (registry-1.docker.io for docker.io, or a
// mirror). Only the reference's own registry gets the credentials.
func (c *registryCredentials) forHost(host string) (string, string, error) {
	if c == nil || c.bearer != "" || !c.matches(host) {
		return "", "", nil
	}
	return c.username, c.secret, nil
}

func (c *registryCredentials) matches(host string) bool {
	return c != nil && normalizeRegistryHost(host) == c.registry
}

// bearerAuthorizer sends a CRI registry token as "Authorization: Bearer" to
// one endpoint host and hands every other host to the authorizer it wraps.
// A 401 from that host means the token was refused; there is nothing else
// to try.
type bearerAuthorizer struct {
	host  string
	token string
	next  docker.Authorizer
}

func (a *bearerAuthorizer) Authorize(ctx context.Context, req *http.Request) error {
	if req.URL.Host == a.host {
		req.Header.Set("Authorization", "Bearer "+a.token)
		return nil
	}
	if a.next == nil {
		return nil
	}
	return a.next.Authorize(ctx, req)
}

func (a *bearerAuthorizer) AddResponses(ctx context.Context, responses []*http.Response) error {
	last := responses[len(responses)-1]
	if last.Request != nil && last.Request.URL.Host == a.host {
		return fmt.Errorf("%w: registry %s refused the registry token", errdefs.ErrUnauthenticated, a.host)
	}
	if a.next == nil {
		return errdefs.ErrNotImplemented
	}
	return a.next.AddResponses(ctx, responses)
}
