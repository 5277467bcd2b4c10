package testimages

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// critestRefs is every image critest v1.37.0 pulls (pkg/validate/consts.go,
// pkg/framework/util.go and the spec files), the tag critest adds included,
// except test-image-digest (pinned by its upstream digest) and the Windows
// images.
var critestRefs = []string{
	"gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-1:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-2:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-3:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-latest:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-tag:all",
	"gcr.io/k8s-staging-cri-tools/test-image-tag:test",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:1",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:2",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:3",
	"gcr.io/k8s-staging-cri-tools/test-image-user-uid-group:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-user-uid:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-user-username-group:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-user-username:latest",
	"k8s.gcr.io/pause:3.9",
	"registry.k8s.io/e2e-test-images/busybox:1.29-2",
	"registry.k8s.io/e2e-test-images/httpd:2.4.39-4",
	"registry.k8s.io/e2e-test-images/nginx:1.14-2",
	"registry.k8s.io/e2e-test-images/nonewprivs:1.3",
	"registry.k8s.io/pause:3.10.1", // accel-cri's sandbox image
	"registry.k8s.io/pause:3.9",
}

var (
	critestOnce sync.Once
	critestImgs []CritestImage
	critestErr  error
)

// critestImages builds the stand-ins once for all tests of the package.
func critestImages(t *testing.T) map[string]v1.Image {
	t.Helper()
	if _, err := os.Stat(DefaultDynamicBusyboxPath); err != nil {
		t.Fatalf("%v: run hack/install-deps.sh --test", err)
	}
	critestOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		root, err := FindModuleRoot(".")
		if err != nil {
			critestErr = err
			return
		}
		dir, err := os.MkdirTemp("", "critest-images-")
		if err != nil {
			critestErr = err
			return
		}
		defer os.RemoveAll(dir)
		opts := CritestOptions{Busybox: DefaultDynamicBusyboxPath}
		if opts.Standin, critestErr = BuildStandin(ctx, root, dir); critestErr != nil {
			return
		}
		if opts.Pause39, critestErr = BuildPauseVersion(ctx, root, filepath.Join(dir, "3.9"), CritestPause39); critestErr != nil {
			return
		}
		if opts.Pause3101, critestErr = BuildPauseVersion(ctx, root, filepath.Join(dir, "3.10.1"), CritestPause3101); critestErr != nil {
			return
		}
		critestImgs, critestErr = CritestImages(ctx, opts)
	})
	if critestErr != nil {
		t.Fatal(critestErr)
	}
	out := map[string]v1.Image{}
	for _, im := range critestImgs {
		if _, dup := out[im.Ref]; dup {
			t.Fatalf("%s built twice", im.Ref)
		}
		out[im.Ref] = im.Image
	}
	return out
}

// layerFiles reads every layer of img; a later layer's entry replaces an
// earlier one of the same name.
func layerFiles(t *testing.T, img v1.Image) (map[string]entry, int) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]entry{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out[strings.TrimSuffix(hdr.Name, "/")] = entry{hdr: hdr, data: data}
		}
		rc.Close()
	}
	return out, len(layers)
}

