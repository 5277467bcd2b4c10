package podns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/internal/fsutil"
)

// Names of the pod files inside the pod directory.
const (
	hostnameFile = "hostname"
	hostsFile    = "hosts"
	resolvFile   = "resolv.conf"
	shmDir       = "shm"
)

// fallbackShmSize is the pod /dev/shm size when the caller passes none.
const fallbackShmSize int64 = 64 << 20

// defaultPodHosts is written when the host has no /etc/hosts.
const defaultPodHosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"

// Files are the per-pod files bind-mounted into every container of the
// pod. ShmPath is "" when the pod shares the host IPC namespace (its
// containers use the host's /dev/shm). The JSON form is part of the pod's
// checkpoint.
type Files struct {
	Dir          string `json:"dir"`
	HostnamePath string `json:"hostnamePath"`
	HostsPath    string `json:"hostsPath"`
	ResolvPath   string `json:"resolvPath"`
	ShmPath      string `json:"shmPath,omitempty"`
}

type filesOptions struct {
	hostsSource  string
	resolvSource string
	hostname     func() (string, error)
}

// FilesOption changes where WriteFiles takes the host's files from.
type FilesOption func(*filesOptions)

// WithHostsSource sets the file copied as the pod's hosts file (default
// /etc/hosts).
func WithHostsSource(path string) FilesOption {
	return func(o *filesOptions) { o.hostsSource = path }
}

// WithResolvConfSource sets the file copied as the pod's resolv.conf when the
// pod has no DNS config (default /etc/resolv.conf; kubelet's --resolv-conf
// is the same idea).
func WithResolvConfSource(path string) FilesOption {
	return func(o *filesOptions) { o.resolvSource = path }
}

// WithHostname sets how the host's hostname is found (default os.Hostname).
func WithHostname(f func() (string, error)) FilesOption {
	return func(o *filesOptions) { o.hostname = f }
}

// WriteFiles creates dir (0711) and writes the pod's hostname, hosts and
// resolv.conf files (0644, atomically) and, unless the pod shares the host
// IPC namespace, mounts a tmpfs of shmSize bytes at dir/shm. It can be called
// again for the same pod (the shm mount is kept). The config is not
// validated here; nothing is written through a symlink.
func WriteFiles(dir string, cfg *runtimeapi.PodSandboxConfig, shmSize int64, opts ...FilesOption) (Files, error) {
	o := filesOptions{hostsSource: "/etc/hosts", resolvSource: "/etc/resolv.conf", hostname: os.Hostname}
	for _, opt := range opts {
		opt(&o)
	}
	if err := makePodDir(dir); err != nil {
		return Files{}, err
	}
	files := Files{
		Dir:          dir,
		HostnamePath: filepath.Join(dir, hostnameFile),
		HostsPath:    filepath.Join(dir, hostsFile),
		ResolvPath:   filepath.Join(dir, resolvFile),
	}
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()

	hostname := cfg.GetHostname()
	if hostname == "" || nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE {
		h, err := o.hostname()
		if err != nil {
			return Files{}, fmt.Errorf("pod hostname: host hostname: %w", err)
		}
		hostname = h
	}
	if err := writePodFile(files.HostnamePath, []byte(hostname+"\n")); err != nil {
		return Files{}, fmt.Errorf("pod hostname file: %w", err)
	}

	hosts, err := readHostFile(o.hostsSource, defaultPodHosts)
	if err != nil {
		return Files{}, fmt.Errorf("pod hosts file: %w", err)
	}
	if err := writePodFile(files.HostsPath, hosts); err != nil {
		return Files{}, fmt.Errorf("pod hosts file: %w", err)
	}

	resolv := renderResolvConf(cfg.GetDnsConfig())
	if resolv == nil {
		if resolv, err = readHostFile(o.resolvSource, ""); err != nil {
			return Files{}, fmt.Errorf("pod resolv.conf: %w", err)
		}
	}
	if err := writePodFile(files.ResolvPath, resolv); err != nil {
		return Files{}, fmt.Errorf("pod resolv.conf: %w", err)
	}

	if nsOpts.GetIpc() != runtimeapi.NamespaceMode_NODE {
		if shmSize <= 0 {
			shmSize = fallbackShmSize
		}
		files.ShmPath = filepath.Join(dir, shmDir)
		if err := mountPodShm(files.ShmPath, shmSize); err != nil {
			return Files{}, err
		}
	}
	return files, nil
}

