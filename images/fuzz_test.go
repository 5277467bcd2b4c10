package images

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// FuzzHostsTOML feeds arbitrary hosts.toml files to the registry host
// configuration a pull uses (registryHosts over the registry config dir).
// Invariants: no panic; an accepted file yields endpoints with an http or
// https scheme, a host and an absolute or empty path, each allowed to at least
// resolve; the pull's credentials go only to the reference's own registry.
func FuzzHostsTOML(f *testing.F) {
	f.Add([]byte("server = \"https://registry.local\"\n[host.\"http://127.0.0.1:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n"))
	f.Add([]byte("[host.\"https://mirror.local/v2/prefix\"]\n  capabilities = [\"pull\"]\n  override_path = true\n"))
	f.Add([]byte("[host.\"https://mirror.local\"]\n  ca = \"/nonexistent/ca.pem\"\n"))
	f.Add([]byte("server = \"\"\n"))
	f.Add([]byte("[host.\"\"]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		root := t.TempDir()
		hostDir := filepath.Join(root, "registry.local")
		if err := os.Mkdir(hostDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		s := &Service{opts: options{registryConfigDir: root}}
		creds := &registryCredentials{registry: "registry.local", username: "u", secret: "p"}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hosts, err := s.registryHosts(ctx, creds, nil)("registry.local")
		if err != nil {
			return
		}
		for _, h := range hosts {
			if h.Scheme != "http" && h.Scheme != "https" {
				t.Fatalf("endpoint scheme %q", h.Scheme)
			}
			// override_path without a path leaves it empty: requests then
			// go to the host's root, as the file asks.
			if h.Host == "" || (h.Path != "" && !strings.HasPrefix(h.Path, "/")) {
				t.Fatalf("endpoint %s://%s%s", h.Scheme, h.Host, h.Path)
			}
			if u, p, _ := creds.forHost(h.Host); (u != "" || p != "") && normalizeRegistryHost(h.Host) != "registry.local" {
				t.Fatalf("credentials sent to %s", h.Host)
			}
		}
	})
}

// FuzzCredentials checks the CRI AuthConfig of PullImage: a rejection is
// InvalidArgument, accepted credentials belong to the reference's registry,
// and the base64 auth field decodes to what was encoded.
func FuzzCredentials(f *testing.F) {
	f.Add("registry.local:5000", "https://registry.local:5000/v1/", "", "", base64.StdEncoding.EncodeToString([]byte("u:p")))
	f.Add("docker.io", "index.docker.io", "user", "pw", "")
	f.Add("registry.local", "", "", "", "dTpw")
	f.Add("registry.local", "http://[::1", "", "", "")
	f.Fuzz(func(t *testing.T, registry, server, user, pass, auth string) {
		a := &AuthConfig{ServerAddress: server, Username: user, Password: pass, Auth: auth}
		c, err := newCredentials(a, registry)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("rejection %v is not InvalidArgument", err)
			}
			return
		}
		if c == nil {
			return
		}
		if c.registry != normalizeRegistryHost(registry) {
			t.Fatalf("credentials for %q, reference registry %q", c.registry, registry)
		}
		if server != "" {
			h, err := serverAddressHost(server)
			if err != nil || h != c.registry {
				t.Fatalf("server address %q (%q, %v) accepted for %q", server, h, err, c.registry)
			}
		}
		if user == "" && auth != "" {
			// Round trip: encoding what was decoded gives the same pair.
			u, p, err := decodeAuth(base64.StdEncoding.EncodeToString([]byte(c.username + ":" + c.secret)))
			if err != nil || u != c.username || p != c.secret {
				t.Fatalf("auth %q decoded to %q:%q, re-decoded %q:%q (%v)", auth, c.username, c.secret, u, p, err)
			}
		}
		if u, _, _ := c.forHost("other.invalid"); u != "" && c.registry != "other.invalid" {
			t.Fatal("credentials offered to another host")
		}
	})
}