func digestOf(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestCritestImageSet(t *testing.T) {
	imgs := critestImages(t)
	var got []string
	for r := range imgs {
		got = append(got, r)
	}
	slices.Sort(got)
	if !slices.Equal(got, critestRefs) {
		t.Fatalf("stand-ins for\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(critestRefs, "\n"))
	}

	// critest: the three test-image-tags tags and the two pause:3.9 names are
	// one image; every other pair differs (listImage wants 3 ids for
	// test-image-1..3; "image status should support all kinds of references"
	// wants test-image-tag:all to carry no other tag).
	same := [][]string{
		{"gcr.io/k8s-staging-cri-tools/test-image-tags:1", "gcr.io/k8s-staging-cri-tools/test-image-tags:2", "gcr.io/k8s-staging-cri-tools/test-image-tags:3"},
		{"k8s.gcr.io/pause:3.9", "registry.k8s.io/pause:3.9"},
	}
	group := map[string]int{}
	for i, g := range same {
		for _, r := range g {
			group[r] = i + 1
		}
	}
	seen := map[string]string{}
	for _, r := range critestRefs {
		d := digestOf(t, imgs[r])
		if other, ok := seen[d]; ok {
			if group[r] == 0 || group[r] != group[other] {
				t.Errorf("%s and %s are the same image %s", r, other, d)
			}
			continue
		}
		seen[d] = r
	}
	for _, g := range same {
		for _, r := range g[1:] {
			if digestOf(t, imgs[r]) != digestOf(t, imgs[g[0]]) {
				t.Errorf("%s and %s differ", r, g[0])
			}
		}
	}
}

func TestCritestImageConfigs(t *testing.T) {
	imgs := critestImages(t)
	const gcr = "gcr.io/k8s-staging-cri-tools/"
	for _, tc := range []struct {
		ref                    string
		entrypoint, cmd        []string
		user, stopSignal, wdir string
		layers                 int
		files                  map[string]string // path -> content it contains
		setuid, ownedBy1000    string
		exposed                string
	}{
		{ref: "registry.k8s.io/e2e-test-images/busybox:1.29-2", cmd: []string{"sh"}, layers: 1},
		{ref: "registry.k8s.io/e2e-test-images/nginx:1.14-2", cmd: []string{"nginx", "-g", "daemon off;"}, stopSignal: "SIGTERM", layers: 2,
			files: map[string]string{"etc/nginx/conf.d/default.conf": "listen       80;", "usr/share/nginx/html/index.html": "Welcome to nginx!", "usr/sbin/nginx": "\x7fELF"}, exposed: "80/tcp"},
		{ref: gcr + "hostnet-nginx-amd64:latest", cmd: []string{"nginx", "-g", "daemon off;"}, stopSignal: "SIGQUIT", layers: 2,
			files: map[string]string{"etc/nginx/conf.d/default.conf": "listen       12003;"}},
		{ref: "registry.k8s.io/e2e-test-images/httpd:2.4.39-4", cmd: []string{"httpd-foreground"}, stopSignal: "SIGWINCH", wdir: "/usr/local/apache2", layers: 2,
			files: map[string]string{"usr/local/apache2/conf/httpd.conf": "Listen 80", "usr/local/apache2/htdocs/index.html": "It works!", "usr/local/bin/httpd-foreground": "\x7fELF"}, exposed: "80/tcp"},
		{ref: "registry.k8s.io/e2e-test-images/nonewprivs:1.3", entrypoint: []string{"/usr/local/bin/nnp"}, layers: 2, setuid: "usr/local/bin/nnp"},
		{ref: gcr + "test-image-user-uid:latest", cmd: []string{"sh"}, user: "1002", layers: 1},
		{ref: gcr + "test-image-user-username:latest", cmd: []string{"sh"}, user: "www-data", layers: 1},
		{ref: gcr + "test-image-user-uid-group:latest", cmd: []string{"sh"}, user: "1003:1004", layers: 1},
		{ref: gcr + "test-image-user-username-group:latest", cmd: []string{"sh"}, user: "www-data:1004", layers: 1},
		{ref: gcr + "test-image-predefined-group:latest", cmd: []string{"sh"}, user: "1000", layers: 2, ownedBy1000: "home/default-user",
			files: map[string]string{"etc/passwd": "\ndefault-user:x:1000:1000:", "etc/group": "\ngroup-defined-in-image:x:50000:default-user\n"}},
		{ref: gcr + "test-image-1:latest", cmd: []string{"sh"}, layers: 2, files: map[string]string{"test-image-1": ""}},
		{ref: gcr + "test-image-latest:latest", cmd: []string{"sh"}, layers: 2, files: map[string]string{"test-image-latest": ""}},
		{ref: gcr + "test-image-tag:test", cmd: []string{"sh"}, layers: 2, files: map[string]string{"test": ""}},
		{ref: gcr + "test-image-tag:all", cmd: []string{"sh"}, layers: 2, files: map[string]string{"all": ""}},
		{ref: gcr + "test-image-tags:2", cmd: []string{"sh"}, layers: 2, files: map[string]string{"same-image": ""}},
		{ref: "registry.k8s.io/pause:3.9", entrypoint: []string{"/pause"}, user: "65535:65535", layers: 1, files: map[string]string{"pause": "3.9"}},
		{ref: "registry.k8s.io/pause:3.10.1", entrypoint: []string{"/pause"}, user: "65535:65535", layers: 1, files: map[string]string{"pause": "3.10.1"}},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			img := imgs[tc.ref]
			if img == nil {
				t.Fatal("not built")
			}
			cf := checkPlatform(t, img)
			c := cf.Config
			if !slices.Equal(c.Entrypoint, tc.entrypoint) || !slices.Equal(c.Cmd, tc.cmd) {
				t.Errorf("Entrypoint %q Cmd %q, want %q %q", c.Entrypoint, c.Cmd, tc.entrypoint, tc.cmd)
			}
			if c.User != tc.user || c.StopSignal != tc.stopSignal || c.WorkingDir != tc.wdir {
				t.Errorf("User %q StopSignal %q WorkingDir %q, want %q %q %q", c.User, c.StopSignal, c.WorkingDir, tc.user, tc.stopSignal, tc.wdir)
			}
			if _, ok := c.ExposedPorts[tc.exposed]; tc.exposed != "" && !ok {
				t.Errorf("ExposedPorts %v lack %s", c.ExposedPorts, tc.exposed)
			}
			files, n := layerFiles(t, img)
			if n != tc.layers {
				t.Errorf("%d layers, want %d", n, tc.layers)
			}
			for p, want := range tc.files {
				e, ok := files[p]
				if !ok || e.hdr.Typeflag != tar.TypeReg || !bytes.Contains(e.data, []byte(want)) {
					t.Errorf("%s missing or without %q", p, want)
				}
			}
			if tc.setuid != "" {
				if e := files[tc.setuid]; e.hdr == nil || e.hdr.Mode != 0o4755 || e.hdr.Uid != 0 {
					t.Errorf("%s is not setuid root: %+v", tc.setuid, e.hdr)
				}
			}
			if tc.ownedBy1000 != "" {
				if e := files[tc.ownedBy1000]; e.hdr == nil || e.hdr.Uid != 1000 || e.hdr.Gid != 1000 {
					t.Errorf("%s not owned by 1000:1000: %+v", tc.ownedBy1000, e.hdr)
				}
			}
		})
	}
}

