package preflight

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/accel-cri/accel-cri/sandbox"
)

// Host is what the checks read from the node. OSHost is the real node.
type Host interface {
	ReadFile(name string) ([]byte, error)
	ReadDir(name string) ([]fs.DirEntry, error)
	Stat(name string) (fs.FileInfo, error)
	// LookPath finds a command as exec.LookPath does (absolute paths as they are).
	LookPath(file string) (string, error)
	// Run runs a command and returns its standard output.
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
	// MountOverlay mounts an overlay filesystem in a new directory below
	// parent and removes it again.
	MountOverlay(parent string) error
	// OOMScoreRange probes whether lowering oom_score_adj is permitted.
	OOMScoreRange() (*sandbox.OOMScoreRange, error)
	// Geteuid is the effective user id.
	Geteuid() int
	// SocketAnswers reports whether a process accepts connections on the
	// unix socket at path.
	SocketAnswers(path string) bool
}

// OSHost is the node accel-cri check runs on.
type OSHost struct{}

func (OSHost) ReadFile(name string) ([]byte, error)       { return os.ReadFile(name) }
func (OSHost) ReadDir(name string) ([]fs.DirEntry, error) { return os.ReadDir(name) }
func (OSHost) Stat(name string) (fs.FileInfo, error)      { return os.Stat(name) }
func (OSHost) LookPath(file string) (string, error)       { return exec.LookPath(file) }
func (OSHost) Geteuid() int                               { return os.Geteuid() }

func (OSHost) SocketAnswers(path string) bool {
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

func (OSHost) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, name, args...).Output()
}

func (OSHost) OOMScoreRange() (*sandbox.OOMScoreRange, error) {
	return sandbox.DetectOOMScoreRange("/proc/self/oom_score_adj")
}

// MountOverlay does what the overlayfs snapshotter does for a container:
// an overlay of one lower directory with an upper and work directory on
// the filesystem of parent, which decides whether overlay works there.
func (OSHost) MountOverlay(parent string) (err error) {
	dir, err := os.MkdirTemp(parent, ".accel-cri-check-")
	if err != nil {
		return err
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = rerr
		}
	}()
	var paths [4]string
	for i, n := range []string{"lower", "upper", "work", "merged"} {
		paths[i] = filepath.Join(dir, n)
		if err := os.Mkdir(paths[i], 0o700); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", paths[0], paths[1], paths[2])
	if err := unix.Mount("overlay", paths[3], "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", paths[3], err)
	}
	if err := unix.Unmount(paths[3], unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", paths[3], err)
	}
	return nil
}
