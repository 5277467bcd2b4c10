package images

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestNewCredentials(t *testing.T) {
	for _, tc := range []struct {
		desc     string
		auth     *AuthConfig
		registry string // reference.Domain of the image
		want     *registryCredentials
		wantErr  string
	}{
		{desc: "nil is anonymous", auth: nil, registry: "docker.io", want: nil},
		{desc: "empty is anonymous", auth: &AuthConfig{}, registry: "docker.io", want: nil},
		{
			desc: "username and password", registry: "127.0.0.1:5000",
			auth: &AuthConfig{Username: "u", Password: "p"},
			want: &registryCredentials{registry: "127.0.0.1:5000", username: "u", secret: "p"},
		},
		{
			desc: "auth field decoded", registry: "docker.io",
			auth: &AuthConfig{Auth: b64("alice:s3cr:et")},
			want: &registryCredentials{registry: "docker.io", username: "alice", secret: "s3cr:et"},
		},
		{
			desc: "auth field without padding", registry: "docker.io",
			auth: &AuthConfig{Auth: strings.TrimRight(b64("ab:c"), "=")},
			want: &registryCredentials{registry: "docker.io", username: "ab", secret: "c"},
		},
		{
			desc: "username wins over auth", registry: "docker.io",
			auth: &AuthConfig{Username: "u", Password: "p", Auth: b64("other:x")},
			want: &registryCredentials{registry: "docker.io", username: "u", secret: "p"},
		},
		{
			desc: "identity token is a refresh token (empty username)", registry: "docker.io",
			auth: &AuthConfig{Username: "<token>", IdentityToken: "refresh"},
			want: &registryCredentials{registry: "docker.io", secret: "refresh"},
		},
		{
			desc: "registry token is a bearer token and wins", registry: "docker.io",
			auth: &AuthConfig{Username: "u", Password: "p", RegistryToken: "tok"},
			want: &registryCredentials{registry: "docker.io", bearer: "tok"},
		},
		{
			desc: "server address matches (docker hub URL)", registry: "docker.io",
			auth: &AuthConfig{Username: "u", Password: "p", ServerAddress: "https://index.docker.io/v1/"},
			want: &registryCredentials{registry: "docker.io", username: "u", secret: "p"},
		},
		{
			desc: "server address matches (bare host:port)", registry: "127.0.0.1:5000",
			auth: &AuthConfig{Username: "u", Password: "p", ServerAddress: "127.0.0.1:5000"},
			want: &registryCredentials{registry: "127.0.0.1:5000", username: "u", secret: "p"},
		},
		{
			desc: "server address matches (URL with scheme)", registry: "myreg.example:5000",
			auth: &AuthConfig{Username: "u", Password: "p", ServerAddress: "http://MyReg.example:5000/v2/"},
			want: &registryCredentials{registry: "myreg.example:5000", username: "u", secret: "p"},
		},
		{
			desc: "server address of another registry: anonymous", registry: "docker.io",
			auth: &AuthConfig{Username: "u", Password: "p", ServerAddress: "quay.io"},
			want: nil,
		},
		{
			desc: "server address with another port: anonymous", registry: "127.0.0.1:5000",
			auth: &AuthConfig{Username: "u", Password: "p", ServerAddress: "127.0.0.1:5001"},
			want: nil,
		},
		{
			desc: "bad server address", registry: "docker.io",
			auth:    &AuthConfig{Username: "u", ServerAddress: "https:///v1/"},
			wantErr: "names no registry host",
		},
		{
			desc: "bad base64", registry: "docker.io",
			auth:    &AuthConfig{Auth: "!!!not-base64"},
			wantErr: "not valid base64",
		},
		{
			desc: "decoded auth without colon", registry: "docker.io",
			auth:    &AuthConfig{Auth: b64("justauser")},
			wantErr: "user:password",
		},
		{
			desc: "decoded auth with empty user", registry: "docker.io",
			auth:    &AuthConfig{Auth: b64(":pw")},
			wantErr: "empty user name",
		},
		{
			desc: "bad auth with mismatching server address is not an error", registry: "docker.io",
			auth: &AuthConfig{Auth: "!!!", ServerAddress: "quay.io"},
			want: nil,
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := newCredentials(tc.auth, tc.registry)
			if tc.wantErr != "" {
				if err == nil || !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("newCredentials = %+v, %v; want InvalidArgument containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("newCredentials: %v", err)
			}
			if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Errorf("newCredentials = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestCredentialsForHost(t *testing.T) {
	hub := &registryCredentials{registry: "docker.io", username: "u", secret: "p"}
	local := &registryCredentials{registry: "127.0.0.1:5000", username: "u", secret: "p"}
	token := &registryCredentials{registry: "docker.io", bearer: "tok"}
	for _, tc := range []struct {
		desc     string
		creds    *registryCredentials
		host     string // endpoint host containerd asks for
		wantUser string
		wantPass string
	}{
		{desc: "hub endpoint gets hub creds", creds: hub, host: "registry-1.docker.io", wantUser: "u", wantPass: "p"},
		{desc: "index.docker.io too", creds: hub, host: "index.docker.io", wantUser: "u", wantPass: "p"},
		{desc: "a mirror of hub gets none", creds: hub, host: "127.0.0.1:5000"},
		{desc: "another registry gets none", creds: hub, host: "quay.io"},
		{desc: "local registry gets its creds", creds: local, host: "127.0.0.1:5000", wantUser: "u", wantPass: "p"},
		{desc: "other port gets none", creds: local, host: "127.0.0.1:5001"},
		{desc: "bearer token is never basic creds", creds: token, host: "registry-1.docker.io"},
		{desc: "anonymous", creds: nil, host: "registry-1.docker.io"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			u, p, err := tc.creds.forHost(tc.host)
			if err != nil || u != tc.wantUser || p != tc.wantPass {
				t.Errorf("forHost(%q) = %q, %q, %v; want %q, %q", tc.host, u, p, err, tc.wantUser, tc.wantPass)
			}
		})
	}
}

type recordingAuthorizer struct{ authorized, added []string }

func (r *recordingAuthorizer) Authorize(_ context.Context, req *http.Request) error {
	r.authorized = append(r.authorized, req.URL.Host)
	return nil
}

func (r *recordingAuthorizer) AddResponses(_ context.Context, rs []*http.Response) error {
	r.added = append(r.added, rs[len(rs)-1].Request.URL.Host)
	return nil
}

func TestBearerAuthorizer(t *testing.T) {
	next := &recordingAuthorizer{}
	a := &bearerAuthorizer{host: "registry-1.docker.io", token: "tok", next: next}
	ctx := context.Background()

	req := &http.Request{URL: &url.URL{Scheme: "https", Host: "registry-1.docker.io", Path: "/v2/"}, Header: http.Header{}}
	if err := a.Authorize(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got := req.Header.Get("Authorization"); got != "Bearer tok" {
		t.Errorf("Authorization = %q, want Bearer tok", got)
	}
	// A redirect to a CDN must not carry the token.
	cdn := &http.Request{URL: &url.URL{Scheme: "https", Host: "cdn.example", Path: "/blob"}, Header: http.Header{}}
	if err := a.Authorize(ctx, cdn); err != nil {
		t.Fatal(err)
	}
	if got := cdn.Header.Get("Authorization"); got != "" {
		t.Errorf("redirect target got Authorization %q", got)
	}
	if len(next.authorized) != 1 || next.authorized[0] != "cdn.example" {
		t.Errorf("other hosts not handed on: %v", next.authorized)
	}
	// 401 from the registry: the token was refused.
	err := a.AddResponses(ctx, []*http.Response{{StatusCode: 401, Request: req}})
	if !errdefs.IsUnauthorized(err) {
		t.Errorf("AddResponses(401 from registry) = %v, want Unauthenticated", err)
	}
	if err := a.AddResponses(ctx, []*http.Response{{StatusCode: 401, Request: cdn}}); err != nil || len(next.added) != 1 {
		t.Errorf("AddResponses for another host = %v, handed on %v", err, next.added)
	}
	// No next authorizer: other hosts are not ours to answer.
	lone := &bearerAuthorizer{host: "h", token: "t"}
	if err := lone.AddResponses(ctx, []*http.Response{{StatusCode: 401, Request: cdn}}); !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Errorf("AddResponses without next = %v, want NotImplemented", err)
	}
}