// TestCritestBusyboxLayer checks what critest's specs need of the busybox
// stand-in's files.
func TestCritestBusyboxLayer(t *testing.T) {
	imgs := critestImages(t)
	files, _ := layerFiles(t, imgs["registry.k8s.io/e2e-test-images/busybox:1.29-2"])
	first := files["bin/["]
	if first.hdr == nil || first.hdr.Typeflag != tar.TypeReg {
		t.Fatalf("bin/[ is not busybox's regular file: %+v", first.hdr)
	}
	// Hard links, not symlinks: runc masks /bin/ls (MaskedPaths) by mounting
	// over the path, which must not hit busybox itself.
	for _, a := range []string{"sh", "ls", "busybox", "top", "sleep", "echo", "id", "hostname", "cat", "touch", "ping", "brctl",
		"netstat", "pidof", "mount", "dd", "grep", "chmod", "seq", "sync", "mkdir"} {
		if e := files["bin/"+a]; e.hdr == nil || e.hdr.Typeflag != tar.TypeLink || e.hdr.Linkname != "bin/[" {
			t.Errorf("bin/%s is not a hard link to bin/[: %+v", a, e.hdr)
		}
	}
	for _, a := range []string{"pgrep", "ipcs"} {
		if e := files["bin/"+a]; e.hdr == nil || (e.hdr.Typeflag != tar.TypeReg && e.hdr.Typeflag != tar.TypeLink) {
			t.Errorf("no bin/%s: %+v", a, e.hdr)
		}
	}
	if e := files["lib64/ld-linux-x86-64.so.2"]; e.hdr == nil || len(e.data) == 0 {
		t.Error("no dynamic loader in the image")
	}
	for p, want := range map[string]string{
		"etc/passwd":        "nobody:x:65534:65534:",
		"etc/group":         "www-data:x:33:",
		"etc/nsswitch.conf": "passwd: files",
	} {
		if !strings.Contains(string(files[p].data), want) {
			t.Errorf("%s lacks %q", p, want)
		}
	}
	if !strings.Contains(string(files["etc/passwd"].data), "www-data:x:33:33:") {
		t.Error("etc/passwd lacks www-data")
	}
}

// extract writes the layers of img into dir, hard links included.
func extract(t *testing.T, img v1.Image, dir string) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, hdr.Name)
			os.Remove(p) // a later layer replaces a file
			switch hdr.Typeflag {
			case tar.TypeDir:
				err = os.MkdirAll(p, os.FileMode(hdr.Mode&0o777))
			case tar.TypeLink:
				err = os.Link(filepath.Join(dir, hdr.Linkname), p)
			case tar.TypeSymlink:
				err = os.Symlink(hdr.Linkname, p)
			case tar.TypeReg:
				var b []byte
				if b, err = io.ReadAll(tr); err == nil {
					err = os.WriteFile(p, b, os.FileMode(hdr.Mode&0o777))
				}
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		rc.Close()
	}
}

