package images

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Test registries: go-containerregistry's in-memory registry behind
// httptest on 127.0.0.1. Nothing here reaches beyond the loopback.

type testRegistry struct {
	t *testing.T
	// host is the address pulls go to (behind wrap, if any).
	host string
	// pushHost serves the same storage with no wrapper, for pushing.
	pushHost string

	mu       sync.Mutex
	requests []string // "METHOD path" seen on host
}

// startRegistry serves one registry twice: plain on pushHost, and through
// wrap (auth, stalls) on host. wrap may be nil.
func startRegistry(t *testing.T, wrap func(http.Handler) http.Handler) *testRegistry {
	t.Helper()
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r := &testRegistry{t: t}
	pull := http.Handler(h)
	if wrap != nil {
		pull = wrap(h)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests = append(r.requests, req.Method+" "+req.URL.Path)
		r.mu.Unlock()
		pull.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	pushSrv := httptest.NewServer(h)
	t.Cleanup(pushSrv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	r.pushHost = strings.TrimPrefix(pushSrv.URL, "http://")
	return r
}

func (r *testRegistry) requestCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.requests)
}

// pushed describes an image as pushed.
type pushed struct {
	manifest string // manifest (or index) digest
	config   string // config digest: the image id
	layers   []string
	size     int64 // manifest + config + layers, as containerd counts
	diffIDs  []string
}

// push writes img to repo:tag (repo without registry host).
func (r *testRegistry) push(repo, tag string, img v1.Image) pushed {
	r.t.Helper()
	ref, err := name.ParseReference(r.pushHost+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		r.t.Fatalf("push %s: %v", ref, err)
	}
	return describeImage(r.t, img)
}

// pushIndex writes a one-platform index of img for this machine's platform.
func (r *testRegistry) pushIndex(repo, tag string, img v1.Image) (index string, p pushed) {
	r.t.Helper()
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{
		Add:        img,
		Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}},
	})
	ref, err := name.ParseReference(r.pushHost+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		r.t.Fatalf("push index %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		r.t.Fatal(err)
	}
	return d.String(), describeImage(r.t, img)
}

func describeImage(t *testing.T, img v1.Image) pushed {
	t.Helper()
	var p pushed
	md, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	p.manifest = md.String()
	cd, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	p.config = cd.String()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	ms, err := img.Size()
	if err != nil {
		t.Fatal(err)
	}
	p.size = ms + m.Config.Size
	for _, l := range m.Layers {
		p.layers = append(p.layers, l.Digest.String())
		p.size += l.Size
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range cf.RootFS.DiffIDs {
		p.diffIDs = append(p.diffIDs, d.String())
	}
	return p
}

// randomImage is an image of n random layers of size bytes each, for this
// machine's platform.
func randomImage(t *testing.T, size, n int64) v1.Image {
	t.Helper()
	img, err := random.Image(size, n)
	if err != nil {
		t.Fatal(err)
	}
	return withPlatform(t, img, v1.Config{Env: []string{"PATH=/bin", "RANDOM=1"}, Cmd: []string{"/bin/true"}})
}

// fileImage is a one-layer image with the given files (path -> content,
// mode 0755) and config.
func fileImage(t *testing.T, files map[string][]byte, cfg v1.Config) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o755, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(files[n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	return withPlatform(t, img, cfg)
}

func withPlatform(t *testing.T, img v1.Image, cfg v1.Config) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	cf.Config = cfg
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// basicAuth lets requests with user:pass (or "Bearer <token>" when token is
// set) through and answers 401 with a Basic challenge otherwise.
func basicAuth(user, pass, token string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); ok && u == user && p == pass {
				next.ServeHTTP(w, r)
				return
			}
			if token != "" && r.Header.Get("Authorization") == "Bearer "+token {
				next.ServeHTTP(w, r)
				return
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="accel-cri test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
		})
	}
}

// tokenAuth is a registry with a token server (the Docker Hub scheme):
// /v2/ wants "Bearer <access>"; POST /token trades a refresh token (an
// identity token) or user:pass for the access token.
func tokenAuth(user, pass, refresh, access string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/token" {
				ok := false
				switch {
				case r.Method == http.MethodPost:
					_ = r.ParseForm()
					switch r.PostForm.Get("grant_type") {
					case "refresh_token":
						ok = r.PostForm.Get("refresh_token") == refresh
					case "password":
						ok = r.PostForm.Get("username") == user && r.PostForm.Get("password") == pass
					}
				case r.Method == http.MethodGet:
					u, p, basic := r.BasicAuth()
					ok = basic && u == user && p == pass
				}
				if !ok {
					http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`, http.StatusUnauthorized)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(map[string]any{"access_token": access, "token": access, "expires_in": 300})
				return
			}
			if r.Header.Get("Authorization") == "Bearer "+access {
				next.ServeHTTP(w, r)
				return
			}
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="accel-cri-test"`, r.Host))
			w.WriteHeader(http.StatusUnauthorized)
		})
	}
}

// stallBlob serves blobs whose digest is in stall with their headers and
// the first 4 KiB, then sends nothing until the client goes away or release
// is closed. It reports each stalled request on stalled.
func stallBlob(stall map[string]bool, stalled chan<- string, release <-chan struct{}) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			i := strings.LastIndex(r.URL.Path, "/blobs/")
			if r.Method != http.MethodGet || i < 0 || !stall[r.URL.Path[i+len("/blobs/"):]] {
				next.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Content-Length", "1048576")
			w.Header().Set("Content-Type", "application/octet-stream")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(make([]byte, 4096))
			w.(http.Flusher).Flush()
			select {
			case stalled <- r.URL.Path:
			default:
			}
			select {
			case <-r.Context().Done():
			case <-release:
			}
		})
	}
}

// closedAddr is a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
