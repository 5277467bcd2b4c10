package cri

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Listen claims the CRI unix socket at path with mode 0660, owned by
// root:root when accel-cri runs as root. A socket left by
// a process that is gone is replaced; a socket that answers (another runtime
// serves it) and a path that is not a socket are refused, so accel-cri never
// steals or clobbers someone else's endpoint.
func Listen(path string) (net.Listener, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("socket %q: not an absolute path", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("socket %s: %w", path, err)
	case st.Mode().Type() != fs.ModeSocket:
		return nil, fmt.Errorf("socket %s: path exists and is not a socket (%s)", path, st.Mode().Type())
	default:
		c, derr := net.DialTimeout("unix", path, time.Second)
		if derr == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s: in use: another process is serving it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("socket %s: remove stale socket: %w", path, err)
		}
	}
	// The umask makes the socket 0660 from the moment it exists: with the
	// usual 022 it would be 0755 until the chmod, and with 0 anyone could
	// connect in between. Listen runs at start, before anything else
	// creates files.
	old := syscall.Umask(0o117)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	// root:root, also in a setgid directory that would lend its group.
	if os.Geteuid() == 0 {
		if err := os.Chown(path, 0, 0); err != nil {
			l.Close()
			return nil, fmt.Errorf("socket %s: %w", path, err)
		}
	}
	return l, nil
}
