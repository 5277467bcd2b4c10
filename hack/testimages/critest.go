package testimages

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Stand-ins for the images the CRI conformance suite, critest v1.37.0, pulls.
// No registry is reachable here, so test/e2e/critest pushes these to a local
// registry under the same repository names and lets accel-cri pull them
// through hosts.toml mirrors (MirrorRef). Each behaves as the spec that uses
// it expects of the upstream image:
//
//   - e2e-test-images/busybox:1.29-2 (critest's default image) is
//     CritestBusybox: busybox with every applet a hard link in /bin, a shell
//     that runs commands from PATH (the MaskedPaths spec masks /bin/ls and
//     expects "/bin/sh: ls: Permission denied"), pgrep and ipcs (from
//     hack/standin, which Debian's busybox lacks), users and groups of the
//     busybox image (nobody, www-data).
//   - e2e-test-images/nginx:1.14-2 and k8s-staging-cri-tools/hostnet-nginx-amd64
//     run hack/standin as nginx: "nginx: master process ..." as PID 1,
//     /var/run/nginx.pid, HTTP on port 80 resp. 12003 (their default.conf).
//   - e2e-test-images/httpd:2.4.39-4 runs hack/standin as httpd-foreground:
//     "httpd" in its log, HTTP on port 80, stop signal SIGWINCH as httpd's.
//   - e2e-test-images/nonewprivs:1.3: hack/standin as /usr/local/bin/nnp,
//     setuid root, printing "Effective uid: N".
//   - k8s-staging-cri-tools/test-image-*: busybox plus what cri-tools'
//     images/build adds: a file named after the image (test-image-1, -2, -3,
//     -latest; "test" and "all" for test-image-tag, one "same-image" image
//     under the three test-image-tags tags), USER 1002, www-data, 1003:1004,
//     www-data:1004 for the user images, and default-user (1000) in
//     group-defined-in-image (50000) as USER 1000 for test-image-predefined-group.
//   - pause:3.9 from registry.k8s.io and k8s.gcr.io (one image: critest checks
//     that both names share an id), and registry.k8s.io/pause:3.10.1, accel-cri's
//     default sandbox image; hack/pause built with those versions.
//
// Not made: test-image-digest, which critest pulls by the digest of the
// upstream bytes; no locally built image can have it.

// Critest's upstream registries. MirrorRef keeps each one's repositories
// under a path of its own in the local registry.
var CritestRegistries = []string{"gcr.io", "k8s.gcr.io", "registry.k8s.io"}

// CritestImage is a stand-in for one image critest pulls.
type CritestImage struct {
	// Ref is the upstream reference critest uses, with its tag
	// ("registry.k8s.io/e2e-test-images/busybox:1.29-2").
	Ref   string
	Image v1.Image
}

// CritestOptions names the binaries the stand-ins are built from.
type CritestOptions struct {
	// Busybox is a busybox whose shell runs commands from PATH
	// (DefaultDynamicBusyboxPath); it may be dynamically linked: its ldd
	// closure goes into the image.
	Busybox string
	// Standin is hack/standin, static (BuildStandin).
	Standin string
	// Pause39 and Pause3101 are hack/pause built as versions 3.9 and 3.10.1
	// (BuildPauseVersion).
	Pause39, Pause3101 string
}

// DefaultDynamicBusyboxPath is where hack/install-deps.sh --test unpacks the
// busybox of Debian's busybox package. Debian's busybox-static, the host's
// /bin/busybox, runs applets inside its shell (FEATURE_SH_STANDALONE), so a
// command there never executes the file in PATH; the package's busybox does,
// as the busybox of upstream images. The two packages conflict, so only the
// binary is unpacked from the .deb.
const DefaultDynamicBusyboxPath = "/var/cache/accel-cri/busybox-deb/busybox"

// CritestPauseVersions are the pause versions the stand-ins need.
const (
	CritestPause39   = "3.9"
	CritestPause3101 = "3.10.1"
)