// TestCritestBusyboxRuns runs the busybox stand-in's shell in a chroot of
// its files: its libraries load, users resolve, and a command missing from
// PATH is not found (no applet runs in its place).
func TestCritestBusyboxRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root for chroot")
	}
	imgs := critestImages(t)
	dir := t.TempDir()
	extract(t, imgs["gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest"], dir)
	if err := os.Remove(filepath.Join(dir, "bin/ls")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		script, want string
		fail         bool
	}{
		{script: "echo -n hello", want: "hello"},
		{script: "id -u nobody; id -u www-data; id -G default-user", want: "65534\n33\n1000 50000\n"},
		{script: "ls /", want: "/bin/sh: ls: not found\n", fail: true},
		{script: "pgrep no-such-name; echo $?", want: "1\n"}, // no /proc in the chroot: nothing matches

	} {
		cmd := exec.Command("/bin/sh", "-c", tc.script)
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: dir}
		cmd.Dir = "/"
		cmd.Env = []string{DefaultPath}
		out, err := cmd.CombinedOutput()
		if (err != nil) != tc.fail || string(out) != tc.want {
			t.Errorf("sh -c %q = %q, %v; want %q (fail %v)", tc.script, out, err, tc.want, tc.fail)
		}
	}
}

func TestCheckPathShell(t *testing.T) {
	err := checkPathShell(DefaultBusyboxPath)
	if err == nil || !strings.Contains(err.Error(), "FEATURE_SH_STANDALONE") {
		t.Errorf("busybox-static accepted: %v", err)
	}
	if err := checkPathShell(DefaultDynamicBusyboxPath); err != nil {
		t.Errorf("%s: %v (run hack/install-deps.sh --test)", DefaultDynamicBusyboxPath, err)
	}
	if err := checkPathShell("/etc/passwd"); err == nil {
		t.Error("a text file accepted as busybox")
	}
}

func TestMirrorRef(t *testing.T) {
	for _, tc := range []struct{ ref, want string }{
		{"registry.k8s.io/pause:3.9", "127.0.0.1:5000/registry.k8s.io/pause:3.9"},
		{"k8s.gcr.io/pause:3.9", "127.0.0.1:5000/k8s.gcr.io/pause:3.9"},
		{"gcr.io/k8s-staging-cri-tools/test-image-tags:1", "127.0.0.1:5000/gcr.io/k8s-staging-cri-tools/test-image-tags:1"},
		{"registry.k8s.io/e2e-test-images/busybox:1.29-2", "127.0.0.1:5000/registry.k8s.io/e2e-test-images/busybox:1.29-2"},
		{"busybox:1.29", ""},          // no registry host
		{"registry.k8s.io/pause", ""}, // no tag
		{"registry.k8s.io/pause@sha256:" + strings.Repeat("a", 64), ""},
	} {
		got, err := MirrorRef("127.0.0.1:5000", tc.ref)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("MirrorRef(%q) = %q, %v; want %q", tc.ref, got, err, tc.want)
		}
	}
}

func TestLayerTarHardLinks(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		files []file
		ok    bool
	}{
		{"link after its target", []file{{name: "a", data: []byte("x")}, {name: "b", hardlink: "a"}}, true},
		{"link before its target", []file{{name: "b", data: []byte("x")}, {name: "a", hardlink: "b"}}, false},
		{"link to a missing file", []file{{name: "a", hardlink: "z"}}, false},
		{"link to a directory", []file{{name: "a", dir: true}, {name: "b", hardlink: "a"}}, false},
	} {
		if _, err := layerTar(tc.files); (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok %v", tc.desc, err, tc.ok)
		}
	}
}

func TestWithParents(t *testing.T) {
	got := withParents([]file{{name: "usr/local/bin/x"}, {name: "usr", dir: true, mode: 0o700}, {name: "etc/a"}})
	var names []string
	for _, f := range got {
		names = append(names, f.name)
		if f.name == "usr" && f.mode != 0o700 {
			t.Error("an existing directory entry was replaced")
		}
	}
	slices.Sort(names)
	if want := []string{"etc", "etc/a", "usr", "usr/local", "usr/local/bin", "usr/local/bin/x"}; !slices.Equal(names, want) {
		t.Errorf("withParents = %q, want %q", names, want)
	}
}
