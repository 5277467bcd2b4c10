package images

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
)

// TestHostsTOMLEndpointsWithoutHost: a [host."..."] key that names no host
// (found by FuzzHostsTOML) is dropped instead of becoming a pull from
// "https:///v2"; without any endpoint left the answer is FailedPrecondition.
func TestHostsTOMLEndpointsWithoutHost(t *testing.T) {
	for _, tc := range []struct {
		desc      string
		toml      string
		wantHosts []string
	}{
		{desc: "only a hostless key: the registry itself", toml: "[host.\"#\"]\n", wantHosts: []string{"registry.local"}},
		{desc: "hostless key beside a mirror", toml: "[host.\"#\"]\n[host.\"http://127.0.0.1:5000\"]\n", wantHosts: []string{"127.0.0.1:5000", "registry.local"}},
		{desc: "server only", toml: "server = \"https://registry.local\"\n", wantHosts: []string{"registry.local"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "registry.local"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "registry.local", "hosts.toml"), []byte(tc.toml), 0o644); err != nil {
				t.Fatal(err)
			}
			s := &Service{opts: options{registryConfigDir: root}}
			hosts, err := s.registryHosts(context.Background(), nil, nil)("registry.local")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, h := range hosts {
				got = append(got, h.Host)
			}
			if !slices.Equal(got, tc.wantHosts) {
				t.Fatalf("hosts = %v, want %v", got, tc.wantHosts)
			}
		})
	}
}

func TestWithoutHostlessEndpoints(t *testing.T) {
	only := func(string) ([]docker.RegistryHost, error) {
		return []docker.RegistryHost{{Scheme: "https", Path: "/v2"}}, nil
	}
	if _, err := withoutHostlessEndpoints(only)("registry.local"); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("err = %v, want FailedPrecondition", err)
	}
}