// RemoveFiles unmounts everything mounted under dir (the shm tmpfs; lazily
// when busy) and removes dir. A missing dir is not an error.
func RemoveFiles(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove pod files %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("remove pod files: %s is not a directory", dir)
	}
	// Mount points are listed by their resolved absolute path.
	real, err := filepath.EvalSymlinks(dir)
	if err == nil {
		real, err = filepath.Abs(real)
	}
	if err != nil {
		return fmt.Errorf("remove pod files %s: %w", dir, err)
	}
	if err := fsutil.UnmountUnder(real); err != nil {
		return fmt.Errorf("remove pod files %s: %w", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove pod files %s: %w", dir, err)
	}
	return nil
}

// ReleaseShm unmounts the pod's /dev/shm tmpfs (lazily when busy) so a
// stopped pod holds no memory; the rest of the pod's files stay until the
// pod is removed. Idempotent.
func ReleaseShm(dir string) error {
	real, err := filepath.EvalSymlinks(filepath.Join(dir, shmDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err == nil {
		real, err = filepath.Abs(real)
	}
	if err != nil {
		return fmt.Errorf("release pod shm in %s: %w", dir, err)
	}
	if err := fsutil.UnmountUnder(real); err != nil {
		return fmt.Errorf("release pod shm in %s: %w", dir, err)
	}
	return nil
}

// renderResolvConf renders the pod's DNS config; nil when there is nothing
// to render (the host's resolv.conf is used then).
func renderResolvConf(dns *runtimeapi.DNSConfig) []byte {
	if dns == nil || (len(dns.GetServers()) == 0 && len(dns.GetSearches()) == 0 && len(dns.GetOptions()) == 0) {
		return nil
	}
	var b strings.Builder
	if s := dns.GetSearches(); len(s) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(s, " "))
	}
	for _, s := range dns.GetServers() {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if o := dns.GetOptions(); len(o) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(o, " "))
	}
	return []byte(b.String())
}

// readHostFile reads a host file (following symlinks: /etc/resolv.conf
// often is one); a missing file gives def.
func readHostFile(path, def string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return []byte(def), nil
	}
	return b, err
}

// makePodDir creates dir 0711 (with its parents) and makes sure it is a real
// directory, not a symlink.
func makePodDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o711); err != nil {
		return fmt.Errorf("pod dir: %w", err)
	}
	if err := os.Mkdir(dir, 0o711); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("pod dir: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("pod dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("pod dir %s is not a directory", dir)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return fmt.Errorf("pod dir: %w", err)
	}
	return nil
}

// mountPodShm mounts a tmpfs of size bytes at path unless one is mounted
// there already.
func mountPodShm(path string, size int64) error {
	if err := os.Mkdir(path, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("pod shm: %w", err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("pod shm: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("pod shm %s is not a directory", path)
	}
	mounted, err := mountinfo.Mounted(path)
	if err != nil {
		return fmt.Errorf("pod shm: %w", err)
	}
	if mounted {
		return nil
	}
	data := fmt.Sprintf("mode=1777,size=%d", size)
	if err := unix.Mount("shm", path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, data); err != nil {
		return fmt.Errorf("pod shm: mount tmpfs at %s (%s): %w", path, data, err)
	}
	return nil
}

// writePodFile writes one of a pod's files, world-readable whatever the
// umask (containers read them as any user). Whatever is at path, a symlink
// included, is replaced, never written through. The pod directory is
// volatile: a crash half way leaves a pod that recovery removes, so an
// fsync buys nothing.
func writePodFile(path string, data []byte) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
