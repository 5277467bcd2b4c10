// Package testimages builds accel-cri's test images locally and pushes them to
// a registry, using go-containerregistry as a library (no docker, no crane).
//
// No image registry is reachable from the machines this project runs on, so
// the images the tests and the demo need are made from what is on the host:
//
//   - busybox: Debian's static busybox (package busybox-static) as /bin/busybox
//     with a symlink in /bin for each applet, /etc/passwd and /etc/group with
//     root (0), app (1000) and nobody (65534), and /tmp (1777).
//   - pause: accel-cri's own pause binary (hack/pause) as /pause.
//   - ffmpeg (ffmpeg.go): busybox plus the host's ffmpeg and its libraries.
//   - stand-ins for the images of the CRI conformance suite, critest
//     (critest.go), pushed under their upstream names.
//
// Both are single-layer linux/amd64 OCI images built deterministically: fixed
// timestamps, fixed ownership, sorted tar entries, so the same inputs give the
// same digest.
package testimages

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Default names and tags of the test images.
const (
	BusyboxName = "busybox"
	BusyboxTag  = "latest"
	PauseName   = "pause"
	PauseTag    = "3.10"
)

// DefaultBusyboxPath is where Debian's busybox-static package installs the
// static busybox binary.
const DefaultBusyboxPath = "/bin/busybox"

// DefaultPath is the PATH set in the busybox image's config.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Epoch is the timestamp of every tar entry and of the image configs, so that
// builds are reproducible.
var Epoch = time.Unix(0, 0).UTC()

// Image is a built image with the repository name (without registry or
// prefix) and tag it is meant to be pushed as.
type Image struct {
	Name, Tag string
	Image     v1.Image
}

// BusyboxOption changes how Busybox builds the image.
type BusyboxOption func(*busyboxConfig)

type busyboxConfig struct {
	binary string
}

// WithBusyboxBinary builds the image from the static busybox binary at path
// instead of DefaultBusyboxPath.
func WithBusyboxBinary(path string) BusyboxOption {
	return func(c *busyboxConfig) { c.binary = path }
}

// Busybox builds the busybox test image: a single linux/amd64 layer with the
// host's static busybox as /bin/busybox, a symlink /bin/APPLET -> busybox for
// every applet the binary reports (busybox --list), /etc/passwd and
// /etc/group (root 0, app 1000, nobody 65534), /root, /home/app (owned by
// app) and /tmp (mode 1777). Config: Cmd ["sh"], Env [DefaultPath].
//
// It fails if the binary is not a statically linked x86-64 ELF executable
// (install Debian's busybox-static, not busybox).
func Busybox(opts ...BusyboxOption) (v1.Image, error) {
	cfg := busyboxConfig{binary: DefaultBusyboxPath}
	for _, o := range opts {
		o(&cfg)
	}
	if err := checkStaticAMD64(cfg.binary); err != nil {
		return nil, fmt.Errorf("busybox image: %w (install Debian's busybox-static package)", err)
	}
	bin, err := os.ReadFile(cfg.binary)
	if err != nil {
		return nil, fmt.Errorf("busybox image: %w", err)
	}
	applets, err := busyboxApplets(cfg.binary)
	if err != nil {
		return nil, fmt.Errorf("busybox image: %w", err)
	}

	files := []file{
		{name: "bin", mode: 0o755, dir: true},
		{name: "bin/busybox", mode: 0o755, data: bin},
		{name: "etc", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "home", mode: 0o755, dir: true},
		{name: "home/app", mode: 0o755, dir: true, uid: 1000, gid: 1000},
		{name: "root", mode: 0o700, dir: true},
		{name: "tmp", mode: 0o1777, dir: true},
	}
	for _, a := range applets {
		files = append(files, file{name: "bin/" + a, mode: 0o777, link: "busybox"})
	}
	layer, err := layerFromFiles(files)
	if err != nil {
		return nil, fmt.Errorf("busybox image: %w", err)
	}
	return imageFromLayer(layer, v1.Config{
		Cmd: []string{"sh"},
		Env: []string{DefaultPath},
	})
}

const passwd = `root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
`

const group = `root:x:0:
app:x:1000:
nobody:x:65534:
`

