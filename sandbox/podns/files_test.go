package podns

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestPodFilesResolvConf(t *testing.T) {
	tests := []struct {
		name string
		dns  *runtimeapi.DNSConfig
		want string // "" means: nothing rendered, the host's file is used
	}{
		{"nil", nil, ""},
		{"empty", &runtimeapi.DNSConfig{}, ""},
		{"servers", &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10", "fd00::10"}},
			"nameserver 10.96.0.10\nnameserver fd00::10\n"},
		{"searches", &runtimeapi.DNSConfig{Searches: []string{"a.svc.cluster.local", "svc.cluster.local", "cluster.local"}},
			"search a.svc.cluster.local svc.cluster.local cluster.local\n"},
		{"options", &runtimeapi.DNSConfig{Options: []string{"ndots:5", "edns0"}}, "options ndots:5 edns0\n"},
		{"all", &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"ns.svc.cluster.local", "cluster.local"}, Options: []string{"ndots:5"}},
			"search ns.svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := renderResolvConf(tc.dns)
			if tc.want == "" {
				if got != nil {
					t.Fatalf("rendered %q, want the host's file", got)
				}
				return
			}
			if string(got) != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func pfRequireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root (mounts)")
	}
}

// pfPodFilesEnv is a temp dir with fake host files.
type pfPodFilesEnv struct {
	root, hosts, resolv string
	opts                []FilesOption
}

const (
	pfTestHostHosts  = "127.0.0.1 localhost\n10.0.0.1 node-1\n"
	pfTestHostResolv = "nameserver 192.0.2.53\nsearch example.test\n"
)

func pfNewPodFilesEnv(t *testing.T) *pfPodFilesEnv {
	t.Helper()
	e := &pfPodFilesEnv{root: t.TempDir()}
	e.hosts = filepath.Join(e.root, "host-hosts")
	e.resolv = filepath.Join(e.root, "host-resolv.conf")
	if err := os.WriteFile(e.hosts, []byte(pfTestHostHosts), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.resolv, []byte(pfTestHostResolv), 0o644); err != nil {
		t.Fatal(err)
	}
	e.opts = []FilesOption{
		WithHostsSource(e.hosts),
		WithResolvConfSource(e.resolv),
		WithHostname(func() (string, error) { return "node-1", nil }),
	}
	return e
}

// podDir returns a fresh pod dir path whose mounts are gone at the end of
// the test (before the temp dir is removed).
func (e *pfPodFilesEnv) podDir(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(e.root, "pods", name)
	t.Cleanup(func() {
		if err := RemoveFiles(dir); err != nil {
			t.Errorf("cleanup: %v", err)
			unix.Unmount(filepath.Join(dir, "shm"), unix.MNT_DETACH)
		}
	})
	return dir
}

func pfReadFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func pfMountAt(t *testing.T, path string) []*mountinfo.Info {
	t.Helper()
	m, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(path))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func pfHasOpt(opts, want string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

func TestPodFilesWriteAndRemove(t *testing.T) {
	pfRequireRoot(t)
	e := pfNewPodFilesEnv(t)
	dir := e.podDir(t, "pod-a")
	cfg := &runtimeapi.PodSandboxConfig{
		Hostname:  "pod-a",
		DnsConfig: &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"ns.svc.cluster.local"}, Options: []string{"ndots:5"}},
	}
	const shmSize = 16 << 20
	files, err := WriteFiles(dir, cfg, shmSize, e.opts...)
	if err != nil {
		t.Fatal(err)
	}
	want := Files{
		Dir:          dir,
		HostnamePath: filepath.Join(dir, "hostname"),
		HostsPath:    filepath.Join(dir, "hosts"),
		ResolvPath:   filepath.Join(dir, "resolv.conf"),
		ShmPath:      filepath.Join(dir, "shm"),
	}
	if files != want {
		t.Fatalf("files = %+v, want %+v", files, want)
	}
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o711 {
		t.Errorf("pod dir: %v, %v", fi.Mode(), err)
	}
	for path, content := range map[string]string{
		files.HostnamePath: "pod-a\n",
		files.HostsPath:    pfTestHostHosts,
		files.ResolvPath:   "search ns.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n",
	} {
		if got := pfReadFile(t, path); got != content {
			t.Errorf("%s = %q, want %q", path, got, content)
		}
		if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, %v", path, fi.Mode(), err)
		}
	}

	checkShm := func() {
		t.Helper()
		m := pfMountAt(t, files.ShmPath)
		if len(m) != 1 {
			t.Fatalf("%d mounts at %s, want 1", len(m), files.ShmPath)
		}
		if m[0].FSType != "tmpfs" {
			t.Errorf("shm fs = %s", m[0].FSType)
		}
		for _, o := range []string{"nosuid", "nodev", "noexec"} {
			if !pfHasOpt(m[0].Options, o) {
				t.Errorf("shm mount options %q lack %s", m[0].Options, o)
			}
		}
		if !pfHasOpt(m[0].VFSOptions, "size=16384k") {
			t.Errorf("shm superblock options %q lack size=16384k", m[0].VFSOptions)
		}
		// tmpfs lists mode= only when it is not the default 1777.
		fi, err := os.Stat(files.ShmPath)
		if err != nil || fi.Mode().Perm() != 0o777 || fi.Mode()&os.ModeSticky == 0 {
			t.Errorf("shm mode = %v, %v; want 1777", fi.Mode(), err)
		}
	}
	checkShm()

	// Writing again (e.g. after a restart) keeps one shm mount.
	if _, err := WriteFiles(dir, cfg, shmSize, e.opts...); err != nil {
		t.Fatalf("second WriteFiles: %v", err)
	}
	checkShm()

	// A file held open in shm makes it busy: removal detaches it lazily.
	f, err := os.Create(filepath.Join(files.ShmPath, "held"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	if err := RemoveFiles(dir); err != nil {
		t.Fatalf("RemoveFiles: %v", err)
	}
	if m := pfMountAt(t, files.ShmPath); len(m) != 0 {
		t.Errorf("shm still mounted: %+v", m[0])
	}
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pod dir still there: %v", err)
	}
	if err := RemoveFiles(dir); err != nil {
		t.Errorf("second RemoveFiles: %v", err)
	}
}

func TestPodFilesHostNamespaces(t *testing.T) {
	pfRequireRoot(t)
	e := pfNewPodFilesEnv(t)
	dir := e.podDir(t, "hostns")
	cfg := &runtimeapi.PodSandboxConfig{
		Hostname: "ignored-for-host-network",
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE},
		}},
	}
	files, err := WriteFiles(dir, cfg, 1<<20, e.opts...)
	if err != nil {
		t.Fatal(err)
	}
	if got := pfReadFile(t, files.HostnamePath); got != "node-1\n" {
		t.Errorf("hostname of a host-network pod = %q, want the host's", got)
	}
	if got := pfReadFile(t, files.ResolvPath); got != pfTestHostResolv {
		t.Errorf("resolv.conf without DNS config = %q, want the host's", got)
	}
	if files.ShmPath != "" {
		t.Errorf("ShmPath = %q for a host-IPC pod, want \"\"", files.ShmPath)
	}
	if m := pfMountAt(t, filepath.Join(dir, "shm")); len(m) != 0 {
		t.Errorf("shm mounted for a host-IPC pod")
	}
	if _, err := os.Lstat(filepath.Join(dir, "shm")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("shm dir made for a host-IPC pod: %v", err)
	}
	if err := RemoveFiles(dir); err != nil {
		t.Fatal(err)
	}
}