// CritestSandboxImage is accel-cri's default sandbox image, which pods that
// need a pause container pull during the run.
const CritestSandboxImage = "registry.k8s.io/pause:" + CritestPause3101

// CritestImages builds every stand-in, sorted by Ref. Images listed under
// several references share one v1.Image.
func CritestImages(ctx context.Context, opts CritestOptions) ([]CritestImage, error) {
	if err := checkStaticAMD64(opts.Standin); err != nil {
		return nil, fmt.Errorf("critest images: %w (build it with BuildStandin)", err)
	}
	standin, err := os.ReadFile(opts.Standin)
	if err != nil {
		return nil, fmt.Errorf("critest images: %w", err)
	}
	base, err := critestBaseLayer(opts.Busybox, standin)
	if err != nil {
		return nil, fmt.Errorf("critest images: %w", err)
	}
	busybox := v1.Config{Cmd: []string{"sh"}, Env: []string{DefaultPath}}
	withUser := func(u string) v1.Config { c := busybox; c.User = u; return c }

	type spec struct {
		refs   []string
		files  []file // a second layer, if any
		config v1.Config
	}
	specs := []spec{
		{refs: []string{"registry.k8s.io/e2e-test-images/busybox:1.29-2"}, config: busybox},
		{
			refs:  []string{"registry.k8s.io/e2e-test-images/nginx:1.14-2"},
			files: nginxFiles(standin, 80),
			config: v1.Config{Cmd: []string{"nginx", "-g", "daemon off;"}, Env: []string{DefaultPath},
				ExposedPorts: map[string]struct{}{"80/tcp": {}}, StopSignal: "SIGTERM"},
		},
		{
			refs:  []string{"gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest"},
			files: nginxFiles(standin, 12003),
			config: v1.Config{Cmd: []string{"nginx", "-g", "daemon off;"}, Env: []string{DefaultPath},
				ExposedPorts: map[string]struct{}{"80/tcp": {}}, StopSignal: "SIGQUIT"},
		},
		{
			refs:  []string{"registry.k8s.io/e2e-test-images/httpd:2.4.39-4"},
			files: httpdFiles(standin),
			config: v1.Config{Cmd: []string{"httpd-foreground"}, WorkingDir: "/usr/local/apache2",
				Env:          []string{"PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HTTPD_PREFIX=/usr/local/apache2"},
				ExposedPorts: map[string]struct{}{"80/tcp": {}}, StopSignal: "SIGWINCH"},
		},
		{
			refs: []string{"registry.k8s.io/e2e-test-images/nonewprivs:1.3"},
			files: []file{
				{name: "usr/local/bin/nnp", mode: 0o4755, data: standin}, // setuid root
			},
			config: v1.Config{Entrypoint: []string{"/usr/local/bin/nnp"}, Env: []string{DefaultPath}},
		},
		{refs: []string{"gcr.io/k8s-staging-cri-tools/test-image-user-uid:latest"}, config: withUser("1002")},
		{refs: []string{"gcr.io/k8s-staging-cri-tools/test-image-user-username:latest"}, config: withUser("www-data")},
		{refs: []string{"gcr.io/k8s-staging-cri-tools/test-image-user-uid-group:latest"}, config: withUser("1003:1004")},
		{refs: []string{"gcr.io/k8s-staging-cri-tools/test-image-user-username-group:latest"}, config: withUser("www-data:1004")},
		{
			refs:   []string{"gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest"},
			files:  predefinedGroupFiles(),
			config: withUser("1000"),
		},
	}
	// cri-tools' images/image-test: busybox plus ADD ${TEST} ${TEST}.
	for _, f := range []struct{ file, ref string }{
		{"test-image-1", "gcr.io/k8s-staging-cri-tools/test-image-1:latest"},
		{"test-image-2", "gcr.io/k8s-staging-cri-tools/test-image-2:latest"},
		{"test-image-3", "gcr.io/k8s-staging-cri-tools/test-image-3:latest"},
		{"test-image-latest", "gcr.io/k8s-staging-cri-tools/test-image-latest:latest"},
		{"test", "gcr.io/k8s-staging-cri-tools/test-image-tag:test"},
		{"all", "gcr.io/k8s-staging-cri-tools/test-image-tag:all"},
	} {
		specs = append(specs, spec{refs: []string{f.ref}, files: []file{{name: f.file, mode: 0o644}}, config: busybox})
	}
	specs = append(specs, spec{refs: []string{
		"gcr.io/k8s-staging-cri-tools/test-image-tags:1",
		"gcr.io/k8s-staging-cri-tools/test-image-tags:2",
		"gcr.io/k8s-staging-cri-tools/test-image-tags:3",
	}, files: []file{{name: "same-image", mode: 0o644}}, config: busybox})

	var out []CritestImage
	for _, s := range specs {
		layers := []v1.Layer{base}
		if s.files != nil {
			l, err := layerFromFiles(withParents(s.files))
			if err != nil {
				return nil, fmt.Errorf("critest image %s: %w", s.refs[0], err)
			}
			layers = append(layers, l)
		}
		img, err := imageFromLayers(layers, s.config)
		if err != nil {
			return nil, fmt.Errorf("critest image %s: %w", s.refs[0], err)
		}
		for _, r := range s.refs {
			out = append(out, CritestImage{Ref: r, Image: img})
		}
	}

	for _, p := range []struct {
		binary string
		refs   []string
	}{
		{opts.Pause39, []string{"registry.k8s.io/pause:" + CritestPause39, "k8s.gcr.io/pause:" + CritestPause39}},
		{opts.Pause3101, []string{CritestSandboxImage}},
	} {
		img, err := Pause(ctx, p.binary)
		if err != nil {
			return nil, fmt.Errorf("critest image %s: %w", p.refs[0], err)
		}
		for _, r := range p.refs {
			out = append(out, CritestImage{Ref: r, Image: img})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

// MirrorRef is where a stand-in for the upstream reference ref lives in the
// local registry at registryHost: "<registryHost>/<upstream host>/<path>:<tag>".
// A hosts.toml for the upstream host with
//
//	[host."http://<registryHost>/v2/<upstream host>"]
//	  override_path = true
//
// pulls it under its upstream name.
func MirrorRef(registryHost, ref string) (string, error) {
	r, err := name.ParseReference(ref, name.StrictValidation)
	if err != nil {
		return "", fmt.Errorf("mirror ref %q: %w", ref, err)
	}
	tag, ok := r.(name.Tag)
	if !ok {
		return "", fmt.Errorf("mirror ref %q: not a tag reference", ref)
	}
	host := tag.RegistryStr()
	if !strings.Contains(ref, host+"/") {
		return "", fmt.Errorf("mirror ref %q: name the registry host", ref)
	}
	return registryHost + "/" + host + "/" + tag.RepositoryStr() + ":" + tag.TagStr(), nil
}

// PushCritestImages pushes every stand-in to its MirrorRef in the registry at
// registryHost (plain HTTP) and returns the manifest digest by upstream Ref.
func PushCritestImages(ctx context.Context, registryHost string, imgs []CritestImage, opts ...remote.Option) (map[string]string, error) {
	digests := map[string]string{}
	for _, im := range imgs {
		ref, err := MirrorRef(registryHost, im.Ref)
		if err != nil {
			return nil, err
		}
		d, err := Push(ctx, im.Image, ref, opts...)
		if err != nil {
			return nil, err
		}
		digests[im.Ref] = d
	}
	return digests, nil
}

// critestBaseLayer is the busybox:1.29-2 stand-in's only layer (the first
// layer of every stand-in but pause): busybox with each applet a hard link
// in /bin, its shared libraries at the paths ldd names, pgrep and ipcs from
// standin (unless busybox has them), /etc/passwd, /etc/group and
// /etc/nsswitch.conf, /root, /home, /tmp (1777) and /var.
func critestBaseLayer(busybox string, standin []byte) (v1.Layer, error) {
	if err := checkPathShell(busybox); err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, err
	}
	applets, err := busyboxApplets(busybox)
	if err != nil {
		return nil, err
	}
	files := []file{
		{name: "bin", mode: 0o755, dir: true},
		{name: "dev", mode: 0o755, dir: true},
		{name: "etc", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte(critestPasswd)},
		{name: "etc/group", mode: 0o644, data: []byte(critestGroup)},
		{name: "etc/nsswitch.conf", mode: 0o644, data: []byte("passwd: files\ngroup: files\nhosts: files dns\n")},
		{name: "home", mode: 0o755, dir: true},
		{name: "root", mode: 0o700, dir: true},
		{name: "tmp", mode: 0o1777, dir: true},
		{name: "usr", mode: 0o755, dir: true},
		{name: "usr/sbin", mode: 0o755, dir: true},
		{name: "var", mode: 0o755, dir: true},
		{name: "var/spool", mode: 0o755, dir: true},
		{name: "var/www", mode: 0o755, dir: true},
	}
	// One inode for busybox and its applets, as in the busybox image; the
	// regular file is the first name, so each link follows its target.
	names := append([]string{"busybox"}, applets...)
	has := map[string]bool{}
	for _, a := range names {
		has[a] = true
	}
	sort.Strings(names)
	files = append(files, file{name: "bin/" + names[0], mode: 0o755, data: bin})
	for _, a := range names[1:] {
		files = append(files, file{name: "bin/" + a, mode: 0o755, hardlink: "bin/" + names[0]})
	}
	var tools []string
	for _, a := range []string{"ipcs", "pgrep"} {
		if !has[a] {
			tools = append(tools, a)
		}
	}
	for i, a := range tools {
		if i == 0 {
			files = append(files, file{name: "bin/" + a, mode: 0o755, data: standin})
		} else {
			files = append(files, file{name: "bin/" + a, mode: 0o755, hardlink: "bin/" + tools[0]})
		}
	}
	libs, err := elfLibraries(busybox)
	if err != nil {
		return nil, err
	}
	for _, l := range libs {
		data, err := os.ReadFile(l)
		if err != nil {
			return nil, err
		}
		files = append(files, file{name: strings.TrimPrefix(path.Clean(l), "/"), mode: 0o755, data: data})
	}
	return layerFromFiles(withParents(files))
}

// critestPasswd and critestGroup hold the busybox image's users and groups
// that critest uses (nobody for RunAsUsername, www-data for the user images).
const critestPasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`

const critestGroup = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
www-data:x:33:
nogroup:x:65534:
`

// predefinedGroupFiles is cri-tools' images/image-predefined-group: adduser
// -u 1000 -D default-user; addgroup -g 50000 group-defined-in-image; addgroup
// default-user group-defined-in-image.
func predefinedGroupFiles() []file {
	return []file{
		{name: "etc/passwd", mode: 0o644, data: []byte(critestPasswd + "default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n")},
		{name: "etc/group", mode: 0o644, data: []byte(critestGroup + "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n")},
		{name: "home/default-user", mode: 0o755, dir: true, uid: 1000, gid: 1000},
	}
}

// nginxFiles is the nginx stand-in listening on port: standin as
// /usr/sbin/nginx (its name makes it nginx), default.conf, the welcome page.
func nginxFiles(standin []byte, port int) []file {
	conf := fmt.Sprintf(`server {
    listen       %d;
    server_name  localhost;

    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }
}
`, port)
	return []file{
		{name: "usr/sbin/nginx", mode: 0o755, data: standin},
		{name: "etc/nginx/conf.d/default.conf", mode: 0o644, data: []byte(conf)},
		{name: "usr/share/nginx/html/index.html", mode: 0o644, data: []byte("<!DOCTYPE html>\n<html>\n<head><title>Welcome to nginx!</title></head>\n<body><h1>Welcome to nginx!</h1></body>\n</html>\n")},
		{name: "var/cache/nginx", mode: 0o755, dir: true},
		{name: "var/run", mode: 0o755, dir: true},
	}
}

// httpdFiles is the httpd stand-in: standin as httpd-foreground (the image's
// command) in /usr/local/bin, httpd.conf with Listen 80, the "It works!" page.
func httpdFiles(standin []byte) []file {
	return []file{
		{name: "usr/local/bin/httpd-foreground", mode: 0o755, data: standin},
		{name: "usr/local/apache2/conf/httpd.conf", mode: 0o644, data: []byte("ServerRoot \"/usr/local/apache2\"\nListen 80\nDocumentRoot \"/usr/local/apache2/htdocs\"\n")},
		{name: "usr/local/apache2/htdocs/index.html", mode: 0o644, data: []byte("<html><body><h1>It works!</h1></body></html>\n")},
		{name: "usr/local/apache2/logs", mode: 0o755, dir: true},
	}
}

// withParents adds a directory entry (0755, root) for every parent of an
// entry that has none.
func withParents(files []file) []file {
	have := map[string]bool{}
	for _, f := range files {
		have[f.name] = true
	}
	out := append([]file(nil), files...)
	for _, f := range files {
		for d := path.Dir(f.name); d != "." && !have[d]; d = path.Dir(d) {
			have[d] = true
			out = append(out, file{name: d, mode: 0o755, dir: true})
		}
	}
	return out
}

// imageFromLayers makes a linux/amd64 OCI image of layers with config c,
// created at Epoch.
func imageFromLayers(layers []v1.Layer, c v1.Config) (v1.Image, error) {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, l := range layers {
		var err error
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:   l,
			History: v1.History{Created: v1.Time{Time: Epoch}, CreatedBy: "accel-cri hack/testimages"},
		})
		if err != nil {
			return nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = "amd64"
	cf.OS = "linux"
	cf.Created = v1.Time{Time: Epoch}
	cf.Config = c
	return mutate.ConfigFile(img, cf)
}

// checkPathShell fails unless busybox is an x86-64 ELF whose shell executes
// commands found in PATH instead of running its own applets (a shell with
// PATH=/nonexistent cannot run ls).
func checkPathShell(busybox string) error {
	if _, err := elfLibraries(busybox); err != nil {
		return err
	}
	out, err := exec.Command(busybox, "sh", "-c", "PATH=/nonexistent; ls /").CombinedOutput()
	if err == nil {
		return fmt.Errorf("%s runs its applets inside its shell (FEATURE_SH_STANDALONE, as Debian's busybox-static): "+
			"critest's MaskedPaths spec needs a shell that executes /bin/ls; use the busybox of Debian's busybox package "+
			"(hack/install-deps.sh --test unpacks it to %s)", busybox, DefaultDynamicBusyboxPath)
	}
	if !bytes.Contains(out, []byte("not found")) {
		return fmt.Errorf("%s sh -c ls with an empty PATH: %v: %s", busybox, err, out)
	}
	return nil
}

// elfLibraries checks that p is an x86-64 ELF executable and returns what
// the image needs to run it: nothing for a static one, its ldd closure
// (libraries and the loader) for a dynamic one.
func elfLibraries(p string) ([]string, error) {
	err := checkStaticAMD64(p)
	if err == nil {
		return nil, nil
	}
	if !errors.Is(err, errNotStatic) {
		return nil, err
	}
	libs, lerr := lddClosure(p)
	if lerr != nil {
		return nil, errors.Join(err, lerr)
	}
	return libs, nil
}