// Pause builds the pause image from a static pause binary (see BuildPause):
// a single linux/amd64 layer with /pause, Entrypoint ["/pause"], User
// "65535:65535".
func Pause(ctx context.Context, pauseBinary string) (v1.Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkStaticAMD64(pauseBinary); err != nil {
		return nil, fmt.Errorf("pause image: %w (build it with BuildPause)", err)
	}
	bin, err := os.ReadFile(pauseBinary)
	if err != nil {
		return nil, fmt.Errorf("pause image: %w", err)
	}
	layer, err := layerFromFiles([]file{{name: "pause", mode: 0o755, data: bin}})
	if err != nil {
		return nil, fmt.Errorf("pause image: %w", err)
	}
	return imageFromLayer(layer, v1.Config{
		Entrypoint: []string{"/pause"},
		User:       "65535:65535",
		Env:        []string{DefaultPath},
	})
}

// BuildPause builds hack/pause of the module at moduleDir into outDir/pause
// (static linux/amd64: CGO_ENABLED=0 go build -trimpath -ldflags '-s -w') and
// returns the binary's path. The go command is taken from PATH, or else from
// the GOROOT of the running program.
func BuildPause(ctx context.Context, moduleDir, outDir string) (string, error) {
	return BuildPauseVersion(ctx, moduleDir, outDir, PauseTag)
}

// BuildPauseVersion is BuildPause for another version: "pause -v" prints it,
// so each version is a different binary (and image).
func BuildPauseVersion(ctx context.Context, moduleDir, outDir, version string) (string, error) {
	return buildStatic(ctx, moduleDir, outDir, "./hack/pause", "pause", "-X main.version="+version)
}

// BuildStandin builds hack/standin of the module at moduleDir into
// outDir/standin (static linux/amd64) and returns the binary's path.
func BuildStandin(ctx context.Context, moduleDir, outDir string) (string, error) {
	return buildStatic(ctx, moduleDir, outDir, "./hack/standin", "standin", "")
}

// buildStatic builds the package pkg of the module at moduleDir into
// outDir/name: CGO_ENABLED=0 go build -trimpath -ldflags '-s -w ldflags'.
// The go command is taken from PATH, or else from the GOROOT of the running
// program.
func buildStatic(ctx context.Context, moduleDir, outDir, pkg, name, ldflags string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, statErr := os.Stat(goBin); statErr != nil {
			return "", fmt.Errorf("build %s: go command not found in PATH or GOROOT: %w", name, err)
		}
	}
	out, err := filepath.Abs(filepath.Join(outDir, name))
	if err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-buildvcs=false",
		"-ldflags", strings.TrimSpace("-s -w "+ldflags), "-o", out, pkg)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s in %s: %w\n%s", pkg, moduleDir, err, output)
	}
	return out, nil
}

// All builds the busybox and pause images with their default names and tags
// (busybox:latest, pause:3.10), in that order.
func All(ctx context.Context, pauseBinary string) ([]Image, error) {
	bb, err := Busybox()
	if err != nil {
		return nil, err
	}
	p, err := Pause(ctx, pauseBinary)
	if err != nil {
		return nil, err
	}
	return []Image{
		{Name: BusyboxName, Tag: BusyboxTag, Image: bb},
		{Name: PauseName, Tag: PauseTag, Image: p},
	}, nil
}

// WithBasicAuth is a remote.Option for Push that authenticates with a user
// name and password (registry htpasswd auth).
func WithBasicAuth(username, password string) remote.Option {
	return remote.WithAuth(&authn.Basic{Username: username, Password: password})
}

// Push pushes img to ref (for example "127.0.0.1:5000/library/busybox:latest")
// and returns the manifest digest ("sha256:..."). The registry is reached
// over plain HTTP (name.Insecure); pass WithBasicAuth for a registry with
// auth. Without auth options the push is anonymous.
func Push(ctx context.Context, img v1.Image, ref string, opts ...remote.Option) (string, error) {
	r, err := name.ParseReference(ref, name.Insecure, name.StrictValidation)
	if err != nil {
		return "", fmt.Errorf("push %q: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("push %q: %w", ref, err)
	}
	all := append([]remote.Option{remote.WithContext(ctx), remote.WithAuth(authn.Anonymous)}, opts...)
	if err := remote.Write(r, img, all...); err != nil {
		return "", fmt.Errorf("push %q: %w", ref, err)
	}
	return d.String(), nil
}

// FindModuleRoot walks up from dir to the first directory holding a go.mod
// file and returns it.
func FindModuleRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod in %s or any parent", dir)
		}
		d = parent
	}
}