func TestPodFilesDefaults(t *testing.T) {
	pfRequireRoot(t)
	e := pfNewPodFilesEnv(t)
	dir := e.podDir(t, "defaults")
	// No hostname in the config: the host's. Empty DNS config: the host's
	// resolv.conf. No hosts file on the host: a minimal one. No shm size:
	// 64MiB.
	cfg := &runtimeapi.PodSandboxConfig{DnsConfig: &runtimeapi.DNSConfig{}}
	opts := append(e.opts, WithHostsSource(filepath.Join(e.root, "missing")))
	files, err := WriteFiles(dir, cfg, 0, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if got := pfReadFile(t, files.HostnamePath); got != "node-1\n" {
		t.Errorf("hostname = %q", got)
	}
	if got := pfReadFile(t, files.ResolvPath); got != pfTestHostResolv {
		t.Errorf("resolv.conf = %q", got)
	}
	if got := pfReadFile(t, files.HostsPath); !strings.Contains(got, "localhost") {
		t.Errorf("hosts without a host file = %q", got)
	}
	m := pfMountAt(t, files.ShmPath)
	if len(m) != 1 || !pfHasOpt(m[0].VFSOptions, "size=65536k") {
		t.Errorf("default shm mount: %+v", m)
	}
}

func TestPodFilesNoSymlinkEscape(t *testing.T) {
	pfRequireRoot(t)
	e := pfNewPodFilesEnv(t)
	outside := filepath.Join(e.root, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Files that are symlinks out of the dir are replaced, not followed.
	dir := e.podDir(t, "links")
	if err := os.MkdirAll(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"hostname", "hosts", "resolv.conf"} {
		if err := os.Symlink(victim, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	ipcHost := &runtimeapi.PodSandboxConfig{Hostname: "links", Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Ipc: runtimeapi.NamespaceMode_NODE},
	}}}
	files, err := WriteFiles(dir, ipcHost, 1<<20, e.opts...)
	if err != nil {
		t.Fatal(err)
	}
	if got := pfReadFile(t, victim); got != "keep" {
		t.Errorf("file outside the pod dir written through a symlink: %q", got)
	}
	if fi, err := os.Lstat(files.HostnamePath); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("hostname is not a regular file: %v %v", fi.Mode(), err)
	}

	// shm as a symlink out of the dir: refused, nothing mounted outside.
	dir2 := e.podDir(t, "shmlink")
	if err := os.MkdirAll(dir2, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir2, "shm")); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteFiles(dir2, &runtimeapi.PodSandboxConfig{}, 1<<20, e.opts...); err == nil {
		t.Error("WriteFiles mounted shm through a symlink")
	}
	if m := pfMountAt(t, outside); len(m) != 0 {
		unix.Unmount(outside, unix.MNT_DETACH)
		t.Errorf("tmpfs mounted outside the pod dir")
	}

	// The pod dir itself as a symlink: refused.
	dir3 := filepath.Join(e.root, "pods", "dirlink")
	if err := os.Symlink(outside, dir3); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteFiles(dir3, ipcHost, 1<<20, e.opts...); err == nil {
		t.Error("WriteFiles accepted a pod dir that is a symlink")
	}
	if _, err := os.Lstat(filepath.Join(outside, "hostname")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("file written into the symlink target: %v", err)
	}
	// Removing a symlinked pod dir does not remove what it points to.
	if err := RemoveFiles(dir3); err == nil {
		t.Error("RemoveFiles accepted a symlink")
	}
	if got := pfReadFile(t, victim); got != "keep" {
		t.Errorf("victim changed: %q", got)
	}
}

// A stopped pod gives its /dev/shm back at once; its other files stay until
// RemoveFiles.
func TestReleaseShm(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pod")
	files, err := WriteFiles(dir, &runtimeapi.PodSandboxConfig{Hostname: "p"}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { RemoveFiles(dir) })
	if !isMountPoint(t, files.ShmPath) {
		t.Fatal("shm not mounted")
	}
	for i := 0; i < 2; i++ {
		if err := ReleaseShm(dir); err != nil {
			t.Fatalf("release #%d: %v", i, err)
		}
	}
	if isMountPoint(t, files.ShmPath) {
		t.Fatal("shm still mounted after release")
	}
	if _, err := os.Stat(files.ResolvPath); err != nil {
		t.Fatalf("pod files gone after releasing shm: %v", err)
	}
}

func isMountPoint(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}
