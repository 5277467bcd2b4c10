package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	containerdimages "github.com/containerd/containerd/v2/core/images"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// env is one test's containerd and a client in the accel-cri namespace.
type env struct {
	cd     *testContainerd
	client *containerd.Client
	ctx    context.Context
}

func newEnv(t *testing.T) *env {
	t.Helper()
	cd := startContainerd(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	t.Cleanup(cancel)
	return &env{cd: cd, client: cd.client(t), ctx: ctx}
}

func (e *env) service(t *testing.T, opts ...Option) *Service {
	t.Helper()
	s, err := New(e.ctx, e.client, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// records lists containerd's image records: name -> labels.
func (e *env) records(t *testing.T) map[string]map[string]string {
	t.Helper()
	imgs, err := e.client.ImageService().List(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	for _, i := range imgs {
		out[i.Name] = i.Labels
	}
	return out
}

func (e *env) leaseCount(t *testing.T) int {
	t.Helper()
	ls, err := e.client.LeasesService().List(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	return len(ls)
}

func (e *env) snapshotExists(t *testing.T, key string) bool {
	t.Helper()
	_, err := e.client.SnapshotService(DefaultSnapshotter).Stat(e.ctx, key)
	if err != nil && !errdefs.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

func (e *env) contentExists(t *testing.T, dgst string) bool {
	t.Helper()
	_, err := e.client.ContentStore().Info(e.ctx, digest.Digest(dgst))
	if err != nil && !errdefs.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

func chainIDOf(t *testing.T, diffIDs []string) string {
	t.Helper()
	ds := make([]digest.Digest, len(diffIDs))
	for i, d := range diffIDs {
		ds[i] = digest.Digest(d)
	}
	return identity.ChainID(ds).String()
}

func keys(m map[string]map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestPullGetListRemove(t *testing.T) {
	e := newEnv(t)
	reg := startRegistry(t, nil)
	img := randomImage(t, 256<<10, 2)
	p := reg.push("test/foo", "1", img)
	reg.push("test/foo", "2", img)
	s := e.service(t)

	tag1 := reg.host + "/test/foo:1"
	tag2 := reg.host + "/test/foo:2"
	dref := reg.host + "/test/foo@" + p.manifest
	chainID := chainIDOf(t, p.diffIDs)

	got, err := s.Pull(e.ctx, tag1, nil)
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	want := Image{
		ID:          p.config,
		RepoTags:    []string{tag1},
		RepoDigests: []string{dref},
		Size:        uint64(p.size),
		ChainID:     chainID,
		Labels:      map[string]string{ManagedLabel: "true"},
	}
	got.Spec = ocispec.Image{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Pull = %+v\nwant %+v", got, want)
	}
	if recs := keys(e.records(t)); !slices.Equal(recs, slices.Sorted(slices.Values([]string{dref, tag1, p.config}))) {
		t.Errorf("containerd records = %v, want tag, digest and id", recs)
	}
	for n, l := range e.records(t) {
		if l[ManagedLabel] != "true" {
			t.Errorf("record %s labels %v lack %s", n, l, ManagedLabel)
		}
	}
	if !e.snapshotExists(t, chainID) {
		t.Errorf("snapshot %s not unpacked", chainID)
	}
	if n := e.leaseCount(t); n != 0 {
		t.Errorf("%d leases left after pull", n)
	}

	full, err := s.Get(e.ctx, p.config)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(full.Spec.Config.Env, []string{"PATH=/bin", "RANDOM=1"}) || full.Spec.OS != "linux" || len(full.Spec.RootFS.DiffIDs) != 2 {
		t.Errorf("Spec = %+v", full.Spec)
	}

	// Again: nothing to fetch, same answer.
	start := time.Now()
	again, err := s.Pull(e.ctx, tag1, nil)
	if err != nil || again.ID != p.config {
		t.Fatalf("second Pull = %v, %v", again.ID, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second pull took %s", d)
	}
	// Another tag of the same image folds into it.
	got2, err := s.Pull(e.ctx, tag2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got2.ID != p.config || !slices.Equal(got2.RepoTags, []string{tag1, tag2}) {
		t.Errorf("Pull tag 2 = %v %v", got2.ID, got2.RepoTags)
	}

	t.Run("Get", func(t *testing.T) {
		hex := strings.TrimPrefix(p.config, "sha256:")
		for _, ref := range []string{tag1, tag2, dref, p.config, hex, hex[:12], "sha256:" + hex[:12], reg.host + "/test/foo:1@" + p.manifest} {
			img, err := s.Get(e.ctx, ref)
			if err != nil {
				t.Errorf("Get(%q): %v", ref, err)
				continue
			}
			if img.ID != p.config {
				t.Errorf("Get(%q).ID = %s, want %s", ref, img.ID, p.config)
			}
		}
		for _, ref := range []string{reg.host + "/test/foo:3", reg.host + "/test/bar", "sha256:" + hex64, "busybox"} {
			if _, err := s.Get(e.ctx, ref); !errdefs.IsNotFound(err) {
				t.Errorf("Get(%q) = %v, want NotFound", ref, err)
			}
		}
		for _, ref := range []string{"", "Foo:Bar", "foo bar", reg.host + "/test/foo@sha256:short"} {
			if _, err := s.Get(e.ctx, ref); !errdefs.IsInvalidArgument(err) {
				t.Errorf("Get(%q) = %v, want InvalidArgument", ref, err)
			}
		}
		// Callers get copies.
		img, _ := s.Get(e.ctx, tag1)
		img.RepoTags[0] = "changed"
		img.Labels["x"] = "y"
		img.Spec.Config.Env[0] = "changed"
		img2, _ := s.Get(e.ctx, tag1)
		if img2.RepoTags[0] != tag1 || img2.Labels["x"] != "" || img2.Spec.Config.Env[0] != "PATH=/bin" {
			t.Errorf("Get returned the index itself: %+v", img2)
		}
	})

	t.Run("List", func(t *testing.T) {
		for _, tc := range []struct {
			filter string
			want   int
		}{
			{"", 1},
			{tag1, 1},
			{dref, 1},
			{p.config, 1},
			{strings.TrimPrefix(p.config, "sha256:")[:8], 1},
			{reg.host + "/test/foo", 1}, // repository: every tag
			{reg.host + "/test/foo:9", 0},
			{reg.host + "/test/other", 0},
			{"sha256:" + hex64, 0},
		} {
			list, err := s.List(e.ctx, tc.filter)
			if err != nil {
				t.Errorf("List(%q): %v", tc.filter, err)
				continue
			}
			if len(list) != tc.want {
				t.Errorf("List(%q) = %d images, want %d", tc.filter, len(list), tc.want)
			}
			for _, img := range list {
				if img.ID != p.config {
					t.Errorf("List(%q) has %s", tc.filter, img.ID)
				}
			}
		}
		if _, err := s.List(e.ctx, "Not A Ref"); !errdefs.IsInvalidArgument(err) {
			t.Errorf("List(malformed) = %v, want InvalidArgument", err)
		}
	})

	t.Run("FsUsage", func(t *testing.T) {
		u, err := s.FsUsage(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantMP := filepath.Join(e.cd.root, "io.containerd.snapshotter.v1.overlayfs")
		if u.Mountpoint != wantMP {
			t.Errorf("Mountpoint = %q, want %q (from containerd)", u.Mountpoint, wantMP)
		}
		if u.UsedBytes < 2*256<<10 || u.InodesUsed < 4 {
			t.Errorf("FsUsage = %+v, less than the two unpacked layers", u)
		}
	})

	t.Run("Remove", func(t *testing.T) {
		if err := s.Remove(e.ctx, tag2); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		for _, ref := range []string{tag1, tag2, dref, p.config} {
			if _, err := s.Get(e.ctx, ref); !errdefs.IsNotFound(err) {
				t.Errorf("after Remove, Get(%q) = %v, want NotFound", ref, err)
			}
		}
		if recs := e.records(t); len(recs) != 0 {
			t.Errorf("records left: %v", keys(recs))
		}
		// The last delete was synchronous: garbage collected already.
		if e.snapshotExists(t, chainID) {
			t.Errorf("snapshot %s still there", chainID)
		}
		if e.contentExists(t, p.config) || e.contentExists(t, p.layers[0]) {
			t.Errorf("content still there")
		}
		if list, _ := s.List(e.ctx, ""); len(list) != 0 {
			t.Errorf("List after Remove = %v", list)
		}
		for _, ref := range []string{tag1, p.config, "sha256:" + hex64, "never-pulled"} {
			if err := s.Remove(e.ctx, ref); err != nil {
				t.Errorf("Remove(%q) again = %v, want nil", ref, err)
			}
		}
		if err := s.Remove(e.ctx, "Bad Ref"); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Remove(malformed) = %v, want InvalidArgument", err)
		}
	})
}

func TestPullByDigestAndIndex(t *testing.T) {
	e := newEnv(t)
	reg := startRegistry(t, nil)
	s := e.service(t)

	p := reg.push("test/bydigest", "1", randomImage(t, 32<<10, 1))
	dref := reg.host + "/test/bydigest@" + p.manifest
	got, err := s.Pull(e.ctx, dref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != p.config || len(got.RepoTags) != 0 || !slices.Equal(got.RepoDigests, []string{dref}) {
		t.Errorf("Pull by digest = %+v", got)
	}
	if recs := keys(e.records(t)); !slices.Equal(recs, []string{dref, p.config}) {
		t.Errorf("records = %v", recs)
	}

	// A multi-platform index: the id is this platform's config, the repo
	// digest the index's.
	index, pi := reg.pushIndex("test/multi", "1", randomImage(t, 32<<10, 1))
	got, err = s.Pull(e.ctx, reg.host+"/test/multi:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != pi.config || !slices.Equal(got.RepoDigests, []string{reg.host + "/test/multi@" + index}) {
		t.Errorf("Pull index = %+v, want id %s digest %s", got, pi.config, index)
	}
	if got.Size <= uint64(pi.size) {
		t.Errorf("Size = %d, want the image's %d plus the index", got.Size, pi.size)
	}
	if got.ChainID != chainIDOf(t, pi.diffIDs) {
		t.Errorf("ChainID = %s", got.ChainID)
	}
}

func TestPullConcurrentSameImage(t *testing.T) {
	e := newEnv(t)
	reg := startRegistry(t, nil)
	p := reg.push("test/conc", "1", randomImage(t, 512<<10, 2))
	s := e.service(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	ids := make([]string, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			img, err := s.Pull(e.ctx, reg.host+"/test/conc:1", nil)
			ids[i], errs[i] = img.ID, err
		}()
	}
	wg.Wait()
	for i := range errs {
		if errs[i] != nil || ids[i] != p.config {
			t.Errorf("pull %d = %s, %v", i, ids[i], errs[i])
		}
	}
	if list, _ := s.List(e.ctx, ""); len(list) != 1 || len(list[0].RepoTags) != 1 {
		t.Errorf("List = %+v", list)
	}
	if n := e.leaseCount(t); n != 0 {
		t.Errorf("%d leases left", n)
	}
}

func TestPullAuth(t *testing.T) {
	e := newEnv(t)
	reg := startRegistry(t, basicAuth("alice", "s3cret", "good-token"))
	p := reg.push("private/app", "1", randomImage(t, 16<<10, 1))
	s := e.service(t)
	ref := reg.host + "/private/app:1"

	for _, tc := range []struct {
		desc  string
		auth  *AuthConfig
		check func(error) bool
		want  string
	}{
		{desc: "anonymous", auth: nil, check: errdefs.IsUnauthorized, want: "Unauthenticated"},
		{desc: "wrong password", auth: &AuthConfig{Username: "alice", Password: "nope"}, check: errdefs.IsUnauthorized, want: "Unauthenticated"},
		{desc: "username and password", auth: &AuthConfig{Username: "alice", Password: "s3cret"}},
		{desc: "auth field", auth: &AuthConfig{Auth: b64("alice:s3cret")}},
		{desc: "server address of this registry", auth: &AuthConfig{Username: "alice", Password: "s3cret", ServerAddress: "http://" + reg.host}},
		{desc: "server address of another registry: creds withheld", auth: &AuthConfig{Username: "alice", Password: "s3cret", ServerAddress: "quay.io"}, check: errdefs.IsUnauthorized, want: "Unauthenticated"},
		{desc: "registry token", auth: &AuthConfig{RegistryToken: "good-token"}},
		{desc: "wrong registry token", auth: &AuthConfig{RegistryToken: "bad-token"}, check: errdefs.IsUnauthorized, want: "Unauthenticated"},
		{desc: "bad base64", auth: &AuthConfig{Auth: "%%%"}, check: errdefs.IsInvalidArgument, want: "InvalidArgument"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			before := reg.requestCount()
			img, err := s.Pull(e.ctx, ref, tc.auth)
			if tc.check == nil {
				if err != nil || img.ID != p.config {
					t.Fatalf("Pull = %s, %v", img.ID, err)
				}
				return
			}
			if !tc.check(err) {
				t.Fatalf("Pull = %v, want %s", err, tc.want)
			}
			if tc.want == "InvalidArgument" && reg.requestCount() != before {
				t.Errorf("bad auth reached the registry")
			}
		})
	}
	// The registry's answer stays inspectable under the class.
	_, err := s.Pull(e.ctx, ref, &AuthConfig{Username: "alice", Password: "nope"})
	var status remoteerrors.ErrUnexpectedStatus
	if !errors.As(err, &status) || status.StatusCode != 401 {
		t.Errorf("wrong password error %v does not carry the 401", err)
	}
	if n := e.leaseCount(t); n != 0 {
		t.Errorf("%d leases left", n)
	}
}

func TestPullTokenAuth(t *testing.T) {
	e := newEnv(t)
	reg := startRegistry(t, tokenAuth("bob", "pw", "refresh-1", "access-1"))
	p := reg.push("private/tok", "1", randomImage(t, 16<<10, 1))
	s := e.service(t)
	ref := reg.host + "/private/tok:1"
	for _, tc := range []struct {
		desc string
		auth *AuthConfig
		ok   bool
	}{
		{desc: "identity token", auth: &AuthConfig{Username: "<token>", IdentityToken: "refresh-1"}, ok: true},
		{desc: "password grant", auth: &AuthConfig{Username: "bob", Password: "pw"}, ok: true},
		{desc: "wrong identity token", auth: &AuthConfig{IdentityToken: "refresh-2"}},
		{desc: "wrong password", auth: &AuthConfig{Username: "bob", Password: "x"}},
		{desc: "anonymous", auth: nil},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			img, err := s.Pull(e.ctx, ref, tc.auth)
			if tc.ok {
				if err != nil || img.ID != p.config {
					t.Fatalf("Pull = %s, %v", img.ID, err)
				}
				return
			}
			if !errdefs.IsUnauthorized(err) {
				t.Fatalf("Pull = %v, want Unauthenticated", err)
			}
		})
	}
}

func TestPullErrors(t *testing.T) {
	e := newEnv(t)
	reg := startRegistry(t, nil)
	s := e.service(t)

	t.Run("unreachable registry", func(t *testing.T) {
		_, err := s.Pull(e.ctx, closedAddr(t)+"/test/x:1", nil)
		if !errdefs.IsUnavailable(err) {
			t.Fatalf("Pull = %v, want Unavailable", err)
		}
	})
	t.Run("unknown image", func(t *testing.T) {
		_, err := s.Pull(e.ctx, reg.host+"/test/nope:1", nil)
		if !errdefs.IsNotFound(err) {
			t.Fatalf("Pull = %v, want NotFound", err)
		}
		_, err = s.Pull(e.ctx, reg.host+"/test/nope@sha256:"+hex64, nil)
		if !errdefs.IsNotFound(err) {
			t.Fatalf("Pull by digest = %v, want NotFound", err)
		}
	})
	t.Run("malformed references", func(t *testing.T) {
		before := reg.requestCount()
		// Careful: "UPPER/x" is valid (an upper-case first component is a
		// registry host) and would send a DNS query; these all fail to parse.
		for _, ref := range []string{"", "upper/Case:1", "a b", reg.host + "/x:", reg.host + "/x@sha256:12", "sha256:" + hex64, "-x"} {
			_, err := s.Pull(e.ctx, ref, nil)
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("Pull(%q) = %v, want InvalidArgument", ref, err)
			}
		}
		if reg.requestCount() != before {
			t.Errorf("malformed refs reached the registry")
		}
	})
	if recs := e.records(t); len(recs) != 0 {
		t.Errorf("failed pulls left records: %v", keys(recs))
	}
	if n := e.leaseCount(t); n != 0 {
		t.Errorf("failed pulls left %d leases", n)
	}
	if list, _ := s.List(e.ctx, ""); len(list) != 0 {
		t.Errorf("failed pulls are listed: %v", list)
	}
}

func TestPullProgressTimeout(t *testing.T) {
	e := newEnv(t)
	img := randomImage(t, 1<<20, 1)
	p := describeImage(t, img)
	stalled := make(chan string, 1)
	release := make(chan struct{})
	reg := startRegistry(t, stallBlob(map[string]bool{p.layers[0]: true}, stalled, release))
	t.Cleanup(func() { close(release) }) // before the servers close
	reg.push("test/slow", "1", img)

	const timeout = 2 * time.Second
	s := e.service(t, WithPullProgressTimeout(timeout))
	start := time.Now()
	_, err := s.Pull(e.ctx, reg.host+"/test/slow:1", nil)
	elapsed := time.Since(start)
	if !errdefs.IsDeadlineExceeded(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Pull = %v, want DeadlineExceeded", err)
	}
	if errdefs.IsCanceled(err) {
		t.Errorf("%v also matches Canceled", err)
	}
	if !strings.Contains(err.Error(), timeout.String()) {
		t.Errorf("error %q does not name the timeout", err)
	}
	select {
	case <-stalled:
	default:
		t.Fatal("the registry never stalled a blob: the test tests nothing")
	}
	if elapsed < timeout || elapsed > timeout+8*time.Second {
		t.Errorf("stalled pull failed after %s, want a little over %s", elapsed, timeout)
	}
	if recs := e.records(t); len(recs) != 0 {
		t.Errorf("stalled pull left records: %v", keys(recs))
	}
	if n := e.leaseCount(t); n != 0 {
		t.Errorf("stalled pull left %d leases", n)
	}
}

func TestPullMirror(t *testing.T) {
	e := newEnv(t)
	mirror := startRegistry(t, nil)
	p := mirror.push("library/foo", "1", randomImage(t, 16<<10, 1))
	// docker.io goes to the mirrors; its own server is a closed local port,
	// so a miss fails here instead of leaving the machine.
	hostsToml := `server = "http://%s"

[host."http://%s"]
  capabilities = ["pull", "resolve"]
`
	hostsDir := writeHostsToml(t, "docker.io", fmt.Sprintf(hostsToml, closedAddr(t), mirror.host))
	s := e.service(t, WithRegistryConfigDir(hostsDir))

	got, err := s.Pull(e.ctx, "docker.io/library/foo:1", nil)
	if err != nil {
		t.Fatalf("Pull via mirror: %v", err)
	}
	if got.ID != p.config || !slices.Equal(got.RepoTags, []string{"docker.io/library/foo:1"}) ||
		!slices.Equal(got.RepoDigests, []string{"docker.io/library/foo@" + p.manifest}) {
		t.Errorf("Pull via mirror = %+v", got)
	}
	if mirror.requestCount() == 0 {
		t.Error("the mirror saw no request")
	}
	if img, err := s.Get(e.ctx, "foo:1"); err != nil || img.ID != p.config {
		t.Errorf("Get(familiar) = %v, %v", img.ID, err)
	}

	// docker.io credentials are for docker.io, not for a mirror: a mirror
	// that wants credentials gets none.
	authMirror := startRegistry(t, basicAuth("alice", "pw", ""))
	pb := authMirror.push("library/bar", "1", randomImage(t, 16<<10, 1))
	authDir := writeHostsToml(t, "docker.io", fmt.Sprintf(hostsToml, closedAddr(t), authMirror.host))
	sa := e.service(t, WithRegistryConfigDir(authDir))
	_, err = sa.Pull(e.ctx, "bar:1", &AuthConfig{Username: "alice", Password: "pw"})
	if !errdefs.IsUnauthorized(err) {
		t.Errorf("Pull with docker.io creds from an auth mirror = %v, want Unauthenticated (creds withheld)", err)
	}
	// The mirror's own credentials work when the image is pulled from it by name.
	img, err := sa.Pull(e.ctx, authMirror.host+"/library/bar:1", &AuthConfig{Username: "alice", Password: "pw"})
	if err != nil || img.ID != pb.config {
		t.Errorf("Pull from the auth registry directly = %v, %v", img.ID, err)
	}
}

// writeHostsToml writes <dir>/<host>/hosts.toml and returns dir.
func writeHostsToml(t *testing.T, host, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, host), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, host, "hosts.toml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestIndexRebuild(t *testing.T) {
	e := newEnv(t)
	reg := startRegistry(t, nil)
	imgA := randomImage(t, 16<<10, 1)
	pa := reg.push("test/a", "1", imgA)
	reg.push("test/a", "2", imgA)
	pb := reg.push("test/b", "1", randomImage(t, 16<<10, 1))
	pc := reg.push("test/c", "1", randomImage(t, 16<<10, 1))

	pinB := reg.host + "/test/b@" + pb.manifest
	s1 := e.service(t, WithPinnedImages(pinB))
	for _, ref := range []string{reg.host + "/test/a:1", reg.host + "/test/a:2", reg.host + "/test/b@" + pb.manifest, reg.host + "/test/c:1"} {
		if _, err := s1.Pull(e.ctx, ref, nil); err != nil {
			t.Fatal(err)
		}
	}
	list1, _ := s1.List(e.ctx, "")

	// A record that names missing content does not stop New.
	_, err := e.client.ImageService().Create(e.ctx, containerdimages.Image{
		Name:   "docker.io/library/broken:1",
		Target: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.Digest("sha256:" + hex64), Size: 100},
	})
	if err != nil {
		t.Fatal(err)
	}

	// A second service over a new client, as after a restart.
	client2 := e.cd.client(t)
	s2, err := New(e.ctx, client2, WithPinnedImages(pinB))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	list2, _ := s2.List(e.ctx, "")
	if !reflect.DeepEqual(list1, list2) {
		t.Errorf("rebuilt index differs:\n%+v\nwant\n%+v", list2, list1)
	}
	if len(list2) != 3 {
		t.Errorf("rebuilt %d images, want 3", len(list2))
	}
	a, err := s2.Get(e.ctx, pa.config)
	if err != nil || len(a.RepoTags) != 2 {
		t.Errorf("Get(a by id) = %+v, %v", a, err)
	}
	b, err := s2.Get(e.ctx, pb.config)
	if err != nil || !b.Pinned {
		t.Errorf("Get(b) = %+v, %v; want pinned", b, err)
	}

	// An image that only has a tag record (imported with ctr, say) gets its
	// id record on start and is then found by id.
	is := e.client.ImageService()
	for _, n := range []string{pc.config, reg.host + "/test/c@" + pc.manifest} {
		if err := is.Delete(e.ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	s3, err := New(e.ctx, e.client)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s3.Get(e.ctx, pc.config)
	if err != nil || !slices.Equal(c.RepoTags, []string{reg.host + "/test/c:1"}) {
		t.Errorf("Get(c by id) = %+v, %v", c, err)
	}
	if l, ok := e.records(t)[pc.config]; !ok || l[ManagedLabel] != "true" {
		t.Errorf("id record of c not recreated: %v", keys(e.records(t)))
	}
	if b, _ := s3.Get(e.ctx, pb.config); b.Pinned {
		t.Errorf("b pinned without WithPinnedImages")
	}
}

func TestPinned(t *testing.T) {
	e := newEnv(t)
	reg := startRegistry(t, nil)
	pp := reg.push("test/pause", "3.10", randomImage(t, 8<<10, 1))
	po := reg.push("test/other", "1", randomImage(t, 8<<10, 1))
	s := e.service(t, WithPinnedImages(reg.host+"/test/pause:3.10"), WithPinnedImages(po.config))
	pause, err := s.Pull(e.ctx, reg.host+"/test/pause:3.10", nil)
	if err != nil || !pause.Pinned {
		t.Errorf("pinned by tag: %+v, %v", pause, err)
	}
	other, err := s.Pull(e.ctx, reg.host+"/test/other:1", nil)
	if err != nil || !other.Pinned {
		t.Errorf("pinned by id: %+v, %v", other, err)
	}
	unpinned := e.service(t)
	if img, _ := unpinned.Get(e.ctx, pp.config); img.Pinned {
		t.Errorf("pinned without option")
	}
	// Familiar names are normalized.
	if _, err := New(e.ctx, e.client, WithPinnedImages("pause")); err != nil {
		t.Errorf("New(pinned familiar name) = %v", err)
	}
	if _, err := New(e.ctx, e.client, WithPinnedImages("Not Valid")); !errdefs.IsInvalidArgument(err) {
		t.Errorf("New(bad pinned ref) = %v, want InvalidArgument", err)
	}
}

// buildPause builds a static binary that waits for SIGTERM.
func buildPause(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	src := `package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", "pause", "main.go")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build pause: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "pause"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRemoveKeepsRunningContainer(t *testing.T) {
	e := newEnv(t)
	reg := startRegistry(t, nil)
	pauseBin := buildPause(t)
	p := reg.push("test/pause", "1", fileImage(t, map[string][]byte{"pause": pauseBin}, v1.Config{Entrypoint: []string{"/pause"}}))
	s := e.service(t)
	ref := reg.host + "/test/pause:1"
	if _, err := s.Pull(e.ctx, ref, nil); err != nil {
		t.Fatal(err)
	}

	cimg, err := e.client.GetImage(e.ctx, p.config) // the id record
	if err != nil {
		t.Fatal(err)
	}
	const id = "acri-img-remove-test"
	ctr, err := e.client.NewContainer(e.ctx, id,
		containerd.WithSnapshotter(DefaultSnapshotter),
		containerd.WithNewSnapshot(id, cimg),
		containerd.WithNewSpec(oci.WithImageConfig(cimg)),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.WithoutCancel(e.ctx)
		if err := ctr.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
			t.Errorf("delete container: %v", err)
		}
	})
	task, err := ctr.NewTask(e.ctx, cio.NullIO)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.WithoutCancel(e.ctx)
		exit, err := task.Wait(ctx)
		if err != nil {
			t.Errorf("wait: %v", err)
			return
		}
		_ = task.Kill(ctx, syscall.SIGTERM)
		select {
		case <-exit:
		case <-time.After(10 * time.Second):
			_ = task.Kill(ctx, syscall.SIGKILL)
			<-exit
		}
		if _, err := task.Delete(ctx); err != nil {
			t.Errorf("delete task: %v", err)
		}
	})
	if err := task.Start(e.ctx); err != nil {
		t.Fatal(err)
	}

	if err := s.Remove(e.ctx, ref); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := s.Get(e.ctx, p.config); !errdefs.IsNotFound(err) {
		t.Errorf("Get after Remove = %v", err)
	}
	st, err := task.Status(e.ctx)
	if err != nil || st.Status != containerd.Running {
		t.Fatalf("task after Remove: %+v, %v", st, err)
	}
	// The container's root filesystem still works.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/pause", task.Pid()))
	if err != nil || len(b) != len(pauseBin) {
		t.Errorf("read the container's /pause: %d bytes, %v", len(b), err)
	}
	if !e.snapshotExists(t, id) {
		t.Errorf("container snapshot %s gone", id)
	}
	if !e.snapshotExists(t, chainIDOf(t, p.diffIDs)) {
		t.Errorf("parent snapshot of a container gone")
	}
}

func TestTagMovesToNewImage(t *testing.T) {
	e := newEnv(t)
	reg := startRegistry(t, nil)
	s := e.service(t)
	tag := reg.host + "/test/mv:1"
	p1 := reg.push("test/mv", "1", randomImage(t, 8<<10, 1))
	if _, err := s.Pull(e.ctx, tag, nil); err != nil {
		t.Fatal(err)
	}
	p2 := reg.push("test/mv", "1", randomImage(t, 8<<10, 1))
	got, err := s.Pull(e.ctx, tag, nil)
	if err != nil || got.ID != p2.config {
		t.Fatalf("Pull after the tag moved = %s, %v; want %s", got.ID, err, p2.config)
	}
	if img, err := s.Get(e.ctx, tag); err != nil || img.ID != p2.config {
		t.Errorf("Get(tag) = %s, %v", img.ID, err)
	}
	// The old image stays, untagged, found by id and digest.
	old, err := s.Get(e.ctx, p1.config)
	if err != nil || len(old.RepoTags) != 0 || !slices.Equal(old.RepoDigests, []string{reg.host + "/test/mv@" + p1.manifest}) {
		t.Errorf("old image = %+v, %v", old, err)
	}
	if list, _ := s.List(e.ctx, ""); len(list) != 2 {
		t.Errorf("List = %d images, want 2", len(list))
	}
	// Removing the old one leaves the new one whole.
	if err := s.Remove(e.ctx, p1.config); err != nil {
		t.Fatal(err)
	}
	if img, err := s.Get(e.ctx, tag); err != nil || img.ID != p2.config {
		t.Errorf("Get(tag) after removing the old image = %s, %v", img.ID, err)
	}
	if recs := keys(e.records(t)); len(recs) != 3 {
		t.Errorf("records = %v, want the new image's three", recs)
	}
	if !e.snapshotExists(t, chainIDOf(t, p2.diffIDs)) {
		t.Error("new image's snapshot gone")
	}
}

func TestPullLeavesNoGoroutines(t *testing.T) {
	e := newEnv(t)
	reg := startRegistry(t, nil)
	reg.push("test/g", "1", randomImage(t, 64<<10, 2))
	s := e.service(t, WithPullProgressTimeout(time.Minute))
	ref := reg.host + "/test/g:1"
	// Warm up: the gRPC connection's own goroutines.
	if _, err := s.Pull(e.ctx, ref, nil); err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	for range 4 {
		if _, err := s.Pull(e.ctx, ref, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Pull(e.ctx, reg.host+"/test/missing:1", nil); !errdefs.IsNotFound(err) {
		t.Fatal(err)
	}
	// Connection goroutines end a moment after their connection closes.
	deadline := time.Now().Add(5 * time.Second)
	n := runtime.NumGoroutine()
	for n > base && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	if n > base {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after 5 pulls, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}