// errNotStatic is checkStaticAMD64's error for a dynamically linked executable.
var errNotStatic = errors.New("not statically linked")

// checkStaticAMD64 fails unless path is an x86-64 ELF executable without a
// program interpreter or shared library dependencies.
func checkStaticAMD64(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("%s is not an ELF executable: %w", p, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%s is for %v, not x86-64", p, f.Machine)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is %w (it has a program interpreter)", p, errNotStatic)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return fmt.Errorf("%s: read dynamic section: %w", p, err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("%s is %w (needs %s)", p, errNotStatic, strings.Join(libs, ", "))
	}
	return nil
}

// busyboxApplets asks the binary for its applet names (busybox --list).
func busyboxApplets(binary string) ([]string, error) {
	out, err := exec.Command(binary, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", binary, err)
	}
	seen := map[string]bool{}
	var applets []string
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" || seen[a] || strings.ContainsAny(a, "/\x00") || a == "." || a == ".." {
			continue
		}
		seen[a] = true
		applets = append(applets, a)
	}
	if !seen["sh"] {
		return nil, fmt.Errorf("%s --list has no sh applet", binary)
	}
	return applets, nil
}

// file is one entry of a layer: a directory, a regular file (data), a
// symlink (link) or a hard link to an earlier entry (hardlink, its name).
type file struct {
	name     string
	mode     int64
	dir      bool
	data     []byte
	link     string
	hardlink string
	uid, gid int
}

// layerTar writes files as a tar stream, sorted by name, with fixed
// timestamps, so that the same files always give the same bytes. A hard
// link must name a regular file that sorts before it (extractors create
// the target first).
func layerTar(files []file) ([]byte, error) {
	sorted := append([]file(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	regular := map[string]bool{}
	for i, f := range sorted {
		if i > 0 && sorted[i-1].name == f.name {
			return nil, fmt.Errorf("duplicate layer entry %q", f.name)
		}
		if f.hardlink != "" && !regular[f.hardlink] {
			return nil, fmt.Errorf("layer entry %q: hard link target %q is not an earlier regular file", f.name, f.hardlink)
		}
		if f.name == "" || path.IsAbs(f.name) || path.Clean(f.name) != f.name {
			return nil, fmt.Errorf("bad layer entry name %q", f.name)
		}
		hdr := &tar.Header{
			Name:    f.name,
			Mode:    f.mode,
			Uid:     f.uid,
			Gid:     f.gid,
			ModTime: Epoch,
			Format:  tar.FormatPAX,
		}
		switch {
		case f.dir:
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case f.link != "":
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = f.link
		case f.hardlink != "":
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = f.hardlink
		default:
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(f.data))
			regular[f.name] = true
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func layerFromFiles(files []file) (v1.Layer, error) {
	b, err := layerTar(files)
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(
		func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer),
		tarball.WithCompressionLevel(gzip.BestCompression),
		tarball.WithCompressedCaching,
	)
}

// LayerFile is an entry of a layer AppendLayer adds: a regular file with
// Data (mode 0644), or a symlink to Link when Link is set.
type LayerFile struct {
	Name string
	Data []byte
	Link string
}

// AppendLayer returns img with one more layer on top holding files, each
// missing parent directory added (0755, root), deterministic like the other
// layers. Tests use it for images of more than one layer.
func AppendLayer(img v1.Image, files ...LayerFile) (v1.Image, error) {
	fs := make([]file, 0, len(files))
	for _, f := range files {
		fs = append(fs, file{name: f.Name, mode: 0o644, data: f.Data, link: f.Link})
	}
	layer, err := layerFromFiles(withParents(fs))
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	return mutate.Append(img, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: Epoch}, CreatedBy: "accel-cri hack/testimages"},
	})
}

// imageFromLayer makes a linux/amd64 OCI image of one layer with config c,
// created at Epoch.
func imageFromLayer(layer v1.Layer, c v1.Config) (v1.Image, error) {
	return imageFromLayers([]v1.Layer{layer}, c)
}
