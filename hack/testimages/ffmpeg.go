package testimages

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// FFmpegName is the ffmpeg image's repository name.
const FFmpegName = "ffmpeg"

// DefaultFFmpegPath is Debian's ffmpeg (apt-get install ffmpeg).
const DefaultFFmpegPath = "/usr/bin/ffmpeg"

// FFmpeg builds an image for hardware-accelerated media jobs: the busybox
// image plus the host's ffmpeg binary and every shared library it loads
// (its ldd closure, at the paths ldd reports, with the dynamic loader),
// and /out for results. It is large (the closure of Debian's ffmpeg is
// about 250 MB), so its layer is compressed fast and tests push it only
// when they need it.
func FFmpeg(ffmpegBinary string) (v1.Image, error) {
	if ffmpegBinary == "" {
		ffmpegBinary = DefaultFFmpegPath
	}
	base, err := Busybox()
	if err != nil {
		return nil, err
	}
	paths, err := lddClosure(ffmpegBinary)
	if err != nil {
		return nil, fmt.Errorf("ffmpeg image: %w (install Debian's ffmpeg)", err)
	}
	files := []file{{name: "out", mode: 0o1777, dir: true}}
	dirs := map[string]bool{"out": true}
	add := func(dst, src string) error {
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(path.Clean(dst), "/")
		for d := path.Dir(name); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			files = append(files, file{name: d, mode: 0o755, dir: true})
		}
		files = append(files, file{name: name, mode: 0o755, data: data})
		return nil
	}
	if err := add("/usr/bin/ffmpeg", ffmpegBinary); err != nil {
		return nil, fmt.Errorf("ffmpeg image: %w", err)
	}
	for _, p := range paths {
		if err := add(p, p); err != nil {
			return nil, fmt.Errorf("ffmpeg image: %w", err)
		}
	}
	b, err := layerTar(files)
	if err != nil {
		return nil, fmt.Errorf("ffmpeg image: %w", err)
	}
	layer, err := tarball.LayerFromOpener(
		func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer),
		tarball.WithCompressionLevel(gzip.BestSpeed),
		tarball.WithCompressedCaching,
	)
	if err != nil {
		return nil, fmt.Errorf("ffmpeg image: %w", err)
	}
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{Created: v1.Time{Time: Epoch}, CreatedBy: "accel-cri hack/testimages ffmpeg"}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Config.Env = append(cf.Config.Env, "LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu")
	return mutate.ConfigFile(img, cf)
}

// lddClosure lists the absolute paths ldd prints for binary: its shared
// libraries and the dynamic loader (symlinks are read through).
func lddClosure(binary string) ([]string, error) {
	out, err := exec.Command("ldd", binary).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", binary, err)
	}
	seen := map[string]bool{}
	var paths []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		for _, f := range strings.Fields(sc.Text()) {
			if filepath.IsAbs(f) && !seen[f] {
				seen[f] = true
				paths = append(paths, f)
			}
		}
		if strings.Contains(sc.Text(), "not found") {
			return nil, fmt.Errorf("ldd %s: %s", binary, strings.TrimSpace(sc.Text()))
		}
	}
	sort.Strings(paths)
	if len(paths) == 0 {
		return nil, fmt.Errorf("ldd %s: no libraries (a static binary?)", binary)
	}
	return paths, nil
}
